"""What a run tells the world: its run-folder records and, on top, Weights & Biases.

A run folder always holds

* ``config.json``: the exact, resolved config of the run (written once);
* ``status.json``: where the run stands: ``state`` is one of ``STATES``, with the step, timings,
  the divergence step, or the error; rewritten atomically on every change;
* ``metrics.jsonl``: one JSON object per line, ``{"step": s, "split": name, <metric>: value, ...}``;
  the ``train`` split also carries per-layer gradient norms and the step rate.

Every file is written atomically (a temporary file, then ``os.replace``) or appended line by line,
so a kill at any moment leaves either the old or the new content, at worst a last partial line, which
``read_metrics`` skips. wandb mirrors the metrics when it is available; any wandb failure (no network,
init timeout, a bad key) turns into one warning and the run goes on with its local records. No
secret is ever written: the records hold the config and metrics only, never the environment.

This module is the only one that imports wandb (lazily, so a disabled run never pays for it).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import glob
import json
import logging
import math
import netrc
import os
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from deeprnn_jax._extras import require

_log = logging.getLogger(__name__)

STATES = ('pending', 'running', 'finished', 'diverged', 'interrupted', 'failed')
DONE_STATES = ('finished', 'diverged')  # a rerun of the sweep skips these

CONFIG_FILE = 'config.json'
STATUS_FILE = 'status.json'
METRICS_FILE = 'metrics.jsonl'
CHECKPOINTS_DIR = 'checkpoints'
LOCK_FILE = '.lock'


def upgraded_config(config: Any) -> Any:
  """A stored config with the keys added since it was written set to the values that rebuild the runs
  it made. ``model.short_conv``: before it, the modern block had no short convolutions (``'cell'``);
  the classic block's default, None, is what it had."""
  if isinstance(config, dict) and isinstance(config.get('model'), dict) and 'short_conv' not in config['model']:
    config['model']['short_conv'] = 'cell' if config['model'].get('block') == 'modern' else None
  return config


class RunFolder:
  """The layout of one run folder, in one place: every path and every record file of a run.

  ``config.json`` (written once), ``status.json`` (merged atomically), ``metrics.jsonl`` (appended),
  ``checkpoints/`` (``checkpoint.Checkpointer``) and ``lock`` (``experiments/locks.py``).
  """

  def __init__(self, path: str):
    self.path = os.path.abspath(path)
    self.config = os.path.join(self.path, CONFIG_FILE)
    self.status = os.path.join(self.path, STATUS_FILE)
    self.metrics = os.path.join(self.path, METRICS_FILE)
    self.checkpoints = os.path.join(self.path, CHECKPOINTS_DIR)
    self.lock = os.path.join(self.path, LOCK_FILE)

  def read_config(self) -> dict | None:
    """The run's config as written, with the keys added since its code version set to what that
    code did (``upgraded_config``)."""
    return upgraded_config(read_json(self.config))

  def write_config(self, config: Any) -> None:
    """Writes the run's config, with the version of the code that makes the run (``code``)."""
    d = config.to_dict() if hasattr(config, 'to_dict') else dict(config)
    write_json(self.config, {**d, 'code': code_version()})

  def read_status(self) -> dict | None:
    return read_status(self.path)

  def update_status(self, **fields) -> dict:
    return update_status(self.path, **fields)

  def read_metrics(self) -> list[dict]:
    return read_metrics(self.metrics)


@functools.lru_cache(maxsize=None)
def code_version() -> dict[str, Any]:
  """``{'git_commit': sha, 'git_dirty': bool}`` of the deeprnn_jax source tree (empty outside git):
  which code produced a run, kept in its status and its wandb config."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    git = lambda *a: (
      subprocess.run(['git', *a], cwd=here, capture_output=True, text=True, timeout=10, check=True).stdout
    )
    commit = git('rev-parse', 'HEAD').strip()
    dirty = bool(git('status', '--porcelain', '--untracked-files=no').strip())
  except (OSError, subprocess.SubprocessError):
    return {}
  return {'git_commit': commit, 'git_dirty': dirty}


def one_line(e: BaseException) -> str:
  """``'<Type>: <first line of the message>'``, for status files and one-line errors (secrets removed)."""
  text = str(e).strip().splitlines()
  return redact(f'{type(e).__name__}: {text[0] if text else ""}')[:500]


def redact(text: str) -> str:
  """``text`` without the wandb API key: error messages (a library's included) end up in run folders."""
  key = os.environ.get('WANDB_API_KEY', '').strip()
  return text.replace(key, '<WANDB_API_KEY>') if len(key) >= 8 else text


# ----------------------------------------------------------------------------------------------
# Files.


def atomic_write_text(path: str, text: str) -> None:
  """Writes ``text`` so that readers see the old content or the new one, never a mix."""
  atomic_write_bytes(path, text.encode())


@contextlib.contextmanager
def _naming(path: str):
  """An OSError raised inside names ``path``: a failed ``write`` (a full disk) does not say which file."""
  try:
    yield
  except OSError as e:
    if e.filename is None and e.errno:
      raise type(e)(e.errno, e.strerror, path) from e
    raise


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes ``data`` so that readers (another runner, a report) see the old content or the new one."""
  directory = os.path.dirname(os.path.abspath(path))
  with _naming(path):
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
      with os.fdopen(fd, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.unlink(tmp)
      raise


def _json_default(v):
  if hasattr(v, 'tolist'):  # numpy / jax scalars and arrays
    return v.tolist()
  if isinstance(v, (set, frozenset)):
    return sorted(v)
  return str(v)


def _finite(v):
  """JSON has no NaN/Inf; keep them readable and parseable as strings."""
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)
  return v


def dumps(obj: Any, **kwargs) -> str:
  if isinstance(obj, Mapping):
    obj = {k: _finite(v) for k, v in obj.items()}
  return json.dumps(obj, default=_json_default, allow_nan=False, **kwargs)


def write_json(path: str, obj: Any) -> None:
  atomic_write_text(path, dumps(obj, indent=2, sort_keys=True) + '\n')


def read_json(path: str) -> Any | None:
  """The parsed file, or None if it is missing or not valid JSON (logged: a corrupt record)."""
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    _log.warning('ignoring unreadable %s (%s)', path, e)
    return None


def read_record(path: str, set_aside: bool = True) -> dict | None:
  """A record file that must hold a JSON object (``sweep.json``, ``study.json``), or None if it is missing.

  A damaged one (truncated, garbled, not an object) is moved aside to ``<path>.damaged-<ns>``, with a
  warning naming both: the caller writes a fresh one, and nothing of the old is lost. ``set_aside=False``:
  a read-only look (a check before the write that sets it aside), None for a damaged one, silently."""
  try:
    with open(path) as f:
      record = json.load(f)
    if isinstance(record, dict):
      return record
    problem = f'a JSON {type(record).__name__}, not an object'
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:
    problem = one_line(e)
  if not set_aside:
    return None
  aside = f'{path}.damaged-{time.time_ns()}'
  os.replace(path, aside)
  _log.warning('%s is unreadable (%s); moved it to %s and writing a new one', path, problem, aside)
  return None


# Errors of the storage, not of a run: every run would hit them, so a runner stops at the first.
STORAGE_ERRNOS = {
  errno.ENOSPC: 'no space left on the device',
  errno.EDQUOT: 'the disk quota is used up',
  errno.EROFS: 'the file system is read-only',
  errno.EACCES: 'permission denied',
  errno.EPERM: 'permission denied',
}


def storage_problem(e: BaseException) -> str | None:
  """One line for an error of the storage (a full disk, a quota, a read-only workdir), naming the file
  and the fix; None for any other error."""
  if not isinstance(e, OSError) or e.errno not in STORAGE_ERRNOS:
    return None
  where = f' writing {e.filename}' if e.filename else ''
  fix = 'free some space' if e.errno in (errno.ENOSPC, errno.EDQUOT) else 'make the workdir writable'
  return (
    f'{STORAGE_ERRNOS[e.errno]}{where}; every run keeps its records and checkpoints up to its last whole save: '
    f'{fix} (or use another --workdir) and run the same command again to resume'
  )


def code_change(run_dirs: Iterable[str]) -> str | None:
  """One line if runs among ``run_dirs`` were made (begun, or last resumed) by another commit than this
  code's (``code_version``; config.json keeps the first, status.json the latest); None if not, or outside git."""
  now = code_version().get('git_commit')
  if not now:
    return None
  runs, commits = 0, set()
  for run_dir in run_dirs:
    config = read_json(os.path.join(run_dir, CONFIG_FILE))
    code = config.get('code') if isinstance(config, dict) else None
    made = {code.get('git_commit') if isinstance(code, dict) else None, (read_status(run_dir) or {}).get('git_commit')}
    made -= {None, now}
    runs += bool(made)
    commits |= made
  if not runs:
    return None
  return (
    f'the code changed: {runs} run{"s" if runs > 1 else ""} here {"were" if runs > 1 else "was"} made by commit '
    f'{", ".join(sorted(c[:10] for c in commits))}, this is {now[:10]}; results of two code versions may not '
    'compare: to rerun every run with this code, use another --workdir'
  )


def read_metrics(path: str) -> list[dict]:
  """All well-formed records of a metrics file; a garbled or partial line is skipped with a warning."""
  records = []
  try:
    with open(path) as f:
      lines = f.readlines()
  except FileNotFoundError:
    return records
  for i, line in enumerate(lines):
    line = line.strip()
    if not line:
      continue
    try:
      rec = json.loads(line)
    except ValueError:
      _log.warning('%s: skipping garbled line %d', path, i + 1)
      continue
    if not isinstance(rec, dict) or not isinstance(rec.get('step'), int):
      _log.warning('%s: skipping malformed record on line %d', path, i + 1)
      continue
    records.append(rec)
  return records


class MetricsLog:
  """Appends records to ``metrics.jsonl``; each record is one line, flushed as written."""

  def __init__(self, path: str):
    self.path = path

  def truncate_after(self, step: int, keep: Callable[[dict], bool] = lambda r: True) -> None:
    """Keeps the well-formed records up to ``step`` (that ``keep`` accepts): a resumed run rewrites
    what came after."""
    kept = [r for r in read_metrics(self.path) if r['step'] <= step and keep(r)]
    atomic_write_text(self.path, ''.join(dumps(r) + '\n' for r in kept))

  def reset(self) -> None:
    atomic_write_text(self.path, '')

  def append(self, records: Iterable[Mapping[str, Any]]) -> None:
    text = ''.join(dumps(dict(r)) + '\n' for r in records)
    if text:
      with _naming(self.path), open(self.path, 'a') as f:
        f.write(text)
        f.flush()


def read_status(run_dir: str) -> dict | None:
  status = read_json(os.path.join(run_dir, STATUS_FILE))
  if status is not None and (not isinstance(status, dict) or status.get('state') not in STATES):
    _log.warning('ignoring malformed %s', os.path.join(run_dir, STATUS_FILE))
    return None
  return status


def is_done(status: Mapping[str, Any] | None, num_steps: int) -> bool:
  """Whether a run with ``status`` needs no more training toward ``num_steps`` steps: it diverged,
  stopped early, or finished all of them (a finished run whose config now asks for more steps is
  extended, see ``identity.continuation_problem``)."""
  if not status or status.get('state') not in DONE_STATES:
    return False
  return status['state'] == 'diverged' or bool(status.get('stopped_early')) or int(status.get('step') or 0) >= num_steps


def update_status(run_dir: str, **fields) -> dict:
  """Merges ``fields`` into ``status.json`` (atomically) and returns the new status."""
  if 'state' in fields and fields['state'] not in STATES:
    raise ValueError(f'unknown run state {fields["state"]!r}; valid: {STATES}')
  status = read_status(run_dir) or {}
  status.update(fields)
  write_json(os.path.join(run_dir, STATUS_FILE), status)
  return status


# ----------------------------------------------------------------------------------------------
# wandb.


def resolve_wandb_mode(mode: str | None) -> str:
  """The config's mode if set, else ``$WANDB_MODE``, else online with an API key and offline without.

  Only the *presence* of a key is checked (``$WANDB_API_KEY`` or a ``~/.netrc`` entry for the wandb
  host); the key itself is never read into the run.
  """
  if mode:
    return mode
  env = os.environ.get('WANDB_MODE', '').strip().lower()
  aliases = {'dryrun': 'offline', 'run': 'online'}
  env = aliases.get(env, env)
  if env in ('online', 'offline', 'disabled'):
    return env
  if os.environ.get('WANDB_API_KEY'):
    return 'online'
  try:
    host = os.environ.get('WANDB_BASE_URL', 'https://api.wandb.ai').split('://')[-1].split('/')[0]
    if netrc.netrc().authenticators(host):
      return 'online'
  except (OSError, netrc.NetrcParseError):
    pass
  return 'offline'


def call_with_timeout(fn: Callable[[], Any], seconds: float, what: str) -> Any:
  """``fn()``, or ``TimeoutError`` if it has not returned after ``seconds``.

  ``fn`` runs in a daemon thread that is left behind if it hangs: a call into a library that waits
  on the network (wandb's init and finish) cannot then hold up training, nor the process's exit.
  """
  box = {}

  def target():
    try:
      box['value'] = fn()
    except BaseException as e:  # pylint: disable=broad-except  (handed to the caller)
      box['error'] = e

  thread = threading.Thread(target=target, name=what, daemon=True)
  thread.start()
  thread.join(seconds)
  if thread.is_alive():
    raise TimeoutError(f'{what} did not return within {seconds:g} s')
  if 'error' in box:
    raise box['error']
  return box.get('value')


_WANDB_BLOCK, _WANDB_HEADER = 32768, 7


def wandb_written(directory: str, run_id: str) -> set[tuple[str, int]] | None:
  """The ``(split, step)`` records wandb has written for run ``run_id`` under ``directory`` (the
  ``dir`` given to ``wandb.init``), read back from its transaction logs
  (``wandb/*-<id>/run-<id>.wandb``, one per process that opened the run, online or offline), or None
  when there is none to read (never opened, deleted, or wandb not installed).

  A transaction log is wandb's own record of what it has taken in (it syncs from it): a record still
  in a killed process's buffers is not in it. The file is a LevelDB-style log: a 7-byte header, then
  32 KiB blocks of chunks ``crc32c (4) | length (2, little-endian) | type (1 full, 2 first, 3 middle,
  4 last)``, each record a ``wandb_internal_pb2.Record``. A torn tail (a kill mid-write) ends the read.
  """
  pattern = os.path.join(directory, 'wandb', f'*-{glob.escape(run_id)}', f'run-{glob.escape(run_id)}.wandb')
  paths = sorted(glob.glob(pattern))
  if not paths:
    return None
  try:
    from wandb.proto import wandb_internal_pb2  # noqa: PLC0415  (wandb only where it is used)
  except ImportError:
    return None
  have = set()
  for path in paths:
    try:
      with open(path, 'rb') as f:
        data = f.read()
    except OSError:
      continue
    pos, pending = _WANDB_HEADER, b''
    while pos + _WANDB_HEADER <= len(data):
      left = _WANDB_BLOCK - pos % _WANDB_BLOCK
      if left < _WANDB_HEADER:
        pos += left
        continue
      length, kind = int.from_bytes(data[pos + 4 : pos + 6], 'little'), data[pos + 6]
      if (kind == 0 and length == 0) or pos + _WANDB_HEADER + length > len(data):
        break
      pending += data[pos + _WANDB_HEADER : pos + _WANDB_HEADER + length]
      pos += _WANDB_HEADER + length
      if kind not in (1, 4):
        continue
      record = wandb_internal_pb2.Record()
      try:
        record.ParseFromString(pending)
      except Exception:  # pylint: disable=broad-except  (a damaged record: what follows is not trusted)
        break
      pending = b''
      if record.WhichOneof('record_type') != 'history':
        continue
      row = {(item.key or '/'.join(item.nested_key)): item.value_json for item in record.history.item}
      if 'step' in row:
        step = int(json.loads(row['step']))
        have.update((key.split('/')[0], step) for key in row if '/' in key)
  return have


class WandbRun:
  """One wandb run that can never stop training: every call is guarded, the first failure disables it.

  ``init`` and ``finish`` (the calls that wait on the wandb server) give up after ``timeout``
  seconds; a failure is logged once as a warning and kept in ``error``. Several runs can be open in
  one process (``reinit='create_new'``): the seeds of a group each get their own wandb run,
  grouped together by ``group``.
  """

  def __init__(
    self,
    mode: str,
    *,
    project: str,
    name: str,
    directory: str,
    config: Mapping[str, Any],
    run_id: str | None = None,
    entity: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    tags: Iterable[str] = (),
    metric_modes: Mapping[str, str] | None = None,
    timeout: float = 60.0,
  ):
    self._run = None
    self.mode = mode
    self.timeout = timeout
    self.error: str | None = None
    if mode == 'disabled':
      return
    try:
      wandb = require('wandb', 'experiments', 'Weights & Biases logging (wandb.mode)')
      os.makedirs(directory, exist_ok=True)
      settings = wandb.Settings(
        console='off', silent=True, disable_git=True, save_code=False, reinit='create_new', init_timeout=timeout
      )
      # Under `wandb agent` the agent owns the run id (WANDB_RUN_ID); elsewhere ours makes resume work.
      run_id = None if os.environ.get('WANDB_SWEEP_ID') else run_id
      init = lambda: wandb.init(
        mode=mode,
        project=project,
        entity=entity,
        group=group,
        job_type=job_type,
        tags=list(tags) or None,
        name=name,
        id=run_id,
        resume='allow' if run_id else None,
        dir=directory,
        config=dict(config),
        allow_val_change=True,
        settings=settings,
      )
      self._run = call_with_timeout(init, timeout, 'wandb.init')
      self._run.define_metric('step')
      for key, summary in (metric_modes or {}).items():
        self._run.define_metric(key, step_metric='step', summary=summary)
      self._run.define_metric('*', step_metric='step')
    except Exception as e:  # pylint: disable=broad-except
      self._fail('init', e)

  @property
  def active(self) -> bool:
    return self._run is not None

  def _fail(self, what: str, e: Exception) -> None:
    self.error = f'{what}: {one_line(e)}'
    _log.warning('wandb %s failed (%s); continuing with local logs only', what, one_line(e))
    self._run = None

  def log(self, step: int, data: Mapping[str, Any]) -> None:
    if self._run is None:
      return
    try:
      self._run.log({**data, 'step': step})
    except Exception as e:  # pylint: disable=broad-except
      self._fail('log', e)

  def summary(self, data: Mapping[str, Any]) -> None:
    if self._run is None:
      return
    try:
      self._run.summary.update(dict(data))
    except Exception as e:  # pylint: disable=broad-except
      self._fail('summary', e)

  def log_files(
    self,
    name: str,
    kind: str,
    paths: Iterable[str],
    table: tuple[str, list[dict]] | None = None,
    images: Iterable[str] = (),
  ) -> None:
    """Logs ``paths`` as one artifact ``name`` of type ``kind``, ``table`` (key, rows) as a wandb
    Table and ``images`` (PNG paths) as images under ``plots/``."""
    if self._run is None:
      return
    try:
      import wandb  # pylint: disable=g-import-not-at-top

      artifact = wandb.Artifact(name, type=kind)
      for path in paths:
        artifact.add_file(path)
      self._run.log_artifact(artifact)
      data = {f'plots/{os.path.splitext(os.path.basename(p))[0]}': wandb.Image(p) for p in images}
      if table is not None:
        key, rows = table
        columns = sorted({k for r in rows for k in r})
        data[key] = wandb.Table(columns=columns, data=[[r.get(c) for c in columns] for r in rows])
      if data:
        self._run.log(data)
    except Exception as e:  # pylint: disable=broad-except
      self._fail('log_files', e)

  def finish(self, exit_code: int = 0) -> None:
    if self._run is None:
      return
    run = self._run
    try:
      call_with_timeout(lambda: run.finish(exit_code=exit_code), self.timeout, 'wandb finish')
    except Exception as e:  # pylint: disable=broad-except
      self._fail('finish', e)
    self._run = None


class RunLogger:
  """The metrics of one run: always to ``metrics.jsonl``, and mirrored to wandb.

  ``log(step, split, metrics)`` writes ``{"step", "split", **metrics}`` locally and
  ``{"<split>/<name>": value}`` to wandb.
  """

  def __init__(self, run_dir: str, wandb_run: WandbRun | None = None):
    self.run_dir = run_dir
    self.metrics = MetricsLog(os.path.join(run_dir, METRICS_FILE))
    self.wandb = wandb_run

  def log(self, step: int, split: str, metrics: Mapping[str, Any], to_wandb: bool = True) -> None:
    values = {k: float(v) if not isinstance(v, (int, str)) else v for k, v in metrics.items()}
    self.metrics.append([{'step': step, 'split': split, **values}])
    if self.wandb is not None and to_wandb:
      self.wandb.log(step, {f'{split}/{k}': v for k, v in values.items()})

  def summary(
    self, status: Mapping[str, Any], records: Iterable[Mapping[str, Any]], modes: Mapping[str, str] | None = None
  ) -> None:
    """The wandb summary at the end of a run: its outcome and measures from its status, and of every
    metric the last value (``<split>/<name>/last``) and the best over the whole run
    (``<split>/<name>/best``, by ``modes``: ``'min'`` or ``'max'`` per ``<split>/<name>``, default min).

    Computed from the run's complete records: wandb's own best-value summary (``define_metric``)
    covers only what one process sent, so after a resume it misses the steps before it.
    """
    if self.wandb is None:
      return
    modes = modes or {}
    values = {}
    for r in records:
      for k, v in r.items():
        if k not in ('step', 'split') and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
          key = f'{r["split"]}/{k}'
          best = values.get(f'{key}/best')
          better = max if modes.get(key, 'min') == 'max' else min
          values[f'{key}/best'] = v if best is None else better(best, v)
          values[f'{key}/last'] = v
    keys = (
      'state',
      'step',
      'compile_seconds',
      'steps_per_sec',
      'train_seconds',
      'best_step',
      'best_value',
      'threshold_step',
      'threshold_seconds',
      'diverged_step',
      'stopped_early',
    )
    self.wandb.summary({**{k: status[k] for k in keys if k in status}, **values})

  def finish(self, exit_code: int = 0) -> None:
    if self.wandb is not None:
      self.wandb.finish(exit_code)
