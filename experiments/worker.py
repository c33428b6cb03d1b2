"""A worker process of ``experiments.run --workers N`` (``python -m experiments.worker``).

It dies with its parent, pins itself to its cores before JAX is imported (XLA sizes its thread pools
to the cores it may use), then runs ``experiments.run`` as worker i of N: an ordinary runner of the
whole grid on the shared workdir that leaves the summary and the report to the parent
(``experiments/workers.py`` plans and launches the team).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from typing import Sequence

from experiments.workers import Worker

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
  """Makes the kernel kill this process when ``parent`` ends, however it ends.

  SIGKILL, not a clean stop: with the parent gone nobody shows this worker's lines (its writes would fail
  mid-run) and the terminal's Ctrl-C no longer reaches it; like ``kill -9`` of a runner, it leaves runs
  that resume from their last checkpoint.
  """
  done = False
  if sys.platform.startswith('linux'):
    try:
      done = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
      done = False
  if not done:

    def watch_parent():
      while os.getppid() == parent:
        time.sleep(1.0)
      os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch_parent, name='watch-parent', daemon=True).start()
  if os.getppid() != parent:  # it died before the request above was made
    os.kill(os.getpid(), signal.SIGKILL)


def _stop_before_start(signum, frame) -> None:
  """Until the command line installs its stop handler nothing has been written: just leave."""
  del frame
  os.write(2, f'{signal.Signals(signum).name} before training started; nothing to save\n'.encode())
  raise SystemExit(130)


def main(argv: Sequence[str] | None = None, on_event=None) -> int:
  """A worker: ``--worker i/N --parent PID [--cpus 0,1] -- <experiments.run arguments>``.

  Dies with its parent, pins itself to its cores, then runs ``experiments.run`` as worker i of N (which
  trains its share of the grid and leaves the summary and report to the parent). ``on_event``: the
  trainer's event hook (``train.EventHook``; tests use it).
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  if '--' not in argv:
    print(
      'error: usage: python -m experiments.worker --worker i/N --parent PID [--cpus 0,1] -- <run arguments>',
      file=sys.stderr,
    )
    return 2
  sep = argv.index('--')
  parser = argparse.ArgumentParser(prog='python -m experiments.worker')
  parser.add_argument('--worker', required=True)
  parser.add_argument('--parent', type=int, required=True)
  parser.add_argument('--cpus', default='')
  opts = parser.parse_args(argv[:sep])
  _die_with_parent(opts.parent)
  for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, _stop_before_start)
  cpus = tuple(int(c) for c in opts.cpus.split(',') if c)
  if cpus:
    os.sched_setaffinity(0, cpus)  # before JAX starts: XLA sizes its thread pools to the cores it may use
  index, count = (int(x) for x in opts.worker.split('/'))
  gpus = tuple(d for d in os.environ.get('CUDA_VISIBLE_DEVICES', '').split(',') if d)
  from experiments import run  # pylint: disable=g-import-not-at-top  (after pinning: imports JAX)

  try:
    return run.main(argv[sep + 1 :], on_event=on_event, worker=Worker(index, count, cpus, gpus))
  finally:
    # The command line put back the handler above; its runs are saved now, and the parent, which has the
    # signal too, says what happened: a late one must not break the exit.
    for s in (signal.SIGINT, signal.SIGTERM):
      signal.signal(s, signal.SIG_IGN)


if __name__ == '__main__':
  sys.exit(main())
