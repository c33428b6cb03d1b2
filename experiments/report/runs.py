"""Reading a sweep: its run folders, its config, the per-run summary row and the variants (seed groups).

Reads only ``config.json``, ``status.json``, ``metrics.jsonl`` and ``sweep.json``; never rebuilds a task or
a model. The metric a report ranks on (``main_metric``) and its direction (``metric_mode``) are decided here:
the metric the field reports for the task (entity F1 for tagging, BLEU for translation, WER / CER for speech,
perplexity / bits per character for language models, accuracy for classification), not the training loss;
``report.metric`` in the sweep's config overrides it. Lower is better for losses and error rates.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from typing import Any, Collection, Sequence

import numpy as np

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from experiments.report.stats import mean_ci

REPORT_FILE = 'report.md'
SUMMARY_FILE = 'summary.csv'
VERDICTS_FILE = 'verdicts.csv'
SWEEP_FILE = 'sweep.json'
_IGNORED_TRAIN_KEYS = ('steps_per_sec', 'learning_rate')
# The metrics the field reports, most specific first (``main_metric``): tagging (CoNLL entity F1),
# translation / transduction (BLEU; set report.metric='decoded_exact_match' for an algorithmic
# transduction), speech to text (word, then character error rate), language models (perplexity per
# word, bits per character). Classification tasks state their baseline in accuracy, which the
# baseline rule picks; regression and density tasks (adding, polyphonic music) in their loss.
FIELD_METRICS = ('entity_f1', 'bleu', 'decoded_exact_match', 'wer', 'cer', 'perplexity', 'bpc')
# Lower is better for these when the task's metric_modes do not say (they always should).
_MIN_METRICS = ('loss', 'nll', 'mse', 'wer', 'cer', 'per', 'perplexity', 'bpc')

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


def read_sweep(workdir: str) -> dict:
  """The sweep's ``sweep.json`` (its config, axes and runs), ``{}`` when there is none."""
  sweep = runlog.read_json(os.path.join(workdir, SWEEP_FILE))
  return sweep if isinstance(sweep, dict) else {}


def swept_axes(workdir: str, runs: Sequence[Run]) -> list[str]:
  """The swept keys: from sweep.json, else the config keys whose values differ between runs."""
  sweep = read_sweep(workdir)
  if isinstance(sweep.get('axes'), dict):
    return list(sweep['axes'])
  flats = [config_lib.flatten(r.config, stop=()) for r in runs]
  keys = sorted({k for f in flats for k in f})
  return [k for k in keys if k != 'train.seed' and len({repr(f.get(k)) for f in flats}) > 1]


def task_facts(runs: Sequence[Run]) -> dict:
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
# The sweep's report settings.


def report_setting(workdir: str, runs: Sequence[Run], key: str) -> Any:
  """``report.<key>`` of the sweep's config (sweep.json), else of the first run config that sets it."""
  configs = [read_sweep(workdir).get('config')] + [r.config for r in runs]
  for c in configs:
    value = ((c or {}).get('report') or {}).get(key) if isinstance(c, dict) else None
    if value:
      return value
  return None


def published(workdir: str, runs: Sequence[Run]) -> dict:
  """``report.published`` of the sweep's config (sweep.json), else of a run's config; ``{}`` if none."""
  entries = report_setting(workdir, runs, 'published')
  return entries if isinstance(entries, dict) else {}


# ----------------------------------------------------------------------------------------------
# A sweep, read.


@dataclasses.dataclass
class Sweep:
  """A sweep folder read and summarized: what every part of a report (and a study's part) starts from.

  ``metric`` / ``mode``: the metric compared on and its direction (``main_metric``); ``ref``: the split
  compared on (test when the runs have it, else val); ``len_splits``: the longer test splits
  (``test_len2x``, ...), shortest first; ``metric_set``: whether ``report.metric`` chose the metric.
  """

  workdir: str
  runs: list[Run]
  variants: list[Variant]
  axes: list[str]
  facts: dict
  metric: str
  mode: str
  ref: str
  len_splits: list[str]
  metric_set: bool = False


def load_sweep(workdir: str, metric: str | None = None) -> Sweep:
  """Reads the runs of ``workdir`` and fills each run's summary row, on ``metric`` if given, else on
  ``report.metric``, else on the task's own metric. No run folder: FileNotFoundError; a metric the runs
  do not record: ValueError (both one line)."""
  runs = load_runs(workdir)
  if not runs:
    raise FileNotFoundError(f'no run folders (with a config.json) under {workdir!r}')
  axes = swept_axes(workdir, runs)
  facts = task_facts(runs)
  override = metric or report_setting(workdir, runs, 'metric')
  metric, mode = main_metric(facts, recorded_metrics(runs), override)
  for r in runs:
    r.row = summarize(r, axes, facts, metric)
  splits = facts.get('splits') or []
  ref = 'test' if 'test' in splits or any(f'final_test_{metric}' in r.row for r in runs) else 'val'
  len_splits = sorted((s for s in splits if s.startswith('test_len')), key=lambda s: int(s[8:].rstrip('x')))
  return Sweep(workdir, runs, variants(runs, axes), axes, facts, metric, mode, ref, len_splits, bool(override))
