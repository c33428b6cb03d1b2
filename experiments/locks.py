"""Run-folder locks: one runner process per run, however many runners share a workdir.

A lock is an ``flock`` on the run folder's lock file (``<run_dir>/.lock``, ``runlog.RunFolder.lock``),
held for as long as the runner trains that run. The kernel owns it, which gives the three properties a
week-long sweep needs:

* it is exclusive, and taking it is one atomic step: of any number of runners that try at once,
  exactly one gets it (no "is the old lock stale? then delete it and make mine" race);
* a dead runner does not hold it: the kernel releases it when the process ends, however it ends
  (``kill -9`` and the OOM killer included), so the next runner can take over at once, with no
  staleness timeout, heartbeat, clock agreement between hosts, or pid-reuse guess;
* it does not leak into child processes (Python opens the file close-on-exec), so a helper that
  outlives the runner (e.g. wandb's service) cannot keep it.

On a shared filesystem the lock is as good as the filesystem's locking: NFSv4 (and NFSv3 with its
lock daemon), Lustre mounted with ``flock``, CephFS and GPFS lock across hosts, and a lock of a
crashed host is released when its lease expires. Where the filesystem refuses locks (``ENOLCK``,
``EOPNOTSUPP``: e.g. NFS without a lock daemon) a runner cannot keep others off its runs; it says so
in a warning and goes on, which is right for the usual single runner per workdir.

The file holds the owner's host and pid for people to read; it is never trusted: holding the lock is
what counts. It is deleted on release, while still locked, and a runner that locked a file that was
deleted under it (the previous owner released it in between) tries again with the file now there.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time

_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)

_log = logging.getLogger(__name__)


class RunLock:
  """An exclusive claim on one run folder by this process (see the module docstring)."""

  def __init__(self, path: str):
    """``path``: the lock file (a run folder's is ``runlog.RunFolder(run_dir).lock``)."""
    self.path = path
    self._fd: int | None = None

  @property
  def held(self) -> bool:
    return self._fd is not None

  def acquire(self) -> bool:
    """Takes the lock if no live process holds it; never waits. Returns whether this process holds it."""
    if self._fd is not None:
      return True
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    for _ in range(8):  # each retry means another runner released the lock just now
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        os.close(fd)
        return False
      except OSError as e:
        if e.errno not in _UNSUPPORTED:
          os.close(fd)
          raise
        _log.warning(
          '%s: this filesystem does not support file locks (%s); nothing keeps another runner '
          'off this run, so run only one runner on this workdir',
          self.path,
          os.strerror(e.errno),
        )
      try:
        current = os.stat(self.path)
      except FileNotFoundError:
        current = None
      if current is not None and os.path.samestat(os.fstat(fd), current):
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({'host': socket.gethostname(), 'pid': os.getpid(), 'since': time.time()}).encode())
        self._fd = fd
        return True
      os.close(fd)  # we locked a file its owner deleted on release: the lock is the file at the path now
    return False

  def release(self) -> None:
    """Gives the lock up. The file goes first, while still locked, so no one can lock it in between
    and believe they hold the run."""
    if self._fd is None:
      return
    try:
      os.unlink(self.path)
    except FileNotFoundError:
      pass
    os.close(self._fd)  # closing the last descriptor releases the flock
    self._fd = None
