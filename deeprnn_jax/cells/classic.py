r"""The classic gated and ungated cells: Elman (and IRNN), LSTM, GRU, MGU, IndRNN, UGRNN.

Each is a ``Cell`` (``base.py``): ``project_inputs`` + ``recur``, with its equations, parameters and
carry in its docstring.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.base import Cell, _like, get_activation
from deeprnn_jax.inits import InitLike, get_initializer

Array = jax.Array


class ElmanCell(Cell):
  r"""The seed's simple recurrent cell (Elman 1990).

  .. math:: h_t = \phi(W x_t + U h_{t-1} + b), \qquad y_t = h_t

  Attributes:
    activation: :math:`\phi`, ``'tanh'`` (default) or ``'relu'``.
  Parameters: ``input_proj`` (W, b: ``[in, H]``, ``[H]``), ``recurrent`` (U: ``[H, H]``).
  Carry: ``h`` of shape ``[batch, H]``.
  """

  activation: str = 'tanh'

  def setup(self):
    super().setup()
    self.recurrent = self.recurrent_dense(1)

  def recur(self, h, xp):
    h = get_activation(self.activation)(_like(xp, h) + _like(self.recurrent(h), h))
    return h, h


class IRNNCell(ElmanCell):
  r"""IRNN (Le et al. 2015): an Elman cell with ReLU, identity recurrent matrix, zero bias and
  input weights drawn from :math:`\mathcal{N}(0, 10^{-3})` (standard deviation 0.001)."""

  activation: str = 'relu'
  recurrent_kernel_init: InitLike = 'identity'
  kernel_init: InitLike = 'normal_0.001'


class LSTMCell(Cell):
  r"""Long short-term memory (Hochreiter & Schmidhuber 1997), all four gates in one matmul.

  .. math::
     [i; f; g; o] = W x_t + U h_{t-1} + b \\
     c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g), \qquad
     h_t = \sigma(o) \odot \tanh(c_t), \qquad y_t = h_t

  Attributes:
    forget_init: ``'constant'``: forget-gate bias ``forget_bias`` (default 1.0, Gers et al. 2000;
      Jozefowicz et al. 2015); ``'chrono'``: chrono initialization (Tallec & Ollivier 2018),
      :math:`b_f \sim \log \mathcal{U}(1, T_{max} - 1)`, :math:`b_i = -b_f`.
    forget_bias: the constant forget-gate bias.
    chrono_max_length: :math:`T_{max}`, the longest dependency the chrono init aims at.
  Parameters: ``input_proj`` (``[in, 4H]``, ``[4H]``; gate order i, f, g, o), ``recurrent``
  (``[H, 4H]``). Carry: ``(c, h)``, each ``[batch, H]`` (Flax's order).
  """

  forget_init: str = 'constant'
  forget_bias: float = 1.0
  chrono_max_length: int = 1000

  num_gates: ClassVar[int] = 4

  def setup(self):
    if self.forget_init not in ('constant', 'chrono'):
      raise ValueError(f"unknown forget_init {self.forget_init!r}; choose 'constant' or 'chrono'")
    super().setup()
    self.recurrent = self.recurrent_dense(4)

  def input_bias_init(self):
    base, hidden = get_initializer(self.bias_init), self.features

    def init(key, shape, dtype=jnp.float32):
      key, chrono_key = jax.random.split(key)
      bias = base(key, shape, dtype)
      if self.forget_init == 'chrono':
        forget = jnp.log(jax.random.uniform(chrono_key, (hidden,), dtype, 1.0, max(self.chrono_max_length - 1, 2)))
        bias = bias.at[:hidden].set(-forget)
      else:
        forget = jnp.full((hidden,), self.forget_bias, dtype)
      return bias.at[hidden : 2 * hidden].set(forget)

    return init

  def recur(self, carry, xp):
    c, h = carry
    z = _like(xp, c) + _like(self.recurrent(h), c)
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (c, h), h

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    c_key, h_key = jax.random.split(rng)
    shape = tuple(input_shape[:-1]) + (self.features,)
    return self.carry_init(c_key, shape, self.param_dtype), self.carry_init(h_key, shape, self.param_dtype)


class GRUCell(Cell):
  r"""Gated recurrent unit (Cho et al. 2014), in the cuDNN / PyTorch form with both biases.

  .. math::
     r = \sigma(W_r x_t + b_{ir} + U_r h_{t-1} + b_{hr}), \quad
     z = \sigma(W_z x_t + b_{iz} + U_z h_{t-1} + b_{hz}) \\
     n = \tanh(W_n x_t + b_{in} + r \odot (U_n h_{t-1} + b_{hn})), \quad
     h_t = (1 - z) \odot n + z \odot h_{t-1}

  Parameters: ``input_proj`` (``[in, 3H]``, ``[3H]``; order r, z, n), ``recurrent``
  (``[H, 3H]``, ``[3H]``). Carry: ``h`` ``[batch, H]``.
  """

  num_gates: ClassVar[int] = 3

  def setup(self):
    super().setup()
    self.recurrent = self.recurrent_dense(3, use_bias=True)

  def recur(self, h, xp):
    xr, xz, xn = jnp.split(_like(xp, h), 3, axis=-1)
    hr, hz, hn = jnp.split(_like(self.recurrent(h), h), 3, axis=-1)
    r = jax.nn.sigmoid(xr + hr)
    z = jax.nn.sigmoid(xz + hz)
    n = jnp.tanh(xn + r * hn)
    h = (1.0 - z) * n + z * h
    return h, h


class MGUCell(Cell):
  r"""Minimal gated unit (Zhou et al. 2016): a GRU whose single forget gate also resets.

  .. math::
     f = \sigma(W_f x_t + U_f h_{t-1} + b_f), \quad
     \tilde h = \tanh(W_h x_t + U_h (f \odot h_{t-1}) + b_h), \quad
     h_t = (1 - f) \odot h_{t-1} + f \odot \tilde h

  Parameters: ``input_proj`` (``[in, 2H]``, ``[2H]``; order f, h), ``recurrent_gate``
  (``U_f``: ``[H, H]``), ``recurrent_candidate`` (``U_h``: ``[H, H]``; it reads ``f * h``, so the two
  recurrent matmuls cannot be fused). Carry: ``h`` ``[batch, H]``.
  """

  num_gates: ClassVar[int] = 2

  def setup(self):
    super().setup()
    self.recurrent_gate = self.recurrent_dense(1)
    self.recurrent_candidate = self.recurrent_dense(1)

  def recur(self, h, xp):
    xf, xh = jnp.split(_like(xp, h), 2, axis=-1)
    f = jax.nn.sigmoid(xf + _like(self.recurrent_gate(h), h))
    candidate = jnp.tanh(xh + _like(self.recurrent_candidate(f * h), h))
    h = (1.0 - f) * h + f * candidate
    return h, h


class IndRNNCell(Cell):
  r"""Independently recurrent network (Li et al. 2018): a diagonal recurrence.

  .. math:: h_t = \phi(W x_t + u \odot h_{t-1} + b)

  Attributes:
    activation: :math:`\phi` (``'relu'``, as in the paper).
    recurrent_kernel_init: initializer of the vector ``u`` (default U(0, 1), the paper's).
    recurrent_max_abs: if set, ``u`` is clipped to ``[-max, max]`` in the forward pass (the paper
      bounds :math:`|u| \le 2^{1/T}` to keep gradients over ``T`` steps from exploding).
  Parameters: ``input_proj`` (``[in, H]``, ``[H]``), ``recurrent_kernel`` (``u``: ``[H]``).
  """

  activation: str = 'relu'
  recurrent_kernel_init: InitLike = 'unit_uniform'
  recurrent_max_abs: float | None = None

  # Its recurrence is elementwise, so hoisting the input projection (execution='layer') leaves only
  # cheap steps: 1.6-3.5x faster training on CPU at T = 64-1024 (BENCHMARKS.md, cells_bench).
  cpu_execution: ClassVar[str] = 'layer'

  def setup(self):
    super().setup()
    self.recurrent_kernel = self.param(
      'recurrent_kernel', get_initializer(self.recurrent_kernel_init), (self.features,), self.param_dtype
    )

  def recur(self, h, xp):
    u = _like(self.recurrent_kernel, h)
    if self.recurrent_max_abs is not None:
      u = jnp.clip(u, -self.recurrent_max_abs, self.recurrent_max_abs)
    u = jnp.broadcast_to(u, h.shape)
    h = get_activation(self.activation)(_like(xp, h) + u * h)
    return h, h


class UGRNNCell(Cell):
  r"""Update-gate RNN (Collins et al. 2017), the cell that stored the most per parameter there.

  .. math::
     c = \tanh(W_c x_t + U_c h_{t-1} + b_c), \quad
     g = \sigma(W_g x_t + U_g h_{t-1} + b_g), \quad
     h_t = g \odot h_{t-1} + (1 - g) \odot c

  Attributes:
    gate_bias: initial :math:`b_g` (1.0, the reference implementation's forget bias), so the cell
      starts out remembering.
  Parameters: ``input_proj`` (``[in, 2H]``, ``[2H]``; order c, g), ``recurrent`` (``[H, 2H]``).
  """

  gate_bias: float = 1.0

  num_gates: ClassVar[int] = 2

  def setup(self):
    super().setup()
    self.recurrent = self.recurrent_dense(2)

  def input_bias_init(self):
    base, hidden = get_initializer(self.bias_init), self.features

    def init(key, shape, dtype=jnp.float32):
      return base(key, shape, dtype).at[hidden:].set(self.gate_bias)

    return init

  def recur(self, h, xp):
    z = _like(xp, h) + _like(self.recurrent(h), h)
    c, g = jnp.split(z, 2, axis=-1)
    g = jax.nn.sigmoid(g)
    h = g * h + (1.0 - g) * jnp.tanh(c)
    return h, h
