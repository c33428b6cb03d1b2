r"""The blocks a ``DeepRNN`` stacks: what sits around each layer's temporal mixer.

``'classic'`` (``ClassicBlock``) is the 2014 stack: the cell's output is the layer's, with an optional
residual add, layer norm and dropout between layers. ``'modern'`` (``ModernBlock``) is the residual
block of today's recurrent models (Griffin/Hawk, De et al. 2024, recurrentgemma's ``ResidualBlock``;
Mamba, Gu & Dao 2023; xLSTM, Beck et al. 2024): a residual stream :math:`s` of width :math:`H`, a
pre-norm residual temporal mixer and a pre-norm residual gated MLP,

.. math:: u_t = s_t + \mathrm{mixer}(\mathrm{RMSNorm}(s)_t), \qquad
          s^{(l+1)}_t = u_t + W_d\big(\mathrm{GeLU}(W_g\, \mathrm{RMSNorm}(u_t)) \odot
          W_u\, \mathrm{RMSNorm}(u_t)\big).

A block owns its mixer (``cell``; a ``Mixer`` when a short convolution or an output gate is around the
cell), the backward mixer of a bidirectional layer (``reverse_cell``), the learned initial carries and
the block's own parameters. How the mixer runs over time (the execution paths) is ``paths``'; how
blocks connect (stacked, residual, skip) is ``DeepRNN``'s. Both blocks are elementwise over the leading
axes around the mixer, so ``pre`` and ``post`` are the same on one step ``[batch, H]`` as on a whole
sequence ``[batch, time, H]``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Carry = Any


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


class Block(nn.Module):
  """What the two blocks share: the mixer(s) and the carries they start from.

  Attributes:
    cell: the temporal mixer (a cell, or a ``Mixer`` around one).
    reverse_cell: the backward direction's mixer of a bidirectional layer, or None.
    merge: how the two directions' outputs meet (``'concat'`` or ``'sum'``).
    carry_mode: ``'zeros'`` or ``'learned'`` (parameters ``initial_carry``, ``initial_carry_reverse``).
    project_residual: a learned projection ``residual_proj`` (no bias) of the layer input, where the
      residual path changes width.
  """

  cell: nn.RNNCellBase
  reverse_cell: nn.RNNCellBase | None = None
  merge: str = 'concat'
  carry_mode: str = 'zeros'
  project_residual: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @property
  def out_features(self) -> int:
    return self.cell.features * (2 if self.reverse_cell is not None and self.merge == 'concat' else 1)

  @property
  def mask_features(self) -> int:
    """The width of this layer's dropout mask."""
    return self.out_features

  def dense(self, features: int, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

  def setup(self):
    if self.project_residual:
      self.residual_proj = self.dense(self.out_features)
    if self.carry_mode == 'learned':
      self.learned_carry = self.param('initial_carry', _zero_carry, self.cell)
      if self.reverse_cell is not None:
        self.learned_reverse_carry = self.param('initial_carry_reverse', _zero_carry, self.reverse_cell)

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
    return forward + backward if self.merge == 'sum' else jnp.concatenate([forward, backward], axis=-1)

  def pre(self, layer_input: Array) -> Array:
    """What the mixer reads, given the layer's input."""
    raise NotImplementedError

  def post(self, y: Array, layer_input: Array, dropout_mask: Array | None) -> Array:
    """The layer's output, given the mixer's output ``y`` and the layer's input."""
    raise NotImplementedError


def _zero_carry(rng, cell):
  # The carry of one sequence (no batch axis); its structure is the cell's (e.g. LSTM's (c, h)).
  return jax.tree.map(lambda leaf: leaf[0], cell.initialize_carry(rng, (1, 1)))


def _drop(v: Array, mask: Array | None) -> Array:
  return v if mask is None else v * mask.astype(v.dtype)


class ClassicBlock(Block):
  """The seed's layer: the cell's output, then (optionally) a residual add, layer norm and dropout.

  Attributes:
    residual: add the layer input (projected by ``residual_proj`` where widths differ).
    layer_norm: layer-normalize the output (after the residual add); parameter ``norm``.
  """

  residual: bool = False
  layer_norm: bool = False

  def setup(self):
    super().setup()
    if self.layer_norm:
      self.norm = nn.LayerNorm(dtype=self.dtype, param_dtype=self.param_dtype)

  def pre(self, layer_input: Array) -> Array:
    return layer_input

  def post(self, y: Array, layer_input: Array, dropout_mask: Array | None) -> Array:
    if self.residual:
      y = y + (self.residual_proj(layer_input) if self.project_residual else layer_input)
    if self.layer_norm:
      y = self.norm(y)
    return _drop(y, dropout_mask)


class ModernBlock(Block):
  r"""The pre-norm residual block (module docstring): ``u = s + drop(mixer(RMSNorm(s)))``, then
  ``u + drop(mlp(RMSNorm(u)))``, the two halves of the layer's dropout mask.

  The stream has the mixer's width :math:`H`: ``residual_proj`` makes the layer's input that width
  where it differs (always at layer 0). A bidirectional layer merges its directions by sum, or by a
  learned ``merge_proj`` of their concatenation, so the stream keeps width :math:`H`.

  Attributes:
    mlp_expansion: the MLP's width over :math:`H` (Griffin's 3); 0: no MLP half, ``s + drop(mixer(RMSNorm(s)))``
      alone (Mamba's and xLSTM's mLSTM residual blocks).
  Parameters: ``mixer_norm``, ``mlp_norm`` (RMSNorm scales), ``mlp`` (``GatedMLP``), ``residual_proj``,
  ``merge_proj``.
  """

  mlp_expansion: float = 3.0

  @property
  def out_features(self) -> int:
    return self.cell.features

  @property
  def mask_features(self) -> int:
    return 2 * self.out_features

  def setup(self):
    super().setup()
    norm = functools.partial(nn.RMSNorm, dtype=self.dtype, param_dtype=self.param_dtype)
    self.mixer_norm = norm()
    if self.mlp_expansion:
      self.mlp_norm = norm()
      self.mlp = GatedMLP(self.mlp_expansion, dtype=self.dtype, param_dtype=self.param_dtype)
    if self.reverse_cell is not None and self.merge == 'concat':
      self.merge_proj = self.dense(self.out_features)

  def merge_directions(self, forward: Array, backward: Array) -> Array:
    both = super().merge_directions(forward, backward)
    return self.merge_proj(both) if self.merge == 'concat' else both

  def _stream(self, layer_input: Array) -> Array:
    return self.residual_proj(layer_input) if self.project_residual else layer_input

  def pre(self, layer_input: Array) -> Array:
    return self.mixer_norm(self._stream(layer_input))

  def post(self, y: Array, layer_input: Array, dropout_mask: Array | None) -> Array:
    mixer_mask, mlp_mask = (None, None) if dropout_mask is None else jnp.split(dropout_mask, 2, axis=-1)
    u = self._stream(layer_input) + _drop(y, mixer_mask)
    if not self.mlp_expansion:
      return u
    return u + _drop(self.mlp(self.mlp_norm(u)), mlp_mask)
