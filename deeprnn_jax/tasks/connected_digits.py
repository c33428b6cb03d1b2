r"""Connected spoken digits: CTC speech to text on utterances joined from the Free Spoken Digit Dataset.

The CPU-sized analogue of TIDIGITS (Leonard 1984), the classic connected-digit benchmark: a model
reads the log-mel frames of an utterance of several spoken digits and writes its transcript in words
("three one four"), trained with CTC over characters and judged by CER and WER
(``speech_to_text.ctc_task``: the same features, frame stacking, training pipeline, decoding and
scores as ``speech_to_text``; only the data differ).

Data: the Free Spoken Digit Dataset (FSDD; the public GitHub repository
``Jakobovski/free-spoken-digit-dataset``): 3,000 WAV files of 8 kHz mono 16-bit audio from 6 speakers
(george, jackson, lucas, nicolas, theo, yweweler), each saying each digit 50 times, named
``{digit}_{speaker}_{index}.wav`` and trimmed to little silence at either end. ``path`` is the folder
of those files, or a checkout of the repository (its ``recordings/`` sub-folder is read)::

  git clone https://github.com/Jakobovski/free-spoken-digit-dataset ~/.cache/deeprnn_jax/free-spoken-digit-dataset

Every file must be at ``sample_rate`` (default 8000): a file at another rate is a one-line error, not
resampled (FSDD's files are all at 8 kHz, so another rate is a data mistake; a folder all at another
rate needs only ``sample_rate=`` set). Other ``.wav`` names, a folder without recordings, a speaker
not in the folder, or a speaker missing a digit are one-line errors; non-WAV and hidden files are
ignored.

Utterances (built by ``plan_utterances`` and ``synthesize``, deterministic in ``seed``): split ``s``
gets ``num_<s>`` utterances; utterance ``i`` draws, from ``numpy.random.default_rng([seed, s])``, a
speaker uniformly among the split's speakers, a digit count :math:`n \sim U\{d_{min}..d_{max}\}`,
digits :math:`k_1..k_n \sim U\{0..9\}`, for each digit one of that speaker's takes uniformly, and
:math:`n + 1` silences :math:`g_0..g_n \sim U[g_{min}, g_{max}]` ms (before, between and after the
digits). Its waveform is

.. math:: x = [0_{g_0}, r_{k_1}, 0_{g_1}, r_{k_2}, \dots, r_{k_n}, 0_{g_n}] + \sigma \epsilon,
   \quad \epsilon \sim N(0, 1)

with :math:`\sigma` = ``noise_level`` (a noise floor, so that the inserted silence is not digital
zero, which no recording has; the noise is drawn from ``default_rng([seed, s, i])``). Its transcript
is the digits' words joined by single spaces. The splits never share a speaker: ``val_speakers`` and
``test_speakers`` (default one unseen voice each: nicolas and theo) and ``train_speakers`` (default
every other speaker in the folder) must be disjoint, so val and test both measure an unseen voice.
Sweeping ``task.options.test_speakers`` over the six speakers gives a speaker cross-validation.

Alphabet: the 15 letters of the ten digit words and the space (label ids 1..16, 0 the CTC blank).

Features (``tasks.speech``): log-mel frames of ``window_ms`` windows every ``hop_ms``, ``n_mels``
bands up to 4 kHz; with ``utterance_mean=True`` (the default) each utterance's mean frame is subtracted
from its frames (cepstral mean normalization, in the log-mel domain: :math:`x_t - \frac{1}{T}\sum_s x_s`,
which removes a speaker's and a microphone's fixed spectral tilt), then every band is standardized with
the training frames' statistics and the frames are stacked ``stack_frames`` at a stride of
``frame_stride`` (default 3 and 3: 30 ms steps). With the defaults an utterance holds 3.5 digits
(FSDD's takes last 0.44 s on average) and 4.5 silences of 0.15 s on average: the 3,000 training
utterances of seed 0 average 2.35 s, about 78 steps, for about 16.5 characters. Features are
computed once and cached in ``<cache_dir>/speech``, keyed by the folder's listing (path,
size and modification time of each WAV) and every utterance's plan.

Baseline: the best constant transcript, one digit word said :math:`m` times for
:math:`m \in [d_{min}, d_{max}]`, chosen on the test references: its CER is ``Task.baseline``
(``info['constant_guess']`` names it, ``info['constant_guess_wer']`` is the best constant's WER).
An empty transcript scores CER and WER 1.

Shapes (as ``speech_to_text``): inputs ``[batch, steps, stack_frames * n_mels]`` float32, ``lengths``
``[batch]``, ``targets`` ``[batch, L]`` int32 label ids, ``label_lengths`` ``[batch]``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Callable, Mapping, Sequence

import numpy as np

from deeprnn_jax import ctc
from deeprnn_jax.tasks import pipeline, speech
from deeprnn_jax.tasks import speech_to_text as stt
from deeprnn_jax.tasks.base import Baseline, Task

DIGIT_WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
ALPHABET = ' ' + ''.join(sorted(set(''.join(DIGIT_WORDS))))  # ' efghinorstuvwxz'
FSDD_SPEAKERS = ('george', 'jackson', 'lucas', 'nicolas', 'theo', 'yweweler')
DEFAULT_PATH = '~/.cache/deeprnn_jax/free-spoken-digit-dataset'
FILE_NAME = re.compile(r'([0-9])_([A-Za-z0-9]+)_([0-9]+)\.wav')
SPLITS = ('train', 'val', 'test')
# Part of the feature cache's key: bump when the planning or the joining of utterances changes.
BUILD_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Recording:
  """One FSDD file: ``{digit}_{speaker}_{index}.wav``."""

  file: pathlib.Path
  digit: int
  speaker: str
  index: int


@dataclasses.dataclass(frozen=True)
class Plan:
  """One joined utterance: ``takes[j]`` says digit ``digits[j]``; ``silences`` (``len(digits) + 1``
  sample counts) go before, between and after them."""

  speaker: str
  digits: tuple[int, ...]
  takes: tuple[Recording, ...]
  silences: tuple[int, ...]

  @property
  def transcript(self) -> str:
    return transcript(self.digits)


def transcript(digits: Sequence[int]) -> str:
  """``(3, 1, 4)`` -> ``'three one four'``."""
  return ' '.join(DIGIT_WORDS[int(d)] for d in digits)


# ------------------------------------------------------------------------------------- the folder


def recordings_folder(path: str | os.PathLike) -> pathlib.Path:
  """The folder of WAV files: ``path`` itself, or its ``recordings/`` (a repository checkout)."""
  root = pathlib.Path(os.path.expanduser(str(path)))
  if not root.is_dir():
    raise FileNotFoundError(
      f'connected_digits data folder {root} not found: pass path=<the FSDD recordings folder or a clone of '
      f'github.com/Jakobovski/free-spoken-digit-dataset>'
    )
  sub = root / 'recordings'
  return sub if sub.is_dir() else root


def parse_name(file: pathlib.Path) -> Recording:
  """A ``{digit}_{speaker}_{index}.wav`` file name as a Recording; a one-line error otherwise."""
  m = FILE_NAME.fullmatch(file.name)
  if not m:
    raise ValueError(
      f'{file}: not an FSDD file name {{digit}}_{{speaker}}_{{index}}.wav (e.g. 3_theo_12.wav); rename or remove it'
    )
  return Recording(file, int(m.group(1)), m.group(2), int(m.group(3)))


def scan_fsdd(path: str | os.PathLike) -> list[Recording]:
  """Every recording in the folder, sorted by speaker, digit and take index (so the order never
  depends on the file system). Hidden and non-WAV files are skipped."""
  folder = recordings_folder(path)
  out = [
    parse_name(f) for f in folder.iterdir() if f.is_file() and not f.name.startswith('.') and f.suffix.lower() == '.wav'
  ]
  if not out:
    raise ValueError(
      f'{folder}: no .wav recordings; expected FSDD files {{digit}}_{{speaker}}_{{index}}.wav (its recordings/ folder)'
    )
  return sorted(out, key=lambda r: (r.speaker, r.digit, r.index))


def _names(value: str | Sequence[str] | None, key: str) -> tuple[str, ...] | None:
  if value is None:
    return None
  names = [v.strip() for v in value.split(',')] if isinstance(value, str) else [str(v).strip() for v in value]
  names = [v for v in names if v]
  if len(set(names)) != len(names):
    raise ValueError(f'{key}={value!r} names a speaker twice')
  return tuple(names)


def split_speakers(
  present: Sequence[str],
  train: str | Sequence[str] | None,
  val: str | Sequence[str] | None,
  test: str | Sequence[str] | None,
) -> dict[str, tuple[str, ...]]:
  """``{'train', 'val', 'test'}`` -> speakers: disjoint, each non-empty and in ``present``;
  ``train`` None is every present speaker not in val or test."""
  given = {
    'train': _names(train, 'train_speakers'),
    'val': _names(val, 'val_speakers'),
    'test': _names(test, 'test_speakers'),
  }
  have = sorted(set(present))
  for split in ('val', 'test'):
    if not given[split]:
      raise ValueError(f'{split}_speakers is empty; name at least one speaker of {", ".join(have)}')
  if given['train'] is None:
    held = set(given['val']) | set(given['test'])
    given['train'] = tuple(s for s in have if s not in held)
  out = dict(given)
  for split, names in out.items():
    for name in names:
      if name not in have:
        raise ValueError(
          f'{split}_speakers: speaker {name!r} has no recordings in the folder; speakers: {", ".join(have)}'
        )
  for a, b in (('train', 'val'), ('train', 'test'), ('val', 'test')):
    both = sorted(set(out[a]) & set(out[b]))
    if both:
      raise ValueError(
        f'speaker(s) {", ".join(both)} in both {a}_speakers and {b}_speakers; each split must be an unseen voice'
      )
  if not out['train']:
    raise ValueError(f'no training speaker left after val {out["val"]} and test {out["test"]}; free one')
  return out


# ------------------------------------------------------------------------------------ utterances


def plan_utterances(
  takes: Mapping[tuple[str, int], Sequence[Recording]],
  speakers: Sequence[str],
  num: int,
  digits: tuple[int, int],
  silence: tuple[int, int],
  rng: np.random.Generator,
) -> list[Plan]:
  """``num`` utterance plans (module docstring): ``takes[(speaker, digit)]`` are that speaker's
  recordings of that digit, ``digits`` the inclusive range of digits per utterance, ``silence`` the
  inclusive range of each silence in samples."""
  out = []
  for _ in range(num):
    speaker = speakers[int(rng.integers(len(speakers)))]
    n = int(rng.integers(digits[0], digits[1] + 1))
    said = tuple(int(d) for d in rng.integers(0, 10, size=n))
    chosen = []
    for d in said:
      pool = takes[(speaker, d)]
      chosen.append(pool[int(rng.integers(len(pool)))])
    gaps = tuple(int(g) for g in rng.integers(silence[0], silence[1] + 1, size=n + 1))
    out.append(Plan(speaker, said, tuple(chosen), gaps))
  return out


def synthesize(plan: Plan, read: Callable[[pathlib.Path], np.ndarray], noise_level: float, rng: np.random.Generator):
  """The plan's ``[samples]`` float32 waveform: silences and recordings in turn, plus Gaussian noise of
  standard deviation ``noise_level`` (module docstring)."""
  parts = [np.zeros(plan.silences[0], np.float32)]
  for rec, gap in zip(plan.takes, plan.silences[1:]):
    parts += [read(rec.file), np.zeros(gap, np.float32)]
  x = np.concatenate(parts)
  if noise_level > 0:
    x = x + noise_level * rng.standard_normal(len(x)).astype(np.float32)
  return x.astype(np.float32)


def _check(num: Mapping[str, int], min_digits, max_digits, min_silence_ms, max_silence_ms, noise_level) -> None:
  for split, n in num.items():
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
      raise ValueError(f'num_{split} must be an int >= 1, got {n!r}')
  if not 1 <= min_digits <= max_digits:
    raise ValueError(f'min_digits={min_digits} and max_digits={max_digits} need 1 <= min_digits <= max_digits')
  if not 0 <= min_silence_ms <= max_silence_ms:
    raise ValueError(
      f'min_silence_ms={min_silence_ms} and max_silence_ms={max_silence_ms} need 0 <= min_silence_ms <= max_silence_ms'
    )
  if not noise_level >= 0:
    raise ValueError(f'noise_level must be >= 0, got {noise_level}')


def best_constant_guess(references: Sequence[str], counts: Sequence[int]) -> dict[str, object]:
  """The constant transcripts ``word`` x ``m`` (every digit word, every ``m`` in ``counts``) with the
  lowest CER and the lowest WER on ``references``: ``{'cer', 'cer_guess', 'wer', 'wer_guess'}``."""
  best = {'cer': np.inf, 'wer': np.inf}
  for word in DIGIT_WORDS:
    for m in counts:
      guess = ' '.join([word] * m)
      rates = ctc.error_rates(references, [guess] * len(references))
      for metric in ('cer', 'wer'):
        if rates[metric] < best[metric]:
          best[metric], best[f'{metric}_guess'] = rates[metric], guess
  return best


def connected_digits(
  *,
  path: str = DEFAULT_PATH,
  train_speakers: str | Sequence[str] | None = None,
  val_speakers: str | Sequence[str] = ('nicolas',),
  test_speakers: str | Sequence[str] = ('theo',),
  num_train: int = 3000,
  num_val: int = 200,
  num_test: int = 500,
  min_digits: int = 2,
  max_digits: int = 5,
  min_silence_ms: float = 50.0,
  max_silence_ms: float = 250.0,
  noise_level: float = 1e-3,
  sample_rate: int = 8000,
  n_mels: int = 40,
  window_ms: float = 25.0,
  hop_ms: float = 10.0,
  stack_frames: int = 3,
  frame_stride: int = 3,
  utterance_mean: bool = True,
  max_frames: int | None = None,
  decode: str = 'greedy',
  beam_size: int = 8,
  cache_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """Connected spoken digits from an FSDD folder (see the module docstring).

  Options: ``path`` (the recordings folder or a repository clone); ``train_speakers`` (None: every
  speaker not held out), ``val_speakers``, ``test_speakers`` (a list or a comma-separated string;
  disjoint); ``num_train`` / ``num_val`` / ``num_test`` utterances; ``min_digits`` / ``max_digits``
  per utterance; ``min_silence_ms`` / ``max_silence_ms`` for each silence; ``noise_level`` (the noise
  floor's standard deviation, full scale 1); ``sample_rate`` (every file's); features ``n_mels``,
  ``window_ms``, ``hop_ms``, ``utterance_mean``, ``stack_frames``, ``frame_stride``, ``max_frames``; ``decode`` /
  ``beam_size`` for the scores; ``cache_dir``; ``seed`` (the utterances: the same seed, folder and
  options give the same utterances).
  """
  num = {'train': num_train, 'val': num_val, 'test': num_test}
  _check(num, min_digits, max_digits, min_silence_ms, max_silence_ms, noise_level)
  stt._check_options(ALPHABET, 'error', stack_frames, frame_stride, decode, beam_size)  # pylint: disable=protected-access
  options = speech.FeatureOptions(sample_rate=sample_rate, n_mels=n_mels, window_ms=window_ms, hop_ms=hop_ms)
  recordings = scan_fsdd(path)
  speakers = split_speakers([r.speaker for r in recordings], train_speakers, val_speakers, test_speakers)
  takes: dict[tuple[str, int], list[Recording]] = {}
  for r in recordings:
    takes.setdefault((r.speaker, r.digit), []).append(r)
  for split, names in speakers.items():
    for name in names:
      missing = [d for d in range(10) if (name, d) not in takes]
      if missing:
        raise ValueError(
          f'{split} speaker {name!r} has no recording of digit(s) {", ".join(map(str, missing))} in '
          f'{recordings_folder(path)}; add them or leave the speaker out'
        )
  silence = (int(round(min_silence_ms * sample_rate / 1000)), int(round(max_silence_ms * sample_rate / 1000)))
  plans, split_of, splits = [], [], {}
  for s, split in enumerate(SPLITS):
    # One generator per split: changing num_test leaves the training utterances as they were.
    rng = np.random.default_rng([seed, s])
    made = plan_utterances(takes, speakers[split], num[split], (min_digits, max_digits), silence, rng)
    splits[split] = list(range(len(plans), len(plans) + len(made)))
    plans += made
    split_of += [(s, i) for i in range(len(made))]
  ids = [f'{SPLITS[s]}[{i}] {p.speaker}: {p.transcript}' for (s, i), p in zip(split_of, plans)]

  cache: dict[pathlib.Path, np.ndarray] = {}

  def read(file):
    if file not in cache:
      cache[file] = speech.read_wav(file, sample_rate)
    return cache[file]

  def signal(j):
    s, i = split_of[j]
    return synthesize(plans[j], read, noise_level, np.random.default_rng([seed, s, i]))

  used = sorted({r.file for p in plans for r in p.takes})
  listing = [[f.name, st.st_size, st.st_mtime_ns] for f, st in ((f, f.stat()) for f in used)]
  key = {
    'fsdd': str(recordings_folder(path).resolve()),
    'files': listing,
    'plans': [[p.speaker, [r.file.name for r in p.takes], list(p.silences)] for p in plans],
    'noise_level': noise_level,
    'noise_seed': seed,
    'build': BUILD_VERSION,
  }
  features, cache_file = speech.cached_features(key, ids, signal, options, cache_dir)
  if utterance_mean:
    features = [f - f.mean(axis=0, keepdims=True) for f in features]
  texts = [p.transcript for p in plans]
  task = stt.ctc_task(
    name='connected_digits',
    features=features,
    transcripts=texts,
    wheres=[f'connected_digits {i}' for i in ids],
    splits=splits,
    alphabet=ALPHABET,
    stack=stack_frames,
    stride=frame_stride,
    max_frames=max_frames,
    decode=decode,
    beam_size=beam_size,
    options=options,
    info={
      'cache_file': str(cache_file),
      'source': 'fsdd',
      'path': str(recordings_folder(path)),
      'speakers': {k: list(v) for k, v in speakers.items()},
      'digits_per_utterance': [min_digits, max_digits],
      'silence_ms': [min_silence_ms, max_silence_ms],
      'noise_level': noise_level,
      'seconds': {
        split: round(sum(len(features[j]) for j in idx) * options.hop_ms / 1000, 1) for split, idx in splits.items()
      },
    },
  )
  encode = task.encode
  if utterance_mean:
    mean, std = np.asarray(task.info['feature_mean']), np.asarray(task.info['feature_std'])

    def encode(examples):
      """Audio (``[samples]`` float arrays at ``sample_rate``, or WAV paths) -> ``{'inputs', 'lengths'}``,
      normalized as the task's utterances."""
      seqs = []
      for ex in examples:
        signal = speech.read_wav(pathlib.Path(ex), sample_rate) if isinstance(ex, (str, os.PathLike)) else ex
        frames = speech.log_mel(np.asarray(signal, np.float32), options)
        frames = ((frames - frames.mean(axis=0, keepdims=True) - mean) / std).astype(np.float32)
        seqs.append(stt.stack_frames(frames, stack_frames, frame_stride))
      inputs, lengths = pipeline.pad_sequences(seqs, max(len(x) for x in seqs), np.float32)
      return {'inputs': inputs, 'lengths': lengths}

  test_refs = [texts[j] for j in splits['test']]
  best = best_constant_guess(test_refs, range(min_digits, max_digits + 1))
  return dataclasses.replace(
    task,
    baseline=Baseline(
      'cer',
      float(best['cer']),
      f'the best constant transcript on test, {best["cer_guess"]!r} for every utterance (an empty one: CER 1)',
    ),
    encode=encode,
    info={
      **task.info,
      'utterance_mean': utterance_mean,
      'constant_guess': best['cer_guess'],
      'constant_guess_wer': float(best['wer']),
    },
  )
