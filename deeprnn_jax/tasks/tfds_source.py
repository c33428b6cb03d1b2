"""Reading prepared TFDS datasets without TensorFlow, through ``tfds.data_source`` (array_record).

``tfds.load`` and ``as_numpy`` need TensorFlow; random-access data sources do not, but they read
only datasets prepared in the ``array_record`` format. Preparing ``imdb_reviews``, ``glue/sst2``,
``mnist`` and ``tiny_shakespeare`` itself needs TensorFlow: their builders read the downloads
through ``tf.io.gfile``. ``python -m experiments.prepare NAME`` prepares them (its needs are the
``prepare`` extra); reading them back afterwards does not need TensorFlow (images decode with PIL).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from deeprnn_jax._extras import require

# TFDS's packages of builders that are not imported until asked for (``glue`` is in ``text``).
_BUILDER_PACKAGES = (
  'text',
  'image_classification',
  'image',
  'audio',
  'structured',
  'translate',
  'summarization',
  'question_answering',
  'video',
  'time_series',
)


class DatasetNotPreparedError(FileNotFoundError):
  """A TFDS dataset is not prepared (as array_record) in the data dir."""


def prepare_command(name: str, data_dir: str | os.PathLike | None) -> str:
  """The command that prepares TFDS dataset ``name`` where ``load_split`` looks for it."""
  flag = f' --data-dir {data_dir}' if data_dir else ''
  return f'python -m experiments.prepare {name}{flag}'


def default_data_dir() -> str:
  """Where TFDS reads and writes datasets when no data dir is given ($TFDS_DATA_DIR or
  ``~/tensorflow_datasets``)."""
  return os.environ.get('TFDS_DATA_DIR') or os.path.expanduser('~/tensorflow_datasets')


def import_builder(name: str) -> None:
  """Makes TFDS's builder of ``name`` (e.g. ``glue/sst2``) known to ``tfds.builder``.

  TFDS imports its older builders lazily, package by package, and stops at the first package that
  fails to import without TensorFlow, so e.g. ``glue`` (in ``text``) is never registered in a
  TensorFlow-free environment. Importing the builder's own module registers it.
  """
  base = name.split('/')[0].split(':')[0]
  for package in _BUILDER_PACKAGES:
    try:
      importlib.import_module(f'tensorflow_datasets.{package}.{base}')
      return
    except ImportError:
      continue


def load_split(
  name: str, split: str, data_dir: str | os.PathLike | None = None, *, alternative: str = ''
) -> list[dict[str, Any]]:
  """All examples of ``split`` of TFDS dataset ``name`` as a list of NumPy feature dicts.

  Raises ``DatasetNotPreparedError`` with the command that prepares it (and ``alternative``, e.g. how
  to read the same data from local files). Never downloads.
  """
  tfds = require('tensorflow_datasets', 'experiments', 'a TFDS dataset')
  import_builder(name)
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    # Per-item reads: TFDS's mock data source (used by the tests) has no working batched read.
    return [source[i] for i in range(len(source))]
  except Exception as e:  # TFDS raises several unrelated types for a missing or non-array_record dataset
    where = data_dir or default_data_dir()
    cause = ' '.join(str(e).split())
    cause = cause if len(cause) <= 60 else cause[:57] + '...'
    raise DatasetNotPreparedError(
      f'TFDS dataset {name!r} (split {split!r}) is not prepared as array_record in {where}: '
      f"prepare it once with `{prepare_command(name, data_dir)}` (needs pip install -e '.[prepare]')"
      f'{alternative} [{type(e).__name__}: {cause}]'
    ) from e


def text_of(value: Any) -> str:
  """A TFDS ``Text`` feature as ``str`` (data sources give bytes; mock data gives str)."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)
