"""The task protocol: what every workload gives the trainer and the report.

A *batch* is a dict of arrays:

* ``inputs``:  ``[batch, time]`` int32 token ids (``input_kind='tokens'``) or
  ``[batch, time, input_size]`` float32 features (``input_kind='features'``);
* ``targets``: ``[batch]`` int32 class ids (``'class'``), ``[batch, output_size]`` float32
  (``'regression'``), ``[batch, time]`` int32 (``'per_step_class'``) or
  ``[batch, time, output_size]`` {0, 1} float32 (``'per_step_binary'``, e.g. piano rolls);
* ``lengths``: ``[batch]`` int32 valid steps per sequence (right padding); always present;
* ``'sequence'`` (encoder-decoder transduction) nests them instead: ``inputs`` is
  ``{'source': [batch, S] int32, 'target_in': [batch, T] int32}`` (``target_in`` is ``BOS`` then
  the target), ``lengths`` is ``{'source': [batch], 'target': [batch]}`` and ``targets`` is
  ``[batch, T]`` int32 (the target then ``EOS``; ``lengths['target']`` counts the ``EOS``). Token
  ids ``PAD_ID``, ``BOS_ID``, ``EOS_ID``, ``OOV_ID`` below are shared by every sequence task and by
  ``deeprnn_jax.Seq2Seq``; ids from ``NUM_SEQUENCE_SPECIALS`` up are the task's own tokens;
* ``'ctc'`` (connectionist temporal classification, speech to text): ``inputs`` are
  ``[batch, frames, input_size]`` features with ``lengths`` frames, ``targets`` ``[batch, L]`` int32
  label ids ``1..output_size - 1`` (0 in padding) and ``label_lengths`` ``[batch]`` int32 their
  lengths; the model's outputs are per-frame logits ``[batch, frames, output_size]`` over the labels
  and the blank, id ``CTC_BLANK_ID = 0`` (``deeprnn_jax.ctc`` decodes them);
* ``weight`` (optional): ``[batch]`` float32 per-example weight; the evaluator sets 0 on the rows it
  pads to fill a fixed-shape eval batch, so padded rows never count.

A model for the task returns ``outputs`` of shape ``[batch, output_size]`` (class logits or
regression values) or ``[batch, time, output_size]`` (per-step logits, or a decoder's logits
``[batch, T, target_vocab]`` for ``'sequence'``), zero past each length.

Metrics are returned as ``{name: (total, count)}`` so that averages over many eval batches are exact:
the mean of a metric is ``sum(totals) / sum(counts)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

Batch = dict[str, Any]
InputKind = Literal['tokens', 'features']
OutputKind = Literal['class', 'regression', 'per_step_class', 'per_step_binary', 'sequence', 'ctc']
MetricSums = dict[str, tuple[jax.Array, jax.Array]]

OUTPUT_KINDS = ('class', 'regression', 'per_step_class', 'per_step_binary', 'sequence', 'ctc')
# The blank of the 'ctc' kind (optax.ctc_loss's default); a task's labels are 1..output_size - 1.
CTC_BLANK_ID = 0

# Token ids of the 'sequence' kind, on the source and the target side alike. PAD = 0 like every
# other token task here, so zero-filled padding is PAD; decoding never emits PAD or BOS.
PAD_ID, BOS_ID, EOS_ID, OOV_ID = 0, 1, 2, 3
NUM_SEQUENCE_SPECIALS = 4


@dataclasses.dataclass(frozen=True)
class Threshold:
  """A level of ``metric`` on ``split`` that counts as "solved"; ``mode`` says which way is better."""

  metric: str
  value: float
  mode: Literal['min', 'max']

  def reached(self, value: float) -> bool:
    return value <= self.value if self.mode == 'min' else value >= self.value


@dataclasses.dataclass(frozen=True)
class Baseline:
  """The level a model must beat (chance, or the best memoryless predictor) on ``metric``."""

  metric: str
  value: float
  description: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
  """One workload.

  Attributes:
    name: registry name.
    input_kind: ``'tokens'`` (ids with a vocabulary of ``input_size``; index 0 is padding where the
      task pads) or ``'features'`` (``input_size`` real features per step).
    input_size: the vocabulary size, or the number of features per step.
    output_kind: what the model outputs and how it is scored (see the module docstring).
    output_size: the number of classes, targets or output tokens (see the module docstring).
    seq_len: the (maximum) training sequence length.
    train_batch: ``(key, step, batch_size) -> batch``; a pure, jittable function of the run's data key
      and the step number, so a resumed run sees exactly the batches an uninterrupted one would.
      ``batch_size`` is static.
    eval_splits: fixed NumPy batches by split name (``'val'``, ``'test'``, and e.g. ``'test_len2x'``
      for length generalization); the trainer evaluates them in fixed-shape chunks.
    baseline: what a model must beat.
    threshold: the level that counts as solving the task (for "steps to threshold"), or None.
    metric_modes: ``'min'`` or ``'max'`` for each metric the task reports.
    info: free-form facts for the report (e.g. number of random labels for ``capacity``).
    train_data: for dataset tasks, the pytree of device arrays ``train_batch`` gathers from (None for
      synthetic tasks). ``train_batch`` closes over it by default, but jit embeds closed-over arrays
      in the compiled program as constants; a trainer that calls
      ``train_batch(key, step, batch_size, data=task.train_data)`` with ``train_data`` passed as a
      jit argument keeps them out of the executable (and out of the compilation cache).
    length_buckets: for variable-length tasks, a few ascending padded lengths (the last is
      ``seq_len``). ``train_batch(key, step, batch_size, bucket=i)`` (``i`` static) draws only
      examples that fit ``length_buckets[i]`` and pads to that length, so a trainer can compile one
      step per bucket and skip padded steps; without ``bucket`` batches are padded to ``seq_len``.
    bucket_probs: the fraction of training examples in each bucket (see ``bucket_for_step``).
    score: for metrics of a whole split that are not means over examples (BLEU, entity-level F1):
      ``score(split, predictions, batch) -> {metric: value}``, called on the host after an
      evaluation with ``predictions`` the model's ``predict`` output for every example of the split
      (``[n, ...]`` int32, padding rows removed) and ``batch`` the split's arrays. Its metrics are
      reported beside the split's others; give their modes in ``metric_modes``. None: no such metrics.
    encode: for inference on raw data: ``encode(examples) -> {'inputs', 'lengths'}``, a batch the
      model reads, made with the task's own tokenizer and vocabulary (e.g. a list of texts for a text
      task). None: the task has no raw form.
    stream_tokens: for *stateful* tasks (truncated backpropagation through time over one long text,
      Zaremba et al. 2014), the number of training tokens; 0 for every other task. The training text
      is cut into ``batch_size`` contiguous streams of ``n // batch_size`` tokens (the tail dropped),
      and step ``s`` reads window ``s mod windows_per_epoch(batch_size)`` of every stream (``seq_len``
      inputs, the next tokens as targets); the batch also holds ``reset`` ``[batch]`` bool, True on an
      epoch's first window. The trainer keeps each stream's carries from one step to the next in
      ``TrainState.carries`` (the gradient stops at the window) and starts them afresh where
      ``reset`` is set. A stateful task's eval splits hold ``[rows, windows, seq_len]`` inputs and
      targets and ``[rows, windows]`` lengths: each row one contiguous stream read window after
      window with its carries carried (``train.eval_step``).
    derived: metrics that are functions of a split's exact means rather than means themselves:
      ``derived(means) -> {metric: value}`` (NumPy, elementwise, so a ``[seeds]`` array works too),
      e.g. perplexity ``exp(means['loss'])``; reported beside the means (give their modes in
      ``metric_modes``). None: none.
  """

  name: str
  input_kind: InputKind
  input_size: int
  output_kind: OutputKind
  output_size: int
  seq_len: int
  train_batch: Callable[[jax.Array, Any, int], Batch]
  eval_splits: Mapping[str, Batch]
  baseline: Baseline
  threshold: Threshold | None = None
  metric_modes: Mapping[str, str] = dataclasses.field(default_factory=dict)
  info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  train_data: Any = None
  length_buckets: tuple[int, ...] = ()
  bucket_probs: tuple[float, ...] = ()
  score: Callable[[str, np.ndarray, Batch], Mapping[str, float]] | None = None
  encode: Callable[[Any], Batch] | None = None
  stream_tokens: int = 0
  derived: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None

  @property
  def stateful(self) -> bool:
    """Whether training carries each stream's state across steps (see ``stream_tokens``)."""
    return self.stream_tokens > 0

  def windows_per_epoch(self, batch_size: int) -> int:
    """Training steps per pass over a stateful task's text with ``batch_size`` streams."""
    return stream_windows(self.stream_tokens, batch_size, self.seq_len)

  def loss_and_metrics(self, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, MetricSums]:
    """Mean training loss and metric sums for ``outputs`` of a model on ``batch``."""
    return loss_and_metrics(self.output_kind, outputs, batch)


def _weights(batch: Batch) -> jax.Array:
  lengths = batch['lengths']
  if isinstance(lengths, Mapping):  # 'sequence': one weight per pair
    lengths = lengths['target']
  return batch.get('weight', jnp.ones(lengths.shape, jnp.float32)).astype(jnp.float32)


def argmax_is(outputs: jax.Array, targets: jax.Array) -> jax.Array:
  r"""``jnp.argmax(outputs, -1) == targets`` (bool, ties to the first maximum), computed as
  :math:`o_y = \max_v o_v` and no :math:`v < y` with :math:`o_v = \max_v o_v`: two plain reductions that
  share the loss's maximum, instead of XLA:CPU's slow (value, index) reduction (a 10,000-word
  vocabulary: about half the cost of the loss and its gradient). Equal to it for any integer targets
  and outputs without NaN (a NaN row is never right here; ``argmax`` picks its first NaN).
  """
  outputs = jax.lax.stop_gradient(outputs)
  top = outputs.max(-1, keepdims=True)
  hit = jnp.take_along_axis(outputs, targets[..., None], -1) == top
  index = jax.lax.broadcasted_iota(targets.dtype, outputs.shape, outputs.ndim - 1)
  earlier = jnp.any((outputs == top) & (index < targets[..., None]), -1)
  return hit[..., 0] & ~earlier & (targets >= 0) & (targets < outputs.shape[-1])


def step_mask(lengths: jax.Array, time: int) -> jax.Array:
  """``[batch, time]`` float mask: 1 where ``t < lengths[b]``."""
  return (jnp.arange(time)[None, :] < lengths[:, None]).astype(jnp.float32)


def loss_and_metrics(kind: str, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, MetricSums]:
  r"""The loss each output kind trains on, and its metrics as ``(total, count)``.

  * ``class``: cross-entropy and accuracy, per example; for packed rows (``pipeline.pack_task``)
    ``outputs`` ``[rows, S, classes]``, ``targets`` and ``weight`` ``[rows, S]``: per packed sequence.
  * ``regression``: mean squared error (averaged over output units), per example.
  * ``per_step_class``: cross-entropy and accuracy per valid step (padding never counts); with a
    ``target_mask`` ``[batch, time]`` in the batch, per answer step only (where it is 1), and
    ``exact_match`` per sequence: 1 when every answer step is the argmax.
  * ``per_step_binary``: negative log-likelihood per valid frame, summed over the output units
    (Boulanger-Lewandowski et al. 2012), and frame accuracy ``TP / (TP + FP + FN)`` (Bay et al. 2009).
  * ``sequence``: teacher-forced decoder logits ``[batch, T, V]``: token cross-entropy and token
    ``accuracy`` over the ``lengths['target']`` valid target steps (``EOS`` included), and
    ``exact_match``, per pair: 1 when every valid target token is the argmax. Decoded (free-running)
    exact match and BLEU need the model's search and come from ``Task.score``.
  * ``ctc``: the CTC negative log-likelihood :math:`-\log p(l \mid x)` of each utterance's labels
    (Graves et al. 2006; ``optax.ctc_loss``, blank ``CTC_BLANK_ID``) over its ``lengths`` frames and
    ``label_lengths`` labels (padding never counts), as ``loss`` per utterance and ``loss_per_label``
    (the same total over the number of labels, nats per character). Decoded error rates (CER, WER)
    need a search on the host and come from ``Task.score``.
  """
  targets = batch['targets']
  w = _weights(batch)
  outputs = outputs.astype(jnp.float32)
  if kind == 'class' and outputs.ndim == 3:  # packed rows: [rows, S, classes], one weight per sequence
    outputs, targets, w = outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1), w.reshape(-1)
  if kind == 'class':
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    acc = argmax_is(outputs, targets).astype(jnp.float32)
    count = w.sum()
    loss = (ce * w).sum() / jnp.maximum(count, 1.0)
    return loss, {'loss': ((ce * w).sum(), count), 'accuracy': ((acc * w).sum(), count)}
  if kind == 'regression':
    se = jnp.mean(jnp.square(outputs - targets), axis=-1)
    count = w.sum()
    loss = (se * w).sum() / jnp.maximum(count, 1.0)
    return loss, {'loss': ((se * w).sum(), count)}
  if kind == 'sequence':
    valid = step_mask(batch['lengths']['target'], outputs.shape[1])
    mask = valid * w[:, None]
    count = mask.sum()
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    correct = argmax_is(outputs, targets).astype(jnp.float32)
    exact = jnp.min(jnp.maximum(correct, 1.0 - valid), axis=1)  # padding steps count as right
    loss = (ce * mask).sum() / jnp.maximum(count, 1.0)
    return loss, {
      'loss': ((ce * mask).sum(), count),
      'accuracy': ((correct * mask).sum(), count),
      'exact_match': ((exact * w).sum(), w.sum()),
    }
  if kind == 'ctc':
    nll = ctc_nll(outputs, batch)
    total, count = (nll * w).sum(), w.sum()
    labels = (batch['label_lengths'].astype(jnp.float32) * w).sum()
    return total / jnp.maximum(count, 1.0), {'loss': (total, count), 'loss_per_label': (total, labels)}
  mask = step_mask(batch['lengths'], outputs.shape[1]) * w[:, None]
  count = mask.sum()
  if kind == 'per_step_class':
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    acc = argmax_is(outputs, targets).astype(jnp.float32)
    if 'target_mask' not in batch:
      loss = (ce * mask).sum() / jnp.maximum(count, 1.0)
      return loss, {'loss': ((ce * mask).sum(), count), 'accuracy': ((acc * mask).sum(), count)}
    # Only the answer steps count (recall tasks); exact_match: every answer of the sequence right.
    answer = batch['target_mask'].astype(jnp.float32)
    mask, count = mask * answer, (mask * answer).sum()
    exact = jnp.min(jnp.maximum(acc, 1.0 - answer), axis=1)
    loss = (ce * mask).sum() / jnp.maximum(count, 1.0)
    return loss, {
      'loss': ((ce * mask).sum(), count),
      'accuracy': ((acc * mask).sum(), count),
      'exact_match': ((exact * w).sum(), w.sum()),
    }
  if kind == 'per_step_binary':
    nll = optax.sigmoid_binary_cross_entropy(outputs, targets).sum(-1)
    pred = (outputs > 0).astype(jnp.float32)
    tp = (pred * targets).sum(-1)
    fp_fn = (jnp.abs(pred - targets)).sum(-1)
    loss = (nll * mask).sum() / jnp.maximum(count, 1.0)
    return loss, {
      'loss': ((nll * mask).sum(), count),
      'frame_accuracy': ((tp * mask).sum(), ((tp + fp_fn) * mask).sum()),
    }
  raise ValueError(f'unknown output kind {kind!r}; expected one of {OUTPUT_KINDS}')


def stream_windows(num_tokens: int, batch_size: int, seq_len: int) -> int:
  """Windows per epoch when ``num_tokens`` are cut into ``batch_size`` streams of ``num_tokens //
  batch_size`` tokens: ``(stream_len - 1) // seq_len`` (the last token of a stream is only a target)."""
  return (num_tokens // batch_size - 1) // seq_len


def ctc_nll(logits: jax.Array, batch: Batch) -> jax.Array:
  """``[batch]`` CTC negative log-likelihoods of ``batch['targets']`` (``label_lengths`` valid) under
  per-frame ``logits`` ``[batch, frames, labels + 1]`` (``lengths`` valid frames; blank ``CTC_BLANK_ID``).
  An utterance whose labels cannot fit its frames gets optax's large finite value (about 1e5)."""
  logit_paddings = 1.0 - step_mask(batch['lengths'], logits.shape[1])
  label_paddings = 1.0 - step_mask(batch['label_lengths'], batch['targets'].shape[1])
  return optax.ctc_loss(
    logits.astype(jnp.float32), logit_paddings, batch['targets'], label_paddings, blank_id=CTC_BLANK_ID
  )


def bucket_for_step(bucket_probs: tuple[float, ...], seed: int, step: int) -> int:
  """Host-side bucket choice for step ``step``: a pure function of ``(seed, step)``, so a resumed run
  draws the same bucket sequence; buckets are drawn in proportion to their training examples."""
  rng = np.random.default_rng([int(seed), int(step)])
  return int(rng.choice(len(bucket_probs), p=np.asarray(bucket_probs) / np.sum(bucket_probs)))


def finalize(sums: Mapping[str, tuple[Any, Any]]) -> dict[str, float]:
  """``{name: (total, count)}`` -> ``{name: total / count}`` as Python floats."""
  return {k: float(np.asarray(t) / max(float(np.asarray(c)), 1e-12)) for k, (t, c) in sums.items()}
