"""Test-only fault points: named moments in the runner where a test can make the process get a signal.

The reliability tests kill a real runner process at exact moments (inside a train step, while a
checkpoint is being written, between two runs) and check that rerunning the command loses nothing.
Sleeping and hoping to hit such a moment is flaky, so the runner calls ``point(name)`` there and a
test sets the environment variable ``DEEPRNN_JAX_TEST_FAULTS`` to ``'<name>=<signal>[,...]'``, e.g.
``'step:7=SIGKILL'`` or ``'checkpoint:8=SIGKILL,point:2=SIGTERM'``. When a named point is reached the
process sends itself that signal: a real one, delivered and handled (or not) by the kernel exactly
as one from another process.

The points (``<n>`` a number):

* ``step:<n>``: the train step that makes the step count n has been dispatched, not yet synced;
* ``checkpoint:<n>``: the checkpoint of step n has been handed to orbax, its write still in flight;
* ``finish:<n>``: a run's last checkpoint (step n) is committed, its final status not yet written;
* ``point:<n>``: the sweep is about to start its n-th grid point (all earlier ones done).

Outside tests the variable is unset and a point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = 'DEEPRNN_JAX_TEST_FAULTS'


def point(name: str) -> None:
  """Sends this process the signal ``$DEEPRNN_JAX_TEST_FAULTS`` names for ``name``, if any."""
  spec = os.environ.get(ENV)
  if not spec:
    return
  for entry in spec.split(','):
    where, _, sig = entry.partition('=')
    if where.strip() == name:
      os.kill(os.getpid(), signal.Signals[sig.strip()])
