r"""xLSTM's two cells (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory", NeurIPS 2024):
sLSTM (scalar memory, memory mixing through head-wise recurrent matrices) and mLSTM (matrix memory,
no recurrent matrix, so its recurrence is linear in the state and has a parallel form).

Both use **exponential gating** with a **stabilizer state** :math:`m`. The input gate is
:math:`\exp(\tilde\imath)` and the forget gate :math:`\sigma(\tilde f)` (``forget_gate='sigmoid'``, what
the authors' ``xlstm`` package computes, as :math:`\exp(\log\sigma(\tilde f))`) or
:math:`\exp(\tilde f)` (``'exp'``, the paper's other choice). With :math:`\log f_t` the log forget gate,

.. math::
   m_t = \max(\log f_t + m_{t-1},\; \tilde\imath_t), \qquad
   i'_t = \exp(\tilde\imath_t - m_t), \qquad f'_t = \exp(\log f_t + m_{t-1} - m_t),

and the states are updated with :math:`i'_t, f'_t` in place of :math:`i_t, f_t`. Cell and normalizer
states are then the paper's states times :math:`e^{-m_t}`; every output is a ratio of the two, so the
outputs equal the unstabilized ones while no exponential overflows (paper, appendix A.2 / A.3).

Checked against the authors' code (``xlstm`` on PyPI, its CPU backends) with copied weights in
``tests/oracles/test_xlstm_oracle.py``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers as jinit

from deeprnn_jax.cells.base import Cell
from deeprnn_jax.sequences import first_segment, segment_ids
from deeprnn_jax.inits import get_initializer

Array = jax.Array

FORGET_GATES = ('sigmoid', 'exp')
_DEFAULT_HEADS = (4, 2, 1)


def _num_heads(cls_name: str, features: int, num_heads: int | None) -> int:
  """``num_heads``, or by default the largest of 4, 2, 1 that divides ``features``."""
  if num_heads is None:
    return next(h for h in _DEFAULT_HEADS if features % h == 0)
  if not isinstance(num_heads, int) or num_heads < 1 or features % num_heads:
    raise ValueError(f'{cls_name}: num_heads={num_heads!r} must be a positive divisor of features={features}')
  return num_heads


def _log_forget(forget_gate: str, f_pre: Array) -> Array:
  return jax.nn.log_sigmoid(f_pre) if forget_gate == 'sigmoid' else f_pre


def _check_forget_gate(cls_name: str, forget_gate: str):
  if forget_gate not in FORGET_GATES:
    raise ValueError(f'{cls_name}: unknown forget_gate {forget_gate!r}; choose one of {list(FORGET_GATES)}')


class SLSTMCell(Cell):
  r"""sLSTM (Beck et al. 2024, section 2.2): a scalar-memory LSTM with exponential gating, a
  normalizer state and head-wise (block-diagonal) recurrent connections.

  .. math::
     [\tilde\imath; \tilde f; \tilde z; \tilde o] = W x_t + R\, h_{t-1} + b, \qquad
     R = \mathrm{blockdiag}(R_1, \dots, R_{N_h}) \\
     m_t = \max(\log f_t + m_{t-1}, \tilde\imath_t), \quad
     i_t = e^{\tilde\imath_t - m_t}, \quad f_t = e^{\log f_t + m_{t-1} - m_t} \\
     c_t = f_t \odot c_{t-1} + i_t \odot \tanh(\tilde z_t), \quad
     n_t = f_t \odot n_{t-1} + i_t, \quad
     h_t = \sigma(\tilde o_t) \odot c_t / n_t, \quad y_t = h_t

  with :math:`\log f_t = \log\sigma(\tilde f_t)` (``forget_gate='sigmoid'``, the ``xlstm`` package's
  kernels) or :math:`\tilde f_t` (``'exp'``). Where the normalizer is still zero (the all-zero start),
  :math:`m_t = \tilde\imath_t` and :math:`f_t` is capped at 1, as the authors' code does, so the first
  step is :math:`h = \sigma(\tilde o) \tanh(\tilde z)` however small :math:`e^{\tilde\imath}` is (they
  test the whole batch; here each unit on its own, so rows of a batch stay independent). The
  recurrence is nonlinear in :math:`h_{t-1}`: there is no parallel form (``DeepRNN(execution='parallel')``
  refuses it).

  Attributes:
    num_heads: :math:`N_h`, the number of diagonal blocks of :math:`R` (each ``[H/N_h, 4 H/N_h]``);
      default (None): the largest of 4 (the ``xlstm`` default), 2, 1 that divides ``features``.
    forget_gate: ``'sigmoid'`` (default) or ``'exp'``.
    recurrent_kernel_init: initializer of each head's and gate's ``[H/N_h, H/N_h]`` block of R
      (default orthogonal; ``'zeros'`` is the ``xlstm`` package's default).
  Parameters: ``input_proj`` (W: ``[in, 4H]``, b: ``[4H]``; gate order i, f, z, o, each gate's ``H``
  columns ordered head by head, as ``xlstm``'s cell input; b is zero except the forget gate's
  "powerlaw" init of ``xlstm``, :math:`b_f[j] = 5 - 12 (j / (d_h - 1))^{0.3}` within every head,
  :math:`d_h = H / N_h`, 5 when :math:`d_h = 1`), ``recurrent_kernel`` (R: ``[N_h, d_h, 4, d_h]``, ``xlstm``'s layout:
  :math:`(R h)_{g, n, j} = \sum_k h_{n, k} R_{n, k, g, j}`).
  Carry: ``(c, n, m, h)``, each ``[batch, H]``.
  """

  num_heads: int | None = None
  forget_gate: str = 'sigmoid'

  num_gates: ClassVar[int] = 4
  parallel_form: ClassVar[bool] = False

  @property
  def heads(self) -> int:
    return _num_heads(type(self).__name__, self.features, self.num_heads)

  def setup(self):
    _check_forget_gate(type(self).__name__, self.forget_gate)
    heads = self.heads
    head_dim = self.features // heads
    super().setup()
    block = get_initializer(self.recurrent_kernel_init)

    def recurrent_init(key, shape, dtype=jnp.float32):
      keys = jax.random.split(key, heads * 4)
      blocks = [block(k, (head_dim, head_dim), dtype) for k in keys]
      return jnp.stack(blocks).reshape(heads, 4, head_dim, head_dim).transpose(0, 2, 1, 3)

    self.recurrent_kernel = self.param(
      'recurrent_kernel', recurrent_init, (heads, head_dim, 4, head_dim), self.param_dtype
    )

  def input_bias_init(self):
    base, hidden, heads = get_initializer(self.bias_init), self.features, self.heads
    head_dim = hidden // heads

    def init(key, shape, dtype=jnp.float32):
      # xlstm's "powerlaw_blockdependent" forget bias (its first block): from +5 (remember) down to
      # -7 (forget at once) within each head, so the heads start with a spread of time scales.
      position = np.arange(head_dim) / max(head_dim - 1, 1)
      forget = np.tile(5.0 - 12.0 * position**0.3, heads)
      return base(key, shape, dtype).at[hidden : 2 * hidden].set(jnp.asarray(forget, dtype))

    return init

  def recur(self, carry, xp):
    c, n, m, h = carry
    heads = self.heads
    head_dim = self.features // heads
    kernel, h_in = self.recurrent_kernel, h
    if self.dtype is not None:
      kernel, h_in = kernel.astype(self.dtype), h_in.astype(self.dtype)
    h_heads = h_in.reshape(h.shape[:-1] + (heads, head_dim))
    recurrent = jnp.einsum('...nk,nkgj->...gnj', h_heads, kernel).reshape(h.shape[:-1] + (4 * self.features,))
    z = xp.astype(c.dtype) + recurrent.astype(c.dtype)
    i_pre, f_pre, z_pre, o_pre = jnp.split(z, 4, axis=-1)
    log_f = _log_forget(self.forget_gate, f_pre)
    empty = n == 0.0
    m_new = jnp.where(empty, i_pre, jnp.maximum(log_f + m, i_pre))
    i = jnp.exp(i_pre - m_new)
    # Elsewhere m_new >= log_f + m, so f <= 1; at an empty state m_new = i~ can be far below log_f + m
    # and exp would overflow (inf * 0 = nan): there f is capped at 1, as xlstm's min(f, 1) does.
    # The cap sits inside exp and only where the state is empty, so gradients stay exact and finite.
    log_f_stable = log_f + m - m_new
    f = jnp.exp(jnp.where(empty, jnp.minimum(log_f_stable, 0.0), log_f_stable))
    c = f * c + i * jnp.tanh(z_pre)
    n = f * n + i
    h = jax.nn.sigmoid(o_pre) * c / n
    return (c, n, m_new, h), h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    shape = tuple(input_shape[:-1]) + (self.features,)
    return tuple(self.carry_init(k, shape, self.param_dtype) for k in jax.random.split(rng, 4))


def mlstm_step(carry, q, k, v, i_pre, log_f, eps):
  """One stabilized mLSTM step (the authors' ``recurrent_step_stabilized_simple``): ``q, k, v``
  ``[..., heads, d]`` (k already scaled), ``i_pre, log_f`` ``[..., heads]`` -> ``(carry, h~ [..., heads, d])``."""
  c, n, m = carry
  m_new = jnp.maximum(log_f + m, i_pre)
  i = jnp.exp(i_pre - m_new)
  f = jnp.exp(log_f + m - m_new)
  c = f[..., None, None] * c + i[..., None, None] * (k[..., :, None] * v[..., None, :])
  n = f[..., None] * n + i[..., None] * k
  num = jnp.einsum('...k,...kv->...v', q, c)
  den = jnp.einsum('...k,...k->...', q, n)
  h = num / (jnp.maximum(jnp.abs(den), jnp.exp(-m_new)) + eps)[..., None]
  return (c, n, m_new), h


def _segmented_cumsum(x: Array, resets: Array) -> Array:
  """The cumulative sum of ``x`` ``[..., time]`` along time, restarted at each step where ``resets``
  (broadcast to ``x``) is set: an associative scan of :math:`s_t = a_t s_{t-1} + x_t`, :math:`a_t = 0`
  at a reset, so the sums before a reset reach past it only through a factor 0."""
  keep = jnp.broadcast_to(~resets, x.shape).astype(x.dtype)

  def combine(left, right):
    (a1, s1), (a2, s2) = left, right
    return a1 * a2, a2 * s1 + s2

  return jax.lax.associative_scan(combine, (keep, x), axis=-1)[1]


def _mlstm_quadratic(carry, q, k, v, i_pre, log_f, eps, resets=None, reset_carry=None):
  r"""The stabilized parallel mLSTM from a carry: ``q, k, v`` ``[batch, time, heads, d]`` (k already
  scaled), ``i_pre, log_f`` ``[batch, time, heads]`` (padding already neutral) -> ``(carry, h~)`` with
  ``h~`` ``[batch, time, heads, d]``.

  With :math:`F_t = \sum_{s \le t} \log f_s`, the state after step t is a weighted sum of the
  initial state (log weight :math:`F_t + m_0`) and of every :math:`k_s v_s^\top` (log weight
  :math:`F_t - F_s + \tilde\imath_s`), and the recurrence's stabilizer :math:`m_t` is exactly the
  largest of these log weights, so dividing every weight by :math:`e^{m_t}` gives the per-step
  form's states and outputs.

  ``resets`` ``[batch, time]`` (packed sequences): a step after a reset at step s weighs only the
  writes of its own segment, and in place of the initial state the reset carry ``(C_r, n_r, m_r)``
  (zeros where None), with log weight :math:`F_t - F_{s-1} + m_r`.
  """
  c0, n0, m0 = carry
  q, k, v = (jnp.moveaxis(a, 1, 2) for a in (q, k, v))  # [batch, heads, time, d]
  i_pre, log_f = jnp.moveaxis(i_pre, 1, 2), jnp.moveaxis(log_f, 1, 2)  # [batch, heads, time]
  steps = q.shape[2]
  causal = jnp.tril(jnp.ones((steps, steps), bool))[None, None]
  first = None
  if resets is None:
    cum, m0 = jnp.cumsum(log_f, axis=-1), m0[..., None]
  else:
    resets = resets[:, None, :]  # [batch, 1, time]
    seg, first = segment_ids(resets), first_segment(resets)
    causal = causal & (seg[..., :, None] == seg[..., None, :])
    c_r, n_r, m_r = (jnp.zeros_like(a) for a in carry) if reset_carry is None else reset_carry
    # F restarts at each reset (from a reset at step s the initial state's log weight is F_t - F_(s-1) +
    # m_r): summed within segments, so that not even rounding carries a value or gradient across one.
    cum = _segmented_cumsum(log_f, resets)
    m0 = jnp.where(first, m0[..., None], m_r[..., None])
  log_d = jnp.where(causal, cum[..., :, None] - cum[..., None, :] + i_pre[..., None, :], -jnp.inf)
  log_0 = cum + m0
  m = jnp.maximum(jnp.max(log_d, axis=-1), log_0)
  d = jnp.exp(log_d - m[..., None])
  a0 = jnp.exp(log_0 - m)
  s = jnp.einsum('bhtk,bhsk->bhts', q, k) * d
  q_c0, q_n0 = jnp.einsum('bhtk,bhkv->bhtv', q, c0), jnp.einsum('bhtk,bhk->bht', q, n0)
  if first is not None:  # after a reset the query reads the reset carry instead
    q_c0 = jnp.where(first[..., None], q_c0, jnp.einsum('bhtk,bhkv->bhtv', q, c_r))
    q_n0 = jnp.where(first, q_n0, jnp.einsum('bhtk,bhk->bht', q, n_r))
  num = jnp.einsum('bhts,bhsv->bhtv', s, v) + a0[..., None] * q_c0
  den = jnp.sum(s, axis=-1) + a0 * q_n0
  h = num / (jnp.maximum(jnp.abs(den), jnp.exp(-m)) + eps)[..., None]
  last, a_last = d[..., -1, :], a0[..., -1]
  if first is not None:  # the state leaving: its last segment's, from the reset carry if one began it
    keep = first[..., -1]  # [batch, 1]: no reset in this piece
    c0, n0 = jnp.where(keep[..., None, None], c0, c_r), jnp.where(keep[..., None], n0, n_r)
  c = a_last[..., None, None] * c0 + jnp.einsum('bhs,bhsk,bhsv->bhkv', last, k, v)
  n = a_last[..., None] * n0 + jnp.einsum('bhs,bhsk->bhk', last, k)
  return (c, n, m[..., -1]), jnp.moveaxis(h, 2, 1)


def mlstm_chunked(carry, q, k, v, i_pre, log_f, eps, chunk_size, resets=None, reset_carry=None):
  """``_mlstm_quadratic`` (same arguments) over chunks of ``chunk_size`` steps (None: one chunk) run
  one after another, each from the carry the previous one left: ``O(time * chunk)`` work instead of
  ``O(time^2)``. The last chunk is padded with neutral steps (input gate 0, forget gate 1), which
  leave the state as it was."""
  batch, steps = q.shape[:2]
  chunk = steps if chunk_size is None else min(chunk_size, steps)
  if chunk == steps:
    return _mlstm_quadratic(carry, q, k, v, i_pre, log_f, eps, resets, reset_carry)
  num_chunks = -(-steps // chunk)
  pad = num_chunks * chunk - steps

  def chunked(a, fill):
    a = jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2), constant_values=fill)
    return jnp.moveaxis(a.reshape((batch, num_chunks, chunk) + a.shape[2:]), 1, 0)

  pieces = (chunked(q, 0.0), chunked(k, 0.0), chunked(v, 0.0), chunked(i_pre, -jnp.inf), chunked(log_f, 0.0))
  pieces += (None if resets is None else chunked(resets, False),)

  def body(carry, piece):
    return _mlstm_quadratic(carry, *piece[:-1], eps, piece[-1], reset_carry)

  carry, h = jax.lax.scan(body, carry, pieces)
  return carry, jnp.moveaxis(h, 0, 1).reshape((batch, num_chunks * chunk) + h.shape[3:])[:, :steps]


def normalize_heads(h: Array, on: bool) -> Array:
  """mLSTM's ``head_norm``: each head's ``[..., d]`` to zero mean and unit variance (eps 1e-5); ``h``
  itself when not ``on``."""
  if not on:
    return h
  centered = h - jnp.mean(h, axis=-1, keepdims=True)
  return centered * jax.lax.rsqrt(jnp.mean(centered * centered, axis=-1, keepdims=True) + 1e-5)


class MLSTMCell(Cell):
  r"""mLSTM (Beck et al. 2024, section 2.3): a matrix memory per head, written with a key-value
  outer product and read with a query; no recurrent weights, so the state update is linear.

  Per head (:math:`d = H / N_h`), from the input alone:

  .. math::
     q_t = W_q x_t + b_q, \quad k_t = (W_k x_t + b_k) / \sqrt{d}, \quad v_t = W_v x_t + b_v, \quad
     \tilde\imath_t = w_i^\top x_t + b_i, \quad \tilde f_t = w_f^\top x_t + b_f, \quad
     o_t = \sigma(W_o x_t + b_o) \\
     C_t = f'_t C_{t-1} + i'_t\, k_t v_t^\top, \quad n_t = f'_t n_{t-1} + i'_t\, k_t, \quad
     \tilde h_t = \frac{C_t^\top q_t}{\max(|n_t^\top q_t|, e^{-m_t}) + \epsilon}, \quad
     y_t = o_t \odot [\tilde h_t^{(1)}; \dots; \tilde h_t^{(N_h)}]

  with the stabilized gates :math:`i', f'` and :math:`m_t` of the module docstring (the lower bound
  :math:`e^{-m_t}` is the paper's :math:`\max(|n^\top q|, 1)` in stabilized units). This is the
  authors' ``recurrent_step_stabilized_simple`` (``xlstm.blocks.mlstm.backends``), ``eps`` included.
  The xLSTM block's up-projection, causal convolution, group norm and skip connection are the
  block's, not the cell's (they are not here).

  Parallel form (``parallel_sequence``): the stabilized attention-like form of the paper (its
  ``parallel_stabilized_simple``, extended by the initial state's term so that it starts from any
  carry), quadratic in the chunk length; sequences longer than ``chunk_size`` are cut into chunks
  run one after another, each from the carry the previous one left (``O(T \cdot chunk)`` work).

  Attributes:
    num_heads: :math:`N_h`; default (None): the largest of 4 (the ``xlstm`` default), 2, 1 that
      divides ``features``.
    forget_gate: ``'sigmoid'`` (default, the ``xlstm`` kernels' :math:`\log\sigma`) or ``'exp'``.
    eps: added to the denominator (``xlstm``'s 1e-6).
    chunk_size: time steps per chunk of the parallel form (None: the whole sequence at once).
    head_norm: normalize each head's :math:`\tilde h_t` to zero mean and unit variance over its
      :math:`d` units before the output gate, :math:`y_t = o_t \odot [\mathrm{LN}(\tilde h_t^{(1)}); \dots]`
      (xLSTM's block does this with its multi-head layer norm; here without a learned scale, so the
      parameters are the same either way). Without it :math:`\tilde h` is a ratio whose denominator
      :math:`n^\top q` can nearly cancel: a 2-layer classic stack (width 16, 4 heads, 64 steps, its
      initialization) reached :math:`|y| = 860`, 0.07 off its float64 result; with ``head_norm``
      :math:`|y| \le 1.3`, 4e-6 off. Recommended for deep classic stacks; off by default so the cell
      stays the authors' (``tests/oracles``). Needs :math:`d \ge 2`.
  Parameters: ``input_proj`` (``[in, 4H]``, ``[4H]``; order q, k, v, o, each head by head),
  ``gate_proj`` (``[in, 2 N_h]``, ``[2 N_h]``; order :math:`\tilde\imath`, :math:`\tilde f`; as in
  ``xlstm`` the kernel starts at zero, :math:`b_i \sim \mathcal N(0, 0.1^2)` and :math:`b_f` linearly
  spaced from 3 to 6 over the heads). Carry: ``(C, n, m)``: ``[batch, N_h, d, d]`` (key index first),
  ``[batch, N_h, d]``, ``[batch, N_h]``.
  """

  num_heads: int | None = None
  forget_gate: str = 'sigmoid'
  eps: float = 1e-6
  chunk_size: int | None = 64
  head_norm: bool = False

  num_gates: ClassVar[int] = 4
  parallel_form: ClassVar[bool] = True
  # xLSTM's mLSTM block convolves (width 4, with bias) and SiLU-activates the path its q and k are read
  # from, not v's (xlstm/blocks/mlstm/layer.py). This cell has no up-projection to convolve, so the
  # convolution acts on the q and k projections, the leading 2H channels.
  authors_conv: ClassVar[bool] = True
  conv_activation: ClassVar[str] = 'silu'

  @property
  def conv_features(self) -> int:
    return 2 * self.features

  # The per-step form keeps a [heads, d, d] memory per step for the backward pass; the parallel form
  # trained 3.4-4.5x faster on CPU at T = 64-1024 (BENCHMARKS.md, cells_bench).
  cpu_execution: ClassVar[str] = 'parallel'

  @property
  def heads(self) -> int:
    return _num_heads(type(self).__name__, self.features, self.num_heads)

  def setup(self):
    _check_forget_gate(type(self).__name__, self.forget_gate)
    if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
      raise ValueError(f'MLSTMCell: chunk_size must be a positive integer or None; got {self.chunk_size!r}')
    heads = self.heads
    if self.head_norm and self.features // heads < 2:
      raise ValueError(
        f'MLSTMCell: head_norm needs at least 2 units per head; features={self.features} over {heads} heads has 1'
      )
    super().setup()

    def gate_bias_init(key, shape, dtype=jnp.float32):
      input_bias = 0.1 * jax.random.normal(key, (heads,), dtype)
      return jnp.concatenate([input_bias, jnp.linspace(3.0, 6.0, heads, dtype=dtype)])

    self.gate_proj = nn.Dense(
      2 * heads, kernel_init=jinit.zeros, bias_init=gate_bias_init, dtype=self.dtype, param_dtype=self.param_dtype
    )

  def project_inputs(self, x):
    """``[..., in] -> [..., 4H + 2 N_h]``: q, k, v, o, then the input and forget preactivations."""
    qkvo = self.input_proj(x)
    return jnp.concatenate([qkvo, self.gate_proj(x).astype(qkvo.dtype)], axis=-1)

  def _split(self, xp):
    heads, hidden = self.heads, self.features
    head_dim = hidden // heads
    xp = xp.astype(self.param_dtype)
    lead = xp.shape[:-1]
    q, k, v, o = (xp[..., g * hidden : (g + 1) * hidden].reshape(lead + (heads, head_dim)) for g in range(4))
    i_pre, f_pre = xp[..., 4 * hidden : 4 * hidden + heads], xp[..., 4 * hidden + heads :]
    return q, k / math.sqrt(head_dim), v, o.reshape(lead + (hidden,)), i_pre, _log_forget(self.forget_gate, f_pre)

  def recur(self, carry, xp):
    q, k, v, o, i_pre, log_f = self._split(xp)
    carry, h = mlstm_step(carry, q, k, v, i_pre, log_f, self.eps)
    return carry, jax.nn.sigmoid(o) * normalize_heads(h, self.head_norm).reshape(o.shape)

  def parallel_sequence(self, carry, xp, valid=None, resets=None, reset_carry=None):
    """The whole sequence at once: ``xp = project_inputs(x)`` ``[batch, time, 4H + 2 N_h]``, ``valid``
    ``[batch, time]`` bool or None (valid steps first) -> ``(final carry, y [batch, time, H])``, the
    same numbers as scanning ``recur``; the final carry is each row's at its last valid step
    (padding steps have input gate 0 and forget gate 1, so they leave the state as it was). ``resets``
    and ``reset_carry`` as in ``Cell.parallel_sequence`` (masks and restarts in ``_mlstm_quadratic``)."""
    q, k, v, o, i_pre, log_f = self._split(xp)
    if valid is not None:
      resets = None if resets is None else resets & valid
      i_pre = jnp.where(valid[..., None], i_pre, -jnp.inf)
      log_f = jnp.where(valid[..., None], log_f, 0.0)
    carry, h = mlstm_chunked(carry, q, k, v, i_pre, log_f, self.eps, self.chunk_size, resets, reset_carry)
    return carry, jax.nn.sigmoid(o) * normalize_heads(h, self.head_norm).reshape(o.shape)

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    heads = self.heads
    head_dim = self.features // heads
    lead = tuple(input_shape[:-1]) + (heads,)
    c_key, n_key, m_key = jax.random.split(rng, 3)
    return (
      self.carry_init(c_key, lead + (head_dim, head_dim), self.param_dtype),
      self.carry_init(n_key, lead + (head_dim,), self.param_dtype),
      self.carry_init(m_key, lead, self.param_dtype),
    )
