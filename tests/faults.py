"""Fault points for the reliability tests: make a runner process get a real signal at an exact moment.

The reliability tests kill a real runner at exact moments (inside a train step, while a checkpoint is
being written, between two runs) and check that rerunning the command loses nothing. Sleeping and
hoping to hit such a moment is flaky, so they hand the runner an event hook (``train.EventHook``, the
trainer calls it at named moments) that sends the process a signal there: a real one, delivered and
handled (or not) by the kernel exactly as one from another process.

A spec is ``'<event>:<n>=<signal>[,...]'``, e.g. ``'step:7=SIGKILL'`` or
``'checkpoint:8=SIGKILL,point:2=SIGTERM'``. The trainer's events (``<n>`` a step or a count):

* ``step:<n>``: the train step that makes the step count n has been dispatched, not yet synced;
* ``checkpoint:<n>``: the checkpoint of step n has been handed to orbax, its write still in flight;
* ``finish:<n>``: a run's last checkpoint (step n) is committed, its final status not yet written;
* ``point:<n>``: the sweep is about to start its n-th grid point (all earlier ones done).

A subprocess reads its spec from ``$DEEPRNN_JAX_TEST_FAULTS`` (``RUNNER`` below is such a runner).
"""

from __future__ import annotations

import os
import signal

ENV = 'DEEPRNN_JAX_TEST_FAULTS'

# `python -c RUNNER --config ... --workdir ...`: experiments.run with the hook of $DEEPRNN_JAX_TEST_FAULTS.
RUNNER = """
import os, sys
sys.path.insert(0, os.path.join(os.getcwd(), 'tests'))
import faults
from experiments import run
sys.exit(run.main(sys.argv[1:], on_event=faults.signal_at(os.environ.get(faults.ENV, ''))))
"""


def signal_at(spec: str):
  """An event hook that sends this process the signal ``spec`` names for each event it names."""
  table = {}
  for entry in filter(None, (e.strip() for e in spec.split(','))):
    where, _, sig = entry.partition('=')
    table[where.strip()] = signal.Signals[sig.strip()]

  def hook(event: str, n: int) -> None:
    sig = table.get(f'{event}:{n}')
    if sig is not None:
      os.kill(os.getpid(), sig)

  return hook
