"""Study: sequential digits (scikit-learn's 8x8 digits read row by row, 8 steps of 8 pixels).

Depth x cell at a matched parameter budget; small and offline, a good second study after the
quickstart.

  python -m experiments.run --config configs/sequential_digits.py --workdir runs/digits
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'digits'
  c.task.options = {'mode': 'rows'}
  c.optim.learning_rate = 3e-3
  c.train.num_steps = 2000
  c.train.batch_size = 64
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 100
  c.train.checkpoint_every_steps = 500
  c.train.early_stop = False
  c.sweep.axes = sweep_axes({'model.cell': ['rnn', 'gru', 'lstm'], 'model.depth': [1, 2, 3]})
  c.sweep.param_budget = 10000
  c.sweep.seeds = (0, 1, 2)
  return c
