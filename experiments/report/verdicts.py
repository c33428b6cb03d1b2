"""The verdicts a report states: the family of comparisons (Welch-tested, Holm-corrected together), the
outcome of every verdict, its fragility (each recomputed with each finished run left out in turn,
``stats.leave_one_out``), and the published references' agreement with ours.

Fragility: every verdict (each comparison of the family, the best variant, the best cell at each depth,
each "beats the baseline", each published-reference agreement) is recomputed with each finished run left
out; a verdict that changes is *fragile*, with the run whose absence changes it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

import numpy as np

from experiments.report import stats
from experiments.report.fmt import CORRECTION, ci_text, fmt
from experiments.report.runs import Run, Variant

_log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# The comparisons one report makes, as one family.


def depth_lines(vs: Sequence[Variant]) -> list[tuple[str, tuple, list[Variant]]]:
  """``(cell, other, variants by depth)`` for every depth line of the grid."""
  groups = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  return [(c, o, sorted([v for v in vs if (v.cell, v.other) == (c, o)], key=lambda v: v.depth)) for c, o in groups]


def cell_rows(vs: Sequence[Variant], col: str, mode: str) -> list[tuple[int, tuple, list[Variant]]]:
  """``(depth, other, variants best first)`` where two or more cells have values at one depth."""
  out = []
  for depth, other in sorted({(v.depth, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1])))):
    row = [v for v in vs if (v.depth, v.other) == (depth, other) and v.values(col)]
    if len({v.cell for v in row}) >= 2:
      row.sort(key=lambda v: np.mean(v.values(col)), reverse=mode == 'max')
      out.append((depth, other, row))
  return out


def ranked_variants(vs: Sequence[Variant], col: str, mode: str) -> list[Variant]:
  """The variants with a value of ``col``, best mean first."""
  ranked = [v for v in vs if v.values(col)]
  return sorted(ranked, key=lambda v: np.mean(v.values(col)), reverse=mode == 'max')


@dataclasses.dataclass
class Family:
  """Every comparison a report states a verdict on, Welch-tested and corrected together.

  ``results`` maps ``(column, variant a, variant b)`` to the comparison of ``a - b``; ``get`` also
  answers ``(column, b, a)`` (the same test, flipped), so each pair is tested and counted once.
  """

  results: dict[tuple[str, str, str], stats.Comparison]
  method: str = CORRECTION

  @property
  def m(self) -> int:
    return len(self.results)

  def get(self, column: str, a: Variant, b: Variant) -> stats.Comparison | None:
    if (column, a.name, b.name) in self.results:
      return self.results[(column, a.name, b.name)]
    c = self.results.get((column, b.name, a.name))
    return None if c is None else c.flipped()


def comparison_keys(vs: Sequence[Variant], facts: dict, metric: str, mode: str, ref: str) -> list[tuple[str, str, str]]:
  """The family's pairs ``(column, a, b)``: each deeper variant vs the shallowest of its line (final
  metric, and steps to the threshold where the task has one), each cell vs the best cell at a depth,
  the best variant vs each other one."""
  col = f'final_{ref}_{metric}'
  keys: list[tuple[str, str, str]] = []

  def add(column, a, b):
    if (column, b.name, a.name) not in keys and (column, a.name, b.name) not in keys:
      keys.append((column, a.name, b.name))

  for _, _, line in depth_lines(vs):
    for deep in line[1:]:
      add(col, deep, line[0])
      if facts.get('threshold'):
        add('steps_to_threshold', deep, line[0])
  for _, _, row in cell_rows(vs, col, mode):
    for v in row[1:]:
      add(col, v, row[0])
  ranked = ranked_variants(vs, col, mode)
  for v in ranked[1:]:
    add(col, v, ranked[0])
  return keys


def comparisons(
  vs: Sequence[Variant],
  facts: dict,
  metric: str,
  mode: str,
  ref: str,
  method: str = CORRECTION,
  keys: Sequence[tuple[str, str, str]] | None = None,
  effect_sizes: bool = True,
) -> Family:
  """The family of ``comparison_keys`` (or of ``keys``), Welch-tested and corrected together."""
  keys = comparison_keys(vs, facts, metric, mode, ref) if keys is None else keys
  by_name = {v.name: v for v in vs}
  pairs = {k: (by_name[k[1]].values(k[0]), by_name[k[2]].values(k[0])) for k in keys}
  return Family(stats.compare(pairs, method=method, effect_sizes=effect_sizes), method)


# ----------------------------------------------------------------------------------------------
# Fragility: which verdicts survive leaving out any one seed.


def outcomes(
  vs: Sequence[Variant],
  facts: dict,
  metric: str,
  mode: str,
  ref: str,
  keys: Sequence[tuple[str, str, str]],
  entries: dict,
  method: str = CORRECTION,
) -> dict[tuple, Any]:
  """Every verdict the report states, as ``key -> outcome``:

  * ``('compare', column, a, b)``: the family's comparison of ``keys`` (held fixed, so that leaving
    a seed out asks whether the *same* test changes), ``'a > b'`` / ``'a < b'`` when clear after the
    correction, else ``'not distinguishable'``;
  * ``('best',)``: the variant with the best mean; ``('cells', depth, other)``: the best cell there;
  * ``('baseline', variant)``: whether its 95% interval lies wholly on the better side of the
    baseline (``stats.beats``; only when the baseline is stated in the report's metric);
  * ``('published', label, variant)``: the published reference's answer (``agreement``).
  """
  col = f'final_{ref}_{metric}'
  family = comparisons(vs, facts, metric, mode, ref, method, keys=keys, effect_sizes=False)
  out: dict[tuple, Any] = {('compare', *k): c.outcome for k, c in family.results.items()}
  ranked = ranked_variants(vs, col, mode)
  if len(ranked) > 1:
    out[('best',)] = ranked[0].name
  for depth, other, row in cell_rows(vs, col, mode):
    out[('cells', depth, other)] = row[0].cell
  base = facts.get('baseline') or {}
  if base.get('metric') == metric and base.get('value') is not None:
    for v in vs:
      if v.values(col):
        out[('baseline', v.name)] = stats.beats(v.values(col), float(base['value']), mode)
  for label, entry in valid_entries(entries).items():
    for v in matching(vs, label, entry):
      out[('published', label, v.name)] = agreement(v, entry, facts, metric, ref)[0]
  return out


@dataclasses.dataclass
class Fragility:
  """The report's verdicts and, for each, the runs whose leaving out changes it (``stats.leave_one_out``).

  ``verdicts``: key -> outcome (``outcomes``); ``flips``: key -> ``[(run, outcome without it)]``.
  """

  verdicts: dict[tuple, Any]
  flips: dict[tuple, list[tuple[Run, Any]]]
  runs: int = 0  # how many runs were left out in turn

  def fragile(self, key: tuple) -> bool:
    return bool(self.flips.get(key))

  def note(self, key: tuple) -> str:
    """``'fragile: without <run> ...'``, or ``''`` for a robust (or unknown) verdict."""
    flips = self.flips.get(key)
    if not flips:
      return ''
    run, new = flips[0]
    more = (
      f' (or any of {len(flips) - 1} other runs)'
      if len(flips) > 2
      else (f' (or {flips[1][0].run_id})' if len(flips) == 2 else '')
    )
    return f'fragile: without {run.run_id}{more}, {describe(key, self.verdicts[key], new)}'

  def column(self, key: tuple) -> str:
    """The tables' "leaving out one seed" cell: robust, or the fragile note."""
    if key not in self.verdicts:
      return 'n/a'
    return f'**{self.note(key)}**' if self.fragile(key) else 'robust'

  def flipped_by(self, run: Run) -> list[tuple]:
    """The verdicts that leaving out ``run`` changes."""
    return [k for k, flips in self.flips.items() if any(r is run for r, _ in flips)]


def describe(key: tuple, old: Any, new: Any) -> str:
  """What a verdict becomes without a run, in words."""
  kind = key[0]
  if kind == 'compare':
    if new is None:
      return 'it cannot be tested (too few seeds)'
    if new == 'not distinguishable':
      return 'it is not distinguishable'
    return 'it is clear' if old == 'not distinguishable' else 'it is clear the other way'
  if kind == 'best':
    return f'{new} has the best mean'
  if kind == 'cells':
    return f'{new} is the best cell'
  if kind == 'baseline':
    return {
      True: 'its 95% interval clears the baseline',
      False: 'its 95% interval reaches the baseline',
      None: 'it has no interval (one seed)',
    }[new]
  return f'the answer is {new!r}'


def verdict_label(key: tuple) -> str:
  """A verdict's name in verdicts.csv and summary.csv."""
  kind = key[0]
  if kind == 'compare':
    return f'{key[2]} vs {key[3]} on {key[1]}'
  if kind == 'best':
    return 'best variant'
  if kind == 'cells':
    return f'best cell at depth {key[1]}' + (f' {key[2]}' if key[2] else '')
  if kind == 'baseline':
    return f'{key[1]} beats the baseline'
  return f'{key[2]} agrees with published {key[1]}'


def fragility(
  vs: Sequence[Variant],
  facts: dict,
  metric: str,
  mode: str,
  ref: str,
  keys: Sequence[tuple[str, str, str]],
  entries: dict,
  method: str = CORRECTION,
) -> Fragility:
  """Every verdict of ``outcomes``, recomputed with each finished run left out in turn."""
  items = [r for v in vs for r in v.runs if r.state == 'finished']

  def of(kept: Sequence[Run]) -> dict:
    ids = {id(r) for r in kept}
    sub = [dataclasses.replace(v, runs=[r for r in v.runs if r.state != 'finished' or id(r) in ids]) for v in vs]
    return outcomes(sub, facts, metric, mode, ref, keys, entries, method)

  verdicts, flips = stats.leave_one_out(items, of)
  return Fragility(verdicts, flips, len(items))


def verdict_rows(frag: Fragility) -> list[dict]:
  """verdicts.csv: one row per verdict, its outcome, and the runs whose leaving out changes it."""
  return [
    {
      'verdict': verdict_label(k),
      'outcome': v,
      'fragile': frag.fragile(k),
      'changed_without': ' '.join(r.run_id for r, _ in frag.flips.get(k, [])),
      'outcome_without': ' '.join(str(o) for _, o in frag.flips.get(k, [])),
    }
    for k, v in frag.verdicts.items()
  ]


def matching(vs: Sequence[Variant], label: str, entry: dict) -> list[Variant]:
  cell, depth = entry.get('cell') or label, entry.get('depth')
  return [v for v in vs if cell in ('*', v.cell) and (depth is None or v.depth == depth)]


def valid_entries(entries: dict) -> dict:
  """The ``report.published`` entries the report can read (a mapping with ``value`` or ``solved``)."""
  out = {}
  for label, entry in entries.items():
    if not isinstance(entry, dict):
      _log.warning('report.published[%r] is not a mapping; left out', label)
    elif entry.get('value') is None and entry.get('solved') is None:
      _log.warning('report.published[%r] has neither value nor solved; left out', label)
    else:
      out[label] = entry
  return out


def agreement(v: Variant, entry: dict, facts: dict, metric: str, ref: str) -> tuple[str, str, str, str]:
  """``(answer, published, ours, agrees)`` for one published entry and one variant: ``answer`` is
  ``'yes'``, ``'no'``, ``'partly'`` or ``'n/a'`` (what leaving a seed out may change), the others the
  table's words."""
  thr = facts.get('threshold') or {}
  base = facts.get('baseline') or {}
  m, split = entry.get('metric') or metric, entry.get('split') or ref
  if entry.get('value') is not None:
    value = float(entry['value'])
    mean, half, n = v.stat(f'final_{split}_{m}')
    claim = f'{split} {m} {fmt(value)}'
    ours = f'{split} {m} {ci_text(mean, half, n)}'
    inside = stats.inside_ci(v.values(f'final_{split}_{m}'), value)
    if n == 0:
      return 'n/a', claim, ours, 'n/a (no finished seed)'
    if inside is None:
      return 'n/a', claim, ours, f'n/a (one seed; ours {mean - value:+.3g} from it)'
    if inside:
      return 'yes', claim, ours, 'yes (inside our 95% CI)'
    return 'no', claim, ours, f'no: ours is {mean - value:+.3g} from it, outside our 95% CI'
  solved = bool(entry['solved'])
  fin = sum(r.state == 'finished' for r in v.runs)
  k = len(v.values('steps_to_threshold'))
  claim = 'solves (reaches the threshold)' if solved else 'stays at the baseline'
  mean, half, n = v.stat(f'final_{split}_{m}')
  sign = '<=' if thr.get('mode') == 'min' else '>='
  ours = (
    f'{k}/{fin} seeds reached {thr.get("metric")} {sign} {fmt(thr.get("value"))}; final {split} {m} '
    f'{ci_text(mean, half, n)}' + (f' (baseline {fmt(base.get("value"))})' if base.get('metric') == m else '')
  )
  want = fin if solved else 0
  if not fin:
    return 'n/a', claim, ours, 'n/a (no finished seed)'
  if k == want:
    return 'yes', claim, ours, 'yes'
  if k == fin - want:
    return 'no', claim, ours, 'no'
  return 'partly', claim, ours, f'partly ({k}/{fin})'
