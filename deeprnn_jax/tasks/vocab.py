"""Tokenizer and vocabulary for the text tasks: ids are built from the training split only.

Id 0 is padding (``PAD``), id 1 stands for every token outside the vocabulary (``OOV``), ids
``2..size-1`` are the most frequent training tokens (ties broken alphabetically, so the vocabulary
is a deterministic function of the training texts).
"""

from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

import numpy as np

PAD = 0
OOV = 1
NUM_SPECIAL = 2

# Lower-cased words (with inner apostrophes) and single punctuation marks; IMDB's '<br />' line
# breaks are markup, not text.
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[^\sa-z0-9]")
_MARKUP = re.compile(r'<br\s*/?>', re.IGNORECASE)


def tokenize(text: str) -> list[str]:
  return _TOKEN.findall(_MARKUP.sub(' ', text).lower())


def build_vocab(token_lists: Iterable[Sequence[str]], max_size: int) -> dict[str, int]:
  """``token -> id`` for the ``max_size - 2`` most frequent tokens of ``token_lists``."""
  if max_size <= NUM_SPECIAL:
    raise ValueError(f'vocab_size must exceed {NUM_SPECIAL} (PAD and OOV), got {max_size}')
  counts = collections.Counter(tok for toks in token_lists for tok in toks)
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_size - NUM_SPECIAL]
  return {tok: i + NUM_SPECIAL for i, (tok, _) in enumerate(ranked)}


def encode(tokens: Sequence[str], vocab: dict[str, int]) -> np.ndarray:
  return np.array([vocab.get(t, OOV) for t in tokens], np.int32)
