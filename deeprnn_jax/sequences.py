r"""How a batch lays out its sequences: right padding (``lengths``) and packed rows (``resets``).

A batch is ``[batch, time, ...]``. Row ``b`` holds ``lengths[b]`` valid steps followed by padding
(``valid_mask``), and, when packed, several sequences one after another: ``resets`` ``[batch, time]``
marks the steps where a new one starts (its *segment*). Everything here is plain JAX on index
arithmetic, shared by the cells' parallel forms and by ``DeepRNN``'s execution paths, so that every
path pads, reverses and restarts the same way.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array
Carry = Any


def valid_mask(lengths: Array | None, batch: int, time: int) -> Array:
  """``[batch, time]`` bool: ``t < lengths[b]`` (all True without lengths)."""
  if lengths is None:
    return jnp.ones((batch, time), bool)
  return jnp.arange(time)[None, :] < lengths[:, None]


def zero_invalid(valid: Array | None, y: Array) -> Array:
  """Zeros ``y`` (``[batch, (time,) features]``) where ``valid`` (``[batch, (time)]``) is False."""
  return y if valid is None else jnp.where(valid[..., None], y, jnp.zeros((), y.dtype))


def reverse_padded(x: Array, lengths: Array | None) -> Array:
  """Reverses each sequence of ``x`` (``[batch, time, ...]``) within its own length.

  Padding stays where it is: ``[a, b, c, pad] -> [c, b, a, pad]``, which is what the backward
  direction of a bidirectional layer must read for right-padded batches. It is its own inverse.
  """
  if lengths is None:
    return jnp.flip(x, axis=1)
  time = jnp.arange(x.shape[1])[None, :]
  index = jnp.where(time < lengths[:, None], lengths[:, None] - 1 - time, time)
  index = index.reshape(index.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


def checked_resets(resets: Any, batch: int, time: int, valid: Array | None) -> Array | None:
  """``resets`` as a ``[batch, time]`` bool array (ignored on padding steps), or a one-line error."""
  if resets is None:
    return None
  array = jnp.asarray(resets)
  if array.shape != (batch, time) or not (array.dtype == bool or jnp.issubdtype(array.dtype, jnp.integer)):
    raise ValueError(
      f'DeepRNN expects resets [batch, time] = ({batch}, {time}) bool, got shape {array.shape} '
      f'{array.dtype}: True where a packed sequence starts'
    )
  array = array.astype(bool)
  return array if valid is None else array & valid


def checked_inputs(x: Array, seq_lengths: Any) -> Array | None:
  """Refuses inputs ``DeepRNN`` would misread, in one line that names the fix; returns the lengths
  as an int32 array.

  Shapes and dtypes are static, so this runs once at trace time and costs nothing per step. Without
  it, ``[batch, time]`` token ids initialise a kernel whose input axis is the batch, a list of
  lengths fails deep inside with an unrelated TypeError, and complex inputs are cast to real.
  """
  shape, dtype = jnp.shape(x), jnp.result_type(x)
  if len(shape) != 3:
    if len(shape) == 2 and jnp.issubdtype(dtype, jnp.integer):
      fix = 'token ids need an embedding first (e.g. models.Classifier(vocab_size=...) or nn.Embed)'
    elif len(shape) == 2:
      fix = 'add the missing axis: x[..., None] for one feature per step, x[None] for one sequence'
    else:
      fix = 'reshape to one feature axis after batch and time'
    raise ValueError(f'DeepRNN expects inputs [batch, time, features], got shape {shape}: {fix}')
  if jnp.issubdtype(dtype, jnp.complexfloating):
    # No cell reads complex inputs: the LRU's complex numbers are its parameters and state.
    raise ValueError(
      f'DeepRNN expects real inputs, got {dtype}: pass the real and imaginary parts as '
      'features, e.g. jnp.concatenate([x.real, x.imag], axis=-1)'
    )
  if seq_lengths is None:
    return None
  lengths = jnp.asarray(seq_lengths)
  if not jnp.issubdtype(lengths.dtype, jnp.integer) or lengths.shape != shape[:1]:
    raise ValueError(
      f'DeepRNN expects seq_lengths [batch] = ({shape[0]},) integers, got shape '
      f'{lengths.shape} {lengths.dtype}: one valid-step count per sequence'
    )
  return lengths.astype(jnp.int32)


# -- packed sequences: segments marked by resets --------------------------------------------------
#
# ``resets`` ``[batch, time]`` bool marks the steps where a new sequence starts inside a row (a packed
# batch). The state before such a step is the *reset carry* (the layer's fresh initial carry), not the
# previous step's. Steps before a row's first reset continue from the carry the call was given; they
# form the row's *first segment*.


def segment_start(resets: Array) -> Array:
  """``[..., time]`` int32: the index of the step that began each step's segment (its last reset at or
  before it; 0 in the first segment)."""
  index = jnp.arange(resets.shape[-1], dtype=jnp.int32)
  return jax.lax.cummax(jnp.where(resets, index, 0), axis=resets.ndim - 1)


def first_segment(resets: Array) -> Array:
  """``[..., time]`` bool: True where no reset came at or before the step (the step continues the given
  carry)."""
  return jnp.cumsum(resets.astype(jnp.int32), axis=-1) == 0


def segment_ids(resets: Array) -> Array:
  """``[..., time]`` int32: the number of resets at or before each step; equal ids share a segment."""
  return jnp.cumsum(resets.astype(jnp.int32), axis=-1)


def select_rows(use: Array, fresh: Carry, carry: Carry) -> Carry:
  """Per batch row: ``fresh`` where ``use`` (``[batch]`` bool) else ``carry``, for every carry leaf."""
  return jax.tree.map(lambda f, c: jnp.where(use.reshape(use.shape + (1,) * (c.ndim - 1)), f, c), fresh, carry)


def reverse_segments(x: Array, lengths: Array | None, resets: Array) -> Array:
  """Reverses each packed sequence of ``x`` (``[batch, time, ...]``) within its own segment.

  A segment runs from a reset (or the row's start) to the step before the next reset (or the row's
  last valid step): ``[a, b | c, d, e | pad] -> [b, a | e, d, c | pad]`` for resets at 0 and 2. The
  segments stay where they are, so the reversed row has its resets at the same steps; it is its own
  inverse, and without resets it is ``reverse_padded``.
  """
  batch, time = resets.shape
  steps = jnp.arange(time)[None, :]
  end = jnp.full((batch,), time) if lengths is None else lengths
  # The step after each segment's last: the next reset after the step, or the row's valid end.
  nxt = jnp.where(resets, steps, time)
  nxt = jnp.flip(jax.lax.cummin(jnp.flip(jnp.concatenate([nxt[:, 1:], jnp.full((batch, 1), time)], 1), 1), 1), 1)
  stop = jnp.minimum(nxt, end[:, None])
  index = jnp.where(steps < end[:, None], segment_start(resets) + stop - 1 - steps, steps)
  index = index.reshape(index.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)
