"""Keyword spotting: classify a short utterance from its log-mel frames, one frame per time step.

Data, two sources with one pipeline:

* ``keyword_spotting``: a local folder ``path`` with one sub-folder of ``.wav`` files per label
  (the layout of Speech Commands, Warden 2018: its extracted ``speech_commands_v0.02`` archive is
  such a folder). Sub-folders whose name starts with ``_`` (its ``_background_noise_``) and top-level
  files are ignored. Splits: when ``validation_list.txt`` and ``testing_list.txt`` are in ``path``
  (Speech Commands ships them: lines ``label/file.wav``), the files they list are the val and test
  splits and the rest is train; otherwise each label's files are split by ``val_fraction`` and
  ``test_fraction`` with a fixed seed, so the split never moves with the run's seed. Every file must
  have the sample rate ``sample_rate``: a file that differs is an error, not silently resampled (a
  folder mixing rates is usually a data mistake; a folder all at another rate needs only
  ``sample_rate=`` set). Several channels are averaged to mono.
* ``speech_commands``: TFDS ``speech_commands`` (12 labels: 10 words, ``_silence_``,
  ``_unknown_``; 16 kHz). TFDS 4.9's ``Audio`` feature imports TensorFlow even to read, so this
  source needs ``tensorflow-cpu`` installed; the local loader on the extracted archive does not.

Features: log-mel spectrogram by librosa (``melspectrogram`` then ``power_to_db``: ``10 log10``
of the mel power, floored at 1e-10, with no per-utterance clipping, so a frame's value does not
depend on the loudest frame of its utterance): ``window_ms`` Hann windows every ``hop_ms``,
``n_mels`` Slaney mel bands up to half the sample rate. An utterance of ``s`` samples gives
``1 + s // hop`` frames. Each mel band is then standardized with the mean and standard deviation of
all training frames (``info['feature_mean']``, ``info['feature_std']``: apply them to new audio).

Cache: the features of a dataset are computed once and stored in ``<cache_dir>/speech/*.npz``
(default ``~/.cache/deeprnn_jax``), keyed by the data (for a folder: every WAV file's path, size
and modification time; for TFDS: a hash of the audio), the feature options and librosa's version.
A changed file, option or librosa gives a new key, so a stale cache is never read.

Shapes: inputs ``[batch, frames, n_mels]`` float32, targets ``[batch]`` int32 label ids, lengths
``[batch]`` frames per utterance. Training utterances longer than ``max_frames`` are cut;
evaluation utterances never are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np

from deeprnn_jax._extras import require
from deeprnn_jax.tasks import pipeline, tfds_source
from deeprnn_jax.tasks.base import Baseline, Task

DEFAULT_CACHE_DIR = '~/.cache/deeprnn_jax'
SPLIT_LISTS = {'val': 'validation_list.txt', 'test': 'testing_list.txt'}
# Bump when the feature computation changes, so caches of the old computation are not read.
FEATURE_VERSION = 1
# The labels of TFDS speech_commands, in its ClassLabel order (its builder's WORDS + silence + unknown).
SPEECH_COMMANDS_LABELS = (
  'down',
  'go',
  'left',
  'no',
  'off',
  'on',
  'right',
  'stop',
  'up',
  'yes',
  '_silence_',
  '_unknown_',
)
_STD_FLOOR = 1e-5


@dataclasses.dataclass(frozen=True)
class FeatureOptions:
  """How log-mel frames are computed (see module docstring)."""

  sample_rate: int = 16000
  n_mels: int = 40
  window_ms: float = 25.0
  hop_ms: float = 10.0

  def __post_init__(self):
    for name in ('sample_rate', 'n_mels', 'window_ms', 'hop_ms'):
      if not getattr(self, name) > 0:
        raise ValueError(f'{name} must be > 0, got {getattr(self, name)}')
    if self.hop_length < 1 or self.win_length < 2:
      raise ValueError(
        f'window_ms={self.window_ms} and hop_ms={self.hop_ms} at {self.sample_rate} Hz '
        f'give windows of {self.win_length} and hops of {self.hop_length} samples; '
        f'make them longer'
      )

  @property
  def win_length(self) -> int:
    return int(round(self.sample_rate * self.window_ms / 1000))

  @property
  def hop_length(self) -> int:
    return int(round(self.sample_rate * self.hop_ms / 1000))

  @property
  def n_fft(self) -> int:
    """The FFT size: the smallest power of two that holds a window."""
    return 1 << (self.win_length - 1).bit_length()


def log_mel(signal: np.ndarray, options: FeatureOptions) -> np.ndarray:
  """``[samples]`` float mono audio in [-1, 1] -> ``[1 + samples // hop, n_mels]`` float32 log-mel
  frames (dB). A signal shorter than one FFT is zero-padded to one first."""
  librosa = require('librosa', 'speech', __name__)  # imports numba: only when features are made
  y = np.asarray(signal, np.float32)
  if len(y) < options.n_fft:
    # Padding at the end keeps 1 + len // hop frames of the original; the STFT needs a whole window.
    frames = 1 + len(y) // options.hop_length
    y = np.pad(y, (0, options.n_fft - len(y)))
  else:
    frames = None
  mel = librosa.feature.melspectrogram(
    y=y,
    sr=options.sample_rate,
    n_fft=options.n_fft,
    hop_length=options.hop_length,
    win_length=options.win_length,
    n_mels=options.n_mels,
    power=2.0,
  )
  out = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T.astype(np.float32)
  return out if frames is None else out[:frames]


def to_float_mono(audio: np.ndarray) -> np.ndarray:
  """WAV samples (int16, int32, uint8 or float; ``[samples]`` or ``[samples, channels]``) ->
  ``[samples]`` float32 in [-1, 1], channels averaged."""
  a = np.asarray(audio)
  if a.dtype == np.uint8:
    x = (a.astype(np.float32) - 128.0) / 128.0
  elif np.issubdtype(a.dtype, np.integer):
    x = a.astype(np.float32) / float(-np.iinfo(a.dtype).min)
  else:
    x = a.astype(np.float32)
  return x.mean(axis=1) if x.ndim == 2 else x


def read_wav(file: pathlib.Path, sample_rate: int) -> np.ndarray:
  """A WAV file as ``[samples]`` float32 mono; a one-line ValueError names an unreadable file, a
  wrong sample rate or an empty file."""
  from scipy.io import wavfile  # pylint: disable=g-import-not-at-top

  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', wavfile.WavFileWarning)  # unknown chunks (e.g. LIST) are harmless
      rate, data = wavfile.read(file)
  except Exception as e:  # scipy raises ValueError, EOFError, ... for files that are not WAV
    cause = ' '.join(str(e).split())[:120]
    raise ValueError(
      f'{file}: not a readable WAV file ({type(e).__name__}: {cause}); replace it or remove it from its label folder'
    ) from e
  if rate != sample_rate:
    raise ValueError(
      f'{file}: sample rate {rate} Hz, expected {sample_rate} Hz; resample the file, '
      f'or set sample_rate={rate} if every file has that rate'
    )
  if data.size == 0:
    raise ValueError(f'{file}: no samples; remove the empty file')
  return to_float_mono(data)


def scan_folder(path: str | os.PathLike, labels: Sequence[str] | None) -> tuple[pathlib.Path, list[str], list[str]]:
  """``(root, label_names, files)``: ``files`` are ``label/name.wav`` paths relative to ``root``,
  in label order, sorted within a label. One-line errors for a missing folder, no label folders,
  an empty label folder, or a file that is not ``.wav`` (hidden files are skipped)."""
  root = pathlib.Path(os.path.expanduser(str(path)))
  if not root.is_dir():
    raise FileNotFoundError(
      f'keyword spotting data folder {root} not found: pass path=<folder with one sub-folder of .wav files per label>'
    )
  if labels:
    names = list(labels)
    for name in names:
      if not (root / name).is_dir():
        raise FileNotFoundError(
          f'label folder {root / name} not found (from labels=...); existing: '
          f'{", ".join(sorted(p.name for p in root.iterdir() if p.is_dir()))}'
        )
  else:
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(('_', '.')))
  if len(names) < 2:
    raise ValueError(
      f'{root}: {len(names)} label folder(s) {names}; keyword spotting needs at least '
      f'two sub-folders of .wav files, one per label'
    )
  files = []
  for name in names:
    wavs = []
    for entry in sorted((root / name).iterdir()):
      if entry.name.startswith('.'):
        continue
      if not (entry.is_file() and entry.suffix.lower() == '.wav'):
        raise ValueError(f'{entry}: not a .wav file in label folder {name!r}; keep only .wav files in label folders')
      wavs.append(f'{name}/{entry.name}')
    if not wavs:
      raise ValueError(f'{root / name}: label folder with no .wav files; add recordings or remove the folder')
    files.extend(wavs)
  return root, names, files


def split_by_lists(root: pathlib.Path, files: Sequence[str]) -> dict[str, list[int]] | None:
  """Split indices from ``validation_list.txt``/``testing_list.txt`` in ``root``; None if neither
  file exists. Listed paths not among ``files`` (labels not selected) are ignored."""
  present = {k: (root / v).is_file() for k, v in SPLIT_LISTS.items()}
  if not any(present.values()):
    return None
  if not all(present.values()):
    have = SPLIT_LISTS['val' if present['val'] else 'test']
    missing = SPLIT_LISTS['test' if present['val'] else 'val']
    raise FileNotFoundError(
      f'{root}: {have} without {missing}; provide both split lists or neither '
      f'(then val_fraction/test_fraction split the files)'
    )
  listed = {
    k: {line.strip().replace('\\', '/') for line in (root / v).read_text().splitlines() if line.strip()}
    for k, v in SPLIT_LISTS.items()
  }
  out = {'train': [], 'val': [], 'test': []}
  for i, f in enumerate(files):
    out['val' if f in listed['val'] else 'test' if f in listed['test'] else 'train'].append(i)
  for split in ('val', 'test'):
    if not out[split]:
      raise ValueError(
        f'{root / SPLIT_LISTS[split]} lists none of the {len(files)} selected .wav '
        f'files; its lines must be label/file.wav paths'
      )
  return out


def split_by_fraction(
  label_ids: np.ndarray, val_fraction: float, test_fraction: float, where: str
) -> dict[str, list[int]]:
  """Per label, a fixed-seed permutation of its files: the first ``round(n * val_fraction)`` are
  val, the next ``round(n * test_fraction)`` test, the rest train (label proportions kept)."""
  if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
    raise ValueError(
      f'val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) with a sum below 1'
    )
  rng = np.random.default_rng(pipeline.SPLIT_SEED)
  out = {'train': [], 'val': [], 'test': []}
  for label in np.unique(label_ids):
    idx = rng.permutation(np.flatnonzero(label_ids == label))
    n_val, n_test = int(round(len(idx) * val_fraction)), int(round(len(idx) * test_fraction))
    out['val'].extend(idx[:n_val])
    out['test'].extend(idx[n_val : n_val + n_test])
    out['train'].extend(idx[n_val + n_test :])
  for split, idx in out.items():
    if not idx:
      raise ValueError(
        f'{where}: the {split} split is empty with val_fraction={val_fraction}, '
        f'test_fraction={test_fraction} and {len(label_ids)} files; add files or '
        f'change the fractions'
      )
  return {k: sorted(int(i) for i in v) for k, v in out.items()}


def _librosa_version() -> str:
  from importlib import metadata  # pylint: disable=g-import-not-at-top

  return metadata.version('librosa')


def cached_features(
  key: Mapping[str, object],
  ids: Sequence[str],
  signal: Callable[[int], np.ndarray],
  options: FeatureOptions,
  cache_dir: str | None,
) -> tuple[list[np.ndarray], pathlib.Path]:
  """Log-mel frames of every utterance, read from the cache or computed once and stored.

  Args:
    key: what identifies the data (a file listing or a content hash); hashed with ``options``,
      ``FEATURE_VERSION`` and librosa's version into the cache file name.
    ids: one name per utterance (stored, and checked on read).
    signal: ``i -> [samples]`` float32 audio of utterance ``i`` (only called on a cache miss).

  Returns:
    ``(features, cache_file)``: ``features[i]`` is ``[frames_i, n_mels]`` float32.
  """
  material = json.dumps(
    {'data': key, 'options': dataclasses.asdict(options), 'version': FEATURE_VERSION, 'librosa': _librosa_version()},
    sort_keys=True,
    default=str,
  )
  digest = hashlib.sha256(material.encode()).hexdigest()[:20]
  folder = pathlib.Path(os.path.expanduser(cache_dir or DEFAULT_CACHE_DIR)) / 'speech'
  file = folder / f'logmel-{digest}.npz'
  if file.is_file():
    try:
      with np.load(file, allow_pickle=False) as z:
        stored_ids, offsets, frames = z['ids'].tolist(), z['offsets'], z['features']
    except Exception:  # pylint: disable=broad-except  (a damaged cache is only a cache miss)
      stored_ids = None
    if stored_ids == list(ids):
      return [frames[offsets[i] : offsets[i + 1]] for i in range(len(ids))], file
  features = [log_mel(signal(i), options) for i in range(len(ids))]
  offsets = np.concatenate([[0], np.cumsum([len(f) for f in features])]).astype(np.int64)
  folder.mkdir(parents=True, exist_ok=True)
  # Written under a temporary name and renamed: a concurrent reader (another run of a sweep) sees
  # either no cache or a whole one.
  fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, features=np.concatenate(features, axis=0), offsets=offsets, ids=np.asarray(list(ids), dtype=str))
    os.replace(tmp, file)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  return features, file


def keyword_task(
  *,
  name: str,
  features: Sequence[np.ndarray],
  label_ids: np.ndarray,
  splits: Mapping[str, Sequence[int]],
  label_names: Sequence[str],
  max_frames: int | None,
  info: Mapping[str, object],
) -> Task:
  """A classification Task from per-utterance log-mel frames (see module docstring).

  Baseline: accuracy on test of always predicting the most frequent training label.
  """
  label_ids = np.asarray(label_ids, np.int32)
  train = list(splits['train'])
  frames = np.concatenate([features[i] for i in train], axis=0)
  mean = frames.mean(axis=0)
  std = np.maximum(frames.std(axis=0), _STD_FLOOR)
  longest = max(len(features[i]) for i in train)
  max_frames = longest if max_frames is None else int(max_frames)
  if max_frames < 1:
    raise ValueError(f'max_frames must be >= 1, got {max_frames}')

  def batch(idx, length=None, dtype=np.float32):
    seqs = [((features[i] - mean) / std).astype(dtype) for i in idx]
    inputs, lengths = pipeline.pad_sequences(seqs, length or max(len(s) for s in seqs), dtype)
    return pipeline.class_batch(inputs, label_ids[list(idx)], lengths)

  # float16 on device halves the training set's memory (Speech Commands: ~1 GB in float32);
  # standardized features lose nothing that matters at its 3 significant digits.
  train_arrays = batch(train, max_frames, np.float16)
  buckets = pipeline.default_buckets(max_frames, smallest=32)

  def finish(b):
    return {**b, 'inputs': b['inputs'].astype(np.float32)}

  train_batch, train_data, probs = pipeline.array_stream(
    train_arrays, finish, lengths=train_arrays['lengths'], buckets=buckets, time_keys=('inputs',)
  )
  eval_splits = {'val': batch(splits['val']), 'test': batch(splits['test'])}
  num_classes = len(label_names)
  majority, acc = pipeline.majority_accuracy(label_ids[train], eval_splits['test']['targets'], num_classes)
  counts = {s: np.bincount(label_ids[list(idx)], minlength=num_classes).tolist() for s, idx in splits.items()}
  return Task(
    name=name,
    input_kind='features',
    input_size=frames.shape[1],
    output_kind='class',
    output_size=num_classes,
    seq_len=max_frames,
    train_batch=train_batch,
    eval_splits=eval_splits,
    baseline=Baseline(
      'accuracy', acc, f'always predict the most frequent training label ({label_names[majority]!r}), accuracy on test'
    ),
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={
      'label_names': tuple(label_names),
      'chance_accuracy': 1 / num_classes,
      'majority_class': majority,
      'num_train': len(train),
      'num_val': len(splits['val']),
      'num_test': len(splits['test']),
      'label_counts': counts,
      'truncated_fraction_train': float(np.mean([len(features[i]) > max_frames for i in train])),
      'feature_mean': mean.tolist(),
      'feature_std': std.tolist(),
      **info,
    },
    train_data=train_data,
    length_buckets=buckets,
    bucket_probs=probs,
  )


def keyword_spotting(
  *,
  path: str | None = None,
  labels: Sequence[str] | None = None,
  sample_rate: int = 16000,
  n_mels: int = 40,
  window_ms: float = 25.0,
  hop_ms: float = 10.0,
  max_frames: int | None = None,
  val_fraction: float = 0.1,
  test_fraction: float = 0.1,
  cache_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """Keyword spotting from a local folder of WAV files, one sub-folder per label (see module
  docstring).

  Options: ``path`` (required), ``labels`` (the label folders to use, in label-id order; default
  every folder, sorted), ``sample_rate`` (every file must have it), ``n_mels``, ``window_ms``,
  ``hop_ms`` (features), ``max_frames`` (training cut; default the longest), ``val_fraction`` /
  ``test_fraction`` (used when the folder has no split lists), ``cache_dir``. No threshold.
  ``seed`` is accepted for uniformity and unused: data and splits are fixed.
  """
  del seed
  if not path:
    raise ValueError('keyword_spotting needs path=<folder with one sub-folder of .wav files per label>')
  options = FeatureOptions(sample_rate=sample_rate, n_mels=n_mels, window_ms=window_ms, hop_ms=hop_ms)
  root, label_names, files = scan_folder(path, labels)
  label_of = {name: i for i, name in enumerate(label_names)}
  label_ids = np.array([label_of[f.split('/')[0]] for f in files], np.int32)
  splits = split_by_lists(root, files)
  split_source = 'lists' if splits is not None else 'fractions'
  if splits is None:
    splits = split_by_fraction(label_ids, val_fraction, test_fraction, str(root))
  # A listing, not the bytes: hashing every WAV would read the whole dataset on every start.
  stats = [(root / f).stat() for f in files]
  key = {'folder': str(root.resolve()), 'files': [[f, s.st_size, s.st_mtime_ns] for f, s in zip(files, stats)]}
  features, cache_file = cached_features(
    key, files, lambda i: read_wav(root / files[i], sample_rate), options, cache_dir
  )
  return keyword_task(
    name='keyword_spotting',
    features=features,
    label_ids=label_ids,
    splits=splits,
    label_names=label_names,
    max_frames=max_frames,
    info={
      'path': str(root),
      'split_source': split_source,
      'cache_file': str(cache_file),
      **dataclasses.asdict(options),
    },
  )


def _needs_tensorflow(error: BaseException) -> bool:
  while error is not None:
    if isinstance(error, ModuleNotFoundError) and 'tensorflow' in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def speech_commands(
  *,
  data_dir: str | None = None,
  n_mels: int = 40,
  window_ms: float = 25.0,
  hop_ms: float = 10.0,
  max_frames: int | None = None,
  cache_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """Speech Commands v0.02 from TFDS ``speech_commands`` (train / validation / test; 12 labels,
  see ``SPEECH_COMMANDS_LABELS``; 16 kHz, clips up to 1 s = 101 frames); ``data_dir`` is the TFDS
  data dir. Needs TensorFlow to read (see module docstring). Options as in ``keyword_spotting``.
  The cache key hashes the audio, so every start reads the dataset (features are not recomputed).
  """
  del seed
  options = FeatureOptions(sample_rate=16000, n_mels=n_mels, window_ms=window_ms, hop_ms=hop_ms)
  examples = {}
  for split, tfds_split in (('train', 'train'), ('val', 'validation'), ('test', 'test')):
    try:
      examples[split] = tfds_source.load_split('speech_commands', tfds_split, data_dir)
    except tfds_source.DatasetNotPreparedError as e:
      if _needs_tensorflow(e):
        raise ValueError(
          'TFDS speech_commands needs TensorFlow even to read (the Audio feature of '
          'tensorflow-datasets 4.9 imports it): pip install tensorflow-cpu, or extract '
          'speech_commands_v0.02.tar.gz and use task keyword_spotting with path=<that folder>, '
          'which needs no TensorFlow'
        ) from e
      raise
  # The int16 audio is kept as read and converted one utterance at a time: Speech Commands as
  # float32 would need twice the memory of its ~3 GB of samples.
  audio, label_ids, ids, splits = [], [], [], {}
  digest = hashlib.sha256()
  for split, exs in examples.items():
    splits[split] = list(range(len(audio), len(audio) + len(exs)))
    for i, ex in enumerate(exs):
      audio.append(np.asarray(ex['audio']))
      label_ids.append(int(ex['label']))
      ids.append(f'{split}/{i}')
      digest.update(audio[-1].tobytes())
      digest.update(str(label_ids[-1]).encode())
  key = {'tfds': 'speech_commands', 'audio_sha256': digest.hexdigest()}
  features, cache_file = cached_features(key, ids, lambda i: to_float_mono(audio[i]), options, cache_dir)
  return keyword_task(
    name='speech_commands',
    features=features,
    label_ids=np.array(label_ids),
    splits=splits,
    label_names=SPEECH_COMMANDS_LABELS,
    max_frames=max_frames,
    info={'cache_file': str(cache_file), **dataclasses.asdict(options)},
  )
