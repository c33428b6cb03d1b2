"""Character-level language modelling on Tiny Shakespeare (Karpathy 2015), in random windows.

* ``tiny_shakespeare``: TFDS ``tiny_shakespeare`` (prepared once with
  ``python -m experiments.prepare tiny_shakespeare``), or ``path=`` Karpathy's ``input.txt``. The
  1.1M-character text is split 90/5/5 into train / validation / test, contiguously, in that order
  (TFDS's split; ``local_text.split_text`` reproduces it to the character).

The registered ``char_lm`` (any text, stateful truncated BPTT, bits per character) is in
``language_model.py``; ``char_lm_task`` here is the windowed next-character task ``tiny_shakespeare``
is built on.

Characters map to ids ``2..`` in sorted order of the training characters (0 is PAD, 1 is
OOV for characters absent from train). A training example is a random window of ``seq_len + 1``
characters: ``inputs = w[:-1]``, ``targets = w[1:]``. Evaluation splits cover their whole text in
consecutive windows, each read from a fresh state; the last window is shorter and padded.

Shapes: inputs and targets ``[batch, seq_len]`` int32, lengths ``[batch]``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax.tasks import local_text, tfds_source, vocab
from deeprnn_jax.tasks.base import Baseline, Batch, Task


def char_ids(train_text: str) -> dict[str, int]:
  return {c: i + vocab.NUM_SPECIAL for i, c in enumerate(sorted(set(train_text)))}


def windows(ids: np.ndarray, seq_len: int) -> Batch:
  """Consecutive next-character windows over all of ``ids``: ``ceil((n - 1) / seq_len)`` rows."""
  n = len(ids) - 1
  rows = max(math.ceil(n / seq_len), 0)
  inputs = np.zeros((rows, seq_len), np.int32)
  targets = np.zeros((rows, seq_len), np.int32)
  lengths = np.zeros(rows, np.int32)
  for r in range(rows):
    start, stop = r * seq_len, min((r + 1) * seq_len, n)
    inputs[r, : stop - start] = ids[start:stop]
    targets[r, : stop - start] = ids[start + 1 : stop + 1]
    lengths[r] = stop - start
  return {'inputs': inputs, 'targets': targets, 'lengths': lengths}


def unigram_entropy(text: str) -> float:
  """Entropy in nats of the character frequencies of ``text``: the cross-entropy of the best
  context-free (unigram) predictor on that text."""
  _, counts = np.unique(np.frombuffer(text.encode('utf-32-le'), np.uint32), return_counts=True)
  p = counts / counts.sum()
  return float(-np.sum(p * np.log(p)))


def char_lm_task(
  *, name: str, train_text: str, val_text: str, test_text: str, seq_len: int, info: dict | None = None
) -> Task:
  """A next-character Task from three texts (see module docstring); ``info`` is added to its info."""
  ids = char_ids(train_text)
  encode = lambda text: np.array([ids.get(c, vocab.OOV) for c in text], np.int32)
  train = encode(train_text)
  if len(train) <= seq_len + 1:
    raise ValueError(f'training text has {len(train)} characters; seq_len={seq_len} needs more')
  train_data = {'text': jnp.asarray(train)}

  def train_batch(key, step, batch_size, *, data=None, bucket=None):
    if bucket is not None:
      raise ValueError(f'{name} has no length buckets')
    text = (train_data if data is None else data)['text']
    starts = jax.random.randint(jax.random.fold_in(key, step), (batch_size,), 0, text.shape[0] - seq_len)
    w = jax.vmap(lambda s: jax.lax.dynamic_slice(text, (s,), (seq_len + 1,)))(starts)
    return {'inputs': w[:, :-1], 'targets': w[:, 1:], 'lengths': jnp.full((batch_size,), seq_len, jnp.int32)}

  entropy = unigram_entropy(train_text)
  return Task(
    name=name,
    input_kind='tokens',
    input_size=len(ids) + vocab.NUM_SPECIAL,
    output_kind='per_step_class',
    output_size=len(ids) + vocab.NUM_SPECIAL,
    seq_len=seq_len,
    train_batch=train_batch,
    eval_splits={'val': windows(encode(val_text), seq_len), 'test': windows(encode(test_text), seq_len)},
    baseline=Baseline(
      'loss',
      entropy,
      'unigram entropy of the training characters (nats): '
      'the cross-entropy of predicting each character by its train frequency',
    ),
    threshold=None,
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={
      'vocab_size': len(ids) + vocab.NUM_SPECIAL,
      'train_chars': len(train_text),
      'val_chars': len(val_text),
      'test_chars': len(test_text),
      'baseline_bits_per_char': entropy / math.log(2),
      **(info or {}),
    },
    train_data=train_data,
  )


def tiny_shakespeare(
  *, path: str | None = None, seq_len: int = 128, data_dir: str | None = None, seed: int = 0
) -> Task:
  """Tiny Shakespeare next-character prediction (see module docstring).

  ``path``: Karpathy's ``input.txt`` (None: TFDS ``tiny_shakespeare`` from ``data_dir``, the TFDS data
  dir). Baseline: unigram entropy of the training text (nats per character). No threshold:
  language modelling has no "solved" level. ``seed`` is accepted for uniformity and unused.
  """
  del seed
  if path is not None and data_dir is not None:
    raise ValueError('tiny_shakespeare: give path (a local input.txt) or data_dir (a TFDS data dir), not both')
  if path is not None:
    file = local_text.resolve(path, "Karpathy's tiny Shakespeare input.txt")
    train, val, test = local_text.split_text(local_text.read_text(file), 0.05, 0.05)
    return char_lm_task(
      name='tiny_shakespeare', train_text=train, val_text=val, test_text=test, seq_len=seq_len, info={'source': file}
    )
  local = ", or read Karpathy's input.txt: --config.task.options.path=input.txt"
  texts = {}
  for split in ('train', 'validation', 'test'):  # each split is one example: the whole text
    example = tfds_source.load_split('tiny_shakespeare', split, data_dir, alternative=local)[0]
    texts[split] = tfds_source.text_of(example['text'])
  return char_lm_task(
    name='tiny_shakespeare',
    train_text=texts['train'],
    val_text=texts['validation'],
    test_text=texts['test'],
    seq_len=seq_len,
  )
