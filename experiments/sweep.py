"""Sweeps: a config's grid of runs, parameter matching, resumable scheduling, and wandb sweeps.

* ``load_config(path, overrides)``: the config file's ``get_config()`` with command-line overrides,
  validated.
* ``expand(config)``: the grid, the product of ``sweep.axes``, as ``GridPoint``s (one per variant;
  its seeds are ``sweep.seeds``). With ``sweep.param_budget`` the width of every variant is solved so
  that its parameter count is within ``sweep.param_tolerance`` of the budget (Collins et al. 2017).
  Parameter counts come from ``jax.eval_shape`` of the model's init: no compute, no memory.
* ``run_sweep(config, workdir)``: trains every run that is not done yet, the costliest grid points
  first (``start_order``: several runners then finish together instead of waiting on the largest point,
  and run names stay the grid's, so a resumed sweep trains the same runs). The seeds of a grid point
  train together as one program (``sweep.seed_program``: vmapped, or looped inside the program
  on CPU; one by one if that runs out of memory). A runner holds each run's lock
  (``experiments/locks.py``) while it trains it, so several runners on one workdir split the grid
  between them and never train a run twice; a runner that dies (even by ``kill -9``) holds nothing.
  JAX's persistent compilation cache is on, so a rerun (or
  the next variant with the same shapes) skips XLA compilation.
* ``export_wandb_sweep`` / ``python -m experiments.sweep agent ...``: the same grid as a wandb sweep
  file, and the entry point ``wandb agent`` launches for each of its runs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import math
import os
import re
import sys
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import identity
from deeprnn_jax.training import runlog
from deeprnn_jax.training import parallel
from deeprnn_jax.training import build
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.training.config import ConfigError
from experiments import sweep_status
from experiments.locks import RunLock

_log = logging.getLogger(__name__)

SWEEP_FILE = 'sweep.json'
WANDB_SWEEP_FILE = 'wandb_sweep.yaml'


# ----------------------------------------------------------------------------------------------
# Loading.


load_config = config_lib.load  # the config file's get_config() with overrides, validated


# ----------------------------------------------------------------------------------------------
# The grid.


@dataclasses.dataclass(frozen=True, eq=False)
class GridPoint:
  """One variant of the sweep: its axis values, its resolved config, and its seeds.

  ``config`` is the run config of the first seed; ``run_config(seed)`` gives any seed's.
  """

  values: tuple[tuple[str, Any], ...]
  config: ml_collections.ConfigDict
  seeds: tuple[int, ...]
  params: int
  task: Any = dataclasses.field(default=None, repr=False)  # built once per distinct task config

  @property
  def variant(self) -> str:
    """The run-id stem: cell, depth, width(s), then every other axis, e.g. ``lstm-d2-w64-lr0.001``."""
    parts = [build.variant_name(self.config)]
    for key, value in self.values:
      if key in ('model.cell', 'model.depth', 'model.width', 'model.top_width'):
        continue
      short = {'sweep.param_budget': 'p', 'optim.learning_rate': 'lr'}.get(key, key.split('.')[-1])
      parts.append(f'{short}{_label(value)}')
    return '-'.join(parts)

  def run_id(self, seed: int) -> str:
    return f'{self.variant}-s{seed}'

  def run_config(self, seed: int) -> ml_collections.ConfigDict:
    d = config_lib.to_dict(self.config)
    d['train']['seed'] = seed
    return config_lib.from_dict(d)


def _label(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    text = 'x'.join(_label(v) for v in value) or 'none'
  elif isinstance(value, dict):
    text = '_'.join(f'{k}{_label(v)}' for k, v in sorted(value.items())) or 'none'
  else:
    text = str(value)
  return re.sub(r'[^A-Za-z0-9.]+', '_', text).strip('_') or 'none'


def _closest(count: Callable[[int], int | None], budget: int) -> tuple[int, int] | None:
  """The integer x >= 1 whose ``count(x)`` is closest to ``budget``, for a count quadratic in x.

  Three counts fix the quadratic; its rounded root and the neighbours are then counted exactly.
  ``count(x)`` is None where the model refuses width x (a cell whose heads must divide it, RoPE's
  even head width): the search then widens until it has a valid width on each side of the root.
  None if the model refuses one of the three widths that fix the quadratic.
  """
  pts = [(x, count(x)) for x in (8, 16, 32)]
  if any(y is None for _, y in pts):
    return None
  (x0, y0), (x1, y1), (x2, y2) = pts
  a = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
  b = (y1 - y0) / (x1 - x0) - a * (x0 + x1)
  c = y0 - a * x0 * x0 - b * x0
  if a > 0:
    root = (-b + math.sqrt(max(b * b - 4 * a * (c - budget), 0.0))) / (2 * a)
  else:
    root = (budget - c) / b if b > 0 else 1.0
  guess = max(1, int(round(root)))
  counts = dict(pts)
  for radius in range(1, 65):
    for x in {max(1, guess - radius + 1), guess + radius - 1}:
      if x not in counts:
        counts[x] = count(x)
    valid = [x for x, y in counts.items() if y is not None]
    if any(x <= guess for x in valid) and any(x >= guess for x in valid) and radius >= 2:
      break
  best = min((x for x in counts if counts[x] is not None), key=lambda x: (abs(counts[x] - budget), x))
  return best, counts[best]


def solve_width(config: ml_collections.ConfigDict, task, budget: int, tolerance: float) -> tuple[int, int | None, int]:
  """Widths whose parameter count is closest to ``budget``: ``(width, top_width or None, count)``.

  The count of a network of uniform width w is a quadratic in w, so three counts fix it (see
  ``_closest``). One unit of width moves the count by about 2/w of itself, too coarse for 2% when
  deep networks are narrow; then the last layer's width (``model.top_width``) is solved too, for
  the uniform widths around the solution, which moves the count in steps about ``depth`` times
  finer. Raises ``ConfigError`` if even that misses by more than ``tolerance``.
  """

  def count(width: int, top: int | None = None) -> int | None:
    d = config_lib.to_dict(config)
    d['model']['width'], d['model']['top_width'] = width, top
    try:
      return build.param_count(config_lib.from_dict(d), task)
    except ConfigError as e:
      if e.key == 'model':  # a width this model refuses
        return None
      raise

  closest = _closest(count, budget)
  if closest is None:
    raise ConfigError(
      'sweep.param_budget',
      f'{config.model.cell} refuses one of the widths 8, 16, 32 that '
      'fix its parameter count (check its cell_kwargs, e.g. num_heads); '
      'set model.width instead of a budget',
    )
  width, n = closest
  best = (width, None, n)
  if abs(n - budget) / budget > tolerance and config.model.depth > 1:
    for base in {max(1, width - 1), width, width + 1}:
      top = _closest(functools.partial(count, base), budget)  # None: the model refuses width `base`
      if top is not None and abs(top[1] - budget) < abs(best[2] - budget):
        best = (base, None if top[0] == base else top[0], top[1])
  if abs(best[2] - budget) / budget > tolerance:
    m = config.model
    raise ConfigError(
      'sweep.param_budget',
      f'{budget} parameters cannot be matched within {tolerance:.0%} for {m.cell} depth '
      f'{m.depth}: the closest (width {best[0]}, top width {best[1] or best[0]}) has '
      f'{best[2]}; try another budget or raise sweep.param_tolerance',
    )
  return best


def expand(config: ml_collections.ConfigDict, *, tasks: dict | None = None) -> list[GridPoint]:
  """Every grid point of ``config`` (validated, widths solved, tasks built once per task config)."""
  config = config_lib.validate(config)
  axes = config_lib.flat_axes(config)
  tasks = {} if tasks is None else tasks
  points, seen = [], {}
  for combo in itertools.product(*axes.values()) if axes else [()]:
    d = config_lib.to_dict(config)
    for key, value in zip(axes, combo):
      config_lib.set_path(d, key, value)
    budget, tolerance = d['sweep']['param_budget'], d['sweep']['param_tolerance']
    # A run's config keeps only what decides its numbers; the sweep's own shape stays in sweep.json.
    d['sweep'] = {'param_budget': budget, 'param_tolerance': tolerance}
    run = config_lib.validate(d)
    task_key = identity.fingerprint(config_lib.to_dict(run.task))
    if task_key not in tasks:
      tasks[task_key] = build.task_from_config(run)
    task = tasks[task_key]
    build.check_task_config(run, task)
    if budget:
      d['model']['width'], d['model']['top_width'], params = solve_width(run, task, budget, tolerance)
      run = config_lib.validate(d)
    else:
      params = build.param_count(run, task)
    point = GridPoint(
      values=tuple(zip(axes, combo)), config=run, seeds=tuple(config.sweep.seeds), params=params, task=task
    )
    if point.variant in seen:
      raise ConfigError(
        'sweep.axes',
        f'two grid points get the run name {point.variant!r} '
        f'({dict(seen[point.variant])} and {dict(point.values)}); '
        'make their values distinct',
      )
    seen[point.variant] = point.values
    points.append(point)
  return points


def estimated_cost(point: GridPoint) -> float:
  r"""A grid point's training work, in arbitrary units, to start the longest points first.

  .. math:: \text{cost} = P \cdot \text{num\_steps} \cdot \text{batch\_size} \cdot T \cdot S

  with :math:`P` the point's parameter count (about depth :math:`\times` width² for the classic cells), :math:`T`
  the task's training length and :math:`S` its number of seeds: the multiply-adds of training, up to a
  constant. It ranks points; it does not predict seconds (on CPU a small model's time is more the number
  of steps through its layers than its width, which the parameter count still orders by depth).
  """
  t = point.config.train
  seq_len = getattr(point.task, 'seq_len', None) or 1
  return float(point.params) * t.num_steps * t.batch_size * seq_len * len(point.seeds)


def start_order(points: Sequence[GridPoint]) -> list[GridPoint]:
  """The grid points in the order a runner starts them: the costliest first (``estimated_cost``; ties keep
  the grid's order).

  Several runners (workers, jobs) on one workdir each take the next point nobody holds, so longest-first
  keeps the largest point from training alone at the end while the other cores idle. Only the order
  changes: run names, seeds and configs are the grid's, and a run is done or not by its own status, so
  a resumed sweep, with any number of runners, trains exactly the runs it would have in grid order.
  """
  return sorted(points, key=estimated_cost, reverse=True)  # sorted() is stable: ties in grid order


# ----------------------------------------------------------------------------------------------
# Running.


def enable_compilation_cache(directory: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache (``$JAX_COMPILATION_CACHE_DIR`` if set).

  The cache only saves time: a folder that cannot be made (a read-only home) is a warning, not a
  failure. Returns the folder, or None if the cache is off.
  """
  directory = (
    directory
    or os.environ.get('JAX_COMPILATION_CACHE_DIR')
    or os.path.join(os.path.expanduser('~'), '.cache', 'deeprnn_jax', 'xla')
  )
  try:
    os.makedirs(directory, exist_ok=True)
  except OSError as e:
    _log.warning('no compilation cache (%s); every program is compiled anew', runlog.one_line(e))
    return None
  jax.config.update('jax_compilation_cache_dir', directory)
  # Small recurrent programs compile in well under JAX's default 1 s threshold; cache them too.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)
  return directory


def check_workdir(config: ml_collections.ConfigDict, workdir: str, points: Sequence[GridPoint]) -> None:
  """Refuses (``ConfigError``) a workdir that is not writable or that holds a different sweep."""
  workdir = os.path.abspath(workdir)
  probe = workdir
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
    raise ConfigError('', f'workdir {workdir!r} is not writable')
  old = runlog.read_record(os.path.join(workdir, SWEEP_FILE), set_aside=False)  # a damaged one: write_sweep_file
  if old and 'config' in old:
    problem = identity.continuation_problem(old['config'], config)
    if problem:
      raise ConfigError('', f'workdir {workdir!r} holds a different sweep ({problem}); use another --workdir')
  for point in points:
    for seed in point.seeds:
      run_dir = os.path.join(workdir, point.run_id(seed))
      if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(
          '',
          f'{run_dir!r} should be the folder of run {point.run_id(seed)!r} but is a file; '
          'move it away or use another --workdir',
        )
      old = runlog.RunFolder(run_dir).read_config()
      problem = isinstance(old, dict) and identity.continuation_problem(old, point.run_config(seed))
      if problem:
        raise ConfigError(
          '', f'run folder {point.run_id(seed)!r} in {workdir!r} holds another run ({problem}); use another --workdir'
        )


def write_sweep_file(
  config: ml_collections.ConfigDict, workdir: str, points: Sequence[GridPoint], config_file: str | None = None
) -> None:
  """Writes ``sweep.json``: the sweep's config, axes and runs, and the config file it came from (which
  ``load_run`` executes again for a task the file registers)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, SWEEP_FILE)
  old = runlog.read_record(path) or {}  # a damaged sweep.json is set aside, with a warning
  runs = {r['run_id']: r for r in old.get('runs', []) if isinstance(r, dict) and 'run_id' in r}
  for p in points:
    for seed in p.seeds:
      runs[p.run_id(seed)] = {
        'run_id': p.run_id(seed),
        'variant': p.variant,
        'seed': seed,
        'point': dict(p.values),
        'width': p.config.model.width,
        'top_width': p.config.model.top_width,
        'params': p.params,
      }
  runlog.write_json(
    path,
    {
      'name': os.path.basename(os.path.abspath(workdir)),
      'config': config_lib.to_dict(config),
      'axes': config_lib.flat_axes(config),
      'runs': list(runs.values()),
      'config_file': os.path.abspath(config_file) if config_file else old.get('config_file'),
      'created_at': old.get('created_at', time.time()),
    },
  )


def _is_out_of_memory(e: BaseException) -> bool:
  return 'RESOURCE_EXHAUSTED' in str(e) or 'Out of memory' in str(e)


@dataclasses.dataclass
class SweepResult:
  """What one ``run_sweep`` call did, run ids by outcome."""

  trained: list[str] = dataclasses.field(default_factory=list)
  skipped: list[str] = dataclasses.field(default_factory=list)  # already done
  locked: list[str] = dataclasses.field(default_factory=list)  # another runner holds them
  failed: dict[str, str] = dataclasses.field(default_factory=dict)
  states: dict[str, str] = dataclasses.field(default_factory=dict)


def run_sweep(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  should_stop: Callable[[], bool] | None = None,
  select: Callable[[GridPoint, int], bool] | None = None,
  seeds_together: bool | None = None,
  echo: Callable[[str], None] = print,
  on_event: train_lib.EventHook | None = None,
  facts: dict | None = None,
  config_file: str | None = None,
  points: Sequence[GridPoint] | None = None,
) -> SweepResult:
  """Trains every run of the grid that is not done yet; see the module docstring.

  Everything is validated (configs, tasks, parameter matching, the workdir) before anything is
  written or trained. ``select(point, seed)`` limits the runs (the wandb agent trains one).
  Raises ``Interrupted`` (after checkpointing) when ``should_stop()`` turns true. ``on_event``: the
  trainer's hook (``train.EventHook``), also called as ``('point', n)`` before the n-th grid point.
  ``facts``: how the sweep is launched (``train.train_seeds``), kept in each run's status.json.
  ``config_file``: the file ``config`` was loaded from, recorded in sweep.json. ``points``: the grid, if
  the caller has expanded it already (``experiments.tune``: each variant at its own tuned setting).
  """
  should_stop = should_stop or (lambda: False)
  on_event = on_event or (lambda name, step: None)
  enable_compilation_cache()  # first: building the tasks compiles their data generators
  points = expand(config) if points is None else points
  check_workdir(config, workdir, points)
  write_sweep_file(config, workdir, points, config_file)
  together = config.sweep.seed_program != 'separate' if seeds_together is None else seeds_together
  seed_program = parallel.resolve_seed_program(config.sweep.seed_program)
  how = f' in one program ({seed_program})'
  result = SweepResult()
  total = len(points)
  resume_line = sweep_status.resume_summary(points, workdir)
  if resume_line:
    echo(resume_line)
  code_line = runlog.code_change(os.path.join(workdir, p.run_id(s)) for p in points for s in p.seeds)
  if code_line:
    echo(code_line)
  progress = sweep_status.SweepProgress(points, workdir)
  for n, point in enumerate(start_order(points), 1):
    on_event('point', n)
    if should_stop():
      raise train_lib.Interrupted(f'interrupted before {point.variant}; run the same command again to resume')
    seeds = [s for s in point.seeds if select is None or select(point, s)]
    locks = _claim(point, seeds, workdir, result)
    if not locks:
      continue
    try:
      mine = list(locks)
      groups = [mine] if together and len(mine) > 1 else [[s] for s in mine]
      while groups:
        group = groups.pop(0)
        ids = [point.run_id(s) for s in group]
        echo(
          f'[{n}/{total}] {point.variant} ({point.params} params): seed{"s" if len(group) > 1 else ""} '
          f'{", ".join(map(str, group))}{how if len(group) > 1 else ""}'
        )
        try:
          statuses = train_lib.train_seeds(
            [point.run_config(s) for s in group],
            [os.path.join(workdir, i) for i in ids],
            should_stop=should_stop,
            task=point.task,
            seed_program=seed_program,
            on_event=on_event,
            facts=facts,
          )
        except train_lib.Interrupted:
          raise
        except ConfigError:
          raise
        except Exception as e:  # pylint: disable=broad-except
          if runlog.storage_problem(e):  # a full or read-only disk: every next run would fail the same way
            raise
          if len(group) > 1 and _is_out_of_memory(e):
            echo(f'  out of memory with {len(group)} seeds in one program; training them one by one')
            groups = [[s] for s in group] + groups
            continue
          msg = runlog.one_line(e)
          echo(f'  failed: {msg}')
          for i in ids:
            result.failed[i] = msg
            result.states[i] = 'failed'
          continue
        for i, status in zip(ids, statuses):
          result.trained.append(i)
          result.states[i] = status['state']
          if status['state'] == 'diverged':
            echo(f'  {i}: diverged at step {status.get("diverged_step")}')
        echo(progress.line())
    finally:
      for lock in locks.values():
        lock.release()
  return result


def _claim(point: GridPoint, seeds: Sequence[int], workdir: str, result: SweepResult) -> dict[int, RunLock]:
  """Locks the runs of ``point`` that are not done yet, in seed order: ``{seed: lock}``.

  A run is done if its status says so; that is read again once its lock is held, since another
  runner may have finished it in between. The first run found locked means another runner is on
  this grid point: the point's remaining runs are left to it too, so the seeds of a point stay
  together in one group (and follow exactly the trajectory they would in one runner).
  """
  locks, steps = {}, point.config.train.num_steps
  for i, seed in enumerate(seeds):
    run_id = point.run_id(seed)
    run_dir = os.path.join(workdir, run_id)
    if not _done_state(run_dir, steps):
      lock = RunLock(runlog.RunFolder(run_dir).lock)
      if not lock.acquire():
        result.locked += [
          point.run_id(s) for s in seeds[i:] if not _done_state(os.path.join(workdir, point.run_id(s)), steps)
        ]
        break
      if not _done_state(run_dir, steps):
        locks[seed] = lock
        continue
      lock.release()
    result.skipped.append(run_id)
    result.states[run_id] = _done_state(run_dir, steps)
  return locks


def _done_state(run_dir: str, num_steps: int) -> str | None:
  """The run's state if it is done (``runlog.is_done``), else None."""
  status = runlog.read_status(run_dir)
  return status['state'] if runlog.is_done(status, num_steps) else None


# ----------------------------------------------------------------------------------------------
# wandb sweeps.


def wandb_sweep_config(
  config: ml_collections.ConfigDict, config_path: str, workdir: str, overrides: Sequence[str] = ()
) -> dict:
  """The grid as a wandb sweep (method ``grid``); each wandb run trains one (point, seed).

  The command re-creates the same base config (the file and the overrides) and passes the point as
  ``--<axis>=<value>`` arguments (wandb's ``${args}``) to ``python -m experiments.sweep agent``.
  """
  axes = config_lib.flat_axes(config)
  parameters = {k: {'values': [list(v) if isinstance(v, tuple) else v for v in vals]} for k, vals in axes.items()}
  parameters['train.seed'] = {'values': list(config.sweep.seeds)}
  command = [
    '${env}',
    '${interpreter}',
    '-m',
    'experiments.sweep',
    'agent',
    '--config',
    config_path,
    '--workdir',
    workdir,
    *[f'--config.{o}' if not o.startswith('config.') else f'--{o}' for o in overrides],
    '${args}',
  ]
  name = os.path.basename(os.path.abspath(workdir))
  return {
    'name': name,
    'program': 'experiments/sweep.py',
    'method': 'grid',
    'metric': {'name': 'val/loss', 'goal': 'minimize'},
    'parameters': parameters,
    'command': command,
  }


def export_wandb_sweep(
  config, config_path: str, workdir: str, overrides: Sequence[str] = (), path: str | None = None
) -> str:
  """Writes the wandb sweep file (``<workdir>/wandb_sweep.yaml``); returns its path."""
  import yaml  # pylint: disable=g-import-not-at-top  (a dependency of wandb)

  expand(config)  # the same validation as a local sweep, before writing anything
  path = path or os.path.join(workdir, WANDB_SWEEP_FILE)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  text = yaml.safe_dump(wandb_sweep_config(config, config_path, workdir, overrides), sort_keys=False)
  runlog.atomic_write_text(path, text)
  return path


def parse_point_args(args: Sequence[str], axes: dict[str, list]) -> tuple[dict[str, Any], int | None]:
  """wandb's ``--<axis>=<value>`` arguments -> ``({axis: value}, seed)``; values parsed as literals."""
  values, seed = {}, None
  for arg in args:
    key, value = config_lib.parse_override(arg.lstrip('-'))
    if key == 'train.seed':
      seed = value
    elif key in axes:
      values[key] = value
    else:
      raise ConfigError(key, f'is not an axis of this sweep; axes: {", ".join(list(axes) + ["train.seed"])}')
  missing = [k for k in axes if k not in values]
  if missing:
    raise ConfigError(missing[0], 'no value given for this sweep axis')
  return values, seed


def _same(a, b) -> bool:
  return json.dumps(a, sort_keys=True, default=list) == json.dumps(b, sort_keys=True, default=list)


def agent_select(config: ml_collections.ConfigDict, args: Sequence[str]) -> Callable[[GridPoint, int], bool]:
  """A ``select`` for ``run_sweep`` that keeps the single (point, seed) named by ``args``."""
  axes = config_lib.flat_axes(config)
  values, seed = parse_point_args(args, axes)
  for key, value in values.items():
    if not any(_same(value, v) for v in axes[key]):
      raise ConfigError(key, f'value {value!r} is not on this sweep axis; values: {axes[key]}')
  if seed is not None and seed not in config.sweep.seeds:
    raise ConfigError('train.seed', f'seed {seed!r} is not in sweep.seeds {list(config.sweep.seeds)}')

  def select(point: GridPoint, s: int) -> bool:
    return all(_same(dict(point.values)[k], v) for k, v in values.items()) and (seed is None or s == seed)

  return select


def main(argv: Sequence[str] | None = None) -> int:
  """``python -m experiments.sweep {export,agent} --config FILE --workdir DIR [--config.k=v ...]``."""
  from experiments import cli  # pylint: disable=g-import-not-at-top

  parser = cli.make_parser('python -m experiments.sweep', __doc__.split('\n')[0])
  parser.add_argument(
    'command',
    choices=('export', 'agent'),
    help='export: write the wandb sweep file; agent: train one run (what `wandb agent` calls)',
  )
  parser.add_argument('--output', default=None, help='export: where to write the sweep file')
  return cli.main_with(parser, argv, _sweep_command)


def _sweep_command(args, config, overrides, should_stop) -> int:
  if args.command == 'export':
    if args.point_args:
      raise ConfigError('', f'unrecognized arguments {args.point_args}; overrides look like --config.model.depth=4')
    path = export_wandb_sweep(config, args.config, args.workdir, overrides, args.output)
    print(f'wrote {path}\nstart it with: wandb sweep {path}   then on each machine: wandb agent <sweep id>')
    return 0
  result = run_sweep(
    config, args.workdir, should_stop=should_stop, select=agent_select(config, args.point_args), seeds_together=False
  )
  return 1 if result.failed else 0


if __name__ == '__main__':
  sys.exit(main())
