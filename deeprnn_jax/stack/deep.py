r"""``StackedCell`` (one time step through L layers) and ``DeepRNN`` (a sequence through L blocks).

The seed's DeepRNN: layer :math:`l` at time :math:`t` reads the layer below at the same time step and
itself one step earlier,

.. math:: h_t^{(l)} = \mathrm{cell}^{(l)}\big(h_{t-1}^{(l)},\; x_t^{(l)}\big), \qquad
          x_t^{(0)} = x_t, \quad x_t^{(l)} = h_t^{(l-1)} \text{ (stacked)},

and the network's output at step :math:`t` comes from the top layer. ``DeepRNN`` is the stack of
blocks (``blocks``: classic or modern, each around a temporal mixer, ``mixer``) with the connection
between them (stacked, residual, skip), dropout and the final norm; how each block runs over time is
``paths``'; every option is checked in one place, ``options.check_options``.

Streaming inference: ``model.apply(params, carries, x_t, method='step')`` runs one time step
(``x_t`` ``[batch, features]`` -> ``(carries, y_t)``) with carries from ``method='initialize_carries'``.
Rows where ``valid_t`` is False keep their carries and output zeros; rows where ``resets_t``
(``[batch]`` bool) is True start the step from ``reset_carries`` (default: ``initialize_carries``).
Unidirectional networks only: a backward direction needs the whole sequence.

Packed sequences: ``resets`` ``[batch, time]`` bool marks the steps where a new sequence starts
inside a row. Every layer starts afresh there, from its initial carry (zeros, or the learned one
with ``initial_carry='learned'``), on every execution path: the per-step scans reset the carry
before the step, linear recurrences fold the reset into their coefficients (a zero decay, so the
associative scan needs no flag), the chunkwise forms mask their intra-chunk products to one
segment and restart the state at resets, and attention attends within its segment with RoPE
positions restarting at 0. Bidirectional layers reverse each sequence within its segment
(``reverse_segments``). Nothing crosses a reset, gradients included; the final carries are the last
sequence's, and a reset at step 0 starts the row from the initial carry, not from
``initial_carries``. Resets on padding steps are ignored.

Inputs are checked where they are cheap to check (``sequences``): shapes, ranks and dtypes of ``x``,
``seq_lengths``, ``resets`` and the carries at trace time, each in one line naming the argument and the
fix. Lengths are data: concrete ones (NumPy, lists) outside [0, T] are refused at once; traced ones are
clamped to [0, T], and with ``check_lengths=True`` checked under ``jax.experimental.checkify``
(``sequences.checked_lengths``, with the measured cost of each). A sequence of length 0 is defined:
its outputs are zero and its final carries are the ones it was given (``initial_carries``, or the
initial ones), on every execution path.
"""

from __future__ import annotations

from typing import Any, Sequence, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.sequences import checked_carries, checked_inputs, checked_resets, valid_mask
from deeprnn_jax.stack import options, paths

Array = jax.Array
Carry = Any


class StackedCell(nn.RNNCellBase):
  r"""L cells as one cell: one time step through all layers (the seed's stacked connection).

  ``carry = (carry_0, ..., carry_{L-1})``; layer ``l`` reads the output of layer ``l-1`` at the same
  step; the output is the top layer's. It follows the cell protocol, so ``nn.RNN(StackedCell(...))``
  runs a deep RNN, and it is the unit of streaming (step-by-step) inference. The cells (ours or
  Flax's) are named ``layer_0``, ``layer_1``, ... whatever their class, so a ``StackedCell`` reads
  the parameters of a plain ``DeepRNN`` with ``params['layer_l']['cell']`` as ``layer_l``.

  Attributes:
    cells: the layers' cells, bottom first.
  """

  cells: Sequence[nn.RNNCellBase]

  def setup(self):
    self.layer = [cell.clone(name=None, parent=None) for cell in self.cells]

  def __call__(self, carry, x):
    new_carry = []
    for layer, layer_carry in zip(self.layer, carry):
      layer_carry, x = layer(layer_carry, x)
      new_carry.append(layer_carry)
    return tuple(new_carry), x

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    batch_dims, carries = tuple(input_shape[:-1]), []
    features = input_shape[-1]
    for cell, key in zip(self.cells, jax.random.split(rng, len(self.cells))):
      carries.append(cell.initialize_carry(key, batch_dims + (features,)))
      features = cell.features
    return tuple(carries)

  @property
  def num_feature_axes(self) -> int:
    return 1


class DeepRNN(nn.Module):
  r"""A deep recurrent network over sequences ``x`` of shape ``[batch, time, features]``.

  ``final_carries, outputs = DeepRNN(...)(x, seq_lengths)``:

  * ``outputs``: ``[batch, time, out]``, zero past each sequence's length. ``out`` is the top
    layer's width (doubled for bidirectional ``merge='concat'``); for ``connection='skip'`` it is
    the concatenation of every layer's output.
  * ``final_carries``: per layer (a ``(forward, backward)`` pair if bidirectional) its carry at each
    sequence's last valid step (the backward one's: after reading the sequence's first element).
    A sequence of length 0 is defined: zero outputs, its given (or initial) carries unchanged.

  Lengths in [0, time] (concrete ones outside are refused, traced ones clamped), packed sequences
  (``resets``), streaming (``step``): the module docstring.

  Attributes:
    cell: a name in ``CELLS`` or a cell class (ours or Flax's own, e.g. ``nn.OptimizedLSTMCell``).
    features: hidden size, or a tuple of per-layer sizes.
    num_layers: L (default: ``len(features)`` for a tuple, else 1).
    cell_kwargs: extra attributes for every cell (e.g. ``{'forget_init': 'chrono'}``).
    connection: ``'stacked'`` (the seed: :math:`x^{(l)} = y^{(l-1)}`); ``'residual'``
      (:math:`x^{(l+1)} = y^{(l)} + P x^{(l)}` for :math:`l \ge 1`, with :math:`P` the identity or,
      where widths differ, a learned projection ``residual_proj``); ``'skip'`` (Graves 2013: every
      layer also reads the network input, :math:`x^{(l)} = [x; y^{(l-1)}]`, and the output is
      :math:`[y^{(0)}; \dots; y^{(L-1)}]`).
    dropout_rate: dropout on every layer's output, the non-recurrent connections of Zaremba et al.
      2014 (the recurrent state is never dropped). Needs the ``'dropout'`` rng when not
      ``deterministic``.
    dropout_mode: ``'step'`` (a fresh mask per time step) or ``'tied'`` (one mask per sequence and
      layer, shared across time: variational dropout, Gal & Ghahramani 2016).
    layer_norm: layer-normalize every layer's output (after the residual add).
    bidirectional: each layer runs a forward and a backward cell (``reverse_cell``) over the whole
      sequence of the layer below; their outputs are merged by ``merge`` (``'concat'``/``'sum'``).
    execution: ``'time'`` (the reference: per step), ``'layer'`` (input projections hoisted),
      ``'parallel'`` (the cell's whole-sequence form) or ``'auto'`` (on CPU each cell's measured fastest,
      ``Cell.cpu_execution``; on accelerators ``'parallel'`` where the cell has one, else ``'layer'``):
      ``paths``. All use the same parameter tree and give the same numbers.
    unroll: scan unroll factor.
    remat: rematerialize each scan step in the backward pass (memory ~ carries, for long sequences).
    initial_carry: ``'zeros'`` or ``'learned'`` (a parameter per layer, broadcast over the batch).
    dtype: computation dtype of the matmuls (e.g. ``jnp.bfloat16``); carries and parameters stay in
      ``param_dtype``.
    block: ``'classic'`` (``blocks.ClassicBlock``: the seed's stack, with ``connection`` and
      ``layer_norm``) or ``'modern'`` (``blocks.ModernBlock``: pre-norm residual mixer + pre-norm
      residual gated MLP; residual by construction, so it takes ``connection='stacked'`` and
      ``layer_norm=False``), with ``final_norm`` (RMSNorm) on the top layer's stream.
    mlp_expansion: the modern block's MLP width over ``H`` (Griffin's 3; 0: no MLP, as Mamba and xLSTM's mLSTM).
    short_conv: the short causal convolution (``mixer.Mixer``): ``'authors'`` where each cell's
      authors put one, ``'on'`` for every cell, ``'off'`` for none, ``'cell'`` each cell as it is
      (``options.SHORT_CONVS``; the cells guide has the places). None: ``'authors'`` in the modern
      block, ``'cell'`` in the classic one.
    conv_width: its width :math:`k` (None: 4; Mamba's own ``d_conv`` where unset).
    output_gate: Griffin's gate branch around every mixer, :math:`W_{out}(y \odot \mathrm{GeLU}(W_y x))`
      (``mixer.Mixer``).
    check_lengths: check traced ``seq_lengths`` in [0, time] under ``checkify`` (``sequences.checked_lengths``).
  """

  cell: str | type = 'lstm'
  features: int | Sequence[int] = 128
  num_layers: int | None = None
  cell_kwargs: Mapping[str, Any] | None = None
  connection: str = 'stacked'
  dropout_rate: float = 0.0
  dropout_mode: str = 'step'
  layer_norm: bool = False
  bidirectional: bool = False
  merge: str = 'concat'
  execution: str = 'auto'
  unroll: int = 1
  remat: bool = False
  initial_carry: str = 'zeros'
  dtype: Any = None
  param_dtype: Any = jnp.float32
  block: str = 'classic'
  mlp_expansion: float = 3.0
  short_conv: str | None = None
  conv_width: int | None = None
  output_gate: bool = False
  check_lengths: bool = False

  def __post_init__(self):
    options.check_options(self)  # every combination, before any compute
    super().__post_init__()

  @property
  def layer_features(self) -> tuple[int, ...]:
    """Hidden size of each layer."""
    return options.layer_features(self.features, self.num_layers)

  @property
  def layer_out_features(self) -> tuple[int, ...]:
    """Each layer's output width (doubled by a bidirectional classic layer's concatenation)."""
    doubled = self.bidirectional and self.merge == 'concat' and self.block == 'classic'
    return tuple(w * (1 + doubled) for w in self.layer_features)

  @property
  def resolved_execution(self) -> str:
    """The execution path ``'auto'`` stands for, given the cell and the backend (``paths``)."""
    return paths.resolve_execution(self.execution, self.cell)

  def setup(self):
    self.layer = options.make_blocks(self)
    if self.block == 'modern':
      self.final_norm = nn.RMSNorm(dtype=self.dtype, param_dtype=self.param_dtype)

  def __call__(
    self,
    x: Array,
    seq_lengths: Array | None = None,
    *,
    initial_carries: Sequence[Carry] | None = None,
    deterministic: bool = True,
    resets: Array | None = None,
  ) -> tuple[tuple[Carry, ...], Array]:
    """Runs over ``x`` ``[batch, time, features]`` (real); ``seq_lengths`` ``[batch]`` integers in ``[0, time]``;
    ``resets`` ``[batch, time]`` bool, True where a packed sequence starts (the module docstring)."""
    seq_lengths = checked_inputs(x, seq_lengths, check=self.check_lengths)
    batch, time = x.shape[:2]
    valid = None if seq_lengths is None else valid_mask(seq_lengths, batch, time)
    resets = checked_resets(resets, batch, time, valid)
    carries = checked_carries(initial_carries, self.initialize_carries(batch))
    masks = None if deterministic or self.dropout_rate == 0.0 else paths.dropout_masks(self, batch, time)
    execution, scan = self.resolved_execution, paths.Scan(self.unroll, self.remat)
    if execution == 'time' and not self.bidirectional:
      return paths.time_major(self, x, valid, carries, masks, resets, scan)
    return paths.layer_major(self, x, valid, seq_lengths, carries, masks, execution, scan, resets)

  def initialize_carries(self, batch_size: int) -> tuple[Carry, ...]:
    """Per layer, the carry before the first step (``(forward, backward)`` if bidirectional)."""
    return tuple(block.initial_carry(batch_size) for block in self.layer)

  def step(
    self,
    carries: Sequence[Carry],
    x_t: Array,
    valid_t: Array | None = None,
    dropout_masks=None,
    resets_t: Array | None = None,
    reset_carries: Sequence[Carry] | None = None,
  ) -> tuple[tuple[Carry, ...], Array]:
    """One time step through all layers: ``x_t`` ``[batch, features]`` -> ``(carries, y_t)``
    (streaming; the module docstring)."""
    return paths.checked_step(self, carries, x_t, valid_t, dropout_masks, resets_t, reset_carries)

  def top(self, outputs: list[Array]) -> Array:
    """The network's output from every layer's: the top one (normalized in the modern block), or all
    of them side by side (``connection='skip'``)."""
    if self.connection == 'skip':
      return jnp.concatenate(outputs, axis=-1)
    return self.final_norm(outputs[-1]) if self.block == 'modern' else outputs[-1]
