"""Images read as sequences: row by row or pixel by pixel, optionally in a fixed permuted order.

Used by ``digits`` (8x8) and ``smnist`` (28x28). An ``H x W`` image becomes ``H`` steps of ``W``
features (``mode='rows'``) or ``H W`` steps of one feature (``mode='pixels'``, sequential MNIST of
Le et al. 2015). ``permute=True`` applies one fixed permutation of the time steps to every image
(permuted sequential MNIST), which spreads dependencies over the whole sequence.

Training images stay uint8 on device (4x smaller than float32); ``train_batch`` scales to [0, 1].
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
import numpy as np

from deeprnn_jax.tasks import pipeline
from deeprnn_jax.tasks.base import Baseline, Task, Threshold

Mode = Literal['rows', 'pixels']


def to_sequences(images: np.ndarray, mode: Mode, order: np.ndarray | None) -> np.ndarray:
  """``[N, H, W]`` -> ``[N, T, F]`` in the same dtype, time steps taken in ``order`` if given."""
  n, h, w = images.shape
  if mode == 'rows':
    seqs = images.reshape(n, h, w)
  elif mode == 'pixels':
    seqs = images.reshape(n, h * w, 1)
  else:
    raise ValueError(f"mode must be 'rows' or 'pixels', got {mode!r}")
  return seqs if order is None else seqs[:, order]


def image_sequence_task(
  *,
  name: str,
  train_images: np.ndarray,
  train_labels: np.ndarray,
  test_images: np.ndarray,
  test_labels: np.ndarray,
  max_value: float,
  num_classes: int,
  mode: Mode,
  permute: bool,
  permutation_seed: int,
  num_val: int,
  threshold: float | None,
) -> Task:
  """A classification Task over images ``[N, H, W]`` with integer pixels in ``[0, max_value]``.

  Validation is carved deterministically from train. Baseline: chance accuracy ``1 / num_classes``
  (the expected accuracy of a uniform random guess); the accuracy of always predicting the most
  frequent training class, measured on test, is in ``info['majority_accuracy']``.
  """
  steps = train_images.shape[1] if mode == 'rows' else train_images.shape[1] * train_images.shape[2]
  order = np.random.default_rng(permutation_seed).permutation(steps) if permute else None
  train = to_sequences(np.asarray(train_images, np.uint8), mode, order)
  test = to_sequences(np.asarray(test_images, np.uint8), mode, order)
  train_labels = np.asarray(train_labels, np.int32)
  train_idx, val_idx = pipeline.carve_validation(len(train_labels), num_val)
  seq_len, features = train.shape[1], train.shape[2]
  scale = np.float32(1.0 / max_value)

  def finish(b):
    return {
      'inputs': b['inputs'].astype(jnp.float32) * scale,
      'targets': b['targets'],
      'lengths': jnp.full(b['targets'].shape, seq_len, jnp.int32),
    }

  train_batch, train_data, _ = pipeline.array_stream(
    {'inputs': train[train_idx], 'targets': train_labels[train_idx]}, finish
  )

  def split(x, y):
    return pipeline.class_batch(x.astype(np.float32) * scale, y, np.full(len(y), seq_len, np.int32))

  majority, acc = pipeline.majority_accuracy(train_labels[train_idx], test_labels, num_classes)
  return Task(
    name=name,
    input_kind='features',
    input_size=features,
    output_kind='class',
    output_size=num_classes,
    seq_len=seq_len,
    train_batch=train_batch,
    eval_splits={
      'val': split(train[val_idx], train_labels[val_idx]),
      'test': split(test, np.asarray(test_labels, np.int32)),
    },
    baseline=Baseline('accuracy', 1 / num_classes, f'chance: uniform guess over {num_classes} classes'),
    threshold=None if threshold is None else Threshold('accuracy', threshold, 'max'),
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={
      'mode': mode,
      'permuted': permute,
      'num_train': len(train_idx),
      'num_val': len(val_idx),
      'num_test': len(test_labels),
      'permutation_seed': permutation_seed if permute else None,
      'majority_class': majority,
      'majority_accuracy': acc,
    },
    train_data=train_data,
  )
