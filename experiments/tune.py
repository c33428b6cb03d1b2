"""``python -m experiments.tune --config configs/x.py --workdir runs/x [--workers N] [--dry-run]``

Every variant (grid point of ``sweep.axes``) at its own best hyperparameters, chosen on validation only
(Melis et al. 2018: rankings of recurrent architectures flip once each is tuned). For each variant:

1. an Optuna study (``experiments/optuna_studies.py``) of ``tune.trials`` trials over ``tune.space``, the same
   budget for every variant; each trial trains one run with the sampled values as config overrides into
   ``runs/x/<variant>/trials/<number>/``, evaluated on ``val`` only, and may be pruned at an evaluation;
2. its best trial (on the validation metric) is the chosen setting, which then trains the variant's seeds
   (``sweep.seeds``) as an ordinary sweep into ``runs/x/final/``: the only runs whose test split is read,
   and the ones the report (``runs/x/final/report.md``) compares.

A trial's value is the best validation value over its evaluations, in the metric's direction: the model
early stopping on validation would keep, which is the one the report scores (``test_at_best_val``), and
less noisy than the last evaluation of a run that overfits or wobbles. A trial that diverges is pruned
(counted in the budget, never chosen). Trials train with the seed ``max(sweep.seeds) + 1``, which no final
run uses, so the final seeds are fresh: the chosen setting's luck on its tuning seed does not enter them.

The objective is ``tune.metric`` (``val/<metric>``), else ``report.metric``, else the task's own metric
(the one the report ranks on: ``experiments/report/runs.py``, ``main_metric``), in the task's direction.

The studies live in ``tune.storage``: SQLite at ``runs/x/tune.db`` by default, or a PostgreSQL URL shared by
many machines (its password read from the environment, ``${PGPASSWORD}``, and masked in every message).
Running the command again resumes: trials counted are kept, a trial left running by a dead process is
failed (and replaced), and a finished study trains no more. ``--workers N`` starts N processes on this
machine that share the studies; more machines share them through PostgreSQL (the same command on each).
``runs/x/tune.json`` sums it up per variant: the chosen setting and its validation value, trials
complete / pruned / failed, and the best-so-far curve. ``--dry-run`` prints the numbers of variants and
trials and an estimated time, and trains nothing.

``python -m experiments.run`` on a config with a non-empty ``tune.space`` does the same (it calls this).
Exit codes as ``experiments.run``: 0 done, 1 a variant without a completed trial or a final run failed,
2 a mistake in the input (nothing written), 130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import time
from typing import Sequence

import numpy as np

from deeprnn_jax.training import build
from deeprnn_jax.training import runlog
from deeprnn_jax.training import seed_run
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.training import tune_config
from deeprnn_jax.training.config import ConfigError
from experiments import cli
from experiments import preflight
from experiments import optuna_studies as studies
from experiments import sweep
from experiments import workers as workers_lib

TUNE_FILE = 'tune.json'
FIXED_DIR = 'fixed'  # tune.compare_fixed: the seeds at the config's own setting
FINAL_DIR = 'final'
_POLL_SECONDS = 1.0


def main(argv: Sequence[str] | None = None, on_event=None, *, worker_command: Sequence[str] | None = None) -> int:
  """The command line; ``on_event``: the trainer's event hook (``train.EventHook``), for tests."""
  parser = cli.make_parser(cli.command('tune'), __doc__.split('\n')[0].strip('`'))
  parser.add_argument('--dry-run', action='store_true', help='print the numbers of trials and the time; train nothing')
  parser.add_argument('--no-report', action='store_true', help="do not write the final runs' report")
  parser.add_argument('--workers', type=_count, default=None, metavar='N|auto', help='processes on this machine')
  parser.add_argument('--devices-per-worker', type=_count, default=None, metavar='K', help='as experiments.run')
  run_argv = list(sys.argv[1:] if argv is None else argv)
  command = functools.partial(
    command_line,
    run_argv=run_argv,
    default_workers='auto' if argv is None else 1,
    worker=None,
    worker_command=worker_command,
  )
  return cli.main_with(parser, argv, command, on_event)


def command_line(args, config, overrides, should_stop, *, run_argv, default_workers, worker, worker_command) -> int:
  """The command (``experiments.tune``, or ``experiments.run`` with a tune section); ``worker``: this
  process is one of a parent's workers (it tunes and trains its share, the parent sums up)."""
  del overrides
  if getattr(args, 'point_args', None):
    raise ConfigError('', f'unrecognized arguments {args.point_args}; overrides look like --config.model.depth=4')
  if getattr(args, 'no_sweep', False) or getattr(args, 'launcher', None):
    raise ConfigError('', '--no-sweep and --launcher do not tune; use --workers N, or the same command on each machine')
  if not config.tune.space:
    raise ConfigError(
      'tune.space', "is empty: nothing to tune; e.g. {'optim.learning_rate': ('log_uniform', 1e-4, 1e-2)}"
    )
  requested = default_workers if args.workers is None else args.workers
  requested = None if requested == 'auto' else requested
  gpus, cpus = workers_lib.visible_gpus(), workers_lib.machine_cpus()
  team = [] if worker is not None else _team(requested, args.devices_per_worker, cpus, gpus)
  if len(team) > 1 and gpus:
    import jax  # pylint: disable=g-import-not-at-top

    jax.config.update('jax_platforms', 'cpu')  # the launcher never holds accelerator memory
  plan = make_plan(config, args.workdir)
  if args.dry_run:
    return dry_run(plan, max(1, len(team)))
  if worker is None:
    preflight.check(config, report=not args.no_report)
  storage = studies.open_storage(plan)
  ctx = studies.Context(
    should_stop, args.on_event or (lambda name, step: None), worker_index=worker.index if worker else 0
  )
  facts = {'workers': worker.count if worker else len(team)}
  if len(team) <= 1:
    tune_variants(plan, storage, ctx)
    result, missing = train_final(plan, storage, ctx, facts, args.config)
  else:
    cache = sweep.enable_compilation_cache()
    print(
      f'{len(team)} workers on this machine ({"; ".join(w.describe() for w in team)}), sharing the studies', flush=True
    )
    outcome = workers_lib.launch(team, run_argv, command=worker_command, cache_dir=cache)
    if outcome.interrupted:
      raise train_lib.Interrupted('interrupted; every worker stopped; run the same command again to resume')
    points, missing = final_points(plan, storage)
    result = _final_result(points, os.path.join(plan.workdir, FINAL_DIR))
    if config.tune.compare_fixed and points:
      result = _merged(result, _final_result(plan.points, os.path.join(plan.workdir, FIXED_DIR)), FIXED_DIR)
  if worker is not None:
    return 1 if result.failed or missing else 0
  path = write_summary(plan, storage)
  print(f'tuning {plan.workdir}: {len(plan.points)} variants x {plan.trials} trials; summary: {path}')
  if missing:
    print(f'no completed trial, so no final runs: {", ".join(missing)}', file=sys.stderr)
  if not args.no_report and result.states:
    from experiments import report  # pylint: disable=g-import-not-at-top

    if config.tune.compare_fixed:  # first: the final report lists the verdicts that flip against it
      print(f'report at the fixed setting: {report.write_report(os.path.join(plan.workdir, FIXED_DIR))}')
    print(f'report: {report.write_report(os.path.join(plan.workdir, FINAL_DIR))}')
  return 1 if result.failed or missing else 0


def _count(text: str):
  """``--workers`` / ``--devices-per-worker``: a whole number >= 1 (or ``auto`` for the workers)."""
  if text == 'auto':
    return text
  if not text.isdigit() or int(text) < 1:
    raise argparse.ArgumentTypeError(f'expected a whole number >= 1, got {text!r}')
  return int(text)


def _final_result(points: Sequence[sweep.GridPoint], final_dir: str) -> sweep.SweepResult:
  """What the workers' final runs came to, from their folders (a run not done counts as failed: its
  worker died; the same command again resumes it)."""
  result = sweep.SweepResult()
  for point in points:
    for seed in point.seeds:
      status = runlog.read_status(os.path.join(final_dir, point.run_id(seed))) or {}
      done = runlog.is_done(status, point.config.train.num_steps)
      result.states[point.run_id(seed)] = status.get('state', 'unfinished') if done else 'unfinished'
      if not done or status.get('state') == 'failed':
        result.failed[point.run_id(seed)] = status.get('error') or 'unfinished'
  return result


def _team(requested, per_worker, cpus, gpus) -> list[workers_lib.Worker]:
  try:
    return workers_lib.plan(requested, per_worker, cpus, gpus)
  except ValueError as e:
    raise ConfigError('', str(e)) from e


# ----------------------------------------------------------------------------------------------
# The plan: everything checked before anything is written.


def make_plan(config, workdir: str) -> studies.Plan:
  """Expands the grid, checks the space against every variant, picks each variant's objective and the
  storage URL; raises ``ConfigError`` (one line) on any problem, before anything is written."""
  if not preflight.installed('optuna'):
    raise ConfigError(
      '', "tuning needs optuna; install the 'experiments' extra in the checkout: pip install '.[experiments]'"
    )
  sweep.enable_compilation_cache()
  points = sweep.expand(config)
  sweep.check_workdir(config, workdir, [])  # writable (the final runs are checked when they start)
  seed = max(config.sweep.seeds) + 1
  dims = tune_config.dimensions(config)
  objectives = {}
  for point in points:
    if 'val' not in point.task.eval_splits:
      raise ConfigError('task.name', f'task {point.task.name!r} has no val split to tune on; tuning never reads test')
    for dim in dims:
      for value in dim.endpoints():
        studies.trial_config(point, {dim.key: value}, seed)
    objectives[point.variant] = _objective(config, point.task)
  url, shown = _storage_url(config, workdir)
  return studies.Plan(config, workdir, points, dims, objectives, url, shown, seed)


def _objective(config, task) -> tuple[str, str]:
  """The val metric a study optimizes and its direction (see the module docstring)."""
  from experiments.report import runs as report_runs  # pylint: disable=g-import-not-at-top

  facts = seed_run.task_facts(task, ('val',))
  key = 'tune.metric' if config.tune.metric else 'report.metric'
  chosen = config.tune.metric or config.report.metric
  metric = chosen.rpartition('/')[2] if chosen else report_runs.main_metric(facts)[0]
  if metric not in facts['metric_modes']:
    raise ConfigError(
      key, f'task {task.name!r} records no {metric!r} on val; valid: {", ".join(facts["metric_modes"])}'
    )
  return metric, report_runs.metric_mode(facts, metric)


def _storage_url(config, workdir: str) -> tuple[str, str]:
  """``(url, shown)``: the storage URL with ``$VAR`` / ``${VAR}`` read from the environment, and as shown."""
  raw = config.tune.storage
  if raw is None:
    url = 'sqlite:///' + os.path.abspath(os.path.join(workdir, 'tune.db'))
    return url, url
  for name in re.findall(r'\$\{?(\w+)\}?', raw):
    if name not in os.environ:
      raise ConfigError('tune.storage', f'{tune_config.mask(raw)} reads ${name} from the environment, which is not set')
  if raw.startswith('postgresql') and not preflight.installed('psycopg2'):
    raise ConfigError('tune.storage', "a PostgreSQL storage needs psycopg2: pip install '.[experiments]'")
  if raw.startswith('postgresql://'):  # the driver the extra installs (SQLAlchemy may default to another)
    raw = 'postgresql+psycopg2://' + raw[len('postgresql://') :]
  url = os.path.expandvars(raw)
  return url, tune_config.mask(url)


# ----------------------------------------------------------------------------------------------
# Tuning, then the final runs.


def tune_variants(plan: studies.Plan, storage, ctx: studies.Context) -> None:
  """Runs trials until every variant's study has its budget of counted trials (or keeps failing).

  Variants go in grid order; a variant whose remaining trials run in other runners is left for the
  next, and come back to (they may fail and need replacing) until all are done."""
  owner = studies.Owner(plan.workdir)
  try:
    pending = list(plan.points)
    while pending:
      progressed = False
      for point in list(pending):
        while True:
          if ctx.should_stop():
            raise train_lib.Interrupted('interrupted between trials; run the same command again to resume')
          state = studies.next_trial(plan, storage, point, ctx, owner)
          if state != 'ran':
            break
          progressed = True
        if state == 'stuck':
          ctx.echo(f'{point.variant}: {plan.trials} trials failed; giving up on it (see its trials/*/status.json)')
        if state in ('done', 'stuck'):
          pending.remove(point)
      if pending and not progressed:
        time.sleep(_POLL_SECONDS)
  finally:
    owner.release()


def final_points(plan: studies.Plan, storage) -> tuple[list[sweep.GridPoint], list[str]]:
  """Each variant at its chosen setting with its seeds (``sweep.seeds``), and the variants with no
  completed trial to choose from."""
  points, missing = [], []
  for point in plan.points:
    best = _best(studies.open_study(plan, storage, point))
    if best is None:
      missing.append(point.variant)
      continue
    config = studies.trial_config(point, studies.decode(plan, best.params), point.config.train.seed, final=True)
    params = build.param_count(config, point.task)
    points.append(sweep.GridPoint(point.values, config, tuple(plan.config.sweep.seeds), params, point.task))
  return points, missing


def train_final(plan, storage, ctx: studies.Context, facts: dict, config_file: str | None):
  """The final runs (``final_points``) as an ordinary sweep into ``<workdir>/final``, then (with
  ``tune.compare_fixed``) the same seeds at the config's own setting into ``<workdir>/fixed``."""
  points, missing = final_points(plan, storage)
  if not points:
    return sweep.SweepResult(), missing
  kwargs = dict(should_stop=ctx.should_stop, echo=ctx.echo, on_event=ctx.on_event, facts=facts, config_file=config_file)
  result = sweep.run_sweep(plan.config, os.path.join(plan.workdir, FINAL_DIR), points=points, **kwargs)
  if plan.config.tune.compare_fixed:
    fixed = sweep.run_sweep(plan.config, os.path.join(plan.workdir, FIXED_DIR), points=plan.points, **kwargs)
    result = _merged(result, fixed, FIXED_DIR)
  return result, missing


def _merged(result: sweep.SweepResult, other: sweep.SweepResult, prefix: str) -> sweep.SweepResult:
  """``result`` with ``other``'s runs added under ``prefix/`` (the command's exit code counts both)."""
  result.states.update({f'{prefix}/{k}': v for k, v in other.states.items()})
  result.failed.update({f'{prefix}/{k}': v for k, v in other.failed.items()})
  return result


def _best(study):
  """The complete trial with the best value (the earliest of equals), or None."""
  import optuna  # pylint: disable=g-import-not-at-top

  complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
  sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
  return min(complete, key=lambda t: (sign * t.value, t.number), default=None)


# ----------------------------------------------------------------------------------------------
# What the tuning did.


def summary(plan: studies.Plan, storage) -> dict:
  """``tune.json``: per variant the chosen setting, its validation value, the trials by outcome and the
  best-so-far curve (trial number, its value, the best value up to it; complete trials, in order)."""
  variants = {}
  for point in plan.points:
    study = studies.open_study(plan, storage, point)
    metric, mode = plan.objectives[point.variant]
    best = _best(study)
    curve, so_far = [], None
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
      if t.state.name == 'COMPLETE':
        so_far = t.value if so_far is None else (min if mode == 'min' else max)(so_far, t.value)
        curve.append({'trial': t.number, 'value': t.value, 'best': so_far, 'params': studies.decode(plan, t.params)})
    variants[point.variant] = {
      'study': plan.study_name(point),
      'metric': f'val/{metric}',
      'mode': mode,
      'chosen': None if best is None else studies.decode(plan, best.params),
      'value': None if best is None else best.value,
      'best_trial': None if best is None else best.number,
      'best_step': None if best is None else best.user_attrs.get('best_step'),
      'trials': studies.counts(study),
      'curve': curve,
      'importance': _importance(study),
    }
  t = plan.config.tune
  return {
    'trials_per_variant': t.trials,
    'sampler': t.sampler,
    'pruner': t.pruner,
    'seed': t.seed,
    'space': tune_config.flat_space(t.space),
    'storage': plan.shown_url,
    'trial_seed': plan.trial_seed,
    'final_dir': FINAL_DIR,
    'final_seeds': list(plan.config.sweep.seeds),
    'variants': variants,
  }


def _importance(study) -> dict[str, float] | None:
  """Each hyperparameter's share of the validation value's variance over the complete trials (Optuna's
  fANOVA evaluator, a random forest of the trials; seeded), or None with fewer than 4 complete trials or
  one hyperparameter varied (nothing to apportion)."""
  import optuna  # pylint: disable=g-import-not-at-top

  complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
  if len(complete) < 4 or len({k for t in complete for k in t.params}) < 2:
    return None
  try:
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
  except (RuntimeError, ValueError):  # e.g. every trial at the same value
    return None


def write_summary(plan: studies.Plan, storage) -> str:
  path = os.path.join(plan.workdir, TUNE_FILE)
  runlog.write_json(path, summary(plan, storage))
  return path


def dry_run(plan: studies.Plan, workers: int) -> int:
  """Prints the variants, the trials (total and left) and an estimated time; writes nothing."""
  done, seconds = _history(plan)
  total = len(plan.points) * plan.trials
  left = total - sum(done.values())
  print(
    f'{len(plan.points)} variants x {plan.trials} trials per variant = {total} trials ({left} left); '
    f'storage {plan.shown_url}'
  )
  for point in plan.points:
    metric, mode = plan.objectives[point.variant]
    print(
      f'  {point.variant:40s} params={point.params:<9d} {done.get(point.variant, 0)}/{plan.trials} trials; '
      f'{mode} val/{metric}'
    )
  if seconds:
    per = float(np.mean(seconds))
    how = f'{per:.1f} s per trial, the mean of the {len(seconds)} finished'
  else:
    probed = sweep.start_order(plan.points)[0]
    per = _probe_seconds(plan, probed)
    how = f'{per:.1f} s per trial, from a few timed steps of {probed.variant} (compilation included)'
  final = len(plan.points) * per  # the final seeds train together, about one trial's time per variant
  minutes = (left * per + final) / workers / 60
  many = 's' if workers > 1 else ''
  print(f'estimated time: {minutes:.1f} min on {workers} worker{many} ({how}; plus the final seeds)')
  return 0


def _history(plan: studies.Plan) -> tuple[dict[str, int], list[float]]:
  """Counted trials per variant and the durations of the finished ones, from an existing storage only."""
  if plan.url.startswith('sqlite:///') and not os.path.exists(plan.url[len('sqlite:///') :]):
    return {}, []
  import optuna  # pylint: disable=g-import-not-at-top

  storage = studies.open_storage(plan)
  names = {s.study_name: s for s in optuna.study.get_all_study_summaries(storage)}
  done, seconds = {}, []
  for point in plan.points:
    if plan.study_name(point) not in names:
      continue
    study = optuna.load_study(study_name=plan.study_name(point), storage=storage)
    n = studies.counts(study)
    done[point.variant] = n['complete'] + n['pruned']
    seconds += [t.duration.total_seconds() for t in study.get_trials(deepcopy=False) if t.state.name == 'COMPLETE']
  return done, seconds


def _probe_seconds(plan: studies.Plan, point: sweep.GridPoint, probe_steps: int = 5) -> float:
  """One trial's seconds, estimated from ``probe_steps`` timed steps of the costliest variant (in memory,
  nothing written) plus its compilation, scaled by ``sweep.estimated_cost`` to the mean variant."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  config = studies.trial_config(point, {}, plan.trial_seed)
  task = studies._trial_task(studies.Context(lambda: False, lambda n, s: None), point)  # pylint: disable=protected-access
  t0 = time.perf_counter()
  programs = train_lib.Programs(config, task, 'single')
  state = programs.init(jnp.asarray([plan.trial_seed], jnp.uint32), task.train_data)
  active = jnp.ones(1, bool)
  step = programs.compile(state, active, task.train_data)[programs.bucket(0)]
  state = jax.block_until_ready(step(state, active, task.train_data))
  compile_seconds = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(probe_steps):
    state = step(state, active, task.train_data)
  jax.block_until_ready(state)
  per_step = (time.perf_counter() - t0) / probe_steps
  mean_cost = float(np.mean([sweep.estimated_cost(p) for p in plan.points])) / max(sweep.estimated_cost(point), 1e-12)
  return compile_seconds + per_step * config.train.num_steps * mean_cost


if __name__ == '__main__':
  sys.exit(main())
