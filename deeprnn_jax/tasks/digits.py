"""scikit-learn's bundled 8x8 handwritten digits (Alpaydin & Kaynak 1998, UCI) as sequences.

1797 images with pixel values 0..16, shipped inside scikit-learn: no download. Read row by row
(``mode='rows'``: 8 steps of 8 features) or pixel by pixel (``mode='pixels'``: 64 steps of 1),
optionally in a fixed permuted order (``permute=True``). Fixed splits: 360 test, 144 validation,
the remaining 1293 train.

Shapes: inputs ``[batch, 8, 8]`` or ``[batch, 64, 1]`` float32 in [0, 1], targets ``[batch]``.
"""

from __future__ import annotations

from deeprnn_jax._extras import require
from deeprnn_jax.tasks import image_sequences, pipeline
from deeprnn_jax.tasks.base import Task

NUM_TEST = 360
NUM_VAL = 144


def digits(
  *, mode: image_sequences.Mode = 'rows', permute: bool = False, permutation_seed: int = 0, seed: int = 0
) -> Task:
  """The digits task (see module docstring).

  Baseline: chance accuracy 0.1 (uniform guess over 10 classes). Threshold: accuracy >= 0.95
  (a small recurrent model reads these 8x8 digits almost perfectly). ``seed`` is accepted for
  uniformity and unused: the data and splits are fixed.
  """
  del seed
  load_digits = require('sklearn.datasets', 'experiments', 'the digits task').load_digits
  data = load_digits()
  images, labels = data.images.astype('uint8'), data.target
  rest, test = pipeline.carve_validation(len(labels), NUM_TEST)
  return image_sequences.image_sequence_task(
    name='digits',
    train_images=images[rest],
    train_labels=labels[rest],
    test_images=images[test],
    test_labels=labels[test],
    max_value=16.0,
    num_classes=10,
    mode=mode,
    permute=permute,
    permutation_seed=permutation_seed,
    num_val=NUM_VAL,
    threshold=0.95,
  )
