"""Study: does depth help keyword spotting? Ten Speech Commands words from 40 log-mel bands.

Each utterance (up to 1 s) is 101 frames of 40 log-mel bands (25 ms windows, 10 ms hops,
standardized with training statistics); a GRU stack reads the frames and a linear head classifies
the mean of its outputs over the valid frames. Depth 1, 2 and 3 at a fixed width, 3 seeds each.
The ten words of the usual 12-label protocol (without its '_unknown_' and '_silence_' classes);
the split is the dataset's own validation_list.txt / testing_list.txt.

Data: Speech Commands v0.02 (Warden 2018), its archive extracted to the folder below (one
sub-folder of .wav files per word); features are computed once and cached in
~/.cache/deeprnn_jax/speech. Another folder of WAV files, one sub-folder per label:
--config.task.options.path=... (and --config.task.options.labels=None for all of its folders).

  python -m experiments.run --config configs/keyword_spotting.py --workdir runs/kws
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'keyword_spotting'
  c.task.options = {
    'path': '~/.cache/deeprnn_jax/speech_commands_v0.02',
    'labels': ('yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go'),
    'sample_rate': 16000,
    'n_mels': 40,
    'window_ms': 25.0,
    'hop_ms': 10.0,
  }
  c.model.cell = 'gru'
  c.model.depth = 1
  c.model.width = 64
  c.model.pooling = 'mean'
  c.model.dropout_rate = 0.1
  c.optim.name = 'adam'
  c.optim.learning_rate = 2e-3
  c.optim.schedule = 'cosine'
  c.optim.warmup_steps = 100
  c.train.num_steps = 3000  # ~6 epochs of ~31k utterances at batch 64
  c.train.batch_size = 64
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 500
  c.train.eval_splits = ('val',)  # test once, at the end
  c.train.checkpoint_every_steps = 1000
  c.train.eval_batch_size = 512
  c.sweep.axes = sweep_axes({'model.depth': [1, 2, 3]})
  c.sweep.seeds = (0, 1, 2)
  return c
