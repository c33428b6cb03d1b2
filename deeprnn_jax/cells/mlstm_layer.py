r"""xLSTM's mLSTM layer (Beck et al. 2024; ``xlstm/blocks/mlstm/layer.py``): the mLSTM as its authors
stack it, with its up-projection, short causal convolution, head-wise q/k/v projections, multi-head norm,
learnable skip and SiLU output branch around the matrix memory. What ``mamba`` is to ``s6``, this is
to ``mlstm`` (``cells.xlstm.MLSTMCell``, the cell of the paper's equations).

With :math:`E` the layer's width (``features``) and :math:`D` the inner width (``proj_factor`` :math:`E`,
rounded up to ``inner_multiple``), per step:

.. math::
   [x^m_t; z_t] = W_{up} x_t, \quad
   u_t = \mathrm{SiLU}\Big(b + \sum_{j=0}^{k-1} w_j \odot x^m_{t-k+1+j}\Big), \\
   q_t = Q u_t, \quad k_t = K u_t / \sqrt{d}, \quad v_t = V x^m_t, \quad
   [\tilde\imath_t; \tilde f_t] = W_g [q_t; k_t; v_t] + b_g, \\
   \tilde h_t = \mathrm{mLSTM}(q_t, k_t, v_t, \tilde\imath_t, \tilde f_t), \quad
   y_t = W_{down}\Big(\big((1 + \gamma) \odot \mathrm{GN}(\tilde h_t) + s \odot u_t\big) \odot \mathrm{SiLU}(z_t)\Big)

where :math:`Q, K, V` are block-diagonal with ``qkv_block_size`` square blocks (xlstm's
``LinearHeadwiseExpand``), GN normalizes each of the ``num_heads`` heads of width :math:`d = D / N_h`
(eps 1e-5; xlstm's ``MultiHeadLayerNorm``), and the mLSTM step is the cell's (``cells.xlstm.mlstm_step``,
the authors' ``recurrent_step_stabilized_simple``; ``mlstm_chunked`` for the whole sequence). No
projection has a bias (xlstm's default ``bias=False``); the convolution has one.

Initialization as xlstm's ``mLSTMLayer.reset_parameters``: :math:`W_{up}, Q, K, V \sim \mathcal N(0, 2/(5E))`
(``small_init_init_`` with the embedding width), :math:`W_{down} \sim \mathcal N(0, (2 / (L \sqrt E))^2)`
(``wang_init_``, :math:`L` = ``num_blocks``), the convolution PyTorch's ``Conv1d`` default, :math:`W_g = 0`,
:math:`b_{\tilde\imath} \sim \mathcal N(0, 0.1^2)`, :math:`b_{\tilde f}` linearly spaced from 3 to 6,
:math:`\gamma = 0`, :math:`s = 1`.

Checked against ``xlstm.mLSTMLayer`` with copied weights on every execution path, streaming and
gradients (``tests/oracles/test_mlstm_layer_oracle.py``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.nn import initializers as jinit

from deeprnn_jax.cells.base import refuse_complex
from deeprnn_jax.cells.conv import causal_conv_sequence, causal_conv_step, torch_conv_init
from deeprnn_jax.cells.xlstm import _check_forget_gate, _log_forget, mlstm_chunked, mlstm_step, normalize_heads

Array = jax.Array


def _check_attributes(layer: MLSTMLayer) -> None:
  _check_forget_gate('MLSTMLayer', layer.forget_gate)
  for name in ('features', 'num_heads', 'qkv_block_size', 'conv_width', 'num_blocks'):
    if not isinstance(getattr(layer, name), int) or getattr(layer, name) < 1:
      raise ValueError(f'MLSTMLayer: {name} must be a positive integer; got {getattr(layer, name)!r}')
  if not layer.proj_factor > 0:
    raise ValueError(f'MLSTMLayer: proj_factor must be positive; got {layer.proj_factor!r}')
  if layer.inner_multiple is not None and layer.inner % layer.num_heads:
    raise ValueError(
      f'MLSTMLayer: inner width {layer.inner} is not divisible by num_heads={layer.num_heads}; '
      'choose an inner_multiple that num_heads divides, or leave it None'
    )


class MLSTMLayer(nn.RNNCellBase):
  r"""xLSTM's mLSTM layer as a cell (module docstring): ``MLSTMLayer(features=E)``.

  Attributes:
    features: :math:`E`, the width of the input and the output (the residual stream's).
    num_heads: :math:`N_h` of the matrix memory (xlstm's default 4); must divide the inner width.
    proj_factor: the inner width :math:`D` over :math:`E` (xlstm's 2).
    qkv_block_size: the width of the q/k/v projections' diagonal blocks (xlstm's 4).
    conv_width: :math:`k` of the causal convolution (xlstm's ``conv1d_kernel_size``, 4).
    inner_multiple: :math:`D` is rounded up to a multiple of this. None (the default): the least common
      multiple of ``qkv_block_size`` and ``num_heads``, so small layers stay small; xlstm rounds to 64
      (``round_proj_up_to_multiple_of``) for its GPU kernels, which ``inner_multiple=64`` reproduces.
    num_blocks: :math:`L` in the output projection's init; ``DeepRNN`` sets it to its depth, as xlstm's
      stack does.
    forget_gate, eps, chunk_size: as ``MLSTMCell``'s.
  Parameters: ``proj_up`` (``[E, 2D]``: :math:`x^m` then :math:`z`), ``conv_kernel`` ``[k, D]`` (slot
  ``k - 1`` weighs the newest input), ``conv_bias`` ``[D]``, ``q_proj``/``k_proj``/``v_proj``
  ``[D / b, b, b]`` (block, output, input: xlstm's layout), ``gate_proj`` (``[3D, 2 N_h]``, ``[2 N_h]``;
  order :math:`\tilde\imath, \tilde f`), ``norm_scale`` :math:`\gamma` ``[D]``, ``skip`` :math:`s` ``[D]``,
  ``proj_down`` (``[D, E]``). Carry: ``(buffer, (C, n, m))``, ``buffer`` ``[batch, k - 1, D]`` the last
  :math:`k - 1` convolution inputs, and the memory as ``MLSTMCell``'s with :math:`d = D / N_h`.
  """

  features: int
  num_heads: int = 4
  proj_factor: float = 2.0
  qkv_block_size: int = 4
  conv_width: int = 4
  inner_multiple: int | None = None
  num_blocks: int = 1
  forget_gate: str = 'sigmoid'
  eps: float = 1e-6
  chunk_size: int | None = 64
  dtype: Any = None
  param_dtype: Any = jnp.float32

  parallel_form: ClassVar[bool] = True
  # The convolution inside the layer: DeepRNN(short_conv=...) sets its width as it does Mamba's d_conv.
  own_conv: ClassVar[str] = 'conv_width'
  # The parallel form trained 4.9-10.2x faster on CPU at T = 64-1024 (BENCHMARKS.md, cells_bench).
  cpu_execution: ClassVar[str] = 'parallel'

  def __post_init__(self):
    _check_attributes(self)
    super().__post_init__()

  @property
  def inner(self) -> int:
    """:math:`D`: ``proj_factor * features`` rounded up to ``inner_multiple`` (xlstm's ``_proj_up_dim``)."""
    multiple = self.inner_multiple or math.lcm(self.qkv_block_size, self.num_heads)
    return multiple * math.ceil(self.proj_factor * self.features / multiple)

  def setup(self):
    inner, block, heads = self.inner, self.qkv_block_size, self.num_heads
    small = jinit.normal(math.sqrt(2 / (5 * self.features)))
    dense = lambda width, init: nn.Dense(
      width, use_bias=False, kernel_init=init, dtype=self.dtype, param_dtype=self.param_dtype
    )
    self.proj_up = dense(2 * inner, small)
    self.proj_down = dense(self.features, jinit.normal(2 / self.num_blocks / math.sqrt(self.features)))
    conv_init = torch_conv_init(self.conv_width)
    self.conv_kernel = self.param('conv_kernel', conv_init, (self.conv_width, inner), self.param_dtype)
    self.conv_bias = self.param('conv_bias', conv_init, (inner,), self.param_dtype)
    self.q_proj, self.k_proj, self.v_proj = (
      self.param(name, small, (inner // block, block, block), self.param_dtype)
      for name in ('q_proj', 'k_proj', 'v_proj')
    )

    def gate_bias_init(key, shape, dtype=jnp.float32):
      input_bias = 0.1 * jax.random.normal(key, (heads,), dtype)
      return jnp.concatenate([input_bias, jnp.linspace(3.0, 6.0, heads, dtype=dtype)])

    self.gate_proj = nn.Dense(
      2 * heads, kernel_init=jinit.zeros, bias_init=gate_bias_init, dtype=self.dtype, param_dtype=self.param_dtype
    )
    self.norm_scale = self.param('norm_scale', jinit.zeros, (inner,), self.param_dtype)
    self.skip = self.param('skip', jinit.ones, (inner,), self.param_dtype)

  # -- the cell protocol ---------------------------------------------------------------------------

  def project_inputs(self, x: Array) -> Array:
    """``[..., E] -> [..., 2D]``: :math:`[x^m; z]`, the part of the step that ignores the carry."""
    return self.proj_up(x)

  def recur(self, carry, xp: Array):
    buffer, memory = carry
    x_m, z = jnp.split(xp, 2, axis=-1)
    buffer, u = causal_conv_step(buffer, x_m, self.conv_kernel, self.conv_bias)
    u = jax.nn.silu(u)
    q, k, v, i_pre, log_f = self._memory_inputs(u, x_m)
    memory, h = mlstm_step(memory, q, k, v, i_pre, log_f, self.eps)
    return (buffer, memory), self._readout(h, u, z)

  def __call__(self, carry, x: Array):
    refuse_complex(self, x)
    return self.recur(carry, self.project_inputs(x))

  def parallel_sequence(self, carry, xp, valid=None, resets=None, reset_carry=None):
    """The whole sequence: ``xp`` ``[batch, time, 2D]``, ``valid`` ``[batch, time]`` or None -> ``(final
    carry, y [batch, time, E])``, the numbers of scanning ``recur`` (``Cell.parallel_sequence``)."""
    (buffer, memory), (fresh_buffer, fresh_memory) = carry, reset_carry or (None, None)
    x_m, z = jnp.split(xp, 2, axis=-1)
    buffer, u = causal_conv_sequence(buffer, x_m, self.conv_kernel, self.conv_bias, valid, resets, fresh_buffer)
    u = jax.nn.silu(u)
    q, k, v, i_pre, log_f = self._memory_inputs(u, x_m)
    if valid is not None:  # padding steps: input gate 0, forget gate 1, so the memory stays as it was
      resets = None if resets is None else resets & valid
      i_pre = jnp.where(valid[..., None], i_pre, -jnp.inf)
      log_f = jnp.where(valid[..., None], log_f, 0.0)
    memory, h = mlstm_chunked(memory, q, k, v, i_pre, log_f, self.eps, self.chunk_size, resets, fresh_memory)
    return (buffer, memory), self._readout(h, u, z)

  @nn.nowrap
  def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]):
    lead = tuple(input_shape[:-1])
    heads = self.num_heads
    d = self.inner // heads
    zeros = lambda *shape: jnp.zeros(lead + shape, self.param_dtype)
    return zeros(self.conv_width - 1, self.inner), (zeros(heads, d, d), zeros(heads, d), zeros(heads))

  @property
  def num_feature_axes(self) -> int:
    return 1

  # -- pieces --------------------------------------------------------------------------------------

  def _headwise(self, weight: Array, x: Array) -> Array:
    """xlstm's ``LinearHeadwiseExpand``: ``x`` ``[..., D]`` through the block-diagonal ``weight``."""
    blocks = x.reshape(x.shape[:-1] + (weight.shape[0], weight.shape[2]))
    return jnp.einsum('...hi,hoi->...ho', blocks, weight.astype(x.dtype)).reshape(x.shape)

  def _memory_inputs(self, u: Array, x_m: Array):
    """The mLSTM's q, k (scaled), v ``[..., N_h, d]`` and gate pre-activations ``[..., N_h]``."""
    q, k, v = self._headwise(self.q_proj, u), self._headwise(self.k_proj, u), self._headwise(self.v_proj, x_m)
    gates = self.gate_proj(jnp.concatenate([q, k, v], axis=-1)).astype(self.param_dtype)
    heads = self.num_heads
    split = lambda a: a.astype(self.param_dtype).reshape(a.shape[:-1] + (heads, -1))
    d = self.inner // heads
    i_pre, f_pre = gates[..., :heads], gates[..., heads:]
    return split(q), split(k) / math.sqrt(d), split(v), i_pre, _log_forget(self.forget_gate, f_pre)

  def _readout(self, h: Array, u: Array, z: Array) -> Array:
    scale, skip = (jnp.broadcast_to(p, u.shape) for p in (1.0 + self.norm_scale, self.skip))
    normed = normalize_heads(h, True).reshape(u.shape) * scale
    return self.proj_down((normed + skip * u) * jax.nn.silu(z))
