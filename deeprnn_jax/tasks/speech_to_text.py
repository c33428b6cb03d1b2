r"""Speech to text with CTC: characters from log-mel frames (Graves et al. 2013, with characters).

A model reads an utterance's (stacked) log-mel frames and emits per-frame logits over the
alphabet's characters and the CTC blank (output kind ``'ctc'``, ``tasks/base.py``); it is trained
on the CTC negative log-likelihood and judged by the character and word error rates of its decoded
transcripts (``Task.score``: ``cer``, ``wer``, from ``deeprnn_jax.ctc``).

Data, three sources with one pipeline:

* ``speech_to_text`` with ``path``: a folder in LibriSpeech's layout (Panayotov et al. 2015; its
  extracted ``LibriSpeech/`` folder is one): split sub-folders named by ``train_split``,
  ``val_split``, ``test_split`` (default ``train-clean-100``, ``dev-clean``, ``test-clean``), each
  holding ``<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` (or ``.wav``) and one
  ``<speaker>-<chapter>.trans.txt`` per chapter folder with lines ``UTT-ID TRANSCRIPT``. Every audio
  file needs a transcript line and every line an audio file.
* ``speech_to_text`` with ``train_manifest``, ``val_manifest``, ``test_manifest``: CSV (``.csv``) or
  TSV (any other suffix, tab-separated) files with a header row naming the columns ``path`` and
  ``transcript`` (others are ignored); a relative path is read from the manifest's folder.
* ``librispeech``: TFDS ``librispeech`` (splits ``train_clean100``, ``dev_clean``, ``test_clean``
  by default), prepared as array_record. TFDS 4.9's ``Audio`` feature imports TensorFlow even to
  read, so this source needs ``tensorflow-cpu``; the folder source on the extracted archive does not.

Audio: read with soundfile (libsndfile: FLAC, WAV and more), channels averaged, resampled to
``sample_rate`` with librosa where a file's rate differs. Features are ``tasks.speech``'s (log-mel
by librosa, standardized per band with the training frames' mean and standard deviation, cached
in ``<cache_dir>/speech``; see that module).

Frame stacking (Sak et al. 2015, "Fast and accurate recurrent neural network acoustic models"):
after standardization, ``stack_frames`` consecutive frames are concatenated and every
``frame_stride``-th such stack is kept: :math:`x'_t = [x_{st}, x_{st+1}, \dots, x_{st+k-1}]` with
:math:`s` = ``frame_stride``, :math:`k` = ``stack_frames`` and zeros past the last frame, so ``T``
frames become :math:`\lceil T / s \rceil` steps of ``k * n_mels`` features. At 10 ms hops the
default 3 x 3 gives 30 ms steps: a third of the recurrent steps, still more steps than characters
in read speech (about 15 characters a second). An utterance whose transcript needs more steps than
it has (one per character plus one blank between repeated characters) is an error naming it.

Transcripts: lower-cased, runs of whitespace made one space, trimmed; each character must be in
``alphabet`` (default the 26 letters, space and apostrophe, LibriSpeech's characters), or the line
is an error naming the file and line; ``unknown_chars='drop'`` deletes such characters instead.
Character ``alphabet[i]`` is label id ``i + 1``; id 0 is the CTC blank.

Shapes: inputs ``[batch, steps, stack_frames * n_mels]`` float32, ``lengths`` ``[batch]`` steps,
``targets`` ``[batch, L]`` int32 label ids (0 in padding), ``label_lengths`` ``[batch]``. Training
utterances are kept on device once, concatenated frame after frame (no padding to the longest), and
gathered per batch into length buckets; ``max_frames`` (in steps) leaves longer training utterances
out (a CTC target cannot be cut with its audio). Evaluation utterances are all kept.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax._extras import require
from deeprnn_jax import ctc
from deeprnn_jax.tasks import pipeline, speech, tfds_source
from deeprnn_jax.tasks.base import CTC_BLANK_ID, Baseline, Task

ALPHABET = " 'abcdefghijklmnopqrstuvwxyz"
AUDIO_SUFFIXES = ('.flac', '.wav')
UNKNOWN_CHARS = ('error', 'drop')
DECODERS = ('greedy', 'beam')
_STD_FLOOR = 1e-5


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One audio file and its transcript as read; ``where`` names the transcript's origin
  (``file:line``) for error messages."""

  audio: pathlib.Path
  text: str
  where: str


# ------------------------------------------------------------------------------------ text


def normalize_text(text: str, alphabet: str, unknown_chars: str, where: str) -> str:
  """``text`` lower-cased with whitespace runs made one space; characters outside ``alphabet`` are
  a one-line error naming ``where`` (``unknown_chars='error'``) or are deleted (``'drop'``)."""
  out = ' '.join(text.lower().split())
  unknown = sorted({c for c in out if c not in alphabet})
  if unknown and unknown_chars == 'error':
    raise ValueError(
      f'{where}: character(s) {"".join(unknown)!r} not in the alphabet {alphabet!r}; add them with '
      f"alphabet=..., or delete them with unknown_chars='drop'"
    )
  if unknown:
    out = ' '.join(''.join(c for c in out if c in alphabet).split())
  if not out:
    raise ValueError(f'{where}: empty transcript; give the utterance its text or remove it')
  return out


def text_to_ids(text: str, alphabet: str) -> np.ndarray:
  """Label ids ``[len(text)]`` int32: ``alphabet[i]`` -> ``i + 1`` (0 is the blank)."""
  index = {c: i + 1 for i, c in enumerate(alphabet)}
  return np.array([index[c] for c in text], np.int32)


def ids_to_text(ids: Sequence[int], alphabet: str) -> str:
  """Label ids (no blanks) back to text."""
  return ''.join(alphabet[int(i) - 1] for i in ids)


def min_steps(ids: np.ndarray) -> int:
  """The fewest frames a CTC path for ``ids`` needs: one per label, plus a blank between each pair
  of equal neighbours."""
  ids = np.asarray(ids)
  return int(len(ids) + np.sum(ids[1:] == ids[:-1]))


# ----------------------------------------------------------------------------------- audio


def read_audio(file: pathlib.Path, sample_rate: int) -> np.ndarray:
  """An audio file (FLAC, WAV, ...) as ``[samples]`` float32 mono at ``sample_rate`` (resampled by
  librosa if the file's rate differs); one-line errors for an unreadable or empty file."""
  soundfile = require('soundfile', 'speech', __name__)
  try:
    data, rate = soundfile.read(str(file), dtype='float32', always_2d=True)
  except Exception as e:  # libsndfile's error, or an OS error for a file it cannot open
    cause = ' '.join(str(e).split())[:120]
    raise ValueError(
      f'{file}: not a readable audio file ({type(e).__name__}: {cause}); replace it or remove it and its transcript'
    ) from e
  if data.shape[0] == 0:
    raise ValueError(f'{file}: no samples; remove the empty file and its transcript')
  signal = data.mean(axis=1)
  if rate != sample_rate:
    librosa = require('librosa', 'speech', __name__)
    signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate).astype(np.float32)
  return signal


def stack_frames(frames: np.ndarray, stack: int, stride: int) -> np.ndarray:
  """``[T, F]`` -> ``[ceil(T / stride), stack * F]``: step ``t`` is frames ``stride * t .. stride * t +
  stack - 1`` side by side, zeros past the last frame (see module docstring)."""
  frames = np.asarray(frames)
  steps = -(-len(frames) // stride)
  padded = np.concatenate([frames, np.zeros((steps * stride + stack, frames.shape[1]), frames.dtype)])
  return np.concatenate([padded[j : j + steps * stride : stride] for j in range(stack)], axis=1)


# ----------------------------------------------------------------------------------- sources


def scan_librispeech(split_dir: pathlib.Path) -> list[Utterance]:
  """Every utterance of one LibriSpeech-layout split folder, sorted by transcript file and line.

  One-line errors: no transcripts, a line that is not ``UTT-ID TRANSCRIPT``, a line without its audio
  file, an utterance id listed twice, an audio file without a transcript line.
  """
  if not split_dir.is_dir():
    parent = split_dir.parent
    have = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    raise FileNotFoundError(
      f'split folder {split_dir} not found (existing: {", ".join(have) or "none"}); set '
      f'train_split/val_split/test_split to sub-folders of path'
    )
  out: list[Utterance] = []
  with_transcripts = set()
  for trans in sorted(split_dir.rglob('*.trans.txt')):
    folder = trans.parent
    with_transcripts.add(folder)
    audio = {
      p.name.split('.')[0]: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
    }
    seen = set()
    for n, line in enumerate(trans.read_text(encoding='utf-8').splitlines(), 1):
      if not line.strip():
        continue
      parts = line.strip().split(maxsplit=1)
      if len(parts) < 2:
        raise ValueError(f'{trans}:{n}: expected "UTT-ID TRANSCRIPT", got {line.strip()[:40]!r}')
      utt, text = parts
      if utt in seen:
        raise ValueError(f'{trans}:{n}: utterance {utt!r} listed twice; keep one line per utterance')
      if utt not in audio:
        raise ValueError(
          f'{trans}:{n}: transcript of {utt!r} but no {utt}.flac or {utt}.wav in {folder}; add the '
          f'audio or remove the line'
        )
      seen.add(utt)
      out.append(Utterance(audio[utt], text, f'{trans}:{n}'))
    for utt, file in audio.items():
      if utt not in seen:
        raise ValueError(f'{file}: no line for {utt!r} in {trans}; add its transcript or remove the file')
  for file in sorted(split_dir.rglob('*')):
    if file.suffix.lower() in AUDIO_SUFFIXES and file.parent not in with_transcripts:
      raise ValueError(
        f'{file}: no <speaker>-<chapter>.trans.txt in its folder; add the transcripts or remove the file'
      )
  if not out:
    raise ValueError(
      f"{split_dir}: no *.trans.txt transcripts; expected LibriSpeech's layout "
      f'<speaker>/<chapter>/<speaker>-<chapter>.trans.txt beside the .flac files'
    )
  return out


def read_manifest(file: pathlib.Path) -> list[Utterance]:
  """The utterances of a CSV / TSV manifest (header row with ``path`` and ``transcript``)."""
  if not file.is_file():
    raise FileNotFoundError(f'manifest {file} not found')
  delimiter = ',' if file.suffix.lower() == '.csv' else '\t'
  with open(file, newline='', encoding='utf-8') as f:
    rows = list(csv.reader(f, delimiter=delimiter))
  if not rows:
    raise ValueError(f'{file}: empty manifest; the first row must name the columns path and transcript')
  header = [h.strip().lower() for h in rows[0]]
  if 'path' not in header or 'transcript' not in header:
    kind = 'comma' if delimiter == ',' else 'tab'
    raise ValueError(f'{file}:1: header {rows[0]!r} lacks the columns path and transcript ({kind}-separated)')
  col_path, col_text = header.index('path'), header.index('transcript')
  out = []
  for n, row in enumerate(rows[1:], 2):
    if not any(cell.strip() for cell in row):
      continue
    if len(row) <= max(col_path, col_text):
      raise ValueError(f'{file}:{n}: {len(row)} column(s), the header has {len(header)}')
    audio = pathlib.Path(os.path.expanduser(row[col_path].strip()))
    audio = audio if audio.is_absolute() else file.parent / audio
    if not audio.is_file():
      raise ValueError(f"{file}:{n}: audio file {audio} not found (relative paths are read from the manifest's folder)")
    out.append(Utterance(audio, row[col_text], f'{file}:{n}'))
  if not out:
    raise ValueError(f'{file}: no utterances below the header')
  return out


# ------------------------------------------------------------------------------------ the task


def _check_options(alphabet: str, unknown_chars: str, stack: int, stride: int, decode: str, beam_size: int) -> None:
  if not alphabet or len(set(alphabet)) != len(alphabet):
    raise ValueError(f'alphabet {alphabet!r} must be non-empty with no character twice')
  if alphabet != alphabet.lower():
    raise ValueError(f'alphabet {alphabet!r} has upper-case characters; transcripts are lower-cased')
  if unknown_chars not in UNKNOWN_CHARS:
    raise ValueError(f'unknown_chars={unknown_chars!r}; use one of {UNKNOWN_CHARS}')
  if stack < 1 or stride < 1:
    raise ValueError(f'stack_frames={stack} and frame_stride={stride} must be >= 1')
  if decode not in DECODERS:
    raise ValueError(f'decode={decode!r}; use one of {DECODERS}')
  if beam_size < 1:
    raise ValueError(f'beam_size must be >= 1, got {beam_size}')


def ctc_task(
  *,
  name: str,
  features: Sequence[np.ndarray],
  transcripts: Sequence[str],
  wheres: Sequence[str],
  splits: Mapping[str, Sequence[int]],
  alphabet: str,
  stack: int,
  stride: int,
  max_frames: int | None,
  decode: str,
  beam_size: int,
  options: speech.FeatureOptions,
  info: Mapping[str, Any],
) -> Task:
  """A ``'ctc'`` Task from per-utterance log-mel frames and normalized transcripts (module docstring).

  Args:
    features: ``[frames_i, n_mels]`` per utterance.
    transcripts: the text of each utterance.
    wheres: where each utterance comes from (for messages), per utterance.
    splits: ``{'train', 'val', 'test'}`` -> utterance indices.
    stack: frames stacked into one step (``stack_frames``).
    stride: frames between the starts of consecutive steps.
    max_frames: the longest training utterance kept, in steps.
    decode: how ``Task.score`` decodes (``ctc.decode_batch``).
    beam_size: the beam of that decoding.
  """
  train = list(splits['train'])
  frames = np.concatenate([features[i] for i in train], axis=0)
  mean = frames.mean(axis=0)
  std = np.maximum(frames.std(axis=0), _STD_FLOOR)

  def steps_of(x):
    return stack_frames(((x - mean) / std).astype(np.float32), stack, stride)

  steps = [steps_of(f) for f in features]
  labels = [text_to_ids(t, alphabet) for t in transcripts]
  for i in range(len(steps)):
    need = min_steps(labels[i])
    if len(steps[i]) < need:
      raise ValueError(
        f'{wheres[i]}: the transcript needs at least {need} steps but its audio gives '
        f'{len(steps[i])} at frame_stride={stride}; lower frame_stride or check the pairing'
      )
  if max_frames is not None:
    if max_frames < 1:
      raise ValueError(f'max_frames must be >= 1, got {max_frames}')
    kept = [i for i in train if len(steps[i]) <= max_frames]
    if not kept:
      raise ValueError(f'max_frames={max_frames} leaves out every training utterance; raise it')
  else:
    kept = train
  dropped = len(train) - len(kept)

  # Training utterances on device back to back: padding every one to the longest would multiply
  # LibriSpeech's memory several times over.
  lengths = np.array([len(steps[i]) for i in kept], np.int32)
  label_lengths = np.array([len(labels[i]) for i in kept], np.int32)
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32)
  flat = np.concatenate([steps[i] for i in kept], axis=0).astype(np.float16)
  padded_labels, _ = pipeline.pad_sequences([labels[i] for i in kept], int(label_lengths.max()))
  seq_len = int(lengths.max())
  buckets = pipeline.default_buckets(seq_len, smallest=32)
  which = pipeline.assign_buckets(lengths, buckets)
  members = [np.flatnonzero(which == b).astype(np.int32) for b in range(len(buckets))]
  probs = tuple(len(m) / len(kept) for m in members)
  # Each bucket's targets are cut to its longest transcript: the CTC recursion runs over 2L + 1 states.
  label_widths = tuple(int(max(label_lengths[m].max(), 1)) if len(m) else 1 for m in members)
  train_data = {
    'flat': jnp.asarray(flat),
    'offsets': jnp.asarray(offsets),
    'lengths': jnp.asarray(lengths),
    'labels': jnp.asarray(padded_labels),
    'label_lengths': jnp.asarray(label_lengths),
    'buckets': tuple(jnp.asarray(m if len(m) else np.zeros(1, np.int32)) for m in members),
  }
  num_kept = len(kept)
  full_label_width = int(label_lengths.max())

  def train_batch(key, step, batch_size, *, data=None, bucket=None):
    data = train_data if data is None else data
    if bucket is None:
      idx = pipeline.epoch_indices(key, step, batch_size, num_kept)
      width, label_width = seq_len, full_label_width
    else:
      pool = data['buckets'][bucket]
      idx = pool[pipeline.epoch_indices(jax.random.fold_in(key, bucket + 1), step, batch_size, pool.shape[0])]
      width, label_width = buckets[bucket], label_widths[bucket]
    n = data['lengths'][idx]
    t = jnp.arange(width)
    valid = t[None, :] < n[:, None]
    rows = jnp.where(valid, data['offsets'][idx][:, None] + t[None, :], 0)
    inputs = jnp.where(valid[..., None], data['flat'][rows].astype(jnp.float32), 0.0)
    return {
      'inputs': inputs,
      'lengths': n,
      'targets': data['labels'][idx, :label_width],
      'label_lengths': data['label_lengths'][idx],
    }

  def split_batch(idx):
    inputs, lens = pipeline.pad_sequences([steps[i] for i in idx], max(len(steps[i]) for i in idx), np.float32)
    targets, label_lens = pipeline.pad_sequences([labels[i] for i in idx], max(len(labels[i]) for i in idx))
    return {'inputs': inputs, 'lengths': lens, 'targets': targets, 'label_lengths': label_lens}

  eval_splits = {s: split_batch(list(splits[s])) for s in ('val', 'test')}

  def score(split, predictions, batch):
    del split
    hyps = ctc.decode_batch(
      np.asarray(predictions), np.asarray(batch['lengths']), method=decode, beam_size=beam_size, blank=CTC_BLANK_ID
    )
    refs = [ids_to_text(t[:n], alphabet) for t, n in zip(np.asarray(batch['targets']), batch['label_lengths'])]
    return ctc.error_rates(refs, [ids_to_text(h, alphabet) for h in hyps])

  def encode(examples):
    """Audio (``[samples]`` float arrays at ``sample_rate``, or file paths) -> ``{'inputs', 'lengths'}``."""
    seqs = []
    for ex in examples:
      signal = read_audio(pathlib.Path(ex), options.sample_rate) if isinstance(ex, (str, os.PathLike)) else ex
      seqs.append(steps_of(speech.log_mel(np.asarray(signal, np.float32), options)))
    inputs, lens = pipeline.pad_sequences(seqs, max(len(s) for s in seqs), np.float32)
    return {'inputs': inputs, 'lengths': lens}

  counts = {s: len(idx) for s, idx in splits.items()}
  return Task(
    name=name,
    input_kind='features',
    input_size=steps[0].shape[1],
    output_kind='ctc',
    output_size=len(alphabet) + 1,
    seq_len=seq_len,
    train_batch=train_batch,
    eval_splits=eval_splits,
    baseline=Baseline('cer', 1.0, 'an empty transcript (every character deleted): CER 1 on any split'),
    metric_modes={'loss': 'min', 'loss_per_label': 'min', 'cer': 'min', 'wer': 'min'},
    info={
      'alphabet': alphabet,
      'blank_id': CTC_BLANK_ID,
      'num_train': len(kept),
      'num_val': counts['val'],
      'num_test': counts['test'],
      'dropped_train_over_max_frames': dropped,
      'stack_frames': stack,
      'frame_stride': stride,
      'decode': decode,
      'beam_size': beam_size,
      'feature_mean': mean.tolist(),
      'feature_std': std.tolist(),
      **dataclasses.asdict(options),
      **info,
    },
    train_data=train_data,
    length_buckets=buckets,
    bucket_probs=probs,
    score=score,
    encode=encode,
  )


def _from_utterances(
  name: str,
  by_split: Mapping[str, list[Utterance]],
  *,
  alphabet,
  unknown_chars,
  options,
  stack,
  stride,
  max_frames,
  decode,
  beam_size,
  cache_dir,
  info,
) -> Task:
  utts, splits = [], {}
  for split in ('train', 'val', 'test'):
    splits[split] = list(range(len(utts), len(utts) + len(by_split[split])))
    utts.extend(by_split[split])
  texts = [normalize_text(u.text, alphabet, unknown_chars, u.where) for u in utts]
  files = [u.audio for u in utts]
  # A listing, not the bytes: hashing every file would read the whole dataset on every start.
  stats = [f.stat() for f in files]
  key = {'files': [[str(f.resolve()), s.st_size, s.st_mtime_ns] for f, s in zip(files, stats)]}
  features, cache_file = speech.cached_features(
    key, [str(f) for f in files], lambda i: read_audio(files[i], options.sample_rate), options, cache_dir
  )
  return ctc_task(
    name=name,
    features=features,
    transcripts=texts,
    wheres=[u.where for u in utts],
    splits=splits,
    alphabet=alphabet,
    stack=stack,
    stride=stride,
    max_frames=max_frames,
    decode=decode,
    beam_size=beam_size,
    options=options,
    info={'cache_file': str(cache_file), **info},
  )


def speech_to_text(
  *,
  path: str | None = None,
  train_split: str = 'train-clean-100',
  val_split: str = 'dev-clean',
  test_split: str = 'test-clean',
  train_manifest: str | None = None,
  val_manifest: str | None = None,
  test_manifest: str | None = None,
  alphabet: str = ALPHABET,
  unknown_chars: str = 'error',
  sample_rate: int = 16000,
  n_mels: int = 40,
  window_ms: float = 25.0,
  hop_ms: float = 10.0,
  stack_frames: int = 3,
  frame_stride: int = 3,
  max_frames: int | None = None,
  decode: str = 'greedy',
  beam_size: int = 8,
  cache_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """Speech to text from a LibriSpeech-layout folder (``path``) or three manifests (see the module
  docstring).

  Options: ``path`` with ``train_split`` / ``val_split`` / ``test_split`` (its sub-folders), or
  ``train_manifest`` / ``val_manifest`` / ``test_manifest``; ``alphabet`` (characters, label ids from
  1), ``unknown_chars`` (``'error'`` or ``'drop'``); features ``sample_rate``, ``n_mels``,
  ``window_ms``, ``hop_ms``; ``stack_frames`` / ``frame_stride``; ``max_frames`` (longest training
  utterance kept, in steps after striding; default all); ``decode`` (``'greedy'`` or ``'beam'``) and
  ``beam_size`` for the ``cer`` / ``wer`` of ``Task.score``; ``cache_dir``. ``seed`` is unused (data
  and splits are fixed).
  """
  del seed
  _check_options(alphabet, unknown_chars, stack_frames, frame_stride, decode, beam_size)
  manifests = {'train': train_manifest, 'val': val_manifest, 'test': test_manifest}
  if path and any(manifests.values()):
    raise ValueError('speech_to_text reads a folder (path=...) or manifests (train_manifest=...), not both')
  if path:
    root = pathlib.Path(os.path.expanduser(str(path)))
    if not root.is_dir():
      raise FileNotFoundError(
        f'speech_to_text data folder {root} not found: pass path=<folder with the '
        f'LibriSpeech split folders, e.g. train-clean-100, dev-clean, test-clean>'
      )
    names = {'train': train_split, 'val': val_split, 'test': test_split}
    by_split = {s: scan_librispeech(root / n) for s, n in names.items()}
    info = {'path': str(root), 'source': 'librispeech_folder', 'split_folders': names}
  elif all(manifests.values()):
    by_split = {s: read_manifest(pathlib.Path(os.path.expanduser(str(m)))) for s, m in manifests.items()}
    info = {'source': 'manifest', 'manifests': manifests}
  else:
    raise ValueError(
      'speech_to_text needs path=<LibriSpeech-layout folder> or all of train_manifest, '
      'val_manifest and test_manifest (CSV/TSV with columns path, transcript)'
    )
  options = speech.FeatureOptions(sample_rate=sample_rate, n_mels=n_mels, window_ms=window_ms, hop_ms=hop_ms)
  return _from_utterances(
    'speech_to_text',
    by_split,
    alphabet=alphabet,
    unknown_chars=unknown_chars,
    options=options,
    stack=stack_frames,
    stride=frame_stride,
    max_frames=max_frames,
    decode=decode,
    beam_size=beam_size,
    cache_dir=cache_dir,
    info=info,
  )


def librispeech(
  *,
  data_dir: str | None = None,
  train_split: str = 'train_clean100',
  val_split: str = 'dev_clean',
  test_split: str = 'test_clean',
  alphabet: str = ALPHABET,
  unknown_chars: str = 'error',
  n_mels: int = 40,
  window_ms: float = 25.0,
  hop_ms: float = 10.0,
  stack_frames: int = 3,
  frame_stride: int = 3,
  max_frames: int | None = None,
  decode: str = 'greedy',
  beam_size: int = 8,
  cache_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """LibriSpeech from TFDS ``librispeech`` (16 kHz int16 ``speech``, ``text``); ``data_dir`` is the
  TFDS data dir, the splits are TFDS split names. Needs TensorFlow to read (module docstring).
  Other options as in ``speech_to_text``. The cache key hashes the audio, so every start reads the
  dataset (features are not recomputed)."""
  import hashlib  # pylint: disable=g-import-not-at-top

  del seed
  _check_options(alphabet, unknown_chars, stack_frames, frame_stride, decode, beam_size)
  options = speech.FeatureOptions(sample_rate=16000, n_mels=n_mels, window_ms=window_ms, hop_ms=hop_ms)
  names = {'train': train_split, 'val': val_split, 'test': test_split}
  audio, texts, wheres, splits = [], [], [], {}
  digest = hashlib.sha256()
  for split, tfds_split in names.items():
    try:
      examples = tfds_source.load_split('librispeech', tfds_split, data_dir)
    except tfds_source.DatasetNotPreparedError as e:
      if speech._needs_tensorflow(e):  # pylint: disable=protected-access
        raise ValueError(
          'TFDS librispeech needs TensorFlow even to read (the Audio feature of tensorflow-datasets 4.9 '
          'imports it): pip install tensorflow-cpu, or extract the LibriSpeech archives and use task '
          'speech_to_text with path=<their LibriSpeech folder>, which needs no TensorFlow'
        ) from e
      raise
    splits[split] = list(range(len(audio), len(audio) + len(examples)))
    for i, ex in enumerate(examples):
      where = f'TFDS librispeech {tfds_split}[{i}] ({tfds_source.text_of(ex.get("id", i))})'
      audio.append(np.asarray(ex['speech']))
      texts.append(normalize_text(tfds_source.text_of(ex['text']), alphabet, unknown_chars, where))
      wheres.append(where)
      digest.update(audio[-1].tobytes())
  if any(not splits[s] for s in splits):
    raise ValueError(f'TFDS librispeech: an empty split among {names}')
  key = {'tfds': 'librispeech', 'splits': names, 'audio_sha256': digest.hexdigest()}
  features, cache_file = speech.cached_features(
    key, wheres, lambda i: speech.to_float_mono(audio[i]), options, cache_dir
  )
  return ctc_task(
    name='librispeech',
    features=features,
    transcripts=texts,
    wheres=wheres,
    splits=splits,
    alphabet=alphabet,
    stack=stack_frames,
    stride=frame_stride,
    max_frames=max_frames,
    decode=decode,
    beam_size=beam_size,
    options=options,
    info={'cache_file': str(cache_file), 'source': 'tfds', 'tfds_splits': names},
  )
