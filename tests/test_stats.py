"""The report's statistics on hand-made numbers whose answers are known: t-table values, a Welch-
Satterthwaite df worked out by hand, Holm's step-down by hand, Cohen's power table, Hedges' g."""

import math

import numpy as np
import pytest

from experiments.report import stats

# Student-t quantiles t_{0.975, df} from a printed t-table (e.g. Student's table in any statistics text).
T975 = {2: 4.303, 4: 2.776, 6: 2.447}


def test_mean_interval_is_the_t_table_interval():
  mean, half, n = stats.mean_ci([1.0, 2.0, 3.0])  # s = 1, n = 3
  assert (mean, n) == (2.0, 3)
  assert half == pytest.approx(T975[2] / math.sqrt(3), rel=1e-3)
  mean, half, n = stats.mean_ci([2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, None, float('nan')])  # s^2 = 18.67, n = 7
  assert (mean, n) == (8.0, 7)
  assert half == pytest.approx(T975[6] * math.sqrt(56 / 3) / math.sqrt(7), rel=1e-3)
  assert math.isnan(stats.mean_ci([5.0])[1]) and stats.mean_ci([])[2] == 0
  assert stats.mean_ci([0.5, 0.5])[:2] == (0.5, 0.0)


def test_welch_interval_with_equal_spreads_uses_the_t_table_value():
  """n = 3 and s^2 = 1 on both sides: se^2 = 1/3 + 1/3 and the Welch df is exactly 4."""
  w = stats.welch([11.0, 12.0, 13.0], [1.0, 2.0, 3.0])
  assert w.diff == 10.0 and w.df == pytest.approx(4.0)
  half = T975[4] * math.sqrt(2 / 3)
  assert (w.low, w.high) == (pytest.approx(10 - half, rel=1e-3), pytest.approx(10 + half, rel=1e-3))
  assert stats.diff_ci([11.0, 12.0, 13.0], [1.0, 2.0, 3.0]) == (w.diff, w.low, w.high)
  assert stats.diff_ci([1.0], [2.0, 3.0]) is None


def test_welch_with_unequal_spreads_uses_the_welch_satterthwaite_df():
  """a = (1, 2, 3): s^2 = 1, s^2/n = 1/3. b = (2, 6, 10, 14, 18): s^2 = 40, s^2/n = 8.
  df = (1/3 + 8)^2 / ((1/3)^2/2 + 8^2/4) = (625/9) / (289/18) = 1250/289 = 4.325 (not the pooled 6),
  and the interval is -8 +- t_{0.975, 1250/289} sqrt(25/3)."""
  w = stats.welch([1.0, 2.0, 3.0], [2.0, 6.0, 10.0, 14.0, 18.0])
  assert w.df == pytest.approx(1250 / 289, rel=1e-9)
  t = 2.6960  # t_{0.975, 4.3253}, bracketed by the table's 2.776 (df 4) and 2.571 (df 5)
  half = t * math.sqrt(25 / 3)
  assert w.diff == -8.0
  assert (w.low, w.high) == (pytest.approx(-8 - half, rel=1e-3), pytest.approx(-8 + half, rel=1e-3))
  # Truncating the df to 4 (as a hand-written formula did) widens the interval past these tolerances.
  assert w.high - w.low < 2 * T975[4] * math.sqrt(25 / 3) * (1 - 1e-2)
  assert 0.04 < w.pvalue < 0.05  # the interval just excludes 0


def test_welch_without_spread_is_exact():
  w = stats.welch([1.0, 1.0, 1.0], [2.0, 2.0])
  assert (w.diff, w.low, w.high, w.pvalue) == (-1.0, -1.0, -1.0, 0.0)
  assert stats.welch([1.0, 1.0], [1.0, 1.0]).pvalue == 1.0


def test_holm_step_down_by_hand():
  # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
  np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
  np.testing.assert_allclose(stats.holm([0.5, 0.9]), [1.0, 1.0])
  # Benjamini-Hochberg: p_(k) m / k, running min from the top: 0.02, 0.02, 0.04, 0.04
  np.testing.assert_allclose(stats.adjust([0.01, 0.04, 0.03, 0.005], 'bh'), [0.02, 0.04, 0.04, 0.02])
  with pytest.raises(ValueError, match='holm'):
    stats.adjust([0.1], 'sidak')


def test_hedges_g_by_hand():
  """Pooled s = 1, difference 10, df = 4: J = Gamma(2) / (sqrt(2) Gamma(1.5)) = 2 / sqrt(2 pi)."""
  assert stats.hedges_g([11.0, 12.0, 13.0], [1.0, 2.0, 3.0]) == pytest.approx(10 * 2 / math.sqrt(2 * math.pi))
  assert math.isnan(stats.hedges_g([1.0], [2.0, 3.0]))


@pytest.mark.parametrize('d, n', [(0.5, 64), (0.8, 26), (1.0, 17)])
def test_seeds_needed_matches_cohens_power_table(d, n):
  """Two-sided two-sample t-test, alpha 0.05, power 0.8: Cohen (1988) Table 2.4.1 gives 64, 26, 17
  per group for d = 0.5, 0.8, 1.0."""
  assert stats.seeds_needed(d, 1.0, 1.0) == n
  assert stats.seeds_needed(3 * d, 3.0, 3.0) == n  # only the standardized difference matters
  assert stats.power(n, d, 1.0) >= 0.8 > stats.power(n - 1, d, 1.0)


def test_seeds_needed_edge_cases():
  assert stats.seeds_needed(0.0, 1.0, 1.0) is None
  assert stats.seeds_needed(1.0, 0.0, 0.0) == 2
  assert stats.seeds_needed(1e-4, 1.0, 1.0) == stats.MAX_SEEDS + 1
  assert stats.seeds_needed(0.5, 1.0, 1.0, alpha=0.05 / 3) > 64  # a stricter level needs more seeds


def test_a_difference_clear_alone_is_not_clear_in_a_family_of_three():
  """One pair with p = 0.0376 (Welch, df 4) is clear alone; beside two null pairs Holm multiplies it
  by 3 -> 0.11, and its interval at Holm's level for it (1 - 0.05/3) includes 0."""
  a, b = [1.0, 1.1, 1.2], [0.75, 0.85, 0.95]
  alone = stats.compare({'x': (a, b)})['x']
  assert alone.clear and alone.clear_uncorrected and alone.m == 1
  family = stats.compare({'x': (a, b), 'y': (a, a), 'z': ([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])})
  x = family['x']
  assert x.m == 3 and x.welch.low > 0  # the uncorrected 95% interval excludes 0 ...
  assert x.clear_uncorrected and not x.clear  # ... but the correction does not call it clear
  assert x.welch.pvalue == pytest.approx(0.0376, abs=1e-4)
  assert x.p_adjusted == pytest.approx(3 * x.welch.pvalue)
  assert x.level == pytest.approx(1 - 0.05 / 3) and x.corrected[0] < 0 < x.corrected[1]
  assert x.seeds > 3 and family['y'].seeds is None
  flipped = x.flipped()
  assert (flipped.welch.diff, flipped.welch.low, flipped.g) == (-x.welch.diff, -x.welch.high, -x.g)


def test_untestable_pairs_are_left_out_of_the_family():
  family = stats.compare({'x': ([1.0, 1.1, 1.2], [0.75, 0.85, 0.95]), 'one seed': ([1.0], [2.0, 3.0])})
  assert set(family) == {'x'} and family['x'].m == 1


def test_clipped_interval_stays_in_the_metric_range():
  mean, half, _ = stats.mean_ci([0.9, 0.99, 1.0])  # t interval 0.963 +- 0.137 reaches 1.10
  assert mean + half > 1
  low, high = stats.clipped_interval('accuracy', [mean], [half])
  assert high[0] == 1.0 and low[0] == pytest.approx(mean - half)
  low, high = stats.clipped_interval('frame_accuracy', [0.05], [0.1])
  assert (low[0], high[0]) == (0.0, pytest.approx(0.15))
  low, high = stats.clipped_interval('loss', [0.1], [0.3])
  assert (low[0], high[0]) == (0.0, pytest.approx(0.4))


def test_clear_means_every_corrected_interval_up_to_it_excludes_zero():
  """Holm's step-down, read off the intervals: the k-th smallest p is tested at 1 - alpha/(m - k + 1),
  and a comparison is clear iff its interval and those of all with smaller p-values exclude 0."""
  rng = np.random.default_rng(0)
  for _ in range(20):
    pairs = {i: (rng.normal(rng.uniform(0, 2), 1, 3), rng.normal(0, rng.uniform(0.2, 2), 4)) for i in range(5)}
    family = stats.compare(pairs)
    order = sorted(family, key=lambda k: family[k].welch.pvalue)
    for k, key in enumerate(order):
      c = family[key]
      assert c.level == pytest.approx(1 - 0.05 / (5 - k))
      excludes = [not (family[j].corrected[0] <= 0 <= family[j].corrected[1]) for j in order[: k + 1]]
      assert c.clear == all(excludes), (k, c)


def test_benjamini_hochberg_family():
  family = stats.compare(
    {'x': ([1.0, 1.1, 1.2], [0.75, 0.85, 0.95]), 'y': ([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])}, method='bh'
  )
  assert family['x'].method == 'bh' and family['x'].p_adjusted == pytest.approx(2 * family['x'].welch.pvalue)
  assert not family['x'].clear and family['x'].level == pytest.approx(1 - 0.05 / 2)  # none clear: R = 0 -> 1


def test_holm_caps_adjusted_p_values_at_one():
  # 0.6 x 2 = 1.2 and max(1.2, 0.9 x 1) = 1.2: without the cap both would read 1.2
  np.testing.assert_array_equal(stats.holm([0.6, 0.9]), [1.0, 1.0])
  # 0.01 x 3 = 0.03, 0.7 x 2 = 1.4 -> 1, then max(1.4, 0.8) -> 1
  np.testing.assert_allclose(stats.holm([0.7, 0.8, 0.01]), [1.0, 1.0, 0.03])


def test_beating_the_baseline_is_decided_by_the_interval_not_the_mean():
  """(0.5, 0.6, 0.7): mean 0.6, s = 0.1, half-width t_{0.975, 2} 0.1 / sqrt 3 = 0.248, so the interval
  is [0.352, 0.848]: it clears 0.3 and reaches 0.4 although the mean is above both."""
  x = [0.5, 0.6, 0.7]
  assert stats.beats(x, 0.3, 'max') is True and stats.beats(x, 0.4, 'max') is False
  assert stats.beats(x, 0.9, 'min') is True and stats.beats(x, 0.8, 'min') is False
  assert stats.beats([0.9], 0.1, 'max') is None
  assert stats.inside_ci(x, 0.84) is True and stats.inside_ci(x, 0.86) is False
  with pytest.raises(ValueError, match="'min' or 'max'"):
    stats.beats(x, 0.3, 'higher')


def _welch_verdict(runs):
  """One verdict on (group, value) pairs: is b - a clear at 5% (Welch)?"""
  a = [v for g, v in runs if g == 'a']
  b = [v for g, v in runs if g == 'b']
  w = stats.welch(b, a)
  return {'b vs a': None if w is None else w.pvalue <= 0.05}


# Depth 1 (a) with a spread of 0.079; depth 2 (b) four seeds at 0.58-0.61 and one at 0.72.
SHALLOW = [0.40, 0.50, 0.60, 0.45, 0.55]
CARRIED = [0.58, 0.59, 0.60, 0.61, 0.72]


def test_a_clear_effect_one_seed_carries_is_fragile():
  """Welch p = 0.027 with all seeds; without b's 0.72 seed p = 0.054: the verdict rests on that seed.
  (A lone far outlier cannot carry a Welch verdict, it widens the interval as much as it moves the
  mean; a seed a little above the others, beside a widely spread control, can.)"""
  assert stats.welch(CARRIED, SHALLOW).pvalue < 0.05 < stats.welch(CARRIED[:4], SHALLOW).pvalue
  runs = [('a', v) for v in SHALLOW] + [('b', v) for v in CARRIED]
  verdicts, flips = stats.leave_one_out(runs, _welch_verdict)
  assert verdicts == {'b vs a': True}
  assert (('b', 0.72), False) in flips['b vs a']
  assert all(run != ('b', v) for run, _ in flips['b vs a'] for v in CARRIED[:4])  # the other b seeds do not


def test_a_uniform_effect_is_robust_and_a_bimodal_seed_makes_no_difference_fragile():
  uniform = [('a', v) for v in SHALLOW] + [('b', v + 0.3) for v in SHALLOW]
  verdicts, flips = stats.leave_one_out(uniform, _welch_verdict)
  assert verdicts == {'b vs a': True} and flips == {'b vs a': []}
  # one seed of b stayed at a's level (a bimodal training outcome): not clear, and clear without it
  # (Welch p = 0.15 with it, 0.0037 without; no seed of a changes it: p 0.094 to 0.22)
  stuck = [('a', v) for v in SHALLOW] + [('b', v) for v in (0.70, 0.72, 0.68, 0.71, 0.35)]
  verdicts, flips = stats.leave_one_out(stuck, _welch_verdict)
  assert verdicts == {'b vs a': False} and flips['b vs a'] == [(('b', 0.35), True)]


def test_leave_one_out_counts_a_verdict_that_disappears_as_changed():
  verdicts, flips = stats.leave_one_out([('a', 1.0), ('a', 2.0), ('b', 3.0), ('b', 4.0)], _welch_verdict)
  assert verdicts == {'b vs a': False}
  assert [o for _, o in flips['b vs a']] == [None] * 4  # one seed left on a side: no test
