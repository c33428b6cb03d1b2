"""How the report writes numbers: a value, a mean with its interval, an interval, a seed count."""

from __future__ import annotations

import numpy as np

from experiments.report import stats

CORRECTION = 'holm'  # the report's family correction (see experiments.report.stats for why Holm)
CORRECTION_NAMES = {'holm': 'Holm', 'bh': 'Benjamini-Hochberg'}


def fmt(x: float | None, digits: int = 4) -> str:
  if x is None or not np.isfinite(x):
    return 'n/a'
  return f'{x:.{digits}g}'


def ci_text(mean: float, half: float, n: int) -> str:
  if n == 0:
    return 'n/a'
  if n < 2 or not np.isfinite(half):
    return f'{fmt(mean)} (n={n})'
  return f'{fmt(mean)} ± {fmt(half, 2)} (n={n})'


def interval_text(low: float, high: float) -> str:
  return f'[{fmt(low, 3)}, {fmt(high, 3)}]'


def seeds_text(n: int | None) -> str:
  if n is None:
    return 'none (no difference)'
  return f'> {stats.MAX_SEEDS}' if n > stats.MAX_SEEDS else str(n)


def plural(n: int, word: str) -> str:
  """``'1 test'``, ``'7 tests'``."""
  return f'{n} {word}' + ('' if n == 1 else 's')


def baseline_text(facts: dict) -> str:
  """The task's baseline in words, naming a class by its label: a description that names the majority
  class by its id (``'... label (0), ...'``, as the text tasks write it) gets the label from the task's
  ``info`` (``label_names``, ``majority_class``)."""
  base = facts.get('baseline') or {}
  text = base.get('description', '')
  info = facts.get('info') or {}
  names, k = info.get('label_names'), info.get('majority_class')
  if isinstance(names, list) and isinstance(k, int) and not isinstance(k, bool) and 0 <= k < len(names):
    label = f'`{names[k]}`'
    text = text.replace(f'({k})', f'({label})') if f'({k})' in text else f'{text}; most frequent label {label}'
  return text
