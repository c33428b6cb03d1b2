"""MNIST-1D (Greydanus 2020): 10-class classification of 40-step 1-D signals, procedurally generated.

The data come from the ``mnist1d`` package's ``make_dataset`` with its default arguments
(5000 samples -> 4000 train / 1000 test, dataset seed 42), never its download path. Generation takes
about a second, so the arrays are cached as ``.npz`` under ``data_dir`` and a second call is
instant. ``shuffle_seq=True`` is the package's shuffled variant: one fixed permutation of the 40
time steps for all examples, which destroys the local structure a recurrent model can use.

Shapes: inputs ``[batch, 40, 1]`` float32, targets ``[batch]`` int32.
"""

from __future__ import annotations

import os
import pathlib
import random
import tempfile

import numpy as np

from deeprnn_jax._extras import require
from deeprnn_jax.tasks import pipeline
from deeprnn_jax.tasks.base import Baseline, Task, Threshold

DEFAULT_DATA_DIR = '~/.cache/deeprnn_jax'


def load_arrays(
  data_dir: str | os.PathLike | None = None, *, num_samples: int = 5000, shuffle_seq: bool = False
) -> dict[str, np.ndarray]:
  """``{'x', 'y', 'x_test', 'y_test'}`` from the cache, generated (and cached) on a miss."""
  root = pathlib.Path(os.path.expanduser(data_dir or DEFAULT_DATA_DIR)) / 'mnist1d'
  path = root / f'mnist1d_n{num_samples}{"_shuffled" if shuffle_seq else ""}.npz'
  if path.exists():
    with np.load(path) as f:
      return {k: f[k] for k in ('x', 'y', 'x_test', 'y_test')}
  arrays = _generate(num_samples, shuffle_seq)
  root.mkdir(parents=True, exist_ok=True)
  # Write then rename: concurrent runs never read a half-written cache file.
  fd, tmp = tempfile.mkstemp(dir=root, suffix='.npz')
  with os.fdopen(fd, 'wb') as f:
    np.savez(f, **arrays)
  os.replace(tmp, path)
  return arrays


def _generate(num_samples: int, shuffle_seq: bool) -> dict[str, np.ndarray]:
  mnist1d_data = require('mnist1d.data', 'experiments', 'the mnist1d task')
  get_dataset_args, make_dataset = mnist1d_data.get_dataset_args, mnist1d_data.make_dataset
  args = get_dataset_args()
  args.num_samples, args.shuffle_seq = num_samples, shuffle_seq
  # make_dataset seeds the global `random` and `np.random` generators; restore them afterwards.
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    data = make_dataset(args)
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)
  return {
    'x': data['x'].astype(np.float32),
    'y': data['y'].astype(np.int32),
    'x_test': data['x_test'].astype(np.float32),
    'y_test': data['y_test'].astype(np.int32),
  }


def mnist1d(
  *,
  shuffle_seq: bool = False,
  num_samples: int = 5000,
  num_val: int | None = None,
  seed: int = 0,
  data_dir: str | None = None,
) -> Task:
  """MNIST-1D as a sequence-classification task (see module docstring).

  Options: ``num_samples`` (train + test before the package's 80/20 split; small values for
  tests), ``num_val`` (carved deterministically from train; default 10% of it), ``data_dir`` (cache,
  default ``~/.cache/deeprnn_jax``). ``seed`` is accepted for uniformity and unused: the dataset
  and its splits are fixed.
  Baseline: chance accuracy 0.1 (10 classes, balanced by construction). Threshold: accuracy >= 0.9
  (a GRU reaches about 0.91 in Greydanus 2020); none for the shuffled variant, which has no
  established recurrent reference level.
  """
  del seed
  data = load_arrays(data_dir, num_samples=num_samples, shuffle_seq=shuffle_seq)
  x, y = data['x'][..., None], data['y']
  num_val = len(y) // 10 if num_val is None else num_val
  train_idx, val_idx = pipeline.carve_validation(len(y), num_val)
  seq_len = x.shape[1]
  train_lengths = np.full(len(train_idx), seq_len, np.int32)
  train_batch, train_data, _ = pipeline.array_stream(
    {'inputs': x[train_idx], 'targets': y[train_idx], 'lengths': train_lengths}, dict
  )
  full = lambda n: np.full(n, seq_len, np.int32)
  return Task(
    name='mnist1d_shuffled' if shuffle_seq else 'mnist1d',
    input_kind='features',
    input_size=1,
    output_kind='class',
    output_size=10,
    seq_len=seq_len,
    train_batch=train_batch,
    eval_splits={
      'val': pipeline.class_batch(x[val_idx], y[val_idx], full(len(val_idx))),
      'test': pipeline.class_batch(data['x_test'][..., None], data['y_test'], full(len(data['y_test']))),
    },
    baseline=Baseline('accuracy', 0.1, 'chance: 10 balanced classes'),
    threshold=None if shuffle_seq else Threshold('accuracy', 0.9, 'max'),
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={
      'num_train': len(train_idx),
      'num_val': len(val_idx),
      'num_test': len(data['y_test']),
      'shuffle_seq': shuffle_seq,
    },
    train_data=train_data,
  )
