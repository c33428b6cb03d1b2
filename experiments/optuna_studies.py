"""Optuna studies of a tuning run: one per variant, their storage, samplers, pruners and trials.

``experiments/tune.py`` is the command and the order of things; this module is what happens to one
study. The storage is an Optuna ``RDBStorage`` (SQLite in the workdir by default, or PostgreSQL for many
machines); every runner (a process, a worker, a machine) opens the same studies there, asks a trial,
trains it and tells its value, so the runners share the budget without being told how.

Exact budgets. A variant is tuned until ``tune.trials`` of its trials are COMPLETE or PRUNED. Runners
decide that from the storage alone:

* before asking, a runner counts the counted (complete, pruned) and running trials; it asks only while
  their sum is below the budget, else waits for the running ones (they may still fail);
* two runners may both ask the last trial. Trial numbers are unique (Optuna locks the study row while it
  numbers a trial), so the trial with more than ``trials`` live trials (counted or running) ahead of it is
  *surplus*: it fails at once, before sampling, marked ``surplus`` (never trained, never counted);
* a runner that dies (``kill -9``, a lost machine) leaves its trial RUNNING. Each runner holds a lock file
  for its life (``experiments/locks.py``) and records it in its trials: a RUNNING trial whose owner's lock
  is free on this host is failed at once; a trial of another machine whose heartbeat stopped
  (``tune.heartbeat_seconds``, three missed beats) is failed by ``optuna.storages.fail_stale_trials``.
  A failed trial is never counted; its setting is queued again as a new trial (``retry_of`` its number),
  so a resumed study tries the settings an uninterrupted one would have. A trial interrupted by Ctrl-C or
  SIGTERM is failed and queued again the same way.

Every trial is the variant's first tuning run with the sampled values as config overrides, trained by the
ordinary trainer into ``<workdir>/<variant>/trials/<number>``, evaluated on ``val`` only (its test split is
never computed). Each evaluation's value is reported to Optuna, which may prune the trial there.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import socket
import time
import warnings
from typing import Any, Callable

import numpy as np

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import hyper
from deeprnn_jax.training import identity
from deeprnn_jax.training import runlog
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.training import tune_config
from deeprnn_jax.training.config import ConfigError
from experiments import sweep
from experiments.locks import RunLock

OWNERS_DIR = '.tune-owners'  # in the workdir: one lock file per live runner
_PRIMITIVE = (str, int, float, bool, type(None))


@dataclasses.dataclass
class Plan:
  """What a tuning run is, decided before anything trains: the variants (grid points), the searched
  dimensions, each variant's objective (metric and direction), the storage and the trials' seed."""

  config: Any
  workdir: str
  points: list[sweep.GridPoint]
  dims: list[tune_config.Dimension]
  objectives: dict[str, tuple[str, str]]  # variant -> (val metric, 'min' | 'max')
  url: str  # the storage URL, environment variables filled in: never printed
  shown_url: str  # the same with its password masked: what messages and files show
  trial_seed: int

  @property
  def trials(self) -> int:
    return self.config.tune.trials

  def study_name(self, point: sweep.GridPoint) -> str:
    """``<workdir name>:<variant>``: one study per variant, apart from other sweeps in a shared database."""
    return f'{os.path.basename(os.path.abspath(self.workdir))}:{point.variant}'

  def trial_dir(self, point: sweep.GridPoint, number: int) -> str:
    return os.path.join(self.workdir, point.variant, 'trials', str(number))


@dataclasses.dataclass
class Context:
  """How this runner runs trials: its stop flag, the trainer's event hook, where lines go, its index."""

  should_stop: Callable[[], bool]
  on_event: train_lib.EventHook
  echo: Callable[[str], None] = print
  worker_index: int = 0
  trainer: Callable[[TrialRun], float] | None = None  # how a trial trains (None: ``train_trial``)
  tasks: dict = dataclasses.field(default_factory=dict)  # variant -> the task with its val split only


class _Surplus(Exception):
  """A trial asked when the budget was already taken by the trials ahead of it (see the module doc)."""


class Owner:
  """This runner's claim, held for its life: a lock file under the workdir (``OWNERS_DIR``)."""

  def __init__(self, workdir: str):
    self.host = socket.gethostname()
    self.name = f'{self.host}-{os.getpid()}-{time.time_ns()}'
    self.lock = RunLock(os.path.join(workdir, OWNERS_DIR, f'{self.name}.lock'))
    self.lock.acquire()

  def attr(self) -> dict:
    return {'host': self.host, 'lock': os.path.basename(self.lock.path)}

  def release(self) -> None:
    self.lock.release()


def _owner_dead(workdir: str, owner: Any) -> bool:
  """Whether the runner that recorded ``owner`` (``Owner.attr``) on this host is gone: its lock is free."""
  if not isinstance(owner, dict) or owner.get('host') != socket.gethostname():
    return False  # another machine's: its heartbeat decides
  lock = RunLock(os.path.join(workdir, OWNERS_DIR, os.path.basename(str(owner.get('lock')))))
  free = lock.acquire()
  lock.release()
  return free


# ----------------------------------------------------------------------------------------------
# Storage, studies, samplers, pruners.


def open_storage(plan: Plan):
  """The ``RDBStorage`` with heartbeats; a database that cannot be opened is one line naming its URL."""
  import optuna  # pylint: disable=g-import-not-at-top

  optuna.logging.set_verbosity(optuna.logging.ERROR)  # the runner prints its own line per trial
  beat = plan.config.tune.heartbeat_seconds
  if plan.url.startswith('sqlite'):
    os.makedirs(plan.workdir, exist_ok=True)
  kwargs = {'connect_args': {'timeout': 60}} if plan.url.startswith('sqlite') else {'pool_pre_ping': True}
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
      return optuna.storages.RDBStorage(
        plan.url,
        heartbeat_interval=beat,
        grace_period=3 * beat,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
        engine_kwargs=kwargs,
      )
  except Exception as e:  # pylint: disable=broad-except  (sqlalchemy's, the driver's, alembic's)
    raise ConfigError('tune.storage', f'cannot open the tuning storage {plan.shown_url}: {hide(plan, e)}') from None


def hide(plan: Plan, e: BaseException) -> str:
  """``e`` as one line, without the storage's password (a driver's message might quote it)."""
  text = runlog.one_line(e)
  password = tune_config._password(plan.url)  # pylint: disable=protected-access
  return text.replace(password, '***') if password else text


def _pruner(config):
  import optuna  # pylint: disable=g-import-not-at-top

  t = config.train
  return {
    'none': optuna.pruners.NopPruner,
    'median': functools.partial(optuna.pruners.MedianPruner, n_startup_trials=5),
    'successive_halving': functools.partial(optuna.pruners.SuccessiveHalvingPruner, min_resource=t.eval_every_steps),
    'hyperband': functools.partial(
      optuna.pruners.HyperbandPruner, min_resource=t.eval_every_steps, max_resource=t.num_steps
    ),
  }[config.tune.pruner]()


def sampler(plan: Plan, asked: int, worker_index: int = 0):
  """The sampler for the next trial of a study that has ``asked`` trials.

  TPE and random draw from a generator seeded by (``tune.seed``, ``asked``, the worker), made anew for
  every trial: one runner gets the same trials every time and a resumed study goes on where it stopped
  (it does not draw its first values again), and two workers never draw the same values. The grid and
  Sobol samplers pick their next point from the storage, so their seed is ``tune.seed`` alone. Every
  variant gets the same seeds: the same first candidates, so variants are compared on equal draws.
  """
  import optuna  # pylint: disable=g-import-not-at-top

  t = plan.config.tune
  if t.sampler == 'grid':
    return optuna.samplers.GridSampler({d.key: _choices(d)[0] for d in plan.dims}, seed=t.seed)
  if t.sampler == 'qmc':
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
      return optuna.samplers.QMCSampler(qmc_type='sobol', scramble=True, seed=t.seed)
  seed = int(np.random.SeedSequence([t.seed, asked, worker_index]).generate_state(1)[0])
  return (optuna.samplers.TPESampler if t.sampler == 'tpe' else optuna.samplers.RandomSampler)(seed=seed)


def open_study(plan: Plan, storage, point: sweep.GridPoint):
  """The variant's study (created on first use). A study of the same name from another tuning (another
  metric, space or variant config) is refused: its trials would be compared with ours."""
  import optuna  # pylint: disable=g-import-not-at-top

  metric, mode = plan.objectives[point.variant]
  name = plan.study_name(point)
  try:
    study = optuna.create_study(
      storage=storage,
      study_name=name,
      direction='minimize' if mode == 'min' else 'maximize',
      pruner=_pruner(point.config),
      load_if_exists=True,
    )
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError('tune.storage', f'cannot open study {name!r} in {plan.shown_url}: {hide(plan, e)}') from None
  want = json.loads(
    runlog.dumps(
      {
        'metric': f'val/{metric}',
        'direction': mode,
        'space': tune_config.flat_space(plan.config.tune.space),
        'config': identity.result_fingerprint(trial_config(point, {}, plan.trial_seed)),
      }
    )
  )
  have = study.user_attrs.get('deeprnn_jax')
  if have is None:
    study.set_user_attr('deeprnn_jax', want)
  elif have != want:
    what = next(k for k in want if have.get(k) != want[k])
    raise ConfigError(
      '',
      f'{plan.shown_url} holds study {name!r} of another tuning (its {what} differs); '
      'use another --workdir or tune.storage',
    )
  return study


def counts(study) -> dict[str, int]:
  """A study's trials by outcome: complete, pruned, failed (not surplus), surplus, running (and waiting)."""
  out = dict.fromkeys(('complete', 'pruned', 'failed', 'surplus', 'running', 'waiting'), 0)
  for t in study.get_trials(deepcopy=False):
    state = {'fail': 'failed'}.get(t.state.name.lower(), t.state.name.lower())
    out['surplus' if state == 'failed' and t.user_attrs.get('surplus') else state] += 1
  return out


def fail_dead(plan: Plan, storage, study) -> None:
  """Fails the RUNNING trials whose runner is gone (by heartbeat, and at once for this host's runners) and
  queues each one's setting again (``retry``): a resumed study tries the settings it would have."""
  import optuna  # pylint: disable=g-import-not-at-top

  with warnings.catch_warnings():
    warnings.simplefilter('ignore', optuna.exceptions.ExperimentalWarning)
    optuna.storages.fail_stale_trials(study)  # the storage's RetryFailedTrialCallback queues them again
  for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
    if _owner_dead(plan.workdir, t.user_attrs.get('owner')):
      try:
        storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL)  # pylint: disable=protected-access
      except optuna.exceptions.UpdateFinishedTrialError:
        continue  # another runner failed it first (and queued it)
      retry(study, t)


def retry(study, trial) -> None:
  """Queues a failed trial's setting as a new trial (its sampled values, ``retry_of`` its number)."""
  if trial.params and not trial.user_attrs.get('surplus'):
    study.enqueue_trial(dict(trial.params), user_attrs={'retry_of': trial.number})


# ----------------------------------------------------------------------------------------------
# Trials.


def _choices(dim: tune_config.Dimension) -> tuple[list, bool]:
  """The values Optuna sees for ``dim``'s grid or categories, and whether they are JSON-encoded (Optuna
  stores only numbers, strings, booleans and None; a tuple such as ``head_features`` goes as text)."""
  values = dim.grid_values()
  if all(isinstance(v, _PRIMITIVE) for v in values):
    return values, False
  return [json.dumps(v) for v in values], True


def decode(plan: Plan, params: dict) -> dict[str, Any]:
  """A trial's Optuna params -> config values (JSON-encoded categories decoded)."""
  out = {}
  for dim in plan.dims:
    value = params[dim.key]
    out[dim.key] = json.loads(value) if dim.kind == 'categorical' and _choices(dim)[1] else value
  return out


def _suggest(plan: Plan, trial, dim: tune_config.Dimension):
  if dim.kind == 'categorical':
    return trial.suggest_categorical(dim.key, _choices(dim)[0])
  if dim.kind == 'int':
    return trial.suggest_int(dim.key, int(dim.low), int(dim.high), step=dim.step)
  return trial.suggest_float(dim.key, float(dim.low), float(dim.high), log=dim.kind == 'log_uniform')


def trial_config(point: sweep.GridPoint, values: dict[str, Any], seed: int, *, final: bool = False):
  """``point``'s run config at ``seed`` with ``values`` set and no tune section. A trial (not ``final``)
  evaluates ``val`` only, and logs to wandb grouped by variant."""
  d = config_lib.to_dict(point.run_config(seed))
  d['tune'] = {}
  for key, value in values.items():
    config_lib.set_path(d, key, value)
  if not final:
    d['train']['eval_splits'] = ('val',)
    d['logging']['job_type'] = d['logging']['job_type'] or f'tune-{point.variant}'
  return config_lib.validate(d)


def _trial_task(ctx: Context, point: sweep.GridPoint):
  """The variant's task with only its val split: a trial never evaluates test (nor any other split)."""
  if point.variant not in ctx.tasks:
    ctx.tasks[point.variant] = dataclasses.replace(point.task, eval_splits={'val': point.task.eval_splits['val']})
  return ctx.tasks[point.variant]


def val_curve(run_dir: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
  """``(steps, values)`` of ``val/<metric>`` in a run folder's metrics.jsonl."""
  rs = [r for r in runlog.RunFolder(run_dir).read_metrics() if r.get('split') == 'val' and metric in r]
  return np.asarray([r['step'] for r in rs], int), np.asarray([r[metric] for r in rs], float)


def next_trial(plan: Plan, storage, point: sweep.GridPoint, ctx: Context, owner: Owner) -> str:
  """Runs one trial of ``point``'s study if its budget allows: ``'ran'``; ``'done'`` when the budget is
  met; ``'busy'`` when the rest of it is running elsewhere; ``'stuck'`` when trials keep failing."""
  study = open_study(plan, storage, point)
  fail_dead(plan, storage, study)
  n = counts(study)
  if n['complete'] + n['pruned'] >= plan.trials:
    return 'done'
  if n['failed'] >= max(plan.trials, 3):
    return 'stuck'
  if n['complete'] + n['pruned'] + n['running'] >= plan.trials:
    return 'busy'
  study.sampler = sampler(plan, sum(n.values()), ctx.worker_index)
  interrupted = []
  objective = functools.partial(_objective, plan, point, ctx, owner, interrupted)
  study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
  if interrupted:
    raise interrupted[0]
  return 'ran'


@dataclasses.dataclass
class TrialRun:
  """One trial, as its trainer (``Context.trainer``) sees it: the variant, the sampled values and the run
  config they make, the run folder, the objective, and ``report(value, step) -> prune?`` (to Optuna).
  ``notes`` become the trial's user attributes (``best_step``, ``diverged_step``)."""

  point: sweep.GridPoint
  values: dict[str, Any]
  config: Any
  run_dir: str
  metric: str
  mode: str
  report: Callable[[float, int], bool]
  ctx: Context
  notes: dict = dataclasses.field(default_factory=dict)


def train_trial(run: TrialRun) -> float:
  """The default trainer: the ordinary trainer on the variant's val-only task. Each evaluation's value is
  reported; a trial to prune stops at the next step (the trainer's stop request, after a checkpoint) and
  raises ``optuna.TrialPruned``, as does a run that diverges (counted: the setting was tried; never
  chosen). Returns the best val value over the evaluations."""
  import optuna  # pylint: disable=g-import-not-at-top

  pruned_at = []

  def on_event(name: str, step: int) -> None:
    run.ctx.on_event(name, step)
    if name == 'eval' and not pruned_at:
      steps, vals = val_curve(run.run_dir, run.metric)
      if steps.size and steps[-1] == step and math.isfinite(vals[-1]) and run.report(float(vals[-1]), step):
        pruned_at.append(step)

  try:
    status = train_lib.train(
      run.config,
      run.run_dir,
      should_stop=lambda: bool(pruned_at) or run.ctx.should_stop(),
      task=_trial_task(run.ctx, run.point),
      on_event=on_event,
      # Optimizer hyperparameters as inputs of the programs: trials of a variant that differ only in
      # them reuse its compiled programs (train.programs_for).
      inject_hyperparams=hyper.problem(run.config) is None,
    )
  except train_lib.Interrupted:
    if pruned_at and not run.ctx.should_stop():
      raise optuna.TrialPruned(f'pruned at step {pruned_at[0]}') from None
    raise
  if status['state'] == 'diverged':
    run.notes['diverged_step'] = status.get('diverged_step')
    raise optuna.TrialPruned(f'diverged at step {status.get("diverged_step")}')
  steps, vals = val_curve(run.run_dir, run.metric)
  ok = np.isfinite(vals)
  if not ok.any():
    raise RuntimeError(f'{run.run_dir}: no finite val/{run.metric} recorded')
  best = int(np.flatnonzero(ok)[np.argmin(vals[ok]) if run.mode == 'min' else np.argmax(vals[ok])])
  run.notes['best_step'] = int(steps[best])
  return float(vals[best])


def _objective(plan: Plan, point: sweep.GridPoint, ctx: Context, owner: Owner, interrupted: list, trial) -> float:
  """One trial: the surplus check, the sampled values, then ``ctx.trainer`` (see the module docstring)."""
  import optuna  # pylint: disable=g-import-not-at-top

  trial.set_user_attr('owner', owner.attr())
  live = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
  if sum(t.number < trial.number for t in trial.study.get_trials(deepcopy=False, states=live)) >= plan.trials:
    trial.set_user_attr('surplus', True)
    raise _Surplus(f'trial {trial.number}: the budget of {plan.trials} is taken by the trials ahead of it')
  values = decode(plan, {d.key: _suggest(plan, trial, d) for d in plan.dims})
  metric, mode = plan.objectives[point.variant]
  run_dir = plan.trial_dir(point, trial.number)
  trial.set_user_attr('run_dir', os.path.relpath(run_dir, plan.workdir))
  ctx.echo(
    f'{point.variant} trial {trial.number}: ' + ', '.join(f'{k.split(".")[-1]}={_short(v)}' for k, v in values.items())
  )
  if os.path.lexists(run_dir):  # left by a storage that no longer knows this trial number
    shutil.rmtree(run_dir)

  def report(value: float, step: int) -> bool:
    trial.report(value, step)
    return trial.should_prune()

  run = TrialRun(point, values, trial_config(point, values, plan.trial_seed), run_dir, metric, mode, report, ctx)
  try:
    value = (ctx.trainer or train_trial)(run)
  except optuna.TrialPruned as e:
    ctx.echo(f'  {e}')
    raise
  except train_lib.Interrupted as e:
    interrupted.append(e)
    retry(trial.study, trial)  # this trial is failed; a resumed study tries its setting again
    raise
  finally:
    for k, v in run.notes.items():
      trial.set_user_attr(k, v)
  ctx.echo(f'  val/{metric} {value:.6g}' + (f' (step {run.notes["best_step"]})' if 'best_step' in run.notes else ''))
  return value


def _short(v: Any) -> str:
  return f'{v:.4g}' if isinstance(v, float) else str(v)
