"""The recall tasks (selective copying, multi-query associative recall) against NumPy readings of
their definitions, their splits, and the answer-only metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeprnn_jax import tasks
from deeprnn_jax.tasks import base, recall


def test_selective_copy_targets_are_the_data_tokens_in_order():
  b = jax.tree.map(np.asarray, recall.selective_copy_batch(jax.random.key(0), 16, 20, num_tokens=4, vocab_size=6))
  assert b['inputs'].shape == b['targets'].shape == b['target_mask'].shape == (16, 24)
  for inputs, targets, mask in zip(b['inputs'], b['targets'], b['target_mask']):
    context, tail = inputs[:20], inputs[20:]
    data = context[context != recall.NOISE]
    assert len(data) == 4 and set(data) <= set(range(1, 7))
    assert (tail == 7).all()  # V + 1: the marker
    np.testing.assert_array_equal(mask, [0] * 20 + [1] * 4)
    np.testing.assert_array_equal(targets[20:], data)  # copied out in order of appearance
  # The positions differ between rows: the spacing is random (what makes the copy selective).
  assert len({tuple(np.flatnonzero(row[:20])) for row in b['inputs']}) > 1


def test_mqar_answers_each_key_with_its_value_once():
  b = jax.tree.map(np.asarray, recall.mqar_batch(jax.random.key(1), 16, 30, num_pairs=5, num_keys=8, num_values=8))
  for inputs, targets, mask in zip(b['inputs'], b['targets'], b['target_mask']):
    keys, values = inputs[:10:2], inputs[1:10:2]
    assert len(set(keys)) == 5 and set(keys) <= set(range(1, 9)) and set(values) <= set(range(9, 17))
    table = dict(zip(keys, values))
    asked = np.flatnonzero(mask)
    assert len(asked) == 5 and asked.min() >= 10
    assert sorted(inputs[asked]) == sorted(keys)  # every key asked exactly once
    for t in asked:
      assert targets[t] == table[inputs[t]]
    rest = np.setdiff1d(np.arange(10, 30), asked)
    assert (inputs[rest] == recall.NOISE).all()


def test_splits_keep_the_tokens_and_stretch_the_gaps():
  copy = tasks.make_task('selective_copy', seq_len=12, num_tokens=3, vocab_size=4, num_eval=4)
  widths = {s: b['inputs'].shape[1] for s, b in copy.eval_splits.items()}
  assert widths == {'val': 15, 'test': 15, 'test_len2x': 27, 'test_len4x': 51}
  assert copy.seq_len == 15 and copy.baseline.value == 0.25
  assert all(b['target_mask'].sum(axis=1).tolist() == [3] * 4 for b in copy.eval_splits.values())
  mqar = tasks.make_task('mqar', seq_len=16, num_pairs=4, num_keys=8, num_values=10, num_eval=4)
  widths = {s: b['inputs'].shape[1] for s, b in mqar.eval_splits.items()}
  assert widths == {'val': 16, 'test': 16, 'test_len2x': 24, 'test_len4x': 40}  # 8 + k * 8
  assert mqar.input_size == mqar.output_size == 19 and mqar.baseline.value == 0.1
  # val and test are different draws.
  assert not np.array_equal(mqar.eval_splits['val']['inputs'], mqar.eval_splits['test']['inputs'])


@pytest.mark.parametrize(
  'options,message',
  [
    (dict(num_pairs=9, num_keys=8), 'num_pairs <= num_keys'),
    (dict(seq_len=20, num_pairs=8), r'seq_len >= 3 \* num_pairs = 24'),
  ],
)
def test_impossible_mqar_settings_fail_in_one_line(options, message):
  with pytest.raises(ValueError, match=message):
    recall.mqar(**options)


def test_only_answer_steps_count_and_exact_match_is_per_sequence():
  targets = np.array([[0, 0, 2, 1], [0, 0, 1, 1]])
  mask = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
  predicted = np.array([[3, 3, 2, 1], [0, 0, 1, 0]])  # row 0 all answers right, row 1 one wrong
  logits = jax.nn.one_hot(predicted, 4) * 5.0
  batch = {'targets': jnp.asarray(targets), 'target_mask': jnp.asarray(mask), 'lengths': jnp.array([4, 4])}
  loss, sums = base.loss_and_metrics('per_step_class', logits, batch)
  means = base.finalize(sums)
  assert means['accuracy'] == pytest.approx(3 / 4)  # 4 answer steps, not 8 steps
  assert means['exact_match'] == pytest.approx(1 / 2)
  log_p = np.log(np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum(-1, keepdims=True))
  ce = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
  assert float(loss) == pytest.approx((ce * mask).sum() / mask.sum(), rel=1e-5)
