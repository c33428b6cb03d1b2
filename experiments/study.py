"""``python -m experiments.study --config configs/studies/depth.py --workdir runs/depth [--parts a,b] [--workers N]``

A study is a family of sweeps that answers one question across tasks: each *part* is one task at one
comparison basis (``params``: every variant at the same parameter count; ``width``: every variant at
the same width), an ordinary sweep config whose axes include ``model.cell`` and ``model.depth``. This
command expands the study into its parts, validates every part it will run before anything trains,
writes ``study.json`` (so a study stopped in a later part still lists the earlier ones), then runs each
part's sweep in turn through ``experiments.run`` (so a part resumes: finished runs are skipped, and the
study can run one part, or one command, at a time), and writes the cross-task report.

A study config file has two functions:

* ``get_config()``: a ConfigDict with one group, ``study``: ``name``, ``tasks`` (the task axis: part
  labels, from the file's ``TASKS``; None: the file's ``default_tasks(study)``, else all), ``bases``
  (``'params'`` and/or ``'width'``), ``shallow_depth`` (the depth the others are compared with) and
  any keys of the file's own (``scale``);
* ``get_part(study, task, basis)``: the sweep config of one part, ``study`` being the ``study`` group
  as a dict (after the command line's ``--config.study.*`` overrides); None leaves that part out at
  these settings, and ``raise SkipPart('...')`` leaves it out with the one line that says why and how
  to enable it (e.g. its data is not here). A skipped part is named with its reason; one that
  ``--parts`` names is an error.

Overrides: ``--config.study.<key>=<value>`` set the study's keys (``--config.study.scale=full``); any
other ``--config.<key>=<value>`` applies to every part (``--config.train.num_steps=100``; a key that
is a part's axis narrows that axis, as in ``experiments.run``).

The study folder (what ``python -m experiments.report STUDY_DIR`` reads)::

  STUDY_DIR/study.json          {"name", "shallow_depth", "parts": [{"task", "basis", "path", "metric"?}]}
  STUDY_DIR/<task>-<basis>/     an ordinary sweep folder, as experiments.run writes it
  STUDY_DIR/configs/<task>-<basis>.py   the part's config as this command expanded it (what its runs
                                         were launched with; experiments.run and its workers load it)

Exit codes as ``experiments.run``: 0 every part done, 1 some run failed or was left unfinished, 2 a
mistake in the input (one line, before anything trains), 74 a full or read-only disk (one line; free
space and run the same command again), 130 interrupted (run the same command again).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import pprint
import re
import shlex
import sys
import time
from typing import Any, Callable, Sequence

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training.config import ConfigError
from experiments import cli
from experiments import run as run_lib
from experiments import sweep

STUDY_FILE = 'study.json'
BASES = ('params', 'width')
_STUDY_KEYS = ('name', 'tasks', 'bases', 'shallow_depth')


class SkipPart(Exception):
  """Raised by a study file's ``get_part``: the part does not run here; the message says why and the
  one thing that enables it (``part sst2 needs GLUE's SST-2/ folder ...; set DEEPRNN_SST2_DIR``)."""


@dataclasses.dataclass
class Part:
  """One part of a study: a task at one basis, its sweep config and its folder (relative to the study's)."""

  task: str
  basis: str
  config: Any  # ml_collections.ConfigDict, validated, the study's part overrides applied
  metric: str | None = None

  @property
  def name(self) -> str:
    return f'{self.task}-{self.basis}'

  @property
  def path(self) -> str:
    return self.name


def load_module(path: str):
  """Executes the study config file at ``path`` (once per process) and returns it as a module.

  Its imports register the tasks its parts use (``deeprnn_jax.tasks.register_task``), so every part
  config written by ``write_part_file`` loads it first.
  """
  if not os.path.isfile(path):
    raise ConfigError('', f'study config file {path!r} not found')
  name = 'deeprnn_study_' + re.sub(r'\W', '_', os.path.abspath(path))
  if name in sys.modules:
    return sys.modules[name]
  try:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [''])[0]
    raise ConfigError('', f'study config file {path!r} does not load: {type(e).__name__}: {first}') from e
  for fn in ('get_config', 'get_part'):
    if not callable(getattr(module, fn, None)):
      raise ConfigError('', f'{path!r} is not a study config: it has no {fn}() (see experiments/study.py)')
  sys.modules[name] = module
  return module


def expand(
  path: str, overrides: Sequence[str] = (), parts: Sequence[str] | None = None
) -> tuple[dict, list[Part], list[tuple[str, str]]]:
  """The study's settings, its parts (``parts``: only these, by task label or ``<task>-<basis>``) and
  the parts left out, each ``(name, reason)``.

  Each part's config is the file's ``get_part`` with the non-study ``overrides`` applied, validated as
  ``experiments.run`` validates a config. A part the file leaves out (None, or ``SkipPart``) is skipped
  with its reason unless ``parts`` names it. Raises ``ConfigError`` (one line) on any problem.
  """
  module = load_module(path)
  study_over, part_over = [], []
  for text in overrides:
    key, value = config_lib.parse_override(text)
    (study_over if key.startswith('study.') else part_over).append((key, value))
  study = config_lib.to_dict(module.get_config()).get('study')
  if not isinstance(study, dict):
    raise ConfigError('study', f'get_config() in {path!r} must return a config with a study group')
  for key, value in study_over:
    sub = key[len('study.') :]
    if sub not in study:
      raise ConfigError(key, f'unknown study key; the study has {", ".join(sorted(study))}')
    study[sub] = value
  for key in _STUDY_KEYS:
    if key not in study:
      raise ConfigError(f'study.{key}', 'missing from the study config')
  known = list(getattr(module, 'TASKS', study['tasks'] or ()))
  if study['tasks'] is None:  # the file's default for its other settings (e.g. its scale), else all it defines
    study['tasks'] = tuple(module.default_tasks(study) if callable(getattr(module, 'default_tasks', None)) else known)
  tasks = list(study['tasks'])
  for task in tasks:
    if task not in known:
      raise ConfigError('study.tasks', f'unknown task {task!r}; the study defines {", ".join(known)}')
  bases = list(study['bases'])
  for basis in bases:
    if basis not in BASES:
      raise ConfigError('study.bases', f'unknown basis {basis!r}; use {" or ".join(BASES)}')
  selected = None
  if parts is not None:
    names = {f'{t}-{b}' for t in tasks for b in bases} | set(tasks)
    unknown = [p for p in parts if p not in names]
    if unknown:
      raise ConfigError('', f'--parts: unknown part {unknown[0]!r}; the parts are {", ".join(sorted(names))}')
    selected = set(parts)
  out, skipped = [], []
  for task in tasks:
    for basis in bases:
      if selected is not None and task not in selected and f'{task}-{basis}' not in selected:
        continue
      where = f'study part {task}-{basis}'
      try:
        config = module.get_part(dict(study), task, basis)
        if config is None:
          raise SkipPart(f'the study leaves the {basis} basis out for {task} at these settings')
        config = config_lib.validate(config_lib.apply_overrides(config, part_over))
      except SkipPart as e:
        reason = ' '.join(str(e).split())
        if selected is not None and f'{task}-{basis}' in selected:
          raise ConfigError('', f'--parts {task}-{basis}: {reason}') from e
        skipped.append((f'{task}-{basis}', reason))
        continue
      except ConfigError as e:
        raise ConfigError('', f'{where}: {e}') from e
      except ValueError as e:  # the file's own message (missing data, a bad study key)
        raise ConfigError('', f'{where}: {runlog.one_line(e)}') from e
      except Exception as e:  # pylint: disable=broad-except  (a part the file cannot build: one line)
        raise ConfigError('', f'{where}: get_part failed: {type(e).__name__}: {runlog.one_line(e)}') from e
      axes = config_lib.flat_axes(config)
      for axis in ('model.cell', 'model.depth'):
        if axis not in axes:
          raise ConfigError('', f'{where}: a study part sweeps {axis}; add it to sweep.axes')
      if basis == 'params' and not config.sweep.param_budget:
        raise ConfigError('', f'{where}: basis params needs sweep.param_budget > 0')
      if basis == 'width' and config.sweep.param_budget:
        raise ConfigError('', f'{where}: basis width needs sweep.param_budget = 0 (the width is model.width)')
      out.append(Part(task, basis, config, config.report.metric))
  if not out:
    why = '; '.join(f'{name}: {reason}' for name, reason in skipped)
    raise ConfigError('', f'the study selects no part ({why or "check study.tasks, study.bases and --parts"})')
  return study, out, skipped


def check(parts: Sequence[Part], workdir: str, log: Callable[[str], None] | None = None) -> dict[str, list]:
  """Validates every part as ``experiments.run`` would before training: tasks built, widths solved to
  the budget (a depth the budget cannot reach fails here), the report's metric one the task reports,
  the part's folder free for this sweep. Returns each part's grid points; raises ``ConfigError``.
  ``log``: called with one line per part checked (building a real task's data and solving every
  width takes minutes on a large study, so the command shows where it is)."""
  tasks: dict = {}  # a task config shared by parts (both bases) is built once
  points = {}
  for i, part in enumerate(parts):
    start = time.monotonic()
    where = f'study part {part.name}'
    try:
      grid = sweep.expand(part.config, tasks=tasks)
      sweep.check_workdir(part.config, os.path.join(workdir, part.path), grid)
    except ConfigError as e:
      raise ConfigError('', f'{where}: {e}') from e
    except (FileNotFoundError, ValueError) as e:  # a task's data missing or malformed
      raise ConfigError('', f'{where}: {runlog.one_line(e)}') from e
    if part.metric:
      for point in grid:
        reported = sorted(set(point.task.metric_modes) | {'loss'})
        if part.metric not in reported:
          raise ConfigError(
            'report.metric',
            f'{where}: task {point.config.task.name!r} does not report {part.metric!r}; '
            f'it reports {", ".join(reported)}',
          )
    points[part.name] = grid
    if log:
      points_text = f'{len(grid)} grid point' + ('s' if len(grid) != 1 else '')
      log(f'checked part {i + 1}/{len(parts)} {part.name}: {points_text} ({time.monotonic() - start:.0f} s)')
  return points


def write_part_file(study_file: str, part: Part, workdir: str, overrides: Sequence[str]) -> str:
  """Writes ``workdir/configs/<part>.py``: a config file holding the part's expanded config, which
  first executes the study's config file (for the tasks it registers). Returns its path."""
  folder = os.path.join(workdir, 'configs')
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f'{part.name}.py')
  text = (
    f'"""Study part {part.name} of {os.path.abspath(study_file)}, written by experiments.study'
    f'{" with " + shlex.join(overrides) if overrides else ""}: the config its runs were launched with."""\n\n'
    'from experiments import study as _study\n\n'
    f'_study.load_module({os.path.abspath(study_file)!r})  # registers the tasks the study defines\n\n'
    f'CONFIG = {pprint.pformat(config_lib.to_dict(part.config), width=110, sort_dicts=True)}\n\n\n'
    'def get_config():\n'
    '  return CONFIG\n'
  )
  old = open(path, encoding='utf-8').read() if os.path.isfile(path) else None
  if old != text:
    with open(path + '.tmp', 'w', encoding='utf-8') as f:
      f.write(text)
    os.replace(path + '.tmp', path)
  return path


def write_study_file(workdir: str, study: dict, parts: Sequence[Part]) -> str:
  """Writes ``study.json`` (the report helper's contract): this command's parts, and those an earlier
  command of the same study ran (kept, by path, while their folder exists)."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, STUDY_FILE)
  damaged = os.path.lexists(path)
  old = runlog.read_record(path)  # a damaged study.json is set aside, with a warning; its parts are on disk
  if old is None:
    old = {'parts': _parts_on_disk(workdir) if damaged else []}
  entries = {}
  for p in old.get('parts', []) if isinstance(old.get('parts'), list) else []:
    if isinstance(p, dict) and os.path.isdir(os.path.join(workdir, str(p.get('path')))):
      entries[p['path']] = p
  for part in parts:
    entry = {'task': part.task, 'basis': part.basis, 'path': part.path}
    if part.metric:
      entry['metric'] = part.metric
    entries[part.path] = entry
  runlog.write_json(
    path, {'name': study['name'], 'shallow_depth': int(study['shallow_depth']), 'parts': list(entries.values())}
  )
  return path


def _parts_on_disk(workdir: str) -> list[dict]:
  """The parts earlier commands of a study ran, read off their folders (``<task>-<basis>/`` holding a
  sweep.json): what ``write_study_file`` rebuilds a damaged study.json from."""
  entries = []
  for name in sorted(os.listdir(workdir)):
    task, _, basis = name.rpartition('-')
    if not (task and basis in BASES and os.path.isdir(os.path.join(workdir, name))):
      continue
    record = runlog.read_json(os.path.join(workdir, name, sweep.SWEEP_FILE))
    if isinstance(record, dict):
      entry = {'task': task, 'basis': basis, 'path': name}
      config = record.get('config') if isinstance(record.get('config'), dict) else {}
      metric = (config.get('report') or {}).get('metric') if isinstance(config.get('report'), dict) else None
      entries.append({**entry, 'metric': metric} if metric else entry)
  return entries


def write_report(workdir: str) -> str | None:
  """The cross-task report, if the report package has one (``write_study_report``); else None."""
  try:
    report = importlib.import_module('experiments.report')
  except ImportError:
    return None
  writer = getattr(report, 'write_study_report', None)
  return writer(workdir) if callable(writer) else None


def main(argv: Sequence[str] | None = None, on_event=None) -> int:
  """The command line. ``on_event``: the trainer's event hook, for tests (when a part trains in this process)."""
  parser = cli.make_parser(cli.command('study'), __doc__.split('\n')[0].strip('`'))
  parser.add_argument('--config', required=True, help='a study config file (get_config() and get_part())')
  parser.add_argument('--workdir', required=True, help='the study folder: one sweep folder per part')
  parser.add_argument('--parts', default=None, help='only these parts: task labels or <task>-<basis>, comma-separated')
  parser.add_argument('--workers', type=run_lib._workers, default=None, metavar='N|auto', help='as experiments.run')
  parser.add_argument('--launcher', choices=('local', 'slurm'), default=None, help='as experiments.run')
  parser.add_argument(
    '--dry-run', action='store_true', help="validate and list every part's runs; train nothing (writes configs/ only)"
  )
  parser.add_argument('--no-report', action='store_true', help="write no report (neither the parts' nor the study's)")
  from_cli = argv is None
  argv = list(sys.argv[1:] if argv is None else argv)
  args, rest = parser.parse_known_args(argv)
  overrides = []
  for arg in rest:
    if not arg.startswith('--config.'):
      print(f'error: unrecognized argument {arg!r}; overrides look like --config.train.num_steps=100', file=sys.stderr)
      return cli.EXIT_USAGE
    overrides.append(arg[len('--config.') :])
  again = f'{cli.command("study")} {cli.shell_join(argv)}'
  try:
    study, parts, skipped = expand(args.config, overrides, _parse_parts(args.parts))
    for name, reason in skipped:
      print(f'skipped part {name}: {reason}', flush=True)
    check(parts, args.workdir, log=lambda line: print(line, flush=True))
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return cli.EXIT_USAGE
  except KeyboardInterrupt:
    print('stopped while checking the parts; nothing was trained or written', file=sys.stderr)
    return cli.EXIT_INTERRUPTED
  part_overrides = [o for o in overrides if not config_lib.parse_override(o)[0].startswith('study.')]
  print(f'study {study["name"]}: {len(parts)} part{"s" if len(parts) > 1 else ""} ({", ".join(p.name for p in parts)})')
  if not args.dry_run:  # first, so a study stopped in a later part (or reported while it runs) lists every part
    try:
      print(f'study: {write_study_file(args.workdir, study, parts)}')
    except OSError as e:
      if not runlog.storage_problem(e):
        raise
      print(f'error: {runlog.storage_problem(e)}: {again}', file=sys.stderr)
      return cli.EXIT_STORAGE
  codes = {}
  for i, part in enumerate(parts):
    file = write_part_file(args.config, part, args.workdir, part_overrides)
    run_argv = ['--config', file, '--workdir', os.path.join(args.workdir, part.path)]
    workers = args.workers or ('auto' if from_cli and not args.launcher else None)  # experiments.run's default
    run_argv += ['--workers', str(workers)] if workers else []
    run_argv += ['--launcher', args.launcher] if args.launcher else []
    run_argv += ['--dry-run'] if args.dry_run else []
    run_argv += ['--no-report'] if args.no_report else []
    print(f'[part {i + 1}/{len(parts)}] {part.name}: {cli.command("run")} {cli.shell_join(run_argv)}', flush=True)
    code = run_lib.main(run_argv, on_event)
    codes[part.name] = code
    if code in (cli.EXIT_INTERRUPTED, cli.EXIT_USAGE, cli.EXIT_STORAGE):  # stopped, refused, or a full disk
      print(f'study stopped in part {part.name}; run the same command again to resume: {again}', file=sys.stderr)
      return code
  if args.dry_run:
    return max(codes.values())
  if not args.no_report and not args.launcher:
    try:
      report = write_report(args.workdir)
    except (FileNotFoundError, ValueError) as e:  # the report's one-line refusal (the runs stay as they are)
      print(f'study report: not written: {runlog.one_line(e)}', file=sys.stderr)
    except (KeyboardInterrupt, OSError) as e:  # Ctrl-C, or a full disk: every part is done, only the report is not
      if isinstance(e, OSError) and not runlog.storage_problem(e):
        raise
      why = 'stopped' if isinstance(e, KeyboardInterrupt) else runlog.storage_problem(e).split(';')[0]
      print(
        f'study report: not written ({why}); every part is done and kept; write it with: '
        f'{cli.command("report")} {args.workdir}',
        file=sys.stderr,
      )
      return cli.EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) else cli.EXIT_STORAGE
    else:
      print(f'study report: {report}' if report else 'study report: skipped (no experiments.report.write_study_report)')
  failed = [name for name, code in codes.items() if code]
  if failed:
    print(
      f'parts with failed or unfinished runs: {", ".join(failed)}; run the same command again to resume: {again}',
      file=sys.stderr,
    )
    return 1
  return 0


def _parse_parts(text: str | None) -> list[str] | None:
  if text is None:
    return None
  return [p.strip() for p in text.split(',') if p.strip()]


if __name__ == '__main__':
  sys.exit(main())
