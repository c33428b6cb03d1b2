"""Task models on top of ``DeepRNN``: sequence classifier, sequence regressor, per-step model.

Each model is ``input encoder -> DeepRNN -> (pooling) -> MLP head`` and is called as
``model.apply(variables, inputs, lengths, deterministic=..., rngs={'dropout': key})``:

* ``inputs``: ``[batch, time]`` token ids (``vocab_size`` set: an embedding) or
  ``[batch, time, features]`` reals (optionally linearly projected to ``input_features``);
* ``lengths``: ``[batch]`` valid steps (right padding), or None for full-length sequences.

The seed's sentiment example (embedding -> 2-layer LSTM -> linear head on ``h_n[-1]``) is
``Classifier(rnn=DeepRNN(cell='lstm', features=H, num_layers=2), vocab_size=V, embed_features=E,
num_classes=2, pooling='last')``, done right: ``h_n[-1]`` of a padded batch in the seed has read the
pad tokens, ``pooling='last'`` reads each sequence's last *valid* step.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deeprnn_jax.sequences import checked_lengths, valid_mask
from deeprnn_jax.stack import DeepRNN

Array = jax.Array
POOLINGS = ('last', 'mean', 'max', 'flatten', 'attention')


def pool(
  outputs: Array, lengths: Array | None, pooling: str, bidirectional: bool = False, query: Array | None = None
) -> Array:
  r"""Reads ``[batch, time, H]`` RNN outputs :math:`y_t` over each sequence's valid steps
  :math:`t < \ell_b` -> ``[batch, H']``.

  * ``'last'``: :math:`y_{\ell_b - 1}`; for a bidirectional network, where that step is only the
    backward direction's first, the outputs at the last *and* the first valid step are concatenated
    (``H' = 2H``), which holds both directions' summary of the whole sequence.
  * ``'mean'`` / ``'max'``: over valid steps only.
  * ``'flatten'``: every step's output side by side, :math:`[m_0 y_0, \dots, m_{T-1} y_{T-1}]`
    (``H' = T H``) with :math:`m_t = [t < \ell_b]`: padded steps are zeroed, so they cannot leak
    into the head. The readout of MNIST-1D's reference recurrent models (Greydanus 2020); it fixes
    the sequence length ``T`` (the head's input width is ``T H``), so it is for fixed-length tasks.
  * ``'attention'``: attention pooling with a learned query :math:`q` (``query``, ``[H]``):
    :math:`s_t = q^\top y_t / \sqrt{H}`, :math:`a = \mathrm{softmax}(s)` over the valid steps only
    (:math:`a_t = 0` for padded ones), :math:`\sum_t a_t y_t`. Scores and weights are float32 whatever
    the compute dtype.

  A sequence of length 0 pools to zeros with ``'mean'``, ``'flatten'`` and ``'attention'``, never NaN.
  """
  batch, time, features = outputs.shape
  if pooling == 'last':
    last = (jnp.full((batch,), time) if lengths is None else jnp.maximum(lengths, 1)) - 1
    pooled = jnp.take_along_axis(outputs, last[:, None, None], axis=1)[:, 0]
    return jnp.concatenate([pooled, outputs[:, 0]], axis=-1) if bidirectional else pooled
  if pooling not in POOLINGS:
    raise ValueError(f'unknown pooling {pooling!r}; choose one of {list(POOLINGS)}')
  valid = valid_mask(lengths, batch, time)[..., None]
  zero = jnp.zeros((), outputs.dtype)
  if pooling == 'mean':
    count = jnp.maximum(valid.sum(axis=1), 1).astype(outputs.dtype)
    return jnp.where(valid, outputs, zero).sum(axis=1) / count
  if pooling == 'max':
    return jnp.where(valid, outputs, jnp.finfo(outputs.dtype).min).max(axis=1)
  if pooling == 'flatten':
    return jnp.where(valid, outputs, zero).reshape(batch, time * features)
  if query is None:
    raise ValueError("pooling='attention' needs the learned query ([features])")
  y = outputs.astype(jnp.float32)
  scores = jnp.einsum('bth,h->bt', y, query.astype(jnp.float32))[..., None] / jnp.sqrt(float(features))
  # Padded steps get the lowest score and then exactly zero weight: softmax over the valid steps only.
  scores = jnp.where(valid, scores, jnp.finfo(jnp.float32).min)
  weights = jnp.exp(scores - scores.max(axis=1, keepdims=True)) * valid
  weights = weights / jnp.maximum(weights.sum(axis=1, keepdims=True), jnp.finfo(jnp.float32).tiny)
  return (weights * y).sum(axis=1).astype(outputs.dtype)


class _SequenceModel(nn.Module):
  """Shared parts: the input encoder and the MLP head.

  Attributes:
    rnn: the ``DeepRNN``.
    vocab_size: token inputs: embedding of ``vocab_size`` ids to ``embed_features``.
    embed_features: embedding width (required with ``vocab_size``).
    input_features: real inputs: a linear projection to this width first (None: none).
    head_features: hidden widths of the MLP head (ReLU); ``()`` is a linear head.
    dropout_rate: dropout on the encoded inputs and in the head (the RNN's own is ``rnn.dropout_rate``).
    param_init: a whole-model scheme of ``inits.init_tree`` (e.g. ``'uniform_0.1'``: every parameter
      U(-0.1, 0.1), Zaremba et al. 2014) that ``training.steps.init_state`` applies over the tree the
      modules drew; None keeps each module's own initializers. Read at initialization only.
  """

  rnn: DeepRNN
  vocab_size: int | None = None
  embed_features: int | None = None
  input_features: int | None = None
  head_features: Sequence[int] = ()
  dropout_rate: float = 0.0
  param_init: str | None = None

  def _checked(self, inputs: Array, lengths) -> Array | None:
    """Refuses ``inputs`` of the wrong rank or dtype in one line; ``lengths`` (a list works too) checked
    against the inputs' time axis as ``DeepRNN`` checks its own (``sequences.checked_lengths``)."""
    owner, shape, dtype = type(self).__name__, jnp.shape(inputs), jnp.result_type(inputs)
    if self.vocab_size is not None and (len(shape) != 2 or not jnp.issubdtype(dtype, jnp.integer)):
      raise ValueError(
        f'{owner} with vocab_size expects token ids [batch, time] integers, got shape {shape} {dtype}: '
        'pass the ids themselves, or leave vocab_size unset for real features [batch, time, features]'
      )
    if self.vocab_size is None and len(shape) != 3:
      raise ValueError(
        f'{owner} expects real inputs [batch, time, features], got shape {shape}: add the feature axis '
        '(inputs[..., None]), or set vocab_size (and embed_features) for token ids'
      )
    return checked_lengths(lengths, shape[0], shape[1], owner=owner, name='lengths')

  def encode(self, inputs: Array, lengths: Array | None, deterministic: bool, resets: Array | None = None) -> Array:
    return self._rnn(self._inputs(inputs, deterministic), lengths, deterministic, resets=resets)[1]

  def _inputs(self, inputs: Array, deterministic: bool) -> Array:
    """The embedded (or projected) inputs ``[batch, time, features]``, after dropout."""
    if self.vocab_size is not None:
      if not self.embed_features:
        raise ValueError('a token model needs embed_features (the embedding width)')
      x = nn.Embed(self.vocab_size, self.embed_features, name='embed')(inputs)
    else:
      if jnp.iscomplexobj(inputs):  # the cast below would drop the imaginary part
        raise ValueError(
          f'{type(self).__name__} expects real inputs, got {jnp.result_type(inputs)}: pass the real '
          'and imaginary parts as features, e.g. jnp.concatenate([x.real, x.imag], axis=-1)'
        )
      x = inputs.astype(jnp.float32)
      if self.input_features is not None:
        x = nn.Dense(self.input_features, name='input_proj')(x)
    return nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)

  def _rnn(self, x: Array, lengths: Array | None, deterministic: bool, initial_carries=None, resets=None):
    """``(final_carries, outputs)`` of the ``DeepRNN`` on the encoded inputs (``resets``: packed
    sequences, see ``DeepRNN``)."""
    return self.rnn(x, lengths, initial_carries=initial_carries, deterministic=deterministic, resets=resets)

  def head(self, h: Array, out_features: int, deterministic: bool) -> Array:
    return nn.Dense(out_features, name='out')(self._hidden(h, deterministic))

  def _hidden(self, h: Array, deterministic: bool) -> Array:
    """The MLP head's hidden layers (ReLU, dropout), before the output layer."""
    for i, width in enumerate(self.head_features):
      h = nn.relu(nn.Dense(width, name=f'head_{i}')(h))
      h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return h


class _PooledModel(_SequenceModel):
  """Sequence -> one vector: encoder, ``DeepRNN``, a readout over valid steps (``pool``), head.

  Attributes:
    pooling: one of ``POOLINGS``: ``'last'`` (last valid step), ``'mean'`` or ``'max'`` over valid
      steps, ``'flatten'`` (all steps concatenated; the length seen at init is the only one the head
      accepts), ``'attention'`` (a learned query ``attention_query``, ``[H]``, scores each step; softmax
      over valid steps).
  """

  pooling: str = 'last'

  @property
  def num_outputs(self) -> int:
    raise NotImplementedError

  @nn.compact
  def __call__(self, inputs, lengths=None, *, deterministic: bool = True, resets=None, ends=None):
    """``[batch, out]``; for packed rows (``resets`` ``[batch, time]`` and ``ends`` ``[batch, S]``, each
    packed sequence's last step, as ``tasks.pipeline.pack_arrays`` makes them) ``[batch, S, out]``:
    every packed sequence read at its own last step (``pooling='last'`` only)."""
    lengths = self._checked(inputs, lengths)
    y = self.encode(inputs, lengths, deterministic, resets)
    if ends is not None:
      return self.head(self._last_of_each(y, jnp.asarray(ends)), self.num_outputs, deterministic)
    query = None
    if self.pooling == 'attention':
      # Zeros: every valid step weighs the same at init, so the readout starts as mean pooling and
      # learns where to look.
      query = self.param('attention_query', nn.initializers.zeros_init(), (y.shape[-1],), jnp.float32)
    pooled = pool(y, lengths, self.pooling, self.rnn.bidirectional, query)
    if self.pooling == 'flatten':
      self._check_flatten_length(pooled, y.shape[1])
    return self.head(pooled, self.num_outputs, deterministic)

  def _last_of_each(self, y: Array, ends: Array) -> Array:
    """``[batch, S, H']``: each packed sequence's output at its last step ``ends`` (and, bidirectional,
    at its first, the step after the previous sequence's end, as ``pool``'s ``'last'`` does)."""
    if self.pooling != 'last':
      raise ValueError(f"packed sequences are read at their last steps: use pooling='last', not {self.pooling!r}")
    pooled = jnp.take_along_axis(y, ends[..., None], axis=1)
    if self.rnn.bidirectional:
      starts = jnp.concatenate([jnp.zeros_like(ends[:, :1]), ends[:, :-1] + 1], axis=1)
      pooled = jnp.concatenate([pooled, jnp.take_along_axis(y, starts[..., None], axis=1)], axis=-1)
    return pooled

  def _check_flatten_length(self, pooled: Array, time: int) -> None:
    """A one-line error instead of Flax's kernel-shape mismatch when the length is not the init one."""
    first = 'head_0' if self.head_features else 'out'
    params = self.variables.get('params', {})
    if first in params:
      want = params[first]['kernel'].shape[0]
      if pooled.shape[-1] != want:
        per_step = pooled.shape[-1] // time
        raise ValueError(
          f"pooling='flatten' reads exactly {want // per_step} steps (the length at init), got "
          f"{time}: pad or crop inputs to {want // per_step} steps, or pool with 'last', 'mean', "
          "'max' or 'attention' for varying lengths"
        )

  def predict(self, inputs, lengths=None):
    """The most likely class ``[batch]`` int32 (for a ``Task.score``; a regressor has none)."""
    return jnp.argmax(self(inputs, lengths), axis=-1).astype(jnp.int32)


class Classifier(_PooledModel):
  """Sequence -> class logits ``[batch, num_classes]``."""

  num_classes: int = 2

  @property
  def num_outputs(self) -> int:
    return self.num_classes


class Regressor(_PooledModel):
  """Sequence -> real vector ``[batch, out_features]`` (e.g. the adding problem's sum)."""

  out_features: int = 1

  @property
  def num_outputs(self) -> int:
    return self.out_features


class PerStepModel(_SequenceModel):
  r"""Sequence -> per-step outputs ``[batch, time, out_features]`` (tagging, language modelling,
  copy memory, polyphonic music), zero past each sequence's length.

  Stateful use (truncated BPTT over a long stream, Zaremba et al. 2014):
  ``outputs, carries = model.apply(variables, x, lengths, initial_carries=carries, return_carries=True)``
  starts the ``DeepRNN`` from ``carries`` (``model.apply(variables, batch_size,
  method='initialize_carries')`` for a fresh start) and returns its final carries, each row's carry at
  its last valid step (a row with length 0 keeps its carries). The parameter tree is the same either way.

  Attributes:
    out_features: the output size (the vocabulary for a language model).
    tie_embeddings: token inputs only: the output layer reuses the input embedding :math:`E`
      ``[vocab_size, embed_features]`` (Press & Wolf 2017; Inan et al. 2017):
      :math:`\mathrm{logits}_t = h_t E^\top + b` with its own bias ``out_bias`` ``[vocab_size]``, so
      there is no ``out`` kernel. Needs ``out_features == vocab_size`` and the width of :math:`h_t`
      (the last head layer's, else the top recurrent layer's output) equal to ``embed_features``.
  """

  out_features: int = 1
  tie_embeddings: bool = False

  @nn.compact
  def __call__(
    self,
    inputs,
    lengths=None,
    *,
    deterministic: bool = True,
    initial_carries=None,
    return_carries: bool = False,
    resets=None,
  ):
    lengths = self._checked(inputs, lengths)
    if self.tie_embeddings and (self.vocab_size is None or self.vocab_size != self.out_features):
      raise ValueError(
        f'tie_embeddings needs token inputs with vocab_size == out_features; got vocab_size='
        f'{self.vocab_size}, out_features={self.out_features}'
      )
    carries, y = self._rnn(self._inputs(inputs, deterministic), lengths, deterministic, initial_carries, resets)
    if self.tie_embeddings:
      out = self._tied_head(y, deterministic)
    else:
      out = self.head(y, self.out_features, deterministic)
    if lengths is not None:  # without lengths every step is valid: no select on the (vocabulary-wide) outputs
      valid = valid_mask(lengths, *out.shape[:2])[..., None]
      out = jnp.where(valid, out, jnp.zeros((), out.dtype))
    return (out, carries) if return_carries else out

  def _tied_head(self, h: Array, deterministic: bool) -> Array:
    h = self._hidden(h, deterministic)
    embedding = self.variables['params']['embed']['embedding']
    if h.shape[-1] != embedding.shape[-1]:
      raise ValueError(
        f'tie_embeddings needs the output layer input ({h.shape[-1]} wide) as wide as the '
        f'embedding ({embedding.shape[-1]}): set the embedding width to the top width'
      )
    bias = self.param('out_bias', nn.initializers.zeros_init(), (self.out_features,), jnp.float32)
    return jnp.einsum('bth,vh->btv', h, embedding.astype(h.dtype)) + bias.astype(h.dtype).reshape(1, 1, -1)

  def initialize_carries(self, batch_size: int):
    """The ``DeepRNN``'s carries before a stream's first step, for ``batch_size`` rows."""
    return self.rnn.initialize_carries(batch_size)

  def predict(self, inputs, lengths=None):
    """The most likely class at every step ``[batch, time]`` int32 (e.g. tags, for a ``Task.score``)."""
    return jnp.argmax(self(inputs, lengths), axis=-1).astype(jnp.int32)


class CTCModel(PerStepModel):
  """``PerStepModel`` for the ``'ctc'`` output kind (speech to text): per-frame logits
  ``[batch, frames, labels + 1]`` over the labels and the blank (id 0, ``tasks.base.CTC_BLANK_ID``).
  ``predict`` gives per-frame log-probabilities ``[batch, frames, labels + 1]`` float32 instead of
  argmax ids, because a prefix beam search (``deeprnn_jax.ctc``) needs them; padded frames are
  uniform and ignored by the decoders, which read ``lengths`` frames."""

  def predict(self, inputs, lengths=None):
    return jax.nn.log_softmax(self(inputs, lengths).astype(jnp.float32), axis=-1)


def count_params(params) -> int:
  """Number of scalar parameters (a complex parameter counts as two)."""
  return int(sum(x.size * (2 if jnp.iscomplexobj(x) else 1) for x in jax.tree.leaves(params)))
