"""Dataset tasks without TFDS: the stream, splits, vocabulary, padding and each baseline."""

import os
import pickle
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from deeprnn_jax import tasks
from deeprnn_jax.tasks import base, mnist1d, pipeline, polyphonic, shakespeare, tfds_text, vocab

KEY = jax.random.key(3)
_loss_and_metrics = jax.jit(base.loss_and_metrics, static_argnums=0)


def _metrics(task, outputs, batch):
  return base.finalize(_loss_and_metrics(task.output_kind, jnp.asarray(outputs), batch)[1])


def _chance_accuracy(task, split):
  """Mean accuracy of the ``C`` constant predictors: exactly a uniform random guess's expectation."""
  b = task.eval_splits[split]
  eye = np.eye(task.output_size, dtype=np.float32)
  n = len(b['targets'])
  return np.mean([_metrics(task, eye[np.full(n, c)], b)['accuracy'] for c in range(task.output_size)])


# ----------------------------------------------------------------------------------------- registry


def test_make_task_errors_name_the_valid_choices():
  with pytest.raises(ValueError, match=r"unknown task 'nope'; valid tasks: adding, addition, capacity, char_lm") as e:
    tasks.make_task('nope')
  assert '\n' not in str(e.value)
  with pytest.raises(
    ValueError,
    match=r"unknown option 'T' for task 'copy'; valid options: "
    r'length_generalization, num_eval, seed, seq_len$',
  ):
    tasks.make_task('copy', T=3)
  expected = {
    'adding',
    'copy',
    'parentheses',
    'capacity',
    'mnist1d',
    'mnist1d_shuffled',
    'digits',
    'smnist',
    'psmnist',
    'imdb',
    'sst2',
    'tiny_shakespeare',
    'polyphonic',
    'jsb_chorales',
    'nottingham',
    'musedata',
    'piano_midi',
    'text_classification',
    'char_lm',
    'ner_conll',
    'conll2003',
    'keyword_spotting',
    'speech_commands',
    'reverse',
    'sort',
    'addition',
    'scan',
    'parallel_text',
    'ted_pt_en',
    'selective_copy',
    'mqar',
    'word_lm',
    'speech_to_text',
    'librispeech',
    'connected_digits',
  }
  assert set(tasks.TASKS) == expected == set(tasks.BUILTIN_TASKS)
  for name in tasks.TASKS:
    assert 'seed' in tasks.task_options(name)
  assert tasks.task_options('psmnist')['permute'] is True
  assert tasks.task_options('nottingham')['dataset'] == 'nottingham'


# ----------------------------------------------------------------------------------------- pipeline


def test_epoch_indices_visit_every_example_once_per_epoch_and_resume_exactly():
  fn = jax.jit(pipeline.epoch_indices, static_argnums=(2, 3))
  epoch0 = np.concatenate([np.asarray(fn(KEY, s, 4, 13)) for s in range(3)])  # 3 steps per epoch
  epoch1 = np.concatenate([np.asarray(fn(KEY, s, 4, 13)) for s in range(3, 6)])
  assert len(set(epoch0)) == 12 and len(set(epoch1)) == 12  # no repeats within an epoch
  assert not np.array_equal(epoch0, epoch1)
  np.testing.assert_array_equal(fn(KEY, 4, 4, 13), epoch1[4:8])  # a resumed run: same batch
  big = np.asarray(fn(KEY, 0, 20, 13))  # a batch larger than the data wraps around
  assert set(big) == set(range(13))


@pytest.mark.parametrize('n', [1, 2, 3, 17, 256, 1000, 4097])
def test_permuted_positions_is_a_bijection_of_the_examples(n):
  perm = np.asarray(jax.jit(pipeline.permuted_positions, static_argnums=2)(KEY, jnp.arange(n), n))
  np.testing.assert_array_equal(np.sort(perm), np.arange(n))


def test_permuted_positions_are_uniform_over_keys():
  # Where position 0 and position 5 land, over 4000 epochs of a 10-example dataset: each of the 10
  # (resp. 100 ordered pairs of) outcomes must be about equally frequent (chi-square, p > 1e-4).
  n, epochs = 10, 4000
  fn = jax.jit(jax.vmap(lambda k: pipeline.permuted_positions(k, jnp.array([0, 5]), n)))
  first, sixth = np.asarray(fn(jax.random.split(KEY, epochs))).T
  assert np.all(first != sixth)
  singles = np.bincount(first, minlength=n)
  pairs = np.bincount(first * n + sixth, minlength=n * n)[[a * n + b for a in range(n) for b in range(n) if a != b]]
  assert scipy.stats.chisquare(singles).pvalue > 1e-4
  assert scipy.stats.chisquare(pairs).pvalue > 1e-4


def test_array_stream_buckets_hold_only_fitting_examples():
  lengths = np.array([1, 2, 3, 5, 8, 8, 4, 2, 7, 6], np.int32)
  inputs, lens = pipeline.pad_sequences([np.arange(1, n + 1) for n in lengths], 8)
  np.testing.assert_array_equal(lens, lengths)
  train_batch, data, probs = pipeline.array_stream(
    {'inputs': inputs, 'lengths': lens}, dict, lengths=lens, buckets=(2, 4, 8), time_keys=('inputs',)
  )
  assert probs == pytest.approx((0.3, 0.2, 0.5))
  fn = jax.jit(train_batch, static_argnames=('batch_size', 'bucket'))
  for bucket, (low, high) in enumerate([(0, 2), (2, 4), (4, 8)]):
    for step in range(3):
      b = fn(KEY, step, batch_size=3, data=data, bucket=bucket)
      assert b['inputs'].shape == (3, high)
      assert np.all((b['lengths'] > low) & (b['lengths'] <= high))
      # Rows are the padded sequences 1..n, cut to the bucket width.
      np.testing.assert_array_equal(
        b['inputs'], np.where(np.arange(high) < np.asarray(b['lengths'])[:, None], np.arange(1, high + 1), 0)
      )
  whole = fn(KEY, 0, batch_size=3, data=data)
  assert whole['inputs'].shape == (3, 8)
  assert pipeline.default_buckets(400) == (32, 64, 128, 256, 400)
  assert pipeline.default_buckets(20) == (20,)


def test_bucket_for_step_draws_buckets_in_proportion_to_bucket_probs():
  # Unnormalized probabilities, one of them zero. 20000 steps of seed 0; the draws are a fixed
  # function of (seed, step), so the bounds below are met or not, never flaky. Measured: every
  # bucket within 1.1 binomial standard deviations of its expectation (asserted: 4).
  probs, steps = (3.0, 0.0, 2.0, 5.0), 20000
  picks = np.array([base.bucket_for_step(probs, 0, s) for s in range(steps)])
  p = np.asarray(probs) / sum(probs)
  counts = np.bincount(picks, minlength=len(probs))
  assert counts[1] == 0
  z = (counts - steps * p)[p > 0] / np.sqrt(steps * p * (1 - p))[p > 0]
  assert np.all(np.abs(z) < 4.0), (counts, z)
  # Steps draw independently: consecutive equal buckets as often as sum(p^2) (0.38) says.
  same = np.mean(picks[1:] == picks[:-1])
  assert abs(same - np.sum(p**2)) < 4.0 * np.sqrt(np.sum(p**2) * (1 - np.sum(p**2)) / steps), same
  # A pure function of (seed, step): a resumed run draws the same sequence, another seed another.
  np.testing.assert_array_equal([base.bucket_for_step(probs, 0, s) for s in range(100)], picks[:100])
  assert not np.array_equal([base.bucket_for_step(probs, 1, s) for s in range(100)], picks[:100])


def test_carve_validation_is_deterministic_and_disjoint():
  tr, va = pipeline.carve_validation(50, 7)
  tr2, va2 = pipeline.carve_validation(50, 7)
  np.testing.assert_array_equal(va, va2)
  assert len(va) == 7 and len(tr) == 43 and not set(tr) & set(va)
  assert set(tr) | set(va) == set(range(50))


# ------------------------------------------------------------------------------------- text / vocab


def test_vocabulary_comes_from_train_only_with_pad_oov_and_cap():
  train = ['the cat sat', 'the dog sat', 'the cat ran', 'a bird flew', 'the the the']
  train_labels = [1, 0, 1, 1, 0]
  # The last two test texts probe the vocabulary: every word of every split, once.
  probes = ['the sat a cat dog bird', 'flew ran zebra']
  test = ['the zebra sat', '', 'cat ' * 20] + probes
  task = tfds_text.text_classification_task(
    name='toy',
    train_texts=train,
    train_labels=train_labels,
    test_texts=test,
    test_labels=[1, 0, 1, 0, 1],
    num_classes=2,
    vocab_size=5,
    max_len=8,
    num_val=1,
    buckets=(2, 8),
    threshold=None,
  )
  tr, va = pipeline.carve_validation(5, 1)
  assert list(va) == [2]  # 'the cat ran' is carved as validation: the counts below assume it
  # Counted by hand over the other four texts: the 5, sat 2, then a, bird, cat, dog, flew once
  # each (ties alphabetical). The cap of 5 is PAD + OOV + 3 words. Counting the validation text too
  # would give cat 2 (-> the, cat, sat); counting test, cat 21.
  want = {'the': 2, 'sat': 3, 'a': 4}
  t = task.eval_splits['test']
  words = [w for text in probes for w in text.split()]
  ids = np.concatenate([t['inputs'][3][:6], t['inputs'][4][:3]])
  vocabulary = {w: int(i) for w, i in zip(words, ids) if i != vocab.OOV}
  assert vocabulary == want
  assert task.input_size == 5 and task.info['pad_id'] == 0 and task.info['oov_id'] == 1
  np.testing.assert_array_equal(t['inputs'][0], [2, vocab.OOV, 3] + [0] * 5)  # 'zebra': test only
  np.testing.assert_array_equal(t['lengths'], [3, 1, 8, 6, 3])  # empty -> [OOV]; 20 tokens truncated to 8
  np.testing.assert_array_equal(t['inputs'][1], [vocab.OOV] + [0] * 7)
  np.testing.assert_array_equal(t['inputs'][2], [vocab.OOV] * 8)  # 'cat' did not make the cap
  assert task.info['truncated_fraction_test'] == pytest.approx(1 / 5)
  # The validation text is encoded with the training vocabulary: 'ran' (seen only there) is OOV.
  np.testing.assert_array_equal(task.eval_splits['val']['inputs'], [[2, vocab.OOV, vocab.OOV] + [0] * 5])
  np.testing.assert_array_equal(task.eval_splits['val']['targets'], [train_labels[2]])
  # Majority-label baseline (train labels 1, 0, 1, 0 without the validation text: a tie, class 0
  # first), shown through the accuracy of always predicting it: 2 of the 5 test labels are 0.
  assert task.info['majority_class'] == 0 and task.baseline.value == pytest.approx(2 / 5)
  logits = np.zeros((5, 2), np.float32)
  logits[:, 0] = 1.0
  assert _metrics(task, logits, t)['accuracy'] == pytest.approx(2 / 5)
  assert task.length_buckets == (2, 8) and sum(task.bucket_probs) == pytest.approx(1.0)


def test_tokenizer():
  assert vocab.tokenize("It's GREAT!<br /><br />Really.") == ["it's", 'great', '!', 'really', '.']


# ------------------------------------------------------------------------------------------ mnist1d


def test_mnist1d_generates_once_then_loads_from_cache(tmp_path, monkeypatch):
  state = np.random.get_state()
  py_state = random.getstate()
  task = tasks.make_task('mnist1d', num_samples=500, data_dir=str(tmp_path))
  # The package seeds the global generators; the loader puts them back.
  assert np.array_equal(np.random.get_state()[1], state[1]) and random.getstate() == py_state
  assert os.path.exists(tmp_path / 'mnist1d' / 'mnist1d_n500.npz')
  monkeypatch.setattr(mnist1d, '_generate', lambda *a: pytest.fail('cache miss'))
  again = tasks.make_task('mnist1d', num_samples=500, data_dir=str(tmp_path))
  np.testing.assert_array_equal(again.eval_splits['test']['inputs'], task.eval_splits['test']['inputs'])
  assert task.eval_splits['test']['inputs'].shape == (100, 40, 1)
  assert task.eval_splits['val']['inputs'].shape == (40, 40, 1) and task.info['num_train'] == 360
  assert task.input_kind == 'features' and task.seq_len == 40 and task.output_size == 10
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 2, 16)
  assert b['inputs'].shape == (16, 40, 1) and b['inputs'].dtype == jnp.float32
  assert _chance_accuracy(task, 'test') == pytest.approx(task.baseline.value) == pytest.approx(0.1)


def test_mnist1d_shuffled_is_a_fixed_permutation_of_time(tmp_path):
  plain = tasks.make_task('mnist1d', num_samples=500, data_dir=str(tmp_path))
  shuffled = tasks.make_task('mnist1d_shuffled', num_samples=500, data_dir=str(tmp_path))
  x, xs = plain.eval_splits['test']['inputs'][..., 0], shuffled.eval_splits['test']['inputs'][..., 0]
  np.testing.assert_array_equal(plain.eval_splits['test']['targets'], shuffled.eval_splits['test']['targets'])
  # Each shuffled step is one fixed original step (normalization is global, so equal up to scale).
  corr = np.corrcoef(x.T, xs.T)[:40, 40:]
  assert sorted(np.argmax(corr, axis=0)) == list(range(40)) and np.all(corr.max(0) > 0.999)
  assert shuffled.name == 'mnist1d_shuffled' and shuffled.threshold is None


# ------------------------------------------------------------------------------------------- digits


def test_digits_rows_pixels_and_fixed_permutation():
  rows = tasks.make_task('digits')
  pixels = tasks.make_task('digits', mode='pixels')
  perm = tasks.make_task('digits', mode='pixels', permute=True, permutation_seed=5)
  assert rows.eval_splits['test']['inputs'].shape == (360, 8, 8)
  assert pixels.eval_splits['test']['inputs'].shape == (360, 64, 1)
  assert rows.info['num_train'] == 1293 and rows.info['num_val'] == 144
  np.testing.assert_array_equal(
    rows.eval_splits['test']['inputs'].reshape(360, 64, 1), pixels.eval_splits['test']['inputs']
  )
  order = np.random.default_rng(5).permutation(64)
  np.testing.assert_array_equal(perm.eval_splits['test']['inputs'], pixels.eval_splits['test']['inputs'][:, order])
  b = jax.jit(pixels.train_batch, static_argnums=2)(KEY, 0, 32)
  assert b['inputs'].dtype == jnp.float32 and float(b['inputs'].min()) == 0.0
  assert float(b['inputs'].max()) == 1.0 and np.all(np.asarray(b['lengths']) == 64)
  assert _chance_accuracy(rows, 'test') == pytest.approx(rows.baseline.value) == pytest.approx(0.1)


# --------------------------------------------------------------------------------- tiny shakespeare


def test_char_lm_vocab_windows_and_unigram_baseline():
  rng = np.random.default_rng(0)
  train = ''.join(rng.choice(list('aab c\n'), size=3000))
  task = shakespeare.char_lm_task(name='toy', train_text=train, val_text='ab zc', test_text='ca b\n' * 5, seq_len=8)
  ids = shakespeare.char_ids(train)
  assert task.input_size == task.output_size == len(ids) + 2 == 7
  val = task.eval_splits['val']
  # 'z' never occurs in train: OOV. 5 characters -> 4 next-character pairs in one padded window.
  np.testing.assert_array_equal(val['inputs'], [[ids['a'], ids['b'], ids[' '], vocab.OOV, 0, 0, 0, 0]])
  np.testing.assert_array_equal(val['targets'], [[ids['b'], ids[' '], vocab.OOV, ids['c'], 0, 0, 0, 0]])
  np.testing.assert_array_equal(val['lengths'], [4])
  test = task.eval_splits['test']  # 25 characters -> 24 pairs: windows of 8, 8, 8
  np.testing.assert_array_equal(test['lengths'], [8, 8, 8])
  enc = np.array([ids[c] for c in 'ca b\n' * 5])
  np.testing.assert_array_equal(test['inputs'].ravel(), enc[:-1])
  np.testing.assert_array_equal(test['targets'].ravel(), enc[1:])
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 4, 512)
  np.testing.assert_array_equal(b['inputs'][:, 1:], b['targets'][:, :-1])
  # The unigram predictor (log train frequencies at every step) scores the train entropy.
  counts = np.bincount([ids[c] for c in train], minlength=7)
  logp = np.log(np.maximum(counts / counts.sum(), 1e-30)).astype(np.float32)
  loss = _metrics(task, np.broadcast_to(logp, (512, 8, 7)), b)['loss']
  p = counts[counts > 0] / counts.sum()
  assert task.baseline.value == pytest.approx(-np.sum(p * np.log(p)))
  assert loss == pytest.approx(task.baseline.value, abs=0.03)  # 4096 sampled characters


# ------------------------------------------------------------------------------------- polyphonic


def _write_music(path, rng, protocol=2):
  """A small file in the release format: dict of lists of sequences of note tuples."""

  def seq(n):
    return [
      tuple(int(k) for k in rng.choice(np.arange(21, 109), size=rng.integers(0, 4), replace=False)) for _ in range(n)
    ]

  data = {'train': [seq(n) for n in (5, 9, 3)], 'valid': [seq(4)], 'test': [seq(6), seq(2)]}
  data['train'][0][0] = (21, 108)  # both ends of the piano
  with open(path, 'wb') as f:
    pickle.dump(data, f, protocol=protocol)
  return data


def test_polyphonic_rolls_shift_and_lengths(tmp_path):
  data = _write_music(tmp_path / 'm.pickle', np.random.default_rng(0))
  task = tasks.make_task('polyphonic', path=str(tmp_path / 'm.pickle'))
  assert task.input_size == task.output_size == 88 and task.output_kind == 'per_step_binary'
  assert task.seq_len == 9
  test = task.eval_splits['test']
  assert test['inputs'].shape == (2, 6, 88) and list(test['lengths']) == [6, 2]
  for i, seq in enumerate(data['test']):
    for t, frame in enumerate(seq):
      np.testing.assert_array_equal(np.flatnonzero(test['targets'][i, t]) + 21, sorted(frame))
    np.testing.assert_array_equal(test['inputs'][i, 1 : len(seq)], test['targets'][i, : len(seq) - 1])
    np.testing.assert_array_equal(test['inputs'][i, 0], 0)  # silence before the first frame
    np.testing.assert_array_equal(test['targets'][i, len(seq) :], 0)  # padding
  roll = polyphonic.piano_roll(data['train'][0])
  assert roll[0, 0] == 1 and roll[0, 87] == 1
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 0, 3)
  assert b['inputs'].dtype == jnp.float32 and b['inputs'].shape == (3, 9, 88)
  assert sorted(np.asarray(b['lengths']).tolist()) == [3, 5, 9]  # one epoch = the 3 sequences


def test_polyphonic_independent_bernoulli_baseline(tmp_path):
  data = _write_music(tmp_path / 'm.pickle', np.random.default_rng(1))
  task = tasks.make_task('jsb_chorales', path=str(tmp_path / 'm.pickle'))
  train_frames = np.concatenate([polyphonic.piano_roll(s) for s in data['train']])
  p = np.clip(train_frames.mean(0), 1e-6, 1 - 1e-6)
  test = task.eval_splits['test']
  frames = np.concatenate([polyphonic.piano_roll(s) for s in data['test']])
  expected = -np.mean(np.sum(frames * np.log(p) + (1 - frames) * np.log(1 - p), axis=1))
  logits = np.broadcast_to(np.log(p) - np.log1p(-p), test['targets'].shape).astype(np.float32)
  loss = _metrics(task, logits, test)['loss']
  assert task.baseline.value == pytest.approx(expected, rel=1e-9)
  assert loss == pytest.approx(expected, rel=1e-4)
  assert task.info['baseline_by_split']['val'] > 0


def test_polyphonic_chunks_keep_their_preceding_frame(tmp_path):
  data = _write_music(tmp_path / 'm.pickle', np.random.default_rng(2))
  task = tasks.make_task('polyphonic', path=str(tmp_path / 'm.pickle'), seq_len=4)
  assert task.info['num_train_chunks'] == 2 + 3 + 1 and task.seq_len == 4
  x, y = (np.asarray(task.train_data['arrays'][k]) for k in ('inputs', 'targets'))
  roll = polyphonic.piano_roll(data['train'][1])  # 9 frames -> chunks 4, 4, 1
  np.testing.assert_array_equal(y[2], roll[0:4])
  np.testing.assert_array_equal(y[3], roll[4:8])
  np.testing.assert_array_equal(x[3, 0], roll[3])  # the real previous frame, not silence
  assert task.eval_splits['test']['inputs'].shape[1] == 6  # evaluation keeps whole sequences


class _Boom:
  def __reduce__(self):
    return (os.system, ('echo pwned > /dev/null',))


@pytest.mark.parametrize(
  'payload',
  [
    {'train': [_Boom()]},
    {'train': [[np.array([60, 64])]]},
    {'train': [[{1, 2}]]},
  ],
)
def test_polyphonic_unpickler_refuses_anything_but_builtin_containers(tmp_path, payload):
  path = tmp_path / 'evil.pickle'
  path.write_bytes(pickle.dumps(payload, protocol=2))  # protocol 2 names set as a global
  with pytest.raises(pickle.UnpicklingError, match='refusing to load global'):
    tasks.make_task('polyphonic', path=str(path))


def test_polyphonic_reads_python2_style_pickles_and_reports_missing_files(tmp_path):
  data = {'train': [[[60, 64], [62]]], 'valid': [[(60,)]], 'test': [[[70.0]]]}
  assert polyphonic.safe_load(pickle.dumps(data, protocol=0)) == data
  with pytest.raises(FileNotFoundError, match=r"'Nottingham.pickle'.*pass path=") as e:
    tasks.make_task('nottingham', data_dir=str(tmp_path))
  assert '\n' not in str(e.value)
  bad = tmp_path / 'bad.pickle'
  bad.write_bytes(pickle.dumps({'train': [[[12]]], 'valid': [], 'test': []}))
  with pytest.raises(ValueError, match='outside the piano range'):
    tasks.make_task('polyphonic', path=str(bad))
