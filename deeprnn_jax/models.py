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

from deeprnn_jax.stack import DeepRNN, valid_mask

Array = jax.Array
POOLINGS = ('last', 'mean', 'max')


def pool(outputs: Array, lengths: Array | None, pooling: str, bidirectional: bool = False) -> Array:
  """Pools ``[batch, time, H]`` RNN outputs over each sequence's valid steps -> ``[batch, H']``.

  ``'last'``: the output at the last valid step; for a bidirectional network, where that step is
  only the backward direction's first, the outputs at the last *and* the first valid step are
  concatenated (``H' = 2H``), which holds both directions' summary of the whole sequence.
  ``'mean'`` / ``'max'``: over valid steps only.
  """
  batch, time = outputs.shape[:2]
  if pooling == 'last':
    last = (jnp.full((batch,), time) if lengths is None else jnp.maximum(lengths, 1)) - 1
    pooled = jnp.take_along_axis(outputs, last[:, None, None], axis=1)[:, 0]
    return jnp.concatenate([pooled, outputs[:, 0]], axis=-1) if bidirectional else pooled
  valid = valid_mask(lengths, batch, time)[..., None]
  if pooling == 'mean':
    count = jnp.maximum(valid.sum(axis=1), 1).astype(outputs.dtype)
    return jnp.where(valid, outputs, 0).sum(axis=1) / count
  if pooling == 'max':
    return jnp.where(valid, outputs, jnp.finfo(outputs.dtype).min).max(axis=1)
  raise ValueError(f'unknown pooling {pooling!r}; choose one of {list(POOLINGS)}')


class _SequenceModel(nn.Module):
  """Shared parts: the input encoder and the MLP head.

  Attributes:
    rnn: the ``DeepRNN``.
    vocab_size: token inputs: embedding of ``vocab_size`` ids to ``embed_features``.
    embed_features: embedding width (required with ``vocab_size``).
    input_features: real inputs: a linear projection to this width first (None: none).
    head_features: hidden widths of the MLP head (ReLU); ``()`` is a linear head.
    dropout_rate: dropout on the encoded inputs and in the head (the RNN's own is ``rnn.dropout_rate``).
  """

  rnn: DeepRNN
  vocab_size: int | None = None
  embed_features: int | None = None
  input_features: int | None = None
  head_features: Sequence[int] = ()
  dropout_rate: float = 0.0

  def encode(self, inputs: Array, lengths: Array | None, deterministic: bool) -> Array:
    if self.vocab_size is not None:
      if not self.embed_features:
        raise ValueError('a token model needs embed_features (the embedding width)')
      x = nn.Embed(self.vocab_size, self.embed_features, name='embed')(inputs)
    else:
      x = inputs.astype(jnp.float32)
      if self.input_features is not None:
        x = nn.Dense(self.input_features, name='input_proj')(x)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    _, y = self.rnn(x, lengths, deterministic=deterministic)
    return y

  def head(self, h: Array, out_features: int, deterministic: bool) -> Array:
    for i, width in enumerate(self.head_features):
      h = nn.relu(nn.Dense(width, name=f'head_{i}')(h))
      h = nn.Dropout(self.dropout_rate)(h, deterministic=deterministic)
    return nn.Dense(out_features, name='out')(h)


class _PooledModel(_SequenceModel):
  """Sequence -> one vector: encoder, ``DeepRNN``, pooling over valid steps, head.

  Attributes:
    pooling: ``'last'`` (last valid step), ``'mean'`` or ``'max'`` over valid steps.
  """

  pooling: str = 'last'

  @property
  def num_outputs(self) -> int:
    raise NotImplementedError

  @nn.compact
  def __call__(self, inputs, lengths=None, *, deterministic: bool = True):
    y = self.encode(inputs, lengths, deterministic)
    return self.head(pool(y, lengths, self.pooling, self.rnn.bidirectional), self.num_outputs, deterministic)

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
  """Sequence -> per-step outputs ``[batch, time, out_features]`` (tagging, language modelling,
  copy memory, polyphonic music), zero past each sequence's length."""

  out_features: int = 1

  @nn.compact
  def __call__(self, inputs, lengths=None, *, deterministic: bool = True):
    y = self.encode(inputs, lengths, deterministic)
    out = self.head(y, self.out_features, deterministic)
    valid = valid_mask(lengths, *out.shape[:2])[..., None]
    return jnp.where(valid, out, jnp.zeros((), out.dtype))

  def predict(self, inputs, lengths=None):
    """The most likely class at every step ``[batch, time]`` int32 (e.g. tags, for a ``Task.score``)."""
    return jnp.argmax(self(inputs, lengths), axis=-1).astype(jnp.int32)


def count_params(params) -> int:
  """Number of scalar parameters (a complex parameter counts as two)."""
  return int(sum(x.size * (2 if jnp.iscomplexobj(x) else 1) for x in jax.tree.leaves(params)))
