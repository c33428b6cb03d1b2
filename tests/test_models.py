"""Task models: pooling reads valid steps only (the seed's h_n[-1]-after-padding bug, fixed), per-step
outputs are masked, and the seed's sentiment model learns a toy problem."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deeprnn_jax as dr

VOCAB, EMBED, HIDDEN = 12, 6, 8
TOKENS = jnp.array([[3, 5, 7, 2, 9, 4], [6, 2, 8, 0, 0, 0], [5, 0, 0, 0, 0, 0]])  # 0 = pad
LENGTHS = jnp.array([6, 3, 1])


def seed_classifier(**kwargs):
  """The seed's example: embedding -> 2-layer LSTM -> linear head."""
  rnn = dr.DeepRNN(cell='lstm', features=HIDDEN, num_layers=2, bidirectional=kwargs.pop('bidirectional', False))
  return dr.Classifier(rnn=rnn, num_classes=2, vocab_size=VOCAB, embed_features=EMBED, **kwargs)


def with_random_query(params, seed=7):
  """The attention query starts at zero (= mean pooling); a random one makes the softmax matter."""
  if 'attention_query' not in params['params']:
    return params
  q = params['params']['attention_query']
  return {'params': {**params['params'], 'attention_query': 3.0 * jax.random.normal(jax.random.key(seed), q.shape)}}


@pytest.mark.parametrize(
  'pooling, bidirectional',
  [('last', False), ('mean', False), ('max', False), ('last', True), ('attention', False), ('attention', True)],
)
def test_pooled_logits_of_padded_batch_equal_each_sequence_alone(pooling, bidirectional):
  model = seed_classifier(pooling=pooling, bidirectional=bidirectional)
  params = with_random_query(model.init(jax.random.key(0), TOKENS, LENGTHS))
  logits = jax.jit(model.apply)(params, TOKENS, LENGTHS)
  for b, n in enumerate(np.asarray(LENGTHS)):
    alone = model.apply(params, TOKENS[b : b + 1, :n])
    np.testing.assert_allclose(logits[b], alone[0], rtol=1e-5, atol=1e-5)


def test_flatten_logits_of_padded_batch_equal_each_padded_sequence_alone():
  """Flatten fixes the length, so a sequence 'alone' is a batch of one, still padded to 6 steps."""
  model = seed_classifier(pooling='flatten', bidirectional=True)
  params = model.init(jax.random.key(0), TOKENS, LENGTHS)
  assert params['params']['out']['kernel'].shape == (6 * 2 * HIDDEN, 2)  # time x (both directions' H)
  logits = jax.jit(model.apply)(params, TOKENS, LENGTHS)
  for b in range(len(LENGTHS)):
    alone = model.apply(params, TOKENS[b : b + 1], LENGTHS[b : b + 1])
    np.testing.assert_allclose(logits[b], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('pooling', ['flatten', 'attention', 'mean', 'max', 'last'])
def test_readouts_ignore_what_the_padded_steps_hold(pooling):
  """Other tokens (not the pad id) past each length: the same logits."""
  model = seed_classifier(pooling=pooling, bidirectional=True)
  params = with_random_query(model.init(jax.random.key(0), TOKENS, LENGTHS))
  junk = jax.random.randint(jax.random.key(3), TOKENS.shape, 1, VOCAB)
  padded_with_junk = jnp.where(jnp.arange(6)[None, :] < LENGTHS[:, None], TOKENS, junk)
  assert (padded_with_junk != TOKENS).any()
  np.testing.assert_allclose(
    model.apply(params, padded_with_junk, LENGTHS), model.apply(params, TOKENS, LENGTHS), rtol=1e-5, atol=1e-5
  )


def np_readout(y, lengths, pooling, bidirectional=False, query=None):
  """The readout equations in NumPy, one sequence at a time over its valid steps y[b, :n]."""
  out = []
  for b, n in enumerate(lengths):
    v = y[b, :n]
    if pooling == 'last':
      out.append(np.concatenate([v[-1], v[0]]) if bidirectional else v[-1])
    elif pooling == 'mean':
      out.append(v.mean(axis=0))
    elif pooling == 'max':
      out.append(v.max(axis=0))
    elif pooling == 'flatten':
      full = np.zeros_like(y[b])
      full[:n] = v
      out.append(full.reshape(-1))
    elif pooling == 'attention':
      s = v @ query / np.sqrt(y.shape[-1])
      a = np.exp(s - s.max())
      out.append((a / a.sum()) @ v)
  return np.stack(out)


@pytest.mark.parametrize('pooling', dr.models.POOLINGS)
@pytest.mark.parametrize('bidirectional', [False, True])
def test_every_readout_matches_its_numpy_equations(pooling, bidirectional):
  """Every name in POOLINGS (the config's choices) has a NumPy reference here: a new readout must add one."""
  rng = np.random.default_rng(0)
  y = rng.normal(size=(4, 6, 5)).astype(np.float32)
  lengths = np.array([6, 3, 1, 4])
  query = rng.normal(size=5).astype(np.float32) * 2
  want = np_readout(y, lengths, pooling, bidirectional, query)
  got = dr.models.pool(jnp.asarray(y), jnp.asarray(lengths), pooling, bidirectional, jnp.asarray(query))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Without lengths every step is valid.
  full = dr.models.pool(jnp.asarray(y), None, pooling, bidirectional, jnp.asarray(query))
  np.testing.assert_allclose(full, np_readout(y, [6] * 4, pooling, bidirectional, query), rtol=1e-5, atol=1e-6)


def test_empty_sequences_pool_to_zeros_not_nan():
  y = jnp.ones((2, 3, 4))
  lengths = jnp.array([0, 3])
  for pooling in ('mean', 'flatten', 'attention'):
    got = dr.models.pool(y, lengths, pooling, query=jnp.ones(4))
    np.testing.assert_array_equal(got[0], 0.0)
    assert np.isfinite(np.asarray(got)).all()


def test_attention_starts_as_mean_pooling():
  """The query is zero at init: equal weights over the valid steps, i.e. the mean."""
  attention, mean = seed_classifier(pooling='attention'), seed_classifier(pooling='mean')
  params = attention.init(jax.random.key(0), TOKENS, LENGTHS)
  np.testing.assert_array_equal(params['params']['attention_query'], 0.0)
  shared = {'params': {k: v for k, v in params['params'].items() if k != 'attention_query'}}
  np.testing.assert_allclose(
    attention.apply(params, TOKENS, LENGTHS), mean.apply(shared, TOKENS, LENGTHS), rtol=1e-5, atol=1e-6
  )


def test_flatten_on_another_length_is_a_one_line_error():
  model = seed_classifier(pooling='flatten')
  params = model.init(jax.random.key(0), TOKENS, LENGTHS)
  with pytest.raises(ValueError, match=r"pooling='flatten' reads exactly 6 steps .* got 4: pad or crop"):
    model.apply(params, TOKENS[:, :4], jnp.minimum(LENGTHS, 4))


def test_the_seeds_h_n_after_padding_reads_pad_tokens():
  """Taking the state after the padded end (the seed's ``h_n[-1]``) changes short sequences'
  logits; ``pooling='last'`` with lengths does not."""
  model = seed_classifier(pooling='last')
  params = model.init(jax.random.key(0), TOKENS, LENGTHS)
  with_lengths = model.apply(params, TOKENS, LENGTHS)
  reads_padding = model.apply(params, TOKENS)  # as if every sequence were 6 tokens long
  np.testing.assert_allclose(reads_padding[0], with_lengths[0], rtol=1e-5, atol=1e-6)  # full-length row agrees
  assert np.abs(np.asarray(reads_padding[1:] - with_lengths[1:])).max() > 1e-3


def test_per_step_model_masks_outputs_past_each_length():
  rnn = dr.DeepRNN(cell='gru', features=HIDDEN, num_layers=2, bidirectional=True)
  model = dr.PerStepModel(rnn=rnn, out_features=3, vocab_size=VOCAB, embed_features=EMBED, head_features=(5,))
  params = model.init(jax.random.key(0), TOKENS, LENGTHS)
  out = model.apply(params, TOKENS, LENGTHS)
  assert out.shape == (3, 6, 3)
  for b, n in enumerate(np.asarray(LENGTHS)):
    np.testing.assert_array_equal(out[b, n:], 0.0)
    np.testing.assert_allclose(out[b, :n], model.apply(params, TOKENS[b : b + 1, :n])[0], rtol=1e-5, atol=1e-5)


def test_regressor_on_real_features_with_input_projection():
  x = jax.random.normal(jax.random.key(1), (4, 9, 2))
  model = dr.Regressor(rnn=dr.DeepRNN(cell='indrnn', features=HIDDEN, num_layers=3), out_features=1, input_features=6)
  params = model.init(jax.random.key(0), x)
  assert params['params']['input_proj']['kernel'].shape == (2, 6)
  assert model.apply(params, x).shape == (4, 1)


def test_count_params_counts_every_scalar():
  model = dr.DeepRNN(cell='lstm', features=HIDDEN, num_layers=2)
  params = model.init(jax.random.key(0), jnp.zeros((1, 3, 5)))
  want = (5 * 4 * HIDDEN + 4 * HIDDEN + HIDDEN * 4 * HIDDEN) + (HIDDEN * 4 * HIDDEN + 4 * HIDDEN + HIDDEN * 4 * HIDDEN)
  assert dr.count_params(params) == want


def test_seed_sentiment_model_learns_a_toy_task():
  """Class = whether token 3 occurs anywhere in a variable-length sequence: the model must carry the
  evidence to the last valid step, and padding must not wash it out."""
  rng = np.random.default_rng(0)
  lengths = rng.integers(2, 12, size=64)
  tokens = rng.integers(4, VOCAB, size=(64, 12))
  labels = rng.integers(0, 2, size=64)
  for i in np.flatnonzero(labels):
    tokens[i, rng.integers(0, lengths[i])] = 3
  tokens = np.where(np.arange(12)[None] < lengths[:, None], tokens, 0)
  tokens, lengths, labels = jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(labels)

  model = seed_classifier(pooling='last')
  params = model.init(jax.random.key(0), tokens, lengths)
  opt = optax.adam(3e-2)
  state = opt.init(params)

  def loss_fn(p):
    logits = model.apply(p, tokens, lengths)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

  @jax.jit
  def train_step(p, s):
    (loss, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(p)
    updates, s = opt.update(g, s)
    return optax.apply_updates(p, updates), s, loss

  first = None
  for _ in range(60):
    params, state, loss = train_step(params, state)
    first = loss if first is None else first
  accuracy = float((jnp.argmax(loss_fn(params)[1], -1) == labels).mean())
  assert float(loss) < 0.3 * float(first)
  assert accuracy >= 0.95


def test_the_models_refuse_complex_inputs_and_take_lengths_as_a_list():
  """Complex features were cast to real silently before DeepRNN's own check could see them; a list
  of lengths failed inside the pooling."""
  rnn = dr.DeepRNN(cell='gru', features=4)
  model = dr.Classifier(rnn=rnn, num_classes=3, pooling='mean')
  x = jnp.ones((2, 5, 3))
  params = model.init(jax.random.key(0), x, jnp.array([5, 3]))
  with pytest.raises(ValueError, match=r'^Classifier expects real inputs, got complex64: pass the real and imaginary'):
    model.apply(params, x.astype(jnp.complex64), jnp.array([5, 3]))
  np.testing.assert_array_equal(model.apply(params, x, [5, 3]), model.apply(params, x, jnp.array([5, 3])))
  tagger = dr.PerStepModel(rnn=rnn, out_features=2)
  tparams = tagger.init(jax.random.key(0), x, jnp.array([5, 3]))
  np.testing.assert_array_equal(tagger.apply(tparams, x, (5, 3)), tagger.apply(tparams, x, jnp.array([5, 3])))
