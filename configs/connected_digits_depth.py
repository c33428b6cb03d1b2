"""Study: does depth help connected-digit recognition? Bidirectional LSTMs of depth 1 to 4 at equal parameters,
trained with CTC on utterances joined from the Free Spoken Digit Dataset (task ``connected_digits``).

The CPU-sized analogue of TIDIGITS: each utterance is 2 to 5 digits of one speaker, joined with 50-250 ms
silences, transcribed in words ("three one four"); validation (nicolas) and test (theo) are voices no
training run hears. CER and WER by jiwer on greedy CTC decodes. Trivial baseline (the best constant
transcript, 'one one one', on the 500 test utterances of seed 0): CER 0.70, WER 0.89; an empty transcript
scores 1 on both. As in Graves, Mohamed & Hinton 2013 (deep bidirectional LSTMs with CTC, compared at about
equal weights), the sweep solves ``model.width`` per depth for ``sweep.param_budget``.

Data: a clone of github.com/Jakobovski/free-spoken-digit-dataset (or its ``recordings/`` folder) at
``task.options.path``; features are computed once and cached in ~/.cache/deeprnn_jax/speech::

  git clone https://github.com/Jakobovski/free-spoken-digit-dataset ~/.cache/deeprnn_jax/free-spoken-digit-dataset
  python -m experiments.run --config configs/connected_digits_depth.py --workdir runs/connected_digits_depth

``get_config('modern')`` is the same workload for the modern cells: lstm, mamba, rglru, gated_deltanet and
attention in the modern block (pre-norm residual cell + gated MLP), bidirectional, at depths 1, 2 and 4 and
the same parameter budget (a study's part calls it; ``experiments.run`` calls ``get_config()``).

Measured (2026-12-07, this config at depth 2, width 42, 98,885 parameters, seed 0, one run, with
``--config.task.options.path`` at the unpacked recordings; 2 CPU cores shared with other work, load average
15 to 22): val (nicolas) CER 0.39 / 0.31 / 0.32 and WER 0.77 / 0.59 / 0.59 at steps 200 / 400 / 600; test
(theo) at step 600 CER 0.26, WER 0.47, against the constant transcript's 0.70 and 0.89. Training loss fell
to 0.02 per label while the validation loss rose after step 200: the model learns the four training voices'
recordings far better than a new voice. 600 steps took 193 s at 3.2 steps/s after a 202 s compile; building
the features once took 293 s (60 s of CPU). Without per-utterance mean normalization and dropout (400
steps) the same model reached test CER 0.44, WER 0.69; with the normalization and no dropout, 0.30 and 0.53.
The depth grid and the modern variant have not been run.
"""

from deeprnn_jax.training.config import default_config, sweep_axes

MODERN_CELLS = ['lstm', 'mamba', 'rglru', 'gated_deltanet', 'attention']


def get_config(variant: str = 'bilstm'):
  if variant not in ('bilstm', 'modern'):
    raise ValueError(f"variant {variant!r}: use 'bilstm' (the classic BiLSTM depth grid) or 'modern'")
  c = default_config()
  c.task.name = 'connected_digits'
  c.task.options = {
    'path': '~/.cache/deeprnn_jax/free-spoken-digit-dataset',
    'val_speakers': 'nicolas',
    'test_speakers': 'theo',  # sweep this over the six speakers for a speaker cross-validation
    'num_train': 3000,
    'num_val': 200,
    'num_test': 500,
    'min_digits': 2,
    'max_digits': 5,
    'min_silence_ms': 50.0,
    'max_silence_ms': 250.0,
    'n_mels': 40,
    'stack_frames': 3,
    'frame_stride': 3,  # 30 ms steps: about 78 per utterance of 2.35 s on average
    'decode': 'greedy',
  }
  c.model.cell = 'lstm'
  c.model.bidirectional = True
  c.model.merge = 'concat'
  c.model.depth = 1
  c.model.width = 64  # solved per depth from sweep.param_budget
  c.model.dropout_rate = 0.2  # every layer's output: the training voices are learned far better than new ones
  c.optim.name = 'adam'
  c.optim.learning_rate = 3e-3
  c.optim.clip_global_norm = 1.0
  c.optim.schedule = 'cosine'
  c.optim.warmup_steps = 50
  c.optim.cosine_final_fraction = 0.1
  c.train.num_steps = 600
  c.train.batch_size = 32
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 200
  c.train.eval_splits = ('val',)  # test once, at the end
  c.train.checkpoint_every_steps = 200
  c.train.eval_batch_size = 128
  c.sweep.param_budget = 100_000
  c.sweep.seeds = (0, 1, 2)
  if variant == 'bilstm':
    c.sweep.axes = sweep_axes({'model.depth': [1, 2, 3, 4]})
  else:
    c.model.block = 'modern'
    c.model.mlp_expansion = 2.0
    c.sweep.axes = sweep_axes({'model.cell': MODERN_CELLS, 'model.depth': [1, 2, 4]})
    c.sweep.param_tolerance = 0.05  # attention's width moves in steps of its heads
  return c
