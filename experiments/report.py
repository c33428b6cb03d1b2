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

The metric: the report ranks and compares on the metric the field reports for the task
(``main_metric``): entity F1 for tagging, BLEU for translation and transduction, WER / CER for
speech to text, perplexity / bits per character for language models, accuracy for classification,
not the training loss; ``report.metric`` in the sweep's config overrides it. Its direction (lower
or higher is better) is the task's ``metric_modes``. A variant beats the task's baseline when its
95% interval lies wholly on the better side of the baseline value (``stats.beats``), not its mean.

Fragility: every verdict (each comparison of the family, the best variant, the best cell at each
depth, each "beats the baseline", each published-reference agreement) is recomputed with each
finished run left out in turn (``stats.leave_one_out``, which says why that resampling); a verdict
that changes is marked *fragile* in report.md, with the run whose absence changes it, and listed in
``verdicts.csv`` (one row per verdict) and in summary.csv's ``fragile_without_this_run`` column.

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
from typing import Any, Collection, Sequence

import numpy as np

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from experiments import plots
from experiments import stats

# Public names report.py has always had; the statistics now live in experiments.stats.
from experiments.stats import clipped_interval, diff_ci, mean_ci, metric_range  # noqa: F401

REPORT_FILE = 'report.md'
SUMMARY_FILE = 'summary.csv'
VERDICTS_FILE = 'verdicts.csv'
SWEEP_FILE = 'sweep.json'
CORRECTION = 'holm'  # the report's family correction (see experiments.stats for why Holm)
_CORRECTION_NAMES = {'holm': 'Holm', 'bh': 'Benjamini-Hochberg'}
_IGNORED_TRAIN_KEYS = ('steps_per_sec', 'learning_rate')
# The metrics the field reports, most specific first (``main_metric``): tagging (CoNLL entity F1),
# translation / transduction (BLEU; set report.metric='decoded_exact_match' for an algorithmic
# transduction), speech to text (word, then character error rate), language models (perplexity per
# word, bits per character). Classification tasks state their baseline in accuracy, which the
# baseline rule picks; regression and density tasks (adding, polyphonic music) in their loss.
FIELD_METRICS = ('entity_f1', 'bleu', 'decoded_exact_match', 'wer', 'cer', 'perplexity', 'bpc')
# Lower is better for these when the task's metric_modes do not say (they always should).
_MIN_METRICS = ('loss', 'nll', 'mse', 'wer', 'cer', 'per', 'perplexity', 'bpc')
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
    pts = [
      (r['step'], r[metric])
      for r in self.records
      if r.get('split') == split and isinstance(r.get(metric), (int, float))
    ]
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
  return [k for k in keys if k != 'train.seed' and len({repr(f.get(k)) for f in flats}) > 1]


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


def summarize(run: Run, axes: Sequence[str], facts: dict, metric: str | None = None) -> dict:
  """The summary.csv row of one run, on ``metric`` (default: ``main_metric(facts)``)."""
  c = run.config
  main, mode = main_metric(facts) if metric is None else (metric, metric_mode(facts, metric))
  row = {
    'run_id': run.run_id,
    'cell': c['model']['cell'],
    'depth': c['model']['depth'],
    'width': c['model']['width'],
    'top_width': c['model'].get('top_width'),
    'seed': c['train']['seed'],
    'params': run.status.get('params'),
    'status': run.state,
    'steps': run.status.get('step'),
    'diverged_step': run.status.get('diverged_step'),
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
  # "solved" is the task's threshold on its own metric, whichever metric the report ranks on
  thr_steps, thr_values = run.curve('val', thr['metric']) if thr else (steps, values)
  if thr and thr_values.size:
    hit = thr_values <= thr['value'] if thr['mode'] == 'min' else thr_values >= thr['value']
    reached = int(thr_steps[np.argmax(hit)]) if hit.any() else None
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


def main_metric(facts: dict, recorded: Collection[str] | None = None, override: str | None = None) -> tuple[str, str]:
  """The metric the report ranks and compares on, and its direction (``'min'`` or ``'max'``).

  The first of: ``override`` (``report.metric``); the baseline's metric when it is one of
  ``FIELD_METRICS`` (the task states its baseline in the field's metric); the first of
  ``FIELD_METRICS`` the task reports (``metric_modes``); the baseline's metric; the threshold's; the
  loss. With ``recorded`` (the metrics the runs' evaluations hold) only a recorded metric is taken,
  so a task whose score metrics were not evaluated falls back to the next; an ``override`` that is
  not recorded is a ValueError. The direction is the task's ``metric_modes`` entry.
  """
  modes = facts.get('metric_modes') or {}
  base = (facts.get('baseline') or {}).get('metric')
  thr = facts.get('threshold') or {}
  if override:
    if recorded is not None and override not in recorded:
      raise ValueError(
        f'report.metric {override!r} is not a metric these runs record; set it to one of '
        f"{sorted(recorded)} (or leave it unset for the task's own)"
      )
    metric = override
  else:
    candidates = ([base] if base in FIELD_METRICS else []) + [m for m in FIELD_METRICS if m in modes]
    candidates += [base, thr.get('metric'), 'loss']
    metric = next((m for m in candidates if m and (recorded is None or m in recorded)), 'loss')
  return metric, metric_mode(facts, metric)


def metric_mode(facts: dict, metric: str) -> str:
  """``'min'`` or ``'max'`` for ``metric``: the task's ``metric_modes``, else the threshold's mode if it
  is on this metric, else ``'min'`` for losses and error rates and ``'max'`` for anything else."""
  mode = (facts.get('metric_modes') or {}).get(metric)
  thr = facts.get('threshold') or {}
  if mode is None and thr.get('metric') == metric:
    mode = thr.get('mode')
  if mode is None:
    mode = 'min' if metric in _MIN_METRICS or metric.endswith('loss') else 'max'
  return mode


def recorded_metrics(runs: Sequence[Run]) -> set[str]:
  """The metrics the runs' evaluations (every split but train) record."""
  return {
    k
    for r in runs
    for rec in r.records
    if rec.get('split') not in (None, 'train')
    for k, v in rec.items()
    if k not in ('step', 'split') and isinstance(v, (int, float))
  }


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
  other: tuple  # values of the axes other than cell and depth
  runs: list[Run]
  name: str = ''  # the run ids without the seed (default: from the first run)

  def __post_init__(self):
    if not self.name and self.runs:
      self.name = self.runs[0].run_id.rsplit('-s', 1)[0]

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
  for v in groups.values():
    v.__post_init__()  # named after its runs, now that it has them
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


def comparison_keys(vs: Sequence[Variant], facts: dict, metric: str, mode: str, ref: str) -> list[tuple[str, str, str]]:
  """The family's pairs ``(column, a, b)``: each deeper variant vs the shallowest of its line (final
  metric, and steps to the threshold where the task has one), each cell vs the best cell at a depth,
  the best variant vs each other one."""
  col = f'final_{ref}_{metric}'
  keys: list[tuple[str, str, str]] = []

  def add(column, a, b):
    if (column, b.name, a.name) not in keys and (column, a.name, b.name) not in keys:
      keys.append((column, a.name, b.name))

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
  ranked = _ranked(vs, col, mode)
  if len(ranked) > 1:
    out[('best',)] = ranked[0].name
  for depth, other, row in _cell_rows(vs, col, mode):
    out[('cells', depth, other)] = row[0].cell
  base = facts.get('baseline') or {}
  if base.get('metric') == metric and base.get('value') is not None:
    for v in vs:
      if v.values(col):
        out[('baseline', v.name)] = stats.beats(v.values(col), float(base['value']), mode)
  for label, entry in _valid_entries(entries).items():
    for v in _matching(vs, label, entry):
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
  numbers = f"difference {_fmt(w.diff, 3)}, 95% CI {_interval(w.low, w.high)}, Hedges' g {_fmt(c.g, 2)}"
  if c.clear:
    return f'clear: {name}-adjusted p = {_fmt(c.p_adjusted, 2)} over {c.m} tests; {numbers}'
  alone = f' (uncorrected p = {_fmt(w.pvalue, 2)}: alone, its 95% CI would exclude 0)' if c.clear_uncorrected else ''
  need = (
    ''
    if c.seeds is None
    else f'; about {_seeds(c.seeds)} seeds per variant would resolve a difference this large at this spread'
  )
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
      out.append(
        f'**{label}**: depth {deep.depth} vs depth {shallow.depth} ({depth_basis(shallow, deep)}): '
        f'final {ref} {metric} {_fmt(mb)} vs {_fmt(ma)} ({rel:+.0%}, {direction}; '
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
            f'{_fmt(thr["value"])}) in {abs(fewer):.0%} {"fewer" if fewer >= 0 else "more"} steps than depth '
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
  for depth, other, row in _cell_rows(vs, col, mode):
    top = row[0]
    below = [
      v.cell + (' (fragile)' if frag.fragile(cmp_key(col, v, top)) else '')
      for v in row[1:]
      if (c := family.get(col, v, top)) is not None and c.clear
    ]
    label = f'depth {depth}' + (f' ({plots.other_label(axes_keys, other)})' if other else '')
    ranking = ' > '.join(f'{v.cell} {_fmt(np.mean(v.values(col)), 3)}' for v in row)
    out.append(
      f'**Cells at {label}** (final {ref} {metric}, best first): {ranking}'
      + (f'; clearly behind {top.cell}: {", ".join(below)}' if below else f'; none clearly behind {top.cell}')
      + f'{mark(("cells", depth, other))}.'
    )
  ranked = _ranked(vs, col, mode)
  if ranked:
    best = ranked[0]
    out.append(f'**Best variant** by final {ref} {metric}: {best.name} with {_ci(*best.stat(col))}{mark(("best",))}.')
    same = [
      v.name + (' (fragile)' if frag.fragile(cmp_key(col, v, best)) else '')
      for v in ranked[1:]
      if (c := family.get(col, v, best)) is not None and not c.clear
    ]
    if same:
      out.append(
        f"  Not clearly different from it (after {_CORRECTION_NAMES[family.method]}'s correction): {', '.join(same)}."
      )
  if base.get('metric') == metric and ranked:
    beat = [v for v in ranked if stats.beats(v.values(col), base['value'], mode)]
    mean_only = [v.name for v in ranked if all(v is not b for b in beat) and better(v.stat(col)[0], base['value'])]
    names = ', '.join(
      v.name + (f' **[{frag.note(("baseline", v.name))}]**' if frag.fragile(('baseline', v.name)) else '') for v in beat
    )
    out.append(
      f'{len(beat)} of {len(ranked)} variants beat the baseline ({base.get("description", "")}: '
      f'{_fmt(base["value"])}) on final {ref} {metric}, their 95% CI wholly '
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


def comparison_table(family: Family, frag: Fragility | None = None) -> list[str]:
  """Markdown rows: every comparison of the family with every number behind its verdict (and, with
  ``frag``, whether the verdict survives leaving out any one seed)."""
  if not family.m:
    return []
  name = _CORRECTION_NAMES[family.method]
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
      f'| {a} − {b} | {column} | {_fmt(w.diff, 3)} | {_interval(w.low, w.high)} | '
      f'{_interval(*c.corrected)} at {c.level:.2%} | {_fmt(c.g, 2)} | {_fmt(w.pvalue, 2)} | '
      f'{_fmt(c.p_adjusted, 2)} | {"clear" if c.clear else "not distinguishable"} | '
      f'{_seeds(c.seeds)} |{loo}'
    )
  return lines


# ----------------------------------------------------------------------------------------------
# Published values beside ours.


def _report_setting(workdir: str, runs: Sequence[Run], key: str) -> Any:
  """``report.<key>`` of the sweep's config (sweep.json), else of the first run config that sets it."""
  configs = [_read_sweep(workdir).get('config')] + [r.config for r in runs]
  for c in configs:
    value = ((c or {}).get('report') or {}).get(key) if isinstance(c, dict) else None
    if value:
      return value
  return None


def published(workdir: str, runs: Sequence[Run]) -> dict:
  """``report.published`` of the sweep's config (sweep.json), else of a run's config; ``{}`` if none."""
  entries = _report_setting(workdir, runs, 'published')
  return entries if isinstance(entries, dict) else {}


def _matching(vs: Sequence[Variant], label: str, entry: dict) -> list[Variant]:
  cell, depth = entry.get('cell') or label, entry.get('depth')
  return [v for v in vs if cell in ('*', v.cell) and (depth is None or v.depth == depth)]


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
  for label, entry in _valid_entries(entries).items():
    source = entry.get('source', '') + (f' ({entry["note"]})' if entry.get('note') else '')
    matched = _matching(vs, label, entry)
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


def _valid_entries(entries: dict) -> dict:
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
    claim = f'{split} {m} {_fmt(value)}'
    ours = f'{split} {m} {_ci(mean, half, n)}'
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
    f'{k}/{fin} seeds reached {thr.get("metric")} {sign} {_fmt(thr.get("value"))}; final {split} {m} '
    f'{_ci(mean, half, n)}' + (f' (baseline {_fmt(base.get("value"))})' if base.get('metric') == m else '')
  )
  want = fin if solved else 0
  if not fin:
    return 'n/a', claim, ours, 'n/a (no finished seed)'
  if k == want:
    return 'yes', claim, ours, 'yes'
  if k == fin - want:
    return 'no', claim, ours, 'no'
  return 'partly', claim, ours, f'partly ({k}/{fin})'


# ----------------------------------------------------------------------------------------------
# The report.


def write_report(workdir: str) -> str:
  """Writes summary.csv, the plots and report.md into ``workdir``; returns the report's path."""
  runs = load_runs(workdir)
  if not runs:
    raise FileNotFoundError(f'no run folders (with a config.json) under {workdir!r}')
  axes = _axes(workdir, runs)
  facts = _task_facts(runs)
  metric, mode = main_metric(facts, recorded_metrics(runs), _report_setting(workdir, runs, 'metric'))
  for r in runs:
    r.row = summarize(r, axes, facts, metric)
  vs = variants(runs, axes)
  splits = facts.get('splits') or []
  ref = 'test' if 'test' in splits or any(f'final_test_{metric}' in r.row for r in runs) else 'val'
  len_splits = sorted((s for s in splits if s.startswith('test_len')), key=lambda s: int(s[8:].rstrip('x')))
  keys = comparison_keys(vs, facts, metric, mode, ref)
  family = comparisons(vs, facts, metric, mode, ref, keys=keys)
  entries = published(workdir, runs)
  frag = fragility(vs, facts, metric, mode, ref, keys, entries)
  for r in runs:
    r.row['fragile_without_this_run'] = '; '.join(verdict_label(k) for k in frag.flipped_by(r)) or None
  write_csv(os.path.join(workdir, SUMMARY_FILE), [r.row for r in runs])
  write_csv(os.path.join(workdir, VERDICTS_FILE), verdict_rows(frag))
  figures = plots.write_all(workdir, vs, axes, facts, metric, ref, len_splits)
  md = _markdown(workdir, runs, vs, axes, facts, metric, mode, ref, len_splits, figures, family, frag, entries)
  path = os.path.join(workdir, REPORT_FILE)
  runlog.atomic_write_text(path, md)
  return path


def _markdown(workdir, runs, vs, axes, facts, metric, mode, ref, len_splits, figures, family, frag, entries) -> str:
  name = os.path.basename(os.path.abspath(workdir))
  states = {}
  for r in runs:
    states[r.state] = states.get(r.state, 0) + 1
  lines = [
    f'# Sweep report: {name}',
    '',
    f'{len(runs)} runs in {len(vs)} variants: '
    + ', '.join(f'{n} {s}' for s, n in sorted(states.items()))
    + f'. Written {time.strftime("%Y-%m-%d %H:%M")}.',
    '',
  ]
  if facts:
    base = facts.get('baseline') or {}
    thr = facts.get('threshold')
    chosen = (
      'set by `report.metric`'
      if _report_setting(workdir, runs, 'metric')
      else "the task's own metric (`report.metric` overrides it)"
    )
    lines += [
      f'**Task** `{facts.get("name")}` (sequence length {facts.get("seq_len")}); compared on '
      f'{ref} {metric} ({"lower" if mode == "min" else "higher"} is better; {chosen}).',
      f'Baseline: {base.get("metric")} = {_fmt(base.get("value"))} ({base.get("description", "")}).',
    ]
    if thr:
      sign = '<=' if thr['mode'] == 'min' else '>='
      lines.append(f'Threshold ("solved"): {thr["metric"]} {sign} {_fmt(thr["value"])} on val.')
    lines.append('')
  if axes:
    lines += ['Swept: ' + ', '.join(f'`{a}`' for a in axes) + '.', '']
  if len({v.depth for v in vs}) > 1:
    budgets = {(r.config.get('sweep') or {}).get('param_budget') or 0 for r in runs}
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
  lines += ['## Findings', '']
  fragile = sum(frag.fragile(k) for k in frag.verdicts)
  if frag.verdicts:
    lines += [
      f'Each verdict was recomputed with each of the {frag.runs} finished runs left out in turn: '
      f'{fragile} of {len(frag.verdicts)} change when one run is left out and are marked **fragile** '
      f'(with the run whose absence changes it); state only the others as findings. '
      f'All verdicts: `{VERDICTS_FILE}`.',
      '',
    ]
  found = statements(vs, axes, facts, metric, mode, ref, family, frag)
  lines += [f'- {s}' if not s.startswith('  ') else f'  - {s.strip()}' for s in found] or [
    '- (not enough finished runs to compare)'
  ]
  table = comparison_table(family, frag)
  if table:
    lines += [
      '',
      '## Comparisons',
      '',
      f"The {family.m} tests this report makes, one family: Welch's t-test per pair (scipy.stats.ttest_ind, "
      f'equal_var=False), {_CORRECTION_NAMES[family.method]}\'s correction over all {family.m}; "clear" means '
      f'the {_CORRECTION_NAMES[family.method]}-adjusted p is at most {stats.ALPHA}. Seeds for 80% power: per '
      f'variant, at level {stats.ALPHA}/{family.m}, if the observed difference and spread were the truth.',
      '',
      *table,
    ]
  refs = published_rows(vs, entries, facts, metric, ref, frag)
  if refs:
    lines += [
      '',
      '## Published reference',
      '',
      "The values the sweep's config cites (`report.published`), beside ours. A published number agrees "
      'when it lies inside our 95% interval; a published "solves" / "stays at the baseline" agrees when '
      'every / no finished seed of ours reached the task threshold.',
      '',
      *refs,
    ]
  lines += [
    '',
    '## Variants',
    '',
    'Mean ± 95% CI half-width over finished seeds (n). Steps/s and compile seconds are per '
    'program: the seeds of a variant train together in one.',
    '',
  ]
  cols = [
    ('params', 'params'),
    (f'final_{ref}_{metric}', f'final {ref} {metric}'),
    (f'best_val_{metric}', f'best val {metric}'),
    ('steps_to_threshold', 'steps to threshold'),
    (f'val_{metric}_auc', f'val {metric} AUC'),
    ('generalization_gap', 'gen. gap'),
  ]
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
      elif col in ('steps_per_sec', 'compile_seconds'):  # one value per seed group: no spread to show
        cells.append(_fmt(v.stat(col)[0], 3))
      elif col == 'steps_to_threshold':
        m, h, n = v.stat(col)
        cells.append(f'{_ci(m, h, n)}, {n}/{fin} reached' if n else f'0/{fin} reached')
      else:
        cells.append(_ci(*v.stat(col)))
    lines.append(f'| {v.name} | {len(v.runs)} | {div} | ' + ' | '.join(cells) + ' |')
  lines += [
    '',
    'One row per run: `summary.csv`. Curves per run: `<run>/metrics.jsonl` (and wandb).',
    '',
    '## Plots',
    '',
  ]
  for file, title in figures.items():
    lines += [f'### {title}', '', f'![{title}]({file})', '']
  correction = _CORRECTION_NAMES[family.method]
  lines += [
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
    '- Steps to threshold: the first evaluation at which the validation metric reached the task '
    'threshold; seeds that never reached it are left out of the mean and counted in "k/n reached".',
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
    f'- Speed: {speed_conditions(runs)}',
    '',
  ]
  return '\n'.join(lines)


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
  return text + (
    f'the runs of this sweep were trained with {said} worker processes at once'
    f'{f" ({unknown} runs do not say)" if unknown and counts else ""} (status.json `workers`): '
    'compare their speed with care.'
  )


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.report', description='Write the report of a sweep.')
  parser.add_argument('workdir')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.workdir):
    print(f'error: {args.workdir!r} is not a folder', file=sys.stderr)
    return 2
  try:
    path = write_report(args.workdir)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
