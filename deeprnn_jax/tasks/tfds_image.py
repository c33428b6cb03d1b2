"""Sequential and permuted-sequential MNIST (Le et al. 2015) from TFDS ``mnist`` (array_record).

``mode='pixels'`` feeds the 784 pixels one per step (sMNIST); ``permute=True`` uses one fixed
permutation of the steps (psMNIST); ``mode='rows'`` feeds 28 rows of 28 pixels. 60000 train images
(5000 carved deterministically as validation) and the 10000 test images.

Shapes: inputs ``[batch, 784, 1]`` or ``[batch, 28, 28]`` float32 in [0, 1], targets ``[batch]``.
"""

from __future__ import annotations

import numpy as np

from deeprnn_jax.tasks import image_sequences, tfds_source
from deeprnn_jax.tasks.base import Task


def _images(name: str, split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  examples = tfds_source.load_split(name, split, data_dir)
  images = np.stack([np.asarray(ex['image'])[..., 0] for ex in examples]).astype(np.uint8)
  labels = np.array([int(ex['label']) for ex in examples], np.int32)
  return images, labels


def smnist(
  *,
  mode: image_sequences.Mode = 'pixels',
  permute: bool = False,
  permutation_seed: int = 0,
  num_val: int = 5000,
  data_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """Sequential MNIST (see module docstring); ``data_dir`` is the TFDS data dir.

  Baseline: chance accuracy 0.1. Threshold: accuracy >= 0.97 (sMNIST) or 0.9 (psMNIST), about
  what a well-tuned LSTM reaches (roughly 0.98-0.99 and 0.88-0.92 in Arjovsky et al. 2016 and
  Cooijmans et al. 2017).
  ``seed`` is accepted for uniformity and unused: data and splits are fixed.
  """
  del seed
  train_x, train_y = _images('mnist', 'train', data_dir)
  test_x, test_y = _images('mnist', 'test', data_dir)
  return image_sequences.image_sequence_task(
    name='psmnist' if permute else 'smnist',
    train_images=train_x,
    train_labels=train_y,
    test_images=test_x,
    test_labels=test_y,
    max_value=255.0,
    num_classes=10,
    mode=mode,
    permute=permute,
    permutation_seed=permutation_seed,
    num_val=num_val,
    threshold=0.9 if permute else 0.97,
  )
