r"""The selective state space model S6 and Mamba's mixer around it (Gu & Dao 2023), as cells.

S6, for each of D channels with an N-dimensional diagonal state, reads its step :math:`\Delta`, input
matrix B and output matrix C from the input (that is the "selection"):

.. math::
   \Delta_t = \mathrm{softplus}(W_\Delta (W_r u_t) + b_\Delta) \in \mathbb R^D, \quad
   B_t = W_B u_t, \quad C_t = W_C u_t \in \mathbb R^N, \quad A = -e^{A_{log}} \in \mathbb R^{D \times N} \\
   h_t = e^{\Delta_t A} \odot h_{t-1} + (\Delta_t \odot u_t) B_t^\top, \qquad
   y_t = h_t C_t + D \odot u_t

(zero-order hold for A, Euler for B, as Mamba's code). :math:`W_r u` is the low-rank ``x_proj`` part of
rank ``dt_rank`` (default :math:`\lceil H/16 \rceil`); :math:`W_B, W_C` are the rest of ``x_proj``.
Initialization as Mamba's: S4D-real :math:`A_{n} = n + 1` (``A_log = log(1..N)``), ``D = 1``,
``dt_proj`` kernel uniform in :math:`\pm \mathrm{dt\_rank}^{-1/2}` and bias the inverse softplus of
:math:`\Delta \sim \exp \mathcal U[\log 0.001, \log 0.1]` (floored at 1e-4).

The recurrence is linear in the state with coefficients of the input alone, so both cells also run
a whole sequence as an associative scan (``parallel_form``), the diagonal recurrence flattened to
``[batch, time, D * N]`` and given to ``linear.linear_recurrence``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.base import Cell
from deeprnn_jax.cells.conv import causal_conv_sequence, causal_conv_step, torch_conv_init
from deeprnn_jax.inits import get_initializer, per_gate
from deeprnn_jax.cells.linear import linear_recurrence

Array = jax.Array


class RMSNorm(nn.Module):
  r""":math:`x / \sqrt{\mathrm{mean}(x^2) + \epsilon} \odot` ``scale`` over the last axis (``scale`` starts at 1),
  as mambapy's ``RMSNorm`` (computed in ``param_dtype``)."""

  eps: float = 1e-5
  param_dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param('scale', jax.nn.initializers.ones, x.shape[-1:], self.param_dtype)
    x = x.astype(self.param_dtype)
    x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
    return x * jnp.broadcast_to(scale, x.shape)


class _SelectiveSSM(Cell):
  """The S6 parameters and maths shared by ``S6Cell`` and ``MambaCell`` (docstring of the module)."""

  state_size: int = 16
  dt_rank: int | None = None
  dt_min: float = 0.001
  dt_max: float = 0.1
  dt_init_floor: float = 1e-4
  dt_scale: float = 1.0

  parallel_form: ClassVar[bool] = True
  # RMSNorm of the Delta-rank input, B and C (Jamba's; mambapy's ``inner_layernorms``): S6Cell only.
  inner_norms: ClassVar[bool] = False

  @property
  def rank(self) -> int:
    return self.dt_rank or math.ceil(self.features / 16)

  def ssm_setup(self, channels: int):
    n, r = self.state_size, self.rank
    self.x_proj = nn.Dense(r + 2 * n, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
    std = self.dt_scale * r**-0.5

    def dt_bias_init(key, shape, dtype=jnp.float32):
      lo, hi = math.log(self.dt_min), math.log(self.dt_max)
      dt = jnp.maximum(jnp.exp(jax.random.uniform(key, shape, jnp.float32, lo, hi)), self.dt_init_floor)
      return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)  # softplus^{-1}(dt)

    self.dt_proj = nn.Dense(
      channels,
      kernel_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -std, std),
      bias_init=dt_bias_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )
    self.A_log = self.param(
      'A_log',
      lambda key, shape, dtype: jnp.log(jnp.broadcast_to(jnp.arange(1, n + 1, dtype=dtype), shape)),
      (channels, n),
      self.param_dtype,
    )
    self.D = self.param('D', jax.nn.initializers.ones, (channels,), self.param_dtype)
    if self.inner_norms:
      self.dt_norm, self.B_norm, self.C_norm = (RMSNorm(param_dtype=self.param_dtype) for _ in range(3))

  def selection(self, u: Array) -> tuple[Array, Array, Array]:
    """``u`` ``[..., D]`` -> :math:`\\Delta` pre-activation ``[..., D]``, B and C ``[..., N]``."""
    n, r = self.state_size, self.rank
    dbc = self.x_proj(u)
    delta, b, c = dbc[..., :r], dbc[..., r : r + n], dbc[..., r + n :]
    if self.inner_norms:
      delta, b, c = self.dt_norm(delta), self.B_norm(b), self.C_norm(c)
    return self.dt_proj(delta), b, c

  def discretize(self, u: Array, delta: Array, b: Array) -> tuple[Array, Array]:
    """:math:`(e^{\\Delta A}, (\\Delta \\odot u) B^\\top)`, each ``[..., D, N]`` (float32 state dtype)."""
    dtype = self.param_dtype
    u, delta, b = u.astype(dtype), jax.nn.softplus(delta.astype(dtype)), b.astype(dtype)
    a = -jnp.exp(self.A_log.astype(dtype))
    a = jnp.exp(delta[..., None] * jnp.broadcast_to(a, delta.shape + a.shape[-1:]))
    return a, (delta * u)[..., None] * b[..., None, :]

  def ssm_output(self, h: Array, u: Array, c: Array) -> Array:
    """:math:`h C + D \\odot u`: ``[..., D, N]``, ``[..., D]``, ``[..., N]`` -> ``[..., D]``."""
    u = u.astype(h.dtype)
    return jnp.sum(h * c.astype(h.dtype)[..., None, :], axis=-1) + jnp.broadcast_to(self.D, u.shape) * u

  def ssm_step(self, h: Array, u: Array) -> tuple[Array, Array]:
    delta, b, c = self.selection(u)
    a, bu = self.discretize(u, delta, b)
    h = a * h + bu
    return h, self.ssm_output(h, u, c)

  def ssm_sequence(
    self, h0: Array, u: Array, delta: Array, b: Array, c: Array, valid: Array | None, resets=None, h_reset=None
  ):
    """The associative scan over ``u`` ``[batch, time, D]`` from ``h0`` ``[batch, D, N]`` -> ``(h_T, s)``;
    ``resets`` ``[batch, time]`` restart the state from ``h_reset`` (None: zeros), as ``linear_recurrence``."""
    a, bu = self.discretize(u, delta, b)
    batch, time, channels, n = a.shape
    h = linear_recurrence(
      a.reshape(batch, time, channels * n),
      bu.reshape(batch, time, channels * n),
      h0.reshape(batch, channels * n),
      valid,
      parallel=True,
      resets=resets,
      h_reset=None if h_reset is None else h_reset.reshape(batch, channels * n),
    ).reshape(batch, time, channels, n)
    return h[:, -1], self.ssm_output(h, u, c)


class S6Cell(_SelectiveSSM):
  r"""The selective SSM S6 (Gu & Dao 2023, "Mamba", Algorithm 2) as a cell; equations in the module
  docstring, with D = H channels.

  Two choices of ours, for a cell that a classic stack (no norms, no residual) can hold:

  * the input reaches width H through ``input_proj`` (Dense ``[in, H]``, :math:`u = W x + b`), because a
    stack's layer input width may differ from H; Mamba's conv, SiLU and gate are ``MambaCell``;
  * the :math:`\Delta`-rank input, B and C pass through RMSNorms (``dt_norm``, ``B_norm``, ``C_norm``: Jamba's
    stabilization, Lieber et al. 2024; mambapy's ``inner_layernorms=True``). Without them
    :math:`y = C(u)\, h` with :math:`h \propto \Delta(u) B(u) u` grows like a cubic of the input per layer:
    four stacked S6 layers at initialization gave max outputs 18, 8e3, 5e13, then NaN (200 steps, H = 8).
    With them the output is about linear in the input.

  Attributes:
    state_size: N (16).
    dt_rank: rank of :math:`\Delta`'s projection (None: :math:`\lceil H/16\rceil`).
    dt_min: the smallest initial :math:`\Delta` (Mamba's initialization: 0.001).
    dt_max: the largest initial :math:`\Delta` (0.1).
    dt_init_floor: the floor of the initial :math:`\Delta` (1e-4).
    dt_scale: the scale of the :math:`\Delta` projection's initialization (1.0).
  Parameters: ``input_proj`` (``[in, H]``, ``[H]``), ``x_proj`` (``[H, dt_rank + 2N]``, no bias; order
  :math:`\Delta`, B, C), ``dt_norm``, ``B_norm``, ``C_norm`` (``scale``: ``[dt_rank]``, ``[N]``, ``[N]``),
  ``dt_proj`` (``[dt_rank, H]``, ``[H]``), ``A_log`` ``[H, N]``, ``D`` ``[H]``.
  Carry: ``h`` ``[batch, H, N]``.
  """

  inner_norms: ClassVar[bool] = True

  def setup(self):
    super().setup()
    self.ssm_setup(self.features)

  def project_inputs(self, x):
    """``[..., in] -> [..., 2H + 2N]``: u, the :math:`\\Delta` pre-activation, B, C (no carry needed)."""
    return self.from_conv(self.input_proj(x))

  # With ``short_conv='on'`` the convolution sits where Mamba puts it around S6: on u, followed by SiLU,
  # with the selection read from the convolved u.
  conv_activation: ClassVar[str] = 'silu'

  def conv_inputs(self, x):
    return self.input_proj(x)

  @property
  def conv_features(self) -> int:
    return self.features

  def from_conv(self, u):
    return jnp.concatenate([u, *self.selection(u)], axis=-1)

  def _split(self, xp):
    h, n = self.features, self.state_size
    return xp[..., :h], xp[..., h : 2 * h], xp[..., 2 * h : 2 * h + n], xp[..., 2 * h + n :]

  def recur(self, h, xp):
    u, delta, b, c = self._split(xp)
    a, bu = self.discretize(u, delta, b)
    h = a * h + bu
    return h, self.ssm_output(h, u, c)

  def parallel_sequence(self, carry, xp, valid, resets=None, reset_carry=None):
    return self.ssm_sequence(carry, *self._split(xp), valid, resets, reset_carry)

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    return self.carry_init(rng, tuple(input_shape[:-1]) + (self.features, self.state_size), self.param_dtype)


class MambaCell(_SelectiveSSM):
  r"""Mamba's mixer (Gu & Dao 2023, Fig. 3; ``mamba_simple.Mamba``) as a cell, with :math:`D = E H`:

  .. math::
     [\bar x_t; z_t] = W_{in} x_t, \qquad
     u_t = \mathrm{SiLU}\Big(\sum_{j=0}^{k-1} w_j \odot \bar x_{t-k+1+j} + b_{conv}\Big), \\
     (h_t, s_t) = \mathrm{S6}(h_{t-1}, u_t), \qquad y_t = W_{out} (s_t \odot \mathrm{SiLU}(z_t))

  a causal depthwise convolution of width k = ``d_conv`` whose last k - 1 inputs :math:`\bar x` are kept
  in the carry (so streaming and padding behave like any other cell: the final carry's buffer holds each
  sequence's last k - 1 valid inputs), then S6 (module docstring), gated. The residual and RMSNorm
  around it belong to the block, not the cell.

  Attributes:
    expand: E (2). d_conv: k (4). state_size, dt_rank, dt_*: as ``S6Cell``.
  Parameters: ``input_proj`` (``[in, 2EH]``, no bias; order :math:`\bar x`, z), ``conv_kernel``
  ``[d_conv, EH]`` and ``conv_bias`` ``[EH]`` (PyTorch's Conv1d initialization, as Mamba's), ``x_proj``,
  ``dt_proj``, ``A_log`` ``[EH, N]``, ``D`` ``[EH]`` (as ``S6Cell`` with EH channels), ``output_proj``
  (``[EH, H]``, no bias).
  Carry: ``(conv, h)``: the last ``d_conv - 1`` inputs ``[batch, d_conv - 1, EH]`` (oldest first) and the
  SSM state ``[batch, EH, N]``.
  """

  expand: int = 2
  d_conv: int = 4

  # The cell's own short convolution is its d_conv (DeepRNN's short_conv and conv_width set it).
  own_conv: ClassVar[str] = 'd_conv'

  @property
  def inner(self) -> int:
    return self.expand * self.features

  def setup(self):
    if self.d_conv < 1 or self.expand < 1:
      raise ValueError(f'MambaCell: d_conv={self.d_conv} and expand={self.expand} must be >= 1')
    d, k = self.inner, self.d_conv
    self.input_proj = nn.Dense(
      2 * d,
      use_bias=False,
      kernel_init=per_gate(get_initializer(self.kernel_init), 2),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )

    self.conv_kernel = self.param('conv_kernel', torch_conv_init(k), (k, d), self.param_dtype)
    self.conv_bias = self.param('conv_bias', torch_conv_init(k), (d,), self.param_dtype)
    self.ssm_setup(d)
    self.output_proj = nn.Dense(self.features, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)

  def _gated_output(self, s, z):
    return self.output_proj(s * jax.nn.silu(z.astype(s.dtype)))

  def recur(self, carry, xp):
    conv, h = carry
    x, z = jnp.split(xp, 2, axis=-1)
    conv, u = causal_conv_step(conv, x, self.conv_kernel, self.conv_bias)
    h, s = self.ssm_step(h, jax.nn.silu(u))
    return (conv, h), self._gated_output(s, z)

  def parallel_sequence(self, carry, xp, valid, resets=None, reset_carry=None):
    conv, h0 = carry
    x, z = jnp.split(xp, 2, axis=-1)
    fresh_conv, fresh_h = (None, None) if reset_carry is None else reset_carry
    conv, u = causal_conv_sequence(conv, x, self.conv_kernel, self.conv_bias, valid, resets, fresh_conv)
    u = jax.nn.silu(u)
    h, s = self.ssm_sequence(h0, u, *self.selection(u), valid, resets, fresh_h)
    return (conv, h), self._gated_output(s, z)

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    batch = tuple(input_shape[:-1])
    conv_key, h_key = jax.random.split(rng)
    return (
      self.carry_init(conv_key, batch + (self.d_conv - 1, self.inner), self.param_dtype),
      self.carry_init(h_key, batch + (self.inner, self.state_size), self.param_dtype),
    )
