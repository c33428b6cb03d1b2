"""The cross-task study report (``write_study_report``): report.md, depth_effects.csv, convergence.csv and
the heatmaps depth_effects_params.png / depth_effects_width.png in the study folder; section by section,
each function saying what it renders."""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from deeprnn_jax.training import runlog
from experiments.report import plots
from experiments.report import stats
from experiments.report.fmt import ci_text, fmt, interval_text, plural
from experiments.report.runs import REPORT_FILE, write_csv
from experiments.report.study import BASES, BASIS_NAMES, DepthEffect, Study, cell_label, cell_order, depth_effects
from experiments.report.study import read_study

DEPTH_EFFECTS_FILE = 'depth_effects.csv'
CONVERGENCE_FILE = 'convergence.csv'
HEATMAP_FILES = {'params': 'depth_effects_params.png', 'width': 'depth_effects_width.png'}


def write_study_report(study_dir: str) -> str:
  """Writes the study's report.md, depth_effects.csv, convergence.csv and a heatmap per basis that has a
  comparison (``HEATMAP_FILES``) into ``study_dir``; returns the report's path. Bad study.json: ValueError;
  nothing run yet: FileNotFoundError."""
  study = read_study(study_dir)
  effects, m = depth_effects(study)
  order = {c: i for i, c in enumerate(cell_order(study))}
  effects.sort(key=lambda e: (BASES.index(e.part.basis), order.get(e.cell.split(' ')[0], len(order)), e.cell, e.depth))
  write_csv(os.path.join(study_dir, DEPTH_EFFECTS_FILE), [e.csv_row() for e in effects])
  conv = convergence_rows(study)
  write_csv(os.path.join(study_dir, CONVERGENCE_FILE), conv)
  for basis in BASES:
    panel = heatmap_panel(basis, [e for e in effects if e.part.basis == basis])
    if panel['rows']:
      plots.plot_depth_effects(os.path.join(study_dir, HEATMAP_FILES[basis]), [panel])
  md = [*study_header(study, m), *what_held_section(effects, m)]
  for basis in BASES:
    md += basis_section(study, basis, [e for e in effects if e.part.basis == basis], conv)
  md += [*parts_section(study), *study_methods_section(study, m)]
  path = os.path.join(study_dir, REPORT_FILE)
  runlog.atomic_write_text(path, '\n'.join(md))
  return path


def _tasks(effects: Sequence[DepthEffect]) -> list[str]:
  """The column names of a basis: its parts' task labels, in study order (a repeated task gets its path)."""
  parts = sorted({e.part.index: e.part for e in effects}.values(), key=lambda p: p.index)
  counts = {t: sum(p.task == t for p in parts) for t in {p.task for p in parts}}
  return [p.task if counts[p.task] == 1 else f'{p.task} ({p.path})' for p in parts]


def _task_of(e: DepthEffect, effects: Sequence[DepthEffect]) -> str:
  tasks = _tasks(effects)
  parts = sorted({x.part.index for x in effects})
  return tasks[parts.index(e.part.index)]


def _row_labels(effects: Sequence[DepthEffect]) -> list[tuple[str, int]]:
  out: list[tuple[str, int]] = []
  for e in effects:
    if (e.cell, e.depth) not in out:
      out.append((e.cell, e.depth))
  return out


def heatmap_panel(basis: str, effects: Sequence[DepthEffect]) -> dict:
  """One panel of depth_effects.png: rows cell x depth, columns tasks, colour the relative signed effect,
  text the effect in the task's units, clear verdicts marked."""
  rows, tasks = _row_labels(effects), _tasks(effects)
  rel = np.full((len(rows), len(tasks)), np.nan)
  text = [['' for _ in tasks] for _ in rows]
  for e in effects:
    i, j = rows.index((e.cell, e.depth)), tasks.index(_task_of(e, effects))
    if e.comparison is not None:
      rel[i, j] = e.relative
      mark = {'clear': ' *', 'fragile': ' ?'}.get(e.verdict, '')
      text[i][j] = f'{e.effect:+.3g}{mark}'
  labels = [f'{c} d{d} vs d{effects[0].shallow_depth}' for c, d in rows] if effects else []
  return {'title': BASIS_NAMES[basis], 'rows': labels, 'columns': tasks, 'values': rel, 'text': text}


def convergence_rows(study: Study) -> list[dict]:
  """convergence.csv: per basis, task, cell and depth, the convergence (steps to the threshold where the
  task has one, the area under the validation curve) and generalization (train-to-held-out gap, the
  longer test splits where the task has them), each mean ± 95% half-width over finished seeds."""
  out = []
  for p in study.parts:
    if p.sweep is None:
      continue
    s = p.sweep
    for v in s.variants:
      fin = sum(r.state == 'finished' for r in v.runs)
      row = {'basis': p.basis, 'task': p.task, 'cell': cell_label(v.cell, v.other, s.axes), 'depth': v.depth}
      row['metric'] = f'{s.metric} ({"lower" if s.mode == "min" else "higher"} is better)'
      row['seeds'] = fin
      if s.facts.get('threshold'):
        row['steps_to_threshold'] = ci_text(*v.stat('steps_to_threshold'))
        row['reached'] = f'{len(v.values("steps_to_threshold"))}/{fin}'
      row['val_auc'] = ci_text(*v.stat(f'val_{s.metric}_auc'))
      row['generalization_gap'] = ci_text(*v.stat('generalization_gap'))
      for split in s.len_splits:
        row[f'{split}'] = ci_text(*v.stat(f'final_{split}_{s.metric}'))
      out.append(row)
  return out


def study_header(study: Study, m: int) -> list[str]:
  """The title, what was run, and how to read the sign of every effect."""
  ran = [p for p in study.parts if p.sweep is not None]
  runs = sum(len(p.sweep.runs) for p in ran)
  tasks = ', '.join(dict.fromkeys(p.task for p in ran))
  d = study.shallow_depth
  return [
    f'# Study report: {study.name}',
    '',
    f'{len(ran)} of {plural(len(study.parts), "part")} run ({tasks}): {plural(runs, "run")}. '
    f'Written {time.strftime("%Y-%m-%d %H:%M")}.',
    '',
    f"Each cell of each task compares every depth above {d} with depth {d} on the task's own metric "
    f'(final test value, else val). **Effects are signed so that positive means depth helps**, whatever the '
    f"metric's direction: for a lower-is-better metric (loss, perplexity, WER, CER, bpc) the effect is "
    f'shallow minus deep, for a higher-is-better one (accuracy, F1, BLEU) deep minus shallow. All '
    f"{plural(m, 'comparison')} of the study form one family, corrected with Holm's method.",
    '',
  ]


def _effect_words(e: DepthEffect) -> str:
  s, w = e.part.sweep, e.comparison.welch
  return (
    f'depth {e.depth} vs {e.shallow_depth}: {s.metric} {fmt(e.mean_deep)} vs {fmt(e.mean_shallow)}, effect '
    f'{w.diff:+.3g}, 95% CI {interval_text(w.low, w.high)}, Holm-adjusted p = {fmt(e.comparison.p_adjusted, 2)}'
  )


def what_held_section(effects: Sequence[DepthEffect], m: int) -> list[str]:
  """ "What held": only the verdicts that are clear and not fragile, one line per cell and task (its
  depths together) under each basis and direction; the others counted."""
  lines = ['## What held', '']
  held = [e for e in effects if e.verdict == 'clear']
  fragile = sum(e.verdict == 'fragile' for e in effects)
  unresolved = sum(e.verdict == 'not distinguishable' for e in effects)
  for basis in BASES:
    for outcome, verb in (('depth helps', 'depth helped'), ('depth hurts', 'depth hurt')):
      found = [e for e in held if e.part.basis == basis and e.outcome == outcome]
      by_pair: dict[tuple[str, str], list[DepthEffect]] = {}
      for e in found:
        by_pair.setdefault((e.cell, e.part.task), []).append(e)
      if by_pair:
        lines += [f'At {BASIS_NAMES[basis]}, {verb}:', '']
        for (cell, task), group in by_pair.items():
          depths = sorted(group, key=lambda e: e.depth)
          lines.append(f'- {cell} on {task}: ' + '; '.join(_effect_words(e) for e in depths) + '.')
        lines.append('')
  if not held:
    lines += [
      f"No depth effect held: none of the {plural(m, 'comparison')} is clear after Holm's correction and "
      'robust to leaving out one run.',
      '',
    ]
  lines.append(
    f'Not stated as findings: {plural(fragile, "fragile verdict")} (changed by leaving out one run), '
    f'{unresolved} not distinguishable'
    + (f', {sum(e.verdict == "too few seeds" for e in effects)} with too few seeds to test' if m < len(effects) else '')
    + '.'
  )
  return lines + ['']


def basis_section(study: Study, basis: str, effects: Sequence[DepthEffect], conv: list[dict]) -> list[str]:
  """ "Equal parameters" (the headline) or "Equal width": the depth-effect table (cell x task), the
  heatmap, and convergence beside generalization per cell, task and depth."""
  title = 'Equal parameters (the headline)' if basis == 'params' else 'Equal width (deeper = more parameters)'
  parts = [p for p in study.parts if p.basis == basis]
  if not parts:
    return []
  lines = [f'## {title}', '']
  if not effects:
    return lines + ['No depth comparison yet (no part of this basis has run both depths).', '']
  tasks, rows = _tasks(effects), _row_labels(effects)
  units = {t: e.part.sweep for e in effects for t in [_task_of(e, effects)]}
  lines += [
    '### Depth effect (positive = depth helps)',
    '',
    "Each entry: the signed effect in the task's metric, its Welch 95% interval, and the verdict after the "
    'study-wide Holm correction (**clear**, not distinguishable, or *fragile*: changed by leaving out one run).',
    '',
    '| cell, depth | '
    + ' | '.join(f'{t}: {units[t].ref} {units[t].metric} ({"↓" if units[t].mode == "min" else "↑"})' for t in tasks)
    + ' |',
    '|---|' + '---|' * len(tasks),
  ]
  for cell, depth in rows:
    entries = []
    for t in tasks:
      e = next((x for x in effects if (x.cell, x.depth) == (cell, depth) and _task_of(x, effects) == t), None)
      entries.append(_entry(e))
    lines.append(f'| {cell} {depth} vs {study.shallow_depth} | ' + ' | '.join(entries) + ' |')
  lines += ['', f'![Depth effects at {BASIS_NAMES[basis]}]({HEATMAP_FILES[basis]})', '']
  lines += [*_convergence_table([r for r in conv if r['basis'] == basis]), '']
  return lines


def _entry(e: DepthEffect | None) -> str:
  if e is None:
    return ''
  if e.comparison is None:
    return 'too few seeds'
  w = e.comparison.welch
  verdict = {'clear': f'**clear ({e.outcome})**', 'fragile': f'*fragile* ({e.fragile_note()})'}.get(
    e.verdict, e.verdict
  )
  return f'{w.diff:+.3g} {interval_text(w.low, w.high)} {verdict}'


def _convergence_table(rows: list[dict]) -> list[str]:
  """Convergence beside generalization, one row per task, cell and depth (from convergence.csv)."""
  if not rows:
    return []
  extra = sorted({k for r in rows for k in r if k.startswith('test_len')}, key=lambda s: int(s[8:].rstrip('x')))
  head = ['task', 'cell', 'depth', 'metric', 'seeds', 'steps to threshold (reached)', 'val AUC', 'gen. gap', *extra]
  out = [
    '### Convergence and generalization',
    '',
    'Mean ± 95% half-width over finished seeds. Steps to threshold only where the task has a threshold; '
    'the gap is held-out minus train, signed so that positive is worse held out.',
    '',
    '| ' + ' | '.join(head) + ' |',
    '|' + '---|' * len(head),
  ]
  for r in rows:
    steps = f'{r["steps_to_threshold"]} ({r["reached"]})' if 'reached' in r else '(no threshold)'
    cells = [
      r['task'],
      r['cell'],
      str(r['depth']),
      r['metric'],
      str(r['seeds']),
      steps,
      r['val_auc'],
      r['generalization_gap'],
      *(r.get(k, '') for k in extra),
    ]
    out.append('| ' + ' | '.join(cells) + ' |')
  return out


def parts_section(study: Study) -> list[str]:
  """ "Parts": each part's task, basis, folder, metric and runs; parts not run yet say so."""
  lines = ['## Parts', '', '| task | basis | sweep folder | compared on | runs |', '|---|---|---|---|---|']
  for p in study.parts:
    if p.sweep is None:
      lines.append(f'| {p.task} | {BASIS_NAMES[p.basis]} | `{p.path}` | | not run yet |')
      continue
    s = p.sweep
    how = f'{s.ref} {s.metric}, {"lower" if s.mode == "min" else "higher"} is better' + (
      ' (set by study.json)' if p.metric else ''
    )
    states = ', '.join(f'{n} {st}' for st, n in sorted(_count(r.state for r in s.runs).items()))
    lines.append(f'| {p.task} | {BASIS_NAMES[p.basis]} | `{p.path}` | {how} | {states} |')
  return lines + ['']


def _count(items) -> dict:
  out: dict = {}
  for x in items:
    out[x] = out.get(x, 0) + 1
  return out


def study_methods_section(study: Study, m: int) -> list[str]:
  """ "How to read this": the sign, the test, the correction, fragility and the heatmap's colour."""
  return [
    '## How to read this',
    '',
    f'- Effect: the difference of the mean final metric over finished seeds, deep minus depth {study.shallow_depth}, '
    "sign flipped for a lower-is-better metric, so positive = depth helps; its interval is Welch's 95% "
    '(scipy.stats.ttest_ind(equal_var=False)).',
    f'- Clear: all {plural(m, "testable comparison")} of the study (every cell, task, depth and basis) form one '
    f"family, corrected with Holm's step-down method; clear means a Holm-adjusted p of at most {stats.ALPHA}.",
    '- Fragile: the verdict changes (clear to not, or the reverse) when any one finished run of the study is '
    'left out and every test and the correction are recomputed; the table names the run. Only verdicts that '
    'are clear and not fragile are stated under "What held".',
    f'- Heatmaps ({", ".join(HEATMAP_FILES.values())}): colour is the effect as a share of the '
    f'depth-{study.shallow_depth} mean, so '
    "tasks on different metrics share one scale (cut at ±50%); the text is the effect in the task's units, "
    '`*` marks a clear verdict, `?` a fragile one; grey: not tested.',
    f'- Files: `{DEPTH_EFFECTS_FILE}` (one row per comparison), `{CONVERGENCE_FILE}` (one row per task, cell '
    "and depth); each part's own report: `python -m experiments.report STUDY_DIR/<sweep folder>`.",
    '',
  ]
