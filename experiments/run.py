"""``python -m experiments.run --config configs/x.py --workdir runs/x [--config.model.depth=4 ...]``

Trains the config's whole grid (``sweep.axes`` x ``sweep.seeds``) into ``runs/x/<run id>/``, skipping
runs that are done, so running the same command again after a crash or Ctrl-C resumes; then writes
the report (``runs/x/report.md``, ``summary.csv``, plots). ``--no-sweep`` trains the config as it is,
without its axes, for one seed (``train.seed``); ``--dry-run`` lists the runs (widths, parameter
counts, what is done) and trains nothing.

Exit codes: 0 all runs done (finished or diverged), 1 some run failed, 2 a mistake in the input
(nothing was written), 130 interrupted (checkpointed; run the command again to resume).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from deeprnn_jax import config as config_lib
from deeprnn_jax import runlog
from deeprnn_jax.config import ConfigError
from experiments import cli
from experiments import sweep


def main(argv: Sequence[str] | None = None, on_event=None) -> int:
  """The command line; ``on_event``: the trainer's event hook (``train.EventHook``), for tests."""
  parser = cli.make_parser('python -m experiments.run', __doc__.split('\n')[0].strip('`'))
  parser.add_argument('--no-sweep', action='store_true', help='ignore sweep.axes; one run with train.seed')
  parser.add_argument('--dry-run', action='store_true', help='list the runs; train nothing')
  parser.add_argument('--no-report', action='store_true', help='do not write the report at the end')
  return cli.main_with(parser, argv, _run, on_event)


def _run(args, config, overrides, should_stop) -> int:
  del overrides
  if args.point_args:
    raise ConfigError('', f'unrecognized arguments {args.point_args}; overrides look like --config.model.depth=4')
  if args.no_sweep:
    d = config_lib.to_dict(config)
    d['sweep']['axes'] = {}
    d['sweep']['seeds'] = (d['train']['seed'],)
    config = config_lib.validate(d)
  if args.dry_run:
    points = sweep.expand(config)
    sweep.check_workdir(config, args.workdir, points)   # refuses exactly what a real run would
    for point in points:
      for seed in point.seeds:
        status = runlog.read_status(os.path.join(args.workdir, point.run_id(seed))) or {}
        state = status.get('state', 'new')
        if state == 'finished' and not runlog.is_done(status, point.config.train.num_steps):
          state = f'finished at step {status.get("step")}; extends to {point.config.train.num_steps}'
        print(f'{point.run_id(seed):40s} params={point.params:<9d} {state}')
    return 0
  result = sweep.run_sweep(config, args.workdir, should_stop=should_stop, on_event=args.on_event)
  counts = {}
  for state in result.states.values():
    counts[state] = counts.get(state, 0) + 1
  print(f'sweep {args.workdir}: ' + ', '.join(f'{n} {s}' for s, n in sorted(counts.items()))
        + (f'; {len(result.locked)} held by another runner' if result.locked else ''))
  if not args.no_report:
    from experiments import publish, report  # pylint: disable=g-import-not-at-top
    path = report.write_report(args.workdir)
    print(f'report: {path}')
    publish.publish(args.workdir)   # to wandb, for the runs that log there
  return 1 if result.failed else 0


if __name__ == '__main__':
  sys.exit(main())
