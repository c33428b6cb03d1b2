"""Study: does depth help CTC speech recognition? Bidirectional LSTMs of depth 1 to 5 on LibriSpeech.

In the style of Graves, Mohamed & Hinton 2013, "Speech recognition with deep recurrent neural
networks" (ICASSP; arXiv:1303.5778): deep bidirectional LSTMs trained end to end with CTC, compared
at about equal numbers of weights, so that a deeper network is narrower. Their TIMIT phoneme error
rate fell as the network deepened; deep LSTMs reached a 17.7% test error (verified: the paper's
abstract, arXiv:1303.5778). NOT verified here (the paper's Table 1 could not be read from this
machine; check it before quoting): CTC-1L-250H at 23.9% and CTC-5L-250H at about 18.4%, the 2- to
5-layer CTC networks at about 3.8M weights each.

Differences from the paper (its setup as we remember it, also unverified): characters instead of
phonemes (CER and WER by jiwer instead of PER, no language model), LibriSpeech instead of TIMIT, 40
log-mel bands stacked 3 at a stride of 3 (30 ms steps) instead of 123 filterbank features with deltas
every 10 ms, Adam instead of SGD with momentum and weight noise.

Data: LibriSpeech (Panayotov et al. 2015, openslr.org/12) train-clean-100, dev-clean and test-clean
extracted into one folder (its ``LibriSpeech/`` folder), given as ``task.options.path``; features
are computed once and cached in ~/.cache/deeprnn_jax/speech. Another LibriSpeech-layout folder:
``--config.task.options.path=...``; other split folders: ``--config.task.options.val_split=dev-other``.
The sweep solves ``model.width`` per depth for the parameter budget, as the paper matched weights.

  python -m experiments.run --config configs/speech_ctc_depth.py --workdir runs/speech_ctc_depth

Not run on LibriSpeech (not on the machine this was written on): no measured numbers yet. The grid ran
through the trainer on synthesized chord audio (tests/test_speech_to_text.py's) with a 20k budget.
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'speech_to_text'
  c.task.options = {
    'path': '~/.cache/deeprnn_jax/LibriSpeech',
    'train_split': 'train-clean-100',
    'val_split': 'dev-clean',
    'test_split': 'test-clean',
    'sample_rate': 16000,
    'n_mels': 40,
    'window_ms': 25.0,
    'hop_ms': 10.0,
    'stack_frames': 3,
    'frame_stride': 3,  # 30 ms steps: a third of the recurrent steps
    'decode': 'greedy',  # 'beam' (prefix beam search) is slower on the host
  }
  c.model.cell = 'lstm'
  c.model.bidirectional = True
  c.model.merge = 'concat'
  c.model.depth = 1
  c.model.width = 250  # solved per depth from sweep.param_budget
  c.model.dropout_rate = 0.0
  c.optim.name = 'adam'
  c.optim.learning_rate = 1e-3
  c.optim.clip_global_norm = 1.0
  c.optim.schedule = 'cosine'
  c.optim.warmup_steps = 500
  c.train.num_steps = 30000  # about 34 epochs of train-clean-100's 28,539 utterances at batch 32
  c.train.batch_size = 32
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 2000
  c.train.eval_splits = ('val',)  # test once, at the end
  c.train.checkpoint_every_steps = 2000
  c.train.eval_batch_size = 64
  c.sweep.axes = sweep_axes({'model.depth': [1, 2, 3, 4, 5]})
  c.sweep.param_budget = 3_800_000  # the paper's CTC networks' weights as remembered (unverified, see above)
  c.sweep.seeds = (0,)
  return c
