"""``CELLS``: every cell by the name configs and sweeps use, and ``resolve_cell``."""

from __future__ import annotations

import difflib

import flax.linen as nn

from deeprnn_jax.cells import classic, linear
from deeprnn_jax.cells import attention, linear_attention
from deeprnn_jax.cells import xlstm
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
}


def resolve_cell(cell: str | type[nn.RNNCellBase]) -> type[nn.RNNCellBase]:
  """A registry name or a cell class (ours or Flax's, e.g. ``nn.OptimizedLSTMCell``) -> the class."""
  if isinstance(cell, str):
    try:
      return CELLS[cell]
    except KeyError:
      close = difflib.get_close_matches(cell, CELLS, n=3)
      hint = f'did you mean {" or ".join(map(repr, close))}? ' if close else ''
      raise ValueError(f'unknown cell {cell!r}; {hint}choose one of {sorted(CELLS)} or pass a cell class') from None
  if isinstance(cell, type) and issubclass(cell, nn.RNNCellBase):
    return cell
  raise ValueError(f'cell must be a name in {sorted(CELLS)} or an nn.RNNCellBase subclass; got {cell!r}')


def has_parallel_form(cell: str | type[nn.RNNCellBase]) -> bool:
  """Whether the cell computes a whole sequence at once (``parallel_sequence``; see ``cells.Cell``)."""
  return bool(getattr(resolve_cell(cell), 'parallel_form', False))


def parallel_cells() -> list[str]:
  """The registered cells with a parallel form."""
  return sorted(name for name, cls in CELLS.items() if getattr(cls, 'parallel_form', False))
