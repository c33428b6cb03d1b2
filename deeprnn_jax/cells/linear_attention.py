r"""Matrix-state recurrences: linear attention, DeltaNet and Gated DeltaNet.

Each head keeps a matrix memory :math:`S_t \in \mathbb{R}^{d_k \times d_v}` (stored keys-first, as
flash-linear-attention does: the papers' :math:`S` is its transpose) updated by rank-one writes,

.. math::
   \text{linear attention:}\quad & S_t = S_{t-1} + \phi(k_t) v_t^\top \\
   \text{DeltaNet:}\quad & S_t = S_{t-1} + k_t\, \beta_t (v_t - S_{t-1}^\top k_t)^\top \\
   \text{Gated DeltaNet:}\quad & S_t = \alpha_t S_{t-1} + k_t\, \beta_t (v_t - \alpha_t S_{t-1}^\top k_t)^\top

and read by the query, :math:`o_t = S_t^\top q_t`. All three are linear in the state, so besides the
per-step form (``recur``, the reference) they have a *chunkwise-parallel* form
(``parallel_sequence``, Yang et al. 2024): the sequence is cut into chunks of ``chunk_size`` steps;
inside a chunk the outputs are a masked ``[C, C]`` attention-like matmul, and only the state passes
from chunk to chunk (a ``lax.scan`` of ``T / C`` steps). For the delta rule the chunk's rank-one
updates are collected into the WY / UT-transform representation: with
:math:`A = \mathrm{tril}(\mathrm{diag}(\beta)\, (\Gamma_i/\Gamma_j)\, K K^\top, -1)` and
:math:`\Gamma_t = \prod_{s \le t} \alpha_s` (within the chunk),

.. math::
   U = (I + A)^{-1} \mathrm{diag}(\beta) V, \quad W = (I + A)^{-1} \mathrm{diag}(\beta \Gamma) K, \quad
   u = U - W S_0, \\
   O = \mathrm{diag}(\Gamma) Q S_0 + (Q K^\top \odot D) u, \quad
   S_C = \Gamma_C S_0 + (K \odot \Gamma_C / \Gamma)^\top u,

with :math:`D_{ij} = \Gamma_i / \Gamma_j` for :math:`j \le i` (else 0); linear attention is the case
:math:`\alpha = 1`, :math:`u = V` (its normalizer rides along as an extra value column of ones).
Padding (invalid steps) writes nothing: there :math:`\phi(k) = 0` / :math:`k = 0, \beta = 0,
\alpha = 1`, so the final state is each sequence's state at its last valid step.

The short causal convolutions that flash-linear-attention's DeltaNet and Gated DeltaNet layers put on
q, k and v (each followed by SiLU) are not part of the cells: ``DeepRNN(short_conv=...)`` adds them
around the cell (``stack.mixer.Mixer``; the modern block's default), and without them q/k/v are plain
linear projections.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from deeprnn_jax.cells.base import Cell
from deeprnn_jax.sequences import segment_ids, segment_start
from deeprnn_jax.inits import get_initializer

Array = jax.Array


def elu_feature_map(x: Array) -> Array:
  r""":math:`\phi(x) = \mathrm{elu}(x) + 1 > 0` (Katharopoulos et al. 2020)."""
  return jax.nn.elu(x) + 1.0


def l2_normalize(x: Array, eps: float = 1e-6) -> Array:
  """``x / sqrt(sum(x^2) + eps)`` over the last axis (flash-linear-attention's ``l2norm``)."""
  return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def unit_lower_solve(a: Array, rhs: Array) -> Array:
  """``(I + A)^{-1} rhs`` for strictly lower-triangular ``A`` ``[..., C, C]``, ``rhs`` ``[..., C, m]``.

  Forward substitution, one row per step, batched over every chunk and head at once: on XLA:CPU it
  measured 12x faster than ``lax.linalg.triangular_solve`` on ``[4, 8, 4, 64, 64]`` (and it is the
  naive reference's loop in flash-linear-attention).
  """

  def row(i, x):
    a_i = jax.lax.dynamic_slice_in_dim(a, i, 1, axis=-2)  # [..., 1, C]; zero at and right of the diagonal
    rhs_i = jax.lax.dynamic_slice_in_dim(rhs, i, 1, axis=-2)
    return jax.lax.dynamic_update_slice_in_dim(x, rhs_i - a_i @ x, i, axis=-2)

  return jax.lax.fori_loop(0, a.shape[-1], row, jnp.zeros_like(rhs))


def chunkwise_delta(
  state: Array,
  q: Array,
  k: Array,
  v: Array,
  beta: Array | None,
  log_alpha: Array | None,
  chunk_size: int,
  resets: Array | None = None,
  reset_state: Array | None = None,
) -> tuple[Array, Array]:
  r"""The chunkwise-parallel (gated) delta rule over a whole sequence (see the module docstring).

  Args:
    state: :math:`S_0`, ``[batch, heads, dk, dv]``.
    q: ``[batch, time, heads, dk]``, the queries.
    k: ``[batch, time, heads, dk]``, the keys.
    v: ``[batch, time, heads, dv]``, the values.
    beta: ``[batch, time, heads]`` write strengths, or None for the plain additive update
      :math:`S_t = \alpha_t S_{t-1} + k_t v_t^\top` (linear attention).
    log_alpha: ``[batch, time, heads]`` :math:`\log \alpha_t \le 0`, or None for :math:`\alpha = 1`.
    chunk_size: C; ``time`` is padded up to a multiple of C with steps that write nothing.
    resets: ``[batch, time]`` bool or None (packed sequences): at a marked step the state before it
      is ``reset_state`` (``[batch, heads, dk, dv]``; None: zeros). Inside a chunk every position
      reads a *base* state, the chunk's incoming :math:`S_0` before the chunk's first reset and the
      reset state after it; :math:`\Gamma` restarts at each reset, :math:`A` and :math:`D` are masked
      to pairs in one segment (so :math:`(I + A)^{-1}` is block-diagonal by segment and ``W`` times
      either base is exact row by row), and the state leaving the chunk keeps only its last segment.

  Returns:
    ``(final state [batch, heads, dk, dv], outputs o_t = S_t^T q_t [batch, time, heads, dv])``.
  """
  batch, time, heads, dk = k.shape
  dv = v.shape[-1]
  c = max(1, min(chunk_size, time))
  n = -(-time // c)
  pad = n * c - time
  if log_alpha is None:
    log_alpha = jnp.zeros((batch, time, heads), state.dtype)

  def chunks(x):
    # [batch, time, heads, ...] -> [n, batch, heads, C, ...]; padded steps have k = 0, beta = 0, alpha = 1.
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    x = x.reshape((batch, n, c) + x.shape[2:])
    return jnp.moveaxis(jnp.moveaxis(x, 1, 0), 2, 3)

  q, k, v, log_alpha = chunks(q), chunks(k), chunks(v), chunks(log_alpha)
  g = jnp.cumsum(log_alpha, axis=-1)  # log Gamma_t within each chunk, [n, batch, heads, C]
  inclusive = jnp.tril(jnp.ones((1, 1, 1, c, c), bool))
  if resets is None:
    first = to_last = None
    same = inclusive
    gamma = jnp.exp(g)
  else:
    r = chunks(jnp.broadcast_to(resets[..., None], (batch, time, heads)))  # [n, batch, heads, C]
    seg = segment_ids(r)
    first = (seg == 0)[..., None]  # the positions that read the chunk's incoming state
    same = inclusive & (seg[..., :, None] == seg[..., None, :])
    to_last = seg == seg[..., -1:]  # the positions whose writes reach the chunk's end
    # Gamma restarts at each reset: log Gamma_t - log Gamma_(s-1) for the segment's first step s.
    base = jnp.take_along_axis(g - log_alpha, segment_start(r), axis=-1)
    gamma = jnp.exp(g - jnp.where(first[..., 0], 0.0, base))
  # D_ij = Gamma_i / Gamma_j for j <= i; the masked exponent is zeroed first so no inf enters a gradient.
  decay = jnp.where(same, jnp.exp(jnp.where(same, g[..., :, None] - g[..., None, :], 0.0)), 0.0)
  to_end = jnp.exp(g[..., -1:] - g)  # Gamma_C / Gamma_j
  if to_last is not None:
    to_end = jnp.where(to_last, to_end, 0.0)
  if beta is None:
    u_in, w = v, None
  else:
    beta_w = chunks(beta)[..., None]
    strict = jnp.tril(jnp.ones((1, 1, 1, c, c), bool), -1)
    a = jnp.where(strict, beta_w * decay * jnp.einsum('...id,...jd->...ij', k, k), 0.0)
    rhs = jnp.concatenate([beta_w * v, beta_w * gamma[..., None] * k], axis=-1)
    solved = unit_lower_solve(a, rhs)  # U and W together
    u_in, w = solved[..., :dv], solved[..., dv:]
  scores = jnp.einsum('...id,...jd->...ij', q, k) * decay
  k_to_end = k * to_end[..., None]

  def based(first, s, product):
    # product(S) for the positions that read the incoming state, product(reset state) for the others.
    if first is None:
      return product(s)
    return jnp.where(first, product(s), 0.0 if reset_state is None else product(reset_state))

  def body(s, inputs):
    u_in, w, q, scores, gamma, k_to_end, first = inputs
    u = u_in if w is None else u_in - based(first, s, lambda m: w @ m)
    o = gamma[..., None] * based(first, s, lambda m: q @ m) + scores @ u
    end = s if first is None else based(first[..., -1:, :1], s, lambda m: m)
    s = gamma[..., -1, None, None] * end + jnp.swapaxes(k_to_end, -1, -2) @ u
    return s, o

  state, o = jax.lax.scan(body, state, (u_in, w, q, scores, gamma, k_to_end, first))
  o = jnp.moveaxis(jnp.moveaxis(o, 3, 2), 0, 1).reshape(batch, n * c, heads, dv)
  return state, o[:, :time]


class _MatrixMemoryCell(Cell):
  """Shared plumbing: heads, the fused input projection, the output projection, the carry."""

  num_heads: int = 1
  chunk_size: int = 64

  parallel_form: ClassVar[bool] = True
  # The per-step form keeps a [heads, d, d] state per step for the backward pass; the chunkwise form
  # trained 3-18x faster on CPU at T = 64-1024 (BENCHMARKS.md, cells_bench).
  cpu_execution: ClassVar[str] = 'parallel'

  @property
  def head_features(self) -> int:
    if not isinstance(self.num_heads, int) or self.num_heads < 1 or self.features % self.num_heads:
      raise ValueError(
        f'{type(self).__name__}: features={self.features} must be divisible by num_heads={self.num_heads}; '
        'pick num_heads dividing features'
      )
    return self.features // self.num_heads

  def projection_width(self) -> int:
    raise NotImplementedError

  @property
  def conv_features(self) -> int:
    """q, k and v, the leading channels of the projection (flash-linear-attention's short convolutions)."""
    return 3 * self.features

  def setup(self):
    if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
      raise ValueError(f'{type(self).__name__}: chunk_size must be a positive integer; got {self.chunk_size!r}')
    self.input_proj = nn.Dense(
      self.projection_width(),
      use_bias=False,
      kernel_init=get_initializer(self.kernel_init),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )
    self.output_proj = nn.Dense(
      self.features,
      use_bias=False,
      kernel_init=get_initializer(self.kernel_init),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )

  def heads(self, x: Array) -> Array:
    """``[..., heads * d]`` -> ``[..., heads, d]`` in the state's dtype."""
    return x.astype(self.param_dtype).reshape(x.shape[:-1] + (self.num_heads, -1))

  def merge_heads(self, o: Array) -> Array:
    return o.reshape(o.shape[:-2] + (self.features,))

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    d = self.head_features
    return self.carry_init(rng, tuple(input_shape[:-1]) + (self.num_heads, d, d), self.param_dtype)


class LinearAttentionCell(_MatrixMemoryCell):
  r"""Linear attention as an RNN (Katharopoulos et al. 2020, "Transformers are RNNs"), causal, multi-head.

  .. math::
     [q; k; v] = W x_t, \quad \phi(x) = \mathrm{elu}(x) + 1, \\
     S_t = S_{t-1} + \phi(k_t) v_t^\top, \quad z_t = z_{t-1} + \phi(k_t), \quad
     o_t = \frac{S_t^\top \phi(q_t)}{z_t^\top \phi(q_t) + \epsilon}, \quad y_t = W_o [o_t^{(1)}; \dots]

  per head, with :math:`d_k = d_v = H / \text{heads}`.

  Attributes:
    num_heads: heads (default 1; must divide ``features``).
    chunk_size: C of the chunkwise-parallel form.
    eps: :math:`\epsilon` of the normalizer (1e-6, the paper's code).
  Parameters: ``input_proj`` (``[in, 3H]``, no bias; order q, k, v, heads major within each),
  ``output_proj`` (:math:`W_o`, ``[H, H]``, no bias).
  Carry: ``(S, z)``: ``S`` ``[batch, heads, dk, dv]``, ``z`` ``[batch, heads, dk]``.
  """

  eps: float = 1e-6

  def projection_width(self):
    return 3 * self.features

  def _qkv(self, xp):
    q, k, v = jnp.split(xp, 3, axis=-1)
    return elu_feature_map(self.heads(q)), elu_feature_map(self.heads(k)), self.heads(v)

  def _readout(self, numerator, denominator):
    return self.output_proj(self.merge_heads(numerator / (denominator[..., None] + self.eps)))

  def recur(self, carry, xp):
    s, z = carry
    q, k, v = self._qkv(xp)
    s = s + k[..., :, None] * v[..., None, :]
    z = z + k
    numerator = jnp.einsum('...hk,...hkv->...hv', q, s)
    return (s, z), self._readout(numerator, jnp.sum(q * z, axis=-1))

  def parallel_sequence(self, carry, xp, valid, resets=None, reset_carry=None):
    s, z = carry
    q, k, v = self._qkv(xp)
    if resets is not None and valid is not None:
      resets = resets & valid
    if valid is not None:
      k = jnp.where(valid[..., None, None], k, 0.0)
    # The normalizer z is one more value column of ones: [S, z] evolves as one state.
    ones = jnp.ones(v.shape[:-1] + (1,), v.dtype)
    state, o = chunkwise_delta(
      jnp.concatenate([s, z[..., None]], axis=-1),
      q,
      k,
      jnp.concatenate([v, ones], axis=-1),
      None,
      None,
      self.chunk_size,
      resets,
      None if reset_carry is None else jnp.concatenate([reset_carry[0], reset_carry[1][..., None]], axis=-1),
    )
    return (state[..., :-1], state[..., -1]), self._readout(o[..., :-1], o[..., -1])

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    s_key, z_key = jax.random.split(rng)
    d = self.head_features
    batch = tuple(input_shape[:-1])
    return (
      self.carry_init(s_key, batch + (self.num_heads, d, d), self.param_dtype),
      self.carry_init(z_key, batch + (self.num_heads, d), self.param_dtype),
    )


class DeltaNetCell(_MatrixMemoryCell):
  r"""DeltaNet (Schlag et al. 2021; Yang et al. 2024, "Parallelizing Linear Transformers with the
  Delta Rule over Sequence Length"): linear attention whose write replaces the value stored under
  :math:`k_t` instead of adding to it.

  .. math::
     q_t = \frac{W_q x_t}{\lVert W_q x_t \rVert}, \quad k_t = \frac{W_k x_t}{\lVert W_k x_t \rVert}, \quad
     v_t = W_v x_t, \quad \beta_t = \sigma(w_\beta x_t) \ (\text{one per head}), \\
     S_t = S_{t-1} - \beta_t (S_{t-1} k_t - v_t) k_t^\top \quad (\text{the paper's } d_v \times d_k
     \text{ layout; stored transposed}), \\
     o_t = d_k^{-1/2}\, S_t q_t, \quad y_t = W_o [\mathrm{RMSNorm}(o_t^{(1)}); \dots]

  The :math:`d_k^{-1/2}` query scale and the per-head RMSNorm of the output (one learned scale
  ``[dv]`` shared by the heads) follow flash-linear-attention's ``DeltaNet`` layer and its naive
  reference ``delta_rule_recurrence``. With :math:`\lVert k \rVert = 1` and :math:`\beta \in (0, 1)`
  the update :math:`S (I - \beta k k^\top)` is a contraction, so :math:`\lVert S_t \rVert` stays
  bounded by :math:`\lVert S_0 \rVert + \sum_t \beta_t \lVert v_t \rVert`.

  Attributes:
    num_heads: heads (default 1; must divide ``features``); :math:`d_k = d_v = H / \text{heads}`.
    chunk_size: C of the chunkwise-parallel (WY representation) form.
    norm_eps: epsilon of the output RMSNorm.
  Parameters: ``input_proj`` (``[in, 3H + heads]``, no bias; order q, k, v, beta), ``output_norm``
  (``scale`` ``[dv]``), ``output_proj`` (``[H, H]``, no bias).
  Carry: ``S`` ``[batch, heads, dk, dv]``.
  """

  norm_eps: float = 1e-5

  gated: ClassVar[bool] = False
  # flash-linear-attention's DeltaNet and GatedDeltaNet layers: a ShortConvolution (width 4, no bias,
  # SiLU) on each of q, k and v before the normalization (fla/layers/delta_net.py, gated_deltanet.py).
  authors_conv: ClassVar[bool] = True
  conv_activation: ClassVar[str] = 'silu'
  conv_has_bias: ClassVar[bool] = False

  def conv_init(self, width):
    # Inside flash-linear-attention's models every Conv1d is re-initialized to N(0, 0.02^2)
    # (models/gated_deltanet/modeling_gated_deltanet.py, _init_weights).
    return jinit.normal(0.02), jinit.zeros

  def projection_width(self):
    return (4 if self.gated else 3) * self.features + (2 if self.gated else 1) * self.num_heads

  def setup(self):
    super().setup()
    self.output_norm = nn.RMSNorm(epsilon=self.norm_eps, dtype=self.param_dtype, param_dtype=self.param_dtype)

  def _split(self, xp):
    """``xp`` -> q, k (normalized, q scaled), v, beta, log alpha (or None), output gate (or None)."""
    h, n = self.features, self.num_heads
    xp = xp.astype(self.param_dtype)
    q = l2_normalize(self.heads(xp[..., :h])) / math.sqrt(self.head_features)
    k = l2_normalize(self.heads(xp[..., h : 2 * h]))
    v = self.heads(xp[..., 2 * h : 3 * h])
    beta = jax.nn.sigmoid(xp[..., 3 * h : 3 * h + n])
    log_alpha, gate = self.decay(xp[..., 3 * h + n :])
    return q, k, v, beta, log_alpha, gate

  def decay(self, rest):
    return None, None

  def _readout(self, o, gate):
    o = self.output_norm(o)
    if gate is not None:
      o = o * jax.nn.silu(gate)
    return self.output_proj(self.merge_heads(o))

  def recur(self, s, xp):
    q, k, v, beta, log_alpha, gate = self._split(xp)
    if log_alpha is not None:
      s = jnp.exp(log_alpha)[..., None, None] * s
    # The delta rule: write beta * (v - what S currently returns for k) under k.
    u = beta[..., None] * (v - jnp.einsum('...hk,...hkv->...hv', k, s))
    s = s + k[..., :, None] * u[..., None, :]
    return s, self._readout(jnp.einsum('...hk,...hkv->...hv', q, s), gate)

  def parallel_sequence(self, carry, xp, valid, resets=None, reset_carry=None):
    q, k, v, beta, log_alpha, gate = self._split(xp)
    if valid is not None:
      resets = None if resets is None else resets & valid
      k = jnp.where(valid[..., None, None], k, 0.0)
      beta = jnp.where(valid[..., None], beta, 0.0)
      if log_alpha is not None:
        log_alpha = jnp.where(valid[..., None], log_alpha, 0.0)
    state, o = chunkwise_delta(carry, q, k, v, beta, log_alpha, self.chunk_size, resets, reset_carry)
    return state, self._readout(o, gate)


class GatedDeltaNetCell(DeltaNetCell):
  r"""Gated DeltaNet (Yang et al. 2024, "Gated Delta Networks: Improving Mamba2 with Delta Rule"):
  the delta rule with Mamba2's data-dependent decay of the whole memory.

  .. math::
     S_t = \alpha_t S_{t-1} (I - \beta_t k_t k_t^\top) + \beta_t v_t k_t^\top \quad (d_v \times d_k), \\
     \alpha_t = \exp\!\big(-e^{A_{log}}\, \mathrm{softplus}(w_\alpha x_t + b_{dt})\big) \in (0, 1), \quad
     y_t = W_o [\mathrm{RMSNorm}(o_t^{(h)}) \odot \mathrm{SiLU}(W_g x_t)^{(h)}]_h

  with q, k, v, :math:`\beta`, :math:`o_t = d_k^{-1/2} S_t q_t` as in ``DeltaNetCell``. The decay
  parameterization, the initialization of :math:`b_{dt}` (the inverse softplus of
  :math:`\Delta t \sim \log U(10^{-3}, 10^{-1})`) and the SiLU-gated output norm are
  flash-linear-attention's ``GatedDeltaNet`` layer's (``-A_log.exp() * softplus(a + dt_bias)``); its
  :math:`e^{A_{log}}` is drawn from :math:`U(0, 16)`, ours from :math:`U(1, 16)` (which keeps
  :math:`\log` finite).

  Parameters: ``input_proj`` (``[in, 4H + 2 heads]``, no bias; order q, k, v, beta, alpha, gate),
  ``A_log``, ``dt_bias`` (``[heads]``), ``output_norm`` (``scale`` ``[dv]``), ``output_proj`` (``[H, H]``).
  Carry: ``S`` ``[batch, heads, dk, dv]``.
  """

  gated: ClassVar[bool] = True

  def setup(self):
    super().setup()

    def a_log_init(key, shape, dtype=jnp.float32):
      return jnp.log(jax.random.uniform(key, shape, dtype, 1.0, 16.0))

    def dt_bias_init(key, shape, dtype=jnp.float32):
      dt = jnp.exp(jax.random.uniform(key, shape, dtype, math.log(1e-3), math.log(1e-1)))
      return dt + jnp.log(-jnp.expm1(-dt))  # softplus^{-1}(dt)

    self.A_log = self.param('A_log', a_log_init, (self.num_heads,), self.param_dtype)
    self.dt_bias = self.param('dt_bias', dt_bias_init, (self.num_heads,), self.param_dtype)

  def decay(self, rest):
    n = self.num_heads
    shape = rest.shape[:-1] + (n,)
    a_log, dt_bias = jnp.broadcast_to(self.A_log, shape), jnp.broadcast_to(self.dt_bias, shape)
    log_alpha = -jnp.exp(a_log) * jax.nn.softplus(rest[..., :n] + dt_bias)
    return log_alpha, self.heads(rest[..., n:])
