"""Optional dependencies: which extra brings each, and a one-line error when it is missing.

``pip install deeprnn-jax`` installs the library (cells, stacks, models, ``Seq2Seq``, train steps)
with jax, flax, optax, numpy, ml-collections, tqdm and orbax-checkpoint (which flax requires anyway).
The rest comes with an extra (``pyproject.toml``): ``experiments`` (runner, report, Weights & Biases,
TFDS, plots, the no-download datasets), ``text`` (BLEU, entity F1), ``speech`` (audio features, CER/WER),
``cluster`` (SLURM), ``all``.

A module that needs an extra imports it where it is used, through ``require``, so ``import deeprnn_jax``
stays light and a missing extra fails in one line naming the install command::

  librosa = require('librosa', 'speech', 'deeprnn_jax.tasks.speech')
  # ImportError: deeprnn_jax.tasks.speech needs librosa, from the 'speech' extra: pip install 'deeprnn-jax[speech]'
"""

from __future__ import annotations

import importlib
import types
from typing import Any

# The extra that installs each optional top-level module (the names in pyproject.toml's extras).
EXTRA_OF = {
  'wandb': 'experiments',
  'tensorflow_datasets': 'experiments',
  'matplotlib': 'experiments',
  'mnist1d': 'experiments',
  'sklearn': 'experiments',
  'sacrebleu': 'text',
  'seqeval': 'text',
  'librosa': 'speech',
  'soundfile': 'speech',
  'jiwer': 'speech',
  'submitit': 'cluster',
}


class MissingExtraError(ModuleNotFoundError):
  """An optional dependency is not installed; the message names the extra and the install command."""


def install_hint(extra: str) -> str:
  return f"pip install 'deeprnn-jax[{extra}]'"


def require(module: str, extra: str | None = None, user: str | None = None) -> Any:
  """Imports ``module`` (e.g. ``'librosa'`` or ``'scipy.io.wavfile'``), or fails in one line.

  Args:
    module: the dotted module name to import.
    extra: the extra that installs it; by default looked up in ``EXTRA_OF`` by its top-level name.
    user: what needs it (a module or feature name), for the message; by default 'deeprnn_jax'.

  Returns:
    The imported module.

  Raises:
    MissingExtraError: (an ImportError) the module, or one it imports, is not installed.
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    top = module.split('.')[0]
    extra = extra or EXTRA_OF.get(top, 'all')
    raise MissingExtraError(
      f'{user or "deeprnn_jax"} needs {top}, from the {extra!r} extra: {install_hint(extra)}'
    ) from e


class LazyModule(types.ModuleType):
  """A module imported on first attribute access through ``require``: a module-level
  ``ocp = LazyModule('orbax.checkpoint', 'experiments', __name__)`` keeps ``ocp.X`` in the code while
  the import (and its cost) waits until it is used."""

  def __init__(self, module: str, extra: str | None = None, user: str | None = None):
    super().__init__(module)
    self._lazy = (module, extra, user)
    self._module = None

  def __getattr__(self, name: str) -> Any:
    if name.startswith('_'):
      raise AttributeError(name)
    if self._module is None:
      self._module = require(*self._lazy)
    return getattr(self._module, name)
