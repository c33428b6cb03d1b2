"""Keyword spotting on WAV files the tests synthesize (a tone per label, noise, varied durations):
features, the cache, splits, one-line errors, TFDS speech_commands, and a small model that learns."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.io import wavfile

import deeprnn_jax as dr
from deeprnn_jax import models, tasks
from deeprnn_jax.tasks import speech, tfds_source

from runner_helpers import fit

KEY = jax.random.key(0)
RATE = 8000
TONES = {'high': 2400.0, 'low': 300.0, 'mid': 1000.0}
# Small features keep the tests fast: 16 mel bands, 20 ms windows every 20 ms (8000 Hz: 160 samples).
FEATURES = dict(sample_rate=RATE, n_mels=16, window_ms=20.0, hop_ms=20.0)
HAS_TENSORFLOW = importlib.util.find_spec('tensorflow') is not None


def _tone(rng, freq, rate=RATE):
  """A sine of ``freq`` Hz, 0.2-0.5 s long, random phase and loudness, in noise; int16 samples."""
  n = int(rate * rng.uniform(0.2, 0.5))
  t = np.arange(n) / rate
  x = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
  x = x + 0.05 * rng.standard_normal(n)
  return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def _make_folder(root, per_label=12, seed=0):
  rng = np.random.default_rng(seed)
  for label, freq in TONES.items():
    (root / label).mkdir(parents=True)
    for i in range(per_label):
      wavfile.write(root / label / f'spk{i % 4}_nohash_{i}.wav', RATE, _tone(rng, freq))
  return root


@pytest.fixture()
def wav_dir(tmp_path):
  return _make_folder(tmp_path / 'kws')


def _task(path, cache, **options):
  return tasks.make_task('keyword_spotting', path=str(path), cache_dir=str(cache), **{**FEATURES, **options})


# ------------------------------------------------------------------------------------- features


def test_log_mel_frames_and_the_tone_band():
  options = speech.FeatureOptions(**FEATURES)
  assert (options.win_length, options.hop_length, options.n_fft) == (160, 160, 256)
  t = np.arange(RATE) / RATE
  low = speech.log_mel(np.sin(2 * np.pi * 300 * t), options)
  high = speech.log_mel(np.sin(2 * np.pi * 2400 * t), options)
  assert low.shape == (1 + RATE // 160, 16) and low.dtype == np.float32
  # The loudest band follows the tone's frequency.
  assert np.argmax(low.mean(0)) < np.argmax(high.mean(0))
  # A clip shorter than one FFT still gives 1 + samples // hop frames.
  assert speech.log_mel(np.ones(100, np.float32), options).shape == (1, 16)
  assert speech.log_mel(np.ones(200, np.float32), options).shape == (2, 16)


def test_wav_samples_to_float_mono():
  np.testing.assert_allclose(speech.to_float_mono(np.array([-32768, 0, 16384], np.int16)), [-1, 0, 0.5])
  np.testing.assert_allclose(speech.to_float_mono(np.array([0, 128, 255], np.uint8)), [-1, 0, 127 / 128])
  stereo = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
  np.testing.assert_allclose(speech.to_float_mono(stereo), [0.5, 0.5])


def test_keyword_spotting_task_shapes_splits_and_normalization(wav_dir, tmp_path):
  task = _task(wav_dir, tmp_path / 'cache')
  assert task.input_kind == 'features' and task.output_kind == 'class'
  assert task.input_size == 16 and task.output_size == 3
  assert task.info['label_names'] == ('high', 'low', 'mid')  # folders, sorted
  assert task.info['split_source'] == 'fractions'
  # 12 files per label, val/test fractions 0.1 -> round(1.2) = 1 of each label in val and in test.
  assert task.info['label_counts'] == {'train': [10, 10, 10], 'val': [1, 1, 1], 'test': [1, 1, 1]}
  # 0.2-0.5 s at 20 ms hops: 11..26 frames; the training length is the longest training clip.
  test = task.eval_splits['test']
  assert test['inputs'].shape[0] == 3 and test['inputs'].shape[2] == 16
  assert 11 <= test['lengths'].min() and test['lengths'].max() <= 26 and task.seq_len <= 26
  assert task.length_buckets == (task.seq_len,)
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 0, 6)
  assert b['inputs'].shape == (6, task.seq_len, 16) and b['inputs'].dtype == jnp.float32
  # Standardized with train statistics: valid training frames have mean ~0 and std ~1 per band.
  data = task.train_data['arrays']
  valid = np.arange(task.seq_len)[None, :] < np.asarray(data['lengths'])[:, None]
  frames = np.asarray(data['inputs'], np.float32)[valid]
  np.testing.assert_allclose(frames.mean(0), 0, atol=2e-2)
  np.testing.assert_allclose(frames.std(0), 1, atol=2e-2)
  assert task.baseline.value == pytest.approx(1 / 3) and task.info['chance_accuracy'] == pytest.approx(1 / 3)
  # The split is fixed: the same files land in the same splits on every build.
  again = _task(wav_dir, tmp_path / 'cache')
  np.testing.assert_array_equal(again.eval_splits['val']['inputs'], task.eval_splits['val']['inputs'])


def test_second_load_reads_the_cache(wav_dir, tmp_path, monkeypatch):
  first = _task(wav_dir, tmp_path / 'cache')
  assert len(list((tmp_path / 'cache' / 'speech').glob('logmel-*.npz'))) == 1

  def fail(*args, **kwargs):
    raise AssertionError('features recomputed although they are cached')

  monkeypatch.setattr(speech, 'log_mel', fail)
  monkeypatch.setattr(speech, 'read_wav', fail)
  second = _task(wav_dir, tmp_path / 'cache')
  assert second.info['cache_file'] == first.info['cache_file']
  np.testing.assert_array_equal(second.eval_splits['test']['inputs'], first.eval_splits['test']['inputs'])
  # Other feature options are another cache entry (and here must be computed: log_mel fails).
  with pytest.raises(AssertionError, match='recomputed'):
    _task(wav_dir, tmp_path / 'cache', n_mels=8)
  # So is a changed file.
  monkeypatch.undo()
  wavfile.write(wav_dir / 'low' / 'spk0_nohash_0.wav', RATE, _tone(np.random.default_rng(9), 300.0))
  third = _task(wav_dir, tmp_path / 'cache')
  assert third.info['cache_file'] != first.info['cache_file']


def test_a_damaged_cache_is_recomputed(wav_dir, tmp_path):
  first = _task(wav_dir, tmp_path / 'cache')
  with open(first.info['cache_file'], 'wb') as f:
    f.write(b'PK\x03\x04 not a whole npz')  # e.g. a copy cut short
  second = _task(wav_dir, tmp_path / 'cache')
  np.testing.assert_array_equal(second.eval_splits['test']['inputs'], first.eval_splits['test']['inputs'])


def test_split_lists_of_speech_commands_are_used(wav_dir, tmp_path):
  (wav_dir / 'validation_list.txt').write_text('low/spk0_nohash_0.wav\nhigh/spk1_nohash_1.wav\n')
  (wav_dir / 'testing_list.txt').write_text('mid/spk2_nohash_2.wav\nother/not_selected.wav\n')
  (wav_dir / '_background_noise_').mkdir()  # ignored, like Speech Commands' noise folder
  (wav_dir / '_background_noise_' / 'README.md').write_text('noise')
  task = _task(wav_dir, tmp_path / 'cache')
  assert task.info['split_source'] == 'lists'
  assert task.info['label_counts'] == {'train': [11, 11, 11], 'val': [1, 1, 0], 'test': [0, 0, 1]}
  (wav_dir / 'testing_list.txt').unlink()
  with pytest.raises(FileNotFoundError, match='validation_list.txt without testing_list.txt'):
    _task(wav_dir, tmp_path / 'cache')


def test_labels_option_selects_folders(wav_dir, tmp_path):
  task = _task(wav_dir, tmp_path / 'cache', labels=('mid', 'low'))
  assert task.info['label_names'] == ('mid', 'low') and task.output_size == 2
  with pytest.raises(FileNotFoundError, match=r'label folder .*/yes not found'):
    _task(wav_dir, tmp_path / 'cache', labels=('yes', 'low'))


@pytest.mark.parametrize(
  'damage, match',
  [
    ('empty', r'0 label folder\(s\) \[\]; keyword spotting needs at least two'),
    ('not_wav', r'notes\.txt: not a \.wav file in label folder .low.'),
    ('bad_wav', r'broken\.wav: not a readable WAV file'),
    (
      'rate',
      r'odd\.wav: sample rate 16000 Hz, expected 8000 Hz; resample the file, or set '
      r'sample_rate=16000',
    ),
    ('no_files', r'mid: label folder with no \.wav files'),
    ('no_samples', r'silent\.wav: no samples'),
    ('missing', r'keyword spotting data folder .* not found'),
  ],
)
def test_malformed_folders_give_one_line_errors(tmp_path, damage, match):
  root = tmp_path / 'kws'
  if damage == 'empty':
    root.mkdir()
  elif damage != 'missing':
    _make_folder(root, per_label=4)
  if damage == 'not_wav':
    (root / 'low' / 'notes.txt').write_text('not audio')
  elif damage == 'bad_wav':
    (root / 'low' / 'broken.wav').write_bytes(b'RIFF\x00\x00')
  elif damage == 'rate':
    wavfile.write(root / 'high' / 'odd.wav', 16000, _tone(np.random.default_rng(1), 2400.0, 16000))
  elif damage == 'no_files':
    for f in (root / 'mid').iterdir():
      f.unlink()
  elif damage == 'no_samples':
    wavfile.write(root / 'low' / 'silent.wav', RATE, np.zeros(0, np.int16))
  with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
    _task(root, tmp_path / 'cache', val_fraction=0.25, test_fraction=0.25)
  assert '\n' not in str(e.value)


def test_fractions_that_leave_a_split_empty_are_rejected(tmp_path):
  root = _make_folder(tmp_path / 'kws', per_label=3)
  with pytest.raises(ValueError, match='the val split is empty'):
    _task(root, tmp_path / 'cache', val_fraction=0.1, test_fraction=0.1)


# ------------------------------------------------------------------------------------------- TFDS


def _speech_commands_examples(split, n=6):
  """Examples with TFDS speech_commands' features: int16 audio at 16 kHz, a label in 0..11."""
  rng = np.random.default_rng(len(split))
  return [{'audio': _tone(rng, 300.0 + 200 * (i % 3), 16000), 'label': np.int64(i % 3)} for i in range(n)]


def test_speech_commands_from_tfds_examples(tmp_path, monkeypatch):
  # TFDS's Audio feature needs TensorFlow even for mock data, so the source itself is stood in for.
  monkeypatch.setattr(
    tfds_source,
    'load_split',
    lambda name, split, data_dir=None: _speech_commands_examples(split) if name == 'speech_commands' else None,
  )
  task = tasks.make_task('speech_commands', cache_dir=str(tmp_path), n_mels=16)
  assert task.output_size == 12 and task.info['label_names'][10:] == ('_silence_', '_unknown_')
  assert task.info['num_train'] == task.info['num_val'] == task.info['num_test'] == 6
  assert task.eval_splits['val']['inputs'].shape[2] == 16
  assert task.info['sample_rate'] == 16000 and task.info['cache_file'].startswith(str(tmp_path))


@pytest.mark.skipif(HAS_TENSORFLOW, reason='TensorFlow is installed: reading speech_commands works')
def test_speech_commands_without_tensorflow_says_what_to_do(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(ValueError, match='needs TensorFlow even to read') as e:
      tasks.make_task('speech_commands', cache_dir=str(tmp_path))
  assert '\n' not in str(e.value) and 'keyword_spotting with path=' in str(e.value)


# No test on TFDS's mock data: its Audio feature needs TensorFlow even for mock examples, which `make test`
# does not install, so such a test always skipped. test_speech_commands_from_tfds_examples covers the task
# built from TFDS examples (the TFDS reader stood in for) and the test above the TensorFlow-less path.


# --------------------------------------------------------------------------------------- learning


def test_tiny_classifier_learns_the_tones(tmp_path):
  root = _make_folder(tmp_path / 'kws', per_label=30, seed=1)
  task = _task(root, tmp_path / 'cache', val_fraction=0.2, test_fraction=0.2)
  model = models.Classifier(
    rnn=dr.DeepRNN(cell='gru', features=16, num_layers=1), num_classes=task.output_size, pooling='mean'
  )
  state, losses = fit(model, task, steps=40, batch_size=18, learning_rate=1e-2)
  params = state.params
  test = task.eval_splits['test']
  pred = model.apply({'params': params}, test['inputs'], test['lengths'], method=model.predict)
  accuracy = float(np.mean(np.asarray(pred) == test['targets']))
  # Loose: chance is 1/3; 40 steps on these tones reach ~1.0.
  assert accuracy > 0.8, accuracy
  assert float(losses[-5:].mean()) < float(losses[:5].mean())
