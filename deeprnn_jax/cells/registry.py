"""``CELLS``: every cell by the name configs and sweeps use, ``resolve_cell``, and ``register_cell`` for
a researcher's own cell."""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from typing import Callable

import flax.linen as nn

from deeprnn_jax.cells import classic, linear
from deeprnn_jax.cells import attention, linear_attention
from deeprnn_jax.cells import mlstm_layer, xlstm
from deeprnn_jax.cells import rglru, ssm

CELLS: dict[str, type[nn.RNNCellBase]] = {
  'rnn': classic.ElmanCell,
  'irnn': classic.IRNNCell,
  'lstm': classic.LSTMCell,
  'gru': classic.GRUCell,
  'mgu': classic.MGUCell,
  'indrnn': classic.IndRNNCell,
  'ugrnn': classic.UGRNNCell,
  'mingru': linear.MinGRUCell,
  'lru': linear.LRUCell,
  'minlstm': linear.MinLSTMCell,
  'rglru': rglru.RGLRUCell,
  's6': ssm.S6Cell,
  'mamba': ssm.MambaCell,
  'linear_attention': linear_attention.LinearAttentionCell,
  'deltanet': linear_attention.DeltaNetCell,
  'gated_deltanet': linear_attention.GatedDeltaNetCell,
  'attention': attention.AttentionCell,
  'slstm': xlstm.SLSTMCell,
  'mlstm': xlstm.MLSTMCell,
  'mlstm_layer': mlstm_layer.MLSTMLayer,
}

# The package's own cells: register_cell never replaces one of these unless asked to, and
# unregister_cell puts one back.
BUILTIN_CELLS = types.MappingProxyType(dict(CELLS))


def resolve_cell(cell: str | type[nn.RNNCellBase]) -> type[nn.RNNCellBase]:
  """A registry name or a cell class (ours or Flax's, e.g. ``nn.OptimizedLSTMCell``) -> the class."""
  if isinstance(cell, str):
    try:
      return CELLS[cell]
    except KeyError:
      close = difflib.get_close_matches(cell, CELLS, n=3)
      hint = f'did you mean {" or ".join(map(repr, close))}? ' if close else ''
      raise ValueError(
        f'unknown cell {cell!r}; {hint}choose one of {sorted(CELLS)}, pass a cell class, or register yours '
        'with register_cell(name, cls)'
      ) from None
  if isinstance(cell, type) and issubclass(cell, nn.RNNCellBase):
    return cell
  raise ValueError(f'cell must be a name in {sorted(CELLS)} or an nn.RNNCellBase subclass; got {cell!r}')


def has_parallel_form(cell: str | type[nn.RNNCellBase]) -> bool:
  """Whether the cell computes a whole sequence at once (``parallel_sequence``; see ``cells.Cell``)."""
  return bool(getattr(resolve_cell(cell), 'parallel_form', False))


def parallel_cells() -> list[str]:
  """The registered cells with a parallel form."""
  return sorted(name for name, cls in CELLS.items() if getattr(cls, 'parallel_form', False))


def register_cell(
  name: str, cls: type[nn.RNNCellBase] | None = None, *, replace: bool = False
) -> type[nn.RNNCellBase] | Callable[[type[nn.RNNCellBase]], type[nn.RNNCellBase]]:
  r"""Adds a cell class of your own to ``CELLS``, so it is named like a built-in cell.

  Registered, the name works wherever a built-in cell's does: ``DeepRNN(cell=name)``, ``Seq2Seq``'s
  decoder, a config's ``model.cell`` and ``model.decoder_cell`` (checked against the registry as it is
  when the config is validated), ``model.cell_kwargs`` (checked against the class's fields),
  ``has_parallel_form`` and ``parallel_cells``. The stack builds it as ``cls(features=H, **cell_kwargs)``.
  Subclass ``deeprnn_jax.cells.Cell`` (``project_inputs`` + ``recur``) to get every execution path::

    # configs/leaky.py
    import jax.numpy as jnp
    from deeprnn_jax.cells import Cell, register_cell
    from deeprnn_jax.training.config import default_config

    class LeakyElmanCell(Cell):  # h_t = (1 - a) h_{t-1} + a tanh(W x_t + U h_{t-1} + b)
      leak: float = 0.5  # a

      def setup(self):
        super().setup()
        self.recurrent = self.recurrent_dense(1)

      def recur(self, h, xp):
        h = (1 - self.leak) * h + self.leak * jnp.tanh(xp + self.recurrent(h))
        return h, h

    register_cell('leaky', LeakyElmanCell)

    def get_config():
      c = default_config()
      c.model.cell, c.model.cell_kwargs = 'leaky', {'leak': 0.3}
      return c

  As with ``register_task``, register it where the config file is loaded (the config file itself, or a
  module it imports), so every process that loads the config (sweep workers too) registers it again;
  registering the same class (same module and name) again replaces it quietly. Also usable as a
  decorator: ``@register_cell('leaky')`` above the class. ``unregister_cell(name)`` takes it out again.

  Args:
    name: the cell's name: letters, digits, ``_``, ``-``, ``.``, starting with a letter.
    cls: a ``flax.linen.RNNCellBase`` subclass with a ``features`` field; None returns a decorator.
    replace: allow replacing a built-in cell, or another class registered under ``name``.

  Returns:
    ``cls`` (so it can be used as a decorator).

  Raises:
    ValueError: a bad name; ``cls`` is not a cell class with ``features``; or ``name`` is taken (a
      built-in cell, or another class) and ``replace`` is False.
  """
  if cls is None:
    return lambda c: register_cell(name, c, replace=replace)
  if not isinstance(name, str) or not re.fullmatch(r'[A-Za-z][A-Za-z0-9_.-]*', name):
    raise ValueError(f'cell name {name!r}: use letters, digits, _, - and ., starting with a letter')
  if not (isinstance(cls, type) and issubclass(cls, nn.RNNCellBase)):
    got = f'class {cls.__name__}' if isinstance(cls, type) else f'a {type(cls).__name__} object'
    raise ValueError(
      f'cell {name!r}: register a class, a subclass of deeprnn_jax.cells.Cell (or of flax.linen.RNNCellBase), got {got}'
    )
  if 'features' not in {f.name for f in dataclasses.fields(cls)}:
    raise ValueError(f'cell {name!r}: {cls.__name__} has no features field; the stack builds cells as cls(features=H)')
  if name in CELLS and not replace and _origin(CELLS[name]) != _origin(cls):
    if name in BUILTIN_CELLS:
      raise ValueError(f'cell {name!r} is built in; register yours under another name, or pass replace=True')
    raise ValueError(
      f'cell {name!r} is already registered (by {_origin(CELLS[name])}); choose another name, or pass replace=True'
    )
  CELLS[name] = cls
  return cls


def unregister_cell(name: str) -> None:
  """Takes a cell registered with ``register_cell`` out of ``CELLS`` (a built-in one it replaced comes back)."""
  if name not in CELLS or CELLS[name] is BUILTIN_CELLS.get(name):
    raise ValueError(
      f'cell {name!r} was not registered with register_cell; registered: {", ".join(_registered()) or "none"}'
    )
  if name in BUILTIN_CELLS:
    CELLS[name] = BUILTIN_CELLS[name]
  else:
    del CELLS[name]


def _registered() -> list[str]:
  return sorted(name for name, cls in CELLS.items() if cls is not BUILTIN_CELLS.get(name))


def _origin(cls: type) -> str:
  """``module.qualname``: the same for the class of a config file loaded twice."""
  return f'{cls.__module__}.{cls.__qualname__}'
