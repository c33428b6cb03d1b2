r"""The temporal mixer: a cell with the optional pieces of today's recurrent blocks around it.

Griffin's recurrent block (De et al. 2024; recurrentgemma's ``RecurrentBlock``), Gated DeltaNet's layer
(flash-linear-attention) and xLSTM's mLSTM block put the same two pieces around their recurrences, and
both apply to any cell:

* a **short causal convolution** of width :math:`k` (``cells.conv``) on the cell's projected inputs,
  where the cell's authors put it (``Cell.conv_inputs``, ``conv_features``, ``from_conv``): on
  ``linear_x`` before RG-LRU's gates, on q, k and v of the DeltaNets, on the q/k path of the mLSTM, and
  on the fused input projection of any other cell;
* an **output gate branch**: :math:`y_t = W_{out}\big(\mathrm{cell}(\dots)_t \odot
  \mathrm{GeLU}(W_y x_t + b_y)\big) + b_{out}` (Griffin's ``linear_y`` and ``linear_out``).

With both, the mixer around ``RGLRUCell`` is recurrentgemma's ``RecurrentBlock`` (tests/oracles).

.. math:: v_t = \mathrm{conv\_inputs}(x_t), \quad
          u_t = \mathrm{act}\Big(b + \sum_{j=0}^{k-1} w_j \odot v_{t-k+1+j}^{[:C]}\Big), \quad
          (c_t, y_t) = \mathrm{recur}\big(c_{t-1}, \mathrm{from\_conv}([u_t; v_t^{[C:]}])\big)

The mixer is itself a cell (``project_inputs`` + ``recur`` + ``parallel_sequence``), so every execution
path of ``DeepRNN`` runs it unchanged and ``nn.RNN(Mixer(...))`` works: ``project_inputs`` is what ignores
the carry (:math:`v` and the gate branch's pre-activation, hoisted out of the time loop on the layer
path), and the convolution's last :math:`k - 1` inputs join the carry.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.conv import causal_conv_sequence, causal_conv_step
from deeprnn_jax.cells.linear import LinearRecurrentCell

Array = jax.Array
Carry = Any

_ACTIVATIONS = {'identity': lambda u: u, 'silu': jax.nn.silu}


class Mixer(nn.RNNCellBase):
  r"""A cell with a short causal convolution and/or an output gate branch (module docstring).

  Attributes:
    cell: the cell (a ``cells.Cell``: the convolution needs its ``project_inputs`` split).
    conv_width: :math:`k` of the short convolution, or None for none.
    output_gate: the GeLU gate branch and output projection around the cell.
  Parameters: ``cell`` (the cell's own), ``conv_kernel`` ``[k, C]`` (slot ``k - 1`` weighs the newest
  input) and ``conv_bias`` ``[C]`` (where the cell's authors have one, ``Cell.conv_has_bias``),
  ``gate_proj`` (``[in, H]``, ``[H]``) and ``out_proj`` (``[H, H]``, ``[H]``) with ``output_gate``.
  Carry: the cell's; with a convolution ``(buffer, cell carry)``, ``buffer`` ``[batch, k - 1, C]`` the
  last :math:`k - 1` convolution inputs, oldest first.
  """

  cell: nn.RNNCellBase
  conv_width: int | None = None
  output_gate: bool = False
  dtype: Any = None
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    if self.conv_width is not None and (not isinstance(self.conv_width, int) or self.conv_width < 1):
      raise ValueError(f'Mixer: conv_width must be a positive integer or None; got {self.conv_width!r}')
    if self.conv_width is not None and not hasattr(self.cell, 'conv_inputs'):
      raise ValueError(
        f'Mixer: {type(self.cell).__name__} has no projected inputs to convolve (cells.Cell.conv_inputs); '
        "use one of deeprnn_jax's cells or short_conv='off'"
      )
    super().__post_init__()

  @property
  def features(self) -> int:
    return self.cell.features

  @property
  def parallel_form(self) -> bool:
    return bool(getattr(self.cell, 'parallel_form', False))

  @property
  def linear_recurrence(self) -> bool:
    """Whether the cell hoists its readout too on the layer path (``LinearRecurrentCell.sequence``)."""
    return isinstance(self.cell, LinearRecurrentCell)

  def setup(self):
    if self.conv_width is not None:
      k, channels = self.conv_width, self.cell.conv_features
      kernel_init, bias_init = self.cell.conv_init(k)
      self.conv_kernel = self.param('conv_kernel', kernel_init, (k, channels), self.param_dtype)
      has_bias = getattr(self.cell, 'conv_has_bias', True)
      self.conv_bias = self.param('conv_bias', bias_init, (channels,), self.param_dtype) if has_bias else None
    if self.output_gate:
      dense = lambda: nn.Dense(self.cell.features, dtype=self.dtype, param_dtype=self.param_dtype)
      self.gate_proj, self.out_proj = dense(), dense()

  # -- the cell protocol ---------------------------------------------------------------------------

  def project_inputs(self, x: Array) -> tuple[Array, Array | None]:
    """``[..., in]`` -> ``(v, g)``: the cell's projection (``conv_inputs`` with a convolution) and the
    gate branch's pre-activation (None without one)."""
    v = self.cell.conv_inputs(x) if self.conv_width is not None else self.cell.project_inputs(x)
    return v, (self.gate_proj(x) if self.output_gate else None)

  def recur(self, carry: Carry, xp: tuple[Array, Array | None]) -> tuple[Carry, Array]:
    v, g = xp
    if self.conv_width is None:
      carry, y = self.cell.recur(carry, v)
      return carry, self._gated(y, g)
    buffer, cell_carry = carry
    buffer, u = causal_conv_step(buffer, v[..., : self.cell.conv_features], self.conv_kernel, self.conv_bias)
    cell_carry, y = self.cell.recur(cell_carry, self._convolved(u, v))
    return (buffer, cell_carry), self._gated(y, g)

  def __call__(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
    return self.recur(carry, self.project_inputs(x))

  def parallel_sequence(self, carry, xp, valid, resets=None, reset_carry=None):
    """The cell's ``parallel_sequence`` after the convolution over the whole sequence."""
    return self._sequence(self.cell.parallel_sequence, carry, xp, valid, resets, reset_carry)

  def sequence(self, carry, xp, valid, *, parallel=False, unroll=1, resets=None, reset_carry=None):
    """``LinearRecurrentCell.sequence`` (the layer path of the linear recurrences) after the convolution."""
    run = lambda c, x, m, r, f: self.cell.sequence(c, x, m, parallel=parallel, unroll=unroll, resets=r, reset_carry=f)
    return self._sequence(run, carry, xp, valid, resets, reset_carry)

  @nn.nowrap
  def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Carry:
    cell_carry = self.cell.initialize_carry(rng, input_shape)
    if self.conv_width is None:
      return cell_carry
    buffer = jnp.zeros(tuple(input_shape[:-1]) + (self.conv_width - 1, self.cell.conv_features), self.param_dtype)
    return buffer, cell_carry

  @property
  def num_feature_axes(self) -> int:
    return 1

  # -- pieces --------------------------------------------------------------------------------------

  def _sequence(self, run, carry, xp, valid, resets, reset_carry):
    v, g = xp
    if self.conv_width is None:
      carry, y = run(carry, v, valid, resets, reset_carry)
      return carry, self._gated(y, g)
    (buffer, cell_carry), (fresh_buffer, fresh_carry) = carry, reset_carry or (None, None)
    c = self.cell.conv_features
    buffer, u = causal_conv_sequence(buffer, v[..., :c], self.conv_kernel, self.conv_bias, valid, resets, fresh_buffer)
    cell_carry, y = run(cell_carry, self._convolved(u, v), valid, resets, fresh_carry)
    return (buffer, cell_carry), self._gated(y, g)

  def _convolved(self, u: Array, v: Array) -> Array:
    """The cell's projected inputs from the convolution's output ``u`` and the rest of ``v``."""
    u = _ACTIVATIONS[self.cell.conv_activation](u).astype(v.dtype)
    c = self.cell.conv_features
    return self.cell.from_conv(u if v.shape[-1] == c else jnp.concatenate([u, v[..., c:]], axis=-1))

  def _gated(self, y: Array, g: Array | None) -> Array:
    if g is None:
      return y
    return self.out_proj(y * jax.nn.gelu(g).astype(y.dtype))
