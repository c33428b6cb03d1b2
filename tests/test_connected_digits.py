"""Connected spoken digits on a fake FSDD folder the tests write: each digit a sine burst at its own
frequency (a speaker shifts them a little), ``{digit}_{speaker}_{index}.wav`` at 8 kHz. File names,
speaker splits, silence insertion, transcripts, determinism, one-line errors, the constant-guess
baseline, and a tiny bidirectional LSTM trained a few steps through the public train_step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeprnn_jax import tasks
from deeprnn_jax.tasks import connected_digits as cd
from deeprnn_jax.tasks import speech
from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib

from runner_helpers import fit

sf = pytest.importorskip('soundfile', reason='the fake recordings are written with soundfile')
pytest.importorskip('jiwer', reason="error rates need jiwer: pip install 'jiwer>=4'")
pytest.importorskip('librosa', reason='log-mel features need librosa')

RATE = 8000
SPEAKERS = {'ann': 1.0, 'bob': 1.06, 'cat': 0.94}  # name -> frequency shift of the speaker's voice
TAKES = 2
# Small features keep the tests fast: 16 mel bands, 20 ms windows every 10 ms, 2 frames stacked every 2.
SMALL = dict(
  n_mels=16,
  window_ms=20.0,
  hop_ms=10.0,
  stack_frames=2,
  frame_stride=2,
  num_train=12,
  num_val=3,
  num_test=4,
  min_silence_ms=30.0,
  max_silence_ms=80.0,
  val_speakers='bob',
  test_speakers='cat',
)


def _burst(digit, shift, take):
  """0.2-0.28 s of a Hann-windowed sine at ``(300 + 300 * digit) * shift`` Hz; float32."""
  n = int(RATE * (0.2 + 0.04 * take + 0.002 * digit))
  t = np.arange(n) / RATE
  return (0.3 * np.sin(2 * np.pi * (300 + 300 * digit) * shift * t) * np.hanning(n)).astype(np.float32)


def _write_fsdd(folder, speakers=SPEAKERS, takes=TAKES, rate=RATE):
  folder.mkdir(parents=True, exist_ok=True)
  for name, shift in speakers.items():
    for d in range(10):
      for k in range(takes):
        sf.write(str(folder / f'{d}_{name}_{k}.wav'), _burst(d, shift, k), rate, subtype='PCM_16')
  return folder


@pytest.fixture(scope='module')
def fsdd(tmp_path_factory):
  """A fake clone of the repository: the WAVs in its recordings/ folder, beside a README."""
  root = tmp_path_factory.mktemp('fsdd')
  _write_fsdd(root / 'recordings')
  (root / 'README.md').write_text('fake')
  return root


@pytest.fixture(scope='module')
def task(fsdd, tmp_path_factory):
  return tasks.make_task('connected_digits', path=str(fsdd), cache_dir=str(tmp_path_factory.mktemp('c')), **SMALL)


def _texts(batch):
  return [cd.stt.ids_to_text(t[:n], cd.ALPHABET) for t, n in zip(batch['targets'], batch['label_lengths'])]


# ----------------------------------------------------------------------------------- the folder


def test_file_names_are_parsed_and_sorted(fsdd, tmp_path):
  r = cd.parse_name(fsdd / 'recordings' / '7_bob_1.wav')
  assert (r.digit, r.speaker, r.index) == (7, 'bob', 1)
  recs = cd.scan_fsdd(fsdd)  # the clone's recordings/ folder, its README ignored
  assert len(recs) == 3 * 10 * TAKES
  assert [(x.speaker, x.digit, x.index) for x in recs[:3]] == [('ann', 0, 0), ('ann', 0, 1), ('ann', 1, 0)]
  assert cd.scan_fsdd(fsdd / 'recordings') == recs  # the recordings folder itself
  for bad in ('10_bob_1.wav', 'x_bob_1.wav', '3-bob-1.wav', '3_bob.wav', '3_b b_1.wav'):
    with pytest.raises(ValueError, match=r'not an FSDD file name \{digit\}_\{speaker\}_\{index\}\.wav') as e:
      cd.parse_name(tmp_path / bad)
    assert '\n' not in str(e.value)


def test_missing_or_malformed_folders_are_one_line_errors(fsdd, tmp_path):
  def make(path, **options):
    return tasks.make_task('connected_digits', path=str(path), cache_dir=str(tmp_path / 'c'), **options)

  cases = [
    (FileNotFoundError, 'data folder .* not found: pass path=', dict(path=tmp_path / 'nowhere')),
    (ValueError, 'no .wav recordings', dict(path=tmp_path)),  # an empty folder
  ]
  odd = _write_fsdd(tmp_path / 'odd', {'ann': 1.0}, takes=1)
  sf.write(str(odd / 'three_ann_9.wav'), _burst(3, 1.0, 0), RATE)
  cases.append((ValueError, r'three_ann_9.wav: not an FSDD file name', dict(path=odd)))
  cases += [
    (ValueError, "test_speakers: speaker 'zed' has no recordings.*speakers: ann, bob, cat", dict(test_speakers='zed')),
    (ValueError, r'speaker\(s\) bob in both val_speakers and test_speakers', dict(test_speakers='bob,cat')),
    (
      ValueError,
      r'speaker\(s\) ann in both train_speakers and val_speakers',
      dict(train_speakers=['ann'], val_speakers='ann'),
    ),
    (ValueError, 'no training speaker left', dict(val_speakers='ann', test_speakers='bob,cat')),
    (ValueError, 'val_speakers is empty', dict(val_speakers='')),
    (ValueError, 'min_digits=3 and max_digits=2', dict(min_digits=3, max_digits=2)),
    (ValueError, 'min_silence_ms=-1', dict(min_silence_ms=-1.0)),
    (ValueError, 'num_val must be an int >= 1', dict(num_val=0)),
  ]
  for error, message, options in cases:
    options = {**SMALL, 'path': fsdd, **options}
    with pytest.raises(error, match=message) as e:
      make(**options)
    assert '\n' not in str(e.value), message
  # A speaker missing a digit, and a file of another rate (refused, not resampled).
  gap = _write_fsdd(tmp_path / 'gap')
  (gap / '4_cat_0.wav').unlink()
  (gap / '4_cat_1.wav').unlink()
  with pytest.raises(ValueError, match="test speaker 'cat' has no recording of digit\\(s\\) 4"):
    make(gap, **SMALL)
  rate = _write_fsdd(tmp_path / 'rate')
  for k in range(TAKES):
    for d in range(10):  # every take of ann's at 16 kHz, so any utterance of hers reads one
      sf.write(str(rate / f'{d}_ann_{k}.wav'), _burst(d, 1.0, k), 16000)
  with pytest.raises(ValueError, match=r'_ann_\d\.wav: sample rate 16000 Hz, expected 8000 Hz; resample the file') as e:
    make(rate, **SMALL)
  assert '\n' not in str(e.value)


def test_speakers_of_the_splits_are_disjoint(task):
  assert task.info['speakers'] == {'train': ['ann'], 'val': ['bob'], 'test': ['cat']}
  split = cd.split_speakers(['a', 'b', 'c', 'd', 'e'], None, ['b'], 'c, d')
  assert split == {'train': ('a', 'e'), 'val': ('b',), 'test': ('c', 'd')}
  assert cd.split_speakers(['a', 'b', 'c', 'd'], 'a', 'b', 'c')['train'] == ('a',)  # d left out


# ----------------------------------------------------------------------------------- utterances


def test_plans_join_takes_with_silences_into_the_transcribed_waveform():
  takes = {(s, d): [cd.Recording(f'{d}_{s}_{k}.wav', d, s, k) for k in range(3)] for s in 'xy' for d in range(10)}
  rng = np.random.default_rng(0)
  plans = cd.plan_utterances(takes, ['x', 'y'], 200, (2, 4), (40, 100), rng)
  assert {p.speaker for p in plans} == {'x', 'y'}
  assert {len(p.digits) for p in plans} == {2, 3, 4}
  silences = np.concatenate([p.silences for p in plans])
  assert silences.min() >= 40 and silences.max() <= 100 and len(set(silences)) > 30
  for p in plans:
    assert len(p.silences) == len(p.digits) + 1
    assert all(r.speaker == p.speaker and r.digit == d for r, d in zip(p.takes, p.digits))
  assert {r.index for p in plans for r in p.takes} == {0, 1, 2}
  assert cd.transcript((3, 1, 4, 0)) == 'three one four zero'

  # The waveform: exact zeros for the silences, each take's samples unchanged, in order.
  audio = {f'{d}_x_{k}.wav': np.full(10 + d + k, d + 1.0, np.float32) for d in range(10) for k in range(3)}
  p = plans[0] if plans[0].speaker == 'x' else next(q for q in plans if q.speaker == 'x')
  x = cd.synthesize(p, audio.__getitem__, 0.0, np.random.default_rng(1))
  want = [np.zeros(p.silences[0])]
  for r, g in zip(p.takes, p.silences[1:]):
    want += [np.full(10 + r.digit + r.index, r.digit + 1.0), np.zeros(g)]
  np.testing.assert_array_equal(x, np.concatenate(want))
  noisy = cd.synthesize(p, audio.__getitem__, 0.01, np.random.default_rng(1))
  assert noisy.dtype == np.float32 and 0.008 < np.std(noisy - x) < 0.012


def test_task_utterances_transcripts_and_lengths(task, fsdd):
  assert task.output_kind == 'ctc' and task.output_size == len(cd.ALPHABET) + 1 == 17
  assert task.input_size == 2 * 16
  assert (task.info['num_train'], task.info['num_val'], task.info['num_test']) == (12, 3, 4)
  rng = np.random.default_rng([0, 2])  # the test split's plans, drawn again from the documented generator
  takes = {}
  for r in cd.scan_fsdd(fsdd):
    takes.setdefault((r.speaker, r.digit), []).append(r)
  plans = cd.plan_utterances(takes, ['cat'], 4, (2, 5), (240, 640), rng)
  test = task.eval_splits['test']
  assert _texts(test) == [p.transcript for p in plans]
  # Frames: 1 + samples // hop of the joined waveform, then ceil(frames / stride) steps.
  samples = [sum(p.silences) + sum(len(_burst(r.digit, SPEAKERS['cat'], r.index)) for r in p.takes) for p in plans]
  np.testing.assert_array_equal(test['lengths'], [-(-(1 + s // 80) // 2) for s in samples])
  for text in _texts(task.eval_splits['val']) + _texts(test):
    words = text.split(' ')
    assert 2 <= len(words) <= 5 and set(words) <= set(cd.DIGIT_WORDS)


def test_utterance_mean_normalization_and_encode(task, fsdd):
  """Each utterance's mean log-mel frame is subtracted before standardizing; ``encode`` of the same
  waveform gives the same steps."""
  takes = {}
  for r in cd.scan_fsdd(fsdd):
    takes.setdefault((r.speaker, r.digit), []).append(r)
  plans = cd.plan_utterances(takes, ['bob'], 3, (2, 5), (240, 640), np.random.default_rng([0, 1]))
  val = task.eval_splits['val']
  mean, std = np.asarray(task.info['feature_mean']), np.asarray(task.info['feature_std'])
  for i, p in enumerate(plans):
    x = cd.synthesize(p, lambda f: speech.read_wav(f, RATE), 1e-3, np.random.default_rng([0, 1, i]))
    frames = 1 + len(x) // 80
    steps = val['inputs'][i, : val['lengths'][i]]
    # Undo the stacking (step t, slot j holds frame 2t + j) and the standardization.
    raw = np.stack([steps[t // 2, 16 * (t % 2) : 16 * (t % 2) + 16] for t in range(frames)]) * std + mean
    np.testing.assert_allclose(raw.mean(axis=0), 0.0, atol=1e-3 * np.abs(raw).max())
    np.testing.assert_allclose(task.encode([x])['inputs'][0], steps, atol=1e-4)


def test_same_seed_same_utterances(fsdd, tmp_path):
  def make(cache, **options):
    return tasks.make_task('connected_digits', path=str(fsdd), cache_dir=str(tmp_path / cache), **{**SMALL, **options})

  a, b = make('a'), make('b')  # two caches: the features are computed twice
  for split in ('val', 'test'):
    for k in a.eval_splits[split]:
      np.testing.assert_array_equal(a.eval_splits[split][k], b.eval_splits[split][k])
  np.testing.assert_array_equal(np.asarray(a.train_data['flat']), np.asarray(b.train_data['flat']))
  other = make('a', seed=1)
  assert _texts(other.eval_splits['test']) != _texts(a.eval_splits['test'])
  assert other.info['cache_file'] != a.info['cache_file']
  # More training utterances leave the validation and test utterances as they were (a generator per split).
  more = make('a', num_train=14)
  assert more.info['num_train'] == 14
  for split in ('val', 'test'):
    assert _texts(more.eval_splits[split]) == _texts(a.eval_splits[split])


def test_baseline_is_the_best_constant_transcript(task):
  assert cd.best_constant_guess(['one one', 'one one'], [1, 2, 3])['cer'] == 0.0
  best = cd.best_constant_guess(['two two', 'two five'], [1, 2])
  # 'two two': no error on the first, one word (4 characters: 'two' -> 'five') wrong on the second.
  assert best == {'cer': pytest.approx(4 / 15), 'cer_guess': 'two two', 'wer': 0.25, 'wer_guess': 'two two'}
  refs = _texts(task.eval_splits['test'])
  worst_possible = cd.stt.ctc.error_rates(refs, ['nine'] * len(refs))['cer']
  assert task.baseline.metric == 'cer' and 0 < task.baseline.value <= min(worst_possible, 1.0)
  assert task.info['constant_guess'] in task.baseline.description


# ------------------------------------------------------------------------------------ training


def test_a_tiny_bidirectional_lstm_trains_end_to_end(task):
  c = config_lib.default_config()
  c.task.name = 'connected_digits'
  c.model.cell, c.model.width, c.model.depth, c.model.bidirectional = 'lstm', 16, 1, True
  model = build.model_from_config(c, task)
  state, losses = fit(model, task, steps=12, batch_size=8, learning_rate=1e-2)
  assert np.all(np.isfinite(losses)) and losses[-3:].mean() < losses[:3].mean()
  test = task.eval_splits['test']
  log_probs = jax.jit(lambda p, x, n: model.apply({'params': p}, x, n, method='predict'))(
    state.params, jnp.asarray(test['inputs']), jnp.asarray(test['lengths'])
  )
  scores = task.score('test', np.asarray(log_probs), test)
  assert set(scores) == {'cer', 'wer'} and all(np.isfinite(v) for v in scores.values())
