"""The report's findings in words: each depth comparison within a cell, the cells at each depth, the best
variant and those not clearly different from it, the baseline, the diverged runs; each verdict that
leaving out one seed changes is marked fragile."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from experiments.report import plots
from experiments.report import stats
from experiments.report.fmt import CORRECTION_NAMES, baseline_text, ci_text, fmt, interval_text, plural, seeds_text
from experiments.report.runs import Variant
from experiments.report.verdicts import Family, Fragility, cell_rows, comparisons, depth_lines, ranked_variants


def verdict(c: stats.Comparison | None) -> str:
  """The words for one comparison: clear or not after the correction, with its numbers."""
  if c is None:
    return 'too few seeds for a test'
  w, name = c.welch, CORRECTION_NAMES[c.method]
  numbers = f"difference {fmt(w.diff, 3)}, 95% CI {interval_text(w.low, w.high)}, Hedges' g {fmt(c.g, 2)}"
  if c.clear:
    return f'clear: {name}-adjusted p = {fmt(c.p_adjusted, 2)} over {plural(c.m, "test")}; {numbers}'
  alone = f' (uncorrected p = {fmt(w.pvalue, 2)}: alone, its 95% CI would exclude 0)' if c.clear_uncorrected else ''
  need = (
    ''
    if c.seeds is None
    else f'; about {seeds_text(c.seeds)} seeds per variant would resolve a difference this large at this spread'
  )
  tests = plural(c.m, 'test')
  return f'not distinguishable: {name}-adjusted p = {fmt(c.p_adjusted, 2)} over {tests}{alone}; {numbers}{need}'


def depth_basis(shallow: Variant, deep: Variant) -> str:
  """Whether a depth comparison holds the width or the parameter count fixed (``sweep.param_budget``)."""
  pa, pb = shallow.runs[0].row.get('params'), deep.runs[0].row.get('params')
  params = f'{pb} vs {pa} params' if pa and pb else 'params n/a'
  sweep_cfg = shallow.runs[0].config.get('sweep') or {}
  budget = sweep_cfg.get('param_budget') or 0
  if budget:
    tol = sweep_cfg.get('param_tolerance')
    within = f' ± {tol:.0%}' if isinstance(tol, (int, float)) else ''
    return f'equal parameters, budget {budget}{within}: {params}'
  wa, wb = shallow.runs[0].row.get('width'), deep.runs[0].row.get('width')
  width = f'equal width {wa}' if wa == wb else f'widths {wb} vs {wa}'
  return f'{width}, deeper = more parameters: {params}'


# ----------------------------------------------------------------------------------------------
# Words.


def statements(
  vs: Sequence[Variant],
  axes_keys,
  facts: dict,
  metric: str,
  mode: str,
  ref: str,
  family: Family | None = None,
  frag: Fragility | None = None,
) -> list[str]:
  """The report's comparisons in words: depth within each cell, cells at each depth, the best variant,
  the baseline; with ``frag``, each verdict that leaving out one seed changes is marked fragile."""
  family = comparisons(vs, facts, metric, mode, ref) if family is None else family
  frag = Fragility({}, {}) if frag is None else frag

  def mark(key):
    return f' **[{frag.note(key)}]**' if frag.fragile(key) else ''

  def cmp_key(column, a, b):
    return (
      ('compare', column, a.name, b.name)
      if (column, a.name, b.name) in family.results
      else ('compare', column, b.name, a.name)
    )

  out = []
  better = (lambda a, b: a < b) if mode == 'min' else (lambda a, b: a > b)
  col = f'final_{ref}_{metric}'
  base = facts.get('baseline') or {}
  thr = facts.get('threshold')
  for cell, other, line in depth_lines(vs):
    label = cell + (f' ({plots.other_label(axes_keys, other)})' if other else '')
    if len(line) < 2:
      continue
    shallow = line[0]
    a_vals = shallow.values(col)
    for deep in line[1:]:
      b_vals = deep.values(col)
      if not a_vals or not b_vals:
        continue
      ma, mb = np.mean(a_vals), np.mean(b_vals)
      rel = (mb - ma) / abs(ma) if ma else float('nan')
      direction = 'equal' if mb == ma else 'better' if better(mb, ma) else 'worse'
      out.append(
        f'**{label}**: depth {deep.depth} vs depth {shallow.depth} ({depth_basis(shallow, deep)}): '
        f'final {ref} {metric} {fmt(mb)} vs {fmt(ma)} ({rel:+.0%}, {direction}; '
        f'{verdict(family.get(col, deep, shallow))}){mark(cmp_key(col, deep, shallow))}.'
      )
      if thr:
        sa, sb = shallow.values('steps_to_threshold'), deep.values('steps_to_threshold')
        na, nb = len(shallow.runs), len(deep.runs)
        if sa and sb:
          fewer = (np.mean(sa) - np.mean(sb)) / np.mean(sa)
          c = family.get('steps_to_threshold', deep, shallow)
          out.append(
            f'  depth {deep.depth} reached the threshold ({metric} {"<=" if thr["mode"] == "min" else ">="} '
            f'{fmt(thr["value"])}) in {abs(fewer):.0%} {"fewer" if fewer >= 0 else "more"} steps than depth '
            f'{shallow.depth} (mean {np.mean(sb):.0f} vs {np.mean(sa):.0f}; {len(sb)}/{nb} vs '
            f'{len(sa)}/{na} seeds reached it; {verdict(c)})'
            f'{mark(cmp_key("steps_to_threshold", deep, shallow))}.'
          )
        elif sa or sb:
          out.append(
            f'  threshold reached by {len(sb)}/{nb} seeds at depth {deep.depth} and {len(sa)}/{na} '
            f'at depth {shallow.depth}.'
          )
      ra, rb = shallow.values('steps_per_sec'), deep.values('steps_per_sec')
      if ra and rb:
        out.append(
          f'  speed: depth {deep.depth} trains at {np.mean(rb) / np.mean(ra):.2f}x the step rate of '
          f'depth {shallow.depth}.'
        )
  # Cells side by side at each depth: "for which cell".
  for depth, other, row in cell_rows(vs, col, mode):
    top = row[0]
    below = [
      v.cell + (' (fragile)' if frag.fragile(cmp_key(col, v, top)) else '')
      for v in row[1:]
      if (c := family.get(col, v, top)) is not None and c.clear
    ]
    label = f'depth {depth}' + (f' ({plots.other_label(axes_keys, other)})' if other else '')
    ranking = ' > '.join(f'{v.cell} {fmt(np.mean(v.values(col)), 3)}' for v in row)
    out.append(
      f'**Cells at {label}** (final {ref} {metric}, best first): {ranking}'
      + (f'; clearly behind {top.cell}: {", ".join(below)}' if below else f'; none clearly behind {top.cell}')
      + f'{mark(("cells", depth, other))}.'
    )
  ranked = ranked_variants(vs, col, mode)
  if ranked:
    best = ranked[0]
    out.append(
      f'**Best variant** by final {ref} {metric}: {best.name} with {ci_text(*best.stat(col))}{mark(("best",))}.'
    )
    same = [
      v.name + (' (fragile)' if frag.fragile(cmp_key(col, v, best)) else '')
      for v in ranked[1:]
      if (c := family.get(col, v, best)) is not None and not c.clear
    ]
    if same:
      out.append(
        f"  Not clearly different from it (after {CORRECTION_NAMES[family.method]}'s correction): {', '.join(same)}."
      )
  if base.get('metric') == metric and ranked:
    beat = [v for v in ranked if stats.beats(v.values(col), base['value'], mode)]
    mean_only = [v.name for v in ranked if all(v is not b for b in beat) and better(v.stat(col)[0], base['value'])]
    names = ', '.join(
      v.name + (f' **[{frag.note(("baseline", v.name))}]**' if frag.fragile(('baseline', v.name)) else '') for v in beat
    )
    out.append(
      f'{len(beat)} of {len(ranked)} variants beat the baseline ({baseline_text(facts)}: '
      f'{fmt(base["value"])}) on final {ref} {metric}, their 95% CI wholly '
      f'{"below" if mode == "min" else "above"} it' + (f': {names}' if beat else '') + '.'
    )
    if mean_only:
      out.append(
        f'  Better than the baseline on the mean only (the 95% CI reaches it): {", ".join(mean_only)}'
        + ''.join(f' **[{frag.note(("baseline", n))}]**' for n in mean_only if frag.fragile(('baseline', n)))
        + '.'
      )
  div = [(v.name, sum(r.state == 'diverged' for r in v.runs), len(v.runs)) for v in vs]
  div = [d for d in div if d[1]]
  if div:
    out.append('Diverged: ' + '; '.join(f'{n}: {k}/{t} seeds' for n, k, t in div) + '.')
  return out
