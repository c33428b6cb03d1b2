"""Tiny configs shared by the runner tests (train, sweep, report, CLI)."""

from __future__ import annotations

import json
import textwrap

import jax
import numpy as np
import optax

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training import train as train_lib


def tiny_config(**overrides):
  """A run of a few steps on a tiny adding problem: fast to compile and to train."""
  c = config_lib.default_config()
  c.task.name = 'adding'
  c.task.options = {'seq_len': 6, 'num_eval': 24, 'length_generalization': False}
  c.model.cell = 'rnn'
  c.model.width = 8
  c.model.dropout_rate = 0.1  # so the per-step dropout rng is part of every trajectory tested
  c.train.num_steps = 12
  c.train.batch_size = 8
  c.train.log_every_steps = 2
  c.train.eval_every_steps = 4
  c.train.checkpoint_every_steps = 4
  c.train.eval_batch_size = 16
  c.train.progress = 'off'
  c.logging.wandb_mode = 'disabled'
  return config_lib.apply_overrides(c, overrides.items())


def config_file_text(*, axes=None, seeds=(0, 1), **overrides) -> str:
  """A config file (as a user would write one) for ``tiny_config(**overrides)`` swept over ``axes``
  (default 2 cells x 2 depths) and ``seeds``; it imports nothing from the tests, so a subprocess can
  load it too."""
  base = config_lib.to_dict(tiny_config(**{'train.num_steps': 8, **overrides}))
  axes = axes or {'model.cell': ['rnn', 'gru'], 'model.depth': [1, 2]}
  return textwrap.dedent(f"""
      import json
      from deeprnn_jax.training.config import from_dict, sweep_axes

      def get_config():
        c = from_dict(json.loads({json.dumps(base)!r}))
        c.sweep.axes = sweep_axes({axes!r})
        c.sweep.seeds = {tuple(seeds)!r}
        return c
  """)


CONFIG_FILE = config_file_text()


def write_config(tmp_path, text: str = CONFIG_FILE, name: str = 'cfg.py') -> str:
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def records(run_dir: str, drop=('steps_per_sec',)) -> list[dict]:
  """A run's metrics records without the wall-clock-dependent fields."""
  return [
    {k: v for k, v in r.items() if k not in drop} for r in runlog.read_metrics(f'{run_dir}/{runlog.METRICS_FILE}')
  ]


def fit(model, task, *, steps: int, batch_size: int, learning_rate: float, seed: int = 0):
  """``steps`` Adam updates with the trainer's public ``train_step``, in one jitted scan: the final
  ``TrainState`` and each step's training loss (for the tests that a small model learns a task)."""
  tx = optax.adam(learning_rate)

  def step(state, _):
    batch = task.train_batch(state.data_key, state.step, batch_size)
    new = train_lib.train_step(model, tx, task, state, batch)
    return new, new.acc['loss'] - state.acc['loss']

  state = train_lib.init_state(model, tx, task, seed)
  state, losses = jax.jit(lambda s: jax.lax.scan(step, s, None, length=steps))(state)
  return state, np.asarray(losses)
