"""``python -m experiments.evaluate RUN_OR_SWEEP_DIR [...] [--split test] [--checkpoint best|last|STEP]
[--config.task.options.seq_len=400]``

Evaluates trained runs (one run folder, or every run of a sweep folder) on any split of their task,
or on the task rebuilt with other options (e.g. length generalization at 10x the training length).
Prints a table, and appends one JSON line per run and split to the run's ``evaluations.jsonl``
(``{"time", "checkpoint", "step", "split", "task_options", "metrics"}``); the run's training
records (config.json, metrics.jsonl, status.json) are never touched.

Exit codes: 0 every run evaluated, 1 some run could not be (its error printed), 2 a mistake in the input.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Sequence

from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import identity
from deeprnn_jax.training import load as load_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training.config import ConfigError
from experiments import cli

EVALUATIONS_FILE = 'evaluations.jsonl'


def run_folders(path: str) -> list[str]:
  """``path`` itself if it is a run folder, else its sub-folders that are (sorted)."""
  if os.path.isfile(runlog.RunFolder(path).config):
    return [os.path.abspath(path)]
  if not os.path.isdir(path):
    raise ConfigError('', f'{path!r} is not a folder; pass a run folder or a sweep folder')
  runs = sorted(
    os.path.join(path, d) for d in os.listdir(path) if os.path.isfile(runlog.RunFolder(os.path.join(path, d)).config)
  )
  if not runs:
    raise ConfigError('', f'{path!r} holds no run folder (none has a {runlog.CONFIG_FILE})')
  return [os.path.abspath(r) for r in runs]


def task_options(overrides: Sequence[str]) -> dict:
  """``--config.task.options.<name>=<value>`` overrides as ``{name: value}``; nothing else may change
  (another model would not fit the trained parameters)."""
  options = {}
  for text in overrides:
    key, value = config_lib.parse_override(text)
    if not key.startswith('task.options.'):
      raise ConfigError(
        key,
        'only task options can change in an evaluation (--config.task.options.<name>=...); '
        'the model must stay the one that was trained',
      )
    options[key[len('task.options.') :]] = value
  return options


def _checkpoint(text: str) -> str | int:
  if text in ('best', 'last'):
    return text
  if text.isdigit():
    return int(text)
  raise ConfigError('', f"--checkpoint must be 'best', 'last' or a step number, got {text!r}")


def evaluate(
  paths: Sequence[str], splits: Sequence[str] | None, checkpoint: str | int, options: dict
) -> tuple[list[dict], dict[str, str]]:
  """Evaluates every run under ``paths``; returns (one row per run and split, {run: error})."""
  runs = [r for p in paths for r in run_folders(p)]
  # Everything is checked before anything is written: configs, the rebuilt tasks and the splits.
  configs = {r: load_lib.run_config(r, options) for r in runs}
  built, tasks = {}, {}  # one task per distinct task config, shared by the runs that have it
  for r, config in configs.items():
    key = identity.fingerprint(config_lib.to_dict(config.task))
    if key not in built:
      built[key] = build.task_from_config(config)
    tasks[r] = task = built[key]
    for s in splits or ():
      if s not in task.eval_splits:
        raise ConfigError(
          '',
          f'unknown split {s!r} for task {task.name!r} of {os.path.basename(r)}; valid: {", ".join(task.eval_splits)}',
        )
  rows, errors = [], {}
  for r in configs:
    try:
      run = load_lib.load_run(r, checkpoint, task=tasks[r], task_options=options)
      results = run.evaluate(splits)
    except (load_lib.RunNotFoundError, ValueError) as e:
      errors[r] = runlog.one_line(e)
      continue
    records = [
      {
        'time': time.time(),
        'checkpoint': checkpoint,
        'step': run.step,
        'split': split,
        'task_options': options,
        'metrics': metrics,
      }
      for split, metrics in results.items()
    ]
    runlog.MetricsLog(os.path.join(r, EVALUATIONS_FILE)).append(records)
    rows += [{'run': os.path.basename(r), **rec} for rec in records]
  return rows, errors


def checkpoint_line(checkpoint: str | int) -> str:
  """Which checkpoint the numbers below come from: the report's final numbers are the last step's, so a
  ``best`` evaluation differs from them by design."""
  if checkpoint == 'best':
    return "checkpoint: best (each run's best validation step; the report's final numbers are the last step's)"
  if checkpoint == 'last':
    return "checkpoint: last (each run's final step, as the report's final numbers)"
  return f'checkpoint: step {checkpoint}'


def table(rows: Sequence[dict]) -> str:
  """One line per run: its step and every ``split/metric``."""
  by_run: dict[str, dict] = {}
  for row in rows:
    line = by_run.setdefault(row['run'], {'step': row['step']})
    line.update({f'{row["split"]}/{k}': v for k, v in row['metrics'].items()})
  columns = sorted({k for line in by_run.values() for k in line if k != 'step'})
  width = max([len('run'), *map(len, by_run)])
  out = [' '.join([f'{"run":{width}s}', f'{"step":>6s}', *(f'{c:>14s}' for c in columns)])]
  for name, line in by_run.items():
    cells = [f'{line[c]:14.6g}' if c in line else f'{"":14s}' for c in columns]
    out.append(' '.join([f'{name:{width}s}', f'{line["step"]:6d}', *cells]))
  return '\n'.join(out)


def main(argv: Sequence[str] | None = None) -> int:
  parser = cli.make_parser(cli.command('evaluate'), __doc__.split('\n\n')[1].split('\n')[0])
  parser.add_argument('paths', nargs='+', help='run folders or sweep folders')
  parser.add_argument('--split', action='append', default=None, help='a split to evaluate (repeatable; default: all)')
  parser.add_argument('--checkpoint', default='best', help="'best' (default), 'last' or a step number")
  args, rest = parser.parse_known_args(argv)
  try:
    bad = [a for a in rest if not a.startswith('--config.')]
    if bad:
      raise ConfigError(
        '', f'unrecognized argument {bad[0]!r}; task options look like --config.task.options.seq_len=400'
      )
    rows, errors = evaluate(
      args.paths, args.split, _checkpoint(args.checkpoint), task_options([a[len('--config.') :] for a in rest])
    )
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return cli.EXIT_USAGE
  if rows:
    print(checkpoint_line(_checkpoint(args.checkpoint)))
    print(table(rows))
  for run, error in errors.items():
    print(f'{os.path.basename(run)}: not evaluated: {error}', file=sys.stderr)
  return 1 if errors else 0


if __name__ == '__main__':
  sys.exit(main())
