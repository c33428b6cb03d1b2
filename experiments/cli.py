"""What every command line of experiments/ shares: config loading, one-line errors, clean stops.

* ``--config FILE --workdir DIR`` plus overrides ``--config.<key>=<value>`` (parsed as literals);
* a mistake in the input prints ``error: <one line>`` and exits with code 2, before any compute;
* SIGTERM or Ctrl-C asks training to stop: it checkpoints, marks the run ``interrupted`` and the
  command exits with code 130 and says how to resume (a second Ctrl-C stops at once: the runs are
  marked ``interrupted`` and resume from their last periodic checkpoint);
* a full disk, a used-up quota or a read-only workdir (``runlog.storage_problem``) stops the command at
  the first failed write with one line and exit code 74 (sysexits' EX_IOERR): every run keeps what it
  had saved, and the same command resumes once the disk takes writes again.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from typing import Callable, Sequence

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training.config import ConfigError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_STORAGE = 74

# How a command is typed, in its usage line and in the lines that say how to run it again: `python -m
# experiments.run` in a checkout. The `deeprnn` console script (deeprnn_jax/cli.py) sets 'deeprnn ' while it runs
# a command, since `python -m experiments.*` works only in a checkout.
COMMAND_PREFIX = 'python -m experiments.'


def command(name: str) -> str:
  """How the command ``name`` (``'run'``) is typed here: ``python -m experiments.run``, or ``deeprnn run``."""
  return COMMAND_PREFIX + name


class _StopFlag:
  """Set by SIGINT/SIGTERM; training polls it once per step (a Python bool, no device sync)."""

  def __init__(self):
    self.requested = False

  def __call__(self) -> bool:
    return self.requested

  def handler(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.requested = True
    # os.write to fd 2, not print: the handler may run while the main thread is inside a write to
    # sys.stderr (the progress bar), and re-entering that buffered stream would raise mid-training.
    os.write(
      2, f'\n{signal.Signals(signum).name}: saving a checkpoint and stopping (Ctrl-C again to stop at once)\n'.encode()
    )


class _Parser(argparse.ArgumentParser):
  """argparse that reports a usage mistake as one line and exit code 2."""

  def error(self, message):
    print(f'error: {message}', file=sys.stderr)
    sys.exit(EXIT_USAGE)


def shell_join(args) -> str:
  """The arguments as a command line a person can read and paste: an argument holding single quotes
  (``--config.sweep.axes={'model.cell': ['gru']}``) goes in double quotes, where the shell leaves them
  alone, instead of ``shlex.join``'s ``'"'"'``; anything else as ``shlex.quote`` has it."""
  out = []
  for a in args:
    if "'" in a and not any(c in a for c in '"$`\\!'):
      out.append(f'"{a}"')
    else:
      out.append(shlex.quote(a))
  return ' '.join(out)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
  description = description.replace('python -m experiments.', COMMAND_PREFIX)  # as the command was typed
  return _Parser(prog=prog, description=description, allow_abbrev=False)


def main_with(
  parser: argparse.ArgumentParser,
  argv: Sequence[str] | None,
  command: Callable,
  on_event: Callable[[str, int], None] | None = None,
) -> int:
  """Parses ``argv``, loads the config, installs the signal handlers and runs ``command``.

  ``command(args, config, overrides, should_stop) -> exit code``. Arguments other than
  ``--config.<key>=<value>`` are in ``args.point_args`` (the wandb agent's ``--<axis>=<value>``);
  ``args.on_event`` is the trainer's event hook (``train.EventHook``; tests use it).
  """
  builtin = ', or a built-in config by name (deeprnn configs)' if COMMAND_PREFIX == 'deeprnn ' else ''
  parser.add_argument('--config', required=True, help=f'a config file with get_config(){builtin}')
  parser.add_argument('--workdir', required=True, help='the sweep folder: one sub-folder per run')
  args, rest = parser.parse_known_args(argv)
  overrides, point_args = [], []
  for arg in rest:
    if arg.startswith('--config.'):
      overrides.append(arg[len('--config.') :])
    elif arg.startswith('--') and '=' in arg:
      point_args.append(arg)
    else:
      print(f'error: unrecognized argument {arg!r}; overrides look like --config.model.depth=4', file=sys.stderr)
      return EXIT_USAGE
  args.point_args = point_args
  args.on_event = on_event
  stop = _StopFlag()
  try:
    config = config_lib.load(args.config, overrides)
    old = {s: signal.signal(s, stop.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
      return command(args, config, overrides, stop)
    finally:
      for s, h in old.items():
        signal.signal(s, h)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USAGE
  except (Exception, KeyboardInterrupt) as e:  # pylint: disable=broad-except
    from deeprnn_jax.training.train import Interrupted  # pylint: disable=g-import-not-at-top

    again = f'{parser.prog} {shell_join(sys.argv[1:] if argv is None else argv)}'
    if isinstance(e, Interrupted):
      print(f'{e}: {again}', file=sys.stderr)
      return EXIT_INTERRUPTED
    if isinstance(e, KeyboardInterrupt):
      print(
        f'stopped at once, without a new checkpoint; run the same command again to resume from the last one: {again}',
        file=sys.stderr,
      )
      return EXIT_INTERRUPTED
    problem = runlog.storage_problem(e)
    if problem:
      print(f'error: {problem}: {again}', file=sys.stderr)
      return EXIT_STORAGE
    raise
