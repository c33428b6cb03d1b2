"""Trained runs, loaded back: to evaluate them (on any split, or on a task rebuilt with other options)
and to run them on new inputs.

.. code-block:: python

    import deeprnn_jax as dr
    run = dr.load_run('runs/imdb/lstm-d2-w128-s0', checkpoint='best')
    model, params, task, config = run            # unpacks like a tuple
    run.evaluate(['test'])                       # {'test': {'loss': ..., 'accuracy': ...}}
    logits = model.apply({'params': params}, batch['inputs'], batch['lengths'])

The model and the task are rebuilt from the run's ``config.json`` by ``build`` (the same code that
built them for training; a dataset task rebuilds its vocabulary from its training split, so token
ids are the ones the run was trained with), the parameters restored from a checkpoint.
``evaluate`` runs the trainer's own evaluation program (same seed program, same chunking), so it
reproduces the metrics the run recorded at that step exactly, on the same machine.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from deeprnn_jax.training import build
from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from deeprnn_jax import tasks as tasks_lib
from deeprnn_jax.training import train
from deeprnn_jax.tasks import base as task_base


class RunNotFoundError(FileNotFoundError):
  """A run folder, or the checkpoint asked for, does not exist or cannot be read (one-line message)."""


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  """A run loaded back: ``model, params, task, config = run`` (it unpacks like a tuple).

  Attributes:
    model: the Flax module (``build.model_from_config``). params: its parameters at ``step``.
    task: the task the run was trained on (or rebuilt with other options). config: the run's config.
    run_dir: the run folder. step: the checkpoint's step. checkpoint: ``'best'``, ``'last'`` or a step.
    status: the run's ``status.json``.
  """

  model: Any
  params: Any
  task: task_base.Task
  config: ml_collections.ConfigDict
  run_dir: str
  step: int
  checkpoint: str | int
  status: Mapping[str, Any]

  def __iter__(self) -> Iterator[Any]:
    return iter((self.model, self.params, self.task, self.config))

  def evaluate(self, splits: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``{split: {metric: mean}}`` over ``splits`` (default: every split of the task), computed by
    the trainer's evaluation program (``train.Programs``) with the run's seed program."""
    splits = list(self.task.eval_splits) if splits is None else list(splits)
    unknown = [s for s in splits if s not in self.task.eval_splits]
    if unknown:
      raise ValueError(
        f'unknown split {unknown[0]!r} for task {self.task.name!r}; valid: {", ".join(self.task.eval_splits)}'
      )
    # The program kind that trained the run: a run trained alone or with its seeds looped is
    # evaluated by the very computation that recorded its metrics.
    program = self.status.get('seed_program')
    program = program if program in ('vmap', 'loop', 'single') else 'vmap'
    programs = train.Programs(self.config, self.task, program)
    params = jax.tree.map(lambda x: jnp.asarray(x)[None], self.params)
    results = programs.evaluate(params, splits)
    return {s: {k: float(v[0]) for k, v in m.items()} for s, m in results.items()}

  def predict(self, batch: Mapping[str, Any] | Sequence[Any]):
    """The model's ``predict`` (class ids, tags, decoded tokens) on ``batch`` (``inputs``, ``lengths``),
    or on raw examples (e.g. texts) that the task encodes with its own tokenizer (``Task.encode``)."""
    if not isinstance(batch, Mapping):
      if self.task.encode is None:
        raise ValueError(f'task {self.task.name!r} has no raw form (Task.encode); pass a batch with inputs and lengths')
      batch = self.task.encode(batch)
    return self.model.apply({'params': self.params}, batch['inputs'], batch['lengths'], method='predict')


def run_config(run_dir: str, task_options: Mapping[str, Any] | None = None) -> ml_collections.ConfigDict:
  """The validated config of the run in ``run_dir`` (``task_options`` replacing some of its task's)."""
  folder = runlog.RunFolder(run_dir)
  raw = folder.read_config()
  if not isinstance(raw, dict):
    raise RunNotFoundError(
      f'{folder.path} is not a run folder (no readable {runlog.CONFIG_FILE}); '
      'pass the folder of one run (e.g. runs/x/lstm-d2-w64-s0)'
    )
  # Not settings: the code version the run was made with, and keys renamed since that only said how
  # a run was shown or launched (identity.RUNTIME_KEYS).
  raw.pop('code', None)
  raw.get('train', {}).pop('progress_bar', None)
  raw.get('sweep', {}).pop('vmap_seeds', None)
  if task_options:
    raw.setdefault('task', {}).setdefault('options', {}).update(dict(task_options))
  _register_task_of(raw, folder)
  return config_lib.validate(raw)


def _register_task_of(raw: Mapping[str, Any], folder: runlog.RunFolder) -> None:
  """A task a config file registered (``tasks.register_task``) is unknown to a fresh process: run
  that file again, as the sweep recorded it in its ``sweep.json``."""
  name = (raw.get('task') or {}).get('name')
  if name is None or name in tasks_lib.TASKS:
    return
  sweep = runlog.read_json(os.path.join(os.path.dirname(folder.path), 'sweep.json')) or {}
  source = sweep.get('config_file') if isinstance(sweep, dict) else None
  if not source or not os.path.isfile(source):
    raise config_lib.ConfigError(
      'task.name',
      f'task {name!r} of {folder.path} is not registered: import the module '
      'that registers it (deeprnn_jax.tasks.register_task) first',
    )
  config_lib.load(source)  # executes the file, which registers the task


def load_run(
  run_dir: str,
  checkpoint: str | int = 'best',
  *,
  task: task_base.Task | None = None,
  task_options: Mapping[str, Any] | None = None,
) -> TrainedRun:
  """Loads the run in ``run_dir`` (see the module docstring).

  Args:
    run_dir: the run folder (holding ``config.json`` and ``checkpoints/``).
    checkpoint: ``'best'`` (the best validation checkpoint; the last one if the run kept no best),
      ``'last'`` (the newest readable one) or a step number.
    task: the task, if already built (e.g. shared by the runs of a sweep).
    task_options: task options that replace the run's (e.g. ``{'seq_len': 400}`` for length
      generalization); the model must still fit the rebuilt task.

  Raises ``RunNotFoundError`` for a missing folder or checkpoint, ``ConfigError`` for a config or
  task that cannot be rebuilt.
  """
  config = run_config(run_dir, task_options)
  task = task or build.task_from_config(config)
  model = build.model_from_config(config, task)
  folder = runlog.RunFolder(run_dir)
  if not os.path.isdir(folder.checkpoints):
    raise RunNotFoundError(f'{folder.path} has no checkpoints/; it has not saved a checkpoint yet')
  if checkpoint not in ('best', 'last') and (not isinstance(checkpoint, int) or isinstance(checkpoint, bool)):
    raise ValueError(f"checkpoint must be 'best', 'last' or a step number, got {checkpoint!r}")
  ck = checkpoint_lib.Checkpointer(folder.checkpoints)
  try:
    kept = ck.steps()
    if checkpoint == 'best':
      found = ck.restore_best(None) or ck.restore_latest(None)
    elif checkpoint == 'last':
      found = ck.restore_latest(None)
    else:
      try:
        found = ck.restore_step(checkpoint, None)
      except Exception as e:  # pylint: disable=broad-except
        raise RunNotFoundError(
          f"{folder.path}: checkpoint {checkpoint} is unreadable ({type(e).__name__}); try checkpoint='last'"
        ) from e
  finally:
    ck.close()
  if found is None:
    steps = ', '.join(map(str, kept['latest'])) or 'none'
    raise RunNotFoundError(
      f'{folder.path}: no readable checkpoint {checkpoint!r} (latest steps: {steps}; '
      f"best: {', '.join(map(str, kept['best'])) or 'none'}); try checkpoint='last'"
    )
  step, state, _ = found
  return TrainedRun(
    model=model,
    params=state['params'],
    task=task,
    config=config,
    run_dir=folder.path,
    step=int(step),
    checkpoint=checkpoint,
    status=folder.read_status() or {},
  )
