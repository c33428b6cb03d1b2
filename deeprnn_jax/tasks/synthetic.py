"""Synthetic long-range tasks, generated on device from a PRNG key (no files, no host work per step).

Every train batch is a pure function of ``fold_in(key, step)``. The fixed evaluation splits come
from ``seed``: ``'val'`` and ``'test'`` at the training length ``T`` and, where length
generalization makes sense, ``'test_len2x'`` / ``'test_len4x'`` at ``2T`` / ``4T``.

* ``adding``      (Hochreiter & Schmidhuber 1997, in the form of Le et al. 2015)
* ``copy``        (copy memory, Arjovsky et al. 2016)
* ``parentheses`` (bracket counting with saturating counters, after Collins et al. 2017)
* ``capacity``    (memorizing random labels of random inputs, Collins et al. 2017)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax.tasks import pipeline
from deeprnn_jax.tasks.base import Baseline, Batch, Task, Threshold

# Eval keys are folded from ``key(seed)`` with this offset plus the sequence length, far from any
# training step number, so an eval batch never equals a train batch drawn from the same root key.
_EVAL_TAG = 2_000_000_000


def synthetic_task(
  *,
  generate,
  length: int,
  lengths_by_split: dict[str, int],
  seed: int,
  num_eval: int,
  seq_len: int | None = None,
  **fields,
) -> Task:
  """Wraps ``generate(key, batch_size, length) -> batch`` into a Task with fixed eval splits;
  ``seq_len`` (the stored sequence length) defaults to ``length``."""
  gen = jax.jit(generate, static_argnums=(1, 2))

  def train_batch(key, step, batch_size, *, data=None, bucket=None):
    del data  # nothing to gather: synthetic batches are generated
    if bucket is not None:
      raise ValueError('synthetic tasks have no length buckets')
    return generate(jax.random.fold_in(key, step), batch_size, length)

  # Splits of one length are consecutive slices of one generated batch: one compile per length.
  root = jax.random.key(seed)
  eval_splits = {}
  for eval_len in sorted(set(lengths_by_split.values())):
    names = [n for n, l in lengths_by_split.items() if l == eval_len]
    batch = jax.tree.map(
      np.asarray, gen(jax.random.fold_in(root, _EVAL_TAG + eval_len), num_eval * len(names), eval_len)
    )
    for i, name in enumerate(names):
      eval_splits[name] = jax.tree.map(lambda a, i=i: a[i * num_eval : (i + 1) * num_eval], batch)
  seq_len = length if seq_len is None else seq_len
  return Task(seq_len=seq_len, train_batch=train_batch, eval_splits=eval_splits, **fields)


def length_splits(seq_len: int, length_generalization: bool) -> dict[str, int]:
  out = {'val': seq_len, 'test': seq_len}
  if length_generalization:
    out.update(test_len2x=2 * seq_len, test_len4x=4 * seq_len)
  return out


# ----------------------------------------------------------------------------------------- adding


def adding_batch(key: jax.Array, batch_size: int, length: int) -> Batch:
  """One batch of the adding problem.

  ``inputs[b, t] = (v_t, m_t)`` with values ``v_t ~ U(0, 1)`` and markers ``m_t`` in {0, 1}: exactly
  two markers, one uniform in the first half ``[0, T//2)`` and one in the second half
  ``[T//2, T)`` (Le et al. 2015). ``targets[b] = [sum_t v_t m_t]``.
  Shapes: inputs ``[batch, T, 2]`` float32, targets ``[batch, 1]``, lengths ``[batch]``.
  """
  k_val, k_first, k_second = jax.random.split(key, 3)
  values = jax.random.uniform(k_val, (batch_size, length))
  half = length // 2
  first = jax.random.randint(k_first, (batch_size, 1), 0, half)
  second = jax.random.randint(k_second, (batch_size, 1), half, length)
  t = jnp.arange(length)[None, :]
  markers = ((t == first) | (t == second)).astype(jnp.float32)
  return {
    'inputs': jnp.stack([values, markers], axis=-1),
    'targets': jnp.sum(values * markers, axis=-1, keepdims=True),
    'lengths': jnp.full((batch_size,), length, jnp.int32),
  }


def adding(*, seq_len: int = 100, seed: int = 0, num_eval: int = 1000, length_generalization: bool = True) -> Task:
  """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015), see ``adding_batch``.

  The target is the sum of two independent U(0, 1) values: mean 1, variance 2/12 = 1/6. Predicting
  the constant 1 (the best input-blind predictor) therefore scores MSE 1/6: the baseline.
  Threshold: MSE <= 0.01 (the usual "solved" level, e.g. Le et al. 2015 plots).
  """
  if seq_len < 2:
    raise ValueError(f'adding needs seq_len >= 2, got {seq_len}')
  return synthetic_task(
    name='adding',
    generate=adding_batch,
    length=seq_len,
    lengths_by_split=length_splits(seq_len, length_generalization),
    seed=seed,
    num_eval=num_eval,
    input_kind='features',
    input_size=2,
    output_kind='regression',
    output_size=1,
    baseline=Baseline('loss', 1 / 6, 'MSE of predicting the constant 1 (target variance 1/6)'),
    threshold=Threshold('loss', 0.01, 'min'),
    metric_modes={'loss': 'min'},
    info={'target_mean': 1.0, 'target_variance': 1 / 6},
  )


# ------------------------------------------------------------------------------------------- copy

COPY_SYMBOLS = 10  # symbols to remember
COPY_CATEGORIES = 8  # symbol alphabet {1..8}; 0 is the blank
COPY_DELIMITER = 9


def copy_batch(key: jax.Array, batch_size: int, delay: int) -> Batch:
  """One batch of the copy-memory task (Arjovsky et al. 2016) with delay ``T = delay``.

  Inputs, ``T + 20`` tokens: 10 symbols from {1..8}, ``T - 1`` blanks (0), the delimiter (9), then
  10 blanks. Targets: blank (0) for the first ``T + 10`` steps, then the 10 symbols.
  Shapes: inputs and targets ``[batch, T + 20]`` int32, lengths ``[batch]``.
  """
  symbols = jax.random.randint(key, (batch_size, COPY_SYMBOLS), 1, COPY_CATEGORIES + 1)
  zeros = functools.partial(jnp.zeros, dtype=jnp.int32)
  inputs = jnp.concatenate(
    [
      symbols,
      zeros((batch_size, delay - 1)),
      jnp.full((batch_size, 1), COPY_DELIMITER, jnp.int32),
      zeros((batch_size, COPY_SYMBOLS)),
    ],
    axis=1,
  )
  targets = jnp.concatenate([zeros((batch_size, delay + COPY_SYMBOLS)), symbols], axis=1)
  return {'inputs': inputs, 'targets': targets, 'lengths': jnp.full((batch_size,), delay + 2 * COPY_SYMBOLS, jnp.int32)}


def copy_baseline(delay: int) -> float:
  """Cross-entropy per step of the memoryless predictor: blank with certainty on the first
  ``T + 10`` steps (0 nats), uniform over the 8 symbols on the last 10 (ln 8 each)."""
  return COPY_SYMBOLS * math.log(COPY_CATEGORIES) / (delay + 2 * COPY_SYMBOLS)


def copy(*, seq_len: int = 100, seed: int = 0, num_eval: int = 1000, length_generalization: bool = True) -> Task:
  """Copy memory (Arjovsky et al. 2016), see ``copy_batch``; ``seq_len`` is the delay ``T``
  (sequences are ``T + 20`` long; ``Task.seq_len`` is ``T + 20``).

  Vocabulary 10 (0 blank, 1..8 symbols, 9 delimiter); 9 output classes (0 blank, 1..8).
  Baseline: cross-entropy ``10 ln 8 / (T + 20)`` (``copy_baseline``). Threshold: cross-entropy
  <= 5% of the baseline, i.e. about 0.1 nats (90% probability) per recalled symbol.
  The length-generalization splits use delays 2T and 4T; their baselines are in ``info``.
  """
  if seq_len < 1:
    raise ValueError(f'copy needs seq_len (the delay) >= 1, got {seq_len}')
  delays = length_splits(seq_len, length_generalization)
  base = copy_baseline(seq_len)
  return synthetic_task(
    name='copy',
    generate=copy_batch,
    length=seq_len,
    seq_len=seq_len + 2 * COPY_SYMBOLS,
    lengths_by_split=delays,
    seed=seed,
    num_eval=num_eval,
    input_kind='tokens',
    input_size=COPY_DELIMITER + 1,
    output_kind='per_step_class',
    output_size=COPY_CATEGORIES + 1,
    baseline=Baseline(
      'loss', base, 'blank on the first T+10 steps, uniform over the 8 symbols on the last 10: 10 ln 8 / (T + 20)'
    ),
    threshold=Threshold('loss', 0.05 * base, 'min'),
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={'delay': seq_len, 'baseline_by_split': {k: copy_baseline(d) for k, d in delays.items()}},
  )


# ------------------------------------------------------------------------------------ parentheses


def parentheses_batch(
  key: jax.Array, batch_size: int, length: int, *, num_types: int, max_depth: int, num_noise: int, noise_prob: float
) -> Batch:
  """One batch of bracket counting (after Collins et al. 2017's parentheses task).

  Tokens: 0 unused (padding id), ``1..K`` open a bracket of type k, ``K+1..2K`` close type k,
  ``2K+1..2K+N`` noise. Each step is noise with probability ``noise_prob`` (uniform over the N noise
  tokens), else an open or a close (1/2 each) of a uniform type. Per type, a saturating counter
  ``c_k`` in ``[0, D]``: an open adds 1 (ignored at D), a close removes 1 (ignored at 0, an
  unmatched close). Target at step t: ``sum_k c_k`` after reading token t, a class in
  ``[0, K D]``. Since closes only match their own type, the model must keep K counters.
  Shapes: inputs, targets ``[batch, T]`` int32; lengths ``[batch]``.
  """
  k_noise, k_kind, k_type, k_sym = jax.random.split(key, 4)
  shape = (batch_size, length)
  is_noise = jax.random.bernoulli(k_noise, noise_prob, shape)
  is_open = jax.random.bernoulli(k_kind, 0.5, shape)
  kind = jax.random.randint(k_type, shape, 0, num_types)
  noise_tok = 1 + 2 * num_types + jax.random.randint(k_sym, shape, 0, max(num_noise, 1))
  bracket_tok = 1 + kind + jnp.where(is_open, 0, num_types)
  tokens = jnp.where(is_noise & (num_noise > 0), noise_tok, bracket_tok).astype(jnp.int32)
  types = jnp.arange(num_types)[None, :]

  def count(c, tok):  # c: [batch, K], tok: [batch]
    delta = (tok[:, None] == 1 + types).astype(jnp.int32) - (tok[:, None] == 1 + num_types + types).astype(jnp.int32)
    c = jnp.clip(c + delta, 0, max_depth)
    return c, jnp.sum(c, axis=-1)

  _, depth = jax.lax.scan(count, jnp.zeros((batch_size, num_types), jnp.int32), tokens.T)
  return {'inputs': tokens, 'targets': depth.T.astype(jnp.int32), 'lengths': jnp.full((batch_size,), length, jnp.int32)}


def parentheses_marginals(
  length: int, *, num_types: int, max_depth: int, num_noise: int, noise_prob: float
) -> np.ndarray:
  """Exact ``[T, K D + 1]`` distribution of the target at each step (forward Markov chain over the
  ``(D + 1)^K`` counter states)."""
  p_move = (1 - noise_prob) if num_noise > 0 else 1.0
  q = p_move / (2 * num_types)  # probability of each (open|close, type) token
  dist = np.zeros((max_depth + 1,) * num_types)
  dist[(0,) * num_types] = 1.0
  total = sum(np.meshgrid(*[np.arange(max_depth + 1)] * num_types, indexing='ij'))
  out = np.zeros((length, num_types * max_depth + 1))
  for t in range(length):
    new = (1 - p_move) * dist
    for k in range(num_types):
      up = np.moveaxis(dist, k, 0)
      opened = np.zeros_like(up)
      opened[1:] = up[:-1]
      opened[-1] += up[-1]  # open at D is ignored
      closed = np.zeros_like(up)
      closed[:-1] = up[1:]
      closed[0] += up[0]  # unmatched close is ignored
      new = new + q * np.moveaxis(opened, 0, k) + q * np.moveaxis(closed, 0, k)
    dist = new
    out[t] = np.bincount(total.ravel(), weights=dist.ravel(), minlength=out.shape[1])
  return out


def parentheses_baseline(marginals: np.ndarray) -> tuple[float, float]:
  """``(accuracy, cross_entropy)`` of the best input-blind predictor: at step t it predicts the
  target's marginal ``P_t`` (argmax for accuracy), so accuracy ``mean_t max_c P_t(c)`` and
  cross-entropy ``mean_t H(P_t)`` nats."""
  acc = float(np.mean(np.max(marginals, axis=-1)))
  p = np.clip(marginals, 1e-300, 1.0)
  ce = float(np.mean(-np.sum(marginals * np.log(p), axis=-1)))
  return acc, ce


def parentheses(
  *,
  seq_len: int = 100,
  num_types: int = 2,
  max_depth: int = 5,
  num_noise: int = 4,
  noise_prob: float = 0.2,
  seed: int = 0,
  num_eval: int = 1000,
  length_generalization: bool = True,
) -> Task:
  """Bracket counting, see ``parentheses_batch`` for the exact definition.

  Baseline (metric accuracy): the best input-blind predictor, which knows the step index but not
  the tokens and predicts the most likely count at that step; its accuracy
  ``mean_t max_c P_t(c)`` is computed exactly from the Markov chain of the counters
  (``parentheses_marginals``). Threshold: per-step accuracy >= 0.99.
  """
  if num_types < 1 or max_depth < 1 or num_noise < 0 or not 0 <= noise_prob < 1:
    raise ValueError(
      'parentheses needs num_types >= 1, max_depth >= 1, num_noise >= 0 and '
      f'0 <= noise_prob < 1; got {num_types}, {max_depth}, {num_noise}, {noise_prob}'
    )
  opts = dict(num_types=num_types, max_depth=max_depth, num_noise=num_noise, noise_prob=noise_prob)
  lengths = length_splits(seq_len, length_generalization)
  by_split = {k: parentheses_baseline(parentheses_marginals(n, **opts)) for k, n in lengths.items()}
  acc, ce = by_split['test']
  return synthetic_task(
    name='parentheses',
    generate=functools.partial(parentheses_batch, **opts),
    length=seq_len,
    lengths_by_split=lengths,
    seed=seed,
    num_eval=num_eval,
    input_kind='tokens',
    input_size=1 + 2 * num_types + num_noise,
    output_kind='per_step_class',
    output_size=num_types * max_depth + 1,
    baseline=Baseline(
      'accuracy',
      acc,
      'best input-blind predictor: most likely total count at each step under the exact counter Markov chain',
    ),
    threshold=Threshold('accuracy', 0.99, 'max'),
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={
      **opts,
      'baseline_loss': ce,
      'baseline_by_split': {k: a for k, (a, _) in by_split.items()},
      'baseline_loss_by_split': {k: c for k, (_, c) in by_split.items()},
    },
  )


# --------------------------------------------------------------------------------------- capacity


def bits_stored(accuracy: float, num_examples: int, num_classes: int) -> float:
  """Bits of the random labels a classifier with this training accuracy has memorized.

  Each example is a use of a symmetric channel from the true label to the prediction: mutual
  information ``log2 C + a log2 a + (1 - a) log2((1 - a) / (C - 1))`` bits for accuracy ``a``
  (0 at chance ``a <= 1/C``, ``log2 C`` at ``a = 1``), times ``num_examples``. Divide by the
  model's parameter count for bits per parameter (Collins et al. 2017 report ~5).
  """
  a, c = float(accuracy), int(num_classes)
  if a <= 1 / c:
    return 0.0
  info = math.log2(c) + a * math.log2(a)
  if a < 1:
    info += (1 - a) * math.log2((1 - a) / (c - 1))
  return num_examples * info


def capacity(
  *, num_examples: int = 4096, seq_len: int = 8, input_size: int = 16, num_classes: int = 2, seed: int = 0
) -> Task:
  """Memorization capacity (Collins et al. 2017): ``num_examples`` fixed random inputs
  ``x ~ N(0, 1)`` of shape ``[T, input_size]``, each with a uniform random label in
  ``[0, num_classes)``; there is nothing to generalize, only labels to store.

  ``'val'`` and ``'test'`` are the memorized set itself. Baseline: chance accuracy
  ``1 / num_classes`` (0 bits stored). For the report: ``bits_stored(accuracy, num_examples,
  num_classes) / num_params`` is the bits stored per parameter; ``info`` holds the counts.
  Threshold: accuracy >= 0.99 (essentially everything memorized).
  """
  rng = np.random.default_rng(seed)
  inputs = rng.standard_normal((num_examples, seq_len, input_size)).astype(np.float32)
  labels = rng.integers(0, num_classes, num_examples).astype(np.int32)
  lengths = np.full(num_examples, seq_len, np.int32)
  train_batch, train_data, _ = pipeline.array_stream({'inputs': inputs, 'targets': labels, 'lengths': lengths}, dict)
  memorized = pipeline.class_batch(inputs, labels, lengths)
  return Task(
    name='capacity',
    input_kind='features',
    input_size=input_size,
    output_kind='class',
    output_size=num_classes,
    seq_len=seq_len,
    train_batch=train_batch,
    eval_splits={'val': memorized, 'test': memorized},
    baseline=Baseline('accuracy', 1 / num_classes, 'chance: uniform random labels'),
    threshold=Threshold('accuracy', 0.99, 'max'),
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={
      'num_examples': num_examples,
      'num_classes': num_classes,
      'label_bits': num_examples * math.log2(num_classes),
      'bits_stored_fn': 'deeprnn_jax.tasks.synthetic.bits_stored',
    },
    train_data=train_data,
  )
