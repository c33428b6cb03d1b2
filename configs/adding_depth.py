"""Study: does depth help on the adding problem (T = 100)?

A depth sweep (1, 2, 4 layers) of LSTMs and GRUs at a matched parameter budget, 3 seeds each: the
report says which depth reaches MSE 0.01 in fewer steps and which generalizes to 2x and 4x longer
sequences.

  python -m experiments.run --config configs/adding_depth.py --workdir runs/adding_depth
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'adding'
  c.task.options = {'seq_len': 100, 'num_eval': 1000}
  c.model.width = 64  # solved per variant from sweep.param_budget
  c.optim.learning_rate = 2e-3
  c.optim.warmup_steps = 200
  c.train.num_steps = 10000
  c.train.batch_size = 50
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 250
  c.train.eval_splits = ('val',)
  c.train.checkpoint_every_steps = 2000
  c.sweep.axes = sweep_axes({'model.cell': ['lstm', 'gru'], 'model.depth': [1, 2, 4]})
  c.sweep.param_budget = 20000
  c.sweep.seeds = (0, 1, 2)
  return c
