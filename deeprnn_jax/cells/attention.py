r"""Causal softmax self-attention with rotary position embeddings, as a cell.

The non-recurrent baseline in the same stack: its "carry" is a key/value cache, so a ``DeepRNN`` of
attention cells is a decoder-only transformer's attention path (add ``block=`` for the norms and MLP)
and "recurrent vs attention at equal depth and parameters" is one sweep axis over ``model.cell``.
Per head, at absolute position :math:`m` (the cache's ``position`` plus the step),

.. math::
   [q; k; v] = W x_m, \quad \tilde q_m = R_m q, \quad \tilde k_m = R_m k, \\
   a_{mn} = \frac{\exp(\tilde q_m^\top \tilde k_n / \sqrt{d})}{\sum_{n' \le m} \exp(\tilde q_m^\top
   \tilde k_{n'} / \sqrt{d})} \ (n \le m), \quad o_m = \sum_{n \le m} a_{mn} v_n, \quad
   y_m = W_o [o_m^{(1)}; \dots]

with RoPE (Su et al. 2021, "RoFormer"): :math:`R_m` rotates each pair of features
:math:`(x_{2i}, x_{2i+1})` by the angle :math:`m \theta_i`, :math:`\theta_i = b^{-2i/d}` (``rope_base``
:math:`b` = 10000), so that :math:`\tilde q_m^\top \tilde k_n = q^\top R_{n-m} k` depends on positions
only through :math:`m - n`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.base import Cell
from deeprnn_jax.sequences import first_segment, segment_ids, segment_start
from deeprnn_jax.inits import get_initializer

Array = jax.Array


def rope(x: Array, position: Array, base: float = 10000.0) -> Array:
  r"""Rotary position embedding: ``x`` ``[..., heads, d]`` (``d`` even) rotated pair by pair by
  :math:`m \theta_i`, with ``position`` :math:`m` of shape ``[...]`` (integers)."""
  d = x.shape[-1]
  theta = base ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [d/2]
  angle = position.astype(jnp.float32)[..., None, None] * theta.reshape((1,) * position.ndim + (1, d // 2))
  cos, sin = jnp.cos(angle).astype(x.dtype), jnp.sin(angle).astype(x.dtype)
  even, odd = x[..., 0::2], x[..., 1::2]
  rotated = jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
  return rotated.reshape(x.shape)


def _attend(
  q: Array, k: Array, v: Array, visible: Array, keys: Array, values: Array, start: Array, first: Array
) -> Array:
  """The parallel form's attention: queries ``q`` ``[batch, time, heads, d]`` over the sequence's own
  keys and values ``k``, ``v`` where ``visible`` (``[batch or 1, 1, time, time]``) and, at the steps
  that continue the carry (``first`` ``[batch, time]``), over the first ``start`` ``[batch]`` rows of
  its cache ``keys``, ``values`` ``[batch, max_length, heads, d]``. Returns ``[batch, time, heads, d]``."""
  max_length = keys.shape[1]
  scale = 1.0 / math.sqrt(q.shape[-1])
  own = jnp.einsum('bthd,bshd->bhts', q, k) * scale
  own = jnp.where(visible, own, -jnp.inf)

  def with_cache():
    cached = jnp.einsum('bthd,blhd->bhtl', q, keys) * scale
    in_cache = (jnp.arange(max_length)[None, :] < start[:, None])[:, None, None, :]
    cached = jnp.where(in_cache & first[:, None, :, None], cached, -jnp.inf)
    weights = jax.nn.softmax(jnp.concatenate([cached, own], axis=-1), axis=-1)
    return jnp.einsum('bhtl,blhd->bthd', weights[..., :max_length], values) + jnp.einsum(
      'bhts,bshd->bthd', weights[..., max_length:], v
    )

  def without_cache():  # every sequence starts here: O(time^2), not O(time * max_length)
    return jnp.einsum('bhts,bshd->bthd', jax.nn.softmax(own, axis=-1), v)

  return jax.lax.cond(jnp.any(start > 0), with_cache, without_cache)


class AttentionCell(Cell):
  r"""Causal multi-head softmax self-attention with RoPE as a cell (see the module docstring).

  Per-step form (``recur``): the step's rotated key and its value are written into the cache at
  slot ``position``, the query attends over slots ``0 .. position``, and ``position`` advances by
  one. Parallel form (``parallel_sequence``): masked causal attention over the whole sequence, which
  also attends to everything already in the carry's cache (its ``position`` rows), so it equals the
  per-step form from any cache; padded steps are not written and do not advance ``position``.

  A cache holds ``max_length`` positions. ``parallel_sequence`` refuses a sequence longer than that
  (a ``ValueError``); a step at a position ``>= max_length`` (a stream, or a non-empty cache, that
  outgrows it) cannot raise inside a compiled program, so its output is NaN: loud, not silently
  wrong. Attention costs :math:`O(\text{max\_length})` per step and memory
  :math:`O(\text{batch} \cdot \text{max\_length} \cdot H)` per layer; keep ``max_length`` to the
  longest sequence (or stream) you run.

  Attributes:
    num_heads: heads (default 1; must divide ``features``, and the head width ``H / heads`` must be
      even for the rotation).
    max_length: positions the KV cache holds (default 1024).
    rope_base: :math:`b` of the rotation frequencies.
  Parameters: ``input_proj`` (``[in, 3H]``, no bias; order q, k, v), ``output_proj`` (:math:`W_o`,
  ``[H, H]``, no bias).
  Carry: a dict ``{'keys': [batch, max_length, heads, d] (rotated), 'values': [batch, max_length, heads, d],
  'position': [batch] int32}`` (the number of positions written so far).
  """

  num_heads: int = 1
  max_length: int = 1024
  rope_base: float = 10000.0

  parallel_form: ClassVar[bool] = True
  # A learned key-value cache (and an integer position parameter) means nothing: DeepRNN refuses
  # initial_carry='learned' for this cell.
  learnable_carry: ClassVar[bool] = False
  # The per-step form reads the whole max_length cache at every step: the parallel form trained 25-57x
  # faster on CPU at T = 64-1024 (BENCHMARKS.md), so execution='auto' takes it there too.
  cpu_execution: ClassVar[str] = 'parallel'

  @property
  def conv_features(self) -> int:
    """q, k and v (``short_conv='on'``)."""
    return 3 * self.features

  @property
  def head_features(self) -> int:
    name = type(self).__name__
    if not isinstance(self.num_heads, int) or self.num_heads < 1 or self.features % self.num_heads:
      raise ValueError(f'{name}: features={self.features} must be divisible by num_heads={self.num_heads}')
    d = self.features // self.num_heads
    if d % 2:
      raise ValueError(
        f'{name}: RoPE needs an even head width, got features/num_heads = {self.features}/{self.num_heads} = {d}; '
        'pick features and num_heads with an even ratio'
      )
    return d

  def setup(self):
    if not isinstance(self.max_length, int) or self.max_length < 1:
      raise ValueError(f'{type(self).__name__}: max_length must be a positive integer; got {self.max_length!r}')
    self.head_features  # noqa: B018 (validates num_heads at construction of the parameters)
    dense = dict(
      use_bias=False, kernel_init=get_initializer(self.kernel_init), dtype=self.dtype, param_dtype=self.param_dtype
    )
    self.input_proj = nn.Dense(3 * self.features, **dense)
    self.output_proj = nn.Dense(self.features, **dense)

  def _qkv(self, xp: Array, position: Array) -> tuple[Array, Array, Array]:
    """``[..., 3H]`` at positions ``[...]`` -> rotated q, k and v, each ``[..., heads, d]``."""
    q, k, v = jnp.split(xp.astype(self.param_dtype), 3, axis=-1)
    q, k, v = (a.reshape(a.shape[:-1] + (self.num_heads, self.head_features)) for a in (q, k, v))
    return rope(q, position, self.rope_base), rope(k, position, self.rope_base), v

  def _readout(self, o: Array, position: Array) -> Array:
    y = self.output_proj(o.reshape(o.shape[:-2] + (self.features,)))
    # Past the cache's end a key could not be stored: make that visible instead of attending wrongly.
    return jnp.where((position < self.max_length)[..., None], y, jnp.nan)

  def recur(self, carry, xp):
    keys, values, position = carry['keys'], carry['values'], carry['position']
    q, k, v = self._qkv(xp, position)
    slots = jnp.arange(self.max_length).reshape((1,) * position.ndim + (self.max_length,))
    slot = slots == position[..., None]  # [..., L]
    keys = jnp.where(slot[..., None, None], k[..., None, :, :], keys)
    values = jnp.where(slot[..., None, None], v[..., None, :, :], values)
    scores = jnp.einsum('...hd,...lhd->...hl', q, keys) / math.sqrt(self.head_features)
    visible = (slots <= position[..., None])[..., None, :]  # [..., 1, L]
    weights = jax.nn.softmax(jnp.where(visible, scores, -jnp.inf), axis=-1)
    o = jnp.einsum('...hl,...lhd->...hd', weights, values)
    carry = {'keys': keys, 'values': values, 'position': position + 1}
    return carry, self._readout(o, position)

  def parallel_sequence(self, carry, xp, valid, resets=None, reset_carry=None):
    """Masked causal attention over the whole sequence (class docstring). With ``resets`` ``[batch,
    time]`` (packed sequences) a step attends only within its own segment, the carry's cache only
    from the first one, and the RoPE positions restart at 0 at each reset; the final cache holds the
    last segment alone. The reset carry is the empty cache (this cell's carry is never learned), so
    ``reset_carry`` is not read."""
    del reset_carry
    # A carry fresh from initialize_carry is a constant inside a jitted model: without the barrier XLA
    # constant-folds the [batch, heads, time, max_length] masked scores against the empty cache, which
    # took minutes to compile at time = max_length = 1024.
    keys, values, start = jax.lax.optimization_barrier((carry['keys'], carry['values'], carry['position']))
    batch, time = xp.shape[:2]
    if time > self.max_length:
      raise ValueError(
        f'{type(self).__name__}: a sequence of {time} steps does not fit max_length={self.max_length}; '
        f'set cell_kwargs max_length >= {time}'
      )
    position = start[:, None] + jnp.arange(time, dtype=start.dtype)[None, :]  # [batch, time]
    visible = jnp.tril(jnp.ones((1, 1, time, time), bool))
    first = jnp.ones((batch, time), bool)  # the steps that continue the carry's cache
    if resets is not None:
      resets = resets if valid is None else resets & valid
      first, seg = first_segment(resets), segment_ids(resets)
      since = jnp.arange(time, dtype=start.dtype)[None, :] - segment_start(resets).astype(start.dtype)
      position = jnp.where(first, position, since)
      visible = visible & (seg[:, None, :, None] == seg[:, None, None, :])
    q, k, v = self._qkv(xp, position)
    y = self._readout(_attend(q, k, v, visible, keys, values, start, first), position)
    # Write the valid steps into the cache; padded ones go to an out-of-range slot and are dropped.
    kept = jnp.ones((batch, time), bool) if valid is None else valid
    if resets is not None:  # only the last segment stays, in a cache emptied where a reset began it
      kept = kept & (seg == seg[:, -1:])
      emptied = ~first[:, -1]
      keys, values = (jnp.where(emptied[:, None, None, None], 0.0, a).astype(a.dtype) for a in (keys, values))
      start = jnp.where(emptied, 0, start)
    slot = jnp.where(kept, position, self.max_length)
    rows = jnp.broadcast_to(jnp.arange(batch)[:, None], slot.shape)
    keys = keys.at[rows, slot].set(k, mode='drop')
    values = values.at[rows, slot].set(v, mode='drop')
    written = jnp.sum(kept, axis=1, dtype=start.dtype)
    return {'keys': keys, 'values': values, 'position': start + written}, y

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    k_key, v_key = jax.random.split(rng)
    batch = tuple(input_shape[:-1])
    shape = batch + (self.max_length, self.num_heads, self.head_features)
    return {
      'keys': self.carry_init(k_key, shape, self.param_dtype),
      'values': self.carry_init(v_key, shape, self.param_dtype),
      'position': jnp.zeros(batch, jnp.int32),
    }
