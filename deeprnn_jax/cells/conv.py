r"""The short causal depthwise convolution of Mamba, Griffin, Gated DeltaNet and xLSTM's mLSTM block.

Each channel :math:`c` of :math:`x_t` is mixed with its own last :math:`k` values,

.. math:: u_{t,c} = b_c + \sum_{j=0}^{k-1} w_{j,c}\, x_{t-k+1+j,\,c},

so slot :math:`j = k - 1` of the kernel ``w`` ``[k, C]`` weighs the newest input and slot 0 the oldest
(Mamba's ``conv1d`` weight ``[C, 1, k]`` transposed; recurrentgemma's ``Conv1D.w`` as it is).
The last :math:`k - 1` inputs are the convolution's state, a ``buffer`` ``[batch, k - 1, C]`` (oldest
first) that a cell keeps in its carry, so streaming, padding and packed sequences behave as for any
other recurrence: the buffer after a sequence holds its last :math:`k - 1` valid inputs, and a reset
starts a segment from a fresh buffer (zeros, or the reset carry's), never from the previous segment.

``causal_conv_step`` is one step (the reference); ``causal_conv_sequence`` a whole sequence at once
(``k`` shifted adds), which every faster execution path uses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from deeprnn_jax.sequences import first_segment, segment_start

Array = jax.Array


def causal_conv_step(buffer: Array, x_t: Array, kernel: Array, bias: Array | None) -> tuple[Array, Array]:
  """One step: ``buffer`` ``[batch, k - 1, C]``, ``x_t`` ``[batch, C]`` -> ``(buffer, u_t [batch, C])``."""
  window = jnp.concatenate([buffer, x_t[..., None, :].astype(buffer.dtype)], axis=-2)
  u = jnp.sum(window * jnp.broadcast_to(kernel, window.shape), axis=-2)
  if bias is not None:
    u = u + jnp.broadcast_to(bias, u.shape)
  return window[..., 1:, :], u


def causal_conv_sequence(
  buffer: Array,
  x: Array,
  kernel: Array,
  bias: Array | None,
  valid: Array | None = None,
  resets: Array | None = None,
  reset_buffer: Array | None = None,
) -> tuple[Array, Array]:
  """A whole sequence: ``x`` ``[batch, time, C]`` (valid steps first where ``valid`` ``[batch, time]``
  is given) -> ``(buffer after each sequence's last valid step, u [batch, time, C])``.

  ``resets`` ``[batch, time]`` bool: a segment begun at step ``s`` reads ``reset_buffer`` (zeros if
  None) in place of the inputs before ``s``. ``u`` at invalid steps is whatever the window holds; the
  caller zeroes or ignores it.
  """
  time, k = x.shape[1], kernel.shape[0]
  full = jnp.concatenate([buffer, x.astype(buffer.dtype)], axis=1)  # [batch, k - 1 + time, C]
  # Window slot j of step t holds the input of step p = t - (k - 1) + j.
  window = [full[:, j : j + time] for j in range(k)]
  lengths = jnp.full(x.shape[:1], time) if valid is None else jnp.sum(valid, axis=1)
  if resets is not None and k > 1:
    # In a segment begun by a reset at step s, slots with p < s read the reset buffer, whose entry
    # t - s + j is the input "k - 1 - (t - s + j) steps before s".
    if valid is not None:
      resets = resets & valid
    fresh = jnp.zeros_like(buffer) if reset_buffer is None else reset_buffer
    since = jnp.arange(time)[None, :] - segment_start(resets)  # t - s
    restarted = ~first_segment(resets)
    for j in range(k):
      before = restarted & (since + j < k - 1)
      held = jnp.take_along_axis(fresh, jnp.clip(since + j, 0, k - 2)[..., None], axis=1)
      window[j] = jnp.where(before[..., None], held, window[j])
  u = sum(window[j] * jnp.broadcast_to(kernel[j], window[j].shape) for j in range(k))
  if bias is not None:
    u = u + jnp.broadcast_to(bias, u.shape)
  if k == 1:
    return buffer, u
  if resets is None:
    # Right padding: sequence b's last k - 1 valid inputs are full[b, n_b : n_b + k - 1].
    index = lengths[:, None] + jnp.arange(k - 1)[None, :]
    return jnp.take_along_axis(full, index[..., None], axis=1), u
  # The buffer after the last valid step is that step's window less its oldest slot.
  last = jnp.maximum(lengths - 1, 0)[:, None, None]
  tail = jnp.stack([jnp.take_along_axis(w, last, axis=1)[:, 0] for w in window[1:]], axis=1)
  return jnp.where((lengths > 0)[:, None, None], tail, buffer), u


def torch_conv_init(width: int):
  """PyTorch's ``Conv1d`` default for a depthwise kernel (what Mamba and xLSTM use):
  :math:`U(\\pm 1/\\sqrt{k})`, the fan-in of one channel being the kernel width."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -(width**-0.5), width**-0.5)

  return init
