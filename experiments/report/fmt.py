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
