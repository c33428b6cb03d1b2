r"""Deep (stacked) recurrent networks: ``StackedCell`` (one time step) and ``DeepRNN`` (a sequence).

The seed's DeepRNN: layer :math:`l` at time :math:`t` reads the layer below at the same time step and
itself one step earlier,

.. math:: h_t^{(l)} = \mathrm{cell}^{(l)}\big(h_{t-1}^{(l)},\; x_t^{(l)}\big), \qquad
          x_t^{(0)} = x_t, \quad x_t^{(l)} = h_t^{(l-1)} \text{ (stacked)},

and the network's output at step :math:`t` comes from the top layer. ``DeepRNN`` adds the connection
variants, dropout, layer norm, bidirectional layers, variable lengths and three execution paths that
give the same numbers from the same parameters.

Two blocks put the cell in a layer. ``'classic'`` is the 2014 stack above (the cell's output is the
layer's, with optional residual, layer norm and dropout between layers). ``'modern'`` is the block of
today's recurrent models (Griffin/Hawk, De et al. 2024; Mamba, Gu & Dao 2023; xLSTM, Beck et al. 2024):
a residual stream :math:`s` of width :math:`H` with a pre-norm residual mixer (the cell) and a
pre-norm residual gated MLP,

.. math:: u_t = s_t + \mathrm{cell}(\mathrm{RMSNorm}(s)_t), \qquad
          s^{(l+1)}_t = u_t + W_d\big(\mathrm{GeLU}(W_g\, \mathrm{RMSNorm}(u_t)) \odot
          W_u\, \mathrm{RMSNorm}(u_t)\big),

and a final RMSNorm on the top layer's stream. Any cell runs in either block, so a study can separate
"the cell" from "the block".
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.linear import LinearRecurrentCell
from deeprnn_jax.cells.registry import has_parallel_form, parallel_cells, resolve_cell
from deeprnn_jax.sequences import (
  checked_inputs,
  checked_resets,
  reverse_padded,
  reverse_segments,
  select_rows,
  valid_mask,
  zero_invalid,
)

Array = jax.Array
Carry = Any

CONNECTIONS = ('stacked', 'residual', 'skip')
DROPOUT_MODES = ('step', 'tied')
MERGES = ('concat', 'sum')
EXECUTIONS = ('auto', 'time', 'layer', 'parallel')
BLOCKS = ('classic', 'modern')
INITIAL_CARRIES = ('zeros', 'learned')


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


class GatedMLP(nn.Module):
  r"""The gated MLP of the modern block (GeGLU; Shazeer 2020, as in Griffin):
  :math:`W_d(\mathrm{GeLU}(W_g x) \odot W_u x)`, ``[..., H] -> [..., H]``.

  Parameters: ``gate_up`` (:math:`[W_g, W_u]`: ``[H, 2M]``), ``down`` (``[M, H]``), with
  ``M = round(expansion * H)``.
  """

  expansion: float = 3.0
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    hidden = max(1, round(self.expansion * features))
    gate, up = jnp.split(
      nn.Dense(2 * hidden, dtype=self.dtype, param_dtype=self.param_dtype, name='gate_up')(x), 2, axis=-1
    )
    return nn.Dense(features, dtype=self.dtype, param_dtype=self.param_dtype, name='down')(jax.nn.gelu(gate) * up)


class _Layer(nn.Module):
  """One layer of a ``DeepRNN``: its cell(s) and what the block puts around them (``pre``, ``post``):
  the residual projection, the norms, the gated MLP; and the learned carries."""

  cell: nn.RNNCellBase
  reverse_cell: nn.RNNCellBase | None
  merge: str
  residual: bool
  project_residual: bool
  layer_norm: bool
  carry_mode: str
  dtype: Any
  param_dtype: Any
  block: str = 'classic'
  mlp_expansion: float = 3.0

  @property
  def out_features(self) -> int:
    if self.block == 'modern':
      return self.cell.features
    return self.cell.features * (2 if self.reverse_cell is not None and self.merge == 'concat' else 1)

  def setup(self):
    dense = functools.partial(nn.Dense, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
    if self.project_residual:
      self.residual_proj = dense(self.out_features)
    if self.layer_norm:
      self.norm = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype)
    if self.block == 'modern':
      self.mixer_norm = nn.RMSNorm(dtype=self.dtype, param_dtype=self.param_dtype)
      self.mlp_norm = nn.RMSNorm(dtype=self.dtype, param_dtype=self.param_dtype)
      self.mlp = GatedMLP(self.mlp_expansion, dtype=self.dtype, param_dtype=self.param_dtype)
      if self.reverse_cell is not None and self.merge == 'concat':
        self.merge_proj = dense(self.out_features)
    if self.carry_mode == 'learned':
      self.learned_carry = self.param('initial_carry', self._zero_carry, self.cell)
      if self.reverse_cell is not None:
        self.learned_reverse_carry = self.param('initial_carry_reverse', self._zero_carry, self.reverse_cell)

  @staticmethod
  def _zero_carry(rng, cell):
    # The carry of one sequence (no batch axis); its structure is the cell's (e.g. LSTM's (c, h)).
    return jax.tree.map(lambda leaf: leaf[0], cell.initialize_carry(rng, (1, 1)))

  def initial_carry(self, batch_size: int) -> Carry:
    """The carry before the first step: zeros, or the learned one broadcast over the batch."""

    def initial(cell, learned):
      if learned is None:
        return cell.initialize_carry(jax.random.key(0), (batch_size, 1))
      return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (batch_size,) + leaf.shape), learned)

    learned = self.learned_carry if self.carry_mode == 'learned' else None
    if self.reverse_cell is None:
      return initial(self.cell, learned)
    learned_reverse = self.learned_reverse_carry if self.carry_mode == 'learned' else None
    return initial(self.cell, learned), initial(self.reverse_cell, learned_reverse)

  def merge_directions(self, forward: Array, backward: Array) -> Array:
    if self.merge == 'sum':
      return forward + backward
    both = jnp.concatenate([forward, backward], axis=-1)
    return self.merge_proj(both) if self.block == 'modern' else both

  def _stream(self, layer_input: Array) -> Array:
    """The modern block's residual stream entering this layer (projected where the width changes)."""
    return self.residual_proj(layer_input) if self.project_residual else layer_input

  def pre(self, layer_input: Array) -> Array:
    """What the cell reads: the layer input (classic), or the normalized residual stream (modern)."""
    return self.mixer_norm(self._stream(layer_input)) if self.block == 'modern' else layer_input

  def post(self, y: Array, layer_input: Array, dropout_mask: Array | None) -> Array:
    """What sits between this layer and the next, given the cell's output ``y``.

    Classic: residual add, layer norm, dropout. Modern: ``u = s + drop(y)``, then
    ``u + drop(mlp(RMSNorm(u)))`` (the two halves of the layer's mask). Elementwise over the leading
    axes, so it is the same on one step ``[batch, H]`` as on a whole sequence ``[batch, time, H]``.
    """
    if self.block == 'modern':
      mixer_mask, mlp_mask = (None, None) if dropout_mask is None else jnp.split(dropout_mask, 2, axis=-1)
      drop = lambda v, m: v if m is None else v * m.astype(v.dtype)
      u = self._stream(layer_input) + drop(y, mixer_mask)
      return u + drop(self.mlp(self.mlp_norm(u)), mlp_mask)
    if self.residual:
      y = y + (self.residual_proj(layer_input) if self.project_residual else layer_input)
    if self.layer_norm:
      y = self.norm(y)
    if dropout_mask is not None:
      y = y * dropout_mask.astype(y.dtype)
    return y


class DeepRNN(nn.Module):
  r"""A deep recurrent network over sequences ``x`` of shape ``[batch, time, features]``.

  ``final_carries, outputs = DeepRNN(...)(x, seq_lengths)``:

  * ``outputs``: ``[batch, time, out]``, zero past each sequence's length. ``out`` is the top
    layer's width (doubled for bidirectional ``merge='concat'``); for ``connection='skip'`` it is
    the concatenation of every layer's output.
  * ``final_carries``: a tuple with one carry per layer (a ``(forward, backward)`` pair for
    bidirectional layers): each layer's carry at each sequence's last valid step. For the backward
    direction that is its carry after reading the sequence's first element.

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
    execution: ``'time'`` (the reference: one scan over time, every layer's per-step ``__call__``;
      bidirectional layers are scanned layer by layer), ``'layer'`` (each layer scanned over the
      whole sequence with its input projection hoisted out of the loop as one matmul, as cuDNN
      does; linear-recurrence cells also hoist their readout), ``'parallel'`` (cells with a parallel
      form only, ``registry.parallel_cells()``: the cell's ``parallel_sequence``, an associative scan
      or a chunkwise form over time), or ``'auto'``: on CPU the path that trained fastest for the cell
      (``Cell.cpu_execution``, measured by ``benchmarks/cells_bench.py``: ``'layer'`` for the
      linear-recurrence cells and IndRNN, ``'parallel'`` for the matrix memories and attention,
      ``'time'`` for the rest), and on accelerators ``'parallel'`` for cells with a parallel form,
      else ``'layer'``. All use the same parameter tree and give the same numbers.
    unroll: scan unroll factor.
    remat: rematerialize each scan step in the backward pass (memory ~ carries, for long sequences).
    initial_carry: ``'zeros'`` or ``'learned'`` (a parameter per layer, broadcast over the batch).
    dtype: computation dtype of the matmuls (e.g. ``jnp.bfloat16``); carries and parameters stay in
      ``param_dtype``.
    block: ``'classic'`` (the seed's stack, with ``connection`` and ``layer_norm``) or ``'modern'``
      (pre-norm residual mixer + pre-norm residual gated MLP, see the module docstring; it is
      residual by construction, so it takes ``connection='stacked'`` and ``layer_norm=False``).
      Layer ``l``'s stream has width ``features[l]``; a learned projection ``residual_proj`` (no
      bias) makes the input of layer 0, and of any layer whose width differs from the one below,
      that width. Bidirectional modern layers merge by sum or by a learned ``merge_proj`` of the
      concatenation, so the stream keeps width ``H``. Parameters per layer: ``mixer_norm``,
      ``mlp_norm`` (RMSNorm scales), ``mlp`` (``GatedMLP``), and ``final_norm`` on top.
    mlp_expansion: the modern block's MLP width over ``H`` (Griffin's 3).
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

  def __post_init__(self):
    # Validate at construction, before any compute, with messages that name the valid choices.
    for name, value, choices in (
      ('connection', self.connection, CONNECTIONS),
      ('dropout_mode', self.dropout_mode, DROPOUT_MODES),
      ('merge', self.merge, MERGES),
      ('execution', self.execution, EXECUTIONS),
      ('initial_carry', self.initial_carry, INITIAL_CARRIES),
      ('block', self.block, BLOCKS),
    ):
      if value not in choices:
        raise ValueError(f'DeepRNN: unknown {name} {value!r}; choose one of {list(choices)}')
    resolve_cell(self.cell)
    widths = self.layer_features
    if not widths or any(not isinstance(w, int) or w <= 0 for w in widths):
      raise ValueError(f'DeepRNN: features must be positive integers, one per layer; got {self.features!r}')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f'DeepRNN: dropout_rate must be in [0, 1); got {self.dropout_rate!r}')
    if not isinstance(self.unroll, int) or self.unroll < 1:
      raise ValueError(f'DeepRNN: unroll must be a positive integer; got {self.unroll!r}')
    if self.block == 'modern' and (self.connection != 'stacked' or self.layer_norm):
      raise ValueError(
        "DeepRNN: block='modern' is residual and normalized by construction; leave "
        "connection='stacked' and layer_norm=False (or use block='classic')"
      )
    if not self.mlp_expansion > 0:
      raise ValueError(f'DeepRNN: mlp_expansion must be positive; got {self.mlp_expansion!r}')
    if self.initial_carry == 'learned' and not getattr(resolve_cell(self.cell), 'learnable_carry', True):
      raise ValueError(
        f"DeepRNN: initial_carry='learned' does not apply to {self.cell!r}: its carry is no "
        "state to learn (a key-value cache); use initial_carry='zeros'"
      )
    if self.execution == 'parallel' and not has_parallel_form(self.cell):
      raise ValueError(
        f"DeepRNN: execution='parallel' needs a cell with a parallel form ({', '.join(parallel_cells())}); "
        f"{self.cell!r} has none: use 'layer' or 'time'"
      )
    super().__post_init__()

  @property
  def layer_features(self) -> tuple[int, ...]:
    """Hidden size of each layer."""
    if isinstance(self.features, int):
      num_layers = 1 if self.num_layers is None else self.num_layers
      if not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f'DeepRNN: num_layers must be a positive integer; got {self.num_layers!r}')
      return (self.features,) * num_layers
    widths = tuple(self.features)
    if self.num_layers is not None and self.num_layers != len(widths):
      raise ValueError(f'DeepRNN: num_layers={self.num_layers} but features has {len(widths)} entries')
    return widths

  @property
  def layer_out_features(self) -> tuple[int, ...]:
    if self.block == 'modern':
      return self.layer_features
    return tuple(w * (2 if self.bidirectional and self.merge == 'concat' else 1) for w in self.layer_features)

  def setup(self):
    cell_cls = resolve_cell(self.cell)
    fields = {f.name for f in dataclasses.fields(cell_cls)}
    kwargs = dict(self.cell_kwargs or {})
    for name in ('dtype', 'param_dtype'):
      if name in fields:
        kwargs.setdefault(name, getattr(self, name))
    out_widths = self.layer_out_features
    layers = []
    modern = self.block == 'modern'
    for l, width in enumerate(self.layer_features):
      residual = self.connection == 'residual' and l > 0
      project = residual and out_widths[l - 1] != out_widths[l]
      if modern:  # the stream enters layer 0 through a projection, and wherever the width changes
        project = l == 0 or out_widths[l - 1] != out_widths[l]
      layers.append(
        _Layer(
          cell=cell_cls(features=width, **kwargs),
          reverse_cell=cell_cls(features=width, **kwargs) if self.bidirectional else None,
          merge=self.merge,
          residual=residual,
          project_residual=project,
          layer_norm=self.layer_norm,
          carry_mode=self.initial_carry,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          block=self.block,
          mlp_expansion=self.mlp_expansion,
        )
      )
    self.layer = layers
    if modern:
      self.final_norm = nn.RMSNorm(dtype=self.dtype, param_dtype=self.param_dtype)

  def _top(self, outputs: list[Array]) -> Array:
    """The network's output from every layer's: the top one (normalized in the modern block), or all
    of them side by side (``connection='skip'``)."""
    if self.connection == 'skip':
      return jnp.concatenate(outputs, axis=-1)
    return self.final_norm(outputs[-1]) if self.block == 'modern' else outputs[-1]

  # -- public entry points -------------------------------------------------------------------------

  def __call__(
    self,
    x: Array,
    seq_lengths: Array | None = None,
    *,
    initial_carries: Sequence[Carry] | None = None,
    deterministic: bool = True,
    resets: Array | None = None,
  ) -> tuple[tuple[Carry, ...], Array]:
    """Runs the network over ``x`` ``[batch, time, features]`` (real); ``seq_lengths`` ``[batch]``
    integers (a JAX or NumPy array, list or tuple); ``resets`` ``[batch, time]`` bool, True where a
    packed sequence starts (class docstring)."""
    seq_lengths = checked_inputs(x, seq_lengths)
    batch, time = x.shape[:2]
    valid = None if seq_lengths is None else valid_mask(seq_lengths, batch, time)
    resets = checked_resets(resets, batch, time, valid)
    carries = self.initialize_carries(batch) if initial_carries is None else tuple(initial_carries)
    masks = self._dropout_masks(batch, time, deterministic)
    execution = self.resolved_execution
    if execution == 'time' and not self.bidirectional:
      return self._time_major(x, valid, carries, masks, resets)
    return self._layer_major(x, valid, seq_lengths, carries, masks, execution, resets)

  def initialize_carries(self, batch_size: int) -> tuple[Carry, ...]:
    """Per layer, the carry before the first step (``(forward, backward)`` if bidirectional)."""
    return tuple(layer.initial_carry(batch_size) for layer in self.layer)

  def step(
    self,
    carries: Sequence[Carry],
    x_t: Array,
    valid_t: Array | None = None,
    dropout_masks=None,
    resets_t: Array | None = None,
    reset_carries: Sequence[Carry] | None = None,
  ) -> tuple[tuple[Carry, ...], Array]:
    """One time step through all layers: ``x_t`` ``[batch, features]`` -> ``(carries, y_t)``.

    Streaming inference: ``model.apply(params, carries, x_t, method='step')`` with carries from
    ``method='initialize_carries'``. Rows where ``valid_t`` is False keep their carries and output
    zeros; rows where ``resets_t`` (``[batch]`` bool) is True start this step from ``reset_carries``
    (default: ``initialize_carries``). Unidirectional networks only: a backward direction needs the
    whole sequence.
    """
    if resets_t is not None and reset_carries is None:
      reset_carries = self.initialize_carries(x_t.shape[0])
    if self.bidirectional:
      raise ValueError('DeepRNN.step: a bidirectional layer needs the whole sequence; call the module instead')
    layer_input, outputs, new_carries = x_t, [], []
    for l, layer in enumerate(self.layer):
      if self.connection == 'skip' and l > 0:
        layer_input = jnp.concatenate([x_t, layer_input], axis=-1)
      carry = carries[l] if resets_t is None else select_rows(resets_t, reset_carries[l], carries[l])
      carry, y = layer.cell(carry, layer.pre(layer_input))
      y = layer.post(y, layer_input, None if dropout_masks is None else dropout_masks[l])
      if valid_t is not None:
        carry = select_rows(valid_t, carry, carries[l])
        y = zero_invalid(valid_t, y)
      new_carries.append(carry)
      outputs.append(y)
      layer_input = y
    return tuple(new_carries), zero_invalid(valid_t, self._top(outputs))

  @property
  def resolved_execution(self) -> str:
    """The execution path ``'auto'`` stands for, given the cell and the backend."""
    if self.execution != 'auto':
      return self.execution
    if jax.default_backend() == 'cpu':
      # Measured per cell on XLA:CPU (benchmarks/cells_bench.py, BENCHMARKS.md; Cell.cpu_execution).
      # Hoisting a dense recurrence's input matmul does not pay there (the LSTM trained 0.8-1.2x as
      # fast hoisted), nor does the associative scan's O(T log T) work; hoisting pays where the steps
      # left are elementwise, and the parallel forms of the matrix memories and attention replace
      # steps that each touch a whole matrix state or cache.
      cell = resolve_cell(self.cell)
      path = getattr(cell, 'cpu_execution', 'time')
      if path not in ('time', 'layer') and not (path == 'parallel' and has_parallel_form(cell)):
        raise ValueError(
          f"{cell.__name__}.cpu_execution={path!r}: use 'time', 'layer' or, for a cell with a parallel form, 'parallel'"
        )
      return path
    # On accelerators the cuDNN recipe: big hoisted matmuls, and the associative scan's log-depth
    # for linear recurrences.
    return 'parallel' if has_parallel_form(self.cell) else 'layer'

  # -- execution paths -----------------------------------------------------------------------------

  def _scan(self, body: Callable, module: nn.Module, carry: Carry, xs: Any) -> tuple[Carry, Any]:
    """``nn.scan`` over axis 1 of ``xs`` with ``module``'s parameters broadcast to every step."""
    if self.remat:
      body = nn.remat(body)
    scan = nn.scan(
      body,
      variable_broadcast='params',
      split_rngs={'params': False},
      in_axes=1,
      out_axes=1,
      unroll=self.unroll,
    )
    return scan(module, carry, xs)

  def _time_major(self, x, valid, carries, masks, resets=None):
    """One scan over time; each step runs all layers (``step``)."""
    time = x.shape[1]
    # Masks as per-step inputs: tied ones ([batch, 1, H]) are broadcast over time.
    masks = None if masks is None else tuple(jnp.broadcast_to(m, m.shape[:1] + (time,) + m.shape[2:]) for m in masks)
    if resets is None:

      def body(module, carries, inputs):
        x_t, valid_t, masks_t = inputs
        return module.step(carries, x_t, valid_t, masks_t)

      return self._scan(body, self, tuple(carries), (x, valid, masks))

    # The fresh carries ride along in the scan's carry (they may be learned parameters).
    def reset_body(module, both, inputs):
      carries, fresh = both
      x_t, valid_t, masks_t, resets_t = inputs
      carries, y = module.step(carries, x_t, valid_t, masks_t, resets_t, fresh)
      return (carries, fresh), y

    fresh = self.initialize_carries(x.shape[0])
    (final, _), y = self._scan(reset_body, self, (tuple(carries), fresh), (x, valid, masks, resets))
    return final, y

  def _layer_major(self, x, valid, lengths, carries, masks, execution, resets=None):
    """Layer by layer, each over the whole sequence (``execution`` in time / layer / parallel)."""
    layer_input, outputs, finals = x, [], []
    if resets is None:
      reverse = functools.partial(reverse_padded, lengths=lengths)
    else:
      reverse = functools.partial(reverse_segments, lengths=lengths, resets=resets)
    for l, layer in enumerate(self.layer):
      if self.connection == 'skip' and l > 0:
        layer_input = jnp.concatenate([x, layer_input], axis=-1)
      cell_input = layer.pre(layer_input)
      fresh = None if resets is None else layer.initial_carry(x.shape[0])
      if self.bidirectional:
        forward_carry, backward_carry = carries[l]
        fresh_f, fresh_b = (None, None) if fresh is None else fresh
        final_f, y_f = self._run_cell(layer.cell, cell_input, valid, forward_carry, execution, resets, fresh_f)
        # Reversed within segments, the segments keep their places: the resets stay where they are.
        final_b, y_b = self._run_cell(
          layer.reverse_cell, reverse(cell_input), valid, backward_carry, execution, resets, fresh_b
        )
        final, y = (final_f, final_b), layer.merge_directions(y_f, reverse(y_b))
      else:
        final, y = self._run_cell(layer.cell, cell_input, valid, carries[l], execution, resets, fresh)
      y = zero_invalid(valid, layer.post(y, layer_input, None if masks is None else masks[l]))
      finals.append(final)
      outputs.append(y)
      layer_input = y
    return tuple(finals), zero_invalid(valid, self._top(outputs))

  def _run_cell(self, cell, x, valid, carry, execution, resets=None, fresh=None):
    """One cell over a whole sequence ``[batch, time, in]`` -> ``(final carry, [batch, time, H])``;
    ``fresh`` is the carry the ``resets`` start from."""
    if execution == 'parallel':
      # The cell's own whole-sequence form (associative scan, chunkwise, masked attention).
      kwargs = {} if resets is None else dict(resets=resets, reset_carry=fresh)
      final, y = cell.parallel_sequence(carry, cell.project_inputs(x), valid, **kwargs)
      return final, zero_invalid(valid, y)
    if execution == 'layer' and isinstance(cell, LinearRecurrentCell):
      # Input projection and readout hoisted; only the elementwise recurrence runs over time.
      final, y = cell.sequence(
        carry, cell.project_inputs(x), valid, parallel=False, unroll=self.unroll, resets=resets, reset_carry=fresh
      )
      return final, zero_invalid(valid, y)

    hoisted = execution == 'layer' and hasattr(cell, 'project_inputs')
    inputs = cell.project_inputs(x) if hoisted else x

    def body(cell, both, step_inputs):
      carry, fresh = both
      x_t, valid_t, resets_t = step_inputs
      start = carry if resets_t is None else select_rows(resets_t, fresh, carry)
      new_carry, y = cell.recur(start, x_t) if hoisted else cell(start, x_t)
      if valid_t is not None:
        new_carry = select_rows(valid_t, new_carry, carry)
      return (new_carry, fresh), y

    # The fresh carry rides along in the scan's carry (it may be a learned parameter).
    (final, _), y = self._scan(body, cell, (carry, fresh), (inputs, valid, resets))
    return final, zero_invalid(valid, y)

  def _dropout_masks(self, batch: int, time: int, deterministic: bool) -> tuple[Array, ...] | None:
    """Per layer, a scaled keep mask ``[batch, time or 1, out]``, drawn once outside every scan so
    that all execution paths apply the same masks."""
    if deterministic or self.dropout_rate == 0.0:
      return None
    keep = 1.0 - self.dropout_rate
    steps = time if self.dropout_mode == 'step' else 1
    rng = self.make_rng('dropout')
    masks = []
    # The modern block drops the mixer's and the MLP's outputs: two halves of one mask per layer.
    widths = tuple(w * (2 if self.block == 'modern' else 1) for w in self.layer_out_features)
    for width, key in zip(widths, jax.random.split(rng, len(self.layer_features))):
      masks.append(jax.random.bernoulli(key, keep, (batch, steps, width)).astype(jnp.float32) / keep)
    return tuple(masks)
