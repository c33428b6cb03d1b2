"""``deeprnn``: the runner's commands from any folder, in a checkout's install or from the wheel.

  deeprnn run quickstart --workdir runs/q           # = python -m experiments.run --config configs/quickstart.py ...
  deeprnn run my_config.py --workdir runs/mine --config.train.num_steps=100
  deeprnn study studies/depth --workdir runs/depth --parts mqar
  deeprnn report runs/q
  deeprnn configs                                   # the built-in config names
  cp "$(deeprnn configs text_classification)" mine.py   # a copy of one to edit

``deeprnn COMMAND ARGS`` runs ``main()`` of ``experiments.COMMAND`` with ``ARGS`` as they are, so every
flag, override and exit code is that command's; the one change: for ``run``, ``study`` and ``tune`` the
config (``--config X``, or ``X`` first) is a file, or else a built-in name (``configs/<name>.py``). The
commands' usage lines and "run the same command again" hints then say ``deeprnn run`` (``experiments.cli.command``).

Where the runner is (``runner_root``): the wheel carries ``experiments/`` and ``configs/`` under
``deeprnn_jax/_runner/`` (pyproject.toml maps them there); an editable install (or ``PYTHONPATH`` set to a
checkout) finds them beside the ``deeprnn_jax`` folder. The wheel installs no top-level ``experiments``
(a name other projects use too); instead this command puts that folder first on ``sys.path`` and on the
``PYTHONPATH`` of the processes it starts (workers, SLURM and local jobs run ``python -m experiments.*``),
so ``import experiments`` resolves to the runner of this install, in this process and its children.

This is the one module of the package that reaches the runner (by name, after ``use_runner``); the library
never imports it, and ``import deeprnn_jax`` does not import this module.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import os
import pathlib
import re
import sys
from typing import Sequence

EXIT_USAGE = 2
_HERE = pathlib.Path(__file__).resolve().parent

# name -> (module whose main() it runs, whether it takes a config, one line for --help)
COMMANDS = {
  'run': ('experiments.run', True, "train a config's sweep (its grid over seeds), then write its report"),
  'study': ('experiments.study', True, 'run a study config: one sweep per task and basis, then the cross-task report'),
  'tune': ('experiments.tune', True, 'tune every variant of a config with Optuna, then train the chosen settings'),
  'evaluate': ('experiments.evaluate', False, 'evaluate trained runs on any split, or on a task rebuilt with options'),
  'report': ('experiments.report', False, 'write (again) the report of a sweep folder or of a study folder'),
  'prepare': ('experiments.prepare', False, 'download and prepare TFDS datasets once, for the tasks that read them'),
  'configs': (None, False, 'list the built-in configs (a name works as a config file); configs NAME: its file'),
}


class UsageError(Exception):
  """A mistake on the command line: printed as ``error: <message>``, exit code 2."""


def runner_root() -> pathlib.Path | None:
  """The folder that holds ``experiments/`` and ``configs/``: the wheel's copy, else the checkout's."""
  for root in (_HERE / '_runner', _HERE.parent):
    if (root / 'experiments' / '__init__.py').is_file() and (root / 'configs').is_dir():
      return root
  return None


def _root() -> pathlib.Path:
  root = runner_root()
  if root is None:
    raise UsageError(
      f'this install of deeprnn_jax ({_HERE}) has no runner: install the wheel or a checkout (pip install -e .)'
    )
  return root


def use_runner() -> pathlib.Path:
  """Makes ``import experiments`` import this install's runner, here and in the processes started from here.

  As ``python -m`` does, the current folder is importable too (``prepare --import MODULE``, a config's own
  modules), after the runner, so that a folder of one's own named ``experiments`` does not hide it. The child
  processes get the same order through ``PYTHONPATH``; ``PYTHONSAFEPATH=1`` stops their ``python -m`` from
  putting the current folder first (Python >= 3.11). Returns the runner's folder.
  """
  root = str(_root())
  loaded = sys.modules.get('experiments')
  where = getattr(loaded, '__file__', None)
  if loaded is not None and (where is None or pathlib.Path(where).resolve().parent != _root() / 'experiments'):
    raise UsageError(f'another module named experiments is imported already ({where}); run deeprnn in a fresh process')
  for i, path in enumerate([root, os.getcwd()]):
    if path in sys.path:
      sys.path.remove(path)
    sys.path.insert(i, path)
  old = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p and p not in (root, os.getcwd())]
  os.environ['PYTHONPATH'] = os.pathsep.join([root, os.getcwd(), *old])
  os.environ['PYTHONSAFEPATH'] = '1'
  return pathlib.Path(root)


def builtin_configs() -> dict[str, pathlib.Path]:
  """The built-in configs, ``{name: file}``: ``configs/studies/depth.py`` is ``studies/depth``."""
  folder = _root() / 'configs'
  files = sorted(p for p in folder.rglob('*.py') if not p.name.startswith('_') and '__pycache__' not in p.parts)
  return {p.relative_to(folder).with_suffix('').as_posix(): p for p in files}


def config_path(name: str) -> str:
  """A config file as given when it exists, else the built-in config of that name (``quickstart``,
  ``studies/depth``; ``configs/quickstart.py`` too, as the docs write it in a checkout). ``UsageError``
  otherwise, in one line naming the built-in configs."""
  if os.path.isfile(name):
    return name
  known = builtin_configs()
  key = re.sub(r'\.py$', '', re.sub(r'^(\./)?configs/', '', name))
  if key in known:
    return str(known[key])
  close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
  close += [k for k in known if k.rsplit('/', 1)[-1] == key and k not in close]
  hint = f' (did you mean {" or ".join(repr(c) for c in close)}?)' if close else ''
  raise UsageError(f'no config file or built-in config {name!r}{hint}; built-in configs: {", ".join(known)}')


def resolve_config(args: Sequence[str]) -> list[str]:
  """``args`` of ``run``, ``study`` or ``tune`` with the config as ``--config FILE``: a first argument that is
  not an option is the config (``deeprnn run quickstart ...``), and ``--config NAME`` names a built-in config
  when NAME is not a file. The one place built-in names are read; everything else is passed on unchanged."""
  args = list(args)
  if args and not args[0].startswith('-'):
    if any(a == '--config' or a.startswith('--config=') for a in args[1:]):
      raise UsageError(f'the config is given twice: {args[0]!r} and --config; give one')
    args = ['--config', *args]
  for i, arg in enumerate(args):
    if arg == '--config' and i + 1 < len(args):
      args[i + 1] = config_path(args[i + 1])
      break
    if arg.startswith('--config='):
      args[i] = '--config=' + config_path(arg[len('--config=') :])
      break
  return args


def describe(path: pathlib.Path) -> str:
  """A config file's first sentence (its docstring, read without running it), at most 100 characters."""
  try:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding='utf-8'))) or ''
  except (OSError, SyntaxError, ValueError):
    return ''
  text = ' '.join(doc.split('\n\n')[0].split())
  text = re.split(r'(?<=[.?!])\s', text)[0]
  return text if len(text) <= 100 else text[:97] + '...'


def usage() -> str:
  width = max(map(len, [*COMMANDS, '--version']))
  lines = [
    'usage: deeprnn COMMAND [ARGS ...]   (deeprnn COMMAND --help: its arguments)',
    '',
    'The runner of deeprnn-jax, from any folder: each command is `python -m experiments.COMMAND` of a checkout,',
    'with the same arguments and exit codes. A config is a file, or a built-in name (`deeprnn configs`):',
    '  deeprnn run quickstart --workdir runs/quickstart',
    '',
    'commands:',
    *(f'  {name:{width}s}  {line}' for name, (_, _, line) in COMMANDS.items()),
    '',
    'options:',
    f'  {"--help":{width}s}  this list',
    f'  {"--version":{width}s}  the version of deeprnn_jax',
  ]
  return '\n'.join(lines)


def list_configs() -> str:
  known = builtin_configs()
  width = max(map(len, known))
  out = []
  for name, path in known.items():
    study = ' (deeprnn study)' if 'def get_part(' in path.read_text(encoding='utf-8') else ''
    out.append(f'{name:{width}s}  {describe(path)}{study}')
  return '\n'.join(out)


def main(argv: Sequence[str] | None = None) -> int:
  """The ``deeprnn`` command. ``argv`` None: the command line; the command's ``main()`` then reads its
  arguments from ``sys.argv`` (rewritten to them), as under ``python -m``, so its command-line defaults
  hold (``run --workers auto``). From Python, ``main(['run', ...])`` calls ``experiments.run.main([...])``,
  whose defaults are those of a call (one worker: the calling process trains)."""
  args = list(sys.argv[1:] if argv is None else argv)
  try:
    if not args or args[0] in ('-h', '--help', 'help'):
      print(usage(), file=sys.stdout if args else sys.stderr)
      return 0 if args else EXIT_USAGE
    if args[0] == '--version':
      import deeprnn_jax  # pylint: disable=g-import-not-at-top

      print(f'deeprnn {deeprnn_jax.__version__}')
      return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
      close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.5)
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      raise UsageError(f'unknown command {name!r}{hint}; commands: {", ".join(COMMANDS)} (deeprnn --help)')
    module_name, takes_config, _ = COMMANDS[name]
    if module_name is None:  # configs: the list, or where the named ones are (to copy one and edit it)
      print('\n'.join(str(pathlib.Path(config_path(n)).resolve()) for n in rest) if rest else list_configs())
      return 0
  except UsageError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  # use_runner changes sys.path and the environment: put back afterwards for a caller from Python (the
  # processes it starts are over by then; a SLURM job took its environment when it was submitted).
  path, env = list(sys.path), {k: os.environ.get(k) for k in ('PYTHONPATH', 'PYTHONSAFEPATH')}
  try:
    use_runner()
    if takes_config:
      rest = resolve_config(rest)
  except UsageError as e:
    _restore(path, env)
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  try:
    module = importlib.import_module(module_name)
    runner_cli = importlib.import_module('experiments.cli')
    before, runner_cli.COMMAND_PREFIX = runner_cli.COMMAND_PREFIX, 'deeprnn '  # usage and "run again" lines
    try:
      if argv is None:
        sys.argv = [f'deeprnn {name}', *rest]
        return module.main()
      return module.main(rest)
    finally:
      runner_cli.COMMAND_PREFIX = before
  finally:
    _restore(path, env)


def _restore(path: list[str], env: dict[str, str | None]) -> None:
  sys.path[:] = path
  for key, value in env.items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value


if __name__ == '__main__':
  sys.exit(main())
