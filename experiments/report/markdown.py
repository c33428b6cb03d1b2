"""report.md of a sweep, section by section, and ``write_report``, which writes it with summary.csv,
verdicts.csv and the plots."""

from __future__ import annotations

import os
import time
from typing import Sequence


from deeprnn_jax.training import runlog
from experiments.report import plots
from experiments.report import tuning
from experiments.report import stats
from experiments.report.fmt import CORRECTION_NAMES, baseline_text, ci_text, fmt, interval_text, plural, seeds_text
from experiments.report.runs import REPORT_FILE, SUMMARY_FILE, VERDICTS_FILE, Run, Sweep, Variant, load_sweep, published
from experiments.report.runs import write_csv
from experiments.report.statements import statements
from experiments.report.verdicts import (
  Family,
  Fragility,
  agreement,
  comparison_keys,
  comparisons,
  fragility,
  matching,
  valid_entries,
  verdict_label,
  verdict_rows,
)


def comparison_table(family: Family, frag: Fragility | None = None) -> list[str]:
  """Markdown rows: every comparison of the family with every number behind its verdict (and, with
  ``frag``, whether the verdict survives leaving out any one seed)."""
  if not family.m:
    return []
  name = CORRECTION_NAMES[family.method]
  extra = ' leaving out one seed |' if frag is not None else ''
  lines = [
    '| comparison (a − b) | on | difference | 95% CI (Welch) | '
    f"CI at {name}'s level | Hedges' g | p (Welch) | p ({name}) | verdict | seeds for 80% power |{extra}",
    '|---|---|---|---|---|---|---|---|---|---|' + ('---|' if extra else ''),
  ]
  for (column, a, b), c in family.results.items():
    w = c.welch
    loo = f' {frag.column(("compare", column, a, b))} |' if frag is not None else ''
    lines.append(
      f'| {a} − {b} | {column} | {fmt(w.diff, 3)} | {interval_text(w.low, w.high)} | '
      f'{interval_text(*c.corrected)} at {c.level:.2%} | {fmt(c.g, 2)} | {fmt(w.pvalue, 2)} | '
      f'{fmt(c.p_adjusted, 2)} | {"clear" if c.clear else "not distinguishable"} | '
      f'{seeds_text(c.seeds)} |{loo}'
    )
  return lines


def published_rows(
  vs: Sequence[Variant], entries: dict, facts: dict, metric: str, ref: str, fragility: Fragility | None = None
) -> list[str]:
  """Markdown rows: each published value (or finding) beside ours, and whether they agree.

  An entry ``label -> {...}`` names the variants it is about by ``cell`` (default: the label; ``'*'``:
  every cell) and ``depth`` (default: every depth), the number by ``metric`` (default
  the report's) and ``split`` (default the report's: test, else val), and states either ``value``
  (a published number: it agrees when it lies inside our 95% interval) or ``solved`` (True: the
  cell reaches the task threshold; False: it stays at the baseline; agrees when every / no finished
  seed of ours reached the threshold), with its ``source`` and an optional ``note``.
  """
  rows = []
  for label, entry in valid_entries(entries).items():
    source = entry.get('source', '') + (f' ({entry["note"]})' if entry.get('note') else '')
    matched = matching(vs, label, entry)
    if not matched:
      rows.append(f'| {label} | no variant of this sweep | | | | {source} |')
      continue
    for v in matched:
      _, claim, ours, agrees = agreement(v, entry, facts, metric, ref)
      note = '' if fragility is None else fragility.column(('published', label, v.name))
      rows.append(
        f'| {label} | {v.name} | {claim} | {ours} | {agrees} | {source} |' + (f' {note} |' if fragility else '')
      )
  if not rows:
    return []
  if fragility is None:
    return ['| reference | our variant | published | ours | agrees? | source |', '|---|---|---|---|---|---|', *rows]
  return [
    '| reference | our variant | published | ours | agrees? | source | leaving out one seed |',
    '|---|---|---|---|---|---|---|',
    *rows,
  ]


# ----------------------------------------------------------------------------------------------
# The report.


def write_report(workdir: str) -> str:
  """Writes summary.csv, verdicts.csv, the plots and report.md into ``workdir``; returns the report's path."""
  sw = load_sweep(workdir)
  keys = comparison_keys(sw.variants, sw.facts, sw.metric, sw.mode, sw.ref)
  family = comparisons(sw.variants, sw.facts, sw.metric, sw.mode, sw.ref, keys=keys)
  entries = published(workdir, sw.runs)
  frag = fragility(sw.variants, sw.facts, sw.metric, sw.mode, sw.ref, keys, entries)
  for r in sw.runs:
    r.row['fragile_without_this_run'] = '; '.join(verdict_label(k) for k in frag.flipped_by(r)) or None
  write_csv(os.path.join(workdir, SUMMARY_FILE), [r.row for r in sw.runs])
  write_csv(os.path.join(workdir, VERDICTS_FILE), verdict_rows(frag))
  figures = plots.write_all(workdir, sw.variants, sw.axes, sw.facts, sw.metric, sw.ref, sw.len_splits)
  tune = tuning.load_tuning(workdir)  # the final runs of experiments.tune: what the search chose, and how
  md = [
    *header_section(sw),
    *findings_section(sw, family, frag),
    *comparisons_section(family, frag),
    *published_section(sw, entries, frag),
    *variants_section(sw),
    *(tuning.tuning_section(tune, tuning.plot_tuning(workdir, tune), tuning.verdict_flips(workdir)) if tune else []),
    *plots_section(figures),
    *methods_section(sw, family),
  ]
  path = os.path.join(workdir, REPORT_FILE)
  runlog.atomic_write_text(path, '\n'.join(md))
  return path


def header_section(sw: Sweep) -> list[str]:
  """The title, the run counts by state, the task (metric and direction, baseline, threshold), the swept
  axes and whether depth is compared at equal width or at equal parameters."""
  name = os.path.basename(os.path.abspath(sw.workdir))
  states: dict[str, int] = {}
  for r in sw.runs:
    states[r.state] = states.get(r.state, 0) + 1
  lines = [
    f'# Sweep report: {name}',
    '',
    f'{len(sw.runs)} runs in {len(sw.variants)} variants: '
    + ', '.join(f'{n} {s}' for s, n in sorted(states.items()))
    + f'. Written {time.strftime("%Y-%m-%d %H:%M")}.',
    '',
  ]
  facts = sw.facts
  if facts:
    base = facts.get('baseline') or {}
    thr = facts.get('threshold')
    chosen = 'set by `report.metric`' if sw.metric_set else "the task's own metric (`report.metric` overrides it)"
    lines += [
      f'**Task** `{facts.get("name")}` (sequence length {facts.get("seq_len")}); compared on '
      f'{sw.ref} {sw.metric} ({"lower" if sw.mode == "min" else "higher"} is better; {chosen}).',
      f'Baseline: {base.get("metric")} = {fmt(base.get("value"))} ({baseline_text(facts)}).',
    ]
    if thr:
      sign = '<=' if thr['mode'] == 'min' else '>='
      lines.append(f'Threshold ("solved"): {thr["metric"]} {sign} {fmt(thr["value"])} on val.')
    lines.append('')
  if sw.axes:
    lines += ['Swept: ' + ', '.join(f'`{a}`' for a in sw.axes) + '.', '']
  if len({v.depth for v in sw.variants}) > 1:
    budgets = {(r.config.get('sweep') or {}).get('param_budget') or 0 for r in sw.runs}
    if budgets == {0}:
      lines += [
        'Depth is compared **at equal width**: a deeper network has more parameters (the params '
        'column), so a gain with depth may be a gain with size.',
        '',
      ]
    else:
      lines += [
        f'Depth is compared **at equal parameters**: `sweep.param_budget` = '
        f'{", ".join(str(b) for b in sorted(budgets))}, the width solved per variant to match it.',
        '',
      ]
  return lines


def findings_section(sw: Sweep, family: Family, frag: Fragility) -> list[str]:
  """ "Findings": how many verdicts are fragile, then every statement in words (``statements``)."""
  lines = ['## Findings', '']
  fragile = sum(frag.fragile(k) for k in frag.verdicts)
  if frag.verdicts:
    lines += [
      f'Each verdict was recomputed with each of the {frag.runs} finished runs left out in turn: '
      f'{fragile} of {len(frag.verdicts)} change when one run is left out and are marked **fragile** '
      f'(with the run whose absence changes it); state only the others as findings. '
      f'All verdicts: `{VERDICTS_FILE}`.',
      '',
    ]
  found = statements(sw.variants, sw.axes, sw.facts, sw.metric, sw.mode, sw.ref, family, frag)
  lines += [f'- {s}' if not s.startswith('  ') else f'  - {s.strip()}' for s in found] or [
    '- (not enough finished runs to compare)'
  ]
  return lines


def comparisons_section(family: Family, frag: Fragility) -> list[str]:
  """ "Comparisons": the family's tests, how they were made and corrected, and their table."""
  table = comparison_table(family, frag)
  if not table:
    return []
  name = CORRECTION_NAMES[family.method]
  return [
    '',
    '## Comparisons',
    '',
    f"The {plural(family.m, 'test')} this report makes, one family: Welch's t-test per pair (scipy.stats.ttest_ind, "
    f'equal_var=False), {name}\'s correction over all {family.m}; "clear" means '
    f'the {name}-adjusted p is at most {stats.ALPHA}. Seeds for 80% power: per '
    f'variant, at level {stats.ALPHA}/{family.m}, if the observed difference and spread were the truth.',
    '',
    *table,
  ]


def published_section(sw: Sweep, entries: dict, frag: Fragility) -> list[str]:
  """ "Published reference": the values the sweep's config cites beside ours (none cited: nothing)."""
  refs = published_rows(sw.variants, entries, sw.facts, sw.metric, sw.ref, frag)
  if not refs:
    return []
  return [
    '',
    '## Published reference',
    '',
    "The values the sweep's config cites (`report.published`), beside ours. A published number agrees "
    'when it lies inside our 95% interval; a published "solves" / "stays at the baseline" agrees when '
    'every / no finished seed of ours reached the task threshold.',
    '',
    *refs,
  ]


def variants_section(sw: Sweep) -> list[str]:
  """ "Variants": one row per grid point, mean ± 95% half-width over its finished seeds for each column."""
  metric, ref = sw.metric, sw.ref
  lines = [
    '',
    '## Variants',
    '',
    'Mean ± 95% CI half-width over finished seeds (n). Steps/s and compile seconds are per '
    'program: the seeds of a variant train together in one.',
    '',
    'Variant names read `<cell>-d<depth>-w<width>[t<top width>]`, then each other swept setting '
    "(`lr` learning rate, `p` parameter budget, else the key's last part) and its value; a run adds "
    '`-s<seed>`. `gru-d2-w17t15`: GRU, 2 layers of width 17 but the top one, of 15 (parameter matching '
    'fine-tunes the top width).',
    '',
  ]
  cols = [
    ('params', 'params'),
    (f'final_{ref}_{metric}', f'final {ref} {metric}'),
    (f'best_val_{metric}', f'best val {metric}'),
    *([('steps_to_threshold', 'steps to threshold')] if sw.facts.get('threshold') else []),
    (f'val_{metric}_auc', f'val {metric} AUC'),
    ('generalization_gap', 'gen. gap'),
  ]
  cols += [(f'final_{s}_{metric}', f'{s} {metric}') for s in sw.len_splits]
  cols += [('steps_per_sec', 'steps/s'), ('compile_seconds', 'compile s')]
  lines.append('| variant | seeds | diverged | ' + ' | '.join(c[1] for c in cols) + ' |')
  lines.append('|' + '---|' * (3 + len(cols)))
  for v in sw.variants:
    div = sum(r.state == 'diverged' for r in v.runs)
    fin = sum(r.state == 'finished' for r in v.runs)
    cells = []
    for col, _ in cols:
      if col == 'params':
        cells.append(str(v.runs[0].row.get('params') or 'n/a'))
      elif col in ('steps_per_sec', 'compile_seconds'):  # one value per seed group: no spread to show
        cells.append(fmt(v.stat(col)[0], 3))
      elif col == 'steps_to_threshold':
        m, h, n = v.stat(col)
        cells.append(f'{ci_text(m, h, n)}, {n}/{fin} reached' if n else f'0/{fin} reached')
      else:
        cells.append(ci_text(*v.stat(col)))
    lines.append(f'| {v.name} | {len(v.runs)} | {div} | ' + ' | '.join(cells) + ' |')
  lines += ['', 'One row per run: `summary.csv`. Curves per run: `<run>/metrics.jsonl` (and wandb).']
  return lines


def plots_section(figures: dict[str, str]) -> list[str]:
  """ "Plots": each figure ``plots.write_all`` wrote, under its title."""
  lines = ['', '## Plots', '']
  for file, title in figures.items():
    lines += [f'### {title}', '', f'![{title}]({file})', '']
  return lines


def methods_section(sw: Sweep, family: Family) -> list[str]:
  """ "How to read this": which method made each number (intervals, tests, correction, effect size,
  power, convergence, gap, baseline, fragility, speed)."""
  metric, mode, ref = sw.metric, sw.mode, sw.ref
  correction = CORRECTION_NAMES[family.method]
  return [
    '## How to read this: which method made each number',
    '',
    '- Mean ± half-width: the mean over finished seeds and its Student-t 95% interval, '
    't_{0.975, n-1} s / sqrt(n) (scipy.stats.t); one seed has none. The plots cut intervals to the '
    'values a metric can take (accuracy in [0, 1], loss >= 0); the tables do not.',
    "- Difference of two variants: Welch's unequal-variance t-test and its 95% interval, with the "
    'Welch-Satterthwaite degrees of freedom (scipy.stats.ttest_ind(equal_var=False) and its '
    'confidence_interval()).',
    f'- Clear: the report makes many comparisons, so some uncorrected "clear" calls would be noise. All of '
    f"them form one family, corrected with {correction}'s step-down method (Holm 1979): the chance of any "
    f'false "clear" in the report stays at {stats.ALPHA}, whatever the dependence between comparisons (they '
    f'share variants). A difference is clear only when its {correction}-adjusted p-value is at most '
    f'{stats.ALPHA}. Holm tests the k-th smallest of the m p-values at level {stats.ALPHA}/(m - k + 1); '
    f'the "CI at Holm\'s level" is the Welch interval at that level, so a difference is clear exactly when '
    f'its corrected interval excludes 0 and so do those of every comparison with a smaller p-value.',
    "- Effect size: Hedges' g, the difference over the pooled standard deviation with the exact "
    'small-sample correction (Hedges 1981); the difference itself comes with its Welch interval.',
    f'- Seeds for 80% power: the fewest seeds per variant at which a two-sided two-sample t-test at level '
    f'{stats.ALPHA}/m detects the observed difference 80% of the time if the observed difference and '
    'pooled spread were the truth (noncentral t, scipy.stats.nct; Cohen 1988). Over 3 seeds the spread '
    'is itself uncertain: read it as an order of magnitude.',
    *(
      [
        '- Steps to threshold: the first evaluation at which the validation metric reached the task '
        'threshold; seeds that never reached it are left out of the mean and counted in "k/n reached".'
      ]
      if sw.facts.get('threshold')
      else []
    ),
    f'- AUC: the mean validation {metric} over training, trapezoid rule (numpy.trapezoid) (a '
    f'faster-converging variant has a {"lower" if mode == "min" else "higher"} value).',
    f'- Generalization gap: final {ref} minus final train {metric} (sign flipped for accuracy), so '
    'positive means worse on held-out data.',
    f"- Beats the baseline: the variant's 95% Student-t interval lies wholly "
    f'{"below" if mode == "min" else "above"} the baseline value, not only its mean.',
    '- Fragile: the verdict changes when one finished run (one seed of one variant) is left out and every '
    "test, interval and correction is recomputed (leave-one-out, the jackknife's resampling; the family of "
    'comparisons stays the same pairs). Training outcomes are often bimodal (a seed stuck at a shallow '
    "network's level): a fragile verdict rests on one seed. Per run: `summary.csv` column "
    '`fragile_without_this_run`; per verdict: `verdicts.csv`.',
    '- Diverged runs (NaN/Inf loss, gradients or parameters) are excluded from means and counted apart.',
    f'- Speed: {speed_conditions(sw.runs)}',
    '',
  ]


def speed_conditions(runs: Sequence[Run]) -> str:
  """How the speed columns were measured: each run's own rate, and how many grid points shared the
  machine (``workers`` in status.json), or that each was a cluster job (``launcher``)."""
  text = (
    "steps/s and compile seconds are each run's own wall-clock rate over its warm training steps "
    '(compilation counted apart), for the seeds of a variant trained together as one program; '
  )
  launchers = sorted({r.status['launcher'] for r in runs if r.status.get('launcher')})
  if launchers:
    return text + (
      f'each grid point trained as a job of its own (submitit, launcher {", ".join(launchers)}), '
      'on whatever node the scheduler gave it: compare speeds across variants with care.'
    )
  counts = sorted({int(r.status['workers']) for r in runs if isinstance(r.status.get('workers'), int)})
  unknown = sum(not isinstance(r.status.get('workers'), int) for r in runs)
  if len(counts) == 1 and not unknown:
    n = counts[0]
    return text + (
      f'{n} grid points trained at once on one machine, each in a worker process on its own '
      f'core(s) or GPU: the ratios compare variants that shared the machine alike, the absolute '
      f'rates hold for {n} concurrent programs on this hardware.'
      if n > 1
      else 'one grid point trained at a time.'
    )
  said = ', '.join(str(n) for n in counts) or 'an unrecorded number of'
  silent = f' ({plural(unknown, "run")} {"does" if unknown == 1 else "do"} not say)' if unknown and counts else ''
  return text + (
    f'the runs of this sweep were trained with {said} worker processes at once{silent} (status.json `workers`): '
    'compare their speed with care.'
  )
