r"""Deep recurrent encoder-decoder (sequence to sequence): ``Seq2Seq``, ``RecurrentDecoder`` and
the searches that decode with them (``greedy_search``, ``beam_search``).

Sutskever et al. 2014 (a 4-layer LSTM read the source, its final state started a 4-layer LSTM
decoder, and reversing the source helped), with the attention of Bahdanau et al. 2015 and Luong
et al. 2015 as an option. With source :math:`x_{1..S}` and target :math:`y_{1..n}` followed by
``EOS`` (:math:`y_{n+1}`):

.. math::
   (c^{(1..L_e)}, m_{1..S}) = \mathrm{Encoder}(E_s x), \qquad
   s_0^{(l)} = \mathrm{Bridge}_l\big(c^{(\sigma(l))}\big), \quad l = 1..L_d,

   s_t, h_t = \mathrm{StackedCell}\big(s_{t-1},\; [E_t y_{t-1};\ \tilde h_{t-1}]\big), \qquad
   y_0 = \mathrm{BOS},

   a_{t,j} = \operatorname{softmax}_{j \le |x|}\ \mathrm{score}(h_t, m_j), \quad
   \tilde h_t = \tanh\big(W_c [\textstyle\sum_j a_{t,j} m_j;\ h_t]\big), \qquad
   p(y_t \mid y_{<t}, x) = \operatorname{softmax}(W_o \tilde h_t + b_o),

where :math:`m` are the encoder's top outputs (the memory), :math:`h_t` the decoder's top output
and :math:`\tilde h_t` Luong et al.'s attentional vector. Without attention :math:`\tilde h_t = h_t`
and nothing is fed back. Training is teacher-forced (the decoder reads the true :math:`y_{t-1}`);
decoding feeds back its own choice, greedily or by beam search.

Token ids are those of ``deeprnn_jax.tasks.base``: ``PAD_ID`` 0, ``BOS_ID`` 1, ``EOS_ID`` 2,
``OOV_ID`` 3 (the tasks and the model read them from that one place).

Masking, both sides: the encoder reads each source only up to its length (``DeepRNN`` holds the
carries and zeros the outputs past it), attention weights are exactly zero on padded source steps,
and logits are zero past each target's length, so each pair of a padded batch gets the numbers it
gets alone; decoding is row-independent too (a finished row only writes ``PAD``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.cells.registry import resolve_cell
from deeprnn_jax.sequences import checked_lengths, reverse_padded, valid_mask
from deeprnn_jax.stack import DeepRNN, StackedCell
from deeprnn_jax.tasks.base import BOS_ID, EOS_ID, PAD_ID

Array = jax.Array
State = Any
StepFn = Callable[[State, Array], tuple[State, Array]]

ATTENTIONS = ('none', 'bahdanau', 'dot', 'general')
BRIDGES = ('auto', 'dense', 'zeros')
DECODES = ('greedy', 'beam')


def _check(owner: str, name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f'{owner}: unknown {name} {value!r}; choose one of {list(choices)}')


# -------------------------------------------------------------------------------------------------
# Searches: pure functions of a step function, so they are tested without a model.


def length_penalty(length: Array, alpha: float) -> Array:
  r"""GNMT's length penalty (Wu et al. 2016): :math:`lp(Y) = ((5 + |Y|) / 6)^\alpha`.

  A hypothesis is ranked by :math:`\log P(Y \mid X) / lp(Y)`, with :math:`|Y|` its generated tokens
  (``EOS`` included). ``alpha = 0`` ranks by the plain log-probability (short outputs win);
  larger ``alpha`` moves towards the per-token average (``alpha = 1`` divides by
  :math:`(5 + |Y|)/6`, close to dividing by the length for long outputs).
  """
  return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def decoding_log_probs(logits: Array) -> Array:
  """``[..., V]`` logits -> log-probabilities over the tokens a decoder may emit.

  ``PAD`` and ``BOS`` are never outputs: their logits are set to :math:`-\\infty` before the
  softmax, so the rest is renormalized over ``EOS`` and the real tokens. Greedy search, beam search
  and any exhaustive check of them score sequences with this same function.
  """
  vocab = jnp.arange(logits.shape[-1]).reshape((1,) * (logits.ndim - 1) + (-1,))
  allowed = (vocab != PAD_ID) & (vocab != BOS_ID)
  logits = logits.astype(jnp.float32)
  return jax.nn.log_softmax(jnp.where(allowed, logits, -jnp.inf), axis=-1)


def greedy_search(step_fn: StepFn, state: State, batch_size: int, max_len: int) -> Array:
  """Greedy decoding: at each step the most likely token (``decoding_log_probs``' argmax).

  ``step_fn(state, tokens [batch]) -> (state, log_probs [batch, V])`` runs the decoder one step.
  Returns ``[batch, max_len]`` int32: each row up to and including its first ``EOS``, then ``PAD``
  (a row that never emits ``EOS`` fills all ``max_len`` steps). The loop stops when every row
  is done or at ``max_len``; the shape is fixed either way.
  """

  def cond(carry):
    t, _, _, done, _ = carry
    return (t < max_len) & ~jnp.all(done)

  def body(carry):
    t, state, last, done, tokens = carry
    state, log_probs = step_fn(state, last)
    token = jnp.where(done, PAD_ID, jnp.argmax(log_probs, axis=-1).astype(jnp.int32))
    tokens = tokens.at[:, t].set(token)
    return t + 1, state, token, done | (token == EOS_ID), tokens

  init = (
    jnp.int32(0),
    state,
    jnp.full((batch_size,), BOS_ID, jnp.int32),
    jnp.zeros((batch_size,), bool),
    jnp.full((batch_size, max_len), PAD_ID, jnp.int32),
  )
  return jax.lax.while_loop(cond, body, init)[-1]


def _gather_beams(tree, beam: Array, batch_size: int, beam_size: int):
  """Rows ``b * K + k`` of every leaf (``[batch * K, ...]``) -> rows ``b * K + beam[b, k]``."""

  def gather(x):
    x = x.reshape((batch_size, beam_size) + x.shape[1:])
    index = beam.reshape(beam.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1).reshape((batch_size * beam_size,) + x.shape[2:])

  return jax.tree.map(gather, tree)


def beam_search(
  step_fn: StepFn, state: State, batch_size: int, beam_size: int, max_len: int, alpha: float = 0.6
) -> tuple[Array, Array]:
  r"""Batch-parallel beam search of width ``K = beam_size``, fixed shapes, jittable.

  ``state``'s leaves hold ``batch * K`` rows (row ``b * K + k`` is beam ``k`` of example ``b``;
  repeat the decoder's initial state ``K`` times per example). ``step_fn(state, tokens
  [batch * K]) -> (state, log_probs [batch * K, V])`` as for ``greedy_search``.

  Each example keeps ``K`` hypotheses, alive or finished (ended by ``EOS``). At each step every
  alive hypothesis is extended by every token and every finished one is carried as it is; the ``K``
  best of these candidates by *normalized* score :math:`\log P / lp(|Y|)` (``length_penalty``,
  GNMT's with ``alpha``; an alive hypothesis is normalized by its current length) survive. A
  hypothesis still alive at ``max_len`` is finished there without ``EOS`` (truncated). The loop
  stops when every hypothesis of every example is finished, or at ``max_len``. So ``K = 1`` is
  greedy search, and with ``K`` at least the number of all hypotheses nothing is pruned: the
  result is the exact argmax over all outputs of at most ``max_len`` tokens.

  Returns ``(sequences [batch, K, max_len] int32, scores [batch, K])``, best first: tokens up to
  and including ``EOS``, then ``PAD``; scores are the normalized log-probabilities.
  """
  B, K, L = batch_size, beam_size, max_len
  neg_inf = jnp.float32(-jnp.inf)

  def cond(carry):
    t, _, _, log_p, _, finished, _ = carry
    # A hypothesis with score -inf (an empty slot of the first steps) can never win: done too.
    return (t < L) & ~jnp.all(finished | jnp.isneginf(log_p))

  def body(carry):
    t, state, seqs, log_p, length, finished, last = carry
    state, step_lp = step_fn(state, last)
    V = step_lp.shape[-1]
    step_lp = step_lp.reshape(B, K, V)
    grown = log_p[..., None] + step_lp
    # A finished hypothesis has one candidate, itself, in its PAD slot (never an emitted token).
    kept = jnp.where((jnp.arange(V) == PAD_ID)[None, None, :], log_p[..., None], neg_inf)
    raw = jnp.where(finished[..., None], kept, grown)
    cand_len = jnp.where(finished, length, t + 1)
    norm = raw / length_penalty(cand_len, alpha)[..., None]
    _, index = jax.lax.top_k(norm.reshape(B, K * V), K)
    beam, token = index // V, (index % V).astype(jnp.int32)
    was_finished = jnp.take_along_axis(finished, beam, axis=1)
    token = jnp.where(was_finished, PAD_ID, token)
    log_p = jnp.take_along_axis(raw.reshape(B, K * V), index, axis=1)
    length = jnp.take_along_axis(cand_len, beam, axis=1)
    seqs = jnp.take_along_axis(seqs, beam[..., None], axis=1).at[:, :, t].set(token)
    state = _gather_beams(state, beam, B, K)
    return t + 1, state, seqs, log_p, length, was_finished | (token == EOS_ID), token.reshape(B * K)

  init = (
    jnp.int32(0),
    state,
    jnp.full((B, K, L), PAD_ID, jnp.int32),
    # Only beam 0 is live at the start, or the K beams would be K copies of one hypothesis.
    jnp.broadcast_to(jnp.where(jnp.arange(K) == 0, 0.0, neg_inf), (B, K)).astype(jnp.float32),
    jnp.zeros((B, K), jnp.int32),
    jnp.zeros((B, K), bool),
    jnp.full((B * K,), BOS_ID, jnp.int32),
  )
  _, _, seqs, log_p, length, _, _ = jax.lax.while_loop(cond, body, init)
  scores = log_p / length_penalty(jnp.maximum(length, 1), alpha)
  order = jnp.argsort(-scores, axis=1, stable=True)
  return jnp.take_along_axis(seqs, order[..., None], axis=1), jnp.take_along_axis(scores, order, axis=1)


# -------------------------------------------------------------------------------------------------
# Modules.


def bridge_sources(encoder_layers: int, decoder_layers: int) -> tuple[int, ...]:
  r"""Which encoder layer's final carry starts each decoder layer:
  :math:`\sigma(l) = \lceil (l + 1) L_e / L_d \rceil - 1` (0-based).

  Equal depths map one to one; the top decoder layer always starts from the top encoder layer;
  in between the layers spread evenly: ``L_e = 4, L_d = 2 -> (1, 3)``; ``L_e = 1, L_d = 3 ->
  (0, 0, 0)``; ``L_e = 2, L_d = 4 -> (0, 0, 1, 1)``.
  """
  return tuple(-(-(l + 1) * encoder_layers // decoder_layers) - 1 for l in range(decoder_layers))


def _as_real(x: Array) -> Array:
  """A complex carry (e.g. LRU's) as ``[real; imag]`` features, so a real Dense can read it."""
  return jnp.concatenate([x.real, x.imag], axis=-1) if jnp.iscomplexobj(x) else x


class _Bridge(nn.Module):
  r"""Encoder final carries -> decoder initial carries (see ``Seq2Seq.bridge``).

  Decoder layer ``l`` reads encoder layer :math:`\sigma(l)` (``bridge_sources``). Carries are
  pytrees (an LSTM's is ``(c, h)``); part ``p`` of the decoder carry is made from part ``p`` of the
  encoder carry when the two cells' carries have the same structure (from both directions,
  concatenated, for a bidirectional encoder), else from all parts of that encoder layer
  concatenated. It is the part itself when ``mode='auto'`` and it already has the decoder's
  shape and dtype (same cell, width, one direction), else a learned ``Dense`` ``layer_{l}_part_{p}``
  (linear, with bias; complex parts enter as ``[real; imag]`` and leave the same way).
  """

  mode: str
  bidirectional: bool

  @nn.compact
  def __call__(self, finals: Sequence[Any], templates: Sequence[Any]) -> tuple[Any, ...]:
    out = []
    for l, (source, template) in enumerate(zip(bridge_sources(len(finals), len(templates)), templates)):
      directions = tuple(finals[source]) if self.bidirectional else (finals[source],)
      leaves, treedef = jax.tree.flatten(template)
      same = all(jax.tree.structure(d) == treedef for d in directions)
      parts = []
      for p, target in enumerate(leaves):
        inputs = (
          [jax.tree.leaves(d)[p] for d in directions] if same else [x for d in directions for x in jax.tree.leaves(d)]
        )
        if (
          self.mode == 'auto'
          and len(inputs) == 1
          and inputs[0].shape == target.shape
          and inputs[0].dtype == target.dtype
        ):
          parts.append(inputs[0])
          continue
        width = target.shape[-1] * (2 if jnp.iscomplexobj(target) else 1)
        y = nn.Dense(width, name=f'layer_{l}_part_{p}')(jnp.concatenate([_as_real(x) for x in inputs], -1))
        if jnp.iscomplexobj(target):
          y = jax.lax.complex(y[..., : target.shape[-1]], y[..., target.shape[-1] :])
        parts.append(y.astype(target.dtype))
      out.append(jax.tree.unflatten(treedef, parts))
    return tuple(out)


class RecurrentDecoder(nn.Module):
  r"""A deep recurrent decoder: a ``StackedCell`` of per-layer cells stepped over the target, with
  optional attention over an encoder's outputs (see the module docstring for the equations).

  The state is ``{'carries': per-layer carries, 'feed': [batch, H] the last attentional vector}``.
  ``step`` runs one step (teacher forcing and decoding both use it); ``__call__`` runs it over a
  whole target under teacher forcing.

  Attributes:
    vocab_size: target vocabulary size ``V`` (ids as in ``deeprnn_jax.tasks.base``).
    embed_features: target embedding width ``E``.
    cell: as ``DeepRNN``'s.
    features: as ``DeepRNN``'s; ``H`` is the top layer's width.
    num_layers: as ``DeepRNN``'s.
    cell_kwargs: as ``DeepRNN``'s.
    attention: ``'none'``; or the score of :math:`h_t` (``[batch, H]``) against every memory
      vector :math:`m_j` (``[batch, S, D]``): ``'bahdanau'``, additive (Bahdanau et al. 2015),
      :math:`v^\top \tanh(W_q h_t + W_k m_j + b)` with width ``attention_features``;
      ``'dot'``, :math:`h_t^\top m_j` (Luong et al. 2015; needs ``D == H``); ``'general'``,
      :math:`h_t^\top W_a m_j` (Luong et al. 2015). All take the *current* top state
      :math:`h_t` as the query, Luong et al.'s placement (they evaluated Bahdanau's additive
      score there too); with ``input_feeding`` the previous step's attention reaches the
      recurrence through the input, as in Bahdanau et al.'s decoder. Scores of padded source
      steps are masked before the softmax and their weights are exactly 0.
    attention_features: width of the additive score (default ``H``).
    input_feeding: feed :math:`\tilde h_{t-1}` into the bottom layer with the embedding (Luong et
      al. 2015); without it the decoder's recurrence never sees the attention. Ignored without
      attention.
    dropout_rate: dropout on the target embeddings and on :math:`\tilde h_t` before the output
      layer (inside the step loop, so it needs the ``'dropout'`` rng when not deterministic).
  """

  vocab_size: int
  embed_features: int
  cell: str | type = 'lstm'
  features: int | Sequence[int] = 128
  num_layers: int | None = None
  cell_kwargs: Mapping[str, Any] | None = None
  attention: str = 'none'
  attention_features: int | None = None
  input_feeding: bool = True
  dropout_rate: float = 0.0

  def __post_init__(self):
    _check('RecurrentDecoder', 'attention', self.attention, ATTENTIONS)
    resolve_cell(self.cell)
    if not self.layer_features or any(not isinstance(w, int) or w <= 0 for w in self.layer_features):
      raise ValueError(f'RecurrentDecoder: features must be positive integers; got {self.features!r}')
    if self.vocab_size <= EOS_ID + 1:
      raise ValueError(f'RecurrentDecoder: vocab_size {self.vocab_size} leaves no token beside PAD, BOS, EOS')
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f'RecurrentDecoder: dropout_rate must be in [0, 1); got {self.dropout_rate!r}')
    super().__post_init__()

  @property
  def layer_features(self) -> tuple[int, ...]:
    """Hidden size of each layer, bottom first."""
    if isinstance(self.features, int):
      return (self.features,) * (1 if self.num_layers is None else self.num_layers)
    widths = tuple(self.features)
    if self.num_layers is not None and self.num_layers != len(widths):
      raise ValueError(f'RecurrentDecoder: num_layers={self.num_layers} but features has {len(widths)} entries')
    return widths

  def setup(self):
    cell_cls = resolve_cell(self.cell)
    kwargs = dict(self.cell_kwargs or {})
    self.embed = nn.Embed(self.vocab_size, self.embed_features)
    self.stack = StackedCell(cells=tuple(cell_cls(features=w, **kwargs) for w in self.layer_features))
    self.drop = nn.Dropout(self.dropout_rate)
    top = self.layer_features[-1]
    if self.attention == 'bahdanau':
      width = self.attention_features or top
      self.query_proj = nn.Dense(width, use_bias=False)
      self.memory_proj = nn.Dense(width)
      self.score_vector = nn.Dense(1, use_bias=False)
    elif self.attention == 'general':
      self.memory_proj = nn.Dense(top, use_bias=False)
    if self.attention != 'none':
      self.combine = nn.Dense(top, use_bias=False)
    self.out = nn.Dense(self.vocab_size)

  def initial_state(self, carries: Sequence[Any] | None, batch_size: int) -> State:
    """The state before the first step: ``carries`` (zeros if None) and a zero feed."""
    if carries is None:
      carries = self.zero_carries(batch_size)
    return {'carries': tuple(carries), 'feed': jnp.zeros((batch_size, self.layer_features[-1]), jnp.float32)}

  @nn.nowrap
  def zero_carries(self, batch_size: int) -> tuple[Any, ...]:
    """Per layer, a zero carry (the shapes and structure the bridge must produce)."""
    cell_cls, kwargs = resolve_cell(self.cell), dict(self.cell_kwargs or {})
    return tuple(
      cell_cls(features=w, parent=None, **kwargs).initialize_carry(jax.random.key(0), (batch_size, 1))
      for w in self.layer_features
    )

  def prepare_memory(self, memory: Array, mask: Array) -> dict[str, Array] | None:
    """Encoder outputs ``[batch, S, D]`` and their ``[batch, S]`` validity -> what every step
    attends to; the keys' projection is done once here, not at every step."""
    if self.attention == 'none':
      return None
    keys = self.memory_proj(memory) if self.attention in ('bahdanau', 'general') else memory
    return {'values': memory, 'keys': keys, 'mask': mask}

  def attend(self, h: Array, memory: dict[str, Array]) -> Array:
    """Attention weights ``[batch, S]`` of query ``h`` ``[batch, H]``; exactly 0 where masked."""
    keys, mask = memory['keys'], memory['mask']
    if self.attention == 'bahdanau':
      scores = self.score_vector(jnp.tanh(self.query_proj(h)[:, None, :] + keys))[..., 0]
    else:
      scores = jnp.einsum('bh,bsh->bs', h, keys)
    # A finite floor, not -inf: a row with no valid step gets zero weights instead of NaN.
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    return jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)

  def step(
    self, state: State, token: Array, memory: dict[str, Array] | None, *, deterministic: bool = True
  ) -> tuple[State, Array, Array | None]:
    """One step: ``token`` ``[batch]`` int (the previous output) -> ``(state, logits [batch, V],
    attention weights [batch, S] or None)``."""
    x = self.drop(self.embed(token), deterministic=deterministic)
    if self.attention != 'none' and self.input_feeding:
      x = jnp.concatenate([x, state['feed'].astype(x.dtype)], axis=-1)
    carries, h = self.stack(state['carries'], x)
    weights = None
    if self.attention == 'none':
      out = h
    else:
      weights = self.attend(h, memory)
      context = jnp.einsum('bs,bsd->bd', weights, memory['values'])
      out = jnp.tanh(self.combine(jnp.concatenate([context, h], axis=-1)))
    logits = self.out(self.drop(out, deterministic=deterministic))
    return {'carries': carries, 'feed': out.astype(jnp.float32)}, logits, weights

  def __call__(
    self, state: State, target_in: Array, memory: dict[str, Array] | None, *, deterministic: bool = True
  ) -> tuple[Array, Array | None]:
    """Teacher forcing over ``target_in`` ``[batch, T]`` -> ``(logits [batch, T, V], attention
    [batch, T, S] or None)`` (not masked here: ``Seq2Seq`` zeros them past each length)."""

    def body(module, state, token):
      state, logits, weights = module.step(state, token, memory, deterministic=deterministic)
      return state, (logits, weights)

    scan = nn.scan(
      body, variable_broadcast='params', split_rngs={'params': False, 'dropout': True}, in_axes=1, out_axes=1
    )
    _, (logits, weights) = scan(self, state, target_in)
    return logits, weights


def _checked_lengths(inputs: Mapping[str, Array], lengths: Mapping[str, Array], *also: str) -> dict[str, Array]:
  """``lengths['source']`` (and ``also``: ``'target'``) checked against the widths of ``inputs['source']``
  (token ids ``[batch, S]``) and ``inputs['target_in']`` as ``DeepRNN`` checks its own
  (``sequences.checked_lengths``), or a one-line error naming the key."""
  if not isinstance(inputs, Mapping) or not isinstance(lengths, Mapping) or 'source' not in lengths:
    raise ValueError(
      "Seq2Seq expects inputs = {'source': [batch, S] ids, 'target_in': [batch, T] ids} and lengths = "
      f"{{'source': [batch], 'target': [batch]}}, got {type(inputs).__name__} and {type(lengths).__name__}"
    )
  shape, dtype = jnp.shape(inputs['source']), jnp.result_type(inputs['source'])
  if len(shape) != 2 or not jnp.issubdtype(dtype, jnp.integer):
    raise ValueError(f"Seq2Seq expects inputs['source'] token ids [batch, S] integers, got shape {shape} {dtype}")
  out = {'source': checked_lengths(lengths['source'], *shape, owner='Seq2Seq', name="lengths['source']")}
  for key in also:
    width = jnp.shape(inputs['target_in'])
    out[key] = checked_lengths(lengths.get(key), width[0], width[-1], owner='Seq2Seq', name=f'lengths[{key!r}]')
  return out


class Seq2Seq(nn.Module):
  r"""A deep recurrent encoder-decoder: ``DeepRNN`` encoder, bridge, ``RecurrentDecoder``.

  Called as the trainer calls every model, ``model.apply(variables, inputs, lengths,
  deterministic=..., rngs=...)``, with the ``'sequence'`` batch of ``deeprnn_jax.tasks.base``:

  * ``inputs = {'source': [batch, S] int32, 'target_in': [batch, T] int32}`` (``BOS`` + target),
  * ``lengths = {'source': [batch], 'target': [batch]}``;
  * ``__call__ -> logits [batch, T, V]`` (teacher forcing), zero past ``lengths['target']``;
  * ``predict(inputs, lengths) -> [batch, max_len]`` int32 decoded ids (``method='predict'``):
    up to and including ``EOS``, then ``PAD``; ``target_in`` is only read for its width.

  Attributes:
    encoder: the ``DeepRNN`` over the embedded source (any cell, depth, bidirectional; its dropout
      is its own). Its top outputs are the attention memory.
    decoder: the ``RecurrentDecoder`` (its cell may differ from the encoder's).
    source_vocab_size: the source vocabulary size.
    embed_features: the source embedding width.
    bridge: how the encoder's final carries start the decoder (``_Bridge``): ``'auto'`` passes
      a carry through where it already fits (same cell and width, unidirectional encoder) and
      learns a linear map where widths, directions or cells differ; ``'dense'`` learns the map
      everywhere; ``'zeros'`` starts the decoder from zero carries (then only attention carries
      the source). Depths may differ: decoder layer ``l`` starts from encoder layer
      :math:`\lceil (l + 1) L_e / L_d \rceil - 1` (``bridge_sources``).
    reverse_source: Sutskever et al.'s trick: the encoder reads each source reversed within its
      own length (``reverse_padded``: ``[a, b, c, PAD] -> [c, b, a, PAD]``), so the first source
      words end up close to the first target words.
    dropout_rate: dropout on the source embeddings.
    decode: ``'greedy'`` or ``'beam'`` (``predict``'s search).
    beam_size: beams per example for ``'beam'``.
    length_penalty: GNMT's ``alpha`` (``length_penalty``); 0 ranks by log-probability alone.
    max_decode_len: the decoded length; None: the width ``T`` of ``inputs['target_in']``.
  """

  encoder: DeepRNN
  decoder: RecurrentDecoder
  source_vocab_size: int
  embed_features: int
  bridge: str = 'auto'
  reverse_source: bool = False
  dropout_rate: float = 0.0
  decode: str = 'greedy'
  beam_size: int = 4
  length_penalty: float = 0.6
  max_decode_len: int | None = None

  def __post_init__(self):
    _check('Seq2Seq', 'bridge', self.bridge, BRIDGES)
    _check('Seq2Seq', 'decode', self.decode, DECODES)
    if not isinstance(self.beam_size, int) or self.beam_size < 1:
      raise ValueError(f'Seq2Seq: beam_size must be a positive integer; got {self.beam_size!r}')
    if not self.length_penalty >= 0:
      raise ValueError(f'Seq2Seq: length_penalty (alpha) must be >= 0; got {self.length_penalty!r}')
    if self.max_decode_len is not None and (not isinstance(self.max_decode_len, int) or self.max_decode_len < 1):
      raise ValueError(f'Seq2Seq: max_decode_len must be a positive integer or None; got {self.max_decode_len!r}')
    if self.decoder.attention == 'dot' and self.memory_features != self.decoder.layer_features[-1]:
      raise ValueError(
        f"Seq2Seq: attention='dot' needs the encoder's output width ({self.memory_features}) "
        f"to equal the decoder's top width ({self.decoder.layer_features[-1]}); "
        "use 'general' or 'bahdanau', or match the widths"
      )
    super().__post_init__()

  @property
  def memory_features(self) -> int:
    """Width ``D`` of the encoder outputs (the attention memory)."""
    widths = self.encoder.layer_out_features
    return sum(widths) if self.encoder.connection == 'skip' else widths[-1]

  def setup(self):
    self.source_embed = nn.Embed(self.source_vocab_size, self.embed_features)
    self.drop = nn.Dropout(self.dropout_rate)
    if self.bridge != 'zeros':
      self.bridge_layers = _Bridge(mode=self.bridge, bidirectional=self.encoder.bidirectional)

  def encode(self, source: Array, source_lengths: Array, *, deterministic: bool = True):
    """Source ``[batch, S]`` -> ``(decoder initial state, memory)`` (``memory`` None without attention)."""
    x = self.drop(self.source_embed(source), deterministic=deterministic)
    if self.reverse_source:
      x = reverse_padded(x, source_lengths)
    finals, outputs = self.encoder(x, source_lengths, deterministic=deterministic)
    batch, time = source.shape
    carries = None
    if self.bridge != 'zeros':
      carries = self.bridge_layers(finals, self.decoder.zero_carries(batch))
    memory = self.decoder.prepare_memory(outputs, valid_mask(source_lengths, batch, time))
    return self.decoder.initial_state(carries, batch), memory

  def teacher_forced(
    self, inputs: Mapping[str, Array], lengths: Mapping[str, Array], *, deterministic: bool = True
  ) -> tuple[Array, Array | None]:
    """``(logits [batch, T, V], attention weights [batch, T, S] or None)``, both zero past each
    target's length (the weights are also zero on padded source steps)."""
    lengths = _checked_lengths(inputs, lengths, 'target')
    state, memory = self.encode(inputs['source'], lengths['source'], deterministic=deterministic)
    logits, weights = self.decoder(state, inputs['target_in'], memory, deterministic=deterministic)
    valid = valid_mask(lengths['target'], *logits.shape[:2])[..., None]
    logits = jnp.where(valid, logits, jnp.zeros((), logits.dtype))
    if weights is not None:
      weights = jnp.where(valid, weights, 0.0)
    return logits, weights

  def __call__(self, inputs: Mapping[str, Array], lengths: Mapping[str, Array], *, deterministic: bool = True) -> Array:
    return self.teacher_forced(inputs, lengths, deterministic=deterministic)[0]

  def predict(self, inputs: Mapping[str, Array], lengths: Mapping[str, Array]) -> Array:
    """Decoded ids ``[batch, max_len]`` int32 by ``decode``: greedy, or the best beam."""
    if self.decode == 'beam':
      return self.n_best(inputs, lengths)[0][:, 0]
    return greedy_search(*self._search_setup(inputs, lengths, 1))

  def n_best(self, inputs: Mapping[str, Array], lengths: Mapping[str, Array]) -> tuple[Array, Array]:
    """Beam search with ``beam_size`` beams: ``(sequences [batch, beam_size, max_len], scores
    [batch, beam_size])``, best first (``beam_search``)."""
    step_fn, state, batch, max_len = self._search_setup(inputs, lengths, self.beam_size)
    return beam_search(step_fn, state, batch, self.beam_size, max_len, self.length_penalty)

  def _search_setup(self, inputs, lengths, beams: int):
    """``(step_fn, initial state repeated over beams, batch, max_len)`` for a search."""
    lengths = _checked_lengths(inputs, lengths)
    source = inputs['source']
    batch = source.shape[0]
    max_len = self.max_decode_len or inputs['target_in'].shape[1]
    state, memory = self.encode(source, lengths['source'])
    if beams > 1:
      state, memory = jax.tree.map(lambda x: jnp.repeat(x, beams, axis=0), (state, memory))
    # The searches are plain JAX loops: they run the decoder's step as a pure function of its
    # parameters rather than through Flax's lifted transforms.
    decoder, variables = self.decoder.unbind()

    def step_fn(state, tokens):
      state, logits, _ = decoder.apply(variables, state, tokens, memory, method='step')
      return state, decoding_log_probs(logits)

    return step_fn, state, batch, max_len
