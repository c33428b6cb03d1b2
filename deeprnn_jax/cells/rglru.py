r"""The Real-Gated Linear Recurrent Unit of Griffin and Hawk (De et al. 2024) as a cell.

.. math::
   \tilde x_t = W x_t + b, \qquad
   r_t = \sigma(W_a \tilde x_t + b_a), \qquad i_t = \sigma(W_x \tilde x_t + b_x), \\
   \log a_t = -c\, \mathrm{softplus}(\Lambda)\, r_t, \qquad
   h_t = a_t \odot h_{t-1} + \sqrt{1 - a_t^2} \odot (i_t \odot \tilde x_t), \qquad y_t = h_t

with :math:`c = 8`. :math:`W_a, W_x` are block-diagonal over ``num_heads`` heads, as in the authors'
``recurrentgemma`` (``BlockDiagonalLinear``). :math:`\Lambda` is stored as recurrentgemma's ``a_param``:
the base decay is :math:`a = e^{-\mathrm{softplus}(\Lambda)} = \sigma(-\Lambda)` (the paper writes
:math:`a = \sigma(\Lambda)`, the same thing with the sign flipped), initialized as recurrentgemma does:
:math:`a^2 \sim \mathcal U[r_{min}^2, r_{max}^2]` with ``r_min = 0.9``, ``r_max = 0.999`` (uniform on
the ring's area).

Two choices of ours, both because a cell in a stack must take any input width and any carry:

* the input reaches width H through ``input_proj`` (a Dense ``[in, H]``, like the ``linear_x`` in
  front of the RG-LRU in Hawk's recurrent block); the block's conv1d and GeLU gate branch are not part
  of the cell (they belong to the block around it);
* no reset: recurrentgemma replaces :math:`\sqrt{1 - a_t^2}` by 1 (and :math:`a_t` by 0) where
  ``segment_pos == 0``, i.e. at a document's first token. A step here cannot know its position, and a
  sequence starts from a carry (zeros, or the previous chunk's state when streaming), so every step
  is normalized. This equals ``recurrentgemma.jax.layers.RGLRU`` fed ``segment_pos`` starting at 1
  (tests/oracles/test_rglru_oracle.py).

The derivative of the square root is bounded as in recurrentgemma (``sqrt_bound_derivative``, at
1000), so that :math:`a_t \to 1` cannot give infinite gradients.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from deeprnn_jax.cells.linear import LinearRecurrentCell

Array = jax.Array


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bounded_derivative(x: Array, max_gradient: float) -> Array:
  """:math:`\\sqrt{x}` whose derivative is at most ``max_gradient`` (evaluated at ``max(x, 1/(4 g^2))``)."""
  del max_gradient
  return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
  del max_gradient
  return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
  return (g * 0.5 * jax.lax.rsqrt(jnp.maximum(x, 1.0 / (4.0 * max_gradient**2))),)


sqrt_bounded_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


class BlockDiagonalDense(nn.Module):
  """``[..., H] -> [..., H]`` with a block-diagonal kernel: ``w`` ``[heads, H/heads, H/heads]``, ``b``
  ``[heads, H/heads]`` (recurrentgemma's layout and initialization: normal, variance 1/H)."""

  features: int
  num_heads: int
  dtype: object = None
  param_dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    size = self.features // self.num_heads
    w = self.param('w', jinit.variance_scaling(1.0, 'fan_in', 'normal'), (self.num_heads, size, size), self.param_dtype)
    b = self.param('b', jinit.zeros, (self.num_heads, size), self.param_dtype)
    x, w, b = nn.dtypes.promote_dtype(x, w, b, dtype=self.dtype)
    x = x.reshape(x.shape[:-1] + (self.num_heads, size))
    y = jnp.einsum('...hi,hij->...hj', x, w)
    y = y + jnp.broadcast_to(b, y.shape)
    return y.reshape(y.shape[:-2] + (self.features,))


class RGLRUCell(LinearRecurrentCell):
  r"""RG-LRU (De et al. 2024, "Griffin"); equations and choices in the module docstring.

  Attributes:
    num_heads: blocks of the gate kernels (None: 1, dense gates); must divide ``features``.
    c: the constant :math:`c` (8 in the paper).
    r_min: the inner radius of the ring :math:`a` is initialized on (recurrentgemma: 0.9).
    r_max: its outer radius (recurrentgemma: 0.999).
  Parameters: ``input_proj`` (``[in, H]``, ``[H]``), ``input_gate`` and ``a_gate`` (``w``
  ``[heads, H/heads, H/heads]``, ``b`` ``[heads, H/heads]``), ``a_param`` (:math:`\Lambda`, ``[H]``).
  Carry: ``h`` ``[batch, H]``.
  """

  num_heads: int | None = None
  c: float = 8.0
  r_min: float = 0.9
  r_max: float = 0.999

  num_gates: ClassVar[int] = 1

  @property
  def heads(self) -> int:
    return self.num_heads or 1

  def setup(self):
    if self.features % self.heads:
      raise ValueError(f'RGLRUCell: num_heads={self.heads} must divide features={self.features}; pick a divisor')
    super().setup()
    gate = functools.partial(BlockDiagonalDense, self.features, self.heads, self.dtype, self.param_dtype)
    self.input_gate, self.a_gate = gate(), gate()

    def a_param_init(key, shape, dtype=jnp.float32):
      a_squared = jax.random.uniform(key, shape, jnp.float32, self.r_min**2, self.r_max**2)
      # softplus(a_param) = -log a, so a_param = softplus^{-1}(-log a).
      return jnp.log(jnp.expm1(-0.5 * jnp.log(a_squared))).astype(dtype)

    self.a_param = self.param('a_param', a_param_init, (self.features,), self.param_dtype)

  def project_inputs(self, x):
    """``[..., in] -> [..., 3H]``: :math:`\\tilde x`, then the input-gate and a-gate pre-activations."""
    return self.from_conv(self.input_proj(x))

  # Griffin's recurrent block convolves linear_x's output (width 4, with bias, no activation) and the
  # RG-LRU reads its gates from the convolved x (recurrentgemma/jax/modules.py, RecurrentBlock).
  authors_conv: ClassVar[bool] = True

  def conv_inputs(self, x):
    return self.input_proj(x)

  @property
  def conv_features(self) -> int:
    return self.features

  def conv_init(self, width):
    # recurrentgemma's Conv1D: w ~ N(0, 0.01 / k) (variance_scaling(0.01, fan_in = k)), b = 0.
    return jinit.variance_scaling(0.01, 'fan_in', 'normal'), jinit.zeros

  def from_conv(self, x):
    return jnp.concatenate([x, self.input_gate(x), self.a_gate(x)], axis=-1)

  def coefficients(self, xp):
    x, gate_x, gate_a = jnp.split(xp.astype(self.param_dtype), 3, axis=-1)
    decay = jnp.broadcast_to(jax.nn.softplus(self.a_param), gate_a.shape)
    log_a = -self.c * jax.nn.sigmoid(gate_a) * decay
    # -expm1(2 log a) = 1 - a^2 without the cancellation of 1 - exp(.) where a is near 1 (large gate
    # inputs): in float32 that lost up to 2x test_cells' tolerance against float64 at inputs x10.
    multiplier = sqrt_bounded_derivative(-jnp.expm1(2.0 * log_a), 1000.0)
    return jnp.exp(log_a), multiplier * (jax.nn.sigmoid(gate_x) * x)
