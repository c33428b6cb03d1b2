"""Named-entity recognition as per-step classification: one tag per token.

Data, two sources with one pipeline:

* ``ner_conll``: local CoNLL-format files, one per split, in the folder ``path``. A line is
  ``token ... tag``: whitespace-separated columns, the token first and the tag in column
  ``tag_column`` (default -1, the last; CoNLL-2003's ``token POS chunk NER`` lines need nothing
  else). Blank lines end sentences; ``-DOCSTART-`` lines are skipped. Every data line of a file must
  have the same number of columns. File names per split (first match; two matches is an error):

  ======  ========================================
  split   accepted names in ``path``
  ======  ========================================
  train   ``train.txt``, ``eng.train``
  val     ``valid.txt``, ``dev.txt``, ``eng.testa``
  test    ``test.txt``, ``eng.testb``
  ======  ========================================

  (``train_file``/``val_file``/``test_file`` name other files, relative to ``path``.)
* ``conll2003``: TFDS ``conll2003`` (Tjong Kim Sang & De Meulder 2003; splits train/dev/test,
  features ``tokens`` and ``ner``), read as array_record without TensorFlow.

Pipeline: the vocabulary is built from training tokens only (``vocab.build_vocab``: PAD=0, OOV=1,
the ``vocab_size - 2`` most frequent; ``lowercase`` folds case first, which loses the capital letter,
the strongest cue for a name). Tag ids: ``'O'`` is 0, then the other training tags sorted, so padded
targets (0) are ``'O'`` (never counted: the loss and metrics mask padding). A dev/test tag that never
occurs in training is an error naming its file and line. Training sentences are cut to ``max_len``
tokens and grouped in length buckets; evaluation sentences are never cut, so entity scores are over
whole sentences.

Metrics: token accuracy per valid step (``per_step_class``) and, from ``Task.score``, entity-level
``entity_precision``, ``entity_recall`` and ``entity_f1`` (micro-averaged over entity types) by
seqeval in its default mode, which follows the CoNLL ``conlleval`` script: an ``I-X`` after ``O``
starts an entity, so IOB1 files (the original CoNLL-2003 release) and IOB2 files score alike.

Shapes: inputs ``[batch, time]`` int32 token ids, targets ``[batch, time]`` int32 tag ids, lengths
``[batch]``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Mapping, Sequence

import numpy as np

from deeprnn_jax._extras import require
from deeprnn_jax.tasks import pipeline, tfds_source, vocab
from deeprnn_jax.tasks.base import Baseline, Batch, Task

OUTSIDE = 'O'
DOCSTART = '-DOCSTART-'
SPLIT_FILES = {
  'train': ('train.txt', 'eng.train'),
  'val': ('valid.txt', 'dev.txt', 'eng.testa'),
  'test': ('test.txt', 'eng.testb'),
}
METRIC_MODES = {'loss': 'min', 'accuracy': 'max', 'entity_f1': 'max', 'entity_precision': 'max', 'entity_recall': 'max'}


@dataclasses.dataclass(frozen=True)
class Sentence:
  """One sentence: its tokens and their tags, and where it came from (for error messages): a
  file's token lines are consecutive, so token ``j`` is on line ``first_line + j``."""

  tokens: tuple[str, ...]
  tags: tuple[str, ...]
  source: str
  first_line: int | None = None

  def where(self, j: int) -> str:
    if self.first_line is None:
      return f'{self.source} token {j}'
    return f'{self.source}:{self.first_line + j}'


def read_conll(path: str | os.PathLike, tag_column: int = -1) -> list[Sentence]:
  """The sentences of a CoNLL-format file (see module docstring).

  Raises ValueError (one line, naming the file and line) for a line with fewer than two columns, a
  line whose column count differs from the file's first data line, a ``tag_column`` outside the
  columns, or a file with no sentence.
  """
  sentences, tokens, tags = [], [], []
  num_columns, first_line = None, 0

  def end_sentence():
    if tokens:
      sentences.append(Sentence(tuple(tokens), tuple(tags), str(path), first_line))
      tokens.clear()
      tags.clear()

  with open(path, encoding='utf-8') as f:
    for lineno, line in enumerate(f, 1):
      columns = line.split()
      if not columns:
        end_sentence()
        continue
      if columns[0] == DOCSTART:
        end_sentence()
        continue
      if len(columns) < 2:
        raise ValueError(
          f'{path}:{lineno}: one column {columns[0]!r}, but a CoNLL line needs a '
          f'token and a tag (`token ... tag`, whitespace-separated)'
        )
      if num_columns is None:
        num_columns = len(columns)
        if not -num_columns <= tag_column < num_columns or tag_column in (0, -num_columns):
          raise ValueError(
            f'{path}:{lineno}: tag_column={tag_column} is not a tag column of a '
            f'{num_columns}-column line (column 0 is the token); use 1..{num_columns - 1} '
            f'or -1 (the last)'
          )
      elif len(columns) != num_columns:
        raise ValueError(
          f"{path}:{lineno}: {len(columns)} columns where the file's first line has "
          f'{num_columns}; every token line needs the same columns'
        )
      if not tokens:
        first_line = lineno
      tokens.append(columns[0])
      tags.append(columns[tag_column])
  end_sentence()
  if not sentences:
    raise ValueError(
      f'{path}: no sentences (empty, or only blank and {DOCSTART} lines); '
      f'expected `token ... tag` lines with blank lines between sentences'
    )
  return sentences


def split_files(path: str | os.PathLike, overrides: Mapping[str, str | None]) -> dict[str, pathlib.Path]:
  """``{'train', 'val', 'test'}`` -> the file of each split in folder ``path`` (see ``SPLIT_FILES``)."""
  root = pathlib.Path(os.path.expanduser(str(path)))
  if not root.is_dir():
    raise FileNotFoundError(
      f'NER data folder {root} not found: pass path=<folder with '
      f'train.txt, valid.txt and test.txt (or eng.train, eng.testa, eng.testb)>'
    )
  files = {}
  for split, names in SPLIT_FILES.items():
    if overrides.get(split):
      file = root / overrides[split]
      if not file.is_file():
        raise FileNotFoundError(f'{split} file {file} not found (from {split}_file={overrides[split]!r})')
      files[split] = file
      continue
    found = [root / n for n in names if (root / n).is_file()]
    if not found:
      raise FileNotFoundError(
        f'no {split} file in {root}: expected one of {", ".join(names)} (or name it with {split}_file=...)'
      )
    if len(found) > 1:
      raise ValueError(
        f'two {split} files in {root}: {found[0].name} and {found[1].name}; keep one or name it with {split}_file=...'
      )
    files[split] = found[0]
  return files


def entity_scores(true_tags: Sequence[Sequence[str]], pred_tags: Sequence[Sequence[str]]) -> dict[str, float]:
  """Entity-level micro precision, recall and F1 of tag sequences (seqeval, conlleval mode).

  An entity counts as found only if its type and both boundaries match. No predicted entity gives
  precision 0 (not a warning), and likewise for recall.
  """
  sequence_labeling = require('seqeval.metrics.sequence_labeling', 'text', 'entity F1 (deeprnn_jax.tasks.tagging)')
  p, r, f, _ = sequence_labeling.precision_recall_fscore_support(
    [list(t) for t in true_tags], [list(t) for t in pred_tags], average='micro', zero_division=0
  )
  return {'entity_precision': float(p), 'entity_recall': float(r), 'entity_f1': float(f)}


def score_tags(tag_names: Sequence[str], predictions: np.ndarray, batch: Batch) -> dict[str, float]:
  """Entity scores of predicted tag ids ``[n, time]`` against ``batch['targets']`` ``[n, time]``,
  each sentence read up to its length (padded steps are never looked at)."""
  names = np.asarray(tag_names, dtype=object)
  predictions, targets = np.asarray(predictions), np.asarray(batch['targets'])
  lengths = np.asarray(batch['lengths'])
  if predictions.shape[0] != targets.shape[0]:
    raise ValueError(f'{predictions.shape[0]} predicted sentences for {targets.shape[0]} in the split')
  true = [names[targets[i, :n]] for i, n in enumerate(lengths)]
  pred = [names[np.clip(predictions[i, :n], 0, len(names) - 1)] for i, n in enumerate(lengths)]
  return entity_scores(true, pred)


def _encode_tags(sentences: Sequence[Sentence], tag_ids: Mapping[str, int], split: str) -> list[np.ndarray]:
  out = []
  for s in sentences:
    for j, tag in enumerate(s.tags):
      if tag not in tag_ids:
        raise ValueError(
          f'{s.where(j)}: tag {tag!r} of the {split} split never occurs in training; '
          f'training tags: {", ".join(tag_ids)} (fix the tag, or add it to the training data)'
        )
    out.append(np.array([tag_ids[t] for t in s.tags], np.int32))
  return out


def tagging_task(
  *,
  name: str,
  train: Sequence[Sentence],
  val: Sequence[Sentence],
  test: Sequence[Sentence],
  vocab_size: int,
  max_len: int | None,
  lowercase: bool,
  info: Mapping[str, object] | None = None,
) -> Task:
  """A per-step tagging Task from sentences (see module docstring).

  Baseline (metric ``entity_f1`` on test): the majority tag per token id: every id gets its most
  frequent tag in training (ties: the lower tag id, so ``'O'`` first; an id never seen in training,
  e.g. OOV when the vocabulary holds every training word, gets ``'O'``). It finds the entities seen
  in training but knows no context. (Tagging every token ``'O'`` scores entity F1 0; its token
  accuracy is in ``info['all_o_accuracy_test']``.)
  """
  if not train:
    raise ValueError(f'{name}: the training split has no sentences')
  fold = str.lower if lowercase else (lambda t: t)
  train_tokens = [[fold(t) for t in s.tokens] for s in train]
  ids = vocab.build_vocab(train_tokens, vocab_size)
  tag_names = (OUTSIDE,) + tuple(sorted({t for s in train for t in s.tags} - {OUTSIDE}))
  tag_ids = {t: i for i, t in enumerate(tag_names)}
  longest = max(len(s.tokens) for s in train)
  max_len = longest if max_len is None else int(max_len)
  if max_len < 1:
    raise ValueError(f'max_len must be >= 1, got {max_len}')

  def encode(sentences, split, length=None):
    x = [vocab.encode([fold(t) for t in s.tokens], ids) for s in sentences]
    y = _encode_tags(sentences, tag_ids, split)
    length = length or max(len(s) for s in x)
    inputs, lengths = pipeline.pad_sequences(x, length)
    targets, _ = pipeline.pad_sequences(y, length)
    return {'inputs': inputs, 'targets': targets, 'lengths': lengths}

  train_arrays = encode(train, 'train', max_len)
  eval_splits = {'val': encode(val, 'val'), 'test': encode(test, 'test')}
  buckets = pipeline.default_buckets(max_len, smallest=16)
  train_batch, train_data, probs = pipeline.array_stream(
    train_arrays, dict, lengths=train_arrays['lengths'], buckets=buckets, time_keys=('inputs', 'targets')
  )

  # Majority tag per token id: counts [vocab, tags] over valid training steps.
  size = len(ids) + vocab.NUM_SPECIAL
  valid = np.arange(max_len)[None, :] < train_arrays['lengths'][:, None]
  counts = np.zeros((size, len(tag_names)), np.int64)
  np.add.at(counts, (train_arrays['inputs'][valid], train_arrays['targets'][valid]), 1)
  majority = counts.argmax(axis=1).astype(np.int32)  # an unseen id has all-zero counts: 'O'

  def predict_majority(split):
    return majority[split['inputs']]

  def score(split, predictions, batch):
    del split
    return score_tags(tag_names, predictions, batch)

  by_split = {k: score_tags(tag_names, predict_majority(b), b) for k, b in eval_splits.items()}
  test = eval_splits['test']
  test_valid = np.arange(test['targets'].shape[1])[None, :] < test['lengths'][:, None]
  oov = test['inputs'][test_valid] == vocab.OOV
  return Task(
    name=name,
    input_kind='tokens',
    input_size=size,
    output_kind='per_step_class',
    output_size=len(tag_names),
    seq_len=max_len,
    train_batch=train_batch,
    eval_splits=eval_splits,
    baseline=Baseline(
      'entity_f1',
      by_split['test']['entity_f1'],
      "each token's most frequent training tag (O for tokens unseen in training), entity F1 on test",
    ),
    metric_modes=dict(METRIC_MODES),
    info={
      'tag_names': tag_names,
      'vocab_size': size,
      'pad_id': vocab.PAD,
      'oov_id': vocab.OOV,
      'lowercase': lowercase,
      'num_train': len(train),
      'num_val': len(val),
      'num_test': len(test['lengths']),
      'truncated_fraction_train': float(np.mean([len(s.tokens) > max_len for s in train])),
      'oov_rate_test': float(oov.mean()) if oov.size else 0.0,
      'all_o_accuracy_test': float(np.mean(test['targets'][test_valid] == 0)),
      'majority_tag_scores': by_split,
      **(info or {}),
    },
    train_data=train_data,
    length_buckets=buckets,
    bucket_probs=probs,
    score=score,
  )


def ner_conll(
  *,
  path: str | None = None,
  tag_column: int = -1,
  vocab_size: int = 30000,
  max_len: int | None = None,
  lowercase: bool = False,
  train_file: str | None = None,
  val_file: str | None = None,
  test_file: str | None = None,
  seed: int = 0,
) -> Task:
  """Named-entity recognition from local CoNLL-format files (see module docstring).

  Options: ``path`` (the folder; required), ``tag_column`` (the tag's column, default the last),
  ``vocab_size`` (PAD and OOV included), ``max_len`` (training sentences are cut to it; default
  the longest), ``lowercase``, ``train_file``/``val_file``/``test_file`` (names in ``path``
  instead of the standard ones). No threshold: what counts as solved depends on the corpus.
  ``seed`` is accepted for uniformity and unused: data and splits are fixed.
  """
  del seed
  if not path:
    raise ValueError(
      'ner_conll needs path=<folder with train.txt, valid.txt and test.txt (or eng.train, eng.testa, eng.testb)>'
    )
  files = split_files(path, {'train': train_file, 'val': val_file, 'test': test_file})
  sentences = {split: read_conll(file, tag_column) for split, file in files.items()}
  return tagging_task(
    name='ner_conll',
    vocab_size=vocab_size,
    max_len=max_len,
    lowercase=lowercase,
    info={'files': {k: str(v) for k, v in files.items()}},
    **sentences,
  )


def _tfds_sentences(
  examples: Sequence[Mapping[str, np.ndarray]], name: str, split: str, tag_names: Sequence[str]
) -> list[Sentence]:
  out = []
  for i, ex in enumerate(examples):
    tokens = tuple(tfds_source.text_of(t) for t in ex['tokens'])
    tags = tuple(tag_names[int(t)] for t in ex['ner'])
    if len(tokens) != len(tags):
      raise ValueError(
        f'TFDS {name} {split} example {i}: {len(tokens)} tokens but {len(tags)} '
        f'NER tags; the dataset is damaged: prepare it again'
      )
    out.append(Sentence(tokens, tags, f'TFDS {name} {split} example {i}'))
  return out


def conll2003(
  *,
  data_dir: str | None = None,
  vocab_size: int = 30000,
  max_len: int | None = None,
  lowercase: bool = False,
  seed: int = 0,
) -> Task:
  """CoNLL-2003 English NER from TFDS ``conll2003`` (train 14041 / dev 3250 / test 3453
  sentences; tags O and B-/I- of PER, ORG, LOC, MISC); ``data_dir`` is the TFDS data dir.

  Options as in ``ner_conll``. No threshold (published scores use character features and
  pretrained embeddings this word-level model has not). ``seed`` is accepted and unused.
  """
  del seed
  tfds = require('tensorflow_datasets', 'experiments', 'a TFDS dataset')
  # TFDS registers its text builders only when their module is imported.
  import tensorflow_datasets.text.conll2003  # noqa: F401  (registers the builder)

  # Read before asking for the tag names: a dataset that is not prepared fails here, with the
  # command that prepares it.
  examples = {
    k: tfds_source.load_split('conll2003', s, data_dir)
    for k, s in (('train', 'train'), ('val', 'dev'), ('test', 'test'))
  }
  tag_names = tfds.builder('conll2003', data_dir=data_dir).info.features['ner'].feature.names
  sentences = {k: _tfds_sentences(v, 'conll2003', k, tag_names) for k, v in examples.items()}
  return tagging_task(name='conll2003', vocab_size=vocab_size, max_len=max_len, lowercase=lowercase, **sentences)
