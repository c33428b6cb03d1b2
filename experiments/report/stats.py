"""The statistics a report states: intervals over seeds, Welch comparisons, a family correction,
effect sizes and the seeds a comparison would need. Pure NumPy / SciPy; no plotting, no files.

Every number comes from a named method, and the report says which:

* mean of a variant's seeds and its ``1 - alpha`` interval: Student's t,
  :math:`\\bar x \\pm t_{1-\\alpha/2,\\,n-1}\\, s/\\sqrt n` (``scipy.stats.t``);
* difference of two variants' means: Welch's unequal-variance t-test and its interval
  (``scipy.stats.ttest_ind(a, b, equal_var=False)`` and ``.confidence_interval()``), with the
  Welch-Satterthwaite degrees of freedom
  :math:`\\nu = (s_a^2/n_a + s_b^2/n_b)^2 / \\big(\\frac{(s_a^2/n_a)^2}{n_a-1} + \\frac{(s_b^2/n_b)^2}{n_b-1}\\big)`;
* the family of comparisons one report makes: Holm's step-down correction (Holm 1979), which
  controls the chance of *any* false "clear" at ``alpha`` under any dependence between the tests
  (a report's comparisons share variants, so they are dependent). A difference is called clear only
  when its Holm-adjusted p-value is at most ``alpha``. Holm tests the k-th smallest of the m
  p-values (k = 1, 2, ...) at level ``alpha / (m - k + 1)``; beside each difference stands its Welch
  interval at that level (the corrected interval), so a difference is clear exactly when its
  corrected interval excludes 0 and so do those of all comparisons with a smaller p-value (the
  step-down stops at the first that does not). Benjamini-Hochberg
  (``scipy.stats.false_discovery_control``) is available as ``method='bh'``, with intervals at
  level ``1 - R alpha / m`` for R differences called clear (false coverage rate, Benjamini &
  Yekutieli 2005);
* effect size: Hedges' g, the difference over the pooled standard deviation times the exact
  small-sample correction :math:`J(\\nu) = \\Gamma(\\nu/2) / (\\sqrt{\\nu/2}\\,\\Gamma((\\nu-1)/2))`,
  :math:`\\nu = n_a + n_b - 2` (Hedges 1981);
* "beats the baseline": the variant's Student-t interval lies wholly on the better side of the
  baseline value (``beats``), not merely its mean;
* fragility: whether a verdict rests on one seed (``leave_one_out``, the jackknife's resampling:
  every verdict recomputed with each run left out in turn; see there for why this resampling);
* seeds needed: the smallest equal number of seeds per variant at which a two-sided two-sample
  t-test at level ``alpha / m`` (the strictest level Holm may apply) has ``power`` (0.8) if the
  observed difference and the observed spread (pooled standard deviation) were the truth; the power
  comes from the noncentral t distribution (``scipy.stats.nct``), as in Cohen (1988) and G*Power.

Shapes: every function takes 1-D sequences of per-seed values; non-finite values and ``None`` are
dropped first (a diverged seed has no final metric).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

import numpy as np
from scipy import special
from scipy import stats

ALPHA = 0.05
POWER = 0.8
CORRECTIONS = ('holm', 'bh')
MAX_SEEDS = 10_000  # "seeds needed" beyond this is reported as more than this
T = TypeVar('T')


def finite(values: Iterable[float | None]) -> np.ndarray:
  """The finite values as float64 ``[n]`` (None, NaN and Inf dropped)."""
  return np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)


# ----------------------------------------------------------------------------------------------
# One variant.


def mean_ci(values: Iterable[float | None], confidence: float = 1 - ALPHA) -> tuple[float, float, int]:
  """``(mean, half-width of the Student-t interval, n)`` of the finite values.

  half = :math:`t_{(1+c)/2,\\,n-1}\\; s / \\sqrt n`; nan for n < 2 (one seed has no spread).
  """
  x = finite(values)
  if x.size == 0:
    return float('nan'), float('nan'), 0
  if x.size == 1:
    return float(x[0]), float('nan'), 1
  mean, sem = float(x.mean()), float(stats.sem(x))
  if sem == 0:
    return mean, 0.0, int(x.size)
  _, high = stats.t.interval(confidence, x.size - 1, loc=mean, scale=sem)
  return mean, float(high) - mean, int(x.size)


# Metrics that are fractions (accuracies, F1, exact match) and BLEU (0..100, as sacrebleu gives it);
# every other one (losses, error rates, which can pass 1, perplexity, bits per character) is >= 0.
_FRACTIONS = ('accuracy', 'f1', 'precision', 'recall', 'exact_match')


def metric_range(metric: str) -> tuple[float, float]:
  """The values ``metric`` can take: accuracies, F1 and exact match lie in [0, 1], BLEU in [0, 100],
  losses and error rates are >= 0, perplexity >= 1."""
  if metric.endswith(_FRACTIONS):
    return 0.0, 1.0
  if metric == 'bleu':
    return 0.0, 100.0
  return (1.0, math.inf) if metric == 'perplexity' else (0.0, math.inf)


def clipped_interval(metric: str, mean, half) -> tuple[np.ndarray, np.ndarray]:
  """``(low, high)`` of ``mean +- half`` cut to ``metric_range``: a Student-t interval over few seeds
  can reach past an accuracy of 1, which no run can."""
  low, high = metric_range(metric)
  mean, half = np.asarray(mean, np.float64), np.asarray(half, np.float64)
  return np.clip(mean - half, low, high), np.clip(mean + half, low, high)


def beats(values: Iterable[float | None], baseline: float, mode: str, confidence: float = 1 - ALPHA) -> bool | None:
  """Whether a variant beats ``baseline``: its ``confidence`` Student-t interval (``mean_ci``) lies
  wholly on the better side of it (above for ``mode='max'``, below for ``'min'``). A mean on the
  better side with an interval that reaches the baseline does not beat it. None with fewer than 2
  finite values (no interval)."""
  if mode not in ('min', 'max'):
    raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
  mean, half, n = mean_ci(values, confidence)
  if n < 2 or not np.isfinite(half):
    return None
  return bool(mean - half > baseline) if mode == 'max' else bool(mean + half < baseline)


def inside_ci(values: Iterable[float | None], value: float, confidence: float = 1 - ALPHA) -> bool | None:
  """Whether ``value`` (e.g. a published number) lies inside the ``confidence`` Student-t interval of
  the mean of ``values``; None with fewer than 2 finite values."""
  mean, half, n = mean_ci(values, confidence)
  if n < 2 or not np.isfinite(half):
    return None
  return bool(abs(mean - value) <= half)


# ----------------------------------------------------------------------------------------------
# Fragility.


def leave_one_out(
  items: Sequence[T], outcomes: Callable[[Sequence[T]], Mapping[Hashable, Hashable]]
) -> tuple[dict[Hashable, Hashable], dict[Hashable, list[tuple[T, Hashable]]]]:
  """Which verdicts rest on a single seed: ``outcomes`` of all ``items`` (runs), then of every
  subset with one item left out.

  Returns ``(verdicts, flips)``: ``verdicts = outcomes(items)`` (verdict key -> outcome, e.g.
  ``'clear +'``) and, for every key, the ``(item, outcome without it)`` pairs whose leaving out
  changes that key's outcome; a key with no such pair is robust, any other is *fragile*. A key that
  ``outcomes`` no longer returns without an item counts as changed to None (e.g. a test with
  too few seeds left).

  Why this resampling (the jackknife's, Quenouille 1956 / Tukey 1958) and not the bootstrap: with the 3
  to 10 seeds a sweep has, it is exhaustive (n + m recomputations for n + m runs, no random draws,
  so a report is reproducible), and it asks exactly the question a training outcome that is often
  bimodal raises, "does this verdict rest on one seed that went its own way?" (a seed stuck at the
  shallow network's level, or one lucky seed carrying a mean). A bootstrap resample of 5 seeds holds
  on average only 3.4 distinct ones, often all of one mode, and would call nearly every verdict
  fragile. The comparisons the report makes are unpaired (Welch), so the unit left out is one run,
  one seed of one variant, and every verdict is recomputed whole: a run left out of one variant also
  changes, through the family's correction, verdicts on pairs it is not in.
  """
  base = dict(outcomes(items))
  flips: dict[Hashable, list[tuple[T, Hashable]]] = {k: [] for k in base}
  for i, item in enumerate(items):
    without = outcomes([x for j, x in enumerate(items) if j != i])
    for key, outcome in base.items():
      if without.get(key) != outcome:
        flips[key].append((item, without.get(key)))
  return base, flips


# ----------------------------------------------------------------------------------------------
# Two variants.


@dataclasses.dataclass(frozen=True)
class Welch:
  """Welch's comparison of ``mean(a) - mean(b)``.

  Attributes:
    diff: the difference of means.
    low, high: its ``confidence`` interval (Welch: ``t`` quantile at ``df``, unpooled standard error).
    pvalue: two-sided p-value of "the means are equal".
    df: Welch-Satterthwaite degrees of freedom (fractional).
    n_a, n_b: seeds on each side; sd_a, sd_b: their sample standard deviations (ddof 1).
    confidence: the interval's level.
  """

  diff: float
  low: float
  high: float
  pvalue: float
  df: float
  n_a: int
  n_b: int
  sd_a: float
  sd_b: float
  confidence: float = 1 - ALPHA

  def interval(self, confidence: float) -> tuple[float, float]:
    """The Welch interval of the difference at another level (e.g. a simultaneous one)."""
    se = math.hypot(self.sd_a / math.sqrt(self.n_a), self.sd_b / math.sqrt(self.n_b))
    if se == 0:
      return self.diff, self.diff
    h = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * se
    return self.diff - h, self.diff + h

  def flipped(self) -> Welch:
    """The same comparison as ``mean(b) - mean(a)``."""
    return dataclasses.replace(
      self, diff=-self.diff, low=-self.high, high=-self.low, n_a=self.n_b, n_b=self.n_a, sd_a=self.sd_b, sd_b=self.sd_a
    )


def welch(a: Iterable[float | None], b: Iterable[float | None], confidence: float = 1 - ALPHA) -> Welch | None:
  """Welch's t-test and interval of ``mean(a) - mean(b)`` (scipy); None if either side has n < 2."""
  a, b = finite(a), finite(b)
  if a.size < 2 or b.size < 2:
    return None
  diff = float(a.mean() - b.mean())
  sd_a, sd_b = float(a.std(ddof=1)), float(b.std(ddof=1))
  if sd_a == 0 and sd_b == 0:
    # No spread on either side: the t statistic is +-inf (or 0/0); the difference is exact.
    return Welch(
      diff, diff, diff, 0.0 if diff else 1.0, float(a.size + b.size - 2), int(a.size), int(b.size), 0.0, 0.0, confidence
    )
  with warnings.catch_warnings():
    # scipy warns of precision loss for nearly identical seeds; the result is still the right one.
    warnings.simplefilter('ignore', RuntimeWarning)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
  return Welch(
    diff,
    float(ci.low),
    float(ci.high),
    float(res.pvalue),
    float(res.df),
    int(a.size),
    int(b.size),
    sd_a,
    sd_b,
    confidence,
  )


def diff_ci(a: Sequence[float], b: Sequence[float], confidence: float = 1 - ALPHA) -> tuple[float, float, float] | None:
  """Welch's interval of ``mean(a) - mean(b)``: ``(difference, low, high)``, None if either has n < 2."""
  w = welch(a, b, confidence)
  return None if w is None else (w.diff, w.low, w.high)


def hedges_g(a: Iterable[float | None], b: Iterable[float | None]) -> float:
  """Hedges' g of ``a - b``: :math:`J(\\nu)\\,(\\bar a - \\bar b) / s_p`, with
  :math:`s_p^2 = ((n_a-1)s_a^2 + (n_b-1)s_b^2)/\\nu`, :math:`\\nu = n_a + n_b - 2` and the exact
  correction :math:`J`. nan with fewer than 2 seeds a side; +-inf when the seeds have no spread."""
  a, b = finite(a), finite(b)
  if a.size < 2 or b.size < 2:
    return float('nan')
  dof = a.size + b.size - 2
  sp = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / dof)
  diff = float(a.mean() - b.mean())
  if sp == 0:
    return 0.0 if diff == 0 else math.copysign(math.inf, diff)
  j = math.exp(special.gammaln(dof / 2) - special.gammaln((dof - 1) / 2)) / math.sqrt(dof / 2)
  return j * diff / sp


def power(n: int, diff: float, sd: float, alpha: float = ALPHA) -> float:
  """Power of a two-sided two-sample t-test with ``n`` seeds a side at level ``alpha`` when the true
  difference is ``diff`` and both sides' standard deviation is ``sd``:
  :math:`P(|T| > t_{1-\\alpha/2,\\,\\nu})`, :math:`T \\sim` noncentral t with :math:`\\nu = 2n-2` and
  noncentrality :math:`\\delta = \\text{diff} / (\\text{sd}\\sqrt{2/n})`."""
  dof = 2 * n - 2
  nc = diff / (sd * math.sqrt(2 / n))
  crit = stats.t.ppf(1 - alpha / 2, dof)
  p = float(stats.nct.sf(crit, dof, nc) + stats.nct.cdf(-crit, dof, nc))
  if not np.isfinite(p):
    # scipy's noncentral t gives NaN far in its tails (large n and noncentrality), where the t
    # distribution is a normal one to many digits: use that limit.
    p = float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))
  return p


def seeds_needed(diff: float, sd_a: float, sd_b: float, alpha: float = ALPHA, target: float = POWER) -> int | None:
  """The smallest equal number of seeds per variant whose t-test at ``alpha`` resolves ``diff`` with
  power ``target``, at the pooled spread :math:`\\sqrt{(s_a^2 + s_b^2)/2}`. None when ``diff`` is 0 (no
  number of seeds resolves no difference); ``MAX_SEEDS + 1`` when more than ``MAX_SEEDS``."""
  if not np.isfinite(diff) or diff == 0:
    return None
  sd = math.sqrt((sd_a**2 + sd_b**2) / 2)
  if sd == 0:
    return 2
  hi = 2  # power grows with n: double until it is reached, then bisect below that
  while power(hi, abs(diff), sd, alpha) < target:
    if hi > MAX_SEEDS:
      return MAX_SEEDS + 1
    hi *= 2
  lo = max(2, hi // 2)
  while lo < hi:
    mid = (lo + hi) // 2
    if power(mid, abs(diff), sd, alpha) >= target:
      hi = mid
    else:
      lo = mid + 1
  return lo


# ----------------------------------------------------------------------------------------------
# A family of comparisons.


def holm(pvalues: Sequence[float]) -> np.ndarray:
  """Holm's step-down adjusted p-values: sort ascending, multiply the k-th smallest (k from 0) by
  ``m - k``, take the running maximum (so the adjusted values keep the raw order), cap at 1."""
  p = np.asarray(pvalues, np.float64)
  m = p.size
  order = np.argsort(p, kind='stable')
  stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
  adjusted = np.empty(m)
  adjusted[order] = np.minimum(stepped, 1.0)
  return adjusted


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
  """Benjamini-Hochberg adjusted p-values (false discovery rate; ``scipy.stats.false_discovery_control``)."""
  p = np.asarray(pvalues, np.float64)
  return stats.false_discovery_control(p, method='bh') if p.size else p


def adjust(pvalues: Sequence[float], method: str = 'holm') -> np.ndarray:
  if method == 'holm':
    return holm(pvalues)
  if method == 'bh':
    return benjamini_hochberg(pvalues)
  raise ValueError(f'unknown correction {method!r}; choose one of {list(CORRECTIONS)}')


@dataclasses.dataclass(frozen=True)
class Comparison:
  """``mean(a) - mean(b)`` of two variants, judged within a family of ``m`` comparisons.

  Attributes:
    welch: the Welch test and its uncorrected interval.
    p_adjusted: the family-corrected p-value (``method``).
    corrected: the Welch interval at the level the correction tests this comparison at
      (``level``): Holm's ``1 - alpha / (m - k + 1)`` for the k-th smallest p-value.
    level: that level.
    g: Hedges' g.
    seeds: seeds per variant for ``POWER`` at level ``alpha/m`` (None: no difference to resolve).
    m, alpha, method: the family's size, level and correction.
  """

  welch: Welch
  p_adjusted: float
  corrected: tuple[float, float]
  level: float
  g: float
  seeds: int | None
  m: int
  alpha: float = ALPHA
  method: str = 'holm'

  @property
  def clear(self) -> bool:
    """The difference holds after the family's correction."""
    return self.p_adjusted <= self.alpha

  @property
  def clear_uncorrected(self) -> bool:
    """The uncorrected interval excludes 0 (what one comparison alone would claim)."""
    return self.welch.pvalue <= self.alpha

  @property
  def outcome(self) -> str:
    """The verdict alone: ``'a > b'`` or ``'a < b'`` when clear, else ``'not distinguishable'``."""
    if not self.clear:
      return 'not distinguishable'
    return 'a > b' if self.welch.diff > 0 else 'a < b'

  def flipped(self) -> Comparison:
    low, high = self.corrected
    return dataclasses.replace(self, welch=self.welch.flipped(), corrected=(-high, -low), g=-self.g)


def compare(
  pairs: Mapping[Hashable, tuple[Sequence[float], Sequence[float]]],
  alpha: float = ALPHA,
  method: str = 'holm',
  effect_sizes: bool = True,
) -> dict[Hashable, Comparison]:
  """Every pair ``key -> (a, b)`` compared (``a - b``) and corrected as one family.

  Pairs with fewer than 2 finite values on a side cannot be tested: they are left out of the result
  and do not count in ``m``. ``effect_sizes=False`` leaves out Hedges' g (nan) and the seeds needed
  (None), which a verdict does not depend on (``leave_one_out`` recomputes the family many times).
  """
  tests = {k: w for k, (a, b) in pairs.items() if (w := welch(a, b, 1 - alpha)) is not None}
  m = len(tests)
  if not m:
    return {}
  p = [w.pvalue for w in tests.values()]
  adjusted = adjust(p, method)
  if method == 'holm':
    rank = np.empty(m, int)
    rank[np.argsort(p, kind='stable')] = np.arange(m)  # the same order holm() steps through
    levels = 1 - alpha / (m - rank)
  else:
    levels = np.full(m, 1 - alpha * max(int((adjusted <= alpha).sum()), 1) / m)
  out = {}
  for (key, w), p_adj, level in zip(tests.items(), adjusted, levels):
    a, b = pairs[key]
    out[key] = Comparison(
      welch=w,
      p_adjusted=float(p_adj),
      corrected=w.interval(float(level)),
      level=float(level),
      g=hedges_g(a, b) if effect_sizes else float('nan'),
      seeds=seeds_needed(w.diff, w.sd_a, w.sd_b, alpha / m) if effect_sizes else None,
      m=m,
      alpha=alpha,
      method=method,
    )
  return out
