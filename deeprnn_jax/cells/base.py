r"""Per-step recurrent cells (Flax's ``RNNCellBase`` protocol).

Every cell here is a ``flax.linen`` module constructed as ``Cls(features=H)`` and used as

.. code-block:: python

    carry = cell.initialize_carry(rng, x[:, 0].shape)   # x_t: [batch, in_features]
    carry, y = cell(carry, x_t)                           # y: [batch, H]

so it works unchanged inside ``flax.linen.RNN``. Each step is split in two, which is what makes the
fast paths possible:

* ``project_inputs(x)``: the part that does not depend on the carry, :math:`W x + b` for all gates at
  once (one fused matmul, ``[..., in] -> [..., gates * H]``). It works on any leading shape, so a
  sequence model applies it to ``[batch, time, in]`` in one matmul, hoisted out of the time loop.
* ``recur(carry, xp)``: the recurrence given the projected input.

``__call__(carry, x) = recur(carry, project_inputs(x))`` is the reference every faster path is tested
against. Cells whose recurrence is linear in the state also have a *parallel form*
(``parallel_form = True``): ``parallel_sequence(carry, xp, valid)`` computes a whole sequence at once
(an associative scan, or a chunkwise form for matrix states) and must give the same numbers.
Parameter names are the same for every cell: ``input_proj`` (fused input kernel and bias) and
``recurrent`` (fused recurrent kernel), plus cell-specific ones documented per cell.

Dtype policy: matmuls run in ``dtype`` (e.g. ``jnp.bfloat16``) with parameters stored in
``param_dtype``; gates and the carry are computed and kept in the carry's dtype (``param_dtype``,
float32 by default) so that long sequences do not accumulate low-precision rounding in the state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from deeprnn_jax.inits import InitLike, get_initializer, per_gate

Array = jax.Array
Carry = Any

ACTIVATIONS = {'tanh': jnp.tanh, 'relu': jax.nn.relu, 'gelu': jax.nn.gelu, 'identity': lambda x: x}


def get_activation(name: str):
  try:
    return ACTIVATIONS[name]
  except KeyError:
    raise ValueError(f'unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}') from None


class Cell(nn.RNNCellBase):
  """Base class: a fused input projection plus a cell-specific recurrence.

  Attributes:
    features: hidden size H (the width of the carry's hidden state and of the output).
    kernel_init: initializer (or its name in ``deeprnn_jax.inits.INITIALIZERS``) of the input kernel,
      applied gate by gate.
    recurrent_kernel_init: initializer (or name) of the recurrent kernel, applied gate by gate.
    bias_init: initializer (or name) of the input bias.
    dtype: computation dtype of the matmuls (None: from the inputs and parameters).
    param_dtype: dtype of the parameters and of the carry.
    carry_init: initializer of the carry (zeros).
  """

  features: int
  kernel_init: InitLike = 'lecun_normal'
  recurrent_kernel_init: InitLike = 'orthogonal'
  bias_init: InitLike = 'zeros'
  dtype: Any = None
  param_dtype: Any = jnp.float32
  carry_init: Any = jinit.zeros

  # Gate blocks of width H in the fused input projection.
  num_gates: ClassVar[int] = 1
  # True for cells whose recurrence is linear in the state and that implement ``parallel_sequence``.
  parallel_form: ClassVar[bool] = False
  # False for cells whose carry is no state to learn (``DeepRNN(initial_carry='learned')`` refuses them).
  learnable_carry: ClassVar[bool] = True
  # The path ``DeepRNN(execution='auto')`` takes on XLA:CPU: 'time' (per step), 'layer' (the input
  # projection hoisted) or 'parallel' (needs parallel_form). Measured per cell with
  # ``benchmarks.cells_bench`` (BENCHMARKS.md): the path with the largest training speed-up over 'time'
  # at T = 64, 256, 1024 (geometric mean), if it beat 'time' by 1.1x or more at each; otherwise 'time'.
  cpu_execution: ClassVar[str] = 'time'
  # The short causal convolution (``cells.conv``) that ``DeepRNN(short_conv=...)`` puts in the cell's
  # projection (``stack.mixer.Mixer``): True where the cell's authors put one there
  # (``short_conv='authors'``); the activation after it; whether it has a bias. Any cell with
  # ``project_inputs`` takes one with ``short_conv='on'``.
  authors_conv: ClassVar[bool] = False
  conv_activation: ClassVar[str] = 'identity'
  conv_has_bias: ClassVar[bool] = True

  def setup(self):
    self.input_proj = nn.Dense(
      self.num_gates * self.features,
      kernel_init=per_gate(get_initializer(self.kernel_init), self.num_gates),
      bias_init=self.input_bias_init(),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )

  def input_bias_init(self):
    return get_initializer(self.bias_init)

  def recurrent_dense(self, num_gates: int, use_bias: bool = False) -> nn.Dense:
    """The fused recurrent kernel ``[H, num_gates * H]``, initialized gate by gate."""
    return nn.Dense(
      num_gates * self.features,
      use_bias=use_bias,
      kernel_init=per_gate(get_initializer(self.recurrent_kernel_init), num_gates),
      bias_init=jinit.zeros,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
    )

  def project_inputs(self, x: Array) -> Array:
    """``[..., in] -> [..., num_gates * H]``: everything of the step that ignores the carry."""
    return self.input_proj(x)

  def recur(self, carry: Carry, xp: Array) -> tuple[Carry, Array]:
    raise NotImplementedError

  # -- the short convolution's place (``stack.mixer.Mixer``) ------------------------------------------

  def conv_inputs(self, x: Array) -> Array:
    """``[..., in] -> [..., V]``: what the short convolution reads, in its leading ``conv_features``
    channels (default: the fused input projection, all of it)."""
    return self.project_inputs(x)

  @property
  def conv_features(self) -> int:
    """The channels of ``conv_inputs`` the convolution mixes (the leading ones): its width C."""
    return self.num_gates * self.features

  def conv_init(self, width: int) -> tuple[Any, Any]:
    """The initializers of the convolution's kernel ``[k, C]`` and bias ``[C]``: by default PyTorch's
    ``Conv1d`` (Mamba's and xLSTM's), :math:`U(\\pm 1/\\sqrt{k})` for both."""
    bound = width**-0.5
    uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
    return uniform, uniform

  def from_conv(self, v: Array) -> Array:
    """``conv_inputs`` with its leading channels convolved -> ``project_inputs``'s output, what
    ``recur`` and ``parallel_sequence`` read (default: the same array)."""
    return v

  def __call__(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
    refuse_complex(self, x)
    return self.recur(carry, self.project_inputs(x))

  def parallel_sequence(
    self, carry: Carry, xp: Any, valid: Array | None, resets: Array | None = None, reset_carry: Carry = None
  ) -> tuple[Carry, Array]:
    """The whole sequence at once (cells with ``parallel_form``): the same numbers as scanning ``recur``.

    Args:
      carry: the carry before the first step (any carry, not only zeros).
      xp: ``project_inputs(x)`` of the whole sequence, ``[batch, time, ...]``.
      valid: ``[batch, time]`` bool (right padding) or None; invalid steps leave the state unchanged.
      resets: ``[batch, time]`` bool or None: at a marked step the state before it is ``reset_carry``
        instead of the previous step's (packed sequences; a reset on an invalid step is ignored).
      reset_carry: the carry a reset starts from (batched like ``carry``); None: the cell's
        ``initialize_carry`` (zeros).

    Returns:
      ``(final_carry, y)``: the carry at each sequence's last valid step, outputs ``[batch, time, H]``.
    """
    raise NotImplementedError(f'{type(self).__name__} has no parallel form; run it step by step')

  @nn.nowrap
  def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Carry:
    """Zeros of shape ``input_shape[:-1] + (H,)`` (the batch dimensions of one step's input)."""
    return self.carry_init(rng, tuple(input_shape[:-1]) + (self.features,), self.param_dtype)

  @property
  def num_feature_axes(self) -> int:
    return 1


def refuse_complex(cell: nn.Module, x: Array) -> None:
  """A cell's step refuses complex inputs: the carry is real, so a complex step would lose its imaginary
  part silently (Flax's own cells fail inside nn.RNN's scan with a carry-type mismatch instead). The
  dtype is static: checked once at trace time."""
  if jnp.issubdtype(jnp.result_type(x), jnp.complexfloating):
    raise ValueError(
      f'{type(cell).__name__} expects real inputs, got {jnp.result_type(x)}: pass the real and '
      'imaginary parts as features, e.g. jnp.concatenate([x.real, x.imag], axis=-1)'
    )


def _like(x: Array, ref: Array) -> Array:
  return x.astype(ref.dtype)
