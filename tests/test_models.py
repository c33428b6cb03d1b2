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


@pytest.mark.parametrize(
    'pooling, bidirectional', [('last', False), ('mean', False), ('max', False), ('last', True)]
)
def test_pooled_logits_of_padded_batch_equal_each_sequence_alone(pooling, bidirectional):
  model = seed_classifier(pooling=pooling, bidirectional=bidirectional)
  params = model.init(jax.random.key(0), TOKENS, LENGTHS)
  logits = jax.jit(model.apply)(params, TOKENS, LENGTHS)
  for b, n in enumerate(np.asarray(LENGTHS)):
    alone = model.apply(params, TOKENS[b : b + 1, :n])
    np.testing.assert_allclose(logits[b], alone[0], rtol=1e-5, atol=1e-5)


def test_the_seeds_h_n_after_padding_reads_pad_tokens():
  """Taking the state after the padded end (the seed's ``h_n[-1]``) changes short sequences'
  logits; ``pooling='last'`` with lengths does not."""
  model = seed_classifier(pooling='last')
  params = model.init(jax.random.key(0), TOKENS, LENGTHS)
  with_lengths = model.apply(params, TOKENS, LENGTHS)
  reads_padding = model.apply(params, TOKENS)  # as if every sequence were 6 tokens long
  np.testing.assert_allclose(reads_padding[0], with_lengths[0], rtol=1e-6)  # full-length row agrees
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
