"""Text classification: ``imdb`` and ``sst2`` (the seed's example) from TFDS or from their
authors' files, and ``text_classification`` from any CSV / TSV / JSON Lines files.

Pipeline: tokenize (``vocab.tokenize``), take the validation split from a file where one is given,
else carve a deterministic one from train, build the vocabulary from the remaining training texts
only (size cap, PAD=0, OOV=1), keep the first ``max_len`` tokens, right-pad, and record each length.
Training examples are grouped into a few length buckets (``Task.length_buckets``) so a trainer can
compile one step per bucket instead of always running ``max_len`` steps. Every source goes through
this one pipeline (``text_classification_task``).

* ``imdb``: IMDB reviews (Maas et al. 2011); 25000 train (2500 carved as validation) / 25000 test,
  balanced binary labels. Source: TFDS ``imdb_reviews`` (prepared once with
  ``python -m experiments.prepare imdb_reviews``), or ``path=`` the ``aclImdb/`` folder or the
  ``aclImdb_v1.tar.gz`` archive (``local_text.read_imdb``).
* ``sst2``: Stanford Sentiment Treebank binary (Socher et al. 2013); GLUE's test labels are hidden,
  so its validation split (872 sentences) is the test split here and the validation split is carved
  from train. Source: TFDS ``glue/sst2``, or ``path=`` GLUE's ``SST-2/`` folder (``train.tsv``,
  ``dev.tsv``).
* ``text_classification``: labelled texts in the researcher's own files (``local_text.read_splits``);
  string labels become ids in sorted order of the training labels.

The two sources of ``imdb`` (or ``sst2``) hold the same texts in a different order, so the carved
validation examples differ between them: compare runs of one source.

Shapes: inputs ``[batch, max_len]`` int32 token ids, targets ``[batch]``, lengths ``[batch]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from deeprnn_jax.tasks import local_text, pipeline, tfds_source, vocab
from deeprnn_jax.tasks.base import Baseline, Task, Threshold


def text_classification_task(
  *,
  name: str,
  train_texts: Sequence[str],
  train_labels: Sequence[int],
  test_texts: Sequence[str],
  test_labels: Sequence[int],
  num_classes: int,
  vocab_size: int,
  max_len: int,
  num_val: int,
  buckets: Sequence[int] | None,
  threshold: float | None,
  val_texts: Sequence[str] | None = None,
  val_labels: Sequence[int] | None = None,
  info: dict | None = None,
) -> Task:
  """A Task from raw texts (see module docstring); ``buckets=None`` gives ``default_buckets``.

  Validation is ``val_texts`` / ``val_labels`` when given (``num_val`` is then unused), else
  ``num_val`` training examples carved with a fixed seed. Baseline: accuracy on test of always
  predicting the most frequent training label. A text with no tokens becomes the single token OOV,
  so every length is >= 1. ``info`` is added to the task's info (e.g. the source, label names).
  """
  if (val_texts is None) != (val_labels is None):
    raise ValueError('give val_texts and val_labels together, or neither')
  val_tokens = [] if val_texts is None else [vocab.tokenize(t) for t in val_texts]
  num_train = len(train_texts)
  train_labels = np.asarray(list(train_labels) + list(val_labels or []), np.int32)
  test_labels = np.asarray(test_labels, np.int32)
  # Given validation examples are appended to the training ones and "carved" back by index, so both
  # kinds of validation split go through the same code below.
  train_tokens = [vocab.tokenize(t) for t in train_texts] + val_tokens
  test_tokens = [vocab.tokenize(t) for t in test_texts]
  if val_texts is None:
    if not 0 <= num_val < num_train:
      raise ValueError(
        f'num_val={num_val} must be in [0, {num_train}): {name} has {num_train} training '
        f'examples, the validation ones are carved from them'
      )
    train_idx, val_idx = pipeline.carve_validation(num_train, num_val)
  else:
    train_idx, val_idx = np.arange(num_train), np.arange(num_train, len(train_tokens))
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
    {'inputs': x_train, 'targets': train_labels[train_idx], 'lengths': len_train},
    dict,
    lengths=len_train,
    buckets=buckets,
    time_keys=('inputs',),
  )
  majority, acc = pipeline.majority_accuracy(train_labels[train_idx], test_labels, num_classes)
  oov_rate = float(np.mean(x_test[x_test != vocab.PAD] == vocab.OOV)) if len_test.sum() else 0.0
  return Task(
    name=name,
    input_kind='tokens',
    input_size=len(ids) + vocab.NUM_SPECIAL,
    output_kind='class',
    output_size=num_classes,
    seq_len=max_len,
    train_batch=train_batch,
    eval_splits={
      'val': pipeline.class_batch(x_all[val_idx], train_labels[val_idx], len_all[val_idx]),
      'test': pipeline.class_batch(x_test, test_labels, len_test),
    },
    baseline=Baseline(
      'accuracy', acc, f'always predict the most frequent training label ({majority}), accuracy on test'
    ),
    threshold=None if threshold is None else Threshold('accuracy', threshold, 'max'),
    metric_modes={'loss': 'min', 'accuracy': 'max'},
    info={
      'vocab_size': len(ids) + vocab.NUM_SPECIAL,
      'pad_id': vocab.PAD,
      'oov_id': vocab.OOV,
      'num_train': len(train_idx),
      'num_val': len(val_idx),
      'num_test': len(test_labels),
      'truncated_fraction_train': float(np.mean(cut_all[train_idx])),
      'truncated_fraction_test': float(np.mean(cut_test)),
      'oov_rate_test': oov_rate,
      'chance_accuracy': 1 / num_classes,
      'majority_class': majority,
      **(info or {}),
    },
    train_data=train_data,
    length_buckets=buckets,
    bucket_probs=probs,
    encode=lambda texts: dict(zip(('inputs', 'lengths'), encode([vocab.tokenize(t) for t in texts])[:2])),
  )


def _tfds_texts(
  name: str, split: str, text_key: str, data_dir: str | None, alternative: str
) -> tuple[list[str], list[int]]:
  examples = tfds_source.load_split(name, split, data_dir, alternative=alternative)
  return ([tfds_source.text_of(ex[text_key]) for ex in examples], [int(ex['label']) for ex in examples])


def _one_source(task: str, path: str | None, data_dir: str | None) -> None:
  if path is not None and data_dir is not None:
    raise ValueError(f'{task}: give path (local files) or data_dir (a TFDS data dir), not both')


def imdb(
  *,
  path: str | None = None,
  vocab_size: int = 20000,
  max_len: int = 400,
  num_val: int = 2500,
  buckets: Sequence[int] | None = None,
  data_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """IMDB sentiment (see module docstring).

  ``path``: the ``aclImdb/`` folder or the ``aclImdb_v1.tar.gz`` archive (None: TFDS ``imdb_reviews``
  from ``data_dir``, the TFDS data dir). Baseline: majority-label accuracy on test (0.5: the test
  set is balanced). Threshold: accuracy >= 0.85, a level word-level LSTMs trained from scratch
  typically reach on IMDB. ``seed`` is accepted for uniformity and unused: data and splits are fixed.
  """
  del seed
  _one_source('imdb', path, data_dir)
  if path is None:
    local = ', or read the aclImdb/ folder: --config.task.options.path=aclImdb'
    train = _tfds_texts('imdb_reviews', 'train', 'text', data_dir, local)
    test = _tfds_texts('imdb_reviews', 'test', 'text', data_dir, local)
    source = 'tfds:imdb_reviews'
  else:
    splits = local_text.read_imdb(path)
    train = splits['train'].texts, splits['train'].labels
    test = splits['test'].texts, splits['test'].labels
    source = local_text.resolve(path, 'IMDB')
  return text_classification_task(
    name='imdb',
    train_texts=train[0],
    train_labels=train[1],
    test_texts=test[0],
    test_labels=test[1],
    num_classes=2,
    vocab_size=vocab_size,
    max_len=max_len,
    num_val=num_val,
    buckets=buckets,
    threshold=0.85,
    info={'source': source, 'label_names': list(local_text.IMDB_LABELS)},
  )


def sst2(
  *,
  path: str | None = None,
  vocab_size: int = 15000,
  max_len: int = 64,
  num_val: int = 2000,
  buckets: Sequence[int] | None = None,
  data_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """SST-2 sentiment (see module docstring).

  ``path``: GLUE's ``SST-2/`` folder with ``train.tsv`` and ``dev.tsv`` (None: TFDS ``glue/sst2`` from
  ``data_dir``, the TFDS data dir). Baseline: majority-label accuracy on the GLUE validation
  sentences (the training majority is positive; the validation set is close to balanced).
  Threshold: accuracy >= 0.8, a level word-level LSTMs trained from scratch typically reach on
  SST-2. ``seed`` is accepted for uniformity and unused: data and splits are fixed.
  """
  del seed
  _one_source('sst2', path, data_dir)
  if path is None:
    local = ", or read GLUE's SST-2/ folder: --config.task.options.path=SST-2"
    train = _tfds_texts('glue/sst2', 'train', 'sentence', data_dir, local)
    test = _tfds_texts('glue/sst2', 'validation', 'sentence', data_dir, local)
    source = 'tfds:glue/sst2'
  else:
    splits = local_text.read_sst2(path)
    train = splits['train'].texts, splits['train'].labels
    test = splits['dev'].texts, splits['dev'].labels
    source = local_text.resolve(path, 'SST-2')
  return text_classification_task(
    name='sst2',
    train_texts=train[0],
    train_labels=train[1],
    test_texts=test[0],
    test_labels=test[1],
    num_classes=2,
    vocab_size=vocab_size,
    max_len=max_len,
    num_val=num_val,
    buckets=buckets,
    threshold=0.8,
    info={'source': source, 'label_names': ['negative', 'positive']},
  )


def text_classification(
  *,
  path: str | None = None,
  text_column: str = 'text',
  label_column: str = 'label',
  split_column: str = 'split',
  vocab_size: int = 20000,
  max_len: int = 256,
  num_val: int = 1000,
  buckets: Sequence[int] | None = None,
  threshold: float | None = None,
  seed: int = 0,
) -> Task:
  """Classification of the researcher's own labelled texts (see ``local_text.read_splits``).

  Args:
    path: a folder with ``train`` and ``test`` files (and optionally ``val``, ``validation`` or
      ``dev``), each ``.csv``, ``.tsv``, ``.jsonl`` or ``.json``; or one such file whose
      ``split_column`` names each example's split.
    text_column: the field holding the text.
    label_column: the field holding the label. Labels are strings or integers; their ids follow the
      sorted training labels (numeric order if all are integers), listed in ``task.info['label_names']``.
    split_column: the field naming the split, when ``path`` is one file.
    vocab_size: as for ``imdb``.
    max_len: as for ``imdb``.
    buckets: as for ``imdb``.
    num_val: validation examples carved from train when no validation file or rows are given.
    threshold: the accuracy that counts as solving the task (None: no threshold).
    seed: accepted for uniformity and unused: data and splits are fixed.

  Baseline: majority-label accuracy on test.
  """
  del seed
  if path is None:
    raise ValueError(
      'text_classification needs path=: a folder with train.csv and test.csv (or .tsv, '
      '.jsonl, .json), or one such file with a split column'
    )
  splits = local_text.read_splits(path, text_column=text_column, label_column=label_column, split_column=split_column)
  ids, names = local_text.label_ids(splits)
  val = splits.get('val')
  return text_classification_task(
    name='text_classification',
    train_texts=splits['train'].texts,
    train_labels=ids['train'],
    test_texts=splits['test'].texts,
    test_labels=ids['test'],
    num_classes=len(names),
    vocab_size=vocab_size,
    max_len=max_len,
    num_val=num_val,
    buckets=buckets,
    threshold=threshold,
    val_texts=None if val is None else val.texts,
    val_labels=ids.get('val'),
    info={'source': local_text.resolve(path, 'the dataset'), 'label_names': names},
  )
