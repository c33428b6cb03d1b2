"""Old module paths of 0.2 (before the ``cells/`` and ``training/`` subpackages), kept for one release.

``import deeprnn_jax.ssm`` (or ``from deeprnn_jax import config``) still works, with a
``DeprecationWarning`` naming the new path: the old name is an alias holding the same classes and
functions as the module at the new path. Remove in 0.4.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
  **{
    f'deeprnn_jax.{m}': f'deeprnn_jax.cells.{m}'
    for m in ('linear', 'ssm', 'rglru', 'xlstm', 'linear_attention', 'attention', 'registry')
  },
  **{
    f'deeprnn_jax.{m}': f'deeprnn_jax.training.{m}'
    for m in ('config', 'build', 'train', 'seed_run', 'checkpoint', 'runlog', 'load', 'progress', 'parallel')
  },
}


def _warn(old: str, new: str) -> None:
  warnings.warn(f'{old} moved to {new} in deeprnn-jax 0.3; import it from there', DeprecationWarning, stacklevel=3)


class _AliasLoader(importlib.abc.Loader):
  def __init__(self, new: str):
    self.new = new

  def create_module(self, spec):
    return None  # a fresh module object: the one at the new path keeps its own name and spec

  def exec_module(self, module):
    _warn(module.__name__, self.new)
    new = importlib.import_module(self.new)
    module.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith('__')})


class _MovedFinder(importlib.abc.MetaPathFinder):
  def find_spec(self, fullname, path=None, target=None):
    if fullname in MOVED:
      return importlib.util.spec_from_loader(fullname, _AliasLoader(MOVED[fullname]))
    return None


def package_attribute(name: str):
  """``deeprnn_jax.<old module name>`` as an attribute (``dr.registry``): the alias module, with the warning."""
  if f'deeprnn_jax.{name}' in MOVED:
    return importlib.import_module(f'deeprnn_jax.{name}')
  raise AttributeError(f"module 'deeprnn_jax' has no attribute {name!r}")


def install() -> None:
  if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())
