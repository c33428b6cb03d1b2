"""``python -m experiments.report runs/x``: what a sweep found, in a table, plots and words.

Reads only the run folders (``config.json``, ``status.json``, ``metrics.jsonl``) and ``sweep.json``;
never rebuilds a task or a model, so a report can be written anywhere, any time, even while the
sweep runs. Writes, into the sweep folder:

* ``summary.csv``: one row per run: cell, depth, width, seed, params, status, final train / val /
  test metrics, steps and seconds to the task threshold, area under the validation curve, the
  generalization gap, length-generalization metrics where the task has them, speed;
* ``learning_curves.png``: validation metric vs step, one panel per cell, one line per depth (mean
  over seeds and its 95% CI band), the task baseline and threshold drawn in;
* ``final_vs_depth.png``, ``convergence_vs_depth.png``: final metric and steps to threshold vs
  depth, one line per cell, 95% CIs;
* ``grad_norms.png``: mean gradient norm per layer (the vanishing/exploding diagnostic);
* ``diverged.png``: the fraction of diverged runs per variant;
* ``length_generalization.png`` where the task has longer test splits;
* ``report.md``: the statements in words, the variant table and the plots.

CIs are Student-t intervals over seeds (mean +- t_{0.975, n-1} s / sqrt(n)); a difference between
two variants is called clear when the Welch interval of the difference excludes zero.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import os
import sys
import time
from typing import Any, Iterable, Sequence

import numpy as np

from deeprnn_jax import config as config_lib
from deeprnn_jax import runlog

REPORT_FILE = 'report.md'
SUMMARY_FILE = 'summary.csv'
_IGNORED_TRAIN_KEYS = ('steps_per_sec', 'learning_rate')


# ----------------------------------------------------------------------------------------------
# Statistics.


def _t975(dof: int) -> float:
  from scipy import stats  # pylint: disable=g-import-not-at-top  (scipy comes with scikit-learn)
  return float(stats.t.ppf(0.975, dof))


def mean_ci(values: Iterable[float]) -> tuple[float, float, int]:
  """``(mean, half-width of the 95% CI, n)`` of the finite values; the half-width is nan for n < 2."""
  x = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  if x.size == 0:
    return float('nan'), float('nan'), 0
  if x.size == 1:
    return float(x[0]), float('nan'), 1
  return float(x.mean()), _t975(x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size), int(x.size)


def diff_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float] | None:
  """Welch's 95% CI of ``mean(a) - mean(b)``: ``(difference, low, high)``, None if either has n < 2."""
  a = np.asarray([v for v in a if v is not None and np.isfinite(v)], np.float64)
  b = np.asarray([v for v in b if v is not None and np.isfinite(v)], np.float64)
  if a.size < 2 or b.size < 2:
    return None
  va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
  d = float(a.mean() - b.mean())
  se = math.sqrt(va + vb)
  if se == 0:
    return d, d, d
  dof = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
  h = _t975(max(int(dof), 1)) * se
  return d, d - h, d + h


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
    config = runlog.read_json(os.path.join(run_dir, runlog.CONFIG_FILE))
    if not isinstance(config, dict):
      continue
    status = runlog.read_status(run_dir) or {'state': 'pending'}
    runs.append(Run(name, config, status, runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE))))
  return runs


def _axes(workdir: str, runs: Sequence[Run]) -> list[str]:
  """The swept keys: from sweep.json, else the config keys whose values differ between runs."""
  sweep = runlog.read_json(os.path.join(workdir, 'sweep.json'))
  if isinstance(sweep, dict) and isinstance(sweep.get('axes'), dict):
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


def _save(fig, path: str) -> None:
  """Writes a figure as PNG atomically: two runners finishing together never leave a mixed file."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=110)
  runlog.atomic_write_bytes(path, buf.getvalue())


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


def _other_label(axes: Sequence[str], other: tuple) -> str:
  keys = [k for k in axes if k not in ('model.cell', 'model.depth')]
  return ', '.join(f'{k.split(".")[-1]}={v}' for k, v in zip(keys, other))


# ----------------------------------------------------------------------------------------------
# Plots.


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _reference_lines(ax, facts: dict, metric: str) -> None:
  base = facts.get('baseline') or {}
  if base.get('metric') == metric and base.get('value') is not None:
    ax.axhline(base['value'], color='0.3', ls='--', lw=1, label=f'baseline {base["value"]:.3g}')
  thr = facts.get('threshold') or {}
  if thr.get('metric') == metric:
    ax.axhline(thr['value'], color='tab:green', ls=':', lw=1, label=f'threshold {thr["value"]:.3g}')


def _mean_curve(runs: Sequence[Run], split: str, metric: str):
  """Mean and 95% CI over seeds at each eval step (seeds that stopped early hold their last value)."""
  curves = [r.curve(split, metric) for r in runs if r.state != 'diverged']
  curves = [c for c in curves if c[0].size]
  if not curves:
    return None
  steps = np.unique(np.concatenate([c[0] for c in curves]))
  table = np.full((len(curves), steps.size), np.nan)
  for i, (s, v) in enumerate(curves):
    idx = np.searchsorted(s, steps, side='right') - 1   # the last value at or before each step
    ok = idx >= 0
    table[i, ok] = v[idx[ok]]
  stats = [mean_ci(table[:, j]) for j in range(steps.size)]
  mean = np.array([m for m, _, _ in stats])
  half = np.array([h for _, h, _ in stats])
  return steps, mean, half


def metric_range(metric: str) -> tuple[float, float]:
  """The values ``metric`` can take: accuracies lie in [0, 1], losses are >= 0."""
  return (0.0, 1.0) if metric.endswith('accuracy') else (0.0, math.inf)


def clipped_interval(metric: str, mean, half) -> tuple[np.ndarray, np.ndarray]:
  """``(low, high)`` of ``mean +- half`` cut to ``metric_range``: a Student-t interval over few seeds
  can reach past an accuracy of 1, which no run can."""
  low, high = metric_range(metric)
  mean, half = np.asarray(mean, np.float64), np.asarray(half, np.float64)
  return np.clip(mean - half, low, high), np.clip(mean + half, low, high)


def _error_bars(metric: str | None, means, halves) -> np.ndarray:
  """``yerr`` rows (below, above) for ``errorbar``, clipped to the metric's range if it has one."""
  means = np.asarray(means, np.float64)
  halves = np.where(np.isfinite(halves), halves, 0.0)
  if metric is None:
    return np.stack([halves, halves])
  low, high = clipped_interval(metric, means, halves)
  return np.stack([means - low, high - means])


def _log_scale(metric: str, values: Iterable[float]) -> bool:
  v = [x for x in values if x is not None and np.isfinite(x)]
  return metric in ('loss',) and bool(v) and min(v) > 0 and max(v) / min(v) > 20


def _panels(n: int, plt, width: float = 5.0, height: float = 3.4):
  cols = min(n, 3)
  rows = math.ceil(n / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
  for ax in axes.flat[n:]:
    ax.set_visible(False)
  return fig, list(axes.flat)


def plot_learning_curves(path, vs: Sequence[Variant], axes_keys, facts, metric, split='val') -> None:
  plt = _plt()
  panels = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  fig, axs = _panels(len(panels), plt)
  depths = sorted({v.depth for v in vs})
  colors = plt.get_cmap('viridis')(np.linspace(0, 0.9, max(len(depths), 1)))
  all_values = []
  for ax, (cell, other) in zip(axs, panels):
    for v in vs:
      if (v.cell, v.other) != (cell, other):
        continue
      mc = _mean_curve(v.runs, split, metric)
      if mc is None:
        continue
      steps, mean, half = mc
      all_values += list(mean)
      color = colors[depths.index(v.depth)]
      n = sum(r.state != 'diverged' for r in v.runs)
      ax.plot(steps, mean, color=color, label=f'depth {v.depth} (n={n})')
      ok = np.isfinite(half)
      low, high = clipped_interval(metric, mean[ok], half[ok])
      ax.fill_between(steps[ok], low, high, color=color, alpha=0.2, lw=0)
    _reference_lines(ax, facts, metric)
    title = cell + (f' ({_other_label(axes_keys, other)})' if other else '')
    ax.set(title=title, xlabel='step', ylabel=f'{split} {metric}')
    ax.legend(fontsize=7)
  for ax in axs[:len(panels)]:
    if _log_scale(metric, all_values):
      ax.set_yscale('log')
  fig.suptitle(f'{split} {metric}: mean over seeds, 95% CI band')
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def plot_vs_depth(path, vs: Sequence[Variant], axes_keys, facts, column: str, ylabel: str, title: str,
                  reference_metric: str | None = None, annotate_reached: bool = False) -> None:
  plt = _plt()
  others = sorted({v.other for v in vs}, key=lambda o: tuple(map(str, o)))
  fig, axs = _panels(len(others), plt)
  all_values = []
  for ax, other in zip(axs, others):
    cells = sorted({v.cell for v in vs if v.other == other})
    for cell in cells:
      line = sorted([v for v in vs if v.cell == cell and v.other == other], key=lambda v: v.depth)
      d, m, h = [], [], []
      for v in line:
        mean, half, n = v.stat(column)
        d.append(v.depth), m.append(mean), h.append(half)
        if annotate_reached and np.isfinite(mean):
          done = sum(r.state == 'finished' for r in v.runs)
          ax.annotate(f'{n}/{done}', (v.depth, mean), fontsize=7, textcoords='offset points', xytext=(3, 3))
      all_values += m
      ax.errorbar(d, m, yerr=_error_bars(reference_metric, m, h), marker='o', capsize=3, label=cell)
    if reference_metric:
      _reference_lines(ax, facts, reference_metric)
    ax.set(xlabel='depth (layers)', ylabel=ylabel, title=_other_label(axes_keys, other))
    ax.set_xticks(sorted({v.depth for v in vs}))
    ax.legend(fontsize=7)
    if reference_metric and _log_scale(reference_metric, all_values):
      ax.set_yscale('log')
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def plot_grad_norms(path, vs: Sequence[Variant], axes_keys) -> None:
  """Mean gradient norm of each recurrent layer over training (log scale), one line per depth."""
  plt = _plt()
  panels = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  fig, axs = _panels(len(panels), plt)
  for ax, (cell, other) in zip(axs, panels):
    for v in sorted((v for v in vs if (v.cell, v.other) == (cell, other)), key=lambda v: v.depth):
      per_layer = []
      for layer in range(v.depth):
        key = f'grad_norm/layer_{layer}'
        vals = [np.mean([r[key] for r in run.records if r.get('split') == 'train' and key in r])
                for run in v.runs if any(key in r for r in run.records)]
        per_layer.append(np.mean(vals) if vals else np.nan)
      ax.plot(range(v.depth), per_layer, marker='o', label=f'depth {v.depth}')
    ax.set_yscale('log')
    ax.set_xticks(range(max(v.depth for v in vs)))
    ax.set(title=cell + (f' ({_other_label(axes_keys, other)})' if other else ''), xlabel='layer (0 = input side)',
           ylabel='mean gradient norm')
    ax.legend(fontsize=7)
  fig.suptitle('per-layer gradient norm over training')
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def plot_diverged(path, vs: Sequence[Variant]) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(vs) + 1.5), 3.2))
  frac = [sum(r.state == 'diverged' for r in v.runs) / len(v.runs) for v in vs]
  ax.bar(range(len(vs)), frac, color='tab:red')
  ax.set_xticks(range(len(vs)))
  ax.set_xticklabels([v.name for v in vs], rotation=60, ha='right', fontsize=7)
  ax.set(ylim=(0, 1), ylabel='fraction of seeds diverged', title='diverged runs per variant')
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


def plot_length_generalization(path, vs: Sequence[Variant], axes_keys, facts, metric, splits) -> None:
  plt = _plt()
  panels = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  fig, axs = _panels(len(panels), plt)
  lengths = ['test', *splits]   # the training length, then the longer test splits
  xs = [1] + [int(s.split('len')[1].rstrip('x')) for s in splits]
  for ax, (cell, other) in zip(axs, panels):
    for v in sorted((v for v in vs if (v.cell, v.other) == (cell, other)), key=lambda v: v.depth):
      stats = [v.stat(f'final_{s}_{metric}') for s in lengths]
      means = [s[0] for s in stats]
      ax.errorbar(xs, means, yerr=_error_bars(metric, means, [s[1] for s in stats]),
                  marker='o', capsize=3, label=f'depth {v.depth}')
    by_split = (facts.get('info') or {}).get('baseline_by_split')
    base = facts.get('baseline') or {}
    if isinstance(by_split, dict) and base.get('metric') == metric and all(s in by_split for s in lengths):
      ax.plot(xs, [by_split[s] for s in lengths], color='0.3', ls='--', lw=1, marker='x',
              label='baseline at each length')
    else:
      _reference_lines(ax, facts, metric)
    ax.set(title=cell + (f' ({_other_label(axes_keys, other)})' if other else ''),
           xlabel='test length / training length', ylabel=f'test {metric}')
    ax.set_xticks(xs)
    ax.legend(fontsize=7)
  fig.suptitle('length generalization (final, mean and 95% CI over seeds)')
  fig.tight_layout()
  _save(fig, path)
  plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Words.


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


def statements(vs: Sequence[Variant], axes_keys, facts: dict, metric: str, mode: str, ref: str) -> list[str]:
  """The report's comparisons in words: depth within each cell, then the best variant overall."""
  out = []
  better = (lambda a, b: a < b) if mode == 'min' else (lambda a, b: a > b)
  col = f'final_{ref}_{metric}'
  base = facts.get('baseline') or {}
  thr = facts.get('threshold')
  groups = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  for cell, other in groups:
    line = sorted([v for v in vs if (v.cell, v.other) == (cell, other)], key=lambda v: v.depth)
    label = cell + (f' ({_other_label(axes_keys, other)})' if other else '')
    if len(line) < 2:
      continue
    shallow = line[0]
    a_vals = shallow.values(col)
    for deep in line[1:]:
      b_vals = deep.values(col)
      if not a_vals or not b_vals:
        continue
      ma, mb = np.mean(a_vals), np.mean(b_vals)
      d = diff_ci(b_vals, a_vals)
      rel = (mb - ma) / abs(ma) if ma else float('nan')
      verdict = 'better' if better(mb, ma) else 'worse'
      if d is None:
        clarity = 'too few seeds for a CI'
      elif d[1] > 0 or d[2] < 0:
        clarity = f'clear: 95% CI of the difference [{_fmt(d[1], 3)}, {_fmt(d[2], 3)}] excludes 0'
      else:
        clarity = f'not distinguishable: 95% CI of the difference [{_fmt(d[1], 3)}, {_fmt(d[2], 3)}] includes 0'
      out.append(f'**{label}**: depth {deep.depth} vs depth {shallow.depth}: final {ref} {metric} '
                 f'{_fmt(mb)} vs {_fmt(ma)} ({rel:+.0%}, {verdict}; {clarity}).')
      if thr:
        sa, sb = shallow.values('steps_to_threshold'), deep.values('steps_to_threshold')
        na, nb = len(shallow.runs), len(deep.runs)
        if sa and sb:
          fewer = (np.mean(sa) - np.mean(sb)) / np.mean(sa)
          d2 = diff_ci(sb, sa)
          ci = '' if d2 is None else f'; 95% CI of the difference [{_fmt(d2[1], 3)}, {_fmt(d2[2], 3)}] steps'
          out.append(f'  depth {deep.depth} reached the threshold ({metric} {"<=" if thr["mode"] == "min" else ">="} '
                     f'{_fmt(thr["value"])}) in {abs(fewer):.0%} {"fewer" if fewer >= 0 else "more"} steps than depth '
                     f'{shallow.depth} (mean {np.mean(sb):.0f} vs {np.mean(sa):.0f}; {len(sb)}/{nb} vs '
                     f'{len(sa)}/{na} seeds reached it{ci}).')
        elif sa or sb:
          out.append(f'  threshold reached by {len(sb)}/{nb} seeds at depth {deep.depth} and {len(sa)}/{na} '
                     f'at depth {shallow.depth}.')
      ra, rb = shallow.values('steps_per_sec'), deep.values('steps_per_sec')
      if ra and rb:
        out.append(f'  speed: depth {deep.depth} trains at {np.mean(rb) / np.mean(ra):.2f}x the step rate of '
                   f'depth {shallow.depth}.')
  # Cells side by side at each depth: "for which cell".
  for depth, other in sorted({(v.depth, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1])))):
    row = [v for v in vs if (v.depth, v.other) == (depth, other) and v.values(col)]
    if len({v.cell for v in row}) < 2:
      continue
    row.sort(key=lambda v: np.mean(v.values(col)), reverse=mode == 'max')
    top = row[0]
    below = [v.cell for v in row[1:] if (d := diff_ci(v.values(col), top.values(col))) is not None
             and not d[1] <= 0 <= d[2]]
    label = f'depth {depth}' + (f' ({_other_label(axes_keys, other)})' if other else '')
    ranking = ' > '.join(f'{v.cell} {_fmt(np.mean(v.values(col)), 3)}' for v in row)
    out.append(f'**Cells at {label}** (final {ref} {metric}, best first): {ranking}'
               + (f'; clearly behind {top.cell}: {", ".join(below)}.' if below else
                  f'; none clearly behind {top.cell}.'))
  ranked = [(v, v.stat(col)) for v in vs if v.stat(col)[2] > 0]
  if ranked:
    best, (m, h, n) = min(ranked, key=lambda t: t[1][0] if mode == 'min' else -t[1][0])
    out.append(f'**Best variant** by final {ref} {metric}: {best.name} with {_ci(m, h, n)}.')
    rivals = [v for v, _ in ranked if v is not best]
    if rivals:
      same = [v.name for v in rivals if (d := diff_ci(v.values(col), best.values(col))) is not None
              and d[1] <= 0 <= d[2]]
      if same:
        out.append(f'  Not clearly different from it (95% CI of the difference includes 0): {", ".join(same)}.')
  if base.get('metric') == metric and ranked:
    beat = [v.name for v, (m, _, _) in ranked if better(m, base['value'])]
    out.append(f'{len(beat)} of {len(ranked)} variants beat the baseline ({base.get("description", "")}: '
               f'{_fmt(base["value"])}) on mean final {ref} {metric}.')
  div = [(v.name, sum(r.state == 'diverged' for r in v.runs), len(v.runs)) for v in vs]
  div = [d for d in div if d[1]]
  if div:
    out.append('Diverged: ' + '; '.join(f'{n}: {k}/{t} seeds' for n, k, t in div) + '.')
  return out


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

  plots = {}
  plots['learning_curves.png'] = 'Validation curves'
  plot_learning_curves(os.path.join(workdir, 'learning_curves.png'), vs, axes, facts, metric)
  plots['final_vs_depth.png'] = f'Final {ref} {metric} vs depth'
  plot_vs_depth(os.path.join(workdir, 'final_vs_depth.png'), vs, axes, facts, f'final_{ref}_{metric}',
                f'final {ref} {metric}', f'final {ref} {metric} vs depth (mean, 95% CI over seeds)',
                reference_metric=metric)
  if facts.get('threshold') and any(r.row.get('steps_to_threshold') is not None for r in runs):
    plots['convergence_vs_depth.png'] = 'Steps to the task threshold vs depth'
    plot_vs_depth(os.path.join(workdir, 'convergence_vs_depth.png'), vs, axes, facts, 'steps_to_threshold',
                  'steps to threshold', 'steps to reach the threshold (seeds that reached / finished)',
                  annotate_reached=True)
  else:
    plots['convergence_vs_depth.png'] = f'Area under the validation curve vs depth (mean val {metric} over training)'
    plot_vs_depth(os.path.join(workdir, 'convergence_vs_depth.png'), vs, axes, facts, f'val_{metric}_auc',
                  f'mean val {metric} over training', f'convergence: area under the val {metric} curve',
                  reference_metric=metric)
  plots['grad_norms.png'] = 'Per-layer gradient norms'
  plot_grad_norms(os.path.join(workdir, 'grad_norms.png'), vs, axes)
  plots['diverged.png'] = 'Diverged runs per variant'
  plot_diverged(os.path.join(workdir, 'diverged.png'), vs)
  if len_splits:
    plots['length_generalization.png'] = 'Length generalization'
    plot_length_generalization(os.path.join(workdir, 'length_generalization.png'), vs, axes, facts, metric,
                               len_splits)

  md = _markdown(workdir, runs, vs, axes, facts, metric, mode, ref, len_splits, plots)
  path = os.path.join(workdir, REPORT_FILE)
  runlog.atomic_write_text(path, md)
  return path


def _markdown(workdir, runs, vs, axes, facts, metric, mode, ref, len_splits, plots) -> str:
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
  lines += ['## Findings', '']
  found = statements(vs, axes, facts, metric, mode, ref)
  lines += ([f'- {s}' if not s.startswith('  ') else f'  - {s.strip()}' for s in found]
            or ['- (not enough finished runs to compare)'])
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
  for file, title in plots.items():
    lines += [f'### {title}', '', f'![{title}]({file})', '']
  lines += ['## How to read this', '',
            '- A CI is a Student-t 95% interval over seeds; with one seed there is none. A difference is '
            '"clear" when the Welch 95% interval of the difference of means excludes zero. The plots cut '
            'intervals to the values a metric can take (accuracy in [0, 1], loss >= 0); the tables do not.',
            '- Steps to threshold: the first evaluation at which the validation metric reached the task '
            'threshold; seeds that never reached it are left out of the mean and counted in "k/n reached".',
            f'- AUC: the mean validation {metric} over training (a faster-converging variant has a '
            f'{"lower" if mode == "min" else "higher"} value).',
            f'- Generalization gap: final {ref} minus final train {metric} (sign flipped for accuracy), so '
            'positive means worse on held-out data.',
            '- Diverged runs (NaN/Inf loss, gradients or parameters) are excluded from means and counted apart.', '']
  return '\n'.join(lines)


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
