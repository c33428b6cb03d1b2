"""Language modelling with stateful truncated BPTT: ``word_lm`` and ``char_lm`` (Zaremba et al. 2014).

Data: a folder in the Penn Treebank / WikiText layout, three plain-text (UTF-8) files whose names hold
``train``, ``valid`` (or ``validation``, ``val``, ``dev``) and ``test`` as a dot-separated part:
``ptb.train.txt`` / ``ptb.valid.txt`` / ``ptb.test.txt`` (Mikolov's PTB as Zaremba et al. ship it),
``wiki.train.tokens`` / ``wiki.valid.tokens`` / ``wiki.test.tokens`` (WikiText-2/103), or ``train.txt``
/ ``valid.txt`` / ``test.txt``. One sentence a line; an end-of-sentence token ``<eos>`` ends every line
(a blank line is just ``<eos>``), and a ``<unk>`` in the text is an ordinary token. ``char_lm`` also
reads a single text file, split contiguously (``val_fraction`` / ``test_fraction``, 90/5/5 by default).

* ``word_lm``: tokens are the whitespace-separated words of each line, then ``<eos>`` (as
  TensorFlow's PTB reader does: ``text.replace('\\n', ' <eos> ').split()``).
* ``char_lm``: tokens are the characters of each line (leading and trailing white space dropped),
  then ``<eos>``.

The vocabulary is the training tokens, ids ``0..V-1`` by decreasing count (ties alphabetically); there
is no padding id, so the softmax covers exactly the ``V`` tokens (10,000 for PTB), as the published
perplexities do. A valid/test word absent from train becomes ``<unk>``; if train has no ``<unk>``
that is a one-line error (a character absent from train always is).

Training is stateful (``Task.stream_tokens``): the ``n`` training tokens are cut into ``B`` (batch
size) contiguous streams of ``L = n // B`` tokens (the tail dropped), and step ``s`` reads window
``w = s mod W`` of every stream, ``W = (L - 1) // seq_len``: inputs ``streams[:, w T : (w + 1) T]``,
targets shifted by one, ``reset`` set on ``w = 0``. The trainer carries each stream's state across
windows and restarts it at each epoch (every ``W`` steps), as Zaremba et al.'s code does.

Evaluation reads each split as ``eval_streams`` contiguous streams (default 1: the whole split as one
sequence), ``[rows, windows, seq_len]``, window after window with the carries carried; the last
window of a row is shorter (``lengths``) and a row past its end has length 0, so every one of the
split's ``m - 1`` next-token predictions counts exactly once.

Metrics: ``loss`` (cross-entropy in nats per token), ``accuracy``, and from the split's exact mean
loss (``Task.derived``): ``perplexity`` :math:`= \\exp(\\bar\\ell)` (``word_lm``) or
``bits_per_char`` :math:`= \\bar\\ell / \\ln 2` (``char_lm``). Baseline: the unigram model of the
training counts on the validation text, in the task's metric.
"""

from __future__ import annotations

import collections
import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax.tasks import local_text
from deeprnn_jax.tasks.base import Baseline, Batch, Task, stream_windows

EOS, UNK = '<eos>', '<unk>'
SPLIT_NAMES = {'train': ('train',), 'val': ('valid', 'validation', 'val', 'dev'), 'test': ('test',)}
LEVELS = ('word', 'char')
_LAYOUT = 'a folder with train, valid and test text files (e.g. ptb.train.txt, ptb.valid.txt, ptb.test.txt)'


def split_files(folder: str) -> dict[str, str]:
  """``{'train', 'val', 'test'}`` -> the file of each split in ``folder`` (see the module docstring)."""
  names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)) and not n.startswith('.'))
  files = {}
  for split, words in SPLIT_NAMES.items():
    found = [n for n in names if any(w in n.lower().split('.') for w in words)]
    if not found:
      raise FileNotFoundError(
        f'{folder}: no {words[0]} file (a name with .{words[0]}., e.g. ptb.{words[0]}.txt); path should name {_LAYOUT}'
      )
    if len(found) > 1:
      raise ValueError(f'{folder}: {len(found)} files could be the {words[0]} split ({", ".join(found)}); keep one')
    files[split] = os.path.join(folder, found[0])
  return files


def tokenize(text: str, level: str) -> list[str]:
  """Tokens of ``text``: per line, its words (``'word'``) or its stripped characters (``'char'``), then ``<eos>``."""
  lines = text.split('\n')
  if lines and lines[-1] == '':  # a final newline ends the last line; it does not start another
    lines.pop()
  tokens = []
  for line in lines:
    line = line.rstrip('\r')
    tokens.extend(line.split() if level == 'word' else list(line.strip()))
    tokens.append(EOS)
  return tokens


def read_corpus(
  path: str, level: str, val_fraction: float = 0.05, test_fraction: float = 0.05
) -> tuple[dict[str, list[str]], dict[str, str]]:
  """``({split: tokens}, {split: where})`` from a folder in the PTB layout or, for ``'char'``, one file."""
  full = local_text.resolve(path, _LAYOUT if level == 'word' else f'{_LAYOUT}, or one text file')
  if os.path.isdir(full):
    files = split_files(full)
    texts = {s: local_text.read_text(f) for s, f in files.items()}
    where = files
  elif level == 'word':
    raise ValueError(f'{full}: a file; word_lm reads {_LAYOUT}')
  else:
    texts = dict(
      zip(('train', 'val', 'test'), local_text.split_text(local_text.read_text(full), val_fraction, test_fraction))
    )
    where = {s: f'{full} ({s} part)' for s in texts}
  return {s: tokenize(t, level) for s, t in texts.items()}, where


def build_vocab(tokens: Sequence[str]) -> list[str]:
  """The distinct tokens by decreasing count, ties in alphabetical order (id = position)."""
  counts = collections.Counter(tokens)
  return sorted(counts, key=lambda t: (-counts[t], t))


def encode(tokens: Sequence[str], ids: dict[str, int], where: str, level: str) -> np.ndarray:
  """Token ids; a token absent from the vocabulary becomes ``<unk>`` (an error if there is none)."""
  unk = ids.get(UNK)
  missing = [t for t in tokens if t not in ids]
  if missing and (unk is None or level == 'char'):
    what = 'characters' if level == 'char' else 'words'
    fix = (
      'use texts whose characters all occur in the training text'
      if level == 'char'
      else f'the training text has no {UNK} to stand for them: map rare words to {UNK} in every split, as PTB '
      f'and WikiText do'
    )
    raise ValueError(f'{where}: {len(missing)} {what} not in the training vocabulary (first: {missing[0]!r}); {fix}')
  return np.array([ids.get(t, unk) for t in tokens], np.int32)


def train_streams(ids: jax.Array, batch_size: int) -> jax.Array:
  """``[batch_size, n // batch_size]``: the training text cut into contiguous streams, tail dropped."""
  length = ids.shape[0] // batch_size
  return ids[: batch_size * length].reshape(batch_size, length)


def eval_windows(ids: np.ndarray, seq_len: int, rows: int = 1) -> Batch:
  """A split as ``rows`` contiguous streams of windows: ``inputs``/``targets`` ``[rows, windows, seq_len]``,
  ``lengths`` ``[rows, windows]``, covering its ``m - 1`` next-token predictions exactly once."""
  n = len(ids) - 1
  per_row = -(-n // rows)
  windows = max(-(-per_row // seq_len), 1)
  inputs = np.zeros((rows, windows * seq_len), np.int32)
  targets = np.zeros((rows, windows * seq_len), np.int32)
  lengths = np.zeros((rows, windows), np.int32)
  for r in range(rows):
    start, stop = min(r * per_row, n), min((r + 1) * per_row, n)
    inputs[r, : stop - start] = ids[start:stop]
    targets[r, : stop - start] = ids[start + 1 : stop + 1]
    lengths[r] = np.clip(stop - start - np.arange(windows) * seq_len, 0, seq_len)
  shape = (rows, windows, seq_len)
  return {'inputs': inputs.reshape(shape), 'targets': targets.reshape(shape), 'lengths': lengths}


def unigram_cross_entropy(train: np.ndarray, ids: np.ndarray, vocab_size: int) -> float:
  """Mean cross-entropy (nats) on the next tokens ``ids[1:]`` of the unigram model of ``train``'s counts."""
  p = np.bincount(train, minlength=vocab_size) / len(train)
  return float(-np.mean(np.log(p[ids[1:]])))


def language_model_task(
  *,
  name: str,
  level: str,
  splits: dict[str, list[str]],
  where: dict[str, str],
  seq_len: int,
  eval_streams: int = 1,
  info: dict | None = None,
) -> Task:
  """A stateful next-token Task from tokenized ``train``/``val``/``test`` (see the module docstring)."""
  if level not in LEVELS:
    raise ValueError(f'unknown level {level!r}; choose one of {list(LEVELS)}')
  if not isinstance(seq_len, int) or seq_len < 1:
    raise ValueError(f'seq_len must be a positive integer (the truncated BPTT window); got {seq_len!r}')
  if not isinstance(eval_streams, int) or eval_streams < 1:
    raise ValueError(f'eval_streams must be a positive integer; got {eval_streams!r}')
  vocab = build_vocab(splits['train'])
  ids = {t: i for i, t in enumerate(vocab)}
  arrays = {s: encode(toks, ids, where[s], level) for s, toks in splits.items()}
  train = arrays['train']
  if stream_windows(len(train), 1, seq_len) < 1:
    raise ValueError(
      f'{where["train"]}: {len(train)} training tokens are too few for seq_len={seq_len}; use a '
      f'longer text or a shorter seq_len'
    )
  for s in ('val', 'test'):
    if len(arrays[s]) < 2:
      raise ValueError(f'{where[s]}: {len(arrays[s])} tokens; a split needs at least 2 to predict one')
  train_data = {'ids': jnp.asarray(train)}

  def train_batch(key, step, batch_size, *, data=None, bucket=None):
    del key  # the streams are read in order: the batch is a function of the step alone
    if bucket is not None:
      raise ValueError(f'{name} has no length buckets')
    streams = train_streams((train_data if data is None else data)['ids'], batch_size)
    windows = (streams.shape[1] - 1) // seq_len
    if windows < 1:
      raise ValueError(
        f'{name}: {len(train)} training tokens cut into batch_size={batch_size} streams leave '
        f'{streams.shape[1]} tokens per stream, fewer than seq_len + 1 = {seq_len + 1}; use a smaller '
        f'train.batch_size or seq_len'
      )
    w = jnp.asarray(step, jnp.int32) % windows
    inputs = jax.lax.dynamic_slice_in_dim(streams, w * seq_len, seq_len, axis=1)
    targets = jax.lax.dynamic_slice_in_dim(streams, w * seq_len + 1, seq_len, axis=1)
    return {
      'inputs': inputs,
      'targets': targets,
      'lengths': jnp.full((batch_size,), seq_len, jnp.int32),
      'reset': jnp.full((batch_size,), w == 0),
    }

  unigram = unigram_cross_entropy(train, arrays['val'], len(vocab))
  if level == 'word':
    metric, value, derived = 'perplexity', math.exp(unigram), _perplexity
  else:
    metric, value, derived = 'bits_per_char', unigram / math.log(2), _bits_per_char
  return Task(
    name=name,
    input_kind='tokens',
    input_size=len(vocab),
    output_kind='per_step_class',
    output_size=len(vocab),
    seq_len=seq_len,
    train_batch=train_batch,
    eval_splits={s: eval_windows(arrays[s], seq_len, eval_streams) for s in ('val', 'test')},
    baseline=Baseline(metric, value, f'unigram model of the training {level} counts, on the validation text'),
    threshold=None,
    metric_modes={'loss': 'min', 'accuracy': 'max', metric: 'min'},
    info={
      'level': level,
      'metric': metric,
      'vocab_size': len(vocab),
      'eos': EOS,
      'has_unk': UNK in ids,
      **{f'{s}_tokens': int(len(a)) for s, a in arrays.items()},
      'eval_streams': eval_streams,
      'files': dict(where),
      **(info or {}),
    },
    train_data=train_data,
    stream_tokens=int(len(train)),
    derived=derived,
  )


def _perplexity(means):
  return {'perplexity': np.exp(np.asarray(means['loss'], np.float64))}


def _bits_per_char(means):
  return {'bits_per_char': np.asarray(means['loss'], np.float64) / math.log(2)}


def word_lm(*, path: str | None = None, seq_len: int = 35, eval_streams: int = 1, seed: int = 0) -> Task:
  """Word-level language modelling on a folder in the PTB / WikiText layout (see the module docstring).

  ``seq_len``: the truncated BPTT window (unroll; Zaremba et al.: 20 small, 35 medium/large).
  ``eval_streams``: streams each eval split is cut into (1: one sequence). ``seed``: unused.
  """
  del seed
  if path is None:
    raise ValueError(f'word_lm needs path=: {_LAYOUT}, e.g. --config.task.options.path=data/ptb')
  splits, where = read_corpus(path, 'word')
  return language_model_task(
    name='word_lm', level='word', splits=splits, where=where, seq_len=seq_len, eval_streams=eval_streams
  )


def char_lm(
  *,
  path: str | None = None,
  seq_len: int = 100,
  eval_streams: int = 1,
  val_fraction: float = 0.05,
  test_fraction: float = 0.05,
  seed: int = 0,
) -> Task:
  """Character-level language modelling on a folder in the PTB / WikiText layout, or on one UTF-8 text
  file split contiguously (``val_fraction`` / ``test_fraction`` of its characters, after the training
  part). Metric: bits per character. ``seed``: unused."""
  del seed
  if path is None:
    raise ValueError(
      f'char_lm needs path=: {_LAYOUT}, or a plain text file (UTF-8), e.g. --config.task.options.path=book.txt'
    )
  splits, where = read_corpus(path, 'char', val_fraction, test_fraction)
  return language_model_task(
    name='char_lm', level='char', splits=splits, where=where, seq_len=seq_len, eval_streams=eval_streams
  )
