"""The public step functions of one seed: pure, jittable, and what a researcher calls from a loop of their own::

  model, task = build.model_from_config(config, task), build.task_from_config(config)
  tx, _ = build.optimizer_from_config(config)
  state = init_state(model, tx, task, seed=0)
  step = jax.jit(functools.partial(train_step, model, tx, task))
  for i in range(1000):
    state = step(state, task.train_batch(state.data_key, state.step, 64))
  sums = eval_step(model, task, state.params, task.eval_splits['val'])   # {metric: (total, count)}

The loop that runs them for a grid point's seeds, with logging, evaluation and checkpoints, is
``train.py``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from deeprnn_jax import inits
from deeprnn_jax.tasks import base as task_base

Batch = task_base.Batch


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes (in the loop: with a leading seed axis ``[S, ...]``).

  Attributes:
    step: int32, the number of steps taken.
    params: the model parameters.
    opt_state: the optax state.
    dropout_key: a raw ``uint32[2]`` key; each step's dropout key is derived from it and ``step``.
    data_key: a raw ``uint32[2]`` key; each step's batch key is derived from it and ``step``.
    diverged_at: int32, the first step whose loss, gradients or parameters were not finite; -1 if none.
    acc: sums over the current log interval (see ``zero_acc``), read and reset by the host.
    carries: a stateful task's (``Task.stateful``) recurrent state of each of its ``batch_size``
      streams after the last step (the ``DeepRNN``'s per-layer carries, ``[batch, ...]`` leaves); the
      next step starts from it, so a checkpoint resumes truncated BPTT exactly. ``()`` for every
      other task, which leaves their states and checkpoints as they were.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  dropout_key: jax.Array
  data_key: jax.Array
  diverged_at: jax.Array
  acc: Any
  carries: Any = ()


# ----------------------------------------------------------------------------------------------
# The step functions (one seed; pure and jittable).


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


def zero_acc(params, metric_names: Sequence[str]) -> dict:
  """The per-interval sums: steps counted, loss, task metrics (total, count), gradient norms."""
  z = jnp.zeros((), jnp.float32)
  return {
    'steps': z,
    'loss': z,
    'metrics': {k: {'total': z, 'count': z} for k in metric_names},
    'grad_norm': {k: z for k in ['total', *grad_groups(params)]},
  }


def seed_keys(seed) -> jax.Array:
  """A seed's (init, dropout, data) keys; each depends on the seed alone."""
  return jax.random.split(jax.random.PRNGKey(seed), 3)


def metric_names(model, task: task_base.Task) -> tuple[str, ...]:
  """The metric names ``task.loss_and_metrics`` returns, found by tracing (no compute)."""

  def f():
    key = jax.random.PRNGKey(0)
    batch = task.train_batch(key, jnp.int32(0), 1)
    params = model.init({'params': key}, batch['inputs'], batch['lengths'], deterministic=True)
    packed = {k: batch[k] for k in ('resets', 'ends') if k in batch}  # tasks.pipeline.pack_task's rows
    return task.loss_and_metrics(model.apply(params, batch['inputs'], batch['lengths'], **packed), batch)[1]

  return tuple(jax.eval_shape(f).keys())


def task_batch(task: task_base.Task, key, step, batch_size: int, data=None, bucket: int | None = None) -> Batch:
  """``task.train_batch`` with the dataset passed as an argument (not baked into the program as a
  constant) and the length bucket, where the task has them."""
  kwargs = {}
  if task.train_data is not None:
    kwargs['data'] = task.train_data if data is None else data
  if bucket is not None:
    kwargs['bucket'] = bucket
  return task.train_batch(key, step, batch_size, **kwargs)


def init_state(
  model,
  tx: optax.GradientTransformation,
  task: task_base.Task,
  seed,
  *,
  data=None,
  metrics: Sequence[str] | None = None,
  batch_size: int | None = None,
) -> TrainState:
  """The state of seed ``seed`` at step 0 (``metrics``: ``metric_names(model, task)`` if known).

  A stateful task needs ``batch_size`` (its number of streams) for the carries.
  """
  init_key, dropout_key, data_key = seed_keys(seed)
  batch = task_batch(task, data_key, jnp.int32(0), 1, data)
  params = model.init(
    {'params': init_key, 'dropout': dropout_key}, batch['inputs'], batch['lengths'], deterministic=True
  )['params']
  if getattr(model, 'param_init', None):  # a whole-model scheme (model.init) redraws every parameter
    params = inits.init_tree(params, jax.random.fold_in(init_key, 1), model.param_init)
  metrics = metric_names(model, task) if metrics is None else metrics
  carries = ()
  if task.stateful:
    if batch_size is None:
      raise ValueError(f'init_state: task {task.name!r} is stateful; pass batch_size (its number of streams)')
    # Step 0 starts an epoch (batch['reset']), which replaces these with the model's initial carries.
    carries = model.apply({'params': params}, batch_size, method='initialize_carries')
  return TrainState(
    step=jnp.int32(0),
    params=params,
    opt_state=tx.init(params),
    dropout_key=dropout_key,
    data_key=data_key,
    diverged_at=jnp.int32(-1),
    acc=zero_acc(params, metrics),
    carries=carries,
  )


def state_dict(state: TrainState) -> dict:
  """The state as the checkpoint holds it: ``carries`` only for a stateful task, so the checkpoints of
  every other task keep the layout they had before the field existed (and old ones still restore)."""
  d = flax.serialization.to_state_dict(state)
  if not jax.tree.leaves(d['carries']):
    del d['carries']
  return d


def from_state_dict(template: TrainState, d: dict) -> TrainState:
  """``state_dict`` back into a ``TrainState`` shaped like ``template``."""
  if 'carries' not in d:
    d = {**d, 'carries': flax.serialization.to_state_dict(template.carries)}
  return flax.serialization.from_state_dict(template, d)


def _check_batch(owner: str, batch: Batch) -> None:
  """A batch without the keys every step reads, as a one-line error (the model checks their shapes,
  dtypes and lengths itself). Static: runs at trace time."""
  if not isinstance(batch, Mapping) or not {'inputs', 'lengths'} <= set(batch):
    keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
    raise ValueError(
      f"{owner} expects batch = {{'inputs': ..., 'lengths': [batch], ...}} as Task.train_batch and the "
      f'eval splits make it, got {keys}'
    )


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def train_step(
  model,
  tx: optax.GradientTransformation,
  task: task_base.Task,
  state: TrainState,
  batch: Batch,
  active: jax.Array | bool = True,
) -> TrainState:
  """One update of ``state`` on ``batch``: loss, gradients, optimizer, the interval's sums.

  Dropout uses ``fold_in(state.dropout_key, state.step)``. The update is kept only if the seed is
  ``active`` and the loss, the gradient norm and the new parameters are all finite; the first step
  where they are not is recorded in ``diverged_at`` and the state stays at its last finite value.

  A stateful task's step (truncated BPTT) starts each stream from ``state.carries`` (from the
  model's initial carries where ``batch['reset']`` is set: an epoch's first window), behind a
  ``stop_gradient``, so the gradient stops at the window; the window's final carries become the
  new ``state.carries``.
  """
  _check_batch('train_step', batch)
  dropout_key = jax.random.fold_in(state.dropout_key, state.step)

  def loss_fn(params):
    # Packed batches (tasks.pipeline.pack_task) tell the model where each sequence starts and ends.
    kwargs = {k: batch[k] for k in ('resets', 'ends') if k in batch}
    if task.stateful:
      kwargs = dict(initial_carries=_start_carries(model, params, state.carries, batch['reset']), return_carries=True)
    outputs = model.apply(
      {'params': params},
      batch['inputs'],
      # A stateful task's training windows are always full (seq_len steps, Task.stream_tokens): no
      # lengths, so the model masks no step (the loss still reads batch['lengths']).
      None if task.stateful else batch['lengths'],
      deterministic=False,
      rngs={'dropout': dropout_key},
      **kwargs,
    )
    outputs, carries = outputs if task.stateful else (outputs, ())
    loss, sums = task.loss_and_metrics(outputs, batch)
    return loss, (sums, carries)

  (loss, (sums, carries)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  norms = {'total': optax.tree.norm(grads)}
  norms.update({k: optax.tree.norm(v) for k, v in grad_groups(grads).items()})

  live = active & (state.diverged_at < 0)
  finite = jnp.isfinite(loss) & jnp.isfinite(norms['total']) & _all_finite(params)
  ok = live & finite
  keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  add = lambda total, x: total + jnp.where(ok, x, 0.0)
  acc = state.acc
  acc = {
    'steps': acc['steps'] + ok.astype(jnp.float32),
    'loss': add(acc['loss'], loss),
    'metrics': {
      k: {'total': add(v['total'], sums[k][0]), 'count': add(v['count'], sums[k][1])} for k, v in acc['metrics'].items()
    },
    'grad_norm': {k: add(v, norms[k]) for k, v in acc['grad_norm'].items()},
  }
  return TrainState(
    step=state.step + 1,
    params=keep(params, state.params),
    opt_state=keep(opt_state, state.opt_state),
    dropout_key=state.dropout_key,
    data_key=state.data_key,
    diverged_at=jnp.where(live & ~finite, state.step, state.diverged_at),
    acc=acc,
    carries=keep(jax.lax.stop_gradient(carries), state.carries),
  )


def _start_carries(model, params, carries, reset: jax.Array):
  """Each stream's carries for the next window: the model's initial carries where ``reset`` ``[batch]``
  is set, else the previous window's, through a ``stop_gradient`` (the truncation of truncated BPTT)."""
  fresh = model.apply({'params': params}, reset.shape[0], method='initialize_carries')
  pick = lambda f, c: jnp.where(reset.reshape(reset.shape + (1,) * (c.ndim - 1)), f, jax.lax.stop_gradient(c))
  return jax.tree.map(pick, fresh, carries)


def eval_step(model, task: task_base.Task, params, batch: Batch) -> task_base.MetricSums:
  """Metric sums ``{name: (total, count)}`` of the model on ``batch`` (``base.finalize`` -> means).

  A stateful task's ``batch`` holds whole streams, ``[rows, windows, seq_len]`` inputs and targets
  and ``[rows, windows]`` lengths: each row is read window after window from the model's initial
  carries, each window starting from the carries the one before left (one ``lax.scan``), which is
  the whole stream read as one sequence cut into windows (exact: windows of length 0 keep the carries).
  """
  _check_batch('eval_step', batch)
  if task.stateful:
    return _stream_eval_step(model, task, params, batch)
  outputs = model.apply({'params': params}, batch['inputs'], batch['lengths'], deterministic=True)
  return task.loss_and_metrics(outputs, batch)[1]


def _stream_eval_step(model, task: task_base.Task, params, batch: Batch) -> task_base.MetricSums:
  rows = batch['lengths'].shape[0]
  weight = batch.get('weight', jnp.ones((rows,), jnp.float32))
  windows = {k: jnp.swapaxes(jnp.asarray(batch[k]), 0, 1) for k in ('inputs', 'targets', 'lengths')}

  def window(carries, w):
    outputs, carries = model.apply(
      {'params': params}, w['inputs'], w['lengths'], deterministic=True, initial_carries=carries, return_carries=True
    )
    return carries, task.loss_and_metrics(outputs, {**w, 'weight': weight})[1]

  carries = model.apply({'params': params}, rows, method='initialize_carries')
  _, sums = jax.lax.scan(window, carries, windows)
  return jax.tree.map(lambda x: x.sum(0), sums)


def predict_step(model, params, batch: Batch) -> jax.Array:
  """The model's ``predict`` (class ids, tags, decoded tokens) on ``batch``, for ``Task.score``."""
  _check_batch('predict_step', batch)
  return model.apply({'params': params}, batch['inputs'], batch['lengths'], method='predict')


def eval_chunks(split: Mapping[str, Any], chunk: int) -> list[dict[str, Any]]:
  """A fixed eval split cut into equal chunks of ``min(chunk, n)`` rows (one compiled shape).

  The last chunk is filled with copies of the first row at weight 0, so padding never counts. The
  split's arrays may be nested (a dict of inputs): every leaf is cut along its first axis.
  """
  n = len(jax.tree.leaves(split['lengths'])[0])
  size = max(1, min(chunk, n))
  arrays = {k: jax.tree.map(np.asarray, v) for k, v in split.items() if k != 'weight'}
  arrays['weight'] = np.asarray(split.get('weight', np.ones(n, np.float32)), np.float32)
  pad = (-n) % size
  if pad:
    arrays = jax.tree.map(lambda v: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]), arrays)
    arrays['weight'][n:] = 0.0
  return [jax.tree.map(lambda v, i=i: v[i : i + size], arrays) for i in range(0, n + pad, size)]
