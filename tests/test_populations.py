"""Optimizer hyperparameters as inputs of the compiled programs (``training/hyper.py``): a population of
runs that differ in learning rate, warmup, weight decay, clipping and Adam's betas trains as one program
and equals the same runs trained one by one with the plain optimizer; a run with injected values equals
its plain run; trials that differ only in those values reuse the compiled programs (no new compile)."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from deeprnn_jax.training import build, hyper, train

from runner_helpers import tiny_config

STEPS = 8


def _config(seed=0, **optim):
  """The runner tests' tiny run (``runner_helpers.tiny_config``) with a GRU, the cosine schedule and ``optim``."""
  overrides = {'model.cell': 'gru', 'train.num_steps': STEPS, 'train.seed': seed, 'optim.schedule': 'cosine'}
  return tiny_config(**overrides, **{f'optim.{k}': v for k, v in optim.items()})


MEMBERS = [
  dict(seed=0, learning_rate=3e-3, warmup_steps=0, clip_global_norm=1.0),
  dict(seed=0, learning_rate=3e-2, warmup_steps=3, weight_decay=0.1, clip_global_norm=0.0),
  dict(seed=1, learning_rate=1e-2, warmup_steps=5, beta1=0.8, clip_global_norm=0.05),
]


def _records(run_dir):
  with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _numbers(records):
  """step, split and every metric but the timing ones."""
  return [{k: v for k, v in r.items() if k not in ('steps_per_sec', 'time', 'wall_time', 'elapsed')} for r in records]


def _assert_close(got, want):
  assert [(r['step'], r['split']) for r in got] == [(r['step'], r['split']) for r in want]
  for g, w in zip(got, want):
    assert set(g) == set(w), (g, w)
    for k in w:
      if isinstance(w[k], float):
        np.testing.assert_allclose(g[k], w[k], rtol=2e-4, atol=1e-6, err_msg=f'{k} at {w["step"]} {w["split"]}')
      else:
        assert g[k] == w[k], k


@pytest.fixture(scope='module')
def alone(tmp_path_factory):
  """Each member trained by itself with the plain optimizer (hyperparameters as constants)."""
  root = tmp_path_factory.mktemp('alone')
  out = []
  for i, m in enumerate(MEMBERS):
    m = dict(m)
    seed = m.pop('seed')
    status = train.train(_config(seed, **m), str(root / f'm{i}'), inject_hyperparams=False)
    assert status['state'] == 'finished' and 'hyperparams_injected' not in status
    out.append(_numbers(_records(root / f'm{i}')))
  return out


@pytest.mark.parametrize('seed_program', ['vmap', 'loop'])
def test_a_population_in_one_program_equals_its_members_trained_one_by_one(alone, tmp_path, seed_program):
  configs, dirs = [], []
  for i, m in enumerate(MEMBERS):
    m = dict(m)
    configs.append(_config(m.pop('seed'), **m))
    dirs.append(str(tmp_path / f'm{i}'))
  assert hyper.is_population(configs)
  statuses = train.train_seeds(configs, dirs, seed_program=seed_program)
  assert all(s['state'] == 'finished' and s['hyperparams_injected'] for s in statuses)
  for d, want in zip(dirs, alone):
    _assert_close(_numbers(_records(d)), want)
  # Each member logged its own learning rate (the cosine schedule of its own peak and warmup).
  lrs = [[r['learning_rate'] for r in _records(d) if r['split'] == 'train'] for d in dirs]
  assert len({tuple(x) for x in lrs}) == 3


def test_the_injected_optimizer_takes_the_plain_ones_steps():
  """The same updates, step by step, as ``build.optimizer_from_config`` for both schedules, with
  warmup, clipping, L2 weight decay (adam) and decoupled decay (adamw)."""
  params = {'w': jax.numpy.arange(6.0).reshape(2, 3) / 5, 'b': jax.numpy.ones(3)}
  for name, schedule in [('adam', 'constant'), ('adam', 'cosine'), ('adamw', 'cosine')]:
    c = _config(learning_rate=0.1, warmup_steps=3, weight_decay=0.01, clip_global_norm=0.5)
    c.optim.name, c.optim.schedule, c.train.num_steps = name, schedule, 12
    plain, _ = build.optimizer_from_config(c)
    injected = hyper.optimizer(c)
    s0, s1, p0, p1 = plain.init(params), injected.init(params), params, params
    for t in range(12):
      g = jax.tree.map(lambda p, t=t: jax.numpy.tanh(p - 0.3 * t), p0)
      u0, s0 = plain.update(g, s0, p0)
      u1, s1 = injected.update(g, s1, p1)
      p0, p1 = build.optax.apply_updates(p0, u0), build.optax.apply_updates(p1, u1)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p0)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f'{name} {schedule}')


def test_trials_that_differ_only_in_injected_values_compile_once(tmp_path):
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: (
      compiles.append(event) if event == '/jax/core/compile/backend_compile_duration' else None
    )
  )
  task = build.task_from_config(_config())  # the tuner hands each trial of a variant the same task
  # Both with a warmup, so that the host's own evaluation of the logged rate runs the same small ops.
  train.train(_config(learning_rate=1e-3, warmup_steps=1), str(tmp_path / 'a'), task=task, inject_hyperparams=True)
  first, programs = len(compiles), next(iter(train._INJECTED_PROGRAMS.values()))
  assert first > 0
  status = train.train(
    _config(learning_rate=2e-2, warmup_steps=2), str(tmp_path / 'b'), task=task, inject_hyperparams=True
  )
  assert status['state'] == 'finished'
  assert next(iter(train._INJECTED_PROGRAMS.values())) is programs
  assert len(compiles) == first, compiles[first:]


def test_a_group_that_differs_in_anything_else_is_refused(tmp_path):
  wider = _config(learning_rate=2e-3)
  wider.model.width = 6
  with pytest.raises(ValueError, match='may differ only in train.seed and the optimizer hyperparameters'):
    train.train_seeds([_config(learning_rate=1e-3), wider], [str(tmp_path / 'a'), str(tmp_path / 'b')])
  epoch = _config(learning_rate=2e-3)
  epoch.optim.schedule = 'constant'
  plain, other = _config(learning_rate=1e-3), _config(learning_rate=2e-3)
  plain.optim.schedule = other.optim.schedule = 'epoch_decay'
  with pytest.raises(ValueError, match='a population needs injectable hyperparameters'):
    hyper.is_population([plain, other])
