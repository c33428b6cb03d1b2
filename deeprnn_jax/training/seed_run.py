"""One seed's run: its folder, records, checkpoints and wandb run, behind one object.

The trainer (``train.py``) steps the seeds of a grid point together as one program; everything that
is *per seed* and lives on the host is a ``SeedRun``, which owns its status transitions (``start`` ->
(``finish`` | ``interrupt`` | ``fail``)) over three parts:

* the run folder (``runlog.RunFolder``: ``config.json``, ``status.json``, ``metrics.jsonl``,
  ``checkpoints/``);
* ``SeedRecords``: its ``RunLogger`` (the metrics file, mirrored to wandb) and what wandb already
  holds, so that each record reaches wandb once across kills and resumes;
* ``SeedCheckpoints``: its ``Checkpointer`` and ``progress``, the host-side loop state a checkpoint
  carries beside the arrays, so that a resumed run continues exactly (best value so far, threshold
  step, train time, ...).

The loop asks a ``SeedRun`` for what it needs (where to resume, whether a value is a new best) and
tells it what happened (a log record, a checkpoint, the end); it never touches the files itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import time
import uuid
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np

from deeprnn_jax.training import build
from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import identity
from deeprnn_jax.training import runlog
from deeprnn_jax.tasks import base as task_base

_log = logging.getLogger(__name__)


def fresh_progress() -> dict:
  """Host-side loop state that a checkpoint carries next to the arrays (its ``meta``)."""
  return {
    'step': 0,
    'best_value': None,
    'best_step': None,
    'threshold_step': None,
    'threshold_seconds': None,
    'train_seconds': 0.0,
    'rate_steps': 0,
    'rate_seconds': 0.0,
  }


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When the loop logs, evaluates and checkpoints, and which splits each evaluation covers.

  Every periodic evaluation covers ``periodic``; a run's last one covers all ``splits``.
  """

  num_steps: int
  log_every: int
  eval_every: int
  checkpoint_every: int
  splits: tuple[str, ...]
  periodic: tuple[str, ...]

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict, task: task_base.Task) -> 'Cadence':
    t = config.train
    splits = tuple(task.eval_splits)
    return cls(
      t.num_steps,
      t.log_every_steps,
      t.eval_every_steps,
      t.checkpoint_every_steps,
      splits,
      tuple(t.eval_splits) or splits,
    )

  def due(self, step: int) -> tuple[bool, bool, bool]:
    """What the loop does once ``step`` steps are done: (log train metrics, evaluate, checkpoint)."""
    last = step == self.num_steps
    return (
      step % self.log_every == 0 or last,
      step % self.eval_every == 0 or last,
      step % self.checkpoint_every == 0 or last,
    )

  def records_at(self, step: int) -> list[str]:
    """The splits of the records a run writes at ``step`` (``'train'`` for the train metrics)."""
    log_now, eval_now, _ = self.due(step)
    evals = (self.splits if step == self.num_steps else self.periodic) if eval_now else ()
    return (['train'] if log_now else []) + list(evals)

  def logged_through(self, records: Sequence[dict]) -> int:
    """The last step up to which ``records`` hold every record the loop writes."""
    have = {(r['step'], r.get('split')) for r in records}
    for step in range(1, self.num_steps + 1):
      if any((step, split) not in have for split in self.records_at(step)):
        return step - 1
    return self.num_steps


def _json_plain(v) -> bool:
  """Numbers, strings, and lists/dicts of them: task facts worth keeping for the report."""
  if isinstance(v, (int, float, str, bool)) or v is None:
    return True
  if isinstance(v, (list, tuple)):
    return all(_json_plain(x) for x in v)
  if isinstance(v, Mapping):
    return all(isinstance(k, str) and _json_plain(x) for k, x in v.items())
  return False


def task_facts(task: task_base.Task, splits: Sequence[str]) -> dict:
  """What the report needs to know about the task without rebuilding it."""
  return {
    'name': task.name,
    'seq_len': task.seq_len,
    'output_kind': task.output_kind,
    'splits': list(splits),
    'baseline': {
      'metric': task.baseline.metric,
      'value': task.baseline.value,
      'description': task.baseline.description,
    },
    'threshold': (
      None
      if task.threshold is None
      else {'metric': task.threshold.metric, 'value': task.threshold.value, 'mode': task.threshold.mode}
    ),
    'metric_modes': {'loss': 'min', **dict(task.metric_modes)},
    'info': {k: v for k, v in dict(task.info).items() if _json_plain(v)},
  }


def data_fingerprint(task: task_base.Task) -> str:
  """A digest of the data a run of ``task`` trains and is scored on (``train_data`` and ``eval_splits``:
  their paths, dtypes, shapes and bytes), kept in status.json when the run starts and compared when it
  resumes: a dataset file changed in between changes it. Short (16 hex digits): it names, not secures."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path({'train': task.train_data, 'eval': dict(task.eval_splits)})[0]:
    a = np.asarray(leaf) if isinstance(leaf, (np.ndarray, np.generic, jax.Array)) else None
    if a is None or a.dtype == object:  # references as text, lists: their repr is their content
      h.update(f'{jax.tree_util.keystr(path)}|{leaf!r}|'.encode())
    else:
      h.update(f'{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|'.encode())
      h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:16]


def check_same_data(folder: runlog.RunFolder, data: str | None) -> None:
  """Refuses to resume a run whose data (``data``: ``data_fingerprint``) differ from those it started on."""
  was = (folder.read_status() or {}).get('data_fingerprint')
  if data and was and was != data:
    raise config_lib.ConfigError(
      '',
      f'{folder.path} started on other data (fingerprint {was}, now {data}): a dataset file changed since; '
      'put the old file back to resume it, or use another workdir to train on the new data',
    )


class SeedRecords:
  """One seed's records: ``metrics.jsonl`` mirrored to its wandb run, each record sent to wandb once,
  across kills and resumes too.

  Which records wandb holds has two witnesses, the better first: wandb's own logs of the run
  (``wandb_has``: the ``(split, step)`` pairs it wrote, in this process and the earlier ones) and
  status.json's ``wandb_step`` (every record up to it was logged; the fallback when there are no logs
  to read).

  Attributes:
    logger: the ``runlog.RunLogger``, open after ``open``.
    wandb_status: what status.json keeps of the wandb run (id, job type, tags, mode, error).
    metric_modes: ``'min'`` or ``'max'`` per ``'<split>/<metric>'``, for the end-of-run summary.
  """

  def __init__(self, folder: runlog.RunFolder):
    self.folder = folder
    self.logger: runlog.RunLogger | None = None
    self.wandb_step = 0  # records up to this step were logged to wandb (status.json; the fallback)
    self.wandb_has: set[tuple[str, int]] | None = None  # (split, step) wandb has written (its own logs)
    self.wandb_status: dict[str, Any] = {}
    self.metric_modes: dict[str, str] = {}

  def open(
    self, config: ml_collections.ConfigDict, wandb_mode: str, params: int, metric_modes: Mapping[str, str]
  ) -> None:
    """Opens the logger: the metrics file, and wandb resumed under the run's wandb id."""
    status = self.folder.read_status() or {}
    self.wandb_step = int(status.get('wandb_step') or 0)
    wandb_id = status.get('wandb_id') or uuid.uuid4().hex[:12]
    wandb_dir = config.logging.wandb_dir or self.folder.path
    # What wandb itself wrote in earlier processes, read before this one opens the run (a record logged
    # just before a kill -9 may never have reached it); None: no logs to read, trust status.json's step.
    self.wandb_has = runlog.wandb_written(wandb_dir, wandb_id) if wandb_mode != 'disabled' else None
    run, self.wandb_status = _wandb_run(config, self.folder.path, wandb_mode, wandb_id, wandb_dir, params, metric_modes)
    self.logger = runlog.RunLogger(self.folder.path, run)
    self.metric_modes = dict(metric_modes)

  def log(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    """One record: always to metrics.jsonl; to wandb unless wandb already has it (from before a kill)."""
    self.logger.log(step, split, metrics, to_wandb=self._wandb_lacks(split, step))
    if self.wandb_has is not None:
      self.wandb_has.add((split, step))

  def _wandb_lacks(self, split: str, step: int) -> bool:
    if self.wandb_has is not None:
      return (split, step) not in self.wandb_has
    return step > self.wandb_step

  def resend_to_wandb(self) -> int:
    """Sends wandb the records of metrics.jsonl it has not written (those a kill -9 took from it before
    its log held them), in step order, each once; returns how many. Needs wandb's own logs
    (``wandb_has``): without them nothing is known to be missing."""
    wandb = self.logger.wandb if self.logger is not None else None
    if self.wandb_has is None or wandb is None or not wandb.active:
      return 0
    sent = 0
    for record in self.folder.read_metrics():
      split, step = record['split'], record['step']
      if (split, step) in self.wandb_has:
        continue
      wandb.log(step, {f'{split}/{k}': v for k, v in record.items() if k not in ('step', 'split')})
      self.wandb_has.add((split, step))
      sent += 1
    if sent:
      _log.info('%s: sent wandb %d record(s) it had not written before the last stop', self.folder.path, sent)
    return sent

  def sent_to_wandb(self, step: int) -> None:
    """Remembers (in status.json) that every record up to ``step`` was logged to wandb: the fallback for
    a resume that finds no wandb logs to read (``wandb_has``)."""
    if self.logger.wandb is not None and self.logger.wandb.active and step > self.wandb_step:
      self.wandb_step = step
      self.folder.update_status(wandb_step=step)

  def end(self, exit_code: int, status: Mapping[str, Any] | None = None) -> None:
    """Ends the wandb run (if one was opened); a run that is done (``status``) first gets its summary,
    computed from all of metrics.jsonl."""
    if self.logger is None:
      return
    if status is not None:
      self.logger.summary(status, self.folder.read_metrics(), self.metric_modes)
    self.logger.finish(exit_code=exit_code)


def _wandb_run(
  config: ml_collections.ConfigDict,
  run_dir: str,
  wandb_mode: str,
  wandb_id: str,
  wandb_dir: str,
  params: int,
  metric_modes: Mapping[str, str],
) -> tuple[runlog.WandbRun, dict[str, Any]]:
  """The seed's wandb run as a dashboard sees it (the flat config plus the facts it filters by; the
  sweep as group, the variant as job type, tags), and what status.json keeps of it."""
  c = config
  wb_config = {
    **config_lib.flatten(config_lib.to_dict(c), stop=()),
    'cell': c.model.cell,
    'depth': c.model.depth,
    'width': c.model.width,
    'seed': c.train.seed,
    'params': params,
    'task': c.task.name,
    **runlog.code_version(),
  }
  job_type, tags = c.logging.job_type or build.variant_name(c), list(c.logging.tags or _default_tags(c))
  run = runlog.WandbRun(
    wandb_mode,
    project=c.logging.project,
    entity=c.logging.entity,
    name=os.path.basename(run_dir),
    run_id=wandb_id,
    directory=wandb_dir,
    config=wb_config,
    group=c.logging.group or os.path.basename(os.path.dirname(run_dir)),
    job_type=job_type,
    tags=tags,
    metric_modes=metric_modes,
    timeout=c.logging.wandb_timeout_seconds,
  )
  status = {
    'wandb_id': wandb_id,
    'wandb_job_type': job_type,  # the report's resume of this wandb run passes the same (experiments/publish.py)
    'wandb_tags': tags,
    'wandb_mode': wandb_mode if run.active else 'disabled',
    'wandb_error': run.error,
  }
  return run, status


def _default_tags(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Tags a dashboard filters by when the config names none: the task, the cell and the depth."""
  return (config.task.name, config.model.cell, f'depth{config.model.depth}')


class SeedCheckpoints:
  """One seed's ``checkpoints/`` and the host-side loop state they carry beside the arrays
  (``progress``), so that a resumed run continues exactly: where it can resume, going back there,
  saving, and the progress notes (train time, best value, threshold step) that the checkpoints keep.

  Attributes:
    checkpointer: its ``checkpoint.Checkpointer``, open between ``open`` and ``close``.
    progress: ``fresh_progress`` keys, plus ``ended`` once the run's last checkpoint is written.
  """

  def __init__(self, folder: runlog.RunFolder):
    self.folder = folder
    self.checkpointer: checkpoint_lib.Checkpointer | None = None
    self.progress = fresh_progress()

  def open(self, keep: int) -> None:
    self.checkpointer = checkpoint_lib.Checkpointer(self.folder.checkpoints, keep)

  def close(self) -> None:
    if self.checkpointer is not None:
      self.checkpointer.wait()
      self.checkpointer.close()

  def restorable(self, like: Any, cadence: Cadence, max_step: int | None = None) -> tuple[int, Any, dict] | None:
    """The newest checkpoint the run can resume from, at or before ``max_step``: one that restores
    and that ``metrics.jsonl`` is complete up to, so the resumed curve has no hole."""
    limit = cadence.logged_through(self.folder.read_metrics())
    newest = self.checkpointer.latest_step()
    if newest is not None and newest > limit:
      _log.warning(
        '%s: metrics.jsonl lacks records after step %d; resuming from a checkpoint at or before it',
        self.folder.path,
        limit,
      )
    return self.checkpointer.restore_latest(like, max_step=limit if max_step is None else min(limit, max_step))

  def rewind(self, step: int, progress: dict | None, cadence: Cadence) -> bool:
    """Goes on from ``step`` with ``progress`` (None: from scratch), dropping newer checkpoints.
    Returns whether the run is extended: it ended at ``step`` but now has more steps to go
    (``train.num_steps`` raised), so it is no longer ``ended``."""
    self.checkpointer.discard_after(step if progress else -1)
    self.progress = dict(progress) if progress else fresh_progress()
    extended = bool(progress) and self.progress.get('ended') == 'last' and step < cadence.num_steps
    if extended:
      del self.progress['ended']
    return extended

  def save(self, step: int, state: Any, *, latest: bool, best: bool) -> None:
    """Checkpoints ``state`` (this seed's host arrays) as the latest and/or the best."""
    self.progress['step'] = step
    if best:
      self.checkpointer.save_best(step, state, dict(self.progress))
    if latest:
      self.checkpointer.save(step, state, dict(self.progress))

  def add_time(self, seconds: float, steps: int, warm: bool) -> None:
    p = self.progress
    p['train_seconds'] += seconds
    if warm:  # the first segment after compiling is warm-up, not steady state
      p['rate_steps'] += steps
      p['rate_seconds'] += seconds

  def track(self, value: float, step: int, mode: str, threshold: task_base.Threshold | None) -> tuple[bool, bool]:
    """Notes the validation value of ``step``: returns (a new best, the threshold reached just now)."""
    p = self.progress
    best = bool(np.isfinite(value)) and (
      p['best_value'] is None or (value < p['best_value'] if mode == 'min' else value > p['best_value'])
    )
    if best:
      p['best_value'], p['best_step'] = value, step
    reached = bool(threshold and p['threshold_step'] is None and np.isfinite(value) and threshold.reached(value))
    if reached:
      p['threshold_step'], p['threshold_seconds'] = step, p['train_seconds']
    return best, reached

  def summary(self, metric: str) -> dict:
    """What the final status.json says of the progress (``metric``: the val metric that picks the best)."""
    p = self.progress
    return {
      'steps_per_sec': p['rate_steps'] / p['rate_seconds'] if p['rate_seconds'] > 0 else None,
      'train_seconds': p['train_seconds'],
      'best_step': p['best_step'],
      'best_value': p['best_value'],
      'best_metric': f'val/{metric}',
      'threshold_step': p['threshold_step'],
      'threshold_seconds': p['threshold_seconds'],
    }


class SeedRun:
  """The host side of one seed of a grid point (module docstring): its status transitions, over its
  folder, its records and its checkpoints.

  Attributes:
    config: the run's validated config. seed: ``config.train.seed``. folder: its ``runlog.RunFolder``.
    records: its ``SeedRecords`` (``logger``, ``wandb_status``). checkpoints: its ``SeedCheckpoints``
      (``checkpointer``, and ``progress``: the loop state its checkpoints carry).
  """

  def __init__(self, config: ml_collections.ConfigDict, run_dir: str):
    self.config = config
    self.seed = config.train.seed
    self.folder = runlog.RunFolder(run_dir)
    self.records = SeedRecords(self.folder)
    self.checkpoints = SeedCheckpoints(self.folder)
    self.data_fingerprint: str | None = None  # of the task's data (``claim_folder``)

  @property
  def name(self) -> str:
    return os.path.basename(self.folder.path)

  @property
  def progress(self) -> dict:
    return self.checkpoints.progress

  @property
  def checkpointer(self) -> checkpoint_lib.Checkpointer | None:
    return self.checkpoints.checkpointer

  @property
  def ended(self) -> str | None:
    """``'last'`` or ``'early'`` once the run's last checkpoint is written, else None."""
    return self.progress.get('ended')

  # -- set-up and resume -------------------------------------------------------------------------------

  def claim_folder(self, data: str | None = None) -> None:
    """Writes (or checks) config.json; refuses another run's folder, or other ``data`` (``check_same_data``)."""
    os.makedirs(self.folder.path, exist_ok=True)
    old = self.folder.read_config()
    problem = old is not None and identity.continuation_problem(old, self.config)
    if problem:
      raise config_lib.ConfigError('', f'{self.folder.path} holds another run ({problem}); use another workdir')
    check_same_data(self.folder, data)
    self.data_fingerprint = data
    if old is None or identity.differing_keys(old, self.config):  # new, or extended to more steps
      self.folder.write_config(self.config)

  def open(self, wandb_mode: str, params: int, metric_modes: Mapping[str, str]) -> None:
    """Opens the checkpointer and the records (metrics file + wandb, resumed under the run's wandb id)."""
    self.checkpoints.open(self.config.train.keep_checkpoints)
    self.records.open(self.config, wandb_mode, params, metric_modes)

  def close(self) -> None:
    self.checkpoints.close()

  def restorable(self, like: Any, cadence: Cadence, max_step: int | None = None) -> tuple[int, Any, dict] | None:
    return self.checkpoints.restorable(like, cadence, max_step)

  def rewind(self, step: int, progress: dict | None, cadence: Cadence) -> None:
    """Goes on from ``step`` with ``progress`` (None: from scratch): newer checkpoints and records are
    dropped (the run writes them again); an extended run (``SeedCheckpoints.rewind``) also drops its
    last evaluation's records that the longer run does not make."""
    extended = self.checkpoints.rewind(step, progress, cadence)
    metrics = self.records.logger.metrics
    if not progress:
      metrics.reset()
      return
    wanted = set(cadence.records_at(step))
    metrics.truncate_after(step, keep=lambda r: not extended or r['step'] < step or r['split'] in wanted)
    self.records.resend_to_wandb()

  def start(self, *, step: int, params: int, seeds_in_program: int, seed_program: str, facts: dict, **launch) -> None:
    """The run is training from ``step``; ``launch``: how it was launched (e.g. ``workers``)."""
    self.folder.update_status(
      **launch,
      state='running',
      run_id=self.name,
      seed=self.seed,
      step=step,
      num_steps=self.config.train.num_steps,
      params=params,
      seeds_in_program=seeds_in_program,
      seed_program=seed_program,
      pid=os.getpid(),
      host=socket.gethostname(),
      resumed_from=step or None,
      updated_at=time.time(),
      error=None,
      task=facts,
      **({'data_fingerprint': self.data_fingerprint} if self.data_fingerprint else {}),
      **self.records.wandb_status,
      **runlog.code_version(),
    )

  # -- what the loop tells it during training ------------------------------------------------------------

  def log(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
    self.records.log(step, split, metrics)

  def sent_to_wandb(self, step: int) -> None:
    self.records.sent_to_wandb(step)

  def add_time(self, seconds: float, steps: int, warm: bool) -> None:
    self.checkpoints.add_time(seconds, steps, warm)

  def track(self, value: float, step: int, mode: str, threshold: task_base.Threshold | None) -> tuple[bool, bool]:
    return self.checkpoints.track(value, step, mode, threshold)

  def save(self, step: int, state: Any, *, latest: bool, best: bool) -> None:
    self.checkpoints.save(step, state, latest=latest, best=best)

  # -- the end ----------------------------------------------------------------------------------------

  def finish(self, step: int, state: str, compile_seconds: float, metric: str, **extra) -> dict:
    """The run is done (``finished`` or ``diverged``): waits for its checkpoints, writes its status."""
    self.checkpointer.wait()
    status = self.folder.update_status(
      state=state,
      step=step,
      compile_seconds=compile_seconds,
      **self.checkpoints.summary(metric),
      updated_at=time.time(),
      **extra,
    )
    self.records.end(0 if state == 'finished' else 1, status)
    return status

  def interrupt(self, step: int) -> None:
    """Stopped on request after checkpointing ``step``."""
    self.folder.update_status(state='interrupted', step=step, updated_at=time.time())
    self.records.end(1)

  def abort(self, error: BaseException) -> None:
    """Stopped by an exception: a second Ctrl-C (``interrupted``, resumes from its newest checkpoint)
    or an error (``failed``). The recorded step is the one a rerun resumes from."""
    if (self.folder.read_status() or {}).get('state') != 'running':
      return
    stopped = isinstance(error, KeyboardInterrupt)
    if self.checkpointer is not None:
      self.checkpointer.wait()
    step = (self.checkpointer.latest_step() if self.checkpointer is not None else None) or 0
    self.folder.update_status(
      state='interrupted' if stopped else 'failed',
      step=step,
      error=None if stopped else runlog.one_line(error),
      updated_at=time.time(),
    )
    self.records.end(1)
