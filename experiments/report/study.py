"""The cross-task study: does depth help, for each cell on each task, at equal parameters and at equal width.

A *study folder* holds ``study.json`` and one ordinary sweep folder per part (the study runner writes them)::

    study.json = {"name": str, "shallow_depth": 1,
                  "parts": [{"task": label, "basis": "params" | "width", "path": "<sweep folder, relative>",
                             "metric": optional override of the task's own metric}, ...]}

Each part's sweep varies ``model.cell`` and ``model.depth``. For each cell (and each value of any other
swept axis) of each part, every depth ``d > shallow_depth`` is compared with ``shallow_depth`` on the
part's metric (its final value on test, else val), **signed so that a positive effect means depth helps**
whatever the metric's direction:

    effect = mean(deep) - mean(shallow)    for a higher-is-better metric (accuracy, F1, BLEU)
    effect = mean(shallow) - mean(deep)    for a lower-is-better one (loss, perplexity, WER, CER, bpc)

with Welch's 95% interval. Every comparison of the whole study (every cell, task, depth and basis) is one
family, corrected with Holm's step-down method (``stats.compare``): a verdict is *clear* only when its
Holm-adjusted p is at most 0.05. Each verdict is recomputed with each finished run of the study left out
in turn (``stats.leave_one_out``); one that changes is *fragile*, whatever it was.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Hashable, Sequence

import numpy as np

from deeprnn_jax.training import runlog
from experiments.report import stats
from experiments.report.runs import Run, Sweep, Variant, load_sweep, read_sweep
from experiments.report.verdicts import depth_lines

STUDY_FILE = 'study.json'
BASES = ('params', 'width')
BASIS_NAMES = {'params': 'equal parameters', 'width': 'equal width'}

Key = tuple[int, str, int]  # (part index, cell label, deep depth)


@dataclasses.dataclass
class Part:
  """One part of a study: a task's sweep at one basis. ``sweep`` is None while its folder holds no run."""

  index: int
  task: str
  basis: str
  path: str
  metric: str | None
  sweep: Sweep | None


@dataclasses.dataclass
class Study:
  name: str
  study_dir: str
  shallow_depth: int
  parts: list[Part]


def is_study(folder: str) -> bool:
  return os.path.isfile(os.path.join(folder, STUDY_FILE))


def read_study(study_dir: str) -> Study:
  """Reads ``study.json`` and each part's sweep. A malformed study.json, or a part whose ``metric`` its
  runs do not record, is a ValueError naming the part and the fix; a part whose folder holds no run yet
  is kept with ``sweep=None`` (a study can be reported while it runs); no run at all: FileNotFoundError."""
  spec = runlog.read_json(os.path.join(study_dir, STUDY_FILE))
  where = os.path.join(study_dir, STUDY_FILE)
  if not isinstance(spec, dict) or not isinstance(spec.get('parts'), list) or not spec['parts']:
    raise ValueError(f'{where} must be a JSON object with "parts", a non-empty list of {{task, basis, path}}')
  shallow = spec.get('shallow_depth', 1)
  if not isinstance(shallow, int) or isinstance(shallow, bool) or shallow < 1:
    raise ValueError(f'{where}: shallow_depth must be a whole number >= 1, got {shallow!r}')
  parts = []
  for i, p in enumerate(spec['parts']):
    if not isinstance(p, dict) or not isinstance(p.get('task'), str) or not isinstance(p.get('path'), str):
      raise ValueError(f'{where}: part {i} must be an object with "task" and "path" strings, got {p!r}')
    if p.get('basis') not in BASES:
      raise ValueError(f'{where}: part {i} ({p["task"]}): basis must be "params" or "width", got {p.get("basis")!r}')
    folder = os.path.join(study_dir, p['path'])
    sweep = None
    if os.path.isdir(folder):
      try:
        sweep = load_sweep(folder, p.get('metric'))
      except FileNotFoundError:
        sweep = None  # not run yet
      except ValueError as e:
        raise ValueError(f'{where}: part {i} ({p["task"]}, {p["path"]}): {e}') from None
    parts.append(Part(i, p['task'], p['basis'], p['path'], p.get('metric'), sweep))
  if all(p.sweep is None for p in parts):
    raise FileNotFoundError(f'no part of the study {study_dir!r} has run folders yet ({len(parts)} parts in {where})')
  return Study(str(spec.get('name') or os.path.basename(os.path.abspath(study_dir))), study_dir, shallow, parts)


def cell_label(cell: str, other: tuple, axes: Sequence[str]) -> str:
  """``'lstm'``, or ``'lstm (width=64)'`` when the part sweeps more than cell and depth."""
  keys = [k for k in axes if k not in ('model.cell', 'model.depth')]
  return cell + (' (' + ', '.join(f'{k.split(".")[-1]}={v}' for k, v in zip(keys, other)) + ')' if other else '')


def cell_order(study: Study) -> list[str]:
  """The cells in the order the parts' sweep.json lists them (first appearance), then any others sorted."""
  out: list[str] = []
  for p in study.parts:
    if p.sweep is not None:
      listed = ((read_sweep(p.sweep.workdir).get('axes') or {}).get('model.cell')) or []
      out += [c for c in listed if isinstance(c, str) and c not in out]
  found = sorted({v.cell for p in study.parts if p.sweep for v in p.sweep.variants} - set(out))
  return out + found


def depth_pairs(study: Study) -> dict[Key, tuple[Part, Variant, Variant]]:
  """Every ``(part, deep, shallow)`` the study compares: in each part, each cell line's variants of depth
  ``> shallow_depth`` against its variant of ``shallow_depth`` (a line without one compares nothing)."""
  out = {}
  for p in study.parts:
    if p.sweep is None:
      continue
    for cell, other, line in depth_lines(p.sweep.variants):
      shallow = [v for v in line if v.depth == study.shallow_depth]
      for deep in line:
        if shallow and deep.depth > study.shallow_depth:
          out[(p.index, cell_label(cell, other, p.sweep.axes), deep.depth)] = (p, deep, shallow[0])
  return out


def column(part: Part) -> str:
  return f'final_{part.sweep.ref}_{part.sweep.metric}'


def signed_sides(part: Part, deep: Variant, shallow: Variant, kept: set[int] | None = None):
  """``(a, b)`` whose difference ``mean(a) - mean(b)`` is the signed effect (positive: depth helps), from
  the finished runs (only those whose ``id`` is in ``kept``, if given)."""
  col = column(part)

  def vals(v: Variant) -> list[float]:
    return [
      r.row[col]
      for r in v.runs
      if r.state == 'finished' and r.row.get(col) is not None and (kept is None or id(r) in kept)
    ]

  return (vals(deep), vals(shallow)) if part.sweep.mode == 'max' else (vals(shallow), vals(deep))


def outcome_of(c: stats.Comparison | None) -> str | None:
  if c is None:
    return None
  return 'not distinguishable' if not c.clear else ('depth helps' if c.welch.diff > 0 else 'depth hurts')


def family(pairs: dict[Key, tuple[Part, Variant, Variant]]) -> dict[Key, stats.Comparison]:
  """The whole study's comparisons, Welch-tested and Holm-corrected as one family."""
  return stats.compare({k: signed_sides(*t) for k, t in pairs.items()}, method='holm')


def study_fragility(pairs: dict[Key, tuple[Part, Variant, Variant]]):
  """``(outcomes, flips)`` of ``stats.leave_one_out`` over every finished run of the study: each verdict
  (``'depth helps'`` / ``'depth hurts'`` / ``'not distinguishable'``) recomputed, Holm correction and
  all, with each run left out. Leaving out one run changes the Welch test of the pairs it is in only, so
  the tests of the others are reused (``cache``); the correction is recomputed whole each time."""
  runs = {id(r): r for _, deep, shallow in pairs.values() for v in (deep, shallow) for r in v.runs}
  items = [r for r in runs.values() if r.state == 'finished']
  cache: dict[Hashable, Any] = {}

  def outcomes(kept_runs: Sequence[Run]) -> dict[Key, str]:
    kept = {id(r) for r in kept_runs}
    tests = {}
    for key, (part, deep, shallow) in pairs.items():
      left_out = tuple(sorted(id(r) for v in (deep, shallow) for r in v.runs if id(r) not in kept))
      if (key, left_out) not in cache:
        cache[(key, left_out)] = stats.welch(*signed_sides(part, deep, shallow, kept))
      if cache[(key, left_out)] is not None:
        tests[key] = cache[(key, left_out)]
    if not tests:
      return {}
    adjusted = stats.adjust([w.pvalue for w in tests.values()], 'holm')
    return {
      k: 'not distinguishable' if p > stats.ALPHA else ('depth helps' if w.diff > 0 else 'depth hurts')
      for (k, w), p in zip(tests.items(), adjusted)
    }

  return stats.leave_one_out(items, outcomes)


@dataclasses.dataclass
class DepthEffect:
  """One row of the depth-effect table (and of depth_effects.csv)."""

  part: Part
  cell: str
  depth: int
  shallow_depth: int
  comparison: stats.Comparison | None
  outcome: str | None  # 'depth helps' / 'depth hurts' / 'not distinguishable'; None: too few seeds
  flips: list[tuple[Run, Any]]  # the runs whose leaving out changes the outcome, and the outcome then
  mean_deep: float
  mean_shallow: float

  @property
  def verdict(self) -> str:
    """``clear``, ``not distinguishable``, ``fragile`` (changes when one run is left out) or ``too few seeds``."""
    if self.outcome is None:
      return 'too few seeds'
    if self.flips:
      return 'fragile'
    return 'clear' if self.outcome != 'not distinguishable' else 'not distinguishable'

  @property
  def effect(self) -> float:
    return self.comparison.welch.diff if self.comparison else float('nan')

  @property
  def relative(self) -> float:
    """The effect as a share of the shallow network's mean (the heatmap's common scale across metrics)."""
    return self.effect / abs(self.mean_shallow) if self.mean_shallow else float('nan')

  def fragile_note(self) -> str:
    if not self.flips:
      return ''
    run, new = self.flips[0]
    more = f' (or {len(self.flips) - 1} other runs)' if len(self.flips) > 1 else ''
    return f'without {run.run_id}{more}: {new or "untestable"}'

  def csv_row(self) -> dict:
    c, w = self.comparison, self.comparison.welch if self.comparison else None
    s = self.part.sweep
    return {
      'basis': self.part.basis,
      'task': self.part.task,
      'cell': self.cell,
      'depth': self.depth,
      'shallow_depth': self.shallow_depth,
      'metric': f'{s.ref} {s.metric}',
      'better': 'lower' if s.mode == 'min' else 'higher',
      'mean_deep': self.mean_deep,
      'mean_shallow': self.mean_shallow,
      'effect_depth_helps_positive': None if w is None else w.diff,
      'ci95_low': None if w is None else w.low,
      'ci95_high': None if w is None else w.high,
      'relative_effect': None if w is None else self.relative,
      'hedges_g': None if c is None else c.g,
      'p_welch': None if w is None else w.pvalue,
      'p_holm': None if c is None else c.p_adjusted,
      'n_deep': None if w is None else (w.n_a if s.mode == 'max' else w.n_b),
      'n_shallow': None if w is None else (w.n_b if s.mode == 'max' else w.n_a),
      'outcome': self.outcome,
      'verdict': self.verdict,
      'changed_without': ' '.join(r.run_id for r, _ in self.flips),
      'sweep': self.part.path,
    }


def depth_effects(study: Study) -> tuple[list[DepthEffect], int]:
  """Every depth comparison of the study with its family-corrected verdict and its fragility; and the
  family's size ``m`` (the testable comparisons)."""
  pairs = depth_pairs(study)
  comps = family(pairs)
  base, flips = study_fragility(pairs)
  rows = []
  for key, (part, deep, shallow) in pairs.items():
    col = column(part)
    md, ms = (np.mean(v.values(col)) if v.values(col) else float('nan') for v in (deep, shallow))
    rows.append(
      DepthEffect(part, key[1], key[2], study.shallow_depth, comps.get(key), base.get(key), flips.get(key, []), md, ms)
    )
  return rows, len(comps)
