"""Synthetic tasks: generator statistics, exact layouts, each baseline predictor scoring its number."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeprnn_jax.tasks import base, make_task, synthetic

KEY = jax.random.key(7)
_loss_and_metrics = jax.jit(base.loss_and_metrics, static_argnums=0)


def _metrics(task, outputs, batch):
  """``task.loss_and_metrics`` averaged over ``batch`` (jitted: one compile, not one per op)."""
  return base.finalize(_loss_and_metrics(task.output_kind, jnp.asarray(outputs), batch)[1])


def _pooled(task):
  """'val' and 'test' together: a large sample from the same generator as the train stream (the
  splits are generated anyway, so the statistics cost no extra compile)."""
  return {k: np.concatenate([task.eval_splits['val'][k], task.eval_splits['test'][k]]) for k in task.eval_splits['val']}


# ------------------------------------------------------------------------------------------ adding


@pytest.fixture(scope='module')
def adding_task():
  return make_task('adding', seq_len=10, num_eval=10000)


def test_adding_exactly_two_markers_one_per_half_and_target_is_their_sum(adding_task):
  b = _pooled(adding_task)
  values, markers = b['inputs'][..., 0], b['inputs'][..., 1]
  assert b['inputs'].shape == (20000, 10, 2) and b['targets'].shape == (20000, 1)
  assert set(np.unique(markers)) == {0.0, 1.0}
  np.testing.assert_array_equal(markers[:, :5].sum(1), 1)
  np.testing.assert_array_equal(markers[:, 5:].sum(1), 1)
  np.testing.assert_allclose(b['targets'][:, 0], (values * markers).sum(1), rtol=1e-5)
  assert 0.0 <= values.min() and values.max() < 1.0
  np.testing.assert_array_equal(b['lengths'], 10)


def test_adding_target_has_mean_one_variance_one_sixth_and_constant_one_scores_baseline(adding_task):
  b = _pooled(adding_task)
  t = b['targets'][:, 0]
  # Standard errors: 0.003 for the mean, about 0.0015 for the variance.
  assert abs(t.mean() - 1.0) < 0.015
  assert abs(t.var() - 1 / 6) < 0.008
  assert adding_task.baseline.value == pytest.approx(1 / 6)
  mse = _metrics(adding_task, np.ones_like(b['targets']), b)['loss']
  assert mse == pytest.approx(adding_task.baseline.value, abs=0.008)
  assert adding_task.threshold.reached(0.005) and not adding_task.threshold.reached(mse)


def test_adding_length_generalization_splits(adding_task):
  shapes = {k: v['inputs'].shape for k, v in adding_task.eval_splits.items()}
  assert shapes == {
    'val': (10000, 10, 2),
    'test': (10000, 10, 2),
    'test_len2x': (10000, 20, 2),
    'test_len4x': (10000, 40, 2),
  }
  splits = adding_task.eval_splits
  assert not np.array_equal(splits['val']['inputs'], splits['test']['inputs'])
  m = adding_task.eval_splits['test_len4x']['inputs'][..., 1]
  np.testing.assert_array_equal(m[:, :20].sum(1), 1)
  np.testing.assert_array_equal(m[:, 20:].sum(1), 1)


# -------------------------------------------------------------------------------------------- copy


@pytest.fixture(scope='module')
def copy_task():
  return make_task('copy', seq_len=6, num_eval=256, length_generalization=False)


def test_copy_layout_follows_arjovsky_et_al(copy_task):
  T = 6
  b = copy_task.eval_splits['test']
  x, y = b['inputs'], b['targets']
  assert copy_task.seq_len == T + 20 and x.shape == y.shape == (256, T + 20)
  assert copy_task.input_size == 10 and copy_task.output_size == 9
  symbols = x[:, :10]
  assert symbols.min() == 1 and symbols.max() == 8
  np.testing.assert_array_equal(x[:, 10 : T + 9], 0)  # T - 1 blanks
  np.testing.assert_array_equal(x[:, T + 9], 9)  # the delimiter
  np.testing.assert_array_equal(x[:, T + 10 :], 0)  # 10 blanks while recalling
  np.testing.assert_array_equal(y[:, : T + 10], 0)
  np.testing.assert_array_equal(y[:, T + 10 :], symbols)
  np.testing.assert_array_equal(b['lengths'], T + 20)
  # Symbols are uniform over 1..8 (2560 draws: each count 320 +- 17).
  counts = np.bincount(symbols.ravel(), minlength=9)[1:]
  assert np.all(np.abs(counts - 320) < 90)
  long = jax.tree.map(np.asarray, synthetic.copy_batch(KEY, 2, 4 * T))  # a 4x-length split's rows
  assert long['inputs'].shape == (2, 4 * T + 20)
  np.testing.assert_array_equal(long['inputs'][:, 4 * T + 9], 9)
  np.testing.assert_array_equal(long['targets'][:, 4 * T + 10 :], long['inputs'][:, :10])


def test_copy_memoryless_predictor_scores_the_baseline(copy_task):
  T = 6
  b = copy_task.eval_splits['val']
  # Blank with certainty on the first T + 10 steps, uniform over the 8 symbols on the last 10.
  logits = np.full((256, T + 20, 9), -1e9, np.float32)
  logits[:, : T + 10, 0] = 0.0
  logits[:, T + 10 :, 1:] = 0.0
  loss = _metrics(copy_task, logits, b)['loss']
  assert loss == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-5)
  assert copy_task.baseline.value == pytest.approx(loss, rel=1e-5)
  assert copy_task.threshold.value == pytest.approx(0.05 * loss, rel=1e-5)
  assert set(copy_task.eval_splits) == {'val', 'test'}
  assert copy_task.info['baseline_by_split'] == {'val': copy_task.baseline.value, 'test': copy_task.baseline.value}
  # With length generalization, the 4T split's baseline is the same formula at delay 4T.
  assert synthetic.copy_baseline(4 * T) == pytest.approx(10 * math.log(8) / (4 * T + 20))


# ------------------------------------------------------------------------------------- parentheses


def _reference_counts(tokens, num_types, max_depth):
  """Plain-Python saturating counters, written independently of the JAX scan."""
  out = np.zeros_like(tokens)
  for b, row in enumerate(tokens):
    c = [0] * num_types
    for t, tok in enumerate(row):
      if 1 <= tok <= num_types:
        c[tok - 1] = min(c[tok - 1] + 1, max_depth)
      elif num_types < tok <= 2 * num_types:
        c[tok - 1 - num_types] = max(c[tok - 1 - num_types] - 1, 0)
      out[b, t] = sum(c)
  return out


@pytest.fixture(scope='module')
def parens_task():
  return make_task(
    'parentheses',
    seq_len=16,
    num_types=2,
    max_depth=3,
    num_noise=2,
    noise_prob=0.25,
    num_eval=3000,
    length_generalization=False,
  )


def test_parentheses_targets_are_saturating_per_type_counts(parens_task):
  b = _pooled(parens_task)
  assert b['inputs'].min() >= 1 and b['inputs'].max() <= parens_task.input_size - 1
  np.testing.assert_array_equal(b['targets'][:100], _reference_counts(b['inputs'][:100], 2, 3))
  assert parens_task.output_size == 7
  # Noise tokens (5, 6) appear at about the configured rate.
  assert abs(np.mean(b['inputs'] >= 5) - 0.25) < 0.01


def test_parentheses_input_blind_predictor_scores_the_exact_baseline(parens_task):
  b = _pooled(parens_task)
  marg = synthetic.parentheses_marginals(16, num_types=2, max_depth=3, num_noise=2, noise_prob=0.25)
  np.testing.assert_allclose(marg.sum(-1), 1.0, rtol=1e-12)
  empirical = np.stack([np.bincount(b['targets'][:, t], minlength=7) / 6000 for t in range(16)])
  assert np.abs(empirical - marg).max() < 0.03
  # The baseline predictor knows the step, not the tokens: logits log P_t(c) at every step t.
  logits = np.broadcast_to(np.log(np.maximum(marg, 1e-30)), (6000, 16, 7)).astype(np.float32)
  m = _metrics(parens_task, logits, b)
  assert m['accuracy'] == pytest.approx(parens_task.baseline.value, abs=0.015)
  assert m['loss'] == pytest.approx(parens_task.info['baseline_loss'], abs=0.02)
  assert parens_task.baseline.value == pytest.approx(np.mean(marg.max(-1)))
  longer = synthetic.parentheses_marginals(64, num_types=2, max_depth=3, num_noise=2, noise_prob=0.25)
  assert synthetic.parentheses_baseline(longer)[0] < parens_task.baseline.value  # counts spread out


# ---------------------------------------------------------------------------------------- capacity


def test_capacity_is_a_fixed_memorization_set_and_chance_scores_the_baseline(capacity_task):
  task = capacity_task
  val, test = task.eval_splits['val'], task.eval_splits['test']
  assert val['inputs'].shape == (2000, 4, 3) and np.array_equal(val['targets'], test['targets'])
  again = make_task('capacity', num_examples=2000, seq_len=4, input_size=3, num_classes=4, seed=1)
  np.testing.assert_array_equal(again.eval_splits['val']['inputs'], val['inputs'])
  # Training batches come from the memorized set.
  b = jax.tree.map(np.asarray, jax.jit(task.train_batch, static_argnums=2)(KEY, 5, 8))
  rows = [np.flatnonzero((val['inputs'] == x).all(axis=(1, 2)))[0] for x in b['inputs']]
  np.testing.assert_array_equal(val['targets'][rows], b['targets'])
  # The baseline is chance, 1 / num_classes, and it is what a model without memory scores: the
  # labels are uniform, so the best constant predictor (the majority class) is within sampling
  # error of 1/4. Measured: class frequencies within 1.6 binomial sd of 1/4 (asserted: 4).
  assert task.baseline.value == 1 / 4
  assert make_task('capacity', num_examples=30, num_classes=3, seed=1).baseline.value == 1 / 3
  sd = math.sqrt(0.25 * 0.75 / 2000)
  freq = np.bincount(val['targets'], minlength=4) / 2000
  assert np.all(np.abs(freq - 0.25) < 4 * sd), freq
  eye = np.eye(4, dtype=np.float32)
  best = max(_metrics(task, eye[np.full(2000, c)], val)['accuracy'] for c in range(4))
  assert best == pytest.approx(freq.max()) and best - task.baseline.value < 4 * sd
  assert task.info['label_bits'] == 2000 * math.log2(4)


def test_bits_stored():
  assert synthetic.bits_stored(1.0, 100, 2) == pytest.approx(100.0)
  assert synthetic.bits_stored(0.5, 100, 2) == 0.0
  assert synthetic.bits_stored(0.2, 100, 4) == 0.0
  h = lambda p: -p * math.log2(p) - (1 - p) * math.log2(1 - p)
  assert synthetic.bits_stored(0.9, 100, 2) == pytest.approx(100 * (1 - h(0.1)))
  assert synthetic.bits_stored(1.0, 10, 8) == pytest.approx(30.0)


# --------------------------------------------------------------------------------- stream contract


@pytest.fixture(scope='module')
def capacity_task():
  return make_task('capacity', num_examples=2000, seq_len=4, input_size=3, num_classes=4, seed=1)


@pytest.mark.parametrize('fixture', ['adding_task', 'copy_task', 'parens_task', 'capacity_task'])
def test_train_stream_is_a_pure_jittable_function_of_key_and_step(fixture, request):
  task = request.getfixturevalue(fixture)
  fn = jax.jit(task.train_batch, static_argnums=2)  # the step is traced, as in a train step
  a, again, other = fn(KEY, 11, 8), fn(KEY, 11, 8), fn(KEY, 12, 8)
  for k in a:
    np.testing.assert_array_equal(a[k], again[k])
  assert not np.array_equal(a['inputs'], other['inputs'])
  assert not np.array_equal(a['inputs'], fn(jax.random.key(8), 11, 8)['inputs'])
  assert a['lengths'].dtype == jnp.int32 and a['lengths'].shape == (8,)
  assert a['inputs'].shape[:2] == (8, task.seq_len)


def test_eval_splits_are_fixed_by_seed():
  a = make_task('copy', seq_len=4, num_eval=16, seed=3, length_generalization=False)
  b = make_task('copy', seq_len=4, num_eval=16, seed=3, length_generalization=False)
  c = make_task('copy', seq_len=4, num_eval=16, seed=4, length_generalization=False)
  np.testing.assert_array_equal(a.eval_splits['test']['inputs'], b.eval_splits['test']['inputs'])
  assert not np.array_equal(a.eval_splits['test']['inputs'], c.eval_splits['test']['inputs'])
  assert not np.array_equal(a.eval_splits['val']['inputs'], a.eval_splits['test']['inputs'])
