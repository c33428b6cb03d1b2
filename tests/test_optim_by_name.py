"""The optimizer and its schedule named by their optax names, with keyword arguments (``optim.kwargs``,
``optim.schedule_kwargs``): any optax optimizer builds and steps as optax's own function with those
arguments; today's keys give the numbers they always gave; misspellings get "did you mean", and an
argument set two ways is refused rather than one of the two picked."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from experiments import run

from runner_helpers import config_file_text, write_config

NUM_STEPS, LR = 20, 0.05
MATRICES = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)


def make_config(**optim):
  c = config_lib.default_config()
  c.train.num_steps = NUM_STEPS
  c.optim.learning_rate = LR
  for key, value in optim.items():
    setattr(c.optim, key, value)
  return config_lib.validate(c)


def problem(num_steps=4):
  """A params tree with matrices and vectors, and ``num_steps`` gradients."""
  rng = np.random.default_rng(0)
  shapes = {'kernel': (3, 2), 'bias': (2,), 'scale': (3,)}
  params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  grads = [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(num_steps)]
  return params, grads


def trajectory(tx, num_steps=4):
  """The params after each of ``num_steps`` jitted updates of ``tx``."""
  params, grads = problem(num_steps)
  state, update, out = tx.init(params), jax.jit(tx.update), []
  for g in grads:
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    out.append(jax.tree.map(np.asarray, params))
  return out


def assert_same(a, b):
  """Bit for bit: the same program runs twice on one machine."""
  for x, y in zip(a, b, strict=True):
    jax.tree.map(np.testing.assert_array_equal, x, y)


@pytest.mark.parametrize(
  'name, kwargs, reference',
  [
    # lion has a weight_decay of its own: optim.weight_decay (0 here) fills it, with the matrices-only mask.
    ('lion', {'b1': 0.8, 'b2': 0.95}, lambda lr: optax.lion(lr, b1=0.8, b2=0.95, weight_decay=0.0, mask=MATRICES)),
    ('adabelief', {'b1': 0.8, 'eps': 1e-10}, lambda lr: optax.adabelief(lr, b1=0.8, eps=1e-10)),
    ('adafactor', {'min_dim_size_to_factor': 2, 'decay_rate': 0.9}, lambda lr: optax.adafactor(lr, 2, 0.9)),
  ],
)
def test_any_optax_optimizer_builds_and_steps_as_optax_own_function(name, kwargs, reference):
  config = make_config(name=name, kwargs=kwargs, clip_global_norm=0.0)
  tx, _ = build.optimizer_from_config(config)
  got = trajectory(tx)
  assert_same(got, trajectory(reference(LR)))
  assert not np.array_equal(got[-1]['kernel'], problem()[0]['kernel'])  # it moved


def test_an_optimizers_own_weight_decay_touches_matrices_only():
  # With zero gradients lion's sign term is 0: what moves a parameter is its decoupled weight decay.
  tx, _ = build.optimizer_from_config(make_config(name='lion', weight_decay=0.5, clip_global_norm=0.0))
  params, _ = problem()
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates['kernel'], -LR * 0.5 * params['kernel'], rtol=1e-6)
  assert not np.any(updates['bias']) and not np.any(updates['scale'])


LEGACY = {
  # (today's keys, the same by optim.kwargs, the chain the build made before optimizers were named)
  'adam': (
    dict(beta1=0.8, beta2=0.9, eps=1e-3, weight_decay=0.1),
    dict(kwargs={'b1': 0.8, 'b2': 0.9, 'eps': 1e-3}, weight_decay=0.1),
    lambda lr: optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.add_decayed_weights(0.1, mask=MATRICES),
      optax.adam(lr, b1=0.8, b2=0.9, eps=1e-3),
    ),
  ),
  'adamw': (
    dict(beta1=0.8, beta2=0.9, eps=1e-3, weight_decay=0.1),
    dict(kwargs={'b1': 0.8, 'b2': 0.9, 'eps': 1e-3, 'weight_decay': 0.1}),
    lambda lr: optax.chain(
      optax.clip_by_global_norm(1.0), optax.adamw(lr, b1=0.8, b2=0.9, eps=1e-3, weight_decay=0.1, mask=MATRICES)
    ),
  ),
  'sgd': (
    dict(momentum=0.6),
    dict(kwargs={'momentum': 0.6}),
    lambda lr: optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(lr, momentum=0.6)),
  ),
  'rmsprop': (
    dict(rmsprop_decay=0.7, eps=1e-3, momentum=0.0),
    dict(kwargs={'decay': 0.7, 'eps': 1e-3}, momentum=0.0),
    lambda lr: optax.chain(optax.clip_by_global_norm(1.0), optax.rmsprop(lr, decay=0.7, eps=1e-3, momentum=None)),
  ),
}


@pytest.mark.parametrize('name', sorted(LEGACY))
def test_todays_keys_and_the_same_by_kwargs_give_todays_updates_bit_for_bit(name):
  old_keys, by_kwargs, before = LEGACY[name]
  trajectories = [
    trajectory(build.optimizer_from_config(make_config(name=name, **optim))[0]) for optim in (old_keys, by_kwargs)
  ]
  assert_same(trajectories[0], trajectories[1])
  assert_same(trajectories[0], trajectory(before(optax.constant_schedule(LR))))


@pytest.mark.parametrize(
  'schedule, kwargs, warmup, reference',
  [
    ('cosine_decay_schedule', {'alpha': 0.1}, 0, optax.cosine_decay_schedule(LR, NUM_STEPS, alpha=0.1)),
    (
      'warmup_cosine_decay_schedule',
      {'end_value': 0.001, 'exponent': 2.0},
      4,
      optax.warmup_cosine_decay_schedule(0.0, LR, 4, NUM_STEPS, end_value=0.001, exponent=2.0),
    ),
    ('linear_schedule', {'end_value': 0.0}, 0, optax.linear_schedule(LR, 0.0, NUM_STEPS)),
    ('exponential_decay', {'decay_rate': 0.1}, 0, optax.exponential_decay(LR, NUM_STEPS, 0.1)),
    ('exponential_decay', {'decay_rate': 0.5, 'transition_steps': 5}, 0, optax.exponential_decay(LR, 5, 0.5)),
    (
      'warmup_exponential_decay_schedule',
      {'decay_rate': 0.1},
      5,
      optax.warmup_exponential_decay_schedule(0.0, LR, 5, NUM_STEPS - 5, 0.1),
    ),
    ('cosine_onecycle_schedule', {}, 0, optax.cosine_onecycle_schedule(NUM_STEPS, LR)),
  ],
)
def test_a_named_optax_schedule_equals_optax_own_function(schedule, kwargs, warmup, reference):
  config = make_config(schedule=schedule, schedule_kwargs=kwargs, warmup_steps=warmup)
  _, lr = build.optimizer_from_config(config)
  steps = jnp.arange(NUM_STEPS + 3)
  np.testing.assert_array_equal(jax.vmap(lr)(steps), jax.vmap(reference)(steps))


def refused(match, **optim):
  with pytest.raises(config_lib.ConfigError, match=match) as e:
    build.optimizer_from_config(make_config(**optim))
  assert '\n' not in str(e.value)


def test_misspellings_get_did_you_mean():
  with pytest.raises(
    config_lib.ConfigError, match=r"^config key 'optim.name': unknown value 'lino'; did you mean 'lion'"
  ):
    make_config(name='lino')
  with pytest.raises(
    config_lib.ConfigError,
    match=r"^config key 'optim.schedule': unknown value 'cosine_decay'; did you mean 'cosine_decay_schedule'",
  ):
    make_config(schedule='cosine_decay')
  refused(
    r"^config key 'optim.kwargs.b_2': optax.lion takes no 'b_2'; did you mean 'b2'\? valid: b1, b2, ",
    name='lion',
    kwargs={'b_2': 0.9},
  )
  refused(
    r"^config key 'optim.schedule_kwargs.alpah': optax.cosine_decay_schedule takes no 'alpah'; did you mean 'alpha'\?",
    schedule='cosine_decay_schedule',
    schedule_kwargs={'alpah': 0.1},
  )
  refused(
    r"'optim.kwargs.learning_rate': optax.adam takes no 'learning_rate'; set optim.learning_rate",
    kwargs={'learning_rate': 1.0},
  )


def test_an_argument_set_two_ways_is_refused_not_picked():
  refused(
    r"^config key 'optim.kwargs.b1': set twice: 0.95 here and optim.beta1=0.8; keep one$",
    beta1=0.8,
    kwargs={'b1': 0.95},
  )
  refused(r"'optim.kwargs.weight_decay': set twice", name='adamw', weight_decay=0.1, kwargs={'weight_decay': 0.2})
  refused(
    r"'optim.schedule_kwargs.peak_value': set twice: 0.1 here and optim.learning_rate=0.05",
    schedule='warmup_constant_schedule',
    schedule_kwargs={'peak_value': 0.1},
  )
  # Another optimizer's key: lion reads its betas from optim.kwargs only.
  refused(
    r"^config key 'optim.beta2': is read by adam, adamw only; for lion set optim.kwargs.b2 instead$",
    name='lion',
    beta2=0.9,
  )
  refused(r"'optim.eps': is read by adam, adamw, rmsprop only; optax.lion takes no eps$", name='lion', eps=1e-6)
  # The same value both ways is no conflict; a key left at its default yields to optim.kwargs.
  assert build.optimizer_kwargs(config_lib.to_dict(make_config(beta1=0.8, kwargs={'b1': 0.8})))['b1'] == 0.8
  assert build.optimizer_kwargs(config_lib.to_dict(make_config(kwargs={'b2': 0.95})))['b2'] == 0.95


def test_schedule_arguments_that_cannot_work_are_refused():
  refused(
    r"'optim.schedule_kwargs': optax.linear_schedule needs 'end_value': set optim.schedule_kwargs.end_value",
    schedule='linear_schedule',
  )
  refused(
    r"'optim.warmup_steps': optax.cosine_decay_schedule has no warmup", schedule='cosine_decay_schedule', warmup_steps=3
  )
  refused(
    r"'optim.schedule_kwargs': is for optax schedules; 'cosine' is ours",
    schedule='cosine',
    schedule_kwargs={'alpha': 0.1},
  )
  refused(
    r"'optim.cosine_final_fraction': is read by schedule 'cosine' only",
    schedule='cosine_decay_schedule',
    cosine_final_fraction=0.1,
  )


def test_the_runner_trains_a_named_optimizer_and_refuses_a_typo_before_anything(tmp_path, capsys):
  path = write_config(tmp_path, config_file_text(axes={'model.cell': ['rnn']}, seeds=(0,)))
  workdir = tmp_path / 'runs'
  named = ['--config.optim.name=lion', '--config.optim.kwargs.b2=0.95', '--config.optim.schedule=cosine_decay_schedule']
  assert run.main(['--config', path, '--workdir', str(workdir), *named]) == 0, capsys.readouterr().err
  (run_id,) = [d for d in os.listdir(workdir) if os.path.isdir(workdir / d)]
  records = [r for r in runlog.read_metrics(str(workdir / run_id / runlog.METRICS_FILE)) if 'learning_rate' in r]
  want = optax.cosine_decay_schedule(1e-3, 8)
  assert records and all(np.isclose(r['learning_rate'], want(r['step'] - 1)) for r in records)
  capsys.readouterr()
  bad = tmp_path / 'bad'
  assert run.main(['--config', path, '--workdir', str(bad), *named, '--config.optim.kwargs.b3=0.9']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: config key 'optim.kwargs.b3': optax.lion takes no 'b3'") and '\n' not in err
  assert not os.path.exists(bad)
