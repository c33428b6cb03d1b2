r"""What the tuning did, in the report of its final runs (``experiments.tune`` writes ``tune.json`` beside
``final/``): per variant the chosen setting and its validation value, the trials by outcome, the tuning
curve (best so far vs trials), the expected best validation value vs the number of trials with a "budget
saturated?" mark, validation vs learning rate, and each hyperparameter's importance (fANOVA).

Expected best of :math:`n` trials (Dodge et al. 2019, "Show Your Work", eq. 1): with the :math:`N`
complete trials' values sorted from worst to best, :math:`v_{(1)}, \dots, v_{(N)}`, the best of :math:`n`
draws with replacement from them is :math:`v_{(i)}` with probability :math:`(i/N)^n - ((i-1)/N)^n`, so

.. math:: \mathbb{E}[\max_n] = \sum_{i=1}^{N} v_{(i)} \Big[\big(\tfrac{i}{N}\big)^n - \big(\tfrac{i-1}{N}\big)^n\Big].

The budget is marked *saturated* when doubling it from :math:`N/2` to :math:`N` trials moves the expected
best by less than a quarter of the trials' standard deviation: more trials of the same search would
likely not change the chosen value much. The mark is a heuristic and says so.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Sequence

import numpy as np

from experiments.report import plots
from experiments.report.fmt import fmt
from experiments.report.runs import VERDICTS_FILE

TUNE_FILE = 'tune.json'
FIXED_DIR = 'fixed'  # experiments.tune's runs at the config's own setting (tune.compare_fixed)
SATURATION = 0.25  # the expected best's gain from N/2 to N trials, in standard deviations of the values


def load_tuning(final_dir: str) -> dict | None:
  """``tune.json`` of the tuning whose final runs are ``final_dir``, or None for an untuned sweep."""
  path = os.path.join(os.path.dirname(os.path.abspath(final_dir)), TUNE_FILE)
  try:
    with open(path, encoding='utf-8') as f:
      tune = json.load(f)
  except (OSError, ValueError):
    return None
  if not isinstance(tune, dict) or tune.get('final_dir') != os.path.basename(os.path.abspath(final_dir)):
    return None
  return tune


def verdict_flips(final_dir: str) -> list[tuple[str, str, str]] | None:
  """The verdicts (``verdicts.csv``) whose outcome differs between the runs at the config's fixed setting
  (``../fixed``) and at the tuned ones: ``(verdict, at fixed, at tuned)``; None without the fixed runs' report."""

  def read(folder):
    try:
      with open(os.path.join(folder, VERDICTS_FILE), newline='', encoding='utf-8') as f:
        return {row['verdict']: row['outcome'] for row in csv.DictReader(f)}
    except (OSError, KeyError, csv.Error):
      return None

  tuned = read(final_dir)
  fixed = read(os.path.join(os.path.dirname(os.path.abspath(final_dir)), FIXED_DIR))
  if tuned is None or fixed is None:
    return None
  return [
    (k, fixed.get(k, 'not tested'), tuned.get(k, 'not tested'))
    for k in sorted(set(fixed) | set(tuned))
    if fixed.get(k) != tuned.get(k)
  ]


def expected_best(values: Sequence[float], n: int, mode: str) -> float:
  """Dodge et al.'s expected best of ``n`` trials drawn from ``values`` (module docstring)."""
  v = np.sort(np.asarray(values, float))
  if mode == 'min':
    v = v[::-1]  # worst first
  big_n = len(v)
  i = np.arange(1, big_n + 1)
  weights = (i / big_n) ** n - ((i - 1) / big_n) ** n
  return float(np.sum(v * weights))


def saturated(values: Sequence[float], mode: str) -> bool | None:
  """Whether the budget looks saturated (module docstring); None with fewer than 4 values."""
  if len(values) < 4:
    return None
  spread = float(np.std(values))
  if spread == 0.0:
    return True
  half, full = expected_best(values, len(values) // 2, mode), expected_best(values, len(values), mode)
  return abs(full - half) < SATURATION * spread


def tuning_section(tune: dict, figure: str | None, flips: list[tuple[str, str, str]] | None = None) -> list[str]:
  """ "Tuning": the search, one row per variant, each hyperparameter's importance, and the verdicts that
  differ from the ones at the config's fixed setting (``flips``, ``verdict_flips``)."""
  space = ', '.join(f'`{k}` {spec}' for k, spec in tune['space'].items())
  lines = [
    '',
    '## Tuning',
    '',
    f'Every variant had the same budget: {tune["trials_per_variant"]} trials of the {tune["sampler"]} sampler '
    f'(pruner: {tune["pruner"]}, seed {tune["seed"]}) over {space}, each trained with seed {tune["trial_seed"]} '
    f'and scored on validation only. The chosen setting (the best trial on validation) trained the seeds '
    f'{tune["final_seeds"]} from scratch: the runs above, the only ones whose test split was read.',
    '',
    '| variant | chosen setting | val value | complete / pruned / failed | expected best at N/4, N/2, N | saturated? |',
    '|---|---|---|---|---|---|',
  ]
  for name, v in tune['variants'].items():
    values = [c['value'] for c in v['curve']]
    counts = v.get('trials') or {}
    done = f'{counts.get("complete", 0)} / {counts.get("pruned", 0)} / {counts.get("failed", 0)}'
    chosen = ', '.join(f'`{k}`={fmt(x) if isinstance(x, float) else x}' for k, x in (v.get('chosen') or {}).items())
    if values:
      marks = [expected_best(values, max(1, len(values) * k // 4), v['mode']) for k in (1, 2, 4)]
      expected = ', '.join(fmt(m) for m in marks)
    else:
      expected = 'n/a'
    sat = {True: 'yes', False: '**no**: more trials may still help', None: 'n/a (under 4 trials)'}[
      saturated(values, v['mode'])
    ]
    lines.append(f'| {name} | {chosen or "none"} | {fmt(v.get("value"))} {v["metric"]} | {done} | {expected} | {sat} |')
  importances = {name: v['importance'] for name, v in tune['variants'].items() if v.get('importance')}
  if importances:
    keys = sorted({k for imp in importances.values() for k in imp})
    pooled = {k: float(np.mean([imp.get(k, 0.0) for imp in importances.values()])) for k in keys}
    lines += [
      '',
      "Hyperparameter importance (Optuna's fANOVA: each one's share of the validation value's variance over a "
      "variant's complete trials; pooled = the variants' mean):",
      '',
      '| hyperparameter | ' + ' | '.join(importances) + ' | pooled |',
      '|---|' + '---|' * (len(importances) + 1),
    ]
    for k in sorted(keys, key=lambda k: -pooled[k]):
      row = ' | '.join(fmt(imp.get(k)) for imp in importances.values())
      lines.append(f'| `{k}` | {row} | {fmt(pooled[k])} |')
  if flips is not None:
    lines += [
      '',
      f"Verdicts at the tuned settings against the same seeds at the config's fixed setting (`../{FIXED_DIR}/`):",
    ]
    if flips:
      lines += ['', '| verdict | at the fixed setting | tuned |', '|---|---|---|']
      lines += [f'| {k} | {a} | {b} |' for k, a, b in flips]
      lines += ['', f'{len(flips)} verdict{"s" if len(flips) != 1 else ""} differ: name them beside any finding.']
    else:
      lines += ['', 'every verdict is the same at both.']
  if figure:
    lines += ['', f'![tuning]({figure})']
  lines += [
    '',
    'Expected best of n trials: Dodge et al. (2019), over the complete trials; "saturated" when the expected '
    f'best moves by less than {SATURATION} standard deviations of the trial values from N/2 to N trials.',
  ]
  return lines


def plot_tuning(path: str, tune: dict) -> str | None:
  """Tuning curves (best so far vs trial), expected best vs trials, and validation vs learning rate where
  the search varied it: one line or point set per variant. Returns the file name, or None without trials."""
  variants = {name: v for name, v in tune['variants'].items() if v['curve']}
  if not variants:
    return None
  plt = plots._plt()  # pylint: disable=protected-access
  lr = 'optim.learning_rate'
  with_lr = any(lr in c['params'] for v in variants.values() for c in v['curve'])
  fig, axs = plt.subplots(1, 3 if with_lr else 2, figsize=(15 if with_lr else 10, 3.6), squeeze=False)
  metric = next(iter(variants.values()))['metric']
  for name, v in variants.items():
    curve = v['curve']
    axs[0, 0].step([c['trial'] for c in curve], [c['best'] for c in curve], where='post', label=name)
    values = [c['value'] for c in curve]
    ns = np.arange(1, len(values) + 1)
    axs[0, 1].plot(ns, [expected_best(values, n, v['mode']) for n in ns], label=name)
    if with_lr:
      axs[0, 2].scatter([c['params'].get(lr) for c in curve], values, s=12, label=name)
  axs[0, 0].set(xlabel='trial', ylabel=f'best {metric} so far', title='tuning curve')
  axs[0, 1].set(xlabel='trials (n)', ylabel=f'expected best {metric}', title='expected best of n trials')
  if with_lr:
    axs[0, 2].set(xscale='log', xlabel='learning rate', ylabel=metric, title='validation vs learning rate')
  axs[0, 0].legend(fontsize=7)
  fig.tight_layout()
  name = 'tuning.png'
  plots.save(fig, os.path.join(path, name))
  plt.close(fig)
  return name
