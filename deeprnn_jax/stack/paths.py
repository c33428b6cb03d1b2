r"""How a sequence is run: the execution paths of a ``DeepRNN``, in one room (as recurrentgemma's
``scan.py``), and the one place ``execution='auto'`` is resolved.

* ``'time'``: the reference. One scan over time; each step runs every layer's per-step ``__call__``
  (``DeepRNN.step``). Bidirectional layers are scanned layer by layer.
* ``'layer'``: layer by layer, each over the whole sequence, with the input projection hoisted out of
  the time loop as one matmul (as cuDNN does); linear-recurrence cells also hoist their readout
  (``LinearRecurrentCell.sequence``).
* ``'parallel'``: the cell's own whole-sequence form (``parallel_sequence``: an associative scan, a
  chunkwise form, masked attention).

All read the same parameters and give the same numbers (tests/test_stack.py). Padding steps keep the
carry and output zeros; ``resets`` restart a layer from its fresh carry (``DeepRNN``'s docstring).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.linear import LinearRecurrentCell
from deeprnn_jax.cells.registry import has_parallel_form, resolve_cell
from deeprnn_jax.sequences import (
  checked_carries,
  checked_step_inputs,
  reverse_padded,
  reverse_segments,
  select_rows,
  zero_invalid,
)
from deeprnn_jax.stack.blocks import Block
from deeprnn_jax.stack.mixer import Mixer

Array = jax.Array
Carry = Any


def resolve_execution(execution: str, cell: str | type) -> str:
  """The path ``execution='auto'`` stands for, given the cell and the backend."""
  if execution != 'auto':
    return execution
  if jax.default_backend() == 'cpu':
    # Measured per cell on XLA:CPU (benchmarks/cells_bench.py, BENCHMARKS.md; Cell.cpu_execution).
    # Hoisting a dense recurrence's input matmul does not pay there (the LSTM trained 0.8-1.2x as fast
    # hoisted), nor does the associative scan's O(T log T) work; hoisting pays where the steps left are
    # elementwise, and the parallel forms of the matrix memories and attention replace steps that each
    # touch a whole matrix state or cache.
    cls = resolve_cell(cell)
    path = getattr(cls, 'cpu_execution', 'time')
    if path not in ('time', 'layer') and not (path == 'parallel' and has_parallel_form(cls)):
      raise ValueError(
        f"{cls.__name__}.cpu_execution={path!r}: use 'time', 'layer' or, for a cell with a parallel form, 'parallel'"
      )
    return path
  # On accelerators the cuDNN recipe: big hoisted matmuls, and the associative scan's log-depth for
  # linear recurrences.
  return 'parallel' if has_parallel_form(cell) else 'layer'


@dataclasses.dataclass(frozen=True)
class Scan:
  """``nn.scan`` over axis 1 of ``xs`` with ``module``'s parameters broadcast to every step."""

  unroll: int = 1
  remat: bool = False

  def __call__(self, body: Callable, module: nn.Module, carry: Carry, xs: Any) -> tuple[Carry, Any]:
    if self.remat:
      body = nn.remat(body)
    lifted = nn.scan(
      body, variable_broadcast='params', split_rngs={'params': False}, in_axes=1, out_axes=1, unroll=self.unroll
    )
    return lifted(module, carry, xs)


def run_cell(cell, x, valid, carry, execution, scan_fn, resets=None, fresh=None) -> tuple[Carry, Array]:
  """One mixer over a whole sequence ``x`` ``[batch, time, in]`` -> ``(final carry, [batch, time, H])``;
  ``fresh`` is the carry the ``resets`` start from."""
  if execution == 'parallel':
    kwargs = {} if resets is None else dict(resets=resets, reset_carry=fresh)
    final, y = cell.parallel_sequence(carry, cell.project_inputs(x), valid, **kwargs)
    return final, zero_invalid(valid, y)
  linear = isinstance(cell, LinearRecurrentCell) or (isinstance(cell, Mixer) and cell.linear_recurrence)
  if execution == 'layer' and linear:
    # Input projection and readout hoisted; only the elementwise recurrence runs over time.
    xp = cell.project_inputs(x)
    final, y = cell.sequence(carry, xp, valid, parallel=False, unroll=scan_fn.unroll, resets=resets, reset_carry=fresh)
    return final, zero_invalid(valid, y)

  hoisted = execution == 'layer' and hasattr(cell, 'project_inputs')
  inputs = cell.project_inputs(x) if hoisted else x

  def body(cell, both, step_inputs):
    carry, fresh = both
    x_t, valid_t, resets_t = step_inputs
    start = carry if resets_t is None else select_rows(resets_t, fresh, carry)
    new_carry, y = cell.recur(start, x_t) if hoisted else cell(start, x_t)
    if valid_t is not None:
      new_carry = select_rows(valid_t, new_carry, carry)
    return (new_carry, fresh), y

  # The fresh carry rides along in the scan's carry (it may be a learned parameter).
  (final, _), y = scan_fn(body, cell, (carry, fresh), (inputs, valid, resets))
  return final, zero_invalid(valid, y)


def run_block(block: Block, x, valid, lengths, carry, execution, scan_fn, resets=None) -> tuple[Carry, Array]:
  """The mixer(s) of one block over a whole sequence: ``block.pre`` of the layer input, the forward
  mixer and, for a bidirectional layer, the backward one over each sequence reversed within its
  segments, merged. Returns the final carry and the mixer output (before ``block.post``)."""
  cell_input = block.pre(x)
  fresh = None if resets is None else block.initial_carry(x.shape[0])
  if block.reverse_cell is None:
    return run_cell(block.cell, cell_input, valid, carry, execution, scan_fn, resets, fresh)
  if resets is None:
    reverse = functools.partial(reverse_padded, lengths=lengths)
  else:
    reverse = functools.partial(reverse_segments, lengths=lengths, resets=resets)
  (forward_carry, backward_carry), (fresh_f, fresh_b) = carry, fresh or (None, None)
  final_f, y_f = run_cell(block.cell, cell_input, valid, forward_carry, execution, scan_fn, resets, fresh_f)
  # Reversed within segments, the segments keep their places: the resets stay where they are.
  final_b, y_b = run_cell(
    block.reverse_cell, reverse(cell_input), valid, backward_carry, execution, scan_fn, resets, fresh_b
  )
  return (final_f, final_b), block.merge_directions(y_f, reverse(y_b))


def layer_major(rnn, x, valid, lengths, carries, masks, execution, scan_fn, resets=None):
  """Block by block, each over the whole sequence: ``(final carries, outputs)`` of ``rnn`` (a ``DeepRNN``)."""
  layer_input, outputs, finals = x, [], []
  for l, block in enumerate(rnn.layer):
    if rnn.connection == 'skip' and l > 0:
      layer_input = jnp.concatenate([x, layer_input], axis=-1)
    final, y = run_block(block, layer_input, valid, lengths, carries[l], execution, scan_fn, resets)
    y = zero_invalid(valid, block.post(y, layer_input, None if masks is None else masks[l]))
    finals.append(final)
    outputs.append(y)
    layer_input = y
  return tuple(finals), zero_invalid(valid, rnn.top(outputs))


def checked_step(rnn, carries, x_t, valid_t=None, masks_t=None, resets_t=None, reset_carries=None):
  """``DeepRNN.step``: its inputs checked (``sequences.checked_step_inputs``, ``checked_carries``), then ``step``."""
  if rnn.bidirectional:
    raise ValueError('DeepRNN.step: a bidirectional layer needs the whole sequence; call the module instead')
  checked_step_inputs(x_t, dict(valid_t=valid_t, resets_t=resets_t))
  fresh = rnn.initialize_carries(x_t.shape[0])
  carries = checked_carries(carries, fresh, owner='DeepRNN.step', name='carries')
  return step(rnn, carries, x_t, valid_t, masks_t, resets_t, fresh if reset_carries is None else reset_carries)


def step(rnn, carries, x_t, valid_t=None, masks_t=None, resets_t=None, reset_carries=None):
  """One time step through every block of ``rnn`` (``DeepRNN.step``, whose docstring says more)."""
  layer_input, outputs, new_carries = x_t, [], []
  for l, block in enumerate(rnn.layer):
    if rnn.connection == 'skip' and l > 0:
      layer_input = jnp.concatenate([x_t, layer_input], axis=-1)
    carry = carries[l] if resets_t is None else select_rows(resets_t, reset_carries[l], carries[l])
    carry, y = block.cell(carry, block.pre(layer_input))
    y = block.post(y, layer_input, None if masks_t is None else masks_t[l])
    if valid_t is not None:
      carry = select_rows(valid_t, carry, carries[l])
      y = zero_invalid(valid_t, y)
    new_carries.append(carry)
    outputs.append(y)
    layer_input = y
  return tuple(new_carries), zero_invalid(valid_t, rnn.top(outputs))


def time_major(rnn, x, valid, carries, masks, resets, scan_fn):
  """One scan over time; each step runs all layers (``step``, what ``rnn.step`` runs once its inputs are checked)."""
  time = x.shape[1]
  # Masks as per-step inputs: tied ones ([batch, 1, H]) are broadcast over time.
  masks = None if masks is None else tuple(jnp.broadcast_to(m, m.shape[:1] + (time,) + m.shape[2:]) for m in masks)
  if resets is None:

    def body(module, carries, inputs):
      x_t, valid_t, masks_t = inputs
      return step(module, carries, x_t, valid_t, masks_t)

    return scan_fn(body, rnn, tuple(carries), (x, valid, masks))

  # The fresh carries ride along in the scan's carry (they may be learned parameters).
  def reset_body(module, both, inputs):
    carries, fresh = both
    x_t, valid_t, masks_t, resets_t = inputs
    carries, y = step(module, carries, x_t, valid_t, masks_t, resets_t, fresh)
    return (carries, fresh), y

  fresh = rnn.initialize_carries(x.shape[0])
  (final, _), y = scan_fn(reset_body, rnn, (tuple(carries), fresh), (x, valid, masks, resets))
  return final, y


def dropout_masks(rnn, batch: int, time: int) -> tuple[Array, ...]:
  """Per layer of ``rnn`` (a ``DeepRNN``), a scaled keep mask ``[batch, time or 1, mask width]``, drawn
  once outside every scan so that all execution paths apply the same masks."""
  keep, steps = 1.0 - rnn.dropout_rate, (time if rnn.dropout_mode == 'step' else 1)
  keys = jax.random.split(rnn.make_rng('dropout'), len(rnn.layer))
  return tuple(
    jax.random.bernoulli(key, keep, (batch, steps, block.mask_features)).astype(jnp.float32) / keep
    for block, key in zip(rnn.layer, keys)
  )
