"""``python -m experiments.report runs/x``: what a sweep found, in a table, plots and words.

Reads only the run folders (``config.json``, ``status.json``, ``metrics.jsonl``) and ``sweep.json``;
never rebuilds a task or a model, so a report can be written anywhere, any time, even while the
sweep runs. Writes, into the sweep folder:

* ``summary.csv``: one row per run: cell, depth, width, seed, params, status, final train / val /
  test metrics, steps and seconds to the task threshold, area under the validation curve, the
  generalization gap, length-generalization metrics where the task has them, speed;
* the figures of ``experiments.plots`` (learning curves, final metric and convergence vs depth,
  per-layer gradient norms, diverged runs, length generalization);
* ``report.md``: the statements in words, every comparison with its numbers, the variant table, the
  published values the sweep's config cites beside ours, and the plots.

The statistics are ``experiments.stats``: Student-t intervals over seeds, Welch comparisons, and
Holm's correction over the whole family of comparisons one report makes; a difference is called
clear only when it holds after that correction. The report says which method made each number.

Published references: a sweep config may carry ``report.published``, a mapping
``label -> {cell, depth, metric, split, value, solved, source, note}`` (every field but ``source``
optional; see ``published_rows``). The report reads it from ``sweep.json`` (else from a run's
``config.json``) and tolerates its absence.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import logging
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

from deeprnn_jax import config as config_lib
from deeprnn_jax import runlog
from experiments import plots
from experiments import stats
# Public names report.py has always had; the statistics now live in experiments.stats.
from experiments.stats import clipped_interval, diff_ci, mean_ci, metric_range  # noqa: F401

REPORT_FILE = 'report.md'
SUMMARY_FILE = 'summary.csv'
SWEEP_FILE = 'sweep.json'
CORRECTION = 'holm'   # the report's family correction (see experiments.stats for why Holm)
_CORRECTION_NAMES = {'holm': 'Holm', 'bh': 'Benjamini-Hochberg'}
_IGNORED_TRAIN_KEYS = ('steps_per_sec', 'learning_rate')
_log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Reading runs.


@dataclasses.dataclass
class Run:
  run_id: str
  config: dict
  status: dict
  records: list[dict]
  row: dict = dataclasses.field(default_factory=dict)

  @property
  def state(self) -> str:
    return self.status.get('state', 'pending')

  def curve(self, split: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r['step'], r[metric]) for r in self.records
           if r.get('split') == split and isinstance(r.get(metric), (int, float))]
    if not pts:
      return np.zeros(0), np.zeros(0)
    s, v = zip(*pts)
    return np.asarray(s, np.int64), np.asarray(v, np.float64)

  def last(self, split: str) -> dict:
    recs = [r for r in self.records if r.get('split') == split]
    return recs[-1] if recs else {}

  def at(self, split: str, step: int) -> dict:
    for r in self.records:
      if r.get('split') == split and r['step'] == step:
        return r
    return {}


def load_runs(workdir: str) -> list[Run]:
  """Every run folder under ``workdir`` (a folder with a config.json), sorted by run id."""
  runs = []
  for name in sorted(os.listdir(workdir)):
    run_dir = os.path.join(workdir, name)
    if not os.path.isdir(run_dir):
      continue
    folder = runlog.RunFolder(run_dir)
    config = folder.read_config()
    if not isinstance(config, dict):
      continue
    runs.append(Run(name, config, folder.read_status() or {'state': 'pending'}, folder.read_metrics()))
  return runs


def _read_sweep(workdir: str) -> dict:
  """The sweep's ``sweep.json`` (its config, axes and runs), ``{}`` when there is none."""
  sweep = runlog.read_json(os.path.join(workdir, SWEEP_FILE))
  return sweep if isinstance(sweep, dict) else {}


def _axes(workdir: str, runs: Sequence[Run]) -> list[str]:
  """The swept keys: from sweep.json, else the config keys whose values differ between runs."""
  sweep = _read_sweep(workdir)
  if isinstance(sweep.get('axes'), dict):
    return list(sweep['axes'])
  flats = [config_lib.flatten(r.config, stop=()) for r in runs]
  keys = sorted({k for f in flats for k in f})
  return [k for k in keys if k != 'train.seed'
          and len({repr(f.get(k)) for f in flats}) > 1]


def _task_facts(runs: Sequence[Run]) -> dict:
  for r in runs:
    if isinstance(r.status.get('task'), dict):
      return r.status['task']
  return {}


# ----------------------------------------------------------------------------------------------
# The per-run summary.


def _auc(steps: np.ndarray, values: np.ndarray, end: int) -> float:
  """Mean of the validation curve over training (trapezoids, held flat from its last point to
  ``end``): lower is faster for a loss, higher for an accuracy."""
  if steps.size == 0:
    return float('nan')
  if steps[-1] < end:
    steps, values = np.append(steps, end), np.append(values, values[-1])
  if steps.size == 1:
    return float(values[0])
  return float(np.trapezoid(values, steps) / (steps[-1] - steps[0]))


def summarize(run: Run, axes: Sequence[str], facts: dict) -> dict:
  """The summary.csv row of one run."""
  c = run.config
  main, mode = main_metric(facts)
  row = {
      'run_id': run.run_id, 'cell': c['model']['cell'], 'depth': c['model']['depth'],
      'width': c['model']['width'], 'top_width': c['model'].get('top_width'), 'seed': c['train']['seed'],
      'params': run.status.get('params'),
      'status': run.state, 'steps': run.status.get('step'), 'diverged_step': run.status.get('diverged_step'),
  }
  for key in axes:
    if key not in ('model.cell', 'model.depth', 'model.width'):
      try:
        row[key] = json_value(config_lib.get_path(c, key))
      except (KeyError, TypeError):
        row[key] = None
  train = run.last('train')
  for k, v in train.items():
    if k not in ('step', 'split') and not k.startswith('grad_norm') and k not in _IGNORED_TRAIN_KEYS:
      row[f'final_train_{k}'] = v
  splits = facts.get('splits') or sorted({r.get('split') for r in run.records} - {'train'})
  for split in splits:
    for k, v in run.last(split).items():
      if k not in ('step', 'split'):
        row[f'final_{split}_{k}'] = v
  steps, values = run.curve('val', main)
  if values.size:
    best = int(np.argmin(values) if mode == 'min' else np.argmax(values))
    row[f'best_val_{main}'] = float(values[best])
    row['best_step'] = int(steps[best])
    row[f'test_at_best_val_{main}'] = run.at('test', int(steps[best])).get(main)
  thr = facts.get('threshold')
  reached = None
  if thr and values.size:
    hit = values <= thr['value'] if thr['mode'] == 'min' else values >= thr['value']
    reached = int(steps[np.argmax(hit)]) if hit.any() else None
  row['steps_to_threshold'] = reached
  row['seconds_to_threshold'] = run.status.get('threshold_seconds') if reached is not None else None
  row[f'val_{main}_auc'] = _auc(steps, values, c['train']['num_steps']) if values.size else None
  ref = 'test' if f'final_test_{main}' in row else 'val'
  if f'final_{ref}_{main}' in row and f'final_train_{main}' in row:
    gap = row[f'final_{ref}_{main}'] - row[f'final_train_{main}']
    row['generalization_gap'] = gap if mode == 'min' else -gap
  row['compile_seconds'] = run.status.get('compile_seconds')
  row['steps_per_sec'] = run.status.get('steps_per_sec')
  row['train_seconds'] = run.status.get('train_seconds')
  return row


def json_value(v: Any) -> Any:
  return v if isinstance(v, (int, float, str, bool)) or v is None else str(v)


def main_metric(facts: dict) -> tuple[str, str]:
  """The metric the report compares on: the task threshold's, else the loss; and its direction."""
  thr = facts.get('threshold')
  metric = thr['metric'] if thr else 'loss'
  mode = thr['mode'] if thr else facts.get('metric_modes', {}).get(metric, 'min')
  return metric, mode



def write_csv(path: str, rows: Sequence[dict]) -> None:
  fields = []
  for r in rows:
    fields += [k for k in r if k not in fields]
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=fields)
  w.writeheader()
  for r in rows:
    w.writerow({k: ('' if r.get(k) is None else r.get(k)) for k in fields})
  runlog.atomic_write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------------------------
# Variants.


@dataclasses.dataclass
class Variant:
  """The runs (seeds) of one grid point."""

  cell: str
  depth: int
  other: tuple   # values of the axes other than cell and depth
  runs: list[Run]

  @property
  def name(self) -> str:
    return self.runs[0].run_id.rsplit('-s', 1)[0]

  def values(self, column: str, states: Sequence[str] = ('finished',)) -> list[float]:
    return [r.row.get(column) for r in self.runs if r.state in states and r.row.get(column) is not None]

  def stat(self, column: str, states: Sequence[str] = ('finished',)) -> tuple[float, float, int]:
    return mean_ci(self.values(column, states))


def variants(runs: Sequence[Run], axes: Sequence[str]) -> list[Variant]:
  others = [k for k in axes if k not in ('model.cell', 'model.depth')]
  groups: dict[tuple, Variant] = {}
  for r in runs:
    other = tuple(r.row.get(k) if k != 'model.width' else r.row['width'] for k in others)
    key = (r.row['cell'], r.row['depth'], other)
    groups.setdefault(key, Variant(r.row['cell'], r.row['depth'], other, []))
    groups[key].runs.append(r)
  return sorted(groups.values(), key=lambda v: (v.cell, tuple(map(str, v.other)), v.depth))


# ----------------------------------------------------------------------------------------------
# The comparisons one report makes, as one family.


def _lines(vs: Sequence[Variant]) -> list[tuple[str, tuple, list[Variant]]]:
  """``(cell, other, variants by depth)`` for every depth line of the grid."""
  groups = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  return [(c, o, sorted([v for v in vs if (v.cell, v.other) == (c, o)], key=lambda v: v.depth)) for c, o in groups]


def _cell_rows(vs: Sequence[Variant], col: str, mode: str) -> list[tuple[int, tuple, list[Variant]]]:
  """``(depth, other, variants best first)`` where two or more cells have values at one depth."""
  out = []
  for depth, other in sorted({(v.depth, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1])))):
    row = [v for v in vs if (v.depth, v.other) == (depth, other) and v.values(col)]
    if len({v.cell for v in row}) >= 2:
      row.sort(key=lambda v: np.mean(v.values(col)), reverse=mode == 'max')
      out.append((depth, other, row))
  return out


def _ranked(vs: Sequence[Variant], col: str, mode: str) -> list[Variant]:
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


def comparisons(vs: Sequence[Variant], facts: dict, metric: str, mode: str, ref: str,
                method: str = CORRECTION) -> Family:
  """The family: each deeper variant vs the shallowest of its line (final metric, and steps to the
  threshold where the task has one), each cell vs the best cell at a depth, the best variant vs
  each other one."""
  col = f'final_{ref}_{metric}'
  pairs: dict[tuple[str, str, str], tuple[list, list]] = {}

  def add(column, a, b):
    if (column, b.name, a.name) not in pairs:
      pairs[(column, a.name, b.name)] = (a.values(column), b.values(column))

  for _, _, line in _lines(vs):
    for deep in line[1:]:
      add(col, deep, line[0])
      if facts.get('threshold'):
        add('steps_to_threshold', deep, line[0])
  for _, _, row in _cell_rows(vs, col, mode):
    for v in row[1:]:
      add(col, v, row[0])
  ranked = _ranked(vs, col, mode)
  for v in ranked[1:]:
    add(col, v, ranked[0])
  return Family(stats.compare(pairs, method=method), method)


def _fmt(x: float | None, digits: int = 4) -> str:
  if x is None or not np.isfinite(x):
    return 'n/a'
  return f'{x:.{digits}g}'


def _ci(mean: float, half: float, n: int) -> str:
  if n == 0:
    return 'n/a'
  if n < 2 or not np.isfinite(half):
    return f'{_fmt(mean)} (n={n})'
  return f'{_fmt(mean)} ± {_fmt(half, 2)} (n={n})'


def _interval(low: float, high: float) -> str:
  return f'[{_fmt(low, 3)}, {_fmt(high, 3)}]'


def _seeds(n: int | None) -> str:
  if n is None:
    return 'none (no difference)'
  return f'> {stats.MAX_SEEDS}' if n > stats.MAX_SEEDS else str(n)


def verdict(c: stats.Comparison | None) -> str:
  """The words for one comparison: clear or not after the correction, with its numbers."""
  if c is None:
    return 'too few seeds for a test'
  w, name = c.welch, _CORRECTION_NAMES[c.method]
  numbers = (f'difference {_fmt(w.diff, 3)}, 95% CI {_interval(w.low, w.high)}, '
             f"Hedges' g {_fmt(c.g, 2)}")
  if c.clear:
    return f'clear: {name}-adjusted p = {_fmt(c.p_adjusted, 2)} over {c.m} tests; {numbers}'
  alone = (f' (uncorrected p = {_fmt(w.pvalue, 2)}: alone, its 95% CI would exclude 0)'
           if c.clear_uncorrected else '')
  need = ('' if c.seeds is None else
          f'; about {_seeds(c.seeds)} seeds per variant would resolve a difference this large at this spread')
  return f'not distinguishable: {name}-adjusted p = {_fmt(c.p_adjusted, 2)} over {c.m} tests{alone}; {numbers}{need}'


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


def statements(vs: Sequence[Variant], axes_keys, facts: dict, metric: str, mode: str, ref: str,
               family: Family | None = None) -> list[str]:
  """The report's comparisons in words: depth within each cell, cells at each depth, the best variant."""
  family = comparisons(vs, facts, metric, mode, ref) if family is None else family
  out = []
  better = (lambda a, b: a < b) if mode == 'min' else (lambda a, b: a > b)
  col = f'final_{ref}_{metric}'
  base = facts.get('baseline') or {}
  thr = facts.get('threshold')
  for cell, other, line in _lines(vs):
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
      direction = 'better' if better(mb, ma) else 'worse'
      out.append(f'**{label}**: depth {deep.depth} vs depth {shallow.depth} ({depth_basis(shallow, deep)}): '
                 f'final {ref} {metric} {_fmt(mb)} vs {_fmt(ma)} ({rel:+.0%}, {direction}; '
                 f'{verdict(family.get(col, deep, shallow))}).')
      if thr:
        sa, sb = shallow.values('steps_to_threshold'), deep.values('steps_to_threshold')
        na, nb = len(shallow.runs), len(deep.runs)
        if sa and sb:
          fewer = (np.mean(sa) - np.mean(sb)) / np.mean(sa)
          c = family.get('steps_to_threshold', deep, shallow)
          out.append(f'  depth {deep.depth} reached the threshold ({metric} {"<=" if thr["mode"] == "min" else ">="} '
                     f'{_fmt(thr["value"])}) in {abs(fewer):.0%} {"fewer" if fewer >= 0 else "more"} steps than depth '
                     f'{shallow.depth} (mean {np.mean(sb):.0f} vs {np.mean(sa):.0f}; {len(sb)}/{nb} vs '
                     f'{len(sa)}/{na} seeds reached it; {verdict(c)}).')
        elif sa or sb:
          out.append(f'  threshold reached by {len(sb)}/{nb} seeds at depth {deep.depth} and {len(sa)}/{na} '
                     f'at depth {shallow.depth}.')
      ra, rb = shallow.values('steps_per_sec'), deep.values('steps_per_sec')
      if ra and rb:
        out.append(f'  speed: depth {deep.depth} trains at {np.mean(rb) / np.mean(ra):.2f}x the step rate of '
                   f'depth {shallow.depth}.')
  # Cells side by side at each depth: "for which cell".
  for depth, other, row in _cell_rows(vs, col, mode):
    top = row[0]
    below = [v.cell for v in row[1:] if (c := family.get(col, v, top)) is not None and c.clear]
    label = f'depth {depth}' + (f' ({plots.other_label(axes_keys, other)})' if other else '')
    ranking = ' > '.join(f'{v.cell} {_fmt(np.mean(v.values(col)), 3)}' for v in row)
    out.append(f'**Cells at {label}** (final {ref} {metric}, best first): {ranking}'
               + (f'; clearly behind {top.cell}: {", ".join(below)}.' if below else
                  f'; none clearly behind {top.cell}.'))
  ranked = _ranked(vs, col, mode)
  if ranked:
    best = ranked[0]
    out.append(f'**Best variant** by final {ref} {metric}: {best.name} with {_ci(*best.stat(col))}.')
    same = [v.name for v in ranked[1:] if (c := family.get(col, v, best)) is not None and not c.clear]
    if same:
      out.append(f'  Not clearly different from it (after {_CORRECTION_NAMES[family.method]}\'s correction): '
                 f'{", ".join(same)}.')
  if base.get('metric') == metric and ranked:
    beat = [v.name for v in ranked if better(v.stat(col)[0], base['value'])]
    out.append(f'{len(beat)} of {len(ranked)} variants beat the baseline ({base.get("description", "")}: '
               f'{_fmt(base["value"])}) on mean final {ref} {metric}.')
  div = [(v.name, sum(r.state == 'diverged' for r in v.runs), len(v.runs)) for v in vs]
  div = [d for d in div if d[1]]
  if div:
    out.append('Diverged: ' + '; '.join(f'{n}: {k}/{t} seeds' for n, k, t in div) + '.')
  return out


def comparison_table(family: Family) -> list[str]:
  """Markdown rows: every comparison of the family with every number behind its verdict."""
  if not family.m:
    return []
  name = _CORRECTION_NAMES[family.method]
  lines = ['| comparison (a − b) | on | difference | 95% CI (Welch) | '
           f'CI at {name}\'s level | Hedges\' g | p (Welch) | p ({name}) | verdict | seeds for 80% power |',
           '|---|---|---|---|---|---|---|---|---|---|']
  for (column, a, b), c in family.results.items():
    w = c.welch
    lines.append(f'| {a} − {b} | {column} | {_fmt(w.diff, 3)} | {_interval(w.low, w.high)} | '
                 f'{_interval(*c.corrected)} at {c.level:.2%} | {_fmt(c.g, 2)} | {_fmt(w.pvalue, 2)} | '
                 f'{_fmt(c.p_adjusted, 2)} | {"clear" if c.clear else "not distinguishable"} | {_seeds(c.seeds)} |')
  return lines


# ----------------------------------------------------------------------------------------------
# Published values beside ours.


def published(workdir: str, runs: Sequence[Run]) -> dict:
  """``report.published`` of the sweep's config (sweep.json), else of a run's config; ``{}`` if none."""
  sweep = _read_sweep(workdir)
  configs = [sweep.get('config')] + [r.config for r in runs]
  for c in configs:
    entries = ((c or {}).get('report') or {}).get('published') if isinstance(c, dict) else None
    if isinstance(entries, dict) and entries:
      return entries
  return {}


def _matching(vs: Sequence[Variant], label: str, entry: dict) -> list[Variant]:
  cell, depth = entry.get('cell') or label, entry.get('depth')
  return [v for v in vs if cell in ('*', v.cell) and (depth is None or v.depth == depth)]


def published_rows(vs: Sequence[Variant], entries: dict, facts: dict, metric: str, ref: str) -> list[str]:
  """Markdown rows: each published value (or finding) beside ours, and whether they agree.

  An entry ``label -> {...}`` names the variants it is about by ``cell`` (default: the label; ``'*'``:
  every cell) and ``depth`` (default: every depth), the number by ``metric`` (default
  the report's) and ``split`` (default the report's: test, else val), and states either ``value``
  (a published number: it agrees when it lies inside our 95% interval) or ``solved`` (True: the
  cell reaches the task threshold; False: it stays at the baseline; agrees when every / no finished
  seed of ours reached the threshold), with its ``source`` and an optional ``note``.
  """
  thr = facts.get('threshold') or {}
  base = facts.get('baseline') or {}
  rows = []
  for label, entry in entries.items():
    if not isinstance(entry, dict):
      _log.warning('report.published[%r] is not a mapping; left out', label)
      continue
    m, split = entry.get('metric') or metric, entry.get('split') or ref
    source = entry.get('source', '') + (f' ({entry["note"]})' if entry.get('note') else '')
    matched = _matching(vs, label, entry)
    if not matched:
      rows.append(f'| {label} | no variant of this sweep | | | | {source} |')
      continue
    for v in matched:
      if entry.get('value') is not None:
        value = float(entry['value'])
        mean, half, n = v.stat(f'final_{split}_{m}')
        claim = f'{split} {m} {_fmt(value)}'
        ours = f'{split} {m} {_ci(mean, half, n)}'
        if n == 0:
          agrees = 'n/a (no finished seed)'
        elif n < 2 or not np.isfinite(half):
          agrees = f'n/a (one seed; ours {mean - value:+.3g} from it)'
        elif abs(mean - value) <= half:
          agrees = 'yes (inside our 95% CI)'
        else:
          agrees = f'no: ours is {mean - value:+.3g} from it, outside our 95% CI'
      elif entry.get('solved') is not None:
        solved = bool(entry['solved'])
        fin = sum(r.state == 'finished' for r in v.runs)
        k = len(v.values('steps_to_threshold'))
        claim = 'solves (reaches the threshold)' if solved else 'stays at the baseline'
        mean, half, n = v.stat(f'final_{split}_{m}')
        sign = '<=' if thr.get('mode') == 'min' else '>='
        ours = (f'{k}/{fin} seeds reached {thr.get("metric")} {sign} {_fmt(thr.get("value"))}; final {split} {m} '
                f'{_ci(mean, half, n)}' + (f' (baseline {_fmt(base.get("value"))})' if base.get('metric') == m else ''))
        want = fin if solved else 0
        agrees = ('n/a (no finished seed)' if not fin else 'yes' if k == want else
                  'no' if k == fin - want else f'partly ({k}/{fin})')
      else:
        _log.warning('report.published[%r] has neither value nor solved; left out', label)
        continue
      rows.append(f'| {label} | {v.name} | {claim} | {ours} | {agrees} | {source} |')
  if not rows:
    return []
  return ['| reference | our variant | published | ours | agrees? | source |', '|---|---|---|---|---|---|', *rows]


# ----------------------------------------------------------------------------------------------
# The report.


def write_report(workdir: str) -> str:
  """Writes summary.csv, the plots and report.md into ``workdir``; returns the report's path."""
  runs = load_runs(workdir)
  if not runs:
    raise FileNotFoundError(f'no run folders (with a config.json) under {workdir!r}')
  axes = _axes(workdir, runs)
  facts = _task_facts(runs)
  metric, mode = main_metric(facts)
  for r in runs:
    r.row = summarize(r, axes, facts)
  write_csv(os.path.join(workdir, SUMMARY_FILE), [r.row for r in runs])
  vs = variants(runs, axes)
  splits = facts.get('splits') or []
  ref = 'test' if 'test' in splits or any(f'final_test_{metric}' in r.row for r in runs) else 'val'
  len_splits = sorted((s for s in splits if s.startswith('test_len')), key=lambda s: int(s[8:].rstrip('x')))
  figures = plots.write_all(workdir, vs, axes, facts, metric, ref, len_splits)
  family = comparisons(vs, facts, metric, mode, ref)
  md = _markdown(workdir, runs, vs, axes, facts, metric, mode, ref, len_splits, figures, family)
  path = os.path.join(workdir, REPORT_FILE)
  runlog.atomic_write_text(path, md)
  return path


def _markdown(workdir, runs, vs, axes, facts, metric, mode, ref, len_splits, figures, family) -> str:
  name = os.path.basename(os.path.abspath(workdir))
  states = {}
  for r in runs:
    states[r.state] = states.get(r.state, 0) + 1
  lines = [f'# Sweep report: {name}', '',
           f'{len(runs)} runs in {len(vs)} variants: ' + ', '.join(f'{n} {s}' for s, n in sorted(states.items()))
           + f'. Written {time.strftime("%Y-%m-%d %H:%M")}.', '']
  if facts:
    base = facts.get('baseline') or {}
    thr = facts.get('threshold')
    lines += [f'**Task** `{facts.get("name")}` (sequence length {facts.get("seq_len")}); compared on '
              f'{ref} {metric} ({"lower" if mode == "min" else "higher"} is better).',
              f'Baseline: {base.get("metric")} = {_fmt(base.get("value"))} ({base.get("description", "")}).']
    if thr:
      sign = '<=' if thr['mode'] == 'min' else '>='
      lines.append(f'Threshold ("solved"): {thr["metric"]} {sign} {_fmt(thr["value"])} on val.')
    lines.append('')
  if axes:
    lines += ['Swept: ' + ', '.join(f'`{a}`' for a in axes) + '.', '']
  if len({v.depth for v in vs}) > 1:
    budgets = {(r.config.get('sweep') or {}).get('param_budget') or 0 for r in runs}
    if budgets == {0}:
      lines += ['Depth is compared **at equal width**: a deeper network has more parameters (the params '
                'column), so a gain with depth may be a gain with size.', '']
    else:
      lines += [f'Depth is compared **at equal parameters**: `sweep.param_budget` = '
                f'{", ".join(str(b) for b in sorted(budgets))}, the width solved per variant to match it.', '']
  lines += ['## Findings', '']
  found = statements(vs, axes, facts, metric, mode, ref, family)
  lines += ([f'- {s}' if not s.startswith('  ') else f'  - {s.strip()}' for s in found]
            or ['- (not enough finished runs to compare)'])
  table = comparison_table(family)
  if table:
    lines += ['', '## Comparisons', '',
              f'The {family.m} tests this report makes, one family: Welch\'s t-test per pair (scipy.stats.ttest_ind, '
              f'equal_var=False), {_CORRECTION_NAMES[family.method]}\'s correction over all {family.m}; "clear" means '
              f'the {_CORRECTION_NAMES[family.method]}-adjusted p is at most {stats.ALPHA}. Seeds for 80% power: per '
              f'variant, at level {stats.ALPHA}/{family.m}, if the observed difference and spread were the truth.',
              '', *table]
  refs = published_rows(vs, published(workdir, runs), facts, metric, ref)
  if refs:
    lines += ['', '## Published reference', '',
              'The values the sweep\'s config cites (`report.published`), beside ours. A published number agrees '
              'when it lies inside our 95% interval; a published "solves" / "stays at the baseline" agrees when '
              'every / no finished seed of ours reached the task threshold.', '', *refs]
  lines += ['', '## Variants', '',
            'Mean ± 95% CI half-width over finished seeds (n). Steps/s and compile seconds are per '
            'program: the seeds of a variant train together in one.', '']
  cols = [('params', 'params'), (f'final_{ref}_{metric}', f'final {ref} {metric}'),
          (f'best_val_{metric}', f'best val {metric}'), ('steps_to_threshold', 'steps to threshold'),
          (f'val_{metric}_auc', f'val {metric} AUC'), ('generalization_gap', 'gen. gap')]
  cols += [(f'final_{s}_{metric}', f'{s} {metric}') for s in len_splits]
  cols += [('steps_per_sec', 'steps/s'), ('compile_seconds', 'compile s')]
  lines.append('| variant | seeds | diverged | ' + ' | '.join(c[1] for c in cols) + ' |')
  lines.append('|' + '---|' * (3 + len(cols)))
  for v in vs:
    div = sum(r.state == 'diverged' for r in v.runs)
    fin = sum(r.state == 'finished' for r in v.runs)
    cells = []
    for col, _ in cols:
      if col == 'params':
        cells.append(str(v.runs[0].row.get('params') or 'n/a'))
      elif col in ('steps_per_sec', 'compile_seconds'):   # one value per seed group: no spread to show
        cells.append(_fmt(v.stat(col)[0], 3))
      elif col == 'steps_to_threshold':
        m, h, n = v.stat(col)
        cells.append(f'{_ci(m, h, n)}, {n}/{fin} reached' if n else f'0/{fin} reached')
      else:
        cells.append(_ci(*v.stat(col)))
    lines.append(f'| {v.name} | {len(v.runs)} | {div} | ' + ' | '.join(cells) + ' |')
  lines += ['', 'One row per run: `summary.csv`. Curves per run: `<run>/metrics.jsonl` (and wandb).', '',
            '## Plots', '']
  for file, title in figures.items():
    lines += [f'### {title}', '', f'![{title}]({file})', '']
  correction = _CORRECTION_NAMES[family.method]
  lines += ['## How to read this: which method made each number', '',
            '- Mean ± half-width: the mean over finished seeds and its Student-t 95% interval, '
            't_{0.975, n-1} s / sqrt(n) (scipy.stats.t); one seed has none. The plots cut intervals to the '
            'values a metric can take (accuracy in [0, 1], loss >= 0); the tables do not.',
            '- Difference of two variants: Welch\'s unequal-variance t-test and its 95% interval, with the '
            'Welch-Satterthwaite degrees of freedom (scipy.stats.ttest_ind(equal_var=False) and its '
            'confidence_interval()).',
            f'- Clear: the report makes many comparisons, so some uncorrected "clear" calls would be noise. All of '
            f'them form one family, corrected with {correction}\'s step-down method (Holm 1979): the chance of any '
            f'false "clear" in the report stays at {stats.ALPHA}, whatever the dependence between comparisons (they '
            f'share variants). A difference is clear only when its {correction}-adjusted p-value is at most '
            f'{stats.ALPHA}. Holm tests the k-th smallest of the m p-values at level {stats.ALPHA}/(m - k + 1); '
            f'the "CI at Holm\'s level" is the Welch interval at that level, so a difference is clear exactly when '
            f'its corrected interval excludes 0 and so do those of every comparison with a smaller p-value.',
            '- Effect size: Hedges\' g, the difference over the pooled standard deviation with the exact '
            'small-sample correction (Hedges 1981); the difference itself comes with its Welch interval.',
            f'- Seeds for 80% power: the fewest seeds per variant at which a two-sided two-sample t-test at level '
            f'{stats.ALPHA}/m detects the observed difference 80% of the time if the observed difference and '
            'pooled spread were the truth (noncentral t, scipy.stats.nct; Cohen 1988). Over 3 seeds the spread '
            'is itself uncertain: read it as an order of magnitude.',
            '- Steps to threshold: the first evaluation at which the validation metric reached the task '
            'threshold; seeds that never reached it are left out of the mean and counted in "k/n reached".',
            f'- AUC: the mean validation {metric} over training, trapezoid rule (numpy.trapezoid) (a '
            f'faster-converging variant has a {"lower" if mode == "min" else "higher"} value).',
            f'- Generalization gap: final {ref} minus final train {metric} (sign flipped for accuracy), so '
            'positive means worse on held-out data.',
            '- Diverged runs (NaN/Inf loss, gradients or parameters) are excluded from means and counted apart.',
            f'- Speed: {speed_conditions(runs)}', '']
  return '\n'.join(lines)


def speed_conditions(runs: Sequence[Run]) -> str:
  """How the speed columns were measured: each run's own rate, and how many grid points shared the
  machine (``workers`` in status.json), or that each was a cluster job (``launcher``)."""
  text = ('steps/s and compile seconds are each run\'s own wall-clock rate over its warm training steps '
          '(compilation counted apart), for the seeds of a variant trained together as one program; ')
  launchers = sorted({r.status['launcher'] for r in runs if r.status.get('launcher')})
  if launchers:
    return text + (f'each grid point trained as a job of its own (submitit, launcher {", ".join(launchers)}), '
                   'on whatever node the scheduler gave it: compare speeds across variants with care.')
  counts = sorted({int(r.status['workers']) for r in runs if isinstance(r.status.get('workers'), int)})
  unknown = sum(not isinstance(r.status.get('workers'), int) for r in runs)
  if len(counts) == 1 and not unknown:
    n = counts[0]
    return text + (f'{n} grid points trained at once on one machine, each in a worker process on its own '
                   f'core(s) or GPU: the ratios compare variants that shared the machine alike, the absolute '
                   f'rates hold for {n} concurrent programs on this hardware.' if n > 1
                   else 'one grid point trained at a time.')
  said = ', '.join(str(n) for n in counts) or 'an unrecorded number of'
  return text + (f'the runs of this sweep were trained with {said} worker processes at once'
                 f'{f" ({unknown} runs do not say)" if unknown and counts else ""} (status.json `workers`): '
                 'compare their speed with care.')


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.report', description='Write the report of a sweep.')
  parser.add_argument('workdir')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.workdir):
    print(f'error: {args.workdir!r} is not a folder', file=sys.stderr)
    return 2
  try:
    path = write_report(args.workdir)
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
