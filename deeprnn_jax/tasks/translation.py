"""Translation: sentence pairs from two aligned local files or from TFDS, for ``deeprnn_jax.Seq2Seq``.

* ``parallel_text``: two UTF-8 files with one sentence per line, line ``i`` of the source file
  translating line ``i`` of the target file (the layout of Moses / WMT / OPUS ``.en``/``.de``
  pairs); a test pair of files, and optionally a validation pair (else it is carved from train).
* ``ted_pt_en``: TED talks Portuguese -> English (Qi et al. 2018), TFDS
  ``ted_hrlr_translate/pt_to_en`` (51,785 train / 1,193 validation / 1,803 test pairs, already
  lower-cased and tokenized), read as array_record without TensorFlow (``tfds_source``).

Pipeline: whitespace tokenization (optionally lower-cased); one vocabulary per side from the
training pairs only (the ``vocab_size - 4`` most frequent tokens, ties alphabetical; ids 0..3 are
``PAD``, ``BOS``, ``EOS``, ``OOV``); training pairs with a side longer than ``max_len`` tokens
are dropped; evaluation pairs are cut to ``max_len`` for teacher forcing, but BLEU and decoded
exact match compare against the whole reference sentence, tokens outside the vocabulary included.
"""

from __future__ import annotations

import collections
import os
from typing import Iterable, Sequence

import numpy as np

from deeprnn_jax.tasks import pipeline, tfds_source
from deeprnn_jax.tasks.base import NUM_SEQUENCE_SPECIALS, OOV_ID, Task
from deeprnn_jax.tasks.transduction import SPECIAL_TOKENS, pad_pairs, pool_stream, sequence_task

Pair = tuple[list[str], list[str]]


def read_lines(path: str | os.PathLike) -> list[str]:
  """The lines of a UTF-8 text file (without line ends); one-line errors for a missing, empty or
  not-UTF-8 file."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise ValueError(f'cannot read {path}: {e.strerror or e}') from None
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError as e:
    line = data[: e.start].count(b'\n') + 1
    raise ValueError(
      f'{path} is not UTF-8 text: byte {e.start} (line {line}) is {data[e.start : e.start + 1]!r}; '
      're-encode it as UTF-8'
    ) from None
  lines = text.splitlines()
  if not any(line.strip() for line in lines):
    raise ValueError(f'{path} is empty: a parallel text file needs one sentence per line')
  return lines


def read_parallel(
  source_path: str | os.PathLike, target_path: str | os.PathLike, *, lowercase: bool = False
) -> list[Pair]:
  """Aligned sentence pairs of two files, whitespace-tokenized; pairs with an empty side are
  skipped (blank lines). A ValueError (one line) names files whose line counts differ."""
  sources, targets = read_lines(source_path), read_lines(target_path)
  if len(sources) != len(targets):
    raise ValueError(
      f'{source_path} has {len(sources)} lines but {target_path} has {len(targets)}: '
      'parallel files must be aligned line by line'
    )
  return _tokenize_pairs(zip(sources, targets), lowercase)


def _tokenize_pairs(pairs: Iterable[tuple[str, str]], lowercase: bool) -> list[Pair]:
  out = []
  for s, t in pairs:
    if lowercase:
      s, t = s.lower(), t.lower()
    s, t = s.split(), t.split()
    if s and t:
      out.append((s, t))
  return out


def build_vocab(token_lists: Iterable[Sequence[str]], vocab_size: int) -> tuple[str, ...]:
  """The vocabulary as id -> token: the 4 special tokens, then the ``vocab_size - 4`` most
  frequent tokens (ties alphabetical, so it is a deterministic function of the texts)."""
  if vocab_size <= NUM_SEQUENCE_SPECIALS:
    raise ValueError(f'vocab_size must exceed {NUM_SEQUENCE_SPECIALS} (PAD, BOS, EOS, OOV); got {vocab_size}')
  counts = collections.Counter(tok for toks in token_lists for tok in toks)
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: vocab_size - NUM_SEQUENCE_SPECIALS]
  return SPECIAL_TOKENS + tuple(tok for tok, _ in ranked)


def translation_task(
  *,
  name: str,
  train: Sequence[Pair],
  test: Sequence[Pair],
  val: Sequence[Pair] | None,
  num_val: int,
  source_vocab_size: int,
  target_vocab_size: int,
  max_len: int,
  info: dict | None = None,
) -> Task:
  """A ``'sequence'`` Task from tokenized pairs (see the module docstring); ``val=None`` carves
  ``num_val`` pairs from ``train`` (fixed, whatever the run's seed)."""
  if max_len < 1:
    raise ValueError(f'max_len must be >= 1; got {max_len}')
  train = list(train)
  if val is None:
    train_idx, val_idx = pipeline.carve_validation(len(train), num_val)
    train, val = [train[i] for i in train_idx], [train[i] for i in val_idx]
  kept = [p for p in train if len(p[0]) <= max_len and len(p[1]) <= max_len]
  if not kept:
    raise ValueError(f'{name}: no training pair has both sides within max_len={max_len} tokens')
  source_tokens = build_vocab((s for s, _ in kept), source_vocab_size)
  target_tokens = build_vocab((t for _, t in kept), target_vocab_size)
  src_id = {w: i for i, w in enumerate(source_tokens)}
  tgt_id = {w: i for i, w in enumerate(target_tokens)}

  def encode(pairs):
    sources = [[src_id.get(w, OOV_ID) for w in s[:max_len]] for s, _ in pairs]
    targets = [[tgt_id.get(w, OOV_ID) for w in t[:max_len]] for _, t in pairs]
    return pad_pairs(sources, targets, max_len, max_len + 1)

  splits = {'val': list(val), 'test': list(test)}
  eval_splits = {k: encode(v) for k, v in splits.items() if v}
  if 'test' not in eval_splits:
    raise ValueError(f'{name}: the test split is empty')
  train_arrays = encode(kept)
  train_batch, train_data = pool_stream(train_arrays)
  test_target = [t for _, t in splits['test']]
  oov = sum(w not in tgt_id for t in test_target for w in t) / max(sum(map(len, test_target)), 1)
  return sequence_task(
    name=name,
    source_tokens=source_tokens,
    target_tokens=target_tokens,
    seq_len=max_len,
    train_batch=train_batch,
    train_sample=train_arrays,
    eval_splits=eval_splits,
    references={k: [t for _, t in v] for k, v in splits.items() if v},
    train_data=train_data,
    info={
      'num_train': len(kept),
      'dropped_too_long_train': len(train) - len(kept),
      'num_val': len(splits['val']),
      'num_test': len(splits['test']),
      'truncated_fraction_test': float(np.mean([len(s) > max_len or len(t) > max_len for s, t in splits['test']])),
      'oov_rate_test_target': float(oov),
      **(info or {}),
    },
  )


def parallel_text(
  *,
  train_source: str = '',
  train_target: str = '',
  test_source: str = '',
  test_target: str = '',
  val_source: str = '',
  val_target: str = '',
  num_val: int = 500,
  source_vocab_size: int = 8000,
  target_vocab_size: int = 8000,
  max_len: int = 50,
  lowercase: bool = False,
  seed: int = 0,
) -> Task:
  """Translation from local aligned files (see the module docstring). The train and test pairs
  of files are required; without a validation pair, ``num_val`` training pairs are held out.
  ``seed`` is accepted for uniformity and unused: data and splits are fixed."""
  del seed
  for what, a, b in (('train', train_source, train_target), ('test', test_source, test_target)):
    if not (a and b):
      raise ValueError(f'parallel_text needs {what}_source and {what}_target (paths of aligned text files)')
  if bool(val_source) != bool(val_target):
    raise ValueError('parallel_text: give both val_source and val_target, or neither')
  read = lambda s, t: read_parallel(s, t, lowercase=lowercase)
  return translation_task(
    name='parallel_text',
    train=read(train_source, train_target),
    test=read(test_source, test_target),
    val=read(val_source, val_target) if val_source else None,
    num_val=num_val,
    source_vocab_size=source_vocab_size,
    target_vocab_size=target_vocab_size,
    max_len=max_len,
    info={'files': {'train': [train_source, train_target], 'test': [test_source, test_target]}},
  )


def ted_pt_en(
  *,
  source_vocab_size: int = 8000,
  target_vocab_size: int = 8000,
  max_len: int = 50,
  data_dir: str | None = None,
  seed: int = 0,
) -> Task:
  """TED talks pt -> en from TFDS ``ted_hrlr_translate/pt_to_en`` (prepared as array_record;
  ``data_dir`` is the TFDS data dir). Its own validation split is ``'val'``. ``seed`` is unused."""
  del seed
  name = 'ted_hrlr_translate/pt_to_en'

  def pairs(split):
    examples = tfds_source.load_split(name, split, data_dir)
    return _tokenize_pairs(
      ((tfds_source.text_of(ex['pt']), tfds_source.text_of(ex['en'])) for ex in examples), lowercase=False
    )

  return translation_task(
    name='ted_pt_en',
    train=pairs('train'),
    test=pairs('test'),
    val=pairs('validation'),
    num_val=0,
    source_vocab_size=source_vocab_size,
    target_vocab_size=target_vocab_size,
    max_len=max_len,
    info={'tfds_name': name},
  )
