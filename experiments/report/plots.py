"""The report's figures (matplotlib, Agg backend), each written atomically as a PNG.

* ``learning_curves.png``: validation metric vs step, one panel per cell, one line per depth (mean
  over seeds and its Student-t 95% band), the task baseline and threshold drawn in;
* ``final_vs_depth.png``, ``convergence_vs_depth.png``: final metric and steps to the threshold (or
  the area under the validation curve) vs depth, one line per cell, 95% intervals;
* ``grad_norms.png``: mean gradient norm per layer (the vanishing/exploding diagnostic);
* ``diverged.png``: the fraction of diverged runs per variant;
* ``length_generalization.png`` where the task has longer test splits;
* ``depth_effects_params.png``, ``depth_effects_width.png`` (a study's report): deep minus shallow, cell
  x task, signed so that positive means depth helps (grey: not tested).

Intervals come from ``experiments.report.stats`` (Student-t over seeds) and are cut to the values a metric
can take. The functions read variants (``experiments.report.runs.Variant``: ``cell``, ``depth``,
``other``, ``runs``, ``name``, ``stat(column)``) and never compute a verdict.
"""

from __future__ import annotations

import io
import math
import os
from typing import Iterable, Sequence

import numpy as np

from deeprnn_jax.training import runlog
from deeprnn_jax._extras import require
from experiments.report.stats import clipped_interval, mean_ci


def save(fig, path: str) -> None:
  """Writes a figure as PNG atomically: two runners finishing together never leave a mixed file."""
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=110)
  runlog.atomic_write_bytes(path, buf.getvalue())


def other_label(axes: Sequence[str], other: tuple) -> str:
  """``'width=8, lr=0.01'``: the values of the swept axes other than cell and depth."""
  keys = [k for k in axes if k not in ('model.cell', 'model.depth')]
  return ', '.join(f'{k.split(".")[-1]}={v}' for k, v in zip(keys, other))


def _plt():
  matplotlib = require('matplotlib', 'experiments', "the report's plots")
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


def _mean_curve(runs: Sequence, split: str, metric: str):
  """Mean and 95% CI over seeds at each eval step (seeds that stopped early hold their last value)."""
  curves = [r.curve(split, metric) for r in runs if r.state != 'diverged']
  curves = [c for c in curves if c[0].size]
  if not curves:
    return None
  steps = np.unique(np.concatenate([c[0] for c in curves]))
  table = np.full((len(curves), steps.size), np.nan)
  for i, (s, v) in enumerate(curves):
    idx = np.searchsorted(s, steps, side='right') - 1  # the last value at or before each step
    ok = idx >= 0
    table[i, ok] = v[idx[ok]]
  per_step = [mean_ci(table[:, j]) for j in range(steps.size)]
  mean = np.array([m for m, _, _ in per_step])
  half = np.array([h for _, h, _ in per_step])
  return steps, mean, half


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
  return metric in ('loss', 'perplexity') and bool(v) and min(v) > 0 and max(v) / min(v) > 20


def _panels(n: int, plt, width: float = 5.0, height: float = 3.4):
  cols = min(n, 3)
  rows = math.ceil(n / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
  for ax in axes.flat[n:]:
    ax.set_visible(False)
  return fig, list(axes.flat)


def plot_learning_curves(path, vs: Sequence, axes_keys, facts, metric, split='val') -> None:
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
    title = cell + (f' ({other_label(axes_keys, other)})' if other else '')
    ax.set(title=title, xlabel='step', ylabel=f'{split} {metric}')
    ax.legend(fontsize=7)
  for ax in axs[: len(panels)]:
    if _log_scale(metric, all_values):
      ax.set_yscale('log')
  fig.suptitle(f'{split} {metric}: mean over seeds, 95% CI band')
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)


def plot_vs_depth(
  path,
  vs: Sequence,
  axes_keys,
  facts,
  column: str,
  ylabel: str,
  title: str,
  reference_metric: str | None = None,
  annotate_reached: bool = False,
) -> None:
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
    ax.set(xlabel='depth (layers)', ylabel=ylabel, title=other_label(axes_keys, other))
    ax.set_xticks(sorted({v.depth for v in vs}))
    ax.legend(fontsize=7)
    if reference_metric and _log_scale(reference_metric, all_values):
      ax.set_yscale('log')
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)


def plot_grad_norms(path, vs: Sequence, axes_keys) -> None:
  """Mean gradient norm of each recurrent layer over training (log scale), one line per depth."""
  plt = _plt()
  panels = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  fig, axs = _panels(len(panels), plt)
  for ax, (cell, other) in zip(axs, panels):
    for v in sorted((v for v in vs if (v.cell, v.other) == (cell, other)), key=lambda v: v.depth):
      per_layer = []
      for layer in range(v.depth):
        key = f'grad_norm/layer_{layer}'
        vals = [
          np.mean([r[key] for r in run.records if r.get('split') == 'train' and key in r])
          for run in v.runs
          if any(key in r for r in run.records)
        ]
        per_layer.append(np.mean(vals) if vals else np.nan)
      ax.plot(range(v.depth), per_layer, marker='o', label=f'depth {v.depth}')
    ax.set_yscale('log')
    ax.set_xticks(range(max(v.depth for v in vs)))
    ax.set(
      title=cell + (f' ({other_label(axes_keys, other)})' if other else ''),
      xlabel='layer (0 = input side)',
      ylabel='mean gradient norm',
    )
    ax.legend(fontsize=7)
  fig.suptitle('per-layer gradient norm over training')
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)


def plot_diverged(path, vs: Sequence) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(vs) + 1.5), 3.2))
  frac = [sum(r.state == 'diverged' for r in v.runs) / len(v.runs) for v in vs]
  ax.bar(range(len(vs)), frac, color='tab:red')
  ax.set_xticks(range(len(vs)))
  ax.set_xticklabels([v.name for v in vs], rotation=60, ha='right', fontsize=7)
  ax.set(ylim=(0, 1), ylabel='fraction of seeds diverged', title='diverged runs per variant')
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)


def plot_length_generalization(path, vs: Sequence, axes_keys, facts, metric, splits) -> None:
  plt = _plt()
  panels = sorted({(v.cell, v.other) for v in vs}, key=lambda p: (p[0], tuple(map(str, p[1]))))
  fig, axs = _panels(len(panels), plt)
  lengths = ['test', *splits]  # the training length, then the longer test splits
  xs = [1] + [int(s.split('len')[1].rstrip('x')) for s in splits]
  for ax, (cell, other) in zip(axs, panels):
    for v in sorted((v for v in vs if (v.cell, v.other) == (cell, other)), key=lambda v: v.depth):
      per_split = [v.stat(f'final_{s}_{metric}') for s in lengths]
      means = [s[0] for s in per_split]
      ax.errorbar(
        xs,
        means,
        yerr=_error_bars(metric, means, [s[1] for s in per_split]),
        marker='o',
        capsize=3,
        label=f'depth {v.depth}',
      )
    by_split = (facts.get('info') or {}).get('baseline_by_split')
    base = facts.get('baseline') or {}
    if isinstance(by_split, dict) and base.get('metric') == metric and all(s in by_split for s in lengths):
      ax.plot(
        xs, [by_split[s] for s in lengths], color='0.3', ls='--', lw=1, marker='x', label='baseline at each length'
      )
    else:
      _reference_lines(ax, facts, metric)
    ax.set(
      title=cell + (f' ({other_label(axes_keys, other)})' if other else ''),
      xlabel='test length / training length',
      ylabel=f'test {metric}',
    )
    ax.set_xticks(xs)
    ax.legend(fontsize=7)
  fig.suptitle('length generalization (final, mean and 95% CI over seeds)')
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)


def write_all(
  workdir: str, vs: Sequence, axes_keys, facts: dict, metric: str, ref: str, len_splits: Sequence[str]
) -> dict[str, str]:
  """Writes every figure of a report into ``workdir``; returns ``{file name: title}`` in report order."""
  any_reached = any(r.row.get('steps_to_threshold') is not None for v in vs for r in v.runs)
  plots = {}
  plots['learning_curves.png'] = 'Validation curves'
  plot_learning_curves(os.path.join(workdir, 'learning_curves.png'), vs, axes_keys, facts, metric)
  plots['final_vs_depth.png'] = f'Final {ref} {metric} vs depth'
  plot_vs_depth(
    os.path.join(workdir, 'final_vs_depth.png'),
    vs,
    axes_keys,
    facts,
    f'final_{ref}_{metric}',
    f'final {ref} {metric}',
    f'final {ref} {metric} vs depth (mean, 95% CI over seeds)',
    reference_metric=metric,
  )
  if facts.get('threshold') and any_reached:
    plots['convergence_vs_depth.png'] = 'Steps to the task threshold vs depth'
    plot_vs_depth(
      os.path.join(workdir, 'convergence_vs_depth.png'),
      vs,
      axes_keys,
      facts,
      'steps_to_threshold',
      'steps to threshold',
      'steps to reach the threshold (seeds that reached / finished)',
      annotate_reached=True,
    )
  else:
    plots['convergence_vs_depth.png'] = f'Area under the validation curve vs depth (mean val {metric} over training)'
    plot_vs_depth(
      os.path.join(workdir, 'convergence_vs_depth.png'),
      vs,
      axes_keys,
      facts,
      f'val_{metric}_auc',
      f'mean val {metric} over training',
      f'convergence: area under the val {metric} curve',
      reference_metric=metric,
    )
  plots['grad_norms.png'] = 'Per-layer gradient norms'
  plot_grad_norms(os.path.join(workdir, 'grad_norms.png'), vs, axes_keys)
  plots['diverged.png'] = 'Diverged runs per variant'
  plot_diverged(os.path.join(workdir, 'diverged.png'), vs)
  if len_splits:
    plots['length_generalization.png'] = 'Length generalization'
    plot_length_generalization(
      os.path.join(workdir, 'length_generalization.png'), vs, axes_keys, facts, metric, len_splits
    )
  return plots


def plot_depth_effects(path: str, panels: Sequence[dict], cut: float = 0.5) -> None:
  """The study's depth-effect heatmap, one panel per basis (``panels``: ``title``, ``rows`` (cell x depth),
  ``columns`` (tasks), ``values`` (rows x columns: the signed effect over the shallow mean, NaN where
  untested), ``text`` (the effect in the task's units, ``*`` clear, ``?`` fragile)). Colour: blue where depth
  helps, red where it hurts, cut at ``±cut``; grey where untested. Only clear effects are drawn at full
  strength: the others are faded and hatched, so a reader cannot take an indistinguishable difference for
  a finding."""
  plt = _plt()
  width = max(4.0, 1.6 * max(len(p['columns']) for p in panels) + 2.5)
  heights = [0.45 * len(p['rows']) + 1.6 for p in panels]
  fig, axs = plt.subplots(len(panels), 1, figsize=(width, sum(heights)), squeeze=False, height_ratios=heights)
  for ax, p in zip(axs[:, 0], panels):
    values = np.asarray(p['values'], float)
    cmap = plt.get_cmap('RdBu').with_extremes(bad='0.8')  # untested: grey, apart from a zero effect's white
    clear = np.array([[bool(t) and t.endswith('*') for t in row] for row in p['text']], bool).reshape(values.shape)
    alpha = np.where(clear | ~np.isfinite(values), 1.0, 0.3)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-cut, vmax=cut, aspect='auto', alpha=alpha)
    for i, j in zip(*np.nonzero(~clear & np.isfinite(values))):
      ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch='///', edgecolor='0.6', linewidth=0))
    ax.set_xticks(range(len(p['columns'])), p['columns'], rotation=20, ha='right', fontsize=8)
    ax.set_yticks(range(len(p['rows'])), p['rows'], fontsize=8)
    for i, row in enumerate(p['text']):
      for j, t in enumerate(row):
        if t:
          dark = clear[i, j] and abs(values[i, j]) > 0.6 * cut
          weight = 'bold' if t.endswith('*') else 'normal'
          ax.text(j, i, t, ha='center', va='center', fontsize=7, fontweight=weight, color='w' if dark else 'k')
    ax.set_title(
      f'{p["title"]}: depth effect\n(positive = depth helps; * clear, ? fragile; faded, hatched: not clear)', fontsize=9
    )
    fig.colorbar(im, ax=ax, label='effect / shallow mean')
  fig.tight_layout()
  save(fig, path)
  plt.close(fig)
