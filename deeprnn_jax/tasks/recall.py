"""Recall tasks that separate today's recurrent models, generated on device (see ``synthetic.py``).

* ``selective_copy`` (Gu & Dao 2023, "Mamba", section 4.1.1): data tokens scattered at random
  positions among noise must be copied out in order. A model with a fixed, input-independent
  recurrence (an LTI SSM, a convolution) cannot tell data from noise; a selective (gated) one can.
* ``mqar``, multi-query associative recall (Arora et al. 2024, "Zoology"): key-value pairs, then the
  keys again, in random order and at random places among noise; at each key the model outputs its
  value. The gap between attention and fixed-size recurrent states on real language models tracks
  this task.

Both are per-step classification with a ``target_mask`` (only the answer steps count) and report
per-answer ``accuracy`` and per-sequence ``exact_match``. ``'val'`` and ``'test'`` are at the training
length; with ``length_generalization`` ``'test_len2x'`` / ``'test_len4x'`` have 2x / 4x as much
noise between the same number of tokens to recall (the training length never saw those gaps).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from deeprnn_jax.tasks.base import Baseline, Batch, Task, Threshold
from deeprnn_jax.tasks.synthetic import length_splits, synthetic_task

NOISE = 0  # the filler token of both tasks


def _random_positions(key: jax.Array, batch_size: int, length: int, count: int) -> jax.Array:
  """``[batch, count]`` distinct positions in ``[0, length)`` per row, ascending."""
  return jnp.sort(jnp.argsort(jax.random.uniform(key, (batch_size, length)), axis=1)[:, :count], axis=1)


def _place(values: jax.Array, positions: jax.Array, length: int) -> jax.Array:
  """``[batch, length]`` zeros with ``values[b, i]`` at ``positions[b, i]``."""
  rows = jnp.arange(values.shape[0])[:, None]
  return jnp.zeros((values.shape[0], length), values.dtype).at[rows, positions].set(values)


# ------------------------------------------------------------------------------- selective copy


def selective_copy_batch(key: jax.Array, batch_size: int, length: int, *, num_tokens: int, vocab_size: int) -> Batch:
  """One batch of selective copying with a context of ``length`` steps.

  Token ids: ``0`` noise, ``1..V`` data (``V = vocab_size``), ``V + 1`` the "copy now" marker.
  Inputs: the context (``num_tokens`` data tokens drawn uniformly at random, at distinct random
  positions, noise elsewhere), then ``num_tokens`` markers. Targets: the data tokens in the order
  they appeared, at the marker steps; ``target_mask`` is 1 there and 0 elsewhere.
  Shapes: inputs, targets, target_mask ``[batch, length + num_tokens]``; lengths ``[batch]``.
  """
  k_tokens, k_positions = jax.random.split(key)
  tokens = jax.random.randint(k_tokens, (batch_size, num_tokens), 1, vocab_size + 1)
  context = _place(tokens, _random_positions(k_positions, batch_size, length, num_tokens), length)
  markers = jnp.full((batch_size, num_tokens), vocab_size + 1, jnp.int32)
  answer = jnp.concatenate([jnp.zeros((batch_size, length), jnp.int32), jnp.ones_like(markers)], axis=1)
  return {
    'inputs': jnp.concatenate([context, markers], axis=1),
    'targets': jnp.concatenate([jnp.zeros((batch_size, length), jnp.int32), tokens], axis=1),
    'target_mask': answer,
    'lengths': jnp.full((batch_size,), length + num_tokens, jnp.int32),
  }


def selective_copy(
  *,
  seq_len: int = 64,
  num_tokens: int = 8,
  vocab_size: int = 8,
  seed: int = 0,
  num_eval: int = 512,
  length_generalization: bool = True,
) -> Task:
  """Selective copying (Gu & Dao 2023), see ``selective_copy_batch``; ``seq_len`` is the context length.

  The paper's setting is a context of 4096 with 16 tokens from a vocabulary of 16; the defaults here
  are small enough for a CPU sweep. Baseline: accuracy ``1 / vocab_size``, what an input-blind
  predictor scores on uniformly drawn tokens. Threshold: accuracy >= 0.99.
  """
  if num_tokens < 1 or vocab_size < 2:
    raise ValueError(f'selective_copy needs num_tokens >= 1 and vocab_size >= 2, got {num_tokens}, {vocab_size}')
  if seq_len < num_tokens:
    raise ValueError(f'selective_copy needs seq_len >= num_tokens ({num_tokens}) to place them, got {seq_len}')
  generate = functools.partial(selective_copy_batch, num_tokens=num_tokens, vocab_size=vocab_size)
  return synthetic_task(
    name='selective_copy',
    generate=generate,
    length=seq_len,
    seq_len=seq_len + num_tokens,
    lengths_by_split=length_splits(seq_len, length_generalization),
    seed=seed,
    num_eval=num_eval,
    input_kind='tokens',
    input_size=vocab_size + 2,
    output_kind='per_step_class',
    output_size=vocab_size + 1,
    baseline=Baseline('accuracy', 1 / vocab_size, 'chance: an input-blind guess of a uniform token'),
    threshold=Threshold('accuracy', 0.99, 'max'),
    metric_modes={'loss': 'min', 'accuracy': 'max', 'exact_match': 'max'},
    info={'num_tokens': num_tokens, 'vocab_size': vocab_size},
  )


# ------------------------------------------------------------------------------------------- mqar


def mqar_batch(
  key: jax.Array, batch_size: int, length: int, *, num_pairs: int, num_keys: int, num_values: int
) -> Batch:
  """One batch of multi-query associative recall, ``length`` steps in all.

  Token ids: ``0`` noise, keys ``1..K``, values ``K+1..K+V``. Inputs: ``num_pairs`` pairs
  ``k_1 v_1 ... k_n v_n`` (distinct keys, values drawn with replacement), then ``length - 2n`` steps
  where every key appears once more, in random order at distinct random positions, noise elsewhere.
  Targets: at each repeated key, its value (``target_mask`` 1 there, 0 elsewhere).
  Shapes: inputs, targets, target_mask ``[batch, length]``; lengths ``[batch]``.
  """
  k_keys, k_values, k_order, k_positions = jax.random.split(key, 4)
  keys = jnp.argsort(jax.random.uniform(k_keys, (batch_size, num_keys)), axis=1)[:, :num_pairs] + 1
  values = jax.random.randint(k_values, (batch_size, num_pairs), num_keys + 1, num_keys + num_values + 1)
  context = jnp.stack([keys, values], axis=-1).reshape(batch_size, 2 * num_pairs).astype(jnp.int32)
  order = jnp.argsort(jax.random.uniform(k_order, (batch_size, num_pairs)), axis=1)
  query_len = length - 2 * num_pairs
  positions = _random_positions(k_positions, batch_size, query_len, num_pairs)
  queries = _place(jnp.take_along_axis(keys, order, axis=1).astype(jnp.int32), positions, query_len)
  answers = _place(jnp.take_along_axis(values, order, axis=1).astype(jnp.int32), positions, query_len)
  is_answer = _place(jnp.ones((batch_size, num_pairs), jnp.int32), positions, query_len)
  before = jnp.zeros((batch_size, 2 * num_pairs), jnp.int32)
  return {
    'inputs': jnp.concatenate([context, queries], axis=1),
    'targets': jnp.concatenate([before, answers], axis=1),
    'target_mask': jnp.concatenate([before, is_answer], axis=1),
    'lengths': jnp.full((batch_size,), length, jnp.int32),
  }


def mqar(
  *,
  seq_len: int = 64,
  num_pairs: int = 8,
  num_keys: int = 32,
  num_values: int = 32,
  seed: int = 0,
  num_eval: int = 512,
  length_generalization: bool = True,
) -> Task:
  """Multi-query associative recall (Arora et al. 2024), see ``mqar_batch``.

  Zoology's sweeps use a vocabulary of 8192 and 4 to 64 pairs in 64 to 512 steps; these defaults
  are small enough for a CPU sweep. Baseline: accuracy ``1 / num_values`` (values are uniform and
  independent of the keys, so an input-blind guess scores that). Threshold: accuracy >= 0.99.
  """
  if not 1 <= num_pairs <= num_keys:
    raise ValueError(f'mqar needs 1 <= num_pairs <= num_keys (distinct keys), got {num_pairs} pairs, {num_keys} keys')
  if seq_len < 3 * num_pairs:
    raise ValueError(
      f'mqar needs seq_len >= 3 * num_pairs = {3 * num_pairs} (pairs, then every key again), got {seq_len}'
    )
  generate = functools.partial(mqar_batch, num_pairs=num_pairs, num_keys=num_keys, num_values=num_values)
  lengths = {
    split: n if n == seq_len else 2 * num_pairs + (n // seq_len) * (seq_len - 2 * num_pairs)
    for split, n in length_splits(seq_len, length_generalization).items()
  }
  vocab = 1 + num_keys + num_values
  return synthetic_task(
    name='mqar',
    generate=generate,
    length=seq_len,
    lengths_by_split=lengths,
    seed=seed,
    num_eval=num_eval,
    input_kind='tokens',
    input_size=vocab,
    output_kind='per_step_class',
    output_size=vocab,
    baseline=Baseline('accuracy', 1 / num_values, 'chance: an input-blind guess of a uniform value'),
    threshold=Threshold('accuracy', 0.99, 'max'),
    metric_modes={'loss': 'min', 'accuracy': 'max', 'exact_match': 'max'},
    info={'num_pairs': num_pairs, 'num_keys': num_keys, 'num_values': num_values},
  )
