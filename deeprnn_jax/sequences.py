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
import numpy as np
from jax.experimental import checkify

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


def checked_inputs(
  x: Array, seq_lengths: Any, *, owner: str = 'DeepRNN', name: str = 'seq_lengths', check: bool = False
) -> Array | None:
  """Refuses inputs ``DeepRNN`` would misread, in one line that names the fix; returns the lengths
  as an int32 array (``checked_lengths``).

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
    raise ValueError(f'{owner} expects inputs [batch, time, features], got shape {shape}: {fix}')
  _check_real(owner, 'inputs', dtype)
  return checked_lengths(seq_lengths, shape[0], shape[1], owner=owner, name=name, check=check)


def _check_real(owner: str, name: str, dtype) -> None:
  if jnp.issubdtype(dtype, jnp.complexfloating):
    # No cell reads complex inputs: the LRU's complex numbers are its parameters and state.
    raise ValueError(
      f'{owner} expects real {name}, got {dtype}: pass the real and imaginary parts as '
      'features, e.g. jnp.concatenate([x.real, x.imag], axis=-1)'
    )
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
      f'{owner} expects floating-point {name}, got {dtype}: cast them (x.astype(jnp.float32)); token ids '
      'need an embedding first (e.g. models.Classifier(vocab_size=...) or nn.Embed)'
    )


def checked_lengths(
  lengths: Any, batch: int, time: int, *, owner: str = 'DeepRNN', name: str = 'seq_lengths', check: bool = False
) -> Array | None:
  r"""``lengths`` (``[batch]`` integers, an array, list or tuple) as int32 in :math:`[0, T]`, or a
  one-line error naming ``name`` and the fix.

  Concrete lengths (NumPy, lists, JAX arrays outside ``jit``) are checked here: a length above
  ``time`` (T, the padded length) or below 0 is a ``ValueError``. Traced lengths (inside ``jit``,
  e.g. the trainer's steps) are data, unknown at trace time: they are clamped to :math:`[0, T]`, so
  every execution path reads a length above T as T and a negative one as 0 (without the clamp, the
  backward direction of a bidirectional layer would read outside the sequence). With ``check``
  (``DeepRNN(check_lengths=True)``) they are also checked by ``jax.experimental.checkify``::

      model = dr.DeepRNN(..., check_lengths=True)
      err, (carries, y) = jax.jit(checkify.checkify(model.apply))(params, x, lengths)
      err.throw()  # names seq_lengths, T and the lengths given

  (without ``checkify.checkify`` around the call the check does nothing). Cost, measured side by side
  in one process (jitted forward of a 2-layer LSTM, width 32, batch 16, T = 64, 1.4 ms a call; 2-core
  x86-64 CPU shared with other jobs, 31 shuffled rounds of 100 calls, median ratio to the same forward
  without clamp or check): the clamp 1.04-1.09x, within the noise (the unclamped program jitted twice:
  1.07x; the compiled program gains one ``clip`` of ``[batch]`` integers); ``check=True`` without
  ``checkify`` 1.37-1.42x, all of it dispatch (a check is a JAX effect, which takes jit's Python dispatch
  path: 70-80 us more a call whatever the model's size, while the compiled program is unchanged), hence
  opt-in; the checkified call 1.11x.
  """
  if lengths is None:
    return None
  array = jnp.asarray(lengths)
  if not jnp.issubdtype(array.dtype, jnp.integer) or array.shape != (batch,):
    raise ValueError(
      f'{owner} expects {name} [batch] = ({batch},) integers, got shape '
      f'{array.shape} {array.dtype}: one valid-step count per sequence'
    )
  try:
    values = np.asarray(array)
  except jax.errors.TracerArrayConversionError:  # traced: lengths are data (docstring)
    if check:
      inside = jnp.all((array >= 0) & (array <= time))
      message = f'{owner}: {name} must be in [0, T] = [0, {time}] (T = the padded length); got {{lengths}}'
      checkify.debug_check(inside, message, lengths=array)
    return jnp.clip(array, 0, time).astype(jnp.int32)
  bad = np.flatnonzero((values < 0) | (values > time))
  if bad.size:
    row, value = int(bad[0]), int(values[bad[0]])
    what = 'is negative' if value < 0 else f'is longer than the sequences, T = {time} steps (x.shape[1])'
    raise ValueError(
      f'{owner}: {name}[{row}] = {value} {what}: each length counts the valid steps of its row, '
      f'from 0 to T = {time}; pad the inputs to the longest sequence or fix the lengths'
    )
  return array.astype(jnp.int32)


def checked_carries(given: Any, template: Any, *, owner: str = 'DeepRNN', name: str = 'initial_carries') -> Any:
  """``given`` (a sequence: as a tuple) if its tree structure and leaf shapes are ``template``'s
  (``initialize_carries``), ``template`` if ``given`` is None, else a one-line error naming the first
  difference and the fix. Static: checked at trace time."""
  if given is None:
    return template
  given = tuple(given) if isinstance(given, (list, tuple)) else given
  fix = f"start from model.apply(params, {_batch(template)}, method='initialize_carries') or a call's final carries"
  if jax.tree.structure(given) != jax.tree.structure(template):
    got = len(given) if isinstance(given, (tuple, list)) else type(given).__name__
    raise ValueError(
      f'{owner} expects {name} with the structure of initialize_carries ({len(template)} layers: '
      f'{_brief(jax.tree.structure(template))}), got {got} entries ({_brief(jax.tree.structure(given))}): {fix}'
    )
  for (path, g), t in zip(jax.tree_util.tree_flatten_with_path(given)[0], jax.tree.leaves(template)):
    if jnp.shape(g) != jnp.shape(t):
      raise ValueError(
        f'{owner} expects {name}{jax.tree_util.keystr(path)} of shape {jnp.shape(t)}, got {jnp.shape(g)}: {fix}'
      )
  return given


def checked_step_inputs(x_t: Array, flags: dict[str, Any], *, owner: str = 'DeepRNN.step') -> None:
  """One time step's inputs: ``x_t`` ``[batch, features]`` real and each of ``flags`` (``valid_t``,
  ``resets_t``: None or ``[batch]``), or a one-line error naming the argument."""
  shape = jnp.shape(x_t)
  if len(shape) != 2:
    raise ValueError(
      f'{owner} expects x_t [batch, features] (one time step), got shape {shape}: '
      'call the module itself for a whole sequence [batch, time, features]'
    )
  _check_real(owner, 'x_t', jnp.result_type(x_t))
  for name, flag in flags.items():
    if flag is not None and jnp.shape(flag) != shape[:1]:
      raise ValueError(f'{owner} expects {name} [batch] = ({shape[0]},), got shape {jnp.shape(flag)}: one per row')


def _batch(template: Any) -> int | str:
  leaves = jax.tree.leaves(template)
  return jnp.shape(leaves[0])[0] if leaves and jnp.ndim(leaves[0]) else 'batch'


def _brief(treedef) -> str:
  text = str(treedef)
  return text if len(text) <= 120 else text[:117] + '...'


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
