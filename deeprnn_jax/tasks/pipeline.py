"""Plumbing shared by the dataset tasks: on-device shuffling, fixed splits, padding, length buckets.

A dataset task keeps its training arrays on device and gathers each batch with indices that are a
pure function of ``(key, step)``: epoch ``e = step // steps_per_epoch`` is a fresh permutation of
the examples drawn from ``fold_in(key, e)``, and step ``step`` takes the next ``batch_size`` of it.
No host work per step, and a resumed run sees the batches an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax.tasks.base import Batch

# Fixed seed of every validation carve: the held-out examples must not move with the run's seed,
# or runs of one grid point would be compared on different validation sets.
SPLIT_SEED = 0


# Feistel rounds of ``permuted_positions``; 6 rounds of a full-avalanche round function mix well.
FEISTEL_ROUNDS = 6


def _round_function(half: jax.Array, round_key: jax.Array) -> jax.Array:
  """A keyed uint32 mixer (the murmur3 / lowbias32 finalizer): every output bit depends on every
  input bit."""
  x = half ^ round_key
  x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
  x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def permuted_positions(key: jax.Array, positions: jax.Array, num_examples: int) -> jax.Array:
  r"""``perm[positions]`` for a random permutation ``perm`` of ``range(num_examples)`` drawn from
  ``key``, computed in O(len(positions)) without materializing ``perm``.

  A balanced Feistel network over ``2k`` bits (the smallest even width with
  :math:`2^{2k} \ge` ``num_examples``) is a bijection of :math:`[0, 2^{2k})`: with halves
  :math:`(L, R)`, each round maps :math:`(L, R) \to (R, L \oplus F(R, k_r))`. Cycle walking
  (re-applying it while the value is ``>= num_examples``; each application lands in range with
  probability above 1/4, as the domain is less than 4x too large) restricts it to a bijection of
  ``range(num_examples)``.
  Sorting ``num_examples`` random keys instead costs O(N log N) per batch: 29 ms for N = 55,000
  on a 2-core CPU, more than a small model's whole training step.
  """
  half_bits = max(1, (max(num_examples - 1, 1).bit_length() + 1) // 2)
  mask = jnp.uint32((1 << half_bits) - 1)
  round_keys = jax.random.bits(key, (FEISTEL_ROUNDS,), jnp.uint32)

  def feistel(x):
    left, right = x >> half_bits, x & mask
    for r in range(FEISTEL_ROUNDS):
      left, right = right, left ^ (_round_function(right, round_keys[r]) & mask)
    return (left << half_bits) | right

  n = jnp.uint32(num_examples)
  x = feistel(positions.astype(jnp.uint32))
  x = jax.lax.while_loop(lambda x: jnp.any(x >= n), lambda x: jnp.where(x >= n, feistel(x), x), x)
  return x.astype(jnp.int32)


def epoch_indices(key: jax.Array, step: Any, batch_size: int, num_examples: int) -> jax.Array:
  """``[batch_size]`` example indices for ``step``: each epoch is a permutation from
  ``fold_in(key, epoch)`` read in order (the tail of an epoch that does not fill a batch is dropped;
  a batch larger than the dataset wraps around). O(batch_size) work, whatever the dataset size."""
  steps_per_epoch = max(num_examples // batch_size, 1)
  step = jnp.asarray(step, jnp.int32)
  epoch, pos = step // steps_per_epoch, step % steps_per_epoch
  positions = (pos * batch_size + jnp.arange(batch_size)) % num_examples
  return permuted_positions(jax.random.fold_in(key, epoch), positions, num_examples)


def array_stream(
  arrays: Mapping[str, np.ndarray],
  finish: Callable[[dict[str, jax.Array]], Batch],
  *,
  lengths: np.ndarray | None = None,
  buckets: Sequence[int] = (),
  time_keys: Sequence[str] = (),
) -> tuple[Callable[..., Batch], dict[str, Any], tuple[float, ...]]:
  """A jittable ``train_batch(key, step, batch_size, *, data=None, bucket=None)`` over ``arrays``.

  Args:
    arrays: NumPy arrays with a common leading example axis; moved to device once.
    finish: turns the gathered arrays into a batch inside jit (e.g. uint8 -> float32 scaling).
    lengths: ``[num_examples]`` valid lengths, needed for ``buckets``.
    buckets: ascending padded lengths; bucket ``i`` holds the examples with
      ``buckets[i-1] < length <= buckets[i]``.
    time_keys: keys of ``arrays`` with a time axis (axis 1), cut to the bucket's length.

  Returns:
    ``(train_batch, train_data, bucket_probs)``; ``train_data`` is the device pytree that
    ``train_batch`` reads (pass it as ``data=`` from inside a jitted step to keep it an argument).
  """
  num_examples = len(next(iter(arrays.values())))
  members, probs = [], []
  if buckets:
    which = assign_buckets(np.asarray(lengths), buckets)
    for i in range(len(buckets)):
      idx = np.flatnonzero(which == i).astype(np.int32)
      # An empty bucket still needs an index array; its probability is 0 so it is never chosen.
      members.append(idx if idx.size else np.zeros(1, np.int32))
      probs.append(idx.size / num_examples)
  train_data = {
    'arrays': {k: jnp.asarray(v) for k, v in arrays.items()},
    'buckets': tuple(jnp.asarray(m) for m in members),
  }
  bucket_lens = tuple(int(b) for b in buckets)

  def train_batch(key, step, batch_size, *, data=None, bucket=None):
    data = train_data if data is None else data
    if bucket is None:
      idx = epoch_indices(key, step, batch_size, num_examples)
      return finish({k: v[idx] for k, v in data['arrays'].items()})
    pool = data['buckets'][bucket]
    # Each bucket has its own stream of permutations, indexed by the global step.
    idx = pool[epoch_indices(jax.random.fold_in(key, bucket + 1), step, batch_size, pool.shape[0])]
    width = bucket_lens[bucket]
    return finish({k: (v[idx, :width] if k in time_keys else v[idx]) for k, v in data['arrays'].items()})

  return train_batch, train_data, tuple(probs)


def carve_validation(num_examples: int, num_val: int) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic ``(train_idx, val_idx)`` split of ``range(num_examples)``, sorted, disjoint."""
  if not 0 <= num_val < num_examples:
    raise ValueError(f'num_val={num_val} must be in [0, {num_examples})')
  perm = np.random.default_rng(SPLIT_SEED).permutation(num_examples)
  return np.sort(perm[num_val:]), np.sort(perm[:num_val])


def pad_sequences(seqs: Sequence[np.ndarray], length: int, dtype=np.int32) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads (and truncates) ``seqs`` to ``[len(seqs), length, ...]`` with zeros.

  Returns ``(padded, lengths)`` with ``lengths = min(len(seq), length)`` as int32.
  """
  tail = np.asarray(seqs[0]).shape[1:] if len(seqs) else ()
  out = np.zeros((len(seqs), length) + tuple(tail), dtype)
  lens = np.zeros(len(seqs), np.int32)
  for i, s in enumerate(seqs):
    s = np.asarray(s)[:length]
    out[i, : len(s)] = s
    lens[i] = len(s)
  return out, lens


def default_buckets(max_len: int, smallest: int = 32) -> tuple[int, ...]:
  """Powers of two from ``smallest`` below ``max_len``, then ``max_len``: few shapes to compile."""
  out, b = [], smallest
  while b < max_len:
    out.append(b)
    b *= 2
  return tuple(out) + (max_len,)


def assign_buckets(lengths: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
  """Index of the smallest bucket that holds each length (lengths must be ``<= buckets[-1]``)."""
  return np.searchsorted(np.asarray(buckets), np.asarray(lengths), side='left').astype(np.int32)


def class_batch(inputs: np.ndarray, labels: np.ndarray, lengths: np.ndarray) -> Batch:
  """A fixed NumPy batch for a sequence-classification split."""
  return {
    'inputs': inputs,
    'targets': np.asarray(labels, np.int32),
    'lengths': np.asarray(lengths, np.int32),
  }


def majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray, num_classes: int) -> tuple[int, float]:
  """The most frequent training label and the accuracy of always predicting it on ``test_labels``."""
  majority = int(np.argmax(np.bincount(np.asarray(train_labels), minlength=num_classes)))
  return majority, float(np.mean(np.asarray(test_labels) == majority))


# -- packing: several sequences to a row ----------------------------------------------------------

PACKABLE_KINDS = ('class', 'per_step_class', 'per_step_binary')


def pack_rows(lengths: Sequence[int], row_len: int) -> list[list[int]]:
  """Groups sequences into rows of at most ``row_len`` steps: first-fit decreasing (longest first,
  each into the first row with room), a bin packing within 11/9 of the fewest rows (Johnson 1973).

  Returns the rows as lists of sequence indices, in the order they sit in the row. A sequence longer
  than ``row_len`` gets a row of its own (and is cut to it by ``pack_arrays``).
  """
  rows, room = [], []
  for i in sorted(range(len(lengths)), key=lambda i: -int(lengths[i])):
    n = min(int(lengths[i]), row_len)
    fits = next((r for r, free in enumerate(room) if free >= n), None)
    if fits is None:
      rows.append([i])
      room.append(row_len - n)
    else:
      rows[fits].append(i)
      room[fits] -= n
  return rows


def pack_arrays(
  arrays: Mapping[str, np.ndarray], row_len: int, time_keys: Sequence[str], rows: Sequence[Sequence[int]]
) -> dict[str, np.ndarray]:
  """Packs padded examples (``arrays`` with ``lengths``) into ``rows`` (from ``pack_rows``).

  ``time_keys`` (``[n, time, ...]``) are laid end to end in each row; every other key (a per-sequence
  value, e.g. a class label ``[n]``) becomes ``[rows, S]`` with ``S`` the most sequences in a row. Adds
  ``resets`` ``[rows, row_len]`` (True at each sequence's first step), ``ends`` ``[rows, S]`` (each
  sequence's last step) and ``weight`` ``[rows, S]`` (1 per sequence, 0 in empty slots); ``lengths``
  becomes the packed steps of each row.
  """
  lengths = np.minimum(np.asarray(arrays['lengths']), row_len)
  slots = max(len(r) for r in rows)
  out = {'resets': np.zeros((len(rows), row_len), bool), 'lengths': np.zeros(len(rows), np.int32)}
  out['ends'] = np.zeros((len(rows), slots), np.int32)
  out['weight'] = np.zeros((len(rows), slots), np.float32)
  for key, value in arrays.items():
    if key in time_keys:
      out[key] = np.zeros((len(rows), row_len) + value.shape[2:], value.dtype)
    elif key not in ('lengths', 'weight'):
      out[key] = np.zeros((len(rows), slots) + value.shape[1:], value.dtype)
  for r, members in enumerate(rows):
    start = 0
    for s, i in enumerate(members):
      n = int(lengths[i])
      for key in time_keys:
        out[key][r, start : start + n] = arrays[key][i, :n]
      for key in out:
        if key in arrays and key not in time_keys and key not in ('lengths', 'weight'):
          out[key][r, s] = arrays[key][i]
      out['resets'][r, start] = True
      out['ends'][r, s] = start + max(n, 1) - 1
      out['weight'][r, s] = 1.0 if 'weight' not in arrays else arrays['weight'][i]
      start += n
    out['lengths'][r] = start
  return out


def pack_task(task: Any) -> Any:
  """The task with packed training batches: each row of ``seq_len`` steps holds several training
  sequences end to end (``pack_rows``, fixed once), and the batch carries ``resets`` so the model
  starts every sequence afresh (``DeepRNN(resets=...)``). Evaluation splits stay one sequence a row.

  Loss weights: every valid token (``per_step_*``) or every sequence (``class``: the model reads each
  packed sequence's own last step, ``ends``) weighs 1, as in a padded batch; a packed batch of
  ``batch_size`` rows holds more sequences than ``batch_size``, so the mean is over more of them per
  step (rescale the learning rate or ``batch_size`` to compare with a padded run at equal data). Only
  tasks whose training data is an ``array_stream`` of ``inputs``/``targets``/``lengths`` with output kind
  in ``PACKABLE_KINDS`` pack; CTC and encoder-decoder tasks do not (their losses read whole rows).
  """
  import dataclasses  # pylint: disable=g-import-not-at-top

  arrays = (task.train_data or {}).get('arrays') if isinstance(task.train_data, Mapping) else None
  if task.output_kind not in PACKABLE_KINDS or task.stateful or not arrays or 'lengths' not in arrays:
    raise ValueError(
      f'task {task.name!r} ({task.output_kind}) cannot pack its training sequences: packing needs a '
      f'variable-length task of kind {", ".join(PACKABLE_KINDS)}; drop pack=True'
    )
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  time_keys = tuple(k for k, v in arrays.items() if v.ndim >= 2 and v.shape[1] == task.seq_len and k != 'targets')
  if task.output_kind != 'class':
    time_keys += ('targets',)
  if 'inputs' not in time_keys:
    raise ValueError(
      f'task {task.name!r}: its training inputs are not padded to seq_len={task.seq_len} steps, so they '
      'cannot be packed into rows of seq_len; drop pack=True'
    )
  rows = pack_rows(arrays['lengths'], task.seq_len)
  packed = pack_arrays(arrays, task.seq_len, time_keys, rows)
  if task.output_kind != 'class':  # per-step losses read lengths; per-sequence fields are not needed
    packed = {k: v for k, v in packed.items() if k not in ('ends', 'weight')}
  train_batch, train_data, _ = array_stream(packed, dict)
  sequences, steps = len(arrays['lengths']), int(np.minimum(arrays['lengths'], task.seq_len).sum())
  info = dict(
    task.info,
    packed_rows=len(rows),
    packed_sequences_per_row=sequences / len(rows),
    packed_fill=steps / (len(rows) * task.seq_len),
    padded_fill=steps / (sequences * task.seq_len),
  )
  return dataclasses.replace(
    task, train_batch=train_batch, train_data=train_data, length_buckets=(), bucket_probs=(), info=info
  )
