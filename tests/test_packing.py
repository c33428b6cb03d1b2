"""Packed sequences (``DeepRNN(..., resets=...)``): a packed row equals each of its sequences run alone,
for every registered cell and every execution path it has, and no gradient crosses a reset; the task
side packs rows (``tasks.pipeline``) and a classifier reads each packed sequence at its own last step.

One compiled call per cell (all its paths) checks both: the batch holds two packed rows and, below them, the
same sequences one per row (right-padded), so a row of the packed half is compared with rows of the
alone half of the same output.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deeprnn_jax as dr
from deeprnn_jax import tasks
from deeprnn_jax.cells import has_parallel_form
from deeprnn_jax.tasks import pipeline
from deeprnn_jax.training import steps as train_lib
from deeprnn_jax.sequences import reverse_segments

TIME, IN, HIDDEN = 11, 3, 4
# Row 0 packs sequences of 4, 3 and 4 steps; row 1 sequences of 5 and 3, then 3 steps of padding.
SEGMENTS = ((4, 3, 4), (5, 3))
CELL_KWARGS = {
  # Chunks of 4 so that resets fall inside chunks and at their borders; a small cache for attention.
  'attention': dict(max_length=TIME),
  'deltanet': dict(chunk_size=4),
  'gated_deltanet': dict(chunk_size=4),
  'linear_attention': dict(chunk_size=4),
  'mlstm': dict(chunk_size=4),
}


def batch():
  """``x [7, TIME, IN]``, lengths and resets: two packed rows, then their five sequences alone, and
  ``where``: for each sequence, ``(packed row, start, alone row, length)``."""
  x = np.array(jax.random.normal(jax.random.key(1), (7, TIME, IN)))
  resets, where = np.zeros((7, TIME), bool), []
  alone = 2
  for row, lens in enumerate(SEGMENTS):
    start = 0
    for n in lens:
      resets[row, start] = True
      x[alone, :n] = x[row, start : start + n]
      x[alone, n:] = 0.0
      where.append((row, start, alone, n))
      start, alone = start + n, alone + 1
  row_lengths = [sum(lens) for lens in SEGMENTS] + [w[3] for w in where]
  return jnp.asarray(x), jnp.asarray(row_lengths, jnp.int32), jnp.asarray(resets), where


def model(cell, execution, bidirectional=False):
  return dr.DeepRNN(
    cell=cell,
    features=HIDDEN,
    num_layers=2,
    cell_kwargs=CELL_KWARGS.get(cell),
    execution=execution,
    bidirectional=bidirectional,
    initial_carry='zeros' if cell == 'attention' else 'learned',
  )


def random_params(net, x):
  """Parameters with every leaf random, the learned initial carries included (they start at zero, and
  a reset must start from them, not from zeros)."""
  params = net.init(jax.random.key(0), x[:1, :2])
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  noisy = [leaf + 0.3 * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
  return jax.tree.unflatten(tree, noisy)


@functools.cache
def compiled_paths(cell, bidirectional=False):
  """Per execution path of ``cell``: ``(final carries, outputs, input gradient of one packed sequence's
  outputs or None)``, every path in one jit (one compile per cell, not per path); the gradient on the
  paths of ``GRAD_CASES`` (and on all of them with ``bidirectional``)."""
  nets = {e: model(cell, e, bidirectional) for e in executions(cell)}
  x, lengths, resets, where = batch()
  params = random_params(nets['time'], x)
  row, start, _, n = where[1]  # the middle sequence of row 0: steps 4..6

  @jax.jit
  def run(params, x):
    out = {}
    for e, net in nets.items():
      finals, y = net.apply(params, x, lengths, resets=resets)

      def middle(x, net=net):
        y = net.apply(params, x, lengths, resets=resets)[1]
        return jnp.sum(y[row, start : start + n] * jnp.cos(jnp.arange(n * y.shape[-1]).reshape(n, -1)))

      grad = bidirectional or (cell, e) in GRAD_CASES
      out[e] = (finals, y, jax.grad(middle)(x) if grad else None)
    return out

  return run(params, x)


def compiled(cell, execution, bidirectional=False):
  return compiled_paths(cell, bidirectional)[execution]


def executions(cell):
  return ('time', 'layer') + (('parallel',) if has_parallel_form(cell) else ())


CASES = [(cell, e) for cell in sorted(dr.CELLS) for e in executions(cell)]
# Gradients (a second compile) on one whole-sequence path per cell, its parallel form where it has one,
# and on the per-step path of a classic, a linear and a matrix-memory cell.
GRAD_CASES = [(cell, executions(cell)[-1]) for cell in sorted(dr.CELLS)] + [
  ('lstm', 'time'),
  ('mingru', 'time'),
  ('mlstm', 'time'),
]


def tol(cell):
  return 2e-4 if cell in ('mlstm', 'slstm', 'lru') else 2e-5


@pytest.mark.parametrize('cell, execution', CASES, ids=[f'{c}-{e}' for c, e in CASES])
def test_packed_row_equals_each_sequence_alone(cell, execution):
  *_, where = batch()
  finals, y, _ = compiled(cell, execution)
  for row, start, alone, n in where:
    np.testing.assert_allclose(
      y[row, start : start + n], y[alone, :n], rtol=tol(cell), atol=tol(cell), err_msg=f'{cell} {execution}'
    )
  np.testing.assert_array_equal(y[1, 8:], 0.0)  # row 1's padding
  # Each packed row's final carries are its last sequence's.
  for row, alone in ((0, 4), (1, 6)):
    for leaf in jax.tree.leaves(finals):
      np.testing.assert_allclose(leaf[row], leaf[alone], rtol=tol(cell), atol=tol(cell), err_msg=f'carry row {row}')


@pytest.mark.parametrize('cell, execution', GRAD_CASES, ids=[f'{c}-{e}' for c, e in GRAD_CASES])
def test_no_gradient_crosses_a_reset(cell, execution):
  grad = np.asarray(compiled(cell, execution)[2])
  # The middle sequence of row 0 (steps 4..6) reads nothing before step 4, and causality nothing after 6.
  np.testing.assert_array_equal(grad[0, :4], 0.0)
  np.testing.assert_array_equal(grad[0, 7:], 0.0)
  assert np.all(np.abs(grad[0, 4:7]).sum(-1) > 0), 'the sequence must depend on its own inputs'
  np.testing.assert_array_equal(grad[1:], 0.0)


BIDIRECTIONAL = [('lstm', 'time'), ('mingru', 'parallel'), ('deltanet', 'parallel')]


@pytest.mark.parametrize('cell, execution', BIDIRECTIONAL, ids=[f'{c}-{e}' for c, e in BIDIRECTIONAL])
def test_bidirectional_reverses_within_segments(cell, execution):
  _, _, _, where = batch()
  finals, y, grad = compiled(cell, execution, bidirectional=True)
  for row, start, alone, n in where:
    np.testing.assert_allclose(y[row, start : start + n], y[alone, :n], rtol=2e-5, atol=2e-5)
  # Both directions: the middle sequence reads all of its steps and none outside them.
  np.testing.assert_array_equal(np.asarray(grad)[0, :4], 0.0)
  np.testing.assert_array_equal(np.asarray(grad)[0, 7:], 0.0)


def test_reverse_segments():
  x = jnp.arange(2 * 8).reshape(2, 8)
  resets = jnp.asarray([[1, 0, 1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 0, 0, 0]], bool)
  got = reverse_segments(x, jnp.asarray([8, 5]), resets)
  np.testing.assert_array_equal(got, [[1, 0, 4, 3, 2, 7, 6, 5], [10, 9, 8, 12, 11, 13, 14, 15]])
  np.testing.assert_array_equal(reverse_segments(got, jnp.asarray([8, 5]), resets), x)


def test_bad_resets_get_one_line_errors():
  net = dr.DeepRNN(cell='gru', features=HIDDEN)
  x = jnp.zeros((2, 5, IN))
  params = net.init(jax.random.key(0), x)
  with pytest.raises(ValueError, match=r'resets \[batch, time\] = \(2, 5\) bool'):
    net.apply(params, x, resets=jnp.zeros((2, 4), bool))
  with pytest.raises(ValueError, match='resets'):
    net.apply(params, x, resets=jnp.zeros((2, 5), jnp.float32))


# -- the task side: packing rows, per-sequence heads, the pack option --------------------------------


def test_pack_rows_first_fit_decreasing_and_pack_arrays():
  lengths = np.asarray([3, 5, 2, 4, 1], np.int32)
  rows = pipeline.pack_rows(lengths, 6)
  assert rows == [[1, 4], [3, 2], [0]]  # 5+1, 4+2, 3: longest first, each into the first row with room
  x = np.arange(5 * 6).reshape(5, 6) + 1
  arrays = {'inputs': x, 'targets': np.asarray([10, 11, 12, 13, 14]), 'lengths': lengths}
  packed = pipeline.pack_arrays(arrays, 6, ('inputs',), rows)
  np.testing.assert_array_equal(packed['inputs'][0], [7, 8, 9, 10, 11, 25])
  np.testing.assert_array_equal(packed['inputs'][2], [1, 2, 3, 0, 0, 0])
  np.testing.assert_array_equal(packed['lengths'], [6, 6, 3])
  np.testing.assert_array_equal(packed['resets'][1], [1, 0, 0, 0, 1, 0])
  np.testing.assert_array_equal(packed['ends'], [[4, 5], [3, 5], [2, 0]])
  np.testing.assert_array_equal(packed['targets'], [[11, 14], [13, 12], [10, 0]])
  np.testing.assert_array_equal(packed['weight'], [[1, 1], [1, 1], [1, 0]])


def test_packed_classifier_reads_each_sequence_at_its_own_last_step():
  model = dr.Classifier(rnn=dr.DeepRNN(cell='gru', features=HIDDEN, num_layers=2), vocab_size=9, embed_features=3)
  lengths = np.asarray([3, 2, 4], np.int32)
  tokens = np.asarray([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 2]], np.int32)
  rows = [[0, 1], [2]]
  packed = pipeline.pack_arrays(
    {'inputs': tokens, 'targets': np.asarray([0, 1, 1]), 'lengths': lengths}, 5, ('inputs',), rows
  )
  params = model.init(jax.random.key(0), tokens, lengths)
  alone = model.apply(params, tokens, lengths)
  got = model.apply(params, packed['inputs'], packed['lengths'], resets=packed['resets'], ends=packed['ends'])
  np.testing.assert_allclose(got[0], alone[:2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[1, 0], alone[2], rtol=1e-5, atol=1e-6)
  # The loss counts each packed sequence once; the empty slot weighs nothing.
  _, sums = tasks.loss_and_metrics('class', got, packed)
  assert float(sums['loss'][1]) == 3.0


CONLL = 'EU B-ORG\nrejects O\n\nPeter B-PER\nBlackburn I-PER\n\nGerman B-MISC\ncall O\nnow O\n\nyes O\n\n'


def test_pack_option_of_a_tagging_task(tmp_path):
  for name in ('train.txt', 'valid.txt', 'test.txt'):
    (tmp_path / name).write_text(CONLL)
  task = tasks.make_task('ner_conll', path=str(tmp_path), pack=True)
  assert task.seq_len == 3 and task.length_buckets == ()
  assert task.info['packed_rows'] == 3 and task.info['packed_fill'] == 8 / 9  # 3 | 2+1 | 2
  batch = task.train_batch(jax.random.key(0), 0, 3)
  np.testing.assert_array_equal(np.sort(np.asarray(batch['lengths'])), [2, 3, 3])
  assert int(np.asarray(batch['resets']).sum()) == 4
  assert tasks.make_task('ner_conll', path=str(tmp_path)).eval_splits['val']['inputs'].shape == (4, 3)
  with pytest.raises(ValueError, match='cannot pack.*drop pack=True'):
    tasks.make_task('adding', pack=True)


def test_a_packed_classification_step_trains_on_each_sequence_alone(tmp_path):
  """Through the trainer's own step: the loss of a packed batch is the mean cross-entropy of its
  sequences, each run alone (so the step passes ``resets`` and ``ends`` to the model)."""
  words = 'a b c d e f g h'.split()
  rng = np.random.default_rng(0)
  rows = ['text,label'] + [f'{" ".join(rng.choice(words, rng.integers(1, 6)))},{i % 2}' for i in range(12)]
  (tmp_path / 'train.csv').write_text('\n'.join(rows) + '\n')
  (tmp_path / 'test.csv').write_text('\n'.join(rows[:4]) + '\n')
  task = tasks.make_task('text_classification', path=str(tmp_path), max_len=8, num_val=1, pack=True)
  assert task.info['packed_sequences_per_row'] > 1.5
  model = dr.Classifier(
    rnn=dr.DeepRNN(cell='gru', features=HIDDEN), vocab_size=task.input_size, embed_features=3, num_classes=2
  )
  tx = optax.sgd(0.1)
  state = train_lib.init_state(model, tx, task, 0)
  batch = jax.tree.map(np.asarray, task.train_batch(state.data_key, 0, 2))
  loss = float(train_lib.train_step(model, tx, task, state, batch).acc['loss'] - state.acc['loss'])
  alone = []
  for r in range(2):
    starts = list(np.flatnonzero(batch['resets'][r])) + [int(batch['lengths'][r])]
    for s, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
      logits = model.apply({'params': state.params}, batch['inputs'][r : r + 1, a:b])
      alone.append(-jax.nn.log_softmax(logits[0])[batch['targets'][r, s]])
  assert len(alone) == int(batch['weight'].sum()) > 2
  np.testing.assert_allclose(loss, np.mean(alone), rtol=1e-5)


def test_the_packing_benchmark_feeds_the_same_sentences_three_ways():
  from benchmarks import packing

  lengths, _ = packing.sentence_lengths(None)  # PTB train: the file, or its histogram
  assert len(lengths) == 42068 and lengths.max() == 83
  some = lengths[:40]
  feeds = {way: packing.batches(some, 4, 83, way) for way in packing.WAYS}
  packed = feeds['packed']
  assert all(b['inputs'].shape == (4, 83) and b['resets'][:, 0].all() for b in packed)
  assert all(b['inputs'].shape[0] == 4 for b in feeds['buckets'])
  # Every way reads real tokens only where its lengths say, and the padded way all 40 sentences.
  assert sum(int(b['lengths'].sum()) for b in feeds['padded']) == int(some.sum())
  for b in packed + feeds['buckets']:
    steps = np.arange(b['inputs'].shape[1])[None, :] < b['lengths'][:, None]
    assert (b['inputs'][steps] > 0).all() and (b['inputs'][~steps] == 0).all()
