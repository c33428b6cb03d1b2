r"""Synthetic transduction (sequence to sequence) with known difficulty, for ``deeprnn_jax.Seq2Seq``.

* ``reverse``  : ``a b c -> c b a`` (symbols drawn uniformly; the output is a fixed permutation
  of the input, easy with attention, a memory test without it);
* ``sort``     : ``c a b a -> a a b c`` (ascending symbol ids; needs counting, not alignment);
* ``addition`` : ``1 2 3 + 4 5 -> 1 6 8`` (decimal strings, one token per digit, operands of
  1..D digits without leading zeros; carries propagate right to left, against the reading order);
* ``scan``     : commands of the SCAN grammar (Lake & Baroni 2018) to actions,
  ``jump twice and walk left -> JUMP JUMP LTURN WALK``; all 20,910 commands are generated here.

All use the ``'sequence'`` batch of ``tasks/base.py`` (token ids ``PAD_ID`` 0, ``BOS_ID`` 1,
``EOS_ID`` 2, ``OOV_ID`` 3 (unused here), task tokens from 4). ``reverse``, ``sort`` and
``addition`` generate every batch on device from ``fold_in(key, step)``; ``scan`` draws from its
fixed pool with ``pipeline.array_stream``. Eval splits: ``'val'`` and ``'test'`` in the training
distribution and ``'test_len2x'``, longer than any training example (up to about twice as long),
for length generalization. Metrics: token cross-entropy, token ``accuracy`` and ``exact_match``
under teacher forcing; from the decoded outputs (``Task.score``) ``decoded_exact_match`` and
``bleu`` (sacrebleu's corpus BLEU over the task's tokens, 0..100).
"""

from __future__ import annotations

import itertools
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deeprnn_jax._extras import require
from deeprnn_jax.tasks import pipeline
from deeprnn_jax.tasks.base import BOS_ID, EOS_ID, NUM_SEQUENCE_SPECIALS, PAD_ID, Baseline, Batch, Task, Threshold

SPECIAL_TOKENS = ('<pad>', '<s>', '</s>', '<unk>')  # the strings of ids 0..3
METRIC_MODES = {'loss': 'min', 'accuracy': 'max', 'exact_match': 'max', 'decoded_exact_match': 'max', 'bleu': 'max'}
SPLIT_NAMES = ('val', 'test', 'test_len2x')
# Eval keys are folded from ``key(seed)`` with this offset, far from any training step number.
_EVAL_TAG = 2_000_000_000
_BASELINE_SAMPLE = 2048  # training pairs the position-wise baseline is fitted on


# ------------------------------------------------------------------------------------ batches


def pack(source: jax.Array, source_len: jax.Array, target: jax.Array, target_len: jax.Array) -> Batch:
  """A ``'sequence'`` batch from right-padded ``source`` ``[B, S]`` and ``target`` ``[B, T0]``
  (PAD past the lengths): ``target_in = [BOS, y_1..y_n]`` and ``targets = [y_1..y_n, EOS]``,
  both ``[B, T0 + 1]``, and ``lengths['target'] = n + 1``. Works on NumPy and JAX arrays."""
  xp = np if isinstance(target, np.ndarray) else jnp
  batch = target.shape[0]
  padded = xp.concatenate([target, xp.full((batch, 1), PAD_ID, target.dtype)], axis=1)
  target_in = xp.concatenate([xp.full((batch, 1), BOS_ID, target.dtype), target], axis=1)
  t = xp.arange(padded.shape[1])[None, :]
  targets = xp.where(t == target_len[:, None], EOS_ID, padded)
  return {
    'inputs': {'source': source.astype(xp.int32), 'target_in': target_in.astype(xp.int32)},
    'lengths': {'source': source_len.astype(xp.int32), 'target': (target_len + 1).astype(xp.int32)},
    'targets': targets.astype(xp.int32),
  }


def pad_pairs(
  sources: Sequence[Sequence[int]],
  targets: Sequence[Sequence[int]],
  source_width: int | None = None,
  target_width: int | None = None,
) -> Batch:
  """A NumPy ``'sequence'`` batch from id lists (targets without ``EOS``); widths default to the
  longest source and the longest target (+ 1 for ``BOS`` / ``EOS``)."""
  s = max(map(len, sources)) if source_width is None else source_width
  t = max(map(len, targets)) if target_width is None else target_width - 1
  src, src_len = pipeline.pad_sequences([np.asarray(x, np.int32) for x in sources], s)
  tgt, tgt_len = pipeline.pad_sequences([np.asarray(y, np.int32) for y in targets], t)
  return pack(src, src_len, tgt, tgt_len)


def pool_stream(pool: Batch) -> tuple[Callable, dict]:
  """``(train_batch, train_data)`` drawing batches from a fixed NumPy ``'sequence'`` batch of
  training pairs, on device (``pipeline.array_stream``: a permutation per epoch)."""
  flat = {
    'source': pool['inputs']['source'],
    'target_in': pool['inputs']['target_in'],
    'targets': pool['targets'],
    'source_len': pool['lengths']['source'],
    'target_len': pool['lengths']['target'],
  }
  finish = lambda a: {
    'inputs': {'source': a['source'], 'target_in': a['target_in']},
    'targets': a['targets'],
    'lengths': {'source': a['source_len'], 'target': a['target_len']},
  }
  train_batch, train_data, _ = pipeline.array_stream(flat, finish)
  return train_batch, train_data


def _uniform_lengths(key, batch_size: int, low: int, high: int) -> jax.Array:
  return jax.random.randint(key, (batch_size,), low, high + 1)


# ------------------------------------------------------------------------------ reverse, sort


def reverse_batch(key: jax.Array, batch_size: int, min_len: int, max_len: int, *, num_symbols: int) -> Batch:
  """Sources of ``n ~ U{min_len..max_len}`` symbols ``~ U{4..4 + num_symbols - 1}``; target: the
  source reversed. Shapes: source ``[B, max_len]``, target_in / targets ``[B, max_len + 1]``."""
  k_len, k_sym = jax.random.split(key)
  n = _uniform_lengths(k_len, batch_size, min_len, max_len)
  t = jnp.arange(max_len)[None, :]
  valid = t < n[:, None]
  symbols = jax.random.randint(k_sym, (batch_size, max_len), NUM_SEQUENCE_SPECIALS, NUM_SEQUENCE_SPECIALS + num_symbols)
  source = jnp.where(valid, symbols, PAD_ID)
  reversed_ = jnp.take_along_axis(source, jnp.where(valid, n[:, None] - 1 - t, t), axis=1)
  return pack(source, n, reversed_, n)


def sort_batch(key: jax.Array, batch_size: int, min_len: int, max_len: int, *, num_symbols: int) -> Batch:
  """As ``reverse_batch``, with target the source's symbols in ascending order (ties kept)."""
  k_len, k_sym = jax.random.split(key)
  n = _uniform_lengths(k_len, batch_size, min_len, max_len)
  valid = jnp.arange(max_len)[None, :] < n[:, None]
  symbols = jax.random.randint(k_sym, (batch_size, max_len), NUM_SEQUENCE_SPECIALS, NUM_SEQUENCE_SPECIALS + num_symbols)
  source = jnp.where(valid, symbols, PAD_ID)
  # Padding sorts last as a value above every symbol, then becomes PAD again.
  ordered = jnp.sort(jnp.where(valid, source, jnp.iinfo(jnp.int32).max), axis=1)
  return pack(source, n, jnp.where(valid, ordered, PAD_ID), n)


# ---------------------------------------------------------------------------------- addition

DIGIT0 = NUM_SEQUENCE_SPECIALS  # ids of '0'..'9' are DIGIT0..DIGIT0 + 9
PLUS = DIGIT0 + 10
ADDITION_TOKENS = SPECIAL_TOKENS + tuple('0123456789') + ('+',)


def _digits(key, batch_size: int, num_digits: jax.Array, width: int) -> jax.Array:
  """``[B, width]`` little-endian decimal digits of numbers with ``num_digits`` digits each (no
  leading zero unless the number is a single digit); zeros past ``num_digits``."""
  k_low, k_top = jax.random.split(key)
  t = jnp.arange(width)[None, :]
  low = jax.random.randint(k_low, (batch_size, width), 0, 10)
  top = jax.random.randint(k_top, (batch_size, 1), 1, 10)
  top = jnp.where(num_digits[:, None] == 1, low[:, :1], top)  # "0" is a number, "05" is not
  digits = jnp.where(t == num_digits[:, None] - 1, top, low)
  return jnp.where(t < num_digits[:, None], digits, 0)


def _big_endian(digits: jax.Array, n: jax.Array, width: int) -> jax.Array:
  """Little-endian ``[B, W]`` digits with ``n`` valid -> ``[B, width]`` digit *tokens*, most
  significant first, PAD past ``n``."""
  t = jnp.arange(width)[None, :]
  index = jnp.clip(n[:, None] - 1 - t, 0, digits.shape[1] - 1)
  return jnp.where(t < n[:, None], DIGIT0 + jnp.take_along_axis(digits, index, axis=1), PAD_ID)


def addition_batch(key: jax.Array, batch_size: int, min_digits: int, max_digits: int) -> Batch:
  """``a + b`` with ``a``, ``b`` of ``U{min_digits..max_digits}`` digits each (digits uniform).

  Source ``[B, 2 max_digits + 1]``: the digits of ``a``, ``+``, the digits of ``b``; target
  ``[B, max_digits + 2]`` (with ``EOS``): the digits of ``a + b``. Digit arithmetic with carries,
  so any number of digits works (no int32 overflow).
  """
  ka, kb, kla, klb = jax.random.split(key, 4)
  la = _uniform_lengths(kla, batch_size, min_digits, max_digits)
  lb = _uniform_lengths(klb, batch_size, min_digits, max_digits)
  width = max_digits + 1
  a, b = _digits(ka, batch_size, la, width), _digits(kb, batch_size, lb, width)

  def add(carry, ab):
    s = ab[0] + ab[1] + carry
    return s // 10, s % 10

  _, total = jax.lax.scan(add, jnp.zeros((batch_size,), jnp.int32), jnp.stack([a.T, b.T], axis=1))
  total = total.T  # [B, width] little-endian
  t = jnp.arange(width)[None, :]
  lt = jnp.maximum(jnp.max(jnp.where(total > 0, t + 1, 0), axis=1), 1)
  s = 2 * max_digits + 1
  pos = jnp.arange(s)[None, :]
  a_tok = _big_endian(a, la, s)
  b_tok = jnp.take_along_axis(_big_endian(b, lb, s), jnp.clip(pos - la[:, None] - 1, 0, s - 1), axis=1)
  source = jnp.where(
    pos < la[:, None], a_tok, jnp.where(pos == la[:, None], PLUS, jnp.where(pos <= (la + lb)[:, None], b_tok, PAD_ID))
  )
  return pack(source, la + lb + 1, _big_endian(total, lt, width), lt)


# ------------------------------------------------------------------------ metrics and baseline


def strip(ids: Sequence[int]) -> list[int]:
  """A decoded or target row up to (not including) its first ``EOS``, without ``PAD``."""
  out = []
  for i in np.asarray(ids).tolist():
    if i == EOS_ID:
      break
    if i != PAD_ID:
      out.append(i)
  return out


def sequence_score(
  predictions: np.ndarray, references: Sequence[Sequence[str]], tokens: Sequence[str]
) -> dict[str, float]:
  """Decoded ``predictions`` ``[n, L]`` ids against ``references`` (token lists):
  ``decoded_exact_match`` (fraction of outputs equal to their reference) and ``bleu``
  (sacrebleu's corpus BLEU, 0..100, on the whitespace-joined tokens, no further tokenization)."""
  sacrebleu = require('sacrebleu', 'text', 'BLEU (deeprnn_jax.tasks.transduction)')

  if len(predictions) != len(references):
    raise ValueError(f'score: {len(predictions)} predictions for {len(references)} references')
  hyps = [[tokens[i] if 0 <= i < len(tokens) else SPECIAL_TOKENS[3] for i in strip(row)] for row in predictions]
  refs = [list(r) for r in references]
  exact = float(np.mean([h == r for h, r in zip(hyps, refs)])) if refs else 0.0
  bleu = sacrebleu.corpus_bleu([' '.join(h) for h in hyps], [[' '.join(r) for r in refs]], tokenize='none')
  return {'decoded_exact_match': exact, 'bleu': float(bleu.score)}


def references_of(batch: Batch, tokens: Sequence[str]) -> list[list[str]]:
  """The token strings of each target of a ``'sequence'`` batch (``EOS`` and padding dropped)."""
  return [[tokens[i] for i in strip(row)] for row in np.asarray(batch['targets'])]


def position_baseline(train: Batch, split: Batch) -> float:
  """Token accuracy on ``split`` of the best source-blind predictor fitted on ``train``: at each
  target position the most frequent training token there (the overall most frequent one past the
  longest training target). It sees neither the source nor the earlier target tokens."""

  def valid_tokens(b):
    targets = np.asarray(b['targets'])
    mask = np.arange(targets.shape[1])[None, :] < np.asarray(b['lengths']['target'])[:, None]
    return targets, mask

  targets, mask = valid_tokens(train)
  overall = np.bincount(targets[mask]).argmax()
  modes = [
    np.bincount(targets[mask[:, t], t]).argmax() if mask[:, t].any() else overall for t in range(targets.shape[1])
  ]
  eval_targets, eval_mask = valid_tokens(split)
  width = eval_targets.shape[1]
  guess = np.array((modes + [overall] * width)[:width])
  return float((eval_targets == guess[None, :])[eval_mask].mean())


def sequence_task(
  *,
  name: str,
  source_tokens: Sequence[str],
  target_tokens: Sequence[str],
  seq_len: int,
  train_batch: Callable,
  train_sample: Batch,
  eval_splits: Mapping[str, Batch],
  references: Mapping[str, Sequence[Sequence[str]]] | None = None,
  train_data=None,
  info: Mapping | None = None,
) -> Task:
  """The Task of a transduction workload (shared by the synthetic and the text ones).

  ``references``: per split, the token lists BLEU and exact match compare against (default: the
  split's targets; a text task passes the untruncated, un-OOV'd reference sentences).
  Baseline: ``position_baseline`` on ``'test'``; threshold: token accuracy >= 0.99.
  """
  references = dict(references or {})
  for split, batch in eval_splits.items():
    references.setdefault(split, references_of(batch, target_tokens))

  def score(split, predictions, batch):
    del batch  # the references are kept per split, as text
    return sequence_score(np.asarray(predictions), references[split], target_tokens)

  by_split = {s: position_baseline(train_sample, b) for s, b in eval_splits.items()}
  ref = 'test' if 'test' in by_split else next(iter(by_split))
  return Task(
    name=name,
    input_kind='tokens',
    input_size=len(source_tokens),
    output_kind='sequence',
    output_size=len(target_tokens),
    seq_len=seq_len,
    train_batch=train_batch,
    eval_splits=dict(eval_splits),
    baseline=Baseline(
      'accuracy',
      by_split[ref],
      f'source-blind predictor: the most frequent training token at each target position, token accuracy on {ref}',
    ),
    threshold=Threshold('accuracy', 0.99, 'max'),
    metric_modes=dict(METRIC_MODES),
    info={
      'source_vocab': list(source_tokens),
      'target_vocab': list(target_tokens),
      'baseline_by_split': by_split,
      'pad_id': PAD_ID,
      'bos_id': BOS_ID,
      'eos_id': EOS_ID,
      **dict(info or {}),
    },
    train_data=train_data,
    score=score,
  )


# ------------------------------------------------------------------------ generated tasks


def _generated_task(
  *,
  name: str,
  generate: Callable,
  train_range: tuple[int, int],
  long_range: tuple[int, int],
  tokens: Sequence[str],
  seed: int,
  num_eval: int,
  seq_len: int,
  info: Mapping,
) -> Task:
  """A task whose batches ``generate(key, batch_size, low, high)`` makes on device."""
  gen = jax.jit(generate, static_argnums=(1, 2, 3))

  def train_batch(key, step, batch_size, *, data=None, bucket=None):
    del data  # nothing to gather: batches are generated
    if bucket is not None:
      raise ValueError(f'{name} has no length buckets')
    return generate(jax.random.fold_in(key, step), batch_size, *train_range)

  root = jax.random.key(seed)
  host = lambda tree: jax.tree.map(np.asarray, tree)
  # val and test are two slices of one batch (one compile per length range).
  both = host(gen(jax.random.fold_in(root, _EVAL_TAG), 2 * num_eval, *train_range))
  eval_splits = {
    'val': jax.tree.map(lambda a: a[:num_eval], both),
    'test': jax.tree.map(lambda a: a[num_eval:], both),
    'test_len2x': host(gen(jax.random.fold_in(root, _EVAL_TAG + 1), num_eval, *long_range)),
  }
  sample = host(gen(jax.random.fold_in(root, _EVAL_TAG + 2), _BASELINE_SAMPLE, *train_range))
  return sequence_task(
    name=name,
    source_tokens=tokens,
    target_tokens=tokens,
    seq_len=seq_len,
    train_batch=train_batch,
    train_sample=sample,
    eval_splits=eval_splits,
    info={'train_range': list(train_range), 'test_len2x_range': list(long_range), **info},
  )


def _symbol_tokens(num_symbols: int) -> tuple[str, ...]:
  return SPECIAL_TOKENS + tuple(f's{i}' for i in range(num_symbols))


def _check_lengths(name: str, min_len: int, max_len: int) -> None:
  if not 1 <= min_len <= max_len:
    raise ValueError(f'{name} needs 1 <= min_len <= max_len; got {min_len}, {max_len}')


def reverse(*, min_len: int = 1, max_len: int = 8, num_symbols: int = 8, seed: int = 0, num_eval: int = 500) -> Task:
  """Sequence reversal (``reverse_batch``): training lengths ``U{min_len..max_len}``;
  ``test_len2x`` lengths ``U{max_len + 1..2 max_len}``. Vocabulary ``4 + num_symbols`` on both
  sides. ``seed`` fixes the eval splits (training batches come from the run's data key)."""
  _check_lengths('reverse', min_len, max_len)
  gen = lambda key, b, lo, hi: reverse_batch(key, b, lo, hi, num_symbols=num_symbols)
  return _generated_task(
    name='reverse',
    generate=gen,
    train_range=(min_len, max_len),
    long_range=(max_len + 1, 2 * max_len),
    tokens=_symbol_tokens(num_symbols),
    seed=seed,
    num_eval=num_eval,
    seq_len=max_len,
    info={'num_symbols': num_symbols},
  )


def sort(*, min_len: int = 1, max_len: int = 8, num_symbols: int = 8, seed: int = 0, num_eval: int = 500) -> Task:
  """Sorting (``sort_batch``), lengths as ``reverse``."""
  _check_lengths('sort', min_len, max_len)
  gen = lambda key, b, lo, hi: sort_batch(key, b, lo, hi, num_symbols=num_symbols)
  return _generated_task(
    name='sort',
    generate=gen,
    train_range=(min_len, max_len),
    long_range=(max_len + 1, 2 * max_len),
    tokens=_symbol_tokens(num_symbols),
    seed=seed,
    num_eval=num_eval,
    seq_len=max_len,
    info={'num_symbols': num_symbols},
  )


def addition(*, max_digits: int = 3, seed: int = 0, num_eval: int = 500) -> Task:
  """Multi-digit addition as strings (``addition_batch``): training operands of
  ``U{1..max_digits}`` digits; ``test_len2x`` operands of ``U{max_digits + 1..2 max_digits}``
  digits (so every source is longer than any training source). Vocabulary: 4 specials, the 10
  digits, ``+``."""
  if max_digits < 1:
    raise ValueError(f'addition needs max_digits >= 1; got {max_digits}')
  return _generated_task(
    name='addition',
    generate=addition_batch,
    train_range=(1, max_digits),
    long_range=(max_digits + 1, 2 * max_digits),
    tokens=ADDITION_TOKENS,
    seed=seed,
    num_eval=num_eval,
    seq_len=2 * max_digits + 1,
    info={'max_digits': max_digits},
  )


# --------------------------------------------------------------------------------------- SCAN

SCAN_PRIMITIVES = {'walk': 'WALK', 'look': 'LOOK', 'run': 'RUN', 'jump': 'JUMP'}
SCAN_TURNS = {'left': 'LTURN', 'right': 'RTURN'}
SCAN_WORDS = (
  'walk',
  'look',
  'run',
  'jump',
  'turn',
  'left',
  'right',
  'opposite',
  'around',
  'twice',
  'thrice',
  'and',
  'after',
)
SCAN_ACTIONS = ('WALK', 'LOOK', 'RUN', 'JUMP', 'LTURN', 'RTURN')


def scan_commands() -> list[tuple[str, str]]:
  """Every ``(command, actions)`` pair of the SCAN grammar (Lake & Baroni 2018), 20,910 of them:

  .. code-block:: text

      C -> S and S | S after S | S          "x and y" = x y,  "x after y" = y x
      S -> V twice | V thrice | V           repeat 2 or 3 times
      V -> A D | A opposite D | A around D | U      U: walk look run jump;  A: U or turn;  D: left right
      "U D" = TURN U;  "U opposite D" = TURN TURN U;  "U around D" = (TURN U) x 4;  "turn ..." drops U

  with ``TURN`` the ``LTURN`` / ``RTURN`` of ``D``.
  """
  verbs = [(u, [a]) for u, a in SCAN_PRIMITIVES.items()]
  for act in list(SCAN_PRIMITIVES) + ['turn']:
    tail = [] if act == 'turn' else [SCAN_PRIMITIVES[act]]
    for d, turn in SCAN_TURNS.items():
      verbs.append((f'{act} {d}', [turn] + tail))
      verbs.append((f'{act} opposite {d}', [turn, turn] + tail))
      verbs.append((f'{act} around {d}', ([turn] + tail) * 4))
  phrases = []
  for v, acts in verbs:
    phrases += [(v, acts), (f'{v} twice', acts * 2), (f'{v} thrice', acts * 3)]
  commands = [(s, a) for s, a in phrases]
  for (s1, a1), (s2, a2) in itertools.product(phrases, repeat=2):
    commands.append((f'{s1} and {s2}', a1 + a2))
    commands.append((f'{s1} after {s2}', a2 + a1))
  return [(c, ' '.join(a)) for c, a in commands]


def scan(*, split: str = 'length', max_train_actions: int = 22, num_eval: int = 500, seed: int = 0) -> Task:
  """SCAN command -> actions (``scan_commands``).

  ``split='length'`` (Lake & Baroni's length split): training commands have at most
  ``max_train_actions`` actions (22: 16,990 commands, less ``'val'`` and ``'test'``);
  ``test_len2x`` holds ``num_eval`` commands with more (24 to 48 actions), never seen in training.
  ``split='simple'``: a random
  80 / 20 split, ``test_len2x`` absent. ``'val'`` and ``'test'`` (``num_eval`` each) are carved
  from the training pool (length split) or the held-out 20% (simple split) and are not trained on.
  Data and splits are fixed (``seed`` is accepted for uniformity and unused).
  """
  del seed
  if split not in ('length', 'simple'):
    raise ValueError(f"scan: unknown split {split!r}; choose one of ['length', 'simple']")
  pairs = scan_commands()
  source_tokens = SPECIAL_TOKENS + SCAN_WORDS
  target_tokens = SPECIAL_TOKENS + SCAN_ACTIONS
  src_id = {w: i for i, w in enumerate(source_tokens)}
  tgt_id = {w: i for i, w in enumerate(target_tokens)}
  sources = [[src_id[w] for w in c.split()] for c, _ in pairs]
  targets = [[tgt_id[w] for w in a.split()] for _, a in pairs]
  n_actions = np.array([len(t) for t in targets])
  rng = np.random.default_rng(pipeline.SPLIT_SEED)
  if split == 'length':
    pool = np.flatnonzero(n_actions <= max_train_actions)
    long = rng.permutation(np.flatnonzero(n_actions > max_train_actions))[:num_eval]
    pool = rng.permutation(pool)
    val, test, train = pool[:num_eval], pool[num_eval : 2 * num_eval], pool[2 * num_eval :]
  else:
    perm = rng.permutation(len(pairs))
    cut = int(0.8 * len(pairs))
    train, held = perm[:cut], perm[cut:]
    val, test, long = held[:num_eval], held[num_eval : 2 * num_eval], np.array([], int)
  if len(train) == 0 or len(test) == 0:
    raise ValueError(f'scan: num_eval={num_eval} leaves no training or test commands')
  s_width = max(map(len, sources))
  t_width = int(n_actions[train].max()) + 1
  split_batch = lambda idx: pad_pairs([sources[i] for i in idx], [targets[i] for i in idx], s_width)
  eval_splits = {'val': split_batch(val), 'test': split_batch(test)}
  if len(long):
    eval_splits['test_len2x'] = split_batch(long)
  train_arrays = pad_pairs([sources[i] for i in train], [targets[i] for i in train], s_width, t_width)
  train_batch, train_data = pool_stream(train_arrays)
  return sequence_task(
    name='scan',
    source_tokens=source_tokens,
    target_tokens=target_tokens,
    seq_len=s_width,
    train_batch=train_batch,
    train_sample=train_arrays,
    eval_splits=eval_splits,
    train_data=train_data,
    info={
      'split': split,
      'max_train_actions': max_train_actions,
      'num_train': len(train),
      'max_actions_by_split': {k: int(np.asarray(b['lengths']['target']).max()) - 1 for k, b in eval_splits.items()},
    },
  )
