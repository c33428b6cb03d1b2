"""The encoder-decoder: padding never changes a pair's numbers (teacher forcing, greedy, beam),
beam search is greedy at width 1 and exact when nothing is pruned (checked against every output),
attention ignores padded source steps, the reversed-source option is reversal by hand, and the
bridge maps carries as documented."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax.seq2seq import RecurrentDecoder, _Bridge, beam_search, bridge_sources, greedy_search
from deeprnn_jax.tasks.base import BOS_ID, EOS_ID, PAD_ID

SOURCE_VOCAB, EMBED = 7, 4
# Two pairs, padded: the second is shorter on both sides.
SOURCE = np.array([[4, 5, 6, 5, 4], [6, 4, 0, 0, 0]], np.int32)
SOURCE_LEN = np.array([5, 2], np.int32)
TARGET_IN = np.array([[BOS_ID, 3, 4, 3], [BOS_ID, 4, 0, 0]], np.int32)
TARGET_LEN = np.array([4, 2], np.int32)
MAX_LEN = 5


def _model(kind: str, **changes) -> dr.Seq2Seq:
  if kind == 'bahdanau':  # bidirectional 2-layer LSTM -> 3-layer LSTM of another width: every bridge is learned
    encoder = dr.DeepRNN(cell='lstm', features=8, num_layers=2, bidirectional=True)
    decoder = RecurrentDecoder(
      vocab_size=6,
      embed_features=EMBED,
      cell='lstm',
      features=6,
      num_layers=3,
      attention='bahdanau',
      input_feeding=True,
    )
  elif kind == 'dot':  # 1-layer GRU -> 1-layer GRU of the same width: the bridge is the identity
    encoder = dr.DeepRNN(cell='gru', features=8)
    decoder = RecurrentDecoder(
      vocab_size=5, embed_features=EMBED, cell='gru', features=8, attention='dot', input_feeding=False
    )
  else:
    raise ValueError(kind)
  fields = dict(
    encoder=encoder, decoder=decoder, source_vocab_size=SOURCE_VOCAB, embed_features=EMBED, max_decode_len=MAX_LEN
  )
  fields.update(changes)
  return dr.Seq2Seq(**fields)


def _batch(rows=slice(None), source_width=None, target_width=None):
  """The test pairs (a subset of rows), optionally cut to narrower padded widths."""
  src_len, tgt_len = SOURCE_LEN[rows], TARGET_LEN[rows]
  s = source_width or SOURCE.shape[1]
  t = target_width or TARGET_IN.shape[1]
  inputs = {'source': jnp.asarray(SOURCE[rows, :s]), 'target_in': jnp.asarray(TARGET_IN[rows, :t])}
  return inputs, {'source': jnp.asarray(src_len), 'target': jnp.asarray(tgt_len)}


class _Compiled:
  """Parameters and jitted entry points of one model, shared by the tests of this module."""

  def __init__(self, model):
    self.model = model
    self.params = model.init(jax.random.key(0), *_batch())
    self.teacher = jax.jit(lambda p, i, l: model.apply(p, i, l, method='teacher_forced'))
    self.predict = jax.jit(lambda p, i, l: model.apply(p, i, l, method='predict'))


@pytest.fixture(scope='module')
def compiled():
  cache = {}

  def get(kind, **changes):
    key = (kind, tuple(sorted(changes.items())))
    if key not in cache:
      cache[key] = _Compiled(_model(kind, **changes))
    return cache[key]

  return get


# -- teacher forcing -------------------------------------------------------------------------------


@pytest.mark.parametrize('kind', ['bahdanau', 'dot'])
def test_logits_of_padded_batch_equal_each_pair_alone(compiled, kind):
  c = compiled(kind)
  logits, _ = c.teacher(c.params, *_batch())
  assert logits.shape == (2, 4, c.model.decoder.vocab_size)
  np.testing.assert_array_equal(logits[1, TARGET_LEN[1] :], 0.0)
  for b in range(2):
    alone, _ = c.teacher(c.params, *_batch(slice(b, b + 1), SOURCE_LEN[b], TARGET_LEN[b]))
    np.testing.assert_allclose(logits[b, : TARGET_LEN[b]], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kind', ['bahdanau', 'dot'])
def test_attention_weights_are_zero_on_padded_source_steps(compiled, kind):
  c = compiled(kind)
  _, weights = c.teacher(c.params, *_batch())
  weights = np.asarray(weights)
  assert weights.shape == (2, 4, 5)
  np.testing.assert_array_equal(weights[1, :, SOURCE_LEN[1] :], 0.0)  # padded source steps
  np.testing.assert_array_equal(weights[1, TARGET_LEN[1] :], 0.0)  # padded target steps
  for b in range(2):
    np.testing.assert_allclose(weights[b, : TARGET_LEN[b]].sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[b, : TARGET_LEN[b], : SOURCE_LEN[b]] > 0)


def test_reversed_source_equals_reversing_by_hand(compiled):
  c = compiled('bahdanau')
  reversing = c.model.clone(reverse_source=True)  # same parameter tree
  logits = reversing.apply(c.params, *_batch())
  by_hand = SOURCE.copy()
  for b, n in enumerate(SOURCE_LEN):
    by_hand[b, :n] = SOURCE[b, :n][::-1]
  inputs, lengths = _batch()
  want, _ = c.teacher(c.params, dict(inputs, source=jnp.asarray(by_hand)), lengths)
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
  unreversed, _ = c.teacher(c.params, inputs, lengths)
  assert np.abs(np.asarray(logits - unreversed)).max() > 1e-4  # the option does change the model


@pytest.mark.parametrize('side', ['source_embedding', 'encoder', 'decoder'])
def test_dropout_on_each_side_alone_draws_its_own_masks(side):
  """Dropout on one side only (the others at rate 0): training mode must differ from evaluation and
  between keys, so each side's masks are drawn and applied on their own (a side that ignored its
  rate or ran deterministically would give the evaluation numbers)."""
  rates = {'source_embedding': 0.0, 'encoder': 0.0, 'decoder': 0.0, side: 0.5}
  model = dr.Seq2Seq(
    encoder=dr.DeepRNN(cell='gru', features=8, num_layers=2, dropout_rate=rates['encoder']),
    decoder=RecurrentDecoder(
      vocab_size=5,
      embed_features=EMBED,
      cell='gru',
      features=8,
      num_layers=2,
      attention='general',
      dropout_rate=rates['decoder'],
    ),
    source_vocab_size=SOURCE_VOCAB,
    embed_features=EMBED,
    dropout_rate=rates['source_embedding'],
  )
  params = model.init(jax.random.key(0), *_batch())
  train = jax.jit(lambda key: model.apply(params, *_batch(), deterministic=False, rngs={'dropout': key}))
  a, b, c = train(jax.random.key(1)), train(jax.random.key(1)), train(jax.random.key(2))
  evaluation = model.apply(params, *_batch())
  np.testing.assert_array_equal(a, b)
  valid = np.arange(4)[None, :] < TARGET_LEN[:, None]
  for other in (c, evaluation):
    assert np.all(np.abs(np.asarray(a - other)).max(-1)[valid] > 1e-4), side  # every valid step of every pair


def test_training_mode_applies_dropout_on_both_sides():
  model = dr.Seq2Seq(
    encoder=dr.DeepRNN(cell='gru', features=8, num_layers=2, dropout_rate=0.3),
    decoder=RecurrentDecoder(
      vocab_size=5, embed_features=EMBED, cell='gru', features=8, num_layers=2, attention='general', dropout_rate=0.3
    ),
    source_vocab_size=SOURCE_VOCAB,
    embed_features=EMBED,
    dropout_rate=0.3,
  )
  params = model.init(jax.random.key(0), *_batch())
  train = jax.jit(lambda key: model.apply(params, *_batch(), deterministic=False, rngs={'dropout': key}))
  a, b, c = train(jax.random.key(1)), train(jax.random.key(1)), train(jax.random.key(2))
  np.testing.assert_array_equal(a, b)  # the same key, the same masks
  assert np.all(np.isfinite(a)) and np.abs(np.asarray(a - c)).max() > 1e-3
  np.testing.assert_array_equal(a[1, TARGET_LEN[1] :], 0.0)
  assert np.abs(np.asarray(a - model.apply(params, *_batch()))).max() > 1e-3


# -- decoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize('decode', ['greedy', 'beam'])
def test_decoding_of_padded_batch_equals_each_pair_alone(compiled, decode):
  c = compiled('bahdanau', decode=decode, beam_size=3)
  out = np.asarray(c.predict(c.params, *_batch()))
  assert out.shape == (2, MAX_LEN) and out.dtype == np.int32
  for b in range(2):
    alone = c.predict(c.params, *_batch(slice(b, b + 1), SOURCE_LEN[b], TARGET_LEN[b]))
    np.testing.assert_array_equal(out[b], alone[0])
  for row in out:  # PAD after the first EOS, and never PAD or BOS before it
    stop = list(row).index(EOS_ID) + 1 if EOS_ID in row else MAX_LEN
    assert np.all(row[stop:] == PAD_ID) and not np.isin(row[:stop], [PAD_ID, BOS_ID]).any()


def test_beam_size_one_is_greedy(compiled):
  greedy = compiled('bahdanau', decode='greedy', beam_size=3)
  beam = compiled('bahdanau', decode='beam', beam_size=1)
  batch = _batch()
  np.testing.assert_array_equal(beam.predict(beam.params, *batch), greedy.predict(greedy.params, *batch))


def _np_output_log_probs(logits):
  """Log-softmax over the tokens a decoder may emit (PAD and BOS never are), in float64 NumPy."""
  z = np.asarray(logits, np.float64).copy()
  z[..., [PAD_ID, BOS_ID]] = -np.inf
  top = z.max(-1, keepdims=True)
  return z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_beam_search_without_pruning_ranks_every_output_exactly(compiled, alpha):
  """Target vocabulary {PAD, BOS, EOS, 3, 4}, 4 steps: 1 + 2 + 4 + 8 outputs end with EOS and 16
  are cut at the length limit, 31 in all, which 32 beams hold without pruning. The beams' scores
  must be every output's teacher-forced, length-normalized log-probability, best first."""
  length = 4
  c = compiled('dot', beam_size=32, length_penalty=alpha, max_decode_len=length)
  sequences, scores = jax.jit(lambda p, i, l: c.model.apply(p, i, l, method='n_best'))(c.params, *_batch())
  outputs = [list(w) + [EOS_ID] for n in range(length) for w in itertools.product([3, 4], repeat=n)]
  outputs += [list(w) for w in itertools.product([3, 4], repeat=length)]
  assert len(outputs) == 31
  targets = np.full((len(outputs), length), PAD_ID, np.int32)
  for i, y in enumerate(outputs):
    targets[i, : len(y)] = y
  n = len(outputs)
  lens = np.array([len(y) for y in outputs], np.int32)
  target_in = np.concatenate([np.full((n, 1), BOS_ID, np.int32), targets[:, :-1]], axis=1)
  for b in range(2):
    inputs = {'source': jnp.asarray(np.repeat(SOURCE[b : b + 1], n, 0)), 'target_in': jnp.asarray(target_in)}
    lengths = {'source': jnp.full((n,), SOURCE_LEN[b]), 'target': jnp.asarray(lens)}
    logits, _ = c.teacher(c.params, inputs, lengths)
    log_p = np.take_along_axis(_np_output_log_probs(logits), targets[..., None], -1)[..., 0]
    log_p = np.where(np.arange(length)[None, :] < lens[:, None], log_p, 0.0).sum(1)
    brute = log_p / ((5.0 + lens) / 6.0) ** alpha  # GNMT (Wu et al. 2016): lp(Y) = ((5 + |Y|) / 6)^alpha
    order = np.argsort(-brute, kind='stable')
    assert brute[order[0]] - brute[order[1]] > 1e-3  # a clear winner, so float noise cannot flip it
    got = np.asarray(scores[b])
    assert np.isneginf(got[-1])  # 32 beams, 31 outputs
    np.testing.assert_allclose(got[:-1], brute[order], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sequences[b, 0], targets[order[0]])


def test_greedy_search_feeds_back_its_own_tokens_and_pads_after_eos():
  """A step function with fixed next-token log-probabilities per row (no model) where the most likely
  token depends on the previous one, EOS comes mid-sequence, and the table would go on after EOS."""
  # Tokens: PAD, BOS, EOS, a=3, b=4, c=5. Row 0 reads BOS->a->b->EOS, row 1 BOS->b->a->c->EOS; from EOS
  # and PAD the table's best is c, which a finished row must never write.
  chains = [
    {BOS_ID: 3, 3: 4, 4: EOS_ID, EOS_ID: 5, PAD_ID: 5, 5: 3},
    {BOS_ID: 4, 4: 3, 3: 5, 5: EOS_ID, EOS_ID: 5, PAD_ID: 5},
  ]
  table = np.full((2, 6, 6), np.log(0.1 / 5), np.float32)
  for row, chain in enumerate(chains):
    for last, best in chain.items():
      table[row, last, best] = np.log(0.9)

  def step_fn(row, tokens):  # the state is each row's index into the table
    return row, jnp.asarray(table)[row, tokens]

  out = jax.jit(lambda rows: greedy_search(step_fn, rows, 2, 7))(jnp.arange(2))
  np.testing.assert_array_equal(
    out, [[3, 4, EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID], [4, 3, 5, EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
  )


def test_beam_search_prunes_to_the_best_of_a_markov_chain():
  """A step function with fixed next-token log-probabilities (no model): 2 beams keep the two
  best prefixes by hand-computed scores and the finished hypotheses compete normalized."""
  # Tokens: PAD, BOS, EOS, a=3, b=4. p(next | last): from BOS: a .6, b .3, EOS .1; from a: EOS .5,
  # a .3, b .2; from b: EOS .9, a .05, b .05.
  table = np.full((5, 5), -np.inf, np.float32)
  table[BOS_ID, [EOS_ID, 3, 4]] = np.log([0.1, 0.6, 0.3])
  table[3, [EOS_ID, 3, 4]] = np.log([0.5, 0.3, 0.2])
  table[4, [EOS_ID, 3, 4]] = np.log([0.9, 0.05, 0.05])
  table[PAD_ID, [EOS_ID, 3, 4]] = 0.0  # never read for a live hypothesis

  def step_fn(state, tokens):
    return state, jnp.asarray(table)[tokens]

  seqs, scores = beam_search(step_fn, jnp.zeros((2,)), batch_size=1, beam_size=2, max_len=3, alpha=0.0)
  # Step 1 keeps "a" (.6) and "b" (.3), pruning "EOS" (.1); step 2's best are "a EOS" (.6 * .5)
  # and "b EOS" (.3 * .9), both finished, so the search stops there.
  np.testing.assert_array_equal(seqs[0], [[3, EOS_ID, PAD_ID], [4, EOS_ID, PAD_ID]])
  np.testing.assert_allclose(scores[0], np.log([0.30, 0.27]), rtol=1e-5)


# -- the bridge and validation -------------------------------------------------------------------


def test_bridge_sources_map_depths_as_documented():
  assert bridge_sources(3, 3) == (0, 1, 2)
  assert bridge_sources(4, 2) == (1, 3)
  assert bridge_sources(4, 1) == (3,)
  assert bridge_sources(1, 3) == (0, 0, 0)
  assert bridge_sources(2, 4) == (0, 0, 1, 1)


def _param_shapes(model):
  inputs, lengths = _batch()
  params = jax.eval_shape(model.init, jax.random.key(0), inputs, lengths)['params']
  logits = jax.eval_shape(model.apply, {'params': params}, inputs, lengths)
  return jax.tree.map(lambda x: x.shape, params), logits


def test_bridge_is_learned_only_where_carries_differ():
  assert 'bridge_layers' not in _param_shapes(_model('dot'))[0]  # same cell and width: identity
  shapes = _param_shapes(_model('bahdanau'))[0]['bridge_layers']
  # 3 decoder layers x LSTM (c, h), each read from both directions of an 8-wide encoder layer.
  assert shapes == {f'layer_{l}_part_{p}': {'kernel': (16, 6), 'bias': (6,)} for l in range(3) for p in range(2)}
  assert 'bridge_layers' not in _param_shapes(_model('bahdanau', bridge='zeros'))[0]
  dense = _param_shapes(_model('dot', bridge='dense'))[0]['bridge_layers']
  assert dense == {'layer_0_part_0': {'kernel': (8, 8), 'bias': (8,)}}


def test_bridge_maps_known_carries_as_numpy_does():
  """Bidirectional 2-layer LSTM carries (c, h) -> 3 decoder LSTM layers of another width: decoder layer l,
  part p is [forward part p; backward part p] of encoder layer sigma(l) = (0, 1, 1), times its kernel, plus
  its bias. Every carry part of every layer and direction holds different numbers, so reading one
  direction twice, h for c, or another layer changes the result. Then LSTM -> GRU (other carry
  structure): the GRU's h reads [c; h] of both directions."""
  rng = np.random.default_rng(0)
  finals = tuple(
    tuple(
      (jnp.asarray(rng.normal(size=(2, 3)), jnp.float32), jnp.asarray(rng.normal(size=(2, 3)), jnp.float32))
      for _direction in range(2)
    )
    for _layer in range(2)
  )
  lstm_templates = tuple((jnp.zeros((2, 4)), jnp.zeros((2, 4))) for _ in range(3))
  bridge = _Bridge(mode='auto', bidirectional=True)
  params = bridge.init(jax.random.key(0), finals, lstm_templates)
  out = bridge.apply(params, finals, lstm_templates)
  p = jax.tree.map(np.asarray, params['params'])
  for l, source in enumerate((0, 1, 1)):
    for part in range(2):
      x = np.concatenate([np.asarray(finals[source][0][part]), np.asarray(finals[source][1][part])], -1)
      dense = p[f'layer_{l}_part_{part}']
      np.testing.assert_allclose(out[l][part], x @ dense['kernel'] + dense['bias'], rtol=1e-5, atol=1e-5)
  gru_templates = (jnp.zeros((2, 5)),)
  params = bridge.init(jax.random.key(1), finals, gru_templates)
  (h,) = bridge.apply(params, finals, gru_templates)
  dense = jax.tree.map(np.asarray, params['params']['layer_0_part_0'])
  x = np.concatenate([np.asarray(v) for direction in finals[1] for v in direction], -1)  # top layer: c, h, c, h
  np.testing.assert_allclose(h, x @ dense['kernel'] + dense['bias'], rtol=1e-5, atol=1e-5)
  # Same cell and width, one direction: 'auto' passes each carry through as it is.
  one_way = tuple(f[0] for f in finals)
  same = tuple((jnp.zeros((2, 3)), jnp.zeros((2, 3))) for _ in range(2))
  passed = _Bridge(mode='auto', bidirectional=False).apply({}, one_way, same)
  for l in range(2):
    for part in range(2):
      np.testing.assert_array_equal(passed[l][part], one_way[l][part])


def test_bridge_between_different_cells_reads_all_carry_parts():
  """LSTM (c, h) encoder -> GRU h decoder: each GRU carry reads c and h; a complex LRU carry enters
  as [real; imag]."""
  lstm_to_gru = dr.Seq2Seq(
    encoder=dr.DeepRNN(cell='lstm', features=8, num_layers=4),
    decoder=RecurrentDecoder(vocab_size=6, embed_features=EMBED, cell='gru', features=5, num_layers=2),
    source_vocab_size=SOURCE_VOCAB,
    embed_features=EMBED,
  )
  shapes, logits = _param_shapes(lstm_to_gru)
  assert shapes['bridge_layers'] == {f'layer_{l}_part_0': {'kernel': (16, 5), 'bias': (5,)} for l in range(2)}
  assert logits.shape == (2, 4, 6)
  lru = dr.Seq2Seq(
    encoder=dr.DeepRNN(cell='lru', features=6),
    decoder=RecurrentDecoder(vocab_size=6, embed_features=EMBED, cell='lru', features=6, attention='general'),
    source_vocab_size=SOURCE_VOCAB,
    embed_features=EMBED,
    bridge='dense',
  )
  shapes, logits = _param_shapes(lru)
  (kernel,) = {v['kernel'] for v in shapes['bridge_layers'].values()}
  assert kernel[0] == kernel[1]  # [real; imag] in, [real; imag] out
  assert logits.shape == (2, 4, 6)


@pytest.mark.parametrize(
  'changes, match',
  [
    (dict(bridge='mean'), 'unknown bridge'),
    (dict(decode='sample'), 'unknown decode'),
    (dict(beam_size=0), 'beam_size'),
    (dict(length_penalty=-1.0), 'length_penalty'),
  ],
)
def test_bad_options_are_refused_before_any_compute(changes, match):
  with pytest.raises(ValueError, match=match):
    _model('dot', **changes)


def test_dot_attention_needs_matching_widths():
  with pytest.raises(ValueError, match="attention='dot' needs"):
    dr.Seq2Seq(
      encoder=dr.DeepRNN(cell='gru', features=8, bidirectional=True),
      decoder=RecurrentDecoder(vocab_size=5, embed_features=EMBED, cell='gru', features=8, attention='dot'),
      source_vocab_size=SOURCE_VOCAB,
      embed_features=EMBED,
    )
  with pytest.raises(ValueError, match='unknown attention'):
    RecurrentDecoder(vocab_size=5, embed_features=EMBED, attention='luong')
