"""The loop of one grid point: its seeds trained together, logged, evaluated and checkpointed.

The step functions it runs (``init_state``, ``train_step``, ``eval_step``) are ``steps.py``; they are
imported here too, so ``train.train_step`` keeps working.

``train(config, workdir)`` trains one run into the run folder ``workdir``; ``train_seeds(configs,
run_dirs)`` trains runs that differ only in ``train.seed`` *together*: every array of the
``TrainState`` has a leading seed axis and one compiled step updates every seed, so the seeds share
one compilation, one dispatch per step and one evaluation call. The seed program says how the step
covers the seed axis: ``jax.vmap`` (the seeds batched, so S small recurrent models fill an
accelerator that one leaves idle) or ``lax.map`` (one seed after another inside the program, each
with the unbatched computation: on CPU batched matmuls run slower than S separate ones, see
BENCHMARKS.md). Each seed of a group follows the trajectory it would follow alone:

* a seed's keys come from its seed only (``PRNGKey(seed)`` split into init, dropout and data keys);
* batches are ``task.train_batch(data_key, step, batch_size)``, a pure function of (key, step), and
  dropout uses ``fold_in(dropout_key, step)``, so a run resumed at step k sees the same batches and
  masks as one that never stopped;
* a seed that stops (reached the task threshold with ``train.early_stop``, or diverged) is frozen
  inside the step (``where(ok, new, old)``) while the others go on;
* a stateful task (``Task.stateful``: ``word_lm``, ``char_lm``, truncated BPTT) reads window
  ``step mod windows_per_epoch`` of its ``batch_size`` streams, and each stream's recurrent state
  passes from step to step in ``TrainState.carries`` (restarted at each epoch), so it too is part of
  the checkpoint and a resumed run continues the streams exactly.

The host never waits on the device between log intervals: the step accumulates the interval's train
metrics in ``TrainState.acc``, and non-finite values are caught *in* the step (``diverged_at``: the
first step with a NaN/Inf loss, gradient norm or parameter; the seed's state stays at its last finite
value). The host reads both at each sync point (log, eval, checkpoint, stop). Everything per seed on
the host (folder, records, checkpoints, wandb) is a ``seed_run.SeedRun``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import host_memory
from deeprnn_jax.training import hyper
from deeprnn_jax.training import identity
from deeprnn_jax import models
from deeprnn_jax.training import parallel
from deeprnn_jax.training import progress as progress_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training.seed_run import Cadence, SeedRun, data_fingerprint, task_facts
from deeprnn_jax.training.steps import (
  TrainState,
  eval_chunks,
  eval_step,
  from_state_dict,
  init_state,
  metric_names,
  predict_step,
  state_dict,
  task_batch,
  train_step,
)
from deeprnn_jax.tasks import base as task_base

ConfigDict = ml_collections.ConfigDict
Batch = task_base.Batch
# on_event(name, step): the trainer's hook at named moments ('step', 'eval', 'checkpoint', 'finish'), e.g.
# for tests that stop a process exactly there, or the tuner's pruning. It must not change what is computed.
EventHook = Callable[[str, int], None]
_log = logging.getLogger(__name__)


class Interrupted(Exception):
  """Training stopped on request (SIGTERM / Ctrl-C); a checkpoint was saved and the runs marked."""


# ----------------------------------------------------------------------------------------------
# The programs of one grid point: every seed at once.


class Programs:
  """The model, optimizer and jitted programs of one grid point's S seeds (leading seed axis).

  ``step[b](state, active, data)``: one update of every seed, its batch drawn inside the program
  (length bucket ``b``); ``init(seeds, data)``; ``evaluate(params, splits)``: exact means per seed.
  """

  def __init__(self, config: ConfigDict, task: task_base.Task, seed_program: str, inject: bool = False):
    """``seed_program``: ``'vmap'``, ``'loop'`` or ``'single'`` (resolved, ``parallel.resolve_seed_program``);
    ``inject``: the optimizer's hyperparameters in its state (``hyper``), so that the programs serve any
    values of them: each seed row's own after ``init`` (``with_rows``)."""
    c = config
    self.task = task
    self.inject = inject
    self.model = build.model_from_config(c, task)
    self.tx = hyper.optimizer(c, task) if inject else build.optimizer_from_config(c, task)[0]
    self.mesh = parallel.data_mesh()  # None on one device; all local devices otherwise
    if self.mesh is not None and c.train.batch_size % self.mesh.size:
      raise config_lib.ConfigError(
        'train.batch_size',
        f'{c.train.batch_size} does not split over {self.mesh.size} devices; use a multiple of {self.mesh.size}',
      )
    self.seed_program = seed_program
    per_seed = lambda fn, in_axes: jax.jit(parallel.over_seeds(fn, in_axes, self.seed_program))
    self.metric_names = metric_names(self.model, task)
    # Metrics computed from a split's means (Task.derived), e.g. perplexity.
    self.derived_names = tuple(task.derived({k: np.zeros(1) for k in self.metric_names})) if task.derived else ()
    # The initial states always loop over the seeds: vmapped, their batched QRs can deadlock XLA:CPU.
    self.init = jax.jit(
      parallel.init_over_seeds(
        lambda seed, data: init_state(
          self.model, self.tx, task, seed, data=data, metrics=self.metric_names, batch_size=c.train.batch_size
        ),
        (0, None),
      )
    )
    # One step program per length bucket (one in all for fixed-length tasks).
    self.buckets = tuple(range(len(task.length_buckets))) or (None,)
    self.step = {
      b: jax.jit(
        parallel.over_seeds(functools.partial(self._step, c.train.batch_size, b), (0, 0, None), self.seed_program),
        donate_argnums=(0,),
      )
      for b in self.buckets
    }
    self.eval_fn = per_seed(functools.partial(eval_step, self.model, task), (0, None))
    self.predict_fn = per_seed(functools.partial(predict_step, self.model), (0, None)) if task.score else None
    self.eval_data = {
      s: [parallel.place(ch, self.mesh) for ch in eval_chunks(task.eval_splits[s], c.train.eval_batch_size)]
      for s in task.eval_splits
    }

  def _step(self, batch_size: int, bucket: int | None, state: TrainState, active, data) -> TrainState:
    # With several devices the batch is split over them; the gradient all-reduce follows from it.
    batch = parallel.shard_batch(task_batch(self.task, state.data_key, state.step, batch_size, data, bucket), self.mesh)
    return train_step(self.model, self.tx, self.task, state, batch, active)

  def with_rows(self, state: TrainState, configs: Sequence[ConfigDict]) -> TrainState:
    """``state`` (S rows) with row i's optimizer hyperparameters those of ``configs[i]`` (injected)."""
    if not self.inject:
      return state
    return state.replace(opt_state=hyper.set_rows(state.opt_state, [hyper.values(c) for c in configs]))

  def bucket(self, step: int) -> int | None:
    """The length bucket of ``step``: a function of the step alone (seed 0 for every run), so all the
    seeds of a group share one bucket per step and each still matches its separate run."""
    if self.buckets == (None,):
      return None
    return task_base.bucket_for_step(self.task.bucket_probs, 0, step)

  def compile(self, state: TrainState, active, data) -> dict:
    """Every bucket's step, lowered from shapes alone: a fresh and a restored state give the same
    program (and compilation-cache key)."""
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), (state, active, data))
    return {b: f.lower(*shapes).compile() for b, f in self.step.items()}

  def evaluate(self, params, splits: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {metric: [S] values}}``: exact means over each of ``splits``, plus ``Task.score``'s."""
    out = {}
    for split in splits:
      total, predictions = None, []
      for chunk in self.eval_data[split]:
        sums = self.eval_fn(params, chunk)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
        if self.predict_fn is not None:
          predictions.append(np.asarray(self.predict_fn(params, chunk)))
      total = jax.device_get(total)
      out[split] = {
        k: np.asarray(t, np.float64) / np.maximum(np.asarray(n, np.float64), 1e-12) for k, (t, n) in total.items()
      }
      if self.task.derived is not None:
        out[split].update(self.task.derived(out[split]))
      if predictions:
        out[split].update(self._scores(split, np.concatenate(predictions, axis=1)))
    return out

  def _scores(self, split: str, predictions: np.ndarray) -> dict[str, np.ndarray]:
    """``Task.score`` of each seed's ``[S, n_padded, ...]`` predictions (padding rows dropped)."""
    arrays = self.task.eval_splits[split]
    n = len(jax.tree.leaves(arrays['lengths'])[0])
    per_seed = [self.task.score(split, p[:n], arrays) for p in predictions]
    return {k: np.asarray([s[k] for s in per_seed], np.float64) for k in per_seed[0]}


# ----------------------------------------------------------------------------------------------
# The loop.


def train(
  config: ConfigDict,
  workdir: str,
  *,
  should_stop: Callable[[], bool] | None = None,
  task: task_base.Task | None = None,
  on_event: EventHook | None = None,
  inject_hyperparams: bool | None = None,
) -> dict:
  """Trains one run into the run folder ``workdir`` (resuming it if it holds a checkpoint).

  Returns the run's final ``status.json`` content. Raises ``ConfigError`` on a bad config (before
  any compute) and ``Interrupted`` when ``should_stop()`` turned true (after saving a checkpoint).
  ``task``: the task ``config.task`` describes, if the caller has built it already.
  ``inject_hyperparams``: as ``train_seeds``'s.
  """
  return train_seeds(
    [config], [workdir], should_stop=should_stop, task=task, on_event=on_event, inject_hyperparams=inject_hyperparams
  )[0]


# status.json's time_parts: where the time of the command that trained a run went, in seconds.
TIME_PARTS = ('setup', 'compile', 'train', 'log', 'evaluate', 'checkpoint')

# The programs of the last injected group (``programs_for``): the tuner's next trial of the same variant
# differs only in injected values and reuses them, compiled.
_INJECTED_PROGRAMS: dict[tuple, Programs] = {}


def programs_for(config: ConfigDict, task: task_base.Task, seed_program: str, inject: bool) -> Programs:
  """``Programs(...)``; with ``inject``, the same object again for a config that differs only in
  injected values and seeds (its compiled programs with it), one group kept at a time."""
  if not inject:
    return Programs(config, task, seed_program)
  key = (identity.fingerprint(identity.without_seed(hyper.without_values(config))), seed_program)
  cached = _INJECTED_PROGRAMS.get(key)
  if cached is None or cached.task is not task:
    _INJECTED_PROGRAMS.clear()
    cached = _INJECTED_PROGRAMS[key] = Programs(config, task, seed_program, inject=True)
  return cached


def train_seeds(
  configs: Sequence[ConfigDict],
  run_dirs: Sequence[str],
  *,
  should_stop: Callable[[], bool] | None = None,
  task: task_base.Task | None = None,
  seed_program: str | None = None,
  on_event: EventHook | None = None,
  facts: Mapping[str, Any] | None = None,
  inject_hyperparams: bool | None = None,
) -> list[dict]:
  """Trains runs that differ only in ``train.seed`` together, as one program; see the module doc.

  ``seed_program``: ``'vmap'``, ``'loop'`` or ``'auto'`` (``parallel.resolve_seed_program``); None:
  the configs' ``sweep.seed_program``. ``facts``: how the runs are launched (e.g. ``{'workers': 2}``,
  the processes sharing the machine), written into each run's status.json for the report.
  Runs whose folder says they are done (finished or diverged) are not trained again; the others
  resume from their checkpoints. Returns each run's final status, in order.

  A *population*: runs that also differ in their optimizer hyperparameters (``hyper.KEYS`` and the
  optimizer's numeric arguments) train together too, each row with its own values in its optimizer
  state. ``inject_hyperparams``: put them in the state even when the runs share them (True; the
  programs then serve other values without a new compile: the tuner's trials), or never (False);
  None: for a population only. A run resumes with the setting it was trained with (its status.json).
  """
  if len(configs) != len(run_dirs) or not configs:
    raise ValueError('train_seeds needs one run folder per config, and at least one')
  configs = [config_lib.validate(c) for c in configs]
  population = hyper.is_population(configs)
  if population and inject_hyperparams is False:
    raise ValueError('train_seeds: runs that differ in their hyperparameters need inject_hyperparams')
  # A population's members may share a seed (trials of one setting each); no two runs may be the same run.
  seeds = [(c.train.seed, *sorted(hyper.values(c).items())) if population else c.train.seed for c in configs]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f'train_seeds: seeds repeat: {seeds}')
  statuses = [runlog.read_status(d) for d in run_dirs]
  inject = population or bool(inject_hyperparams) or any((s or {}).get('hyperparams_injected') for s in statuses)
  todo = [i for i, s in enumerate(statuses) if not runlog.is_done(s, configs[i].train.num_steps)]
  if todo:
    runs = [SeedRun(configs[i], run_dirs[i]) for i in todo]
    task = task or build.task_from_config(configs[0])
    build.check_task_config(configs[0], task)  # every check on the config and the task before any write
    seed_program = seed_program or configs[0].sweep.seed_program
    for i, status in zip(
      todo,
      _train_group(
        runs,
        task,
        seed_program,
        should_stop or (lambda: False),
        on_event or (lambda name, step: None),
        dict(facts or {}),
        inject,
      ),
    ):
      statuses[i] = status
  return statuses


def _train_group(
  runs: list[SeedRun], task: task_base.Task, seed_program: str, should_stop, on_event, facts: dict, inject: bool
) -> list[dict]:
  """Trains the seeds of one grid point: set up, resume, then ``_Loop.run``."""
  config = runs[0].config
  host_memory.keep_freed_memory()  # reuse each step's freed buffers (XLA:CPU frees them per execution)
  setup_start = time.perf_counter()
  programs = programs_for(config, task, parallel.resolve_seed_program(seed_program, len(runs)), inject)
  cadence = Cadence.from_config(config, task)
  data_print = data_fingerprint(task)  # refuses to resume a run on changed data
  for run in runs:
    run.claim_folder(data_print)
  data = parallel.place(task.train_data, programs.mesh)
  fresh = programs.init(jnp.asarray([r.seed for r in runs], jnp.uint32), data)
  fresh = parallel.place(programs.with_rows(fresh, [r.config for r in runs]), programs.mesh)
  params = models.count_params(jax.tree.map(lambda x: x[0], fresh.params))
  wandb_mode = runlog.resolve_wandb_mode(config.logging.wandb_mode)
  modes = {
    f'{s}/{m}': task.metric_modes.get(m, 'min')
    for s in ('train', *cadence.splits)
    for m in ('loss', *programs.metric_names, *programs.derived_names)
  }
  try:
    for run in runs:
      # After one wandb failure the other seeds go without wandb rather than each wait out the
      # same timeout (the error is recorded in every seed's status).
      failed = next(
        (r.records.logger.wandb.error for r in runs if r.records.logger and r.records.logger.wandb.error), None
      )
      run.open('disabled' if failed else wandb_mode, params, modes)
      if failed:
        run.records.wandb_status['wandb_error'] = failed
    state = _resume(runs, fresh, cadence, programs.mesh)
    del fresh
    start = int(runs[0].progress['step'])
    for run in runs:
      run.start(
        step=start,
        params=params,
        seeds_in_program=len(runs),
        seed_program=programs.seed_program,
        facts=task_facts(task, cadence.splits),
        **facts,
        **({'hyperparams_injected': True} if inject else {}),
      )
    loop = _Loop(runs, programs, cadence, data, should_stop, on_event)
    loop.parts['setup'] = time.perf_counter() - setup_start
    return loop.run(state, start)
  except Interrupted:
    raise
  except BaseException as e:
    # A second Ctrl-C (KeyboardInterrupt) stops at once: the runs are interrupted, not failed, and
    # resume from their newest checkpoint.
    for run in runs:
      run.abort(e)
    raise
  finally:
    for run in runs:
      run.close()


def _resume(runs: list[SeedRun], fresh: TrainState, cadence: Cadence, mesh) -> TrainState:
  """The state to start from: the newest step every seed can resume from (``SeedRun.restorable``),
  or step 0. Records and checkpoints after that step are dropped; with no such step the seeds start
  over, with a warning."""
  like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state_dict(fresh))
  restored = [run.restorable(like, cadence) for run in runs]
  if all(r is not None for r in restored):
    step = min(r[0] for r in restored)
    restored = [r if r[0] == step else run.restorable(like, cadence, max_step=step) for r, run in zip(restored, runs)]
    if all(r is not None and r[0] == step for r in restored):
      for run, (_, _, progress) in zip(runs, restored):
        run.rewind(step, progress, cadence)
      stacked = jax.tree.map(lambda *xs: np.stack(xs), *[r[1] for r in restored])
      return parallel.place(from_state_dict(fresh, stacked), mesh)
  if any(run.checkpointer.latest_step() is not None for run in runs):
    _log.warning(
      'no checkpoint that all of %s can resume from; restarting them from step 0', ', '.join(run.name for run in runs)
    )
  for run in runs:
    run.rewind(0, None, cadence)
  return fresh


@dataclasses.dataclass
class _Loop:
  """The loop of one grid point, over its ``SeedRun``s; ``run(state, start)`` reads top to bottom, and
  so does a sync point (``_sync``). Its helpers: ``_Clock`` (train time and rate), ``_Evaluation``
  (periodic and last evaluations, best and early stop), ``_train_record`` (a seed's train metrics)."""

  runs: list[SeedRun]
  programs: Programs
  cadence: Cadence
  data: Any
  should_stop: Callable[[], bool]
  on_event: EventHook
  done: dict[int, dict] = dataclasses.field(default_factory=dict)  # seed index -> final status
  compile_seconds: float = 0.0
  last_loss: float | None = None  # mean over seeds of this sync point's train records, for the display
  last_evals: dict | None = None  # this sync point's periodic evaluation, means over seeds
  # Where this command's time went (status.json's time_parts): building the programs, initial states and
  # resume (setup), compiling, the steps, and the sync points' logs, evaluations and checkpoints.
  parts: dict = dataclasses.field(default_factory=lambda: dict.fromkeys(TIME_PARTS, 0.0))
  clock: _Clock = dataclasses.field(init=False)
  evaluation: _Evaluation = dataclasses.field(init=False)
  schedules: list = dataclasses.field(init=False)  # each seed's learning-rate schedule (a population's differ)

  def __post_init__(self):
    self.clock = _Clock()
    self.evaluation = _Evaluation(self.runs, self.programs, self.cadence)
    self.schedules = [build.learning_rate_schedule(r.config, self.programs.task) for r in self.runs]

  def run(self, state: TrainState, start: int) -> list[dict]:
    c, runs = self.runs[0].config.train, self.runs
    t0 = time.perf_counter()
    active = np.ones(len(runs), bool)
    steps = self.programs.compile(state, self._place(active), self.data)
    self.compile_seconds = self.parts['compile'] = time.perf_counter() - t0
    for i, run in enumerate(runs):
      if run.ended or run.progress['step'] >= c.num_steps:  # its last checkpoint was written, not its status
        self.done[i] = self._finish(i, run.progress['step'], 'finished', stopped_early=run.ended == 'early')
        active[i] = False
    with self._progress(start) as shown:
      step = start
      self.clock.restart(step)
      on_device = self._place(active)
      while step < c.num_steps and active.any():
        state = steps[self.programs.bucket(step)](state, on_device, self.data)
        step += 1
        self.on_event('step', step)
        shown.step()
        due, stop = self.cadence.due(step), self.should_stop()
        if any(due) or stop:
          state = self._sync(state, step, active, due, stop)
          on_device = self._place(active)
          shown.synced(step, self.clock.rate, self.last_loss, self.last_evals)
    return [self.done[i] for i in range(len(runs))]

  # -- a sync point: the device catches up; the host logs, evaluates, checkpoints, stops ---------------

  def _sync(self, state: TrainState, step: int, active: np.ndarray, due, stop: bool) -> TrainState:
    log_now, eval_now, ckpt_now = due
    last = step == self.cadence.num_steps
    self.last_loss = self.last_evals = None
    jax.block_until_ready(state.step)
    self.clock.lap(step, self.runs)
    self._stop_diverged(state, active)
    if log_now:
      with _timed(self.parts, 'log'):
        state = self._log_train(state, step, active)
    finishing, best = np.zeros(len(self.runs), bool), np.zeros(len(self.runs), bool)
    if eval_now:
      with _timed(self.parts, 'evaluate'):
        self.last_evals, finishing, best = self.evaluation.periodic(state.params, step, active)
      self.on_event('eval', step)  # its records are in each run's metrics.jsonl (the tuner reads them)
    finishing = active & (finishing | last)
    with _timed(self.parts, 'evaluate'):
      self.evaluation.last(state.params, step, finishing)  # a run's last evaluation covers every split
    with _timed(self.parts, 'log'):
      for i in np.flatnonzero(active):
        self.runs[i].sent_to_wandb(step)
    for i in np.flatnonzero(finishing):  # its last checkpoint says so: a resume finishes it, trains no further
      self.runs[i].progress['ended'] = 'last' if last else 'early'
    with _timed(self.parts, 'checkpoint'):
      self._save(state, step, latest=active if (ckpt_now or stop) else finishing, best=best)
    for i in np.flatnonzero(finishing):
      self.done[i] = self._finish(i, step, 'finished', stopped_early=not last)
      active[i] = False
    if stop and active.any():
      for i in np.flatnonzero(active):
        self.runs[i].interrupt(step)
      raise Interrupted(f'interrupted at step {step}; run the same command again to resume')
    self.clock.restart(step)  # the host's work here (logs, evaluations, checkpoints) is not training time
    return state

  def _stop_diverged(self, state: TrainState, active: np.ndarray) -> None:
    """Marks seeds whose state went non-finite as diverged (frozen since that step) and stops them.

    The step kept a diverged seed's sums at their last finite value, so its train metrics since the
    last log (the steps before the divergence) are logged first, at the step it diverged at."""
    diverged_at = np.asarray(jax.device_get(state.diverged_at))
    stopping = np.flatnonzero(active & (diverged_at >= 0))
    acc = jax.device_get(state.acc) if stopping.size else None
    for i in stopping:
      step = int(diverged_at[i])
      record = _train_record(self.programs, acc, i, step, self.clock.rate, self.schedules[i])
      if record is not None:
        self.runs[i].log(step, 'train', record)
      active[i] = False
      self.done[i] = self._finish(i, step, 'diverged', diverged_step=step)

  def _log_train(self, state: TrainState, step: int, active: np.ndarray) -> TrainState:
    """Logs the interval's mean train metrics per seed and resets the sums."""
    acc = jax.device_get(state.acc)
    losses = []
    for i in np.flatnonzero(active):
      record = _train_record(self.programs, acc, i, step, self.clock.rate, self.schedules[i])
      if record is not None:
        self.runs[i].log(step, 'train', record)
        losses.append(record['loss'])
    if losses:
      self.last_loss = float(np.mean(losses))
    return state.replace(acc=jax.tree.map(jnp.zeros_like, state.acc))

  def _save(self, state: TrainState, step: int, latest: np.ndarray, best: np.ndarray) -> None:
    """Checkpoints: the latest for the seeds in ``latest``, the best for those in ``best``."""
    if not (latest.any() or best.any()):
      return
    host = state_dict(jax.device_get(state))
    for i in np.flatnonzero(latest | best):
      self.runs[i].save(step, jax.tree.map(lambda x, i=i: x[i], host), latest=bool(latest[i]), best=bool(best[i]))
    self.on_event('checkpoint', step)

  def _finish(self, i: int, step: int, state: str, **extra) -> dict:
    run = self.runs[i]
    with _timed(self.parts, 'checkpoint'):
      run.checkpointer.wait()
    self.on_event('finish', step)
    parts = {k: round(v, 3) for k, v in (self.parts | {'train': self.clock.total}).items()}
    return run.finish(step, state, self.compile_seconds, _best_metric(self.programs.task)[0], time_parts=parts, **extra)

  def _place(self, active: np.ndarray):
    return parallel.place(jnp.asarray(active), self.programs.mesh)

  def _progress(self, start: int) -> progress_lib.Progress:
    c, runs = self.runs[0].config, self.runs
    name = runs[0].name if len(runs) == 1 else f'{build.variant_name(c)} x{len(runs)} seeds'
    return progress_lib.Progress(c.train.progress, name, c.train.num_steps, start)


@contextlib.contextmanager
def _timed(parts: dict, part: str):
  """Adds the time the ``with`` block takes to ``parts[part]``."""
  start = time.perf_counter()
  try:
    yield
  finally:
    parts[part] += time.perf_counter() - start


@dataclasses.dataclass
class _Clock:
  """The time between sync points, booked as each seed's training time (``SeedRun.add_time``): the
  loop restarts it after a sync point's work, so evaluating and checkpointing are not counted."""

  since_step: int = 0  # step and time of the previous sync point
  since: float = 0.0
  warm: bool = False  # a sync point has passed since compiling
  rate: float = 0.0  # steps per second since the previous sync point
  total: float = 0.0  # seconds booked as training time by this command

  def restart(self, step: int) -> None:
    self.since_step, self.since = step, time.perf_counter()

  def lap(self, step: int, runs: Sequence[SeedRun]) -> None:
    """Books the time since the last restart as training time; ``rate`` is its steps per second."""
    seconds, steps = time.perf_counter() - self.since, step - self.since_step
    self.total += seconds
    for run in runs:
      run.add_time(seconds, steps, self.warm)
    self.warm = True
    self.rate = steps / max(seconds, 1e-9)


@dataclasses.dataclass
class _Evaluation:
  """The evaluations at sync points and what they decide: each seed's eval records, its best
  checkpoint and its early stop (``SeedRun.track``), and a finishing run's last evaluation, which
  covers every split."""

  runs: list[SeedRun]
  programs: Programs
  cadence: Cadence

  def periodic(self, params, step: int, active: np.ndarray) -> tuple[dict | None, np.ndarray, np.ndarray]:
    """Evaluates ``cadence.periodic`` and logs it for the ``active`` seeds. Returns the means over
    them (for the display; None if none is active), the seeds to stop early and those with a new best."""
    results = self.programs.evaluate(params, self.cadence.periodic)
    self._log(results, step, active)
    means = None
    if active.any():
      means = {split: {k: float(np.mean(v[active])) for k, v in metrics.items()} for split, metrics in results.items()}
    return (means, *self._track(results, step, active))

  def last(self, params, step: int, finishing: np.ndarray) -> None:
    """The splits the periodic evaluations skip, for the ``finishing`` seeds."""
    rest = [s for s in self.cadence.splits if s not in self.cadence.periodic]
    if finishing.any() and rest:
      self._log(self.programs.evaluate(params, rest), step, finishing)

  def _log(self, results: dict[str, dict[str, np.ndarray]], step: int, which: np.ndarray) -> None:
    for i in np.flatnonzero(which):
      for split, metrics in results.items():
        self.runs[i].log(step, split, {k: float(v[i]) for k, v in metrics.items()})

  def _track(self, results, step: int, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each seed's best val metric and threshold step: returns (seeds to stop early, seeds with a new best)."""
    stop, best = np.zeros(len(active), bool), np.zeros(len(active), bool)
    metric, mode = _best_metric(self.programs.task)
    val = results.get('val', {})
    if metric not in val:
      return stop, best
    for i in np.flatnonzero(active):
      best[i], reached = self.runs[i].track(float(val[metric][i]), step, mode, self.programs.task.threshold)
      stop[i] = reached and self.runs[i].config.train.early_stop
    return stop, best


def _best_metric(task: task_base.Task) -> tuple[str, str]:
  """The validation metric that picks the best checkpoint, and its mode: the threshold's, else the loss."""
  t = task
  return (t.threshold.metric, t.threshold.mode) if t.threshold else ('loss', t.metric_modes.get('loss', 'min'))


def _train_record(programs: Programs, acc: dict, i: int, step: int, rate: float, schedule) -> dict | None:
  """Seed ``i``'s mean train metrics over the steps its sums ``acc`` hold, up to ``step``; None if none."""
  n = float(acc['steps'][i])
  if n == 0:
    return None
  record = {'loss': float(acc['loss'][i]) / n}
  for k, v in acc['metrics'].items():
    if k != 'loss':
      record[k] = float(v['total'][i]) / max(float(v['count'][i]), 1e-12)
  if programs.task.derived is not None:
    record.update({k: float(v) for k, v in programs.task.derived(record).items()})
  record['grad_norm'] = float(acc['grad_norm']['total'][i]) / n
  for k, v in acc['grad_norm'].items():
    if k != 'total':
      record[f'grad_norm/{k}'] = float(v[i]) / n
  record['learning_rate'] = float(schedule(step - 1))
  record['steps_per_sec'] = rate
  return record
