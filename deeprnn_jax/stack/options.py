"""A ``DeepRNN``'s options: their choices, the one place their combinations are checked, and the
blocks they build (each layer's cell, in a ``Mixer`` where pieces go around it, in its block)."""

from __future__ import annotations

import dataclasses
from typing import Any

from deeprnn_jax.cells.registry import has_parallel_form, parallel_cells, resolve_cell
from deeprnn_jax.stack.blocks import Block, ClassicBlock, ModernBlock
from deeprnn_jax.stack.mixer import Mixer

CONNECTIONS = ('stacked', 'residual', 'skip')
DROPOUT_MODES = ('step', 'tied')
MERGES = ('concat', 'sum')
EXECUTIONS = ('auto', 'time', 'layer', 'parallel')
BLOCKS = ('classic', 'modern')
INITIAL_CARRIES = ('zeros', 'learned')
# 'cell': each cell as it is (Mamba keeps its own convolution); 'authors': the short convolution where
# each cell's authors put it; 'on': one for every cell; 'off': none anywhere (Mamba's own cut to width 1).
SHORT_CONVS = ('cell', 'authors', 'on', 'off')
DEFAULT_CONV_WIDTH = 4


class OptionError(ValueError):
  """A ``DeepRNN`` option (``option``, its attribute name) that cannot be built, in one line."""

  def __init__(self, option: str, message: str):
    super().__init__(f'DeepRNN: {message}')
    self.option = option


def short_conv_mode(short_conv: str | None, block: str) -> str:
  """``None`` stands for the block's default: the authors' convolutions in the modern block, the cells
  as they are in the classic one."""
  if short_conv is None:
    return 'authors' if block == 'modern' else 'cell'
  return short_conv


def layer_features(features: int | Any, num_layers: int | None) -> tuple[int, ...]:
  """Each layer's width from ``features`` (one for all, or one per layer) and ``num_layers``."""
  if isinstance(features, int):
    num_layers = 1 if num_layers is None else num_layers
    if not isinstance(num_layers, int) or num_layers < 1:
      raise OptionError('num_layers', f'num_layers must be a positive integer; got {num_layers!r}')
    return (features,) * num_layers
  widths = tuple(features)
  if num_layers is not None and num_layers != len(widths):
    raise OptionError('num_layers', f'num_layers={num_layers} but features has {len(widths)} entries')
  return widths


def check_options(rnn: Any) -> None:
  """Every check of a ``DeepRNN``'s options, made at construction: an ``OptionError`` naming the option
  and the fix for the first that fails."""
  for name, choices in (
    ('connection', CONNECTIONS),
    ('dropout_mode', DROPOUT_MODES),
    ('merge', MERGES),
    ('execution', EXECUTIONS),
    ('initial_carry', INITIAL_CARRIES),
    ('block', BLOCKS),
  ):
    if getattr(rnn, name) not in choices:
      raise OptionError(name, f'unknown {name} {getattr(rnn, name)!r}; choose one of {list(choices)}')
  if rnn.short_conv is not None and rnn.short_conv not in SHORT_CONVS:
    raise OptionError('short_conv', f'unknown short_conv {rnn.short_conv!r}; choose one of {list(SHORT_CONVS)} or None')
  cell = resolve_cell(rnn.cell)
  widths = rnn.layer_features
  if not widths or any(not isinstance(w, int) or w <= 0 for w in widths):
    raise OptionError('features', f'features must be positive integers, one per layer; got {rnn.features!r}')
  if not 0.0 <= rnn.dropout_rate < 1.0:
    raise OptionError('dropout_rate', f'dropout_rate must be in [0, 1); got {rnn.dropout_rate!r}')
  for name in ('unroll',) + (('conv_width',) if rnn.conv_width is not None else ()):
    if not isinstance(getattr(rnn, name), int) or getattr(rnn, name) < 1:
      raise OptionError(name, f'{name} must be a positive integer; got {getattr(rnn, name)!r}')
  if rnn.block == 'modern':
    for name, plain in (('connection', 'stacked'), ('layer_norm', False)):
      if getattr(rnn, name) != plain:
        raise OptionError(
          name,
          f"{name}={getattr(rnn, name)!r} does not apply to block='modern' (residual and normalized by "
          f"construction): leave {name}={plain!r} or use block='classic'",
        )
  if not rnn.mlp_expansion >= 0:
    raise OptionError('mlp_expansion', f'mlp_expansion must be positive, or 0 for no MLP; got {rnn.mlp_expansion!r}')
  if rnn.initial_carry == 'learned' and not getattr(cell, 'learnable_carry', True):
    raise OptionError(
      'initial_carry',
      f"initial_carry='learned' does not apply to {rnn.cell!r}: its carry is no state to learn (a key-value "
      "cache); use initial_carry='zeros'",
    )
  if rnn.execution == 'parallel' and not has_parallel_form(rnn.cell):
    raise OptionError(
      'execution',
      f"execution='parallel' needs a cell with a parallel form ({', '.join(parallel_cells())}); "
      f"{rnn.cell!r} has none: use 'layer' or 'time'",
    )
  mode = short_conv_mode(rnn.short_conv, rnn.block)
  own = getattr(cell, 'own_conv', None)
  if mode == 'on' and own is None and not hasattr(cell, 'conv_inputs'):
    raise OptionError(
      'short_conv', f"short_conv='on' needs a cell with projected inputs (cells.Cell); {cell.__name__} has none"
    )
  if rnn.output_gate and not hasattr(cell, 'project_inputs'):
    raise OptionError('output_gate', f'output_gate needs one of our cells (cells.Cell); {cell.__name__} is not')
  if rnn.conv_width is not None and (mode == 'off' or (own is None and mixer_conv_width(rnn) is None)):
    raise OptionError(
      'conv_width',
      f'conv_width={rnn.conv_width} sets no convolution: short_conv={mode!r} gives {cell.__name__} none; '
      "use short_conv='on' (or 'authors') or leave conv_width unset",
    )
  cell_kwargs(rnn)  # the cell's own convolution width against conv_width / short_conv


def cell_kwargs(rnn: Any) -> dict[str, Any]:
  """The attributes every layer's cell is built with: ``cell_kwargs``, the dtypes, the stack's depth
  where the cell's init uses it (``num_blocks``), and the width of a cell's own convolution
  (``own_conv``: Mamba's ``d_conv``, ``MLSTMLayer``'s ``conv_width``) as ``short_conv``/``conv_width`` say."""
  cell = resolve_cell(rnn.cell)
  fields = {f.name for f in dataclasses.fields(cell)}
  kwargs = dict(rnn.cell_kwargs or {})
  for name in ('dtype', 'param_dtype'):
    if name in fields:
      kwargs.setdefault(name, getattr(rnn, name))
  if 'num_blocks' in fields:  # an init scaled by the stack's depth (xLSTM's wang_init_)
    kwargs.setdefault('num_blocks', len(rnn.layer_features))
  own = getattr(cell, 'own_conv', None)
  mode = short_conv_mode(rnn.short_conv, rnn.block)
  if own is None or (mode == 'cell' and rnn.conv_width is None):
    return kwargs
  want = 1 if mode == 'off' else rnn.conv_width
  if want is not None:
    if own in kwargs and kwargs[own] != want:
      raise OptionError(
        'conv_width',
        f'cell_kwargs {own}={kwargs[own]} disagrees with short_conv={rnn.short_conv!r}, conv_width={rnn.conv_width}: '
        f'{cell.__name__} convolves with its own {own}; set one of them',
      )
    kwargs[own] = want
  return kwargs


def mixer_conv_width(rnn: Any) -> int | None:
  """The width of the convolution a ``Mixer`` puts around the cell (None: none)."""
  cell = resolve_cell(rnn.cell)
  if getattr(cell, 'own_conv', None) is not None:
    return None  # the cell convolves inside itself
  mode = short_conv_mode(rnn.short_conv, rnn.block)
  if mode == 'on' or (mode == 'authors' and getattr(cell, 'authors_conv', False)):
    return rnn.conv_width or DEFAULT_CONV_WIDTH
  return None


def make_blocks(rnn: Any) -> list[Block]:
  """Layer ``l``'s block (``layer_l``): its cell of width ``layer_features[l]`` (with the backward one
  if bidirectional), in a ``Mixer`` where a convolution or output gate goes around it."""
  cell_cls, kwargs = resolve_cell(rnn.cell), cell_kwargs(rnn)
  conv_width = mixer_conv_width(rnn)

  def mixer(width):
    cell = cell_cls(features=width, **kwargs)
    if conv_width is None and not rnn.output_gate:
      return cell
    return Mixer(cell, conv_width, rnn.output_gate, dtype=rnn.dtype, param_dtype=rnn.param_dtype)

  common = dict(merge=rnn.merge, carry_mode=rnn.initial_carry, dtype=rnn.dtype, param_dtype=rnn.param_dtype)
  blocks, previous = [], None
  for l, width in enumerate(rnn.layer_features):
    cells = dict(cell=mixer(width), reverse_cell=mixer(width) if rnn.bidirectional else None)
    if rnn.block == 'modern':
      # The stream enters layer 0 through a projection, and wherever the width changes.
      block = ModernBlock(
        **cells, **common, project_residual=l == 0 or previous != width, mlp_expansion=rnn.mlp_expansion
      )
      previous = width
    else:
      out = width * (2 if rnn.bidirectional and rnn.merge == 'concat' else 1)
      residual = rnn.connection == 'residual' and l > 0
      block = ClassicBlock(
        **cells, **common, project_residual=residual and previous != out, residual=residual, layer_norm=rnn.layer_norm
      )
      previous = out
    blocks.append(block)
  return blocks
