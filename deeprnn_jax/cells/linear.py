r"""Linear-recurrence cells and the two ways to run a linear recurrence over a sequence.

A linear-recurrence cell has a state update that is linear in the state,

.. math:: h_t = a_t \odot h_{t-1} + b_t, \qquad y_t = \mathrm{readout}(h_t, x_t),

with :math:`a_t, b_t` functions of the input alone. Such a cell is an ordinary per-step cell (its
``__call__`` is the reference), and a whole sequence can also be computed

* sequentially (``linear_recurrence(..., parallel=False)``): a ``lax.scan`` whose body is two
  elementwise ops, with the input projection and the readout hoisted out as big matmuls; or
* in parallel (``parallel=True``): ``jax.lax.associative_scan`` with the operator
  :math:`(a_1, b_1) \bullet (a_2, b_2) = (a_2 a_1,\; a_2 b_1 + b_2)`, depth :math:`O(\log T)`
  (Blelloch 1990; Martin & Cundy 2018), which pays on accelerators for long sequences.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.base import Cell, get_activation
from deeprnn_jax.inits import get_initializer

Array = jax.Array


class LinearRecurrentCell(Cell):
  """A cell whose recurrence is :math:`h_t = a_t h_{t-1} + b_t` (see the module docstring).

  A subclass gives ``coefficients`` (and ``readout`` if the output is not the state); the parallel
  form (associative scan) and the sequential hoisted form follow from them.
  """

  parallel_form: ClassVar[bool] = True
  # On CPU the sequential scan with the projection and readout hoisted (execution='layer') trained
  # fastest of the three paths at T = 64-1024 for every such cell (BENCHMARKS.md, cells_bench): the
  # associative scan's O(T log T) work does not pay on two cores.
  cpu_execution: ClassVar[str] = 'layer'

  def coefficients(self, xp: Array) -> tuple[Array, Array]:
    """Projected inputs ``[..., P]`` -> ``(a, b)``, each ``[..., N]`` in the carry's dtype."""
    raise NotImplementedError

  def readout(self, h: Array, xp: Array) -> Array:
    """States ``[..., N]`` and projected inputs -> outputs ``[..., H]``."""
    return h

  def recur(self, h, xp):
    a, b = self.coefficients(xp)
    h = a * h + b
    return h, self.readout(h, xp)

  def sequence(
    self,
    h0: Array,
    xp: Array,
    valid: Array | None,
    *,
    parallel: bool,
    unroll: int = 1,
    resets: Array | None = None,
    reset_carry: Array | None = None,
  ):
    """All steps with the input projection and readout hoisted: ``(final state, [batch, time, H])``;
    ``parallel`` picks the associative scan or the sequential ``lax.scan`` (same numbers); ``resets``
    and ``reset_carry`` as in ``Cell.parallel_sequence``."""
    a, b = self.coefficients(xp)
    h = linear_recurrence(a, b, h0, valid, parallel=parallel, unroll=unroll, resets=resets, h_reset=reset_carry)
    return h[:, -1], self.readout(h, xp)

  def parallel_sequence(self, carry, xp, valid, resets=None, reset_carry=None):
    return self.sequence(carry, xp, valid, parallel=True, resets=resets, reset_carry=reset_carry)


class MinGRUCell(LinearRecurrentCell):
  r"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"): a GRU whose gate and candidate read
  only the input, so the recurrence is linear.

  .. math::
     z_t = \sigma(W_z x_t + b_z), \quad \tilde h_t = W_h x_t + b_h, \quad
     h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

  i.e. :math:`a_t = 1 - z_t`, :math:`b_t = z_t \odot \tilde h_t`. Parameters: ``input_proj``
  (``[in, 2H]``, ``[2H]``; order z, h). No recurrent kernel (``recurrent_kernel_init`` is unused).
  Carry: ``h`` ``[batch, H]``.
  """

  num_gates: ClassVar[int] = 2

  def coefficients(self, xp):
    z, candidate = jnp.split(xp.astype(self.param_dtype), 2, axis=-1)
    z = jax.nn.sigmoid(z)
    return 1.0 - z, z * candidate


class MinLSTMCell(LinearRecurrentCell):
  r"""minLSTM (Feng et al. 2024, "Were RNNs all we needed?"): an LSTM whose gates and candidate read
  only the input, with the forget and input gates normalized to sum to one (time-independent scale).

  .. math::
     f_t = \sigma(W_f x_t + b_f), \quad i_t = \sigma(W_i x_t + b_i), \quad \tilde h_t = W_h x_t + b_h, \\
     f'_t = \frac{f_t}{f_t + i_t}, \quad i'_t = \frac{i_t}{f_t + i_t}, \quad
     h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

  i.e. :math:`a_t = f'_t`, :math:`b_t = i'_t \odot \tilde h_t`. The normalized gates are computed as
  :math:`f' = \sigma(-d)`, :math:`i' = \sigma(d)` with :math:`d = \mathrm{softplus}(-k_f) - \mathrm{softplus}(-k_i)`
  (the authors' log-space identity :math:`\log(i/f) = d`), which never divides by a small sum.
  The parallel form is the associative scan of ``LinearRecurrentCell``. The paper's log-space scan
  (``logcumsumexp``) is not offered: it needs positive values, i.e. a different candidate
  :math:`g(\tilde h)` and a positive initial state, while the scan here takes any carry.
  Parameters: ``input_proj`` (``[in, 3H]``, ``[3H]``; order f, i, h). No recurrent kernel.
  Carry: ``h`` ``[batch, H]``.
  """

  num_gates: ClassVar[int] = 3

  def coefficients(self, xp):
    k_f, k_i, candidate = jnp.split(xp.astype(self.param_dtype), 3, axis=-1)
    d = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
    return jax.nn.sigmoid(-d), jax.nn.sigmoid(d) * candidate


class LRUCell(LinearRecurrentCell):
  r"""Linear recurrent unit (Orvieto et al. 2023): a complex diagonal recurrence.

  .. math::
     \lambda = \exp(-e^{\nu} + i\, e^{\theta}), \quad
     h_t = \lambda \odot h_{t-1} + \gamma \odot (B x_t), \quad
     y_t = \phi(\mathrm{Re}(C h_t) + D x_t + d)

  with :math:`h_t \in \mathbb{C}^N`, the normalization :math:`\gamma = e^{\gamma_{log}}` initialized
  to :math:`\sqrt{1 - |\lambda|^2}`, and :math:`|\lambda|` initialized uniformly on the ring
  ``[r_min, r_max]``, phases in ``[0, max_phase]`` (the paper's "stable exponential"
  parameterization). Orvieto et al. put a nonlinear MLP/GLU after each LRU; here :math:`\phi`
  (``activation``, GELU by default) is applied in the cell so that a stack of LRU cells is
  nonlinear; ``D`` is a full ``[in, H]`` matrix so that layers may change width (the paper's is
  diagonal, with in = H).

  Attributes:
    state_features: N, the complex state size (default: ``features``).
    r_min: the inner radius of the ring the eigenvalues are initialized on (0.9).
    r_max: the outer radius of that ring (0.999).
    max_phase: the largest initial eigenvalue phase (:math:`2\pi`).
    activation: :math:`\phi`.
  Parameters: ``input_proj`` (``[in, 2N + H]``: Re B, Im B, D; no bias), ``output_proj`` (the real
  form of C, ``[2N, H]``, and the bias d), ``nu_log``, ``theta_log``, ``gamma_log`` (``[N]``).
  Carry: complex ``h`` ``[batch, N]`` (complex64).
  """

  state_features: int | None = None
  r_min: float = 0.9
  r_max: float = 0.999
  max_phase: float = 2 * math.pi
  activation: str = 'gelu'

  @property
  def state_size(self) -> int:
    return self.state_features or self.features

  @property
  def conv_features(self) -> int:
    return 2 * self.state_size + self.features

  def setup(self):
    n, h = self.state_size, self.features
    base = get_initializer(self.kernel_init)

    def input_init(key, shape, dtype=jnp.float32):
      # Re B and Im B each with half the variance, so that |B x| has the variance of a real layer.
      b_key, d_key = jax.random.split(key)
      b = base(b_key, shape[:-1] + (2 * n,), dtype) / math.sqrt(2.0)
      return jnp.concatenate([b, base(d_key, shape[:-1] + (h,), dtype)], axis=-1)

    self.input_proj = nn.Dense(
      2 * n + h, use_bias=False, kernel_init=input_init, dtype=self.dtype, param_dtype=self.param_dtype
    )
    self.output_proj = nn.Dense(h, dtype=self.dtype, param_dtype=self.param_dtype)

    def nu_init(key, shape, dtype=jnp.float32):
      u = jax.random.uniform(key, shape, dtype)
      radius_sq = u * (self.r_max**2 - self.r_min**2) + self.r_min**2
      return jnp.log(-0.5 * jnp.log(radius_sq))

    def theta_init(key, shape, dtype=jnp.float32):
      return jnp.log(self.max_phase * jax.random.uniform(key, shape, dtype, minval=1e-4))

    self.nu_log = self.param('nu_log', nu_init, (n,), self.param_dtype)
    self.theta_log = self.param('theta_log', theta_init, (n,), self.param_dtype)

    def gamma_init(key, shape, dtype=jnp.float32):
      del key
      radius_sq = jnp.exp(-2.0 * jnp.exp(self.nu_log))
      return (0.5 * jnp.log(1.0 - radius_sq)).astype(dtype)

    self.gamma_log = self.param('gamma_log', gamma_init, (n,), self.param_dtype)

  def eigenvalues(self) -> Array:
    """:math:`\\lambda`, ``[N]`` complex."""
    return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log), jnp.exp(self.theta_log)))

  def coefficients(self, xp):
    n = self.state_size
    xp = xp.astype(self.param_dtype)
    bx_re, bx_im = xp[..., :n], xp[..., n : 2 * n]
    gamma = jnp.broadcast_to(jnp.exp(self.gamma_log), bx_re.shape)
    b = jax.lax.complex(gamma * bx_re, gamma * bx_im)
    return jnp.broadcast_to(self.eigenvalues(), b.shape), b

  def readout(self, h, xp):
    n = self.state_size
    y = self.output_proj(jnp.concatenate([h.real, h.imag], axis=-1))
    return get_activation(self.activation)(y.astype(self.param_dtype) + xp[..., 2 * n :].astype(self.param_dtype))

  @nn.nowrap
  def initialize_carry(self, rng, input_shape):
    real = jnp.promote_types(self.param_dtype, jnp.float32)
    return self.carry_init(rng, tuple(input_shape[:-1]) + (self.state_size,), jnp.result_type(real, jnp.complex64))


def _combine(earlier, later):
  a1, b1 = earlier
  a2, b2 = later
  return a2 * a1, a2 * b1 + b2


def linear_recurrence(
  a: Array,
  b: Array,
  h0: Array,
  valid: Array | None = None,
  *,
  parallel: bool,
  unroll: int = 1,
  resets: Array | None = None,
  h_reset: Array | None = None,
) -> Array:
  r"""All states of :math:`h_t = a_t \odot h_{t-1} + b_t` over the time axis 1.

  Args:
    a: ``[batch, time, N]``, the decays :math:`a_t`.
    b: ``[batch, time, N]``, the inputs :math:`b_t`.
    h0: ``[batch, N]``, the state before the first step.
    valid: optional ``[batch, time]`` bool; at invalid (padding) steps the state is held
      (:math:`a = 1, b = 0`), so ``h[:, -1]`` is each sequence's state at its last valid step.
    parallel: associative scan (True) or sequential ``lax.scan`` (False); same numbers.
    unroll: ``lax.scan`` unroll factor of the sequential path.
    resets: optional ``[batch, time]`` bool (packed sequences): at a marked step the state before it
      is ``h_reset`` (``[batch, N]``; None: zeros) instead of :math:`h_{t-1}`. Folded into the
      coefficients, :math:`(a_t, b_t) \to (0,\; a_t h_{reset} + b_t)`, so the associative scan's
      operator is unchanged and carries no flag: a zero :math:`a_t` cuts every product across the
      reset, and so every gradient across it (exactly zero).

  Returns:
    ``h``: ``[batch, time, N]``.
  """
  if resets is not None:
    r = resets[..., None]
    b = b if h_reset is None else jnp.where(r, a * h_reset[:, None].astype(b.dtype) + b, b)
    a = jnp.where(r, jnp.zeros((), a.dtype), a)
  if valid is not None:  # after the resets: a reset on a padding step is ignored
    v = valid[..., None]
    a = jnp.where(v, a, jnp.ones((), a.dtype))
    b = jnp.where(v, b, jnp.zeros((), b.dtype))
  if parallel:
    # Fold the initial state into the first input: h_0' = a_0 h0 + b_0.
    b = b.at[:, 0].add(a[:, 0] * h0)
    _, h = jax.lax.associative_scan(_combine, (a, b), axis=1)
    return h

  def step(h, ab):
    a_t, b_t = ab
    h = a_t * h + b_t
    return h, h

  _, h = jax.lax.scan(step, h0, (jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1)), unroll=unroll)
  return jnp.swapaxes(h, 0, 1)
