"""Sentiment classification from TFDS text datasets: ``imdb`` and ``sst2`` (the seed's example).

Pipeline: tokenize (``vocab.tokenize``), carve a deterministic validation split from train, build
the vocabulary from the remaining training texts only (size cap, PAD=0, OOV=1), keep the first
``max_len`` tokens, right-pad, and record each length. Training examples are grouped into a few
length buckets (``Task.length_buckets``) so a trainer can compile one step per bucket instead of
always running ``max_len`` steps.

* ``imdb``: IMDB reviews (Maas et al. 2011), TFDS ``imdb_reviews``; 25000 train (2500 carved as
  validation) / 25000 test, balanced binary labels.
* ``sst2``: Stanford Sentiment Treebank binary (Socher et al. 2013), TFDS ``glue/sst2``; GLUE's test
  labels are hidden, so its validation split (872 sentences) is the test split here and the
  validation split is carved from train.

Shapes: inputs ``[batch, max_len]`` int32 token ids, targets ``[batch]``, lengths ``[batch]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from deeprnn_jax.tasks import pipeline, tfds_source, vocab
from deeprnn_jax.tasks.base import Baseline, Task, Threshold


def text_classification_task(*, name: str, train_texts: Sequence[str], train_labels: Sequence[int],
                             test_texts: Sequence[str], test_labels: Sequence[int], num_classes: int,
                             vocab_size: int, max_len: int, num_val: int,
                             buckets: Sequence[int] | None, threshold: float | None) -> Task:
  """A Task from raw texts (see module docstring); ``buckets=None`` gives ``default_buckets``.

  Baseline: accuracy on test of always predicting the most frequent training label. A text with no
  tokens becomes the single token OOV, so every length is >= 1.
  """
  train_labels = np.asarray(train_labels, np.int32)
  test_labels = np.asarray(test_labels, np.int32)
  train_tokens = [vocab.tokenize(t) for t in train_texts]
  test_tokens = [vocab.tokenize(t) for t in test_texts]
  train_idx, val_idx = pipeline.carve_validation(len(train_tokens), num_val)
  ids = vocab.build_vocab((train_tokens[i] for i in train_idx), vocab_size)

  def encode(token_lists):
    seqs = [vocab.encode(toks, ids) if toks else np.array([vocab.OOV], np.int32) for toks in token_lists]
    inputs, lengths = pipeline.pad_sequences(seqs, max_len)
    return inputs, lengths, np.array([len(s) > max_len for s in seqs])

  buckets = tuple(pipeline.default_buckets(max_len) if buckets is None else buckets)
  if list(buckets) != sorted(set(buckets)) or buckets[-1] != max_len:
    raise ValueError(f'buckets must be strictly ascending and end at max_len={max_len}, got {buckets}')
  x_all, len_all, cut_all = encode(train_tokens)
  x_test, len_test, cut_test = encode(test_tokens)
  x_train, len_train = x_all[train_idx], len_all[train_idx]
  train_batch, train_data, probs = pipeline.array_stream(
      {'inputs': x_train, 'targets': train_labels[train_idx], 'lengths': len_train}, dict,
      lengths=len_train, buckets=buckets, time_keys=('inputs',))
  majority, acc = pipeline.majority_accuracy(train_labels[train_idx], test_labels, num_classes)
  oov_rate = float(np.mean(x_test[x_test != vocab.PAD] == vocab.OOV)) if len_test.sum() else 0.0
  return Task(
      name=name, input_kind='tokens', input_size=len(ids) + vocab.NUM_SPECIAL, output_kind='class',
      output_size=num_classes, seq_len=max_len, train_batch=train_batch,
      eval_splits={
          'val': pipeline.class_batch(x_all[val_idx], train_labels[val_idx], len_all[val_idx]),
          'test': pipeline.class_batch(x_test, test_labels, len_test),
      },
      baseline=Baseline('accuracy', acc, f'always predict the most frequent training label '
                        f'({majority}), accuracy on test'),
      threshold=None if threshold is None else Threshold('accuracy', threshold, 'max'),
      metric_modes={'loss': 'min', 'accuracy': 'max'},
      info={'vocab_size': len(ids) + vocab.NUM_SPECIAL, 'pad_id': vocab.PAD, 'oov_id': vocab.OOV,
            'num_train': len(train_idx), 'num_val': len(val_idx), 'num_test': len(test_labels),
            'truncated_fraction_train': float(np.mean(cut_all[train_idx])),
            'truncated_fraction_test': float(np.mean(cut_test)), 'oov_rate_test': oov_rate,
            'chance_accuracy': 1 / num_classes, 'majority_class': majority},
      train_data=train_data, length_buckets=buckets, bucket_probs=probs,
  )


def _texts(name: str, split: str, text_key: str, data_dir: str | None) -> tuple[list[str], list[int]]:
  examples = tfds_source.load_split(name, split, data_dir)
  return ([tfds_source.text_of(ex[text_key]) for ex in examples],
          [int(ex['label']) for ex in examples])


def imdb(*, vocab_size: int = 20000, max_len: int = 400, num_val: int = 2500,
         buckets: Sequence[int] | None = None, data_dir: str | None = None, seed: int = 0) -> Task:
  """IMDB sentiment (see module docstring); ``data_dir`` is the TFDS data dir.

  Baseline: majority-label accuracy on test (0.5: the test set is balanced). Threshold: accuracy
  >= 0.85, a level word-level LSTMs trained from scratch typically reach on IMDB.
  ``seed`` is accepted for uniformity and unused: data and splits are fixed.
  """
  del seed
  train = _texts('imdb_reviews', 'train', 'text', data_dir)
  test = _texts('imdb_reviews', 'test', 'text', data_dir)
  return text_classification_task(
      name='imdb', train_texts=train[0], train_labels=train[1], test_texts=test[0],
      test_labels=test[1], num_classes=2, vocab_size=vocab_size, max_len=max_len, num_val=num_val,
      buckets=buckets, threshold=0.85)


def sst2(*, vocab_size: int = 15000, max_len: int = 64, num_val: int = 2000,
         buckets: Sequence[int] | None = None, data_dir: str | None = None, seed: int = 0) -> Task:
  """SST-2 sentiment (see module docstring); ``data_dir`` is the TFDS data dir.

  Baseline: majority-label accuracy on the GLUE validation sentences (the training majority is
  positive; the validation set is close to balanced). Threshold: accuracy >= 0.8, a level
  word-level LSTMs trained from scratch typically reach on SST-2.
  ``seed`` is accepted for uniformity and unused: data and splits are fixed.
  """
  del seed
  train = _texts('glue/sst2', 'train', 'sentence', data_dir)
  test = _texts('glue/sst2', 'validation', 'sentence', data_dir)
  return text_classification_task(
      name='sst2', train_texts=train[0], train_labels=train[1], test_texts=test[0],
      test_labels=test[1], num_classes=2, vocab_size=vocab_size, max_len=max_len, num_val=num_val,
      buckets=buckets, threshold=0.8)
