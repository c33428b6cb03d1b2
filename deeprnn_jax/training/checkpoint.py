"""Checkpoints of one run: the latest ones (periodic and final) and the best by validation metric.

Layout, inside a run folder::

  checkpoints/latest/<step>/{state, meta}   the newest ``keep`` saves (older ones are the fallback)
  checkpoints/best/<step>/{state, meta}     the save with the best validation metric so far

``state`` is an array pytree (parameters, optimizer state, rng keys, step) written by orbax's
``StandardSave`` (tensorstore, no pickling); ``meta`` is JSON: the host-side loop state a resumed run
needs to continue exactly (best value so far, threshold step, elapsed time, ...), plus a SHA-256
digest of the state's arrays.

orbax writes each save into a temporary folder and renames it on commit, so a kill during a save
leaves the previous checkpoints intact. A committed save can still be damaged later (truncated,
garbled, files missing); orbax notices most of that, but flipped bytes inside an array file restore
without complaint as wrong numbers, which the digest catches. ``restore_latest`` skips any save that
does not restore or does not match its digest, with a warning, and falls back to the one before it.
This module is the only one that imports orbax.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

import jax
import numpy as np

from deeprnn_jax._extras import LazyModule

# Imported on first use: `import deeprnn_jax` (and a train step) does not pay orbax's import time.
ocp = LazyModule('orbax.checkpoint', user=__name__)

_log = logging.getLogger(__name__)


_DIGEST = 'state_digest'


def state_digest(tree: Any) -> str:
  """SHA-256 over every array of ``tree``: its path, dtype, shape and bytes."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f'{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _abstract(tree: Any) -> Any:
  """Shape/dtype stand-ins for a pytree of arrays: what a restore fills in."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


class Checkpointer:
  """The latest and best checkpoints of one run (see the module docstring)."""

  def __init__(self, directory: str, keep: int = 2):
    self.directory = os.path.abspath(directory)
    for path in (self.directory, os.path.join(self.directory, 'latest'), os.path.join(self.directory, 'best')):
      # A file where a checkpoint folder belongs would fail every save of every later attempt.
      if os.path.lexists(path) and not os.path.isdir(path):
        aside = f'{path}.damaged-{time.time_ns()}'
        _log.warning('%s is not a folder; moved it to %s', path, aside)
        os.replace(path, aside)
    self._latest = self._manager('latest', keep)
    self._best = self._manager('best', 1)

  def _manager(self, name: str, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(os.path.join(self.directory, name), options=options, item_names=('state', 'meta'))

  @staticmethod
  def _args(state: Any, meta: dict) -> ocp.args.Composite:
    meta = {**meta, _DIGEST: state_digest(state)}
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves ``state`` (host arrays) and ``meta`` as the latest checkpoint at ``step``."""
    self._latest.save(step, args=self._args(state, meta), force=True)

  def save_best(self, step: int, state: Any, meta: dict) -> None:
    """Replaces the best checkpoint."""
    self._best.save(step, args=self._args(state, meta), force=True)

  def latest_step(self) -> int | None:
    return self._latest.latest_step()

  def steps(self) -> dict[str, list[int]]:
    """The kept saves: ``{'latest': [steps...], 'best': [step]}``, ascending (readable or not)."""
    return {'latest': sorted(self._latest.all_steps()), 'best': sorted(self._best.all_steps())}

  def best_step(self) -> int | None:
    return self._best.latest_step()

  def _restore(self, manager: ocp.CheckpointManager, step: int, like: Any) -> tuple[Any, dict]:
    target = None if like is None else _abstract(like)
    args = ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
    out = manager.restore(step, args=args)
    state, meta = out['state'], dict(out['meta'])
    digest = meta.pop(_DIGEST, None)
    if digest is not None and state_digest(state) != digest:
      raise ValueError('its arrays do not match the digest saved with them')
    return state, meta

  def restore_latest(self, like: Any, max_step: int | None = None) -> tuple[int, Any, dict] | None:
    """The newest readable checkpoint at or before ``max_step``: ``(step, state, meta)``, or None.

    ``like`` is a pytree with the structure, shapes and dtypes of the state (None: the tree as
    saved, nested dicts of NumPy arrays). A checkpoint that fails to restore (truncated, garbled)
    or whose arrays do not match their digest is skipped with a warning and the one before it is tried.
    """
    for step in sorted(self._latest.all_steps(), reverse=True):
      if max_step is not None and step > max_step:
        continue
      try:
        state, meta = self._restore(self._latest, step, like)
      except Exception as e:  # pylint: disable=broad-except
        _log.warning(
          'checkpoint %s/latest/%d is unreadable (%s: %s); trying an older one',
          self.directory,
          step,
          type(e).__name__,
          str(e).splitlines()[0] if str(e) else '',
        )
        continue
      if meta.get('step') != step:
        _log.warning('checkpoint %s/latest/%d has mismatched metadata; trying an older one', self.directory, step)
        continue
      return step, state, meta
    return None

  def restore_step(self, step: int, like: Any) -> tuple[int, Any, dict] | None:
    """The save of exactly ``step`` (a latest one, else the best): ``(step, state, meta)``, or None when
    no save of that step is kept. Never another step: a caller asking for step 10 of a run that kept 8
    and 12 gets None, not 8. A kept save that does not restore raises (``ValueError`` for a digest mismatch)."""
    for manager in (self._latest, self._best):
      if step in manager.all_steps():
        state, meta = self._restore(manager, step, like)
        return step, state, meta
    return None

  def restore_best(self, like: Any) -> tuple[int, Any, dict] | None:
    step = self.best_step()
    if step is None:
      return None
    state, meta = self._restore(self._best, step, like)
    return step, state, meta

  def discard_after(self, step: int) -> None:
    """Deletes checkpoints newer than ``step``: a run resumed at ``step`` rewrites that future."""
    for manager in (self._latest, self._best):
      manager.wait_until_finished()
      for s in manager.all_steps():
        if s > step:
          manager.delete(s)

  def wait(self) -> None:
    """Blocks until the background writes are committed."""
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    self._latest.close()
    self._best.close()
