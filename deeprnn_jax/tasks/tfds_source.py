"""Reading prepared TFDS datasets without TensorFlow, through ``tfds.data_source`` (array_record).

``tfds.load`` and ``as_numpy`` need TensorFlow; random-access data sources do not, but they read
only datasets prepared in the ``array_record`` format. Preparing ``imdb_reviews``, ``glue/sst2``,
``mnist`` and ``tiny_shakespeare`` itself needs TensorFlow: their builders read the downloads
through ``tf.io.gfile`` (and TFDS's ``tfds build`` command imports TensorFlow). Reading them back
afterwards does not (images decode with PIL).
"""

from __future__ import annotations

import os
from typing import Any


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared (as array_record) in the data dir."""


def prepare_command(name: str, data_dir: str | os.PathLike | None) -> str:
  flag = f' --data_dir={data_dir}' if data_dir else ''
  return (f'pip install tensorflow-cpu importlib_resources && '
          f'tfds build {name} --file_format=array_record{flag}')


def load_split(name: str, split: str, data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
  """All examples of ``split`` of TFDS dataset ``name`` as a list of NumPy feature dicts.

  Raises ``DatasetNotPreparedError`` with the command that prepares it. Never downloads.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if name.startswith('glue/'):
    # TFDS imports its text builders lazily; without this import `glue` is not registered.
    import tensorflow_datasets.text.glue  # pylint: disable=g-import-not-at-top,unused-import
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    # Per-item reads: TFDS's mock data source (used by the tests) has no working batched read.
    return [source[i] for i in range(len(source))]
  except Exception as e:  # TFDS raises several unrelated types for a missing or non-array_record dataset
    where = data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')
    cause = ' '.join(str(e).split())[:200]
    raise DatasetNotPreparedError(
        f'TFDS dataset {name!r} split {split!r} is not readable as array_record under {where}; '
        f'prepare it once with `{prepare_command(name, data_dir)}` (preparing needs TensorFlow, '
        f'reading does not) [{type(e).__name__}: {cause}]') from e


def text_of(value: Any) -> str:
  """A TFDS ``Text`` feature as ``str`` (data sources give bytes; mock data gives str)."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)
