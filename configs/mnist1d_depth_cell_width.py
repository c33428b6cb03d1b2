"""Study: MNIST-1D (Greydanus 2020), depth x cell x width.

Widths are swept directly (not parameter-matched), so the report can answer "does depth help, for
which cell, at what width". Sequences of 40 steps, 10 classes, no download (the ``mnist1d``
package generates the data).

  python -m experiments.run --config configs/mnist1d_depth_cell_width.py --workdir runs/mnist1d
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'mnist1d'
  c.model.pooling = 'last'
  c.optim.learning_rate = 3e-3
  c.optim.schedule = 'cosine'
  c.optim.warmup_steps = 100
  c.train.num_steps = 4000
  c.train.batch_size = 100
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 200
  c.train.checkpoint_every_steps = 1000
  c.sweep.axes = sweep_axes(
    {'model.cell': ['rnn', 'gru', 'lstm'], 'model.depth': [1, 2, 3], 'model.width': [32, 64, 128]}
  )
  c.sweep.seeds = (0, 1, 2)
  return c
