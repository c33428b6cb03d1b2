"""Training: one jitted step for the whole update, seeds as one program, eval, checkpoints, resume.

``train(config, workdir)`` trains one run into the run folder ``workdir``; ``train_seeds(configs,
run_dirs)`` trains several runs that differ only in ``train.seed`` *together*: every array of the
``TrainState`` has a leading seed axis and one compiled step updates every seed, so the seeds share
one compilation, one dispatch per step and one evaluation call. ``sweep.seed_program`` says how the
step covers the seed axis: ``jax.vmap`` (the seeds batched, so S small recurrent models fill an
accelerator that one leaves idle) or ``lax.map`` (one seed after another inside the program, each
with the unbatched computation: on CPU batched matmuls run slower than S separate ones, see
BENCHMARKS.md). A single run is the same program with S = 1, and each seed of a group follows the
trajectory it would follow alone:

* a seed's keys come from its seed only (``PRNGKey(seed)`` split into init, dropout and data keys);
* batches are ``task.train_batch(data_key, step, batch_size)``, a pure function of (key, step), and
  dropout uses ``fold_in(dropout_key, step)``, so a run resumed at step k sees the same batches and
  masks as one that never stopped;
* a seed that stops (reached the task threshold with ``train.early_stop``, or diverged) is frozen
  inside the step (``where(ok, new, old)``) while the others go on.

The host never waits on the device between log intervals: the step accumulates the interval's train
metrics in ``TrainState.acc``, and non-finite values are caught *in* the step (``diverged_at``: the
first step with a NaN/Inf loss, gradient norm or parameter; the seed's state stays at its last finite
value). The host reads both every ``log_every_steps``.

``model_from_config`` is the one place a config is unpacked into modules.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

import flax
import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from tqdm.auto import tqdm

from deeprnn_jax import checkpoint as checkpoint_lib
from deeprnn_jax import config as config_lib
from deeprnn_jax import faults
from deeprnn_jax import runlog
from deeprnn_jax import models
from deeprnn_jax import parallel
from deeprnn_jax.build import (check_task_config, model_from_config, optimizer_from_config, task_from_config,
                               variant_name)
from deeprnn_jax.tasks import base as task_base

ConfigDict = ml_collections.ConfigDict
_log = logging.getLogger(__name__)


class Interrupted(Exception):
  """Training stopped on request (SIGTERM / Ctrl-C); a checkpoint was saved and the runs marked."""


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes; with a leading seed axis ``[S, ...]`` on every leaf.

  Attributes:
    step: int32, the number of steps taken.
    params / opt_state: model parameters and optax state.
    dropout_key / data_key: raw ``uint32[2]`` keys; the step's keys are derived from them and ``step``.
    diverged_at: int32, the first step whose loss, gradients or parameters were not finite; -1 if none.
    acc: sums over the current log interval (see ``_zero_acc``), read and reset by the host.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  dropout_key: jax.Array
  data_key: jax.Array
  diverged_at: jax.Array
  acc: Any


# ----------------------------------------------------------------------------------------------
# The jitted programs.


def grad_groups(params: Mapping[str, Any]) -> dict[str, Any]:
  """Parameter subtrees whose gradient norms are logged: each recurrent layer, and every other module.

  ``{'layer_0': ..., 'layer_1': ..., 'embed': ..., 'out': ...}``: the vanishing/exploding-gradient
  diagnostic across depth.
  """
  groups = {}
  for name, sub in params.items():
    if name == 'rnn' and isinstance(sub, Mapping):
      groups.update({k: v for k, v in sub.items()})
    else:
      groups[name] = sub
  return groups


def _zero_acc(params, metric_names: Sequence[str]) -> dict:
  """The per-interval sums: steps counted, loss, task metrics (total, count), gradient norms."""
  z = jnp.zeros((), jnp.float32)
  return {
      'steps': z, 'loss': z,
      'metrics': {k: {'total': z, 'count': z} for k in metric_names},
      'grad_norm': {k: z for k in ['total', *grad_groups(params)]},
  }


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def _keys(seed):
  """A seed's (init, dropout, data) keys; each depends on the seed alone."""
  return jax.random.split(jax.random.PRNGKey(seed), 3)


def _batch(task, key, step, batch_size: int, data, bucket: int | None):
  """``task.train_batch`` with the dataset passed as an argument (not baked into the program as a
  constant) and the length bucket, where the task has them."""
  kwargs = {}
  if task.train_data is not None:
    kwargs['data'] = data
  if bucket is not None:
    kwargs['bucket'] = bucket
  return task.train_batch(key, step, batch_size, **kwargs)


def _init_one(model, tx, task, metric_names, seed, data) -> TrainState:
  init_key, dropout_key, data_key = _keys(seed)
  batch = _batch(task, data_key, jnp.int32(0), 1, data, None)
  params = model.init({'params': init_key, 'dropout': dropout_key}, batch['inputs'], batch['lengths'],
                      deterministic=True)['params']
  return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params), dropout_key=dropout_key,
                    data_key=data_key, diverged_at=jnp.int32(-1), acc=_zero_acc(params, metric_names))


def _metric_names(model, task) -> tuple[str, ...]:
  """The metric names ``task.loss_and_metrics`` returns, found by tracing (no compute)."""
  def f():
    key = jax.random.PRNGKey(0)
    batch = task.train_batch(key, jnp.int32(0), 1)
    params = model.init({'params': key}, batch['inputs'], batch['lengths'], deterministic=True)
    return task.loss_and_metrics(model.apply(params, batch['inputs'], batch['lengths']), batch)[1]
  return tuple(jax.eval_shape(f).keys())


def _train_step(model, tx, task, batch_size: int, bucket: int | None, mesh, state: TrainState, active: jax.Array,
                data) -> TrainState:
  """One update of one seed (``parallel.over_seeds`` covers the seed axis); a frozen seed (``~active``) keeps its state."""
  # With several devices the batch is split over them; the gradient all-reduce follows from it.
  batch = parallel.shard_batch(_batch(task, state.data_key, state.step, batch_size, data, bucket), mesh)
  dropout_key = jax.random.fold_in(state.dropout_key, state.step)

  def loss_fn(params):
    outputs = model.apply({'params': params}, batch['inputs'], batch['lengths'], deterministic=False,
                          rngs={'dropout': dropout_key})
    return task.loss_and_metrics(outputs, batch)

  (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  norms = {'total': optax.tree.norm(grads)}
  norms.update({k: optax.tree.norm(v) for k, v in grad_groups(grads).items()})

  live = active & (state.diverged_at < 0)
  finite = jnp.isfinite(loss) & jnp.isfinite(norms['total']) & _all_finite(params)
  ok = live & finite
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  okf = ok.astype(jnp.float32)
  acc = state.acc
  acc = {
      'steps': acc['steps'] + okf,
      'loss': acc['loss'] + jnp.where(ok, loss, 0.0),
      'metrics': {k: {'total': v['total'] + jnp.where(ok, sums[k][0], 0.0),
                      'count': v['count'] + jnp.where(ok, sums[k][1], 0.0)}
                  for k, v in acc['metrics'].items()},
      'grad_norm': {k: v + jnp.where(ok, norms[k], 0.0) for k, v in acc['grad_norm'].items()},
  }
  return TrainState(
      step=state.step + 1, params=keep(params, state.params), opt_state=keep(opt_state, state.opt_state),
      dropout_key=state.dropout_key, data_key=state.data_key,
      diverged_at=jnp.where(live & ~finite, state.step, state.diverged_at), acc=acc)


def _eval_chunk(model, task, params, batch):
  outputs = model.apply({'params': params}, batch['inputs'], batch['lengths'], deterministic=True)
  return task.loss_and_metrics(outputs, batch)[1]


def eval_chunks(split: Mapping[str, np.ndarray], chunk: int) -> list[dict[str, np.ndarray]]:
  """A fixed eval split cut into equal chunks of ``min(chunk, n)`` rows (one compiled shape).

  The last chunk is filled with copies of the first row at weight 0, so padding never counts.
  """
  n = len(split['lengths'])
  size = max(1, min(chunk, n))
  weight = np.asarray(split.get('weight', np.ones(n, np.float32)), np.float32)
  arrays = {k: np.asarray(v) for k, v in split.items() if k != 'weight'}
  arrays['weight'] = weight
  pad = (-n) % size
  if pad:
    arrays = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in arrays.items()}
    arrays['weight'][n:] = 0.0
  return [{k: v[i:i + size] for k, v in arrays.items()} for i in range(0, n + pad, size)]


# ----------------------------------------------------------------------------------------------
# Host-side helpers.


def _slice(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def _stack(trees):
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def _json_plain(v) -> bool:
  """Numbers, strings, and lists/dicts of them: task facts worth keeping for the report."""
  if isinstance(v, (int, float, str, bool)) or v is None:
    return True
  if isinstance(v, (list, tuple)):
    return all(_json_plain(x) for x in v)
  if isinstance(v, Mapping):
    return all(isinstance(k, str) and _json_plain(x) for k, x in v.items())
  return False


def _is_better(value: float, best: float | None, mode: str) -> bool:
  if not np.isfinite(value):
    return False
  return best is None or (value < best if mode == 'min' else value > best)


def _fresh_meta() -> dict:
  """Host-side loop state that a checkpoint carries next to the arrays."""
  return {'step': 0, 'best_value': None, 'best_step': None, 'threshold_step': None,
          'threshold_seconds': None, 'train_seconds': 0.0, 'rate_steps': 0, 'rate_seconds': 0.0}


# ----------------------------------------------------------------------------------------------
# The loop.


def train(config: ConfigDict, workdir: str, *, should_stop: Callable[[], bool] | None = None,
          task: task_base.Task | None = None) -> dict:
  """Trains one run into the run folder ``workdir`` (resuming it if it holds a checkpoint).

  Returns the run's final ``status.json`` content. Raises ``ConfigError`` on a bad config (before
  any compute) and ``Interrupted`` when ``should_stop()`` turned true (after saving a checkpoint).
  ``task``: the task ``config.task`` describes, if the caller has built it already.
  """
  return train_seeds([config], [workdir], should_stop=should_stop, task=task)[0]


def train_seeds(configs: Sequence[ConfigDict], run_dirs: Sequence[str], *,
                should_stop: Callable[[], bool] | None = None, task: task_base.Task | None = None) -> list[dict]:
  """Trains runs that differ only in ``train.seed`` together, as one program; see the module doc.

  Runs whose folder says they are done (finished or diverged) are not trained again; the others
  resume from their checkpoints. Returns each run's final status, in order.
  """
  statuses = [runlog.read_status(d) for d in run_dirs]
  todo = [i for i, s in enumerate(statuses) if not (s and s['state'] in runlog.DONE_STATES)]
  if todo:
    group = _SeedGroup([configs[i] for i in todo], [run_dirs[i] for i in todo], should_stop or (lambda: False), task)
    for i, status in zip(todo, group.run()):
      statuses[i] = status
  return statuses


class _SeedGroup:
  """The seeds of one grid point, trained together; one run folder per seed."""

  def __init__(self, configs, run_dirs, should_stop, task=None):
    if len(configs) != len(run_dirs) or not configs:
      raise ValueError('train_seeds needs one run folder per config, and at least one')
    self.configs = [config_lib.validate(c) for c in configs]
    base = self._without_seed(self.configs[0])
    for c in self.configs[1:]:
      if self._without_seed(c) != base:
        raise ValueError('train_seeds: the configs of a group may differ only in train.seed')
    self.seeds = [c.train.seed for c in self.configs]
    if len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f'train_seeds: seeds repeat: {self.seeds}')
    self.config = self.configs[0]
    self.run_dirs = [os.path.abspath(d) for d in run_dirs]
    self.should_stop = should_stop
    self.task = task
    self.last_loss = float('nan')

  @staticmethod
  def _without_seed(config):
    d = config_lib.to_dict(config)
    d['train'].pop('seed')
    d.pop('sweep', None)
    return config_lib.fingerprint(d)

  # -- set-up --------------------------------------------------------------------------------------

  def _prepare_folders(self) -> None:
    """Writes (or checks) each run's config.json; a folder holding another config is refused."""
    for config, run_dir in zip(self.configs, self.run_dirs):
      os.makedirs(run_dir, exist_ok=True)
      path = os.path.join(run_dir, runlog.CONFIG_FILE)
      old = runlog.read_json(path)
      if old is not None and config_lib.result_fingerprint(old) != config_lib.result_fingerprint(config):
        keys = ', '.join(config_lib.differing_keys(old, config)[:5])
        raise config_lib.ConfigError('', f'{run_dir} holds a run with a different config ({keys}); '
                                     'use another workdir')
      if old is None:
        runlog.write_json(path, config_lib.to_dict(config))

  def _setup(self) -> None:
    c = self.config
    if self.task is None:
      self.task = task_from_config(c)
    check_task_config(c, self.task)
    self.splits = tuple(self.task.eval_splits)              # all of them at the end of a run
    self.periodic = tuple(c.train.eval_splits) or self.splits   # at every eval
    self.model = model_from_config(c, self.task)
    self.tx, self.schedule = optimizer_from_config(c)
    self.mesh = parallel.data_mesh()       # None on one device; all local devices otherwise
    if self.mesh is not None and c.train.batch_size % self.mesh.size:
      raise config_lib.ConfigError('train.batch_size', f'{c.train.batch_size} does not split over '
                                   f'{self.mesh.size} devices; use a multiple of {self.mesh.size}')
    threshold = self.task.threshold
    self.best_metric = threshold.metric if threshold else 'loss'
    self.best_mode = threshold.mode if threshold else self.task.metric_modes.get('loss', 'min')
    self.metric_names = _metric_names(self.model, self.task)

    self.seed_program = parallel.resolve_seed_program(c.sweep.seed_program) if len(self.seeds) > 1 else 'vmap'
    per_seed = lambda fn, in_axes: parallel.over_seeds(fn, in_axes, self.seed_program)
    init = functools.partial(_init_one, self.model, self.tx, self.task, self.metric_names)
    self.init_fn = jax.jit(per_seed(init, (0, None)))
    # One step program per length bucket (one in all for fixed-length tasks).
    self.buckets = tuple(range(len(self.task.length_buckets))) or (None,)
    self.step_fns = {
        b: jax.jit(per_seed(functools.partial(_train_step, self.model, self.tx, self.task, c.train.batch_size, b,
                                              self.mesh), (0, 0, None)), donate_argnums=(0,))
        for b in self.buckets}
    self.eval_fn = jax.jit(per_seed(functools.partial(_eval_chunk, self.model, self.task), (0, None)))
    self.eval_data = {s: [parallel.place(ch, self.mesh) for ch in eval_chunks(self.task.eval_splits[s], c.train.eval_batch_size)]
                      for s in self.splits}

  def _open_logs(self, params_count: int, statuses: list[dict | None]) -> None:
    c = self.config
    mode = runlog.resolve_wandb_mode(c.logging.wandb_mode)
    modes = {f'{s}/{m}': self.task.metric_modes.get(m, 'min') for s in ('train', *self.splits)
             for m in ('loss', *self.metric_names)}
    self.loggers, self.wandb_ids, self.wandb_modes, self.wandb_errors = [], [], [], []
    error = None
    for config, run_dir, status in zip(self.configs, self.run_dirs, statuses):
      wandb_id = (status or {}).get('wandb_id') or uuid.uuid4().hex[:12]
      flat = config_lib.flatten(config_lib.to_dict(config), stop=())
      wb_config = {**flat, 'cell': c.model.cell, 'depth': c.model.depth, 'width': c.model.width,
                   'seed': config.train.seed, 'params': params_count, 'task': c.task.name}
      # After one failure the other seeds of the group go without wandb rather than each wait out
      # the same timeout (the error is recorded in every seed's status).
      run = runlog.WandbRun(
          'disabled' if error else mode, project=c.logging.project, entity=c.logging.entity,
          name=os.path.basename(run_dir), run_id=wandb_id, directory=c.logging.wandb_dir or run_dir,
          config=wb_config, group=c.logging.group or os.path.basename(os.path.dirname(run_dir)),
          job_type=c.logging.job_type or variant_name(c), tags=c.logging.tags, metric_modes=modes,
          timeout=c.logging.wandb_timeout_seconds)
      error = error or run.error
      self.loggers.append(runlog.RunLogger(run_dir, run))
      self.wandb_ids.append(wandb_id)
      self.wandb_modes.append(mode if run.active else 'disabled')
      self.wandb_errors.append(error)

  def _resume(self, fresh: TrainState) -> tuple[TrainState, list[dict]]:
    """The state to start from: the newest step every seed can resume from, or step 0.

    A seed can resume from a checkpoint that restores (``Checkpointer.restore_latest`` skips
    unreadable ones) and that its ``metrics.jsonl`` is complete up to (``_logged_through``), so the
    resumed curve has no hole. Records after the chosen step are dropped (the resumed run writes
    them again) and so are newer checkpoints; with no such step the seeds start over, with a warning.
    """
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                        flax.serialization.to_state_dict(fresh))
    limits = []
    for ck, logger, run_dir in zip(self.checkpointers, self.loggers, self.run_dirs):
      limit = self._logged_through(runlog.read_metrics(logger.metrics.path))
      newest = ck.latest_step()
      if newest is not None and newest > limit:
        _log.warning('%s: metrics.jsonl lacks records after step %d; resuming from a checkpoint at or before it',
                     run_dir, limit)
      limits.append(limit)
    restored = [ck.restore_latest(like, max_step=limit) for ck, limit in zip(self.checkpointers, limits)]
    if all(r is not None for r in restored):
      step = min(r[0] for r in restored)
      if any(r[0] != step for r in restored):
        restored = [r if r[0] == step else ck.restore_latest(like, max_step=step)
                    for r, ck in zip(restored, self.checkpointers)]
      if all(r is not None and r[0] == step for r in restored):
        state = flax.serialization.from_state_dict(fresh, _stack([r[1] for r in restored]))
        state = parallel.place(state, self.mesh)
        for ck, logger in zip(self.checkpointers, self.loggers):
          ck.discard_after(step)
          logger.metrics.truncate_after(step)
        return state, [dict(r[2]) for r in restored]
    if any(ck.latest_step() is not None for ck in self.checkpointers):
      _log.warning('no checkpoint that all of %s can resume from; restarting them from step 0',
                   ', '.join(os.path.basename(d) for d in self.run_dirs))
    for ck, logger in zip(self.checkpointers, self.loggers):
      ck.discard_after(-1)
      logger.metrics.reset()
    return fresh, [_fresh_meta() for _ in self.seeds]

  def _due(self, step: int) -> tuple[bool, bool, bool]:
    """What the loop does once ``step`` steps are done: (log train metrics, evaluate, checkpoint)."""
    c = self.config.train
    last = step == c.num_steps
    return (step % c.log_every_steps == 0 or last, step % c.eval_every_steps == 0 or last,
            step % c.checkpoint_every_steps == 0 or last)

  def _logged_through(self, records: Sequence[dict]) -> int:
    """The last step up to which ``records`` hold every train and eval record the loop writes."""
    have = {(r['step'], r.get('split')) for r in records}
    for step in range(1, self.config.train.num_steps + 1):
      log_now, eval_now, _ = self._due(step)
      want = (['train'] if log_now else []) + (
          list(self.splits if step == self.config.train.num_steps else self.periodic) if eval_now else [])
      if any((step, split) not in have for split in want):
        return step - 1
    return self.config.train.num_steps

  def _task_facts(self) -> dict:
    """What the report needs to know about the task without rebuilding it."""
    t = self.task
    return {
        'name': t.name, 'seq_len': t.seq_len, 'output_kind': t.output_kind, 'splits': list(self.splits),
        'baseline': {'metric': t.baseline.metric, 'value': t.baseline.value, 'description': t.baseline.description},
        'threshold': (None if t.threshold is None else
                      {'metric': t.threshold.metric, 'value': t.threshold.value, 'mode': t.threshold.mode}),
        'metric_modes': {'loss': 'min', **dict(t.metric_modes)},
        'info': {k: v for k, v in dict(t.info).items() if _json_plain(v)},
    }

  # -- the loop ------------------------------------------------------------------------------------

  def run(self) -> list[dict]:
    self._setup()             # every check on the config and the task, before anything is written
    self._prepare_folders()
    c = self.config
    statuses = [runlog.read_status(d) for d in self.run_dirs]
    self.train_data = parallel.place(self.task.train_data, self.mesh)
    fresh = parallel.place(self.init_fn(jnp.asarray(self.seeds, jnp.uint32), self.train_data), self.mesh)
    params_count = models.count_params(_slice(fresh.params, 0))
    self.checkpointers = [checkpoint_lib.Checkpointer(os.path.join(d, 'checkpoints'), c.train.keep_checkpoints)
                          for d in self.run_dirs]
    self._open_logs(params_count, statuses)
    try:
      state, self.metas = self._resume(fresh)
      del fresh
      start = int(self.metas[0]['step'])
      for i, run_dir in enumerate(self.run_dirs):
        runlog.update_status(
            run_dir, state='running', run_id=os.path.basename(run_dir), seed=self.seeds[i], step=start,
            num_steps=c.train.num_steps, params=params_count, seeds_in_program=len(self.seeds),
            seed_program=self.seed_program, pid=os.getpid(),
            host=socket.gethostname(), wandb_id=self.wandb_ids[i], wandb_mode=self.wandb_modes[i],
            wandb_error=self.wandb_errors[i],
            resumed_from=start or None, updated_at=time.time(), error=None, task=self._task_facts())
      return self._loop(state, start)
    except Interrupted:
      raise
    except BaseException as e:
      # A second Ctrl-C (KeyboardInterrupt) stops at once: the runs are interrupted, not failed, and
      # resume from their last periodic checkpoint.
      stopped = isinstance(e, KeyboardInterrupt)
      for i, run_dir in enumerate(self.run_dirs):
        if (runlog.read_status(run_dir) or {}).get('state') == 'running':
          runlog.update_status(run_dir, state='interrupted' if stopped else 'failed',
                                error=None if stopped else runlog.one_line(e), updated_at=time.time())
          self.loggers[i].finish(exit_code=1)
      raise
    finally:
      for ck in self.checkpointers:
        ck.wait()
        ck.close()

  def _loop(self, state: TrainState, start: int) -> list[dict]:
    c = self.config.train
    num = len(self.seeds)
    active = np.ones(num, bool)
    done = {}
    data = self.train_data
    t0 = time.perf_counter()
    # Lowered from shapes alone: a fresh and a restored state give the same program (and cache key).
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                          (state, parallel.place(jnp.asarray(active), self.mesh), data))
    compiled = {b: f.lower(*shapes).compile() for b, f in self.step_fns.items()}
    self.compile_seconds = time.perf_counter() - t0
    for i, meta in enumerate(self.metas):
      # A checkpoint written as a run's last, whose process died before the run was marked done.
      if meta.get('ended') or meta['step'] >= c.num_steps:
        done[i] = self._finish(i, meta['step'], 'finished', stopped_early=meta.get('ended') == 'early')
        active[i] = False
    active_dev = parallel.place(jnp.asarray(active), self.mesh)
    bar = tqdm(total=c.num_steps, initial=start, disable=not c.progress_bar, dynamic_ncols=True,
               desc=os.path.basename(self.run_dirs[0]) if num == 1 else f'{variant_name(self.config)} x{num} seeds')
    step, seg_start, warm = start, start, False
    t_seg = time.perf_counter()
    try:
      while step < c.num_steps and active.any():
        state = compiled[self._bucket(step)](state, active_dev, data)
        step += 1
        faults.point(f'step:{step}')
        bar.update(1)
        last = step == c.num_steps
        log_now, eval_now, ckpt_now = self._due(step)
        stop_now = self.should_stop()
        if not (log_now or eval_now or ckpt_now or stop_now):
          continue
        # A sync point: the device catches up; the time since the last one was training.
        jax.block_until_ready(state.step)
        seconds, seg_steps = time.perf_counter() - t_seg, step - seg_start
        for m in self.metas:
          m['train_seconds'] += seconds
          if warm:   # the first segment after compiling is warm-up, not steady state
            m['rate_steps'] += seg_steps
            m['rate_seconds'] += seconds
        warm = True
        self._check_divergence(state, active, done)
        if log_now:
          state = self._log_train(state, step, active, seg_steps / max(seconds, 1e-9))
        finishing, best = np.zeros(num, bool), np.zeros(num, bool)
        if eval_now:
          results = self.evaluate(state.params, self.periodic)
          self._log_eval(results, step, active)
          finishing, best = self._track(results, step, active)
        finishing = active & (finishing | last)
        rest = [s for s in self.splits if s not in self.periodic]
        if finishing.any() and rest:   # a run's last evaluation covers every split
          self._log_eval(self.evaluate(state.params, rest), step, finishing)
        for i in np.flatnonzero(finishing):   # its last checkpoint says so: a resume finishes it, trains no further
          self.metas[i]['ended'] = 'last' if last else 'early'
        self._save(state, step, latest=active if (ckpt_now or stop_now) else finishing, best=best)
        for i in np.flatnonzero(finishing):
          done[i] = self._finish(i, step, 'finished', stopped_early=not last)
          active[i] = False
        if stop_now and active.any():
          for i in np.flatnonzero(active):
            runlog.update_status(self.run_dirs[i], state='interrupted', step=step, updated_at=time.time())
            self.loggers[i].finish(exit_code=1)
          raise Interrupted(f'interrupted at step {step}; run the same command again to resume')
        active_dev = parallel.place(jnp.asarray(active), self.mesh)
        bar.set_postfix(loss=f'{self.last_loss:.4g}', steps_per_s=f'{seg_steps / max(seconds, 1e-9):.1f}',
                        refresh=False)
        seg_start, t_seg = step, time.perf_counter()
    finally:
      bar.close()
    return [done[i] for i in range(num)]

  def _bucket(self, step: int) -> int | None:
    """The length bucket of ``step``: a function of the step alone (seed 0 for every run), so all the
    seeds of a group share one bucket per step and each still matches its separate run."""
    if self.buckets == (None,):
      return None
    return task_base.bucket_for_step(self.task.bucket_probs, 0, step)

  # -- the pieces of a sync point --------------------------------------------------------------------

  def _check_divergence(self, state: TrainState, active: np.ndarray, done: dict) -> None:
    """Marks seeds whose state went non-finite as diverged (frozen since that step) and stops them."""
    diverged_at = np.asarray(jax.device_get(state.diverged_at))
    for i in np.flatnonzero(active & (diverged_at >= 0)):
      active[i] = False
      done[i] = self._finish(i, int(diverged_at[i]), 'diverged', diverged_step=int(diverged_at[i]))

  def _log_train(self, state: TrainState, step: int, active: np.ndarray, rate: float) -> TrainState:
    """Logs the interval's mean train metrics per seed and resets the sums."""
    acc = jax.device_get(state.acc)
    lr = float(self.schedule(step - 1))
    losses = []
    for i in np.flatnonzero(active):
      n = float(acc['steps'][i])
      if n == 0:
        continue
      record = {'loss': float(acc['loss'][i]) / n}
      for k, v in acc['metrics'].items():
        if k != 'loss':
          record[k] = float(v['total'][i]) / max(float(v['count'][i]), 1e-12)
      record['grad_norm'] = float(acc['grad_norm']['total'][i]) / n
      for k, v in acc['grad_norm'].items():
        if k != 'total':
          record[f'grad_norm/{k}'] = float(v[i]) / n
      record['learning_rate'] = lr
      record['steps_per_sec'] = rate
      self.loggers[i].log(step, 'train', record)
      losses.append(record['loss'])
    if losses:
      self.last_loss = float(np.mean(losses))
    return state.replace(acc=jax.tree.map(jnp.zeros_like, state.acc))

  def evaluate(self, params, splits: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{split: {metric: [S] values}}``: exact means over each of ``splits``."""
    out = {}
    for split in splits:
      chunks = self.eval_data[split]
      total = None
      for chunk in chunks:
        sums = self.eval_fn(params, chunk)
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
      total = jax.device_get(total)
      out[split] = {k: np.asarray(t, np.float64) / np.maximum(np.asarray(n, np.float64), 1e-12)
                    for k, (t, n) in total.items()}
    return out

  def _log_eval(self, results: dict[str, dict[str, np.ndarray]], step: int, which: np.ndarray) -> None:
    for i in np.flatnonzero(which):
      for split, metrics in results.items():
        self.loggers[i].log(step, split, {k: float(v[i]) for k, v in metrics.items()})

  def _track(self, results, step: int, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Updates each seed's best val metric and threshold step; returns (seeds to stop early, seeds
    with a new best)."""
    threshold = self.task.threshold
    stop, best = np.zeros(len(active), bool), np.zeros(len(active), bool)
    val = results.get('val', {})
    if self.best_metric not in val:
      return stop, best
    for i in np.flatnonzero(active):
      meta = self.metas[i]
      value = float(val[self.best_metric][i])
      if _is_better(value, meta['best_value'], self.best_mode):
        meta['best_value'], meta['best_step'] = value, step
        best[i] = True
      if threshold and meta['threshold_step'] is None and np.isfinite(value) and threshold.reached(value):
        meta['threshold_step'], meta['threshold_seconds'] = step, meta['train_seconds']
        stop[i] = self.config.train.early_stop
    return stop, best

  def _save(self, state: TrainState, step: int, latest: np.ndarray, best: np.ndarray) -> None:
    """Checkpoints: the latest for the seeds in ``latest``, the best for those in ``best``."""
    if not (latest.any() or best.any()):
      return
    host = flax.serialization.to_state_dict(jax.device_get(state))
    for i in range(len(self.seeds)):
      if latest[i] or best[i]:
        self.metas[i]['step'] = step
      if best[i]:
        self.checkpointers[i].save_best(step, _slice(host, i), dict(self.metas[i]))
      if latest[i]:
        self.checkpointers[i].save(step, _slice(host, i), dict(self.metas[i]))
    faults.point(f'checkpoint:{step}')

  def _finish(self, i: int, step: int, state: str, **extra) -> dict:
    meta = self.metas[i]
    self.checkpointers[i].wait()
    faults.point(f'finish:{step}')
    rate = meta['rate_steps'] / meta['rate_seconds'] if meta['rate_seconds'] > 0 else None
    status = runlog.update_status(
        self.run_dirs[i], state=state, step=step, compile_seconds=self.compile_seconds,
        steps_per_sec=rate, train_seconds=meta['train_seconds'], best_step=meta['best_step'],
        best_value=meta['best_value'], best_metric=f'val/{self.best_metric}',
        threshold_step=meta['threshold_step'], threshold_seconds=meta['threshold_seconds'],
        updated_at=time.time(), **extra)
    logger = self.loggers[i]
    if logger.wandb is not None:
      logger.wandb.summary({'compile_seconds': self.compile_seconds, 'steps_per_sec': rate,
                            'threshold_step': meta['threshold_step'], 'state': state})
    logger.finish(exit_code=0 if state == 'finished' else 1)
    return status
