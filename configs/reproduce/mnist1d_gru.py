"""Reproduce: the GRU's test accuracy on MNIST-1D (real-valued signals, generated offline).

Published: Greydanus (2020), "Scaling down Deep Learning" (arXiv:2011.14439) and the README of the
mnist1d repository, table "Comparing MNIST and MNIST-1D": **GRU 91%** test accuracy on MNIST-1D
(logistic regression 32%, MLP 68%, CNN 94%, human 96%). The reference GRU (the repository's
``GRUBase``): bidirectional, 6 hidden units, every time step's output flattened into one linear
layer (40 x 2 x 6 -> 10), Adam at learning rate 1e-2, batch 100, 4,000 training and 1,000 test
examples.

Ours: the same model (``pooling='flatten'``, a linear head, one bidirectional GRU layer of width 6),
Adam at 1e-2, batch 100, 6,000 steps, 3 seeds. One difference: 10% of the 4,000 training examples
are held out for validation, so ours trains on 3,600. About a minute on 2 CPU cores (42 s measured).

  python -m experiments.run --config configs/reproduce/mnist1d_gru.py --workdir runs/reproduce/mnist1d_gru
"""

from deeprnn_jax.training.config import default_config

PUBLISHED = {
  'gru': {
    'metric': 'accuracy',
    'split': 'test',
    'value': 0.91,
    'source': 'Greydanus 2020, mnist1d README table (GRU, MNIST-1D)',
  },
}


def get_config():
  c = default_config()
  c.task.name = 'mnist1d'
  c.model.cell = 'gru'
  c.model.depth = 1
  c.model.width = 6
  c.model.bidirectional = True
  c.model.pooling = 'flatten'
  c.optim.learning_rate = 1e-2
  c.train.num_steps = 6000
  c.train.batch_size = 100
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 500
  c.train.eval_splits = ('val',)
  c.train.checkpoint_every_steps = 2000
  c.sweep.seeds = (0, 1, 2)
  c.report.published = PUBLISHED  # the report shows them beside ours
  return c
