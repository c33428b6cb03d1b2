"""``python -m experiments.run --config configs/x.py --workdir runs/x [--config.model.depth=4 ...]``

Trains the config's whole grid (``sweep.axes`` x ``sweep.seeds``) into ``runs/x/<run id>/``, skipping
runs that are done, so running the same command again after a crash or Ctrl-C resumes; then writes
the report (``runs/x/report.md``, ``summary.csv``, plots). ``--no-sweep`` trains the config as it is,
without its axes, for one seed (``train.seed``); ``--dry-run`` lists the runs (widths, parameter
counts, what is done) and trains nothing.

Where the grid trains:

* ``--workers N``: N worker processes on this machine, each training grid points on its own cores, or
  its own ``--devices-per-worker`` GPUs where there are GPUs (``experiments/workers.py``). The default on
  the command line is ``auto``: as many as fit (one per core on CPU, one per GPU), never more than grid
  points are left; one process trains everything where one fits (``--workers 1``, one core, one
  accelerator). From Python (``main(argv)``) the default is 1: the calling process trains, so its event
  hook sees every step.
* ``--launcher slurm``: one SLURM job per grid point left, as one job array through submitit (settings:
  the config's ``launch.*`` keys); prints the job ids and where the logs go, and returns. ``--launcher
  local`` runs the same jobs on this machine and waits for them (``experiments/slurm.py``).

Before the first step, every optional package the sweep will need (the report's plots, wandb when asked
for, the task's own: ``experiments/preflight.py``) is checked; a missing one is an input mistake.

Exit codes: 0 all runs done (finished or diverged), 1 some run failed (or was left unfinished by a worker
that died), 2 a mistake in the input or a missing package (nothing was written), 74 a full or read-only
disk (one line; what was saved is kept: free space and run the command again), 130 interrupted
(checkpointed; run the command again to resume).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Sequence

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.training.config import ConfigError
from experiments import cli
from experiments import preflight
from experiments import sweep
from experiments import workers as workers_lib


def main(
  argv: Sequence[str] | None = None,
  on_event=None,
  *,
  worker: workers_lib.Worker | None = None,
  worker_command: Sequence[str] | None = None,
) -> int:
  """The command line; ``on_event``: the trainer's event hook (``train.EventHook``), for tests.

  ``worker``: this process is that worker of a parent's team (``experiments.worker``): it trains its
  share of the grid and leaves the summary and the report to the parent. ``worker_command``: how this
  process, as a parent, starts a worker (default ``python -m experiments.worker``; tests wrap it with
  event hooks).
  """
  parser = cli.make_parser(cli.command('run'), __doc__.split('\n')[0].strip('`'))
  parser.add_argument('--no-sweep', action='store_true', help='ignore sweep.axes; one run with train.seed')
  parser.add_argument('--dry-run', action='store_true', help='list the runs; train nothing')
  parser.add_argument('--no-report', action='store_true', help='do not write the report at the end')
  parser.add_argument(
    '--workers',
    type=_workers,
    default=None,
    metavar='N|auto',
    help='worker processes on this machine (default: auto, as many as fit: one per core, or one per GPU)',
  )
  parser.add_argument(
    '--devices-per-worker',
    type=_positive,
    default=None,
    metavar='K',
    help='GPUs each worker owns (on a machine without GPUs: cores; default: one GPU, or the cores divided '
    'among the workers that start)',
  )
  parser.add_argument(
    '--launcher',
    choices=('local', 'slurm'),
    default=None,
    help='submit one job per grid point through submitit (settings: launch.*)',
  )
  run_argv = list(sys.argv[1:] if argv is None else argv)
  command = functools.partial(
    _run, run_argv=run_argv, default_workers='auto' if argv is None else 1, worker=worker, worker_command=worker_command
  )
  return cli.main_with(parser, argv, command, on_event)


def _workers(text: str):
  if text == 'auto':
    return text
  return _positive(text)


def _positive(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(f'expected a whole number >= 1, got {text!r}')
  return value


def _run(args, config, overrides, should_stop, *, run_argv, default_workers, worker, worker_command) -> int:
  del overrides
  if args.point_args:
    raise ConfigError('', f'unrecognized arguments {args.point_args}; overrides look like --config.model.depth=4')
  if config.tune.space:  # each variant tuned, then its chosen setting's seeds trained (experiments/tune.py)
    from experiments import tune  # pylint: disable=g-import-not-at-top

    return tune.command_line(
      args,
      config,
      (),
      should_stop,
      run_argv=run_argv,
      default_workers=default_workers,
      worker=worker,
      worker_command=worker_command,
    )
  if args.no_sweep:
    d = config_lib.to_dict(config)
    d['sweep']['axes'] = {}
    d['sweep']['seeds'] = (d['train']['seed'],)
    config = config_lib.validate(d)
  if args.dry_run:
    points = sweep.expand(config)
    sweep.check_workdir(config, args.workdir, points)  # refuses exactly what a real run would
    for point in points:
      for seed in point.seeds:
        status = runlog.read_status(os.path.join(args.workdir, point.run_id(seed))) or {}
        state = status.get('state', 'new')
        if state == 'finished' and not runlog.is_done(status, point.config.train.num_steps):
          state = f'finished at step {status.get("step")}; extends to {point.config.train.num_steps}'
        print(f'{point.run_id(seed):40s} params={point.params:<9d} {state}')
    return 0
  if worker is None:  # a worker's parent checked already
    preflight.check(config, report=not args.no_report, launcher=args.launcher)
  if worker is not None:
    if config.train.progress == 'bar':  # a bar cannot pass through the parent's line-by-line display
      config = config_lib.validate(config_lib.apply_overrides(config, [('train.progress', 'lines')]))
    result = sweep.run_sweep(
      config,
      args.workdir,
      should_stop=should_stop,
      on_event=args.on_event,
      facts={'workers': worker.count},
      config_file=args.config,
    )
    return 1 if result.failed else 0
  again = f'{cli.command("run")} {cli.shell_join(run_argv)}'
  if args.launcher:
    if args.workers is not None:
      raise ConfigError('', '--workers is for one machine; with --launcher every grid point is a job of its own')
    from experiments import slurm  # pylint: disable=g-import-not-at-top  (submitit only when asked for)

    points = slurm.launch(
      config, args.workdir, args.launcher, config_file=args.config, command=again, should_stop=should_stop
    )
    if points is None:
      return 0
    result, unfinished = _from_status(points, args.workdir)
  else:
    requested = default_workers if args.workers is None else args.workers
    result, unfinished = _train(
      config, args, None if requested == 'auto' else requested, run_argv, worker_command, should_stop
    )
  counts = {}
  for state in result.states.values():
    counts[state] = counts.get(state, 0) + 1
  print(
    f'sweep {args.workdir}: '
    + ', '.join(f'{n} {s}' for s, n in sorted(counts.items()))
    + (f'; {len(result.locked)} held by another runner' if result.locked else '')
  )
  if unfinished:
    print(
      f'{len(unfinished)} run{"s" if len(unfinished) > 1 else ""} unfinished ({", ".join(unfinished[:4])}'
      f'{", ..." if len(unfinished) > 4 else ""}); run the same command again to resume: {again}',
      file=sys.stderr,
    )
    return 1
  if not args.no_report:
    from experiments import publish, report  # pylint: disable=g-import-not-at-top

    path = report.write_report(args.workdir)
    print(f'report: {path}')
    publish.publish(args.workdir)  # to wandb, for the runs that log there
  return 1 if result.failed else 0


def _train(
  config, args, requested: int | None, run_argv, worker_command, should_stop
) -> tuple[sweep.SweepResult, list[str]]:
  """Trains the grid here, in this process or in workers; returns the result and the runs left unfinished."""
  gpus, cpus = workers_lib.visible_gpus(), workers_lib.machine_cpus()
  if len(_plan(requested, args.devices_per_worker, cpus, gpus)) == 1:
    return sweep.run_sweep(
      config,
      args.workdir,
      should_stop=should_stop,
      on_event=args.on_event,
      facts={'workers': 1},
      config_file=args.config,
    ), []
  if gpus:
    import jax  # pylint: disable=g-import-not-at-top

    jax.config.update('jax_platforms', 'cpu')  # the launcher never holds accelerator memory
  cache = sweep.enable_compilation_cache()
  points = sweep.expand(config)
  sweep.check_workdir(config, args.workdir, points)  # one error here, not one per worker
  todo = sum(not all(_done(args.workdir, p, s) for s in p.seeds) for p in points)
  # Even one grid point left trains in a worker: every run of a sweep launched with workers runs under the
  # same conditions (a process on its own core), whatever was left to train when the command ran.
  if todo:
    team = _plan(requested, args.devices_per_worker, cpus, gpus, todo=todo)
    print(
      f'{len(team)} worker{"s" if len(team) > 1 else ""} on this machine '
      f'({"; ".join(w.describe() for w in team)}), each a runner of the same grid; compilation cache {cache}',
      flush=True,
    )
    outcome = workers_lib.launch(team, run_argv, command=worker_command, cache_dir=cache)
    if outcome.interrupted:
      raise train_lib.Interrupted('interrupted; every worker saved a checkpoint; run the same command again to resume')
  return _from_status(points, args.workdir)


def _plan(*args, **kwargs) -> list[workers_lib.Worker]:
  try:
    return workers_lib.plan(*args, **kwargs)
  except ValueError as e:
    raise ConfigError('', str(e)) from e


def _done(workdir: str, point: sweep.GridPoint, seed: int) -> bool:
  return runlog.is_done(runlog.read_status(os.path.join(workdir, point.run_id(seed))), point.config.train.num_steps)


def _from_status(points: Sequence[sweep.GridPoint], workdir: str) -> tuple[sweep.SweepResult, list[str]]:
  """What other processes (workers, jobs) did, from the run folders: every run's state, the failed runs,
  the runs another live runner holds, and the runs left unfinished (their runner died)."""
  result, unfinished = sweep.SweepResult(), []
  for point in points:
    for seed in point.seeds:
      run_id = point.run_id(seed)
      run_dir = os.path.join(workdir, run_id)
      status = runlog.read_status(run_dir) or {}
      if runlog.is_done(status, point.config.train.num_steps) or status.get('state') == 'failed':
        result.states[run_id] = status['state']
        if status['state'] == 'failed':
          result.failed[run_id] = status.get('error') or 'failed'
        continue
      if workers_lib.is_free(run_dir):
        unfinished.append(run_id)
        result.states[run_id] = 'unfinished'
      else:
        result.locked.append(run_id)
  return result, unfinished


if __name__ == '__main__':
  sys.exit(main())
