"""Polyphonic music modelling (Boulanger-Lewandowski et al. 2012): predict each 88-key piano-roll
frame from the frames before it.

Data: the standard pickle release of that paper (``JSB Chorales.pickle``, ``Nottingham.pickle``,
``MuseData.pickle``, ``Piano-midi.de.pickle``): a dict with ``'train'``, ``'valid'`` and ``'test'``
lists of sequences; a sequence is a list of frames; a frame lists the MIDI notes (21..108) sounding.
The file is read from a local path and unpickled by a loader that accepts only builtin lists,
dicts, tuples, ints, floats and strings: pickle can run arbitrary code, so nothing else is ever
constructed from it.

Step ``t`` sees frame ``t - 1`` (a silent frame at ``t = 0``) and predicts frame ``t`` with 88
independent Bernoulli outputs, so every frame of a sequence is scored. Loss: negative
log-likelihood per frame summed over the 88 keys (``per_step_binary``).

Shapes: inputs and targets ``[batch, time, 88]`` float32 {0, 1}, lengths ``[batch]``.
"""

from __future__ import annotations

import builtins
import io
import os
import pathlib
import pickle
from typing import Any

import numpy as np

from deeprnn_jax.tasks import pipeline
from deeprnn_jax.tasks.base import Baseline, Task

LOWEST_NOTE, NUM_KEYS = 21, 88
DEFAULT_DATA_DIR = '~/.cache/deeprnn_jax'
FILES = {
  'jsb_chorales': 'JSB Chorales.pickle',
  'nottingham': 'Nottingham.pickle',
  'musedata': 'MuseData.pickle',
  'piano_midi': 'Piano-midi.de.pickle',
}
_SAFE_BUILTINS = frozenset({'list', 'dict', 'int', 'float', 'str', 'tuple'})
# Probabilities are clipped so that a key never sounding in train costs a finite NLL elsewhere.
_P_CLIP = 1e-6


class _BuiltinsOnlyUnpickler(pickle.Unpickler):
  """Resolves only the allowed builtin types; any other global (a class, a function such as
  ``os.system``) raises instead of being imported."""

  def find_class(self, module: str, name: str) -> Any:
    # Python 2 pickles (the original release) name the builtins module `__builtin__`.
    if module in ('builtins', '__builtin__') and name in _SAFE_BUILTINS:
      return getattr(builtins, name)
    raise pickle.UnpicklingError(f'refusing to load global {module}.{name} from a music pickle')


def safe_load(data: bytes) -> Any:
  """Unpickles ``data`` allowing only builtin containers and scalars."""
  return _BuiltinsOnlyUnpickler(io.BytesIO(data), encoding='latin1').load()


def piano_roll(sequence: Any) -> np.ndarray:
  """A sequence of frames (iterables of MIDI notes 21..108) -> ``[T, 88]`` uint8 piano roll."""
  roll = np.zeros((len(sequence), NUM_KEYS), np.uint8)
  for t, frame in enumerate(sequence):
    for note in frame:
      key = int(round(float(note))) - LOWEST_NOTE
      if not 0 <= key < NUM_KEYS:
        raise ValueError(f'MIDI note {note} outside the piano range 21..108')
      roll[t, key] = 1
  return roll


def load_rolls(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
  """``{'train', 'valid', 'test'}`` -> lists of ``[T, 88]`` piano rolls from a release pickle."""
  data = safe_load(pathlib.Path(path).read_bytes())
  if not isinstance(data, dict) or not {'train', 'valid', 'test'} <= set(data):
    raise ValueError(f"{path}: expected a dict with 'train', 'valid' and 'test' lists")
  return {split: [piano_roll(seq) for seq in data[split]] for split in ('train', 'valid', 'test')}


def _shifted(roll: np.ndarray) -> np.ndarray:
  return np.concatenate([np.zeros((1, NUM_KEYS), roll.dtype), roll[:-1]], axis=0)


def _split_batch(rolls: list[np.ndarray]) -> dict[str, np.ndarray]:
  length = max(len(r) for r in rolls)
  inputs, lengths = pipeline.pad_sequences([_shifted(r) for r in rolls], length, np.float32)
  targets, _ = pipeline.pad_sequences(rolls, length, np.float32)
  return {'inputs': inputs, 'targets': targets, 'lengths': lengths}


def independent_nll(key_probs: np.ndarray, batch: dict[str, np.ndarray]) -> float:
  """Mean NLL per valid frame (summed over keys) of predicting every key independently with
  ``key_probs``: ``-sum_k [y_k log p_k + (1 - y_k) log(1 - p_k)]``."""
  y, lengths = batch['targets'], batch['lengths']
  mask = np.arange(y.shape[1])[None, :] < lengths[:, None]
  nll = -(y * np.log(key_probs) + (1 - y) * np.log1p(-key_probs)).sum(-1)
  return float(nll[mask].mean())


def polyphonic(
  *,
  dataset: str = 'jsb_chorales',
  path: str | None = None,
  data_dir: str | None = None,
  seq_len: int | None = None,
  seed: int = 0,
) -> Task:
  """One polyphonic-music dataset (see module docstring).

  Options: ``dataset`` (one of ``FILES``), ``path`` (the pickle; default
  ``<data_dir>/polyphonic/<standard file name>``, ``data_dir`` default ``~/.cache/deeprnn_jax``),
  ``seq_len`` (cut training sequences into chunks of at most this many frames, each chunk keeping
  its real preceding frame as first input; default: whole sequences; evaluation always uses whole
  sequences). ``seed`` is accepted for uniformity and unused.

  Baseline (metric loss): the NLL per frame on test of the best independent-Bernoulli predictor
  from train, ``p_k`` = fraction of training frames in which key ``k`` sounds (clipped to
  ``[1e-6, 1 - 1e-6]``). No threshold: published per-frame NLLs depend on the exact protocol.
  """
  del seed
  if dataset not in FILES:
    raise ValueError(f'unknown polyphonic dataset {dataset!r}; valid: {sorted(FILES)}')
  if path is None:
    root = pathlib.Path(os.path.expanduser(data_dir or DEFAULT_DATA_DIR)) / 'polyphonic'
    path = str(root / FILES[dataset])
  if not os.path.exists(path):
    raise FileNotFoundError(
      f'polyphonic dataset {dataset!r} not found at {path}: put {FILES[dataset]!r} from the '
      'Boulanger-Lewandowski et al. 2012 pickle release there, or pass path=...'
    )
  rolls = load_rolls(path)

  train_inputs, train_targets = [], []
  for roll in rolls['train']:
    shifted = _shifted(roll)
    step = len(roll) if seq_len is None else seq_len
    for start in range(0, len(roll), step):
      train_inputs.append(shifted[start : start + step])
      train_targets.append(roll[start : start + step])
  max_len = max(len(r) for r in train_targets)
  x, lengths = pipeline.pad_sequences(train_inputs, max_len, np.uint8)
  y, _ = pipeline.pad_sequences(train_targets, max_len, np.uint8)
  buckets = pipeline.default_buckets(max_len)

  def finish(b):
    return {
      'inputs': b['inputs'].astype(np.float32),
      'targets': b['targets'].astype(np.float32),
      'lengths': b['lengths'],
    }

  train_batch, train_data, probs = pipeline.array_stream(
    {'inputs': x, 'targets': y, 'lengths': lengths},
    finish,
    lengths=lengths,
    buckets=buckets,
    time_keys=('inputs', 'targets'),
  )

  frames = np.concatenate(rolls['train'], axis=0)
  key_probs = np.clip(frames.mean(axis=0), _P_CLIP, 1 - _P_CLIP)
  eval_splits = {'val': _split_batch(rolls['valid']), 'test': _split_batch(rolls['test'])}
  baseline_by_split = {k: independent_nll(key_probs, b) for k, b in eval_splits.items()}
  return Task(
    name=dataset,
    input_kind='features',
    input_size=NUM_KEYS,
    output_kind='per_step_binary',
    output_size=NUM_KEYS,
    seq_len=max_len,
    train_batch=train_batch,
    eval_splits=eval_splits,
    baseline=Baseline(
      'loss', baseline_by_split['test'], 'NLL per frame of independent Bernoulli keys with their training frequencies'
    ),
    threshold=None,
    metric_modes={'loss': 'min', 'frame_accuracy': 'max'},
    info={
      'path': str(path),
      'num_train_sequences': len(rolls['train']),
      'num_train_chunks': len(train_targets),
      'key_probs': key_probs.tolist(),
      'baseline_by_split': baseline_by_split,
    },
    train_data=train_data,
    length_buckets=buckets,
    bucket_probs=probs,
  )
