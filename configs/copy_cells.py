"""Study: which cells solve the copy-memory task (delay T = 100)?

Every gated and non-gated cell at one depth and a matched parameter budget, 3 seeds: the report
says which cells beat the memoryless baseline and how fast they reach the threshold.

  python -m experiments.run --config configs/copy_cells.py --workdir runs/copy_cells
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'copy'
  c.task.options = {'seq_len': 100, 'num_eval': 1000}
  c.model.depth = 1
  c.model.embed_features = 16
  c.optim.learning_rate = 1e-3
  c.train.num_steps = 10000
  c.train.batch_size = 64
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 250
  c.train.eval_splits = ('val',)
  c.train.checkpoint_every_steps = 2000
  c.sweep.axes = sweep_axes({'model.cell': ['rnn', 'irnn', 'indrnn', 'lstm', 'gru', 'mgu', 'ugrnn', 'mingru', 'lru']})
  c.sweep.param_budget = 20000
  c.sweep.seeds = (0, 1, 2)
  return c
