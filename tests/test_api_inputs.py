"""The library API refuses bad input in one line naming the argument and the fix (``sequences``'s
checks): lengths outside [0, T], inputs, resets and carries of the wrong shape, rank or dtype, for
``DeepRNN`` (whole sequences and ``step``), the task models and ``Seq2Seq``. Lengths are data: traced
ones are clamped to [0, T] and checked under ``checkify``; a sequence of length 0 is defined."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import deeprnn_jax as dr

jax.config.update('jax_numpy_rank_promotion', 'raise')

B, T, F, H = 3, 5, 2, 4


def inputs(batch=B, time=T):
  return jax.random.normal(jax.random.key(0), (batch, time, F))


@pytest.fixture(scope='module')
def lstm():
  model = dr.DeepRNN(cell='lstm', features=H, num_layers=2)
  return model, model.init(jax.random.key(1), inputs())


def _one_line(call, match):
  with pytest.raises(ValueError, match=match) as e:
    call()
  assert '\n' not in str(e.value)
  return str(e.value)


# ---- lengths: concrete ones are checked eagerly


def test_a_concrete_length_longer_than_the_sequence_is_refused_naming_seq_lengths_and_t(lstm):
  model, params = lstm
  x = inputs(batch=1)
  message = _one_line(lambda: model.apply(params, x, [7]), r'seq_lengths\[0\] = 7 is longer than the sequences, T = 5')
  assert 'pad the inputs to the longest sequence or fix the lengths' in message
  for lengths in (np.array([7]), (7,), jnp.array([7])):  # NumPy, tuple, and a JAX array outside jit
    _one_line(lambda lengths=lengths: model.apply(params, x, lengths), r'seq_lengths\[0\] = 7 .* T = 5')
  _one_line(lambda: model.apply(params, inputs(), [5, -1, 2]), r'seq_lengths\[1\] = -1 is negative: .* from 0 to T = 5')
  model.apply(params, inputs(), [5, 0, 2])  # the bounds themselves are fine


@pytest.mark.parametrize(
  'lengths, match',
  [
    ([True, False, True], r'seq_lengths \[batch\] = \(3,\) integers, got shape \(3,\) bool'),
    (np.array([[5, 4, 3]]), r'got shape \(1, 3\)'),
    (np.array([5.0, 4.0, 3.0]), r'got shape \(3,\) float'),
  ],
  ids=['bool', '2d', 'float'],
)
def test_lengths_of_the_wrong_dtype_or_shape_are_refused(lstm, lengths, match):
  model, params = lstm
  _one_line(lambda: model.apply(params, inputs(), lengths), match)


def test_traced_lengths_are_clamped_to_zero_and_t_so_every_path_reads_the_same():
  """Inside jit a length is data: a length above T reads as T and a negative one as 0 (without the clamp
  the backward direction would reverse outside the sequence)."""
  x = inputs()
  model = dr.DeepRNN(cell='gru', features=H, num_layers=2, bidirectional=True)
  params = model.init(jax.random.key(1), x)
  run = jax.jit(model.apply)
  got = run(params, x, jnp.array([9, -2, 3]))
  want = run(params, x, jnp.array([T, 0, 3]))
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)


def test_checkify_catches_a_traced_length_outside_zero_and_t_with_check_lengths(lstm):
  """Opt-in (``check_lengths=True``): the check is a JAX effect, which slows jit's dispatch (the cost in
  ``sequences.checked_lengths``), so the default program carries none and only clamps."""
  model, params = lstm
  checked = dr.DeepRNN(cell='lstm', features=H, num_layers=2, check_lengths=True)
  run = jax.jit(checkify.checkify(checked.apply))
  err, _ = run(params, inputs(), jnp.array([5, 7, 1]))
  assert 'DeepRNN: seq_lengths must be in [0, T] = [0, 5]' in err.get() and '[5 7 1]' in err.get()
  with pytest.raises(Exception, match=r'seq_lengths must be in \[0, T\] = \[0, 5\]'):
    err.throw()
  err, _ = run(params, inputs(), jnp.array([5, 0, 1]))
  assert err.get() is None
  # Without checkify the check raises nothing (the lengths are clamped); by default there is no check.
  jax.jit(checked.apply)(params, inputs(), jnp.array([5, 7, 1]))
  assert not jax.make_jaxpr(model.apply)(params, inputs(), jnp.array([5, 7, 1])).effects
  assert jax.make_jaxpr(checked.apply)(params, inputs(), jnp.array([5, 7, 1])).effects


# ---- 0-length sequences: defined


@pytest.mark.parametrize(
  'cell, execution, kwargs',
  [
    ('lstm', 'time', dict(num_layers=2)),
    ('lstm', 'layer', {}),
    ('mingru', 'parallel', {}),
    ('gru', 'time', dict(bidirectional=True)),
    ('mlstm', 'parallel', dict(block='modern')),
    ('attention', 'parallel', {}),
  ],
)
def test_a_zero_length_sequence_outputs_zeros_and_keeps_its_carries(cell, execution, kwargs):
  """Length 0 is defined (DeepRNN's docstring): zero outputs, and the final carries are the ones given,
  on every path (the lengths traced, as in training; concrete ones only add the eager check)."""
  x = inputs()
  model = dr.DeepRNN(cell=cell, features=H, execution=execution, **kwargs)
  params = model.init(jax.random.key(1), x)
  start = model.apply(params, B, method='initialize_carries')
  start = jax.tree.map(lambda c: c + 1 if jnp.issubdtype(c.dtype, jnp.inexact) else c, start)
  finals, y = jax.jit(model.apply)(params, x, jnp.array([0, T, 3]), initial_carries=start)
  np.testing.assert_array_equal(y[0], 0.0)
  assert np.abs(np.asarray(y[1:2])).max() > 0  # the other rows ran
  for got, want in zip(jax.tree.leaves(finals), jax.tree.leaves(start)):
    np.testing.assert_array_equal(got[0], want[0])


# ---- inputs, resets and carries


@pytest.mark.parametrize(
  'x, match',
  [
    (
      jnp.ones((B, T, F), jnp.int32),
      r'expects floating-point inputs, got int32: cast them \(x.astype\(jnp.float32\)\)',
    ),
    (jnp.ones((B, T, F), bool), r'expects floating-point inputs, got bool'),
    (jnp.ones((B, T)), r'expects inputs \[batch, time, features\], got shape \(3, 5\)'),
  ],
  ids=['int', 'bool', 'rank-2'],
)
def test_inputs_of_the_wrong_rank_or_dtype_are_refused(lstm, x, match):
  model, params = lstm
  _one_line(lambda: model.apply(params, x), match)


def test_resets_of_the_wrong_shape_are_refused(lstm):
  model, params = lstm
  for resets in (jnp.zeros((B, T + 1), bool), jnp.zeros((T,), bool), jnp.zeros((B, T), jnp.float32)):
    _one_line(
      lambda resets=resets: model.apply(params, inputs(), resets=resets),
      r'DeepRNN expects resets \[batch, time\] = \(3, 5\) bool',
    )


def test_initial_carries_of_the_wrong_structure_or_shape_are_refused(lstm):
  model, params = lstm
  carries = model.apply(params, B, method='initialize_carries')
  fix = r"start from model.apply\(params, 3, method='initialize_carries'\)"
  _one_line(lambda: model.apply(params, inputs(), initial_carries=carries[:1]), rf'initial_carries .*\(2 layers.*{fix}')
  one_leaf = (carries[0][0], carries[1])  # an LSTM carry is (c, h): half of it given
  _one_line(lambda: model.apply(params, inputs(), initial_carries=one_leaf), 'with the structure of initialize_carries')
  other_batch = model.apply(params, B + 1, method='initialize_carries')
  _one_line(
    lambda: model.apply(params, inputs(), initial_carries=other_batch),
    r'initial_carries\[0\]\[0\] of shape \(3, 4\), got \(4, 4\)',
  )


def test_step_refuses_a_sequence_a_wrong_carry_or_wrong_flags(lstm):
  model, params = lstm
  carries = model.apply(params, B, method='initialize_carries')
  step = lambda *a, **k: model.apply(params, *a, method='step', **k)
  _one_line(
    lambda: step(carries, inputs()),
    r'DeepRNN.step expects x_t \[batch, features\] \(one time step\), got shape \(3, 5, 2\)',
  )
  _one_line(lambda: step(carries, jnp.ones((B, F), jnp.int32)), 'DeepRNN.step expects floating-point x_t, got int32')
  _one_line(
    lambda: step(carries[:1], inputs()[:, 0]), 'DeepRNN.step expects carries with the structure of initialize_carries'
  )
  _one_line(
    lambda: step(carries, inputs()[:, 0], jnp.ones((B, 1), bool)),
    r'expects valid_t \[batch\] = \(3,\), got shape \(3, 1\)',
  )
  _one_line(
    lambda: step(carries, inputs()[:, 0], resets_t=jnp.ones((2,), bool)), r'expects resets_t \[batch\] = \(3,\)'
  )
  step(carries, inputs()[:, 0], jnp.ones((B,), bool))  # and right, it runs


# ---- the models and Seq2Seq name their own arguments


def test_the_models_check_their_inputs_and_lengths():
  rnn = dr.DeepRNN(cell='gru', features=H)
  tokens = jnp.ones((2, T), jnp.int32)
  clf = dr.models.Classifier(rnn=rnn, vocab_size=10, embed_features=3, num_classes=2)
  params = clf.init(jax.random.key(0), tokens)
  _one_line(
    lambda: clf.apply(params, tokens, [7, 2]), r'Classifier: lengths\[0\] = 7 is longer than the sequences, T = 5'
  )
  _one_line(
    lambda: clf.apply(params, tokens.astype(jnp.float32)),
    r'Classifier with vocab_size expects token ids \[batch, time\] integers',
  )
  tagger = dr.models.PerStepModel(rnn=rnn, out_features=3)
  params = tagger.init(jax.random.key(0), inputs())
  _one_line(lambda: tagger.apply(params, inputs(), [1, 2, -3]), r'PerStepModel: lengths\[2\] = -3 is negative')
  _one_line(
    lambda: tagger.apply(params, inputs()[..., 0]), r'PerStepModel expects real inputs \[batch, time, features\]'
  )


def test_seq2seq_checks_its_source_and_target_lengths():
  model = dr.Seq2Seq(
    encoder=dr.DeepRNN(cell='gru', features=H),
    decoder=dr.seq2seq.RecurrentDecoder(cell='gru', features=H, vocab_size=7, embed_features=3),
    source_vocab_size=9,
    embed_features=3,
  )
  source, target_in = jnp.ones((2, 6), jnp.int32), jnp.ones((2, 4), jnp.int32)
  batch = {'source': source, 'target_in': target_in}
  good = {'source': jnp.array([6, 2]), 'target': jnp.array([4, 1])}
  params = model.init(jax.random.key(0), batch, good)
  _one_line(
    lambda: model.apply(params, batch, {**good, 'source': [7, 2]}), r"Seq2Seq: lengths\['source'\]\[0\] = 7 .* T = 6"
  )
  _one_line(
    lambda: model.apply(params, batch, {**good, 'target': [4, 5]}), r"Seq2Seq: lengths\['target'\]\[1\] = 5 .* T = 4"
  )
  _one_line(lambda: model.apply(params, batch, {**good, 'source': [7, 2]}, method='predict'), r"lengths\['source'\]")
  _one_line(
    lambda: model.apply(params, {**batch, 'source': source[..., None]}, good),
    r"inputs\['source'\] token ids \[batch, S\]",
  )


def test_the_public_steps_refuse_a_batch_without_inputs_and_lengths(lstm):
  from deeprnn_jax.training import steps

  model, params = lstm
  for call, owner in (
    (lambda: steps.eval_step(model, None, params, {'inputs': inputs()}), 'eval_step'),
    (lambda: steps.predict_step(model, params, (inputs(), None)), 'predict_step'),
    (lambda: steps.train_step(model, None, None, None, {'lengths': [T] * B}), 'train_step'),
  ):
    _one_line(call, rf"{owner} expects batch = \{{'inputs': \.\.\., 'lengths': \[batch\], \.\.\.\}}")
