"""The optimizer a config builds (``build.optimizer_from_config``), update by update, against the
update equations written out in NumPy (float64): global-norm clipping, weight decay on matrices only
(L2 added to the gradient, or decoupled for adamw), the warmup + cosine schedule, and each
optimizer's moments. The equations follow optax's documented conventions where the field has two
(RMSProp: eps inside the square root, and momentum accumulating learning-rate-scaled steps as in
TensorFlow, so under a schedule it differs from PyTorch's), written from the formulas, not from optax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib

NUM_STEPS, WARMUP, PEAK, FINAL = 8, 3, 0.1, 0.2  # warmup over steps 0..2, cosine down to 0.2 * PEAK
CLIP, DECAY = 0.5, 0.1
# Large eps and small betas, so a misplaced eps or a missing bias correction moves the result.
OPTIM = dict(beta1=0.8, beta2=0.9, eps=1e-3, rmsprop_decay=0.7)


def make_config(name, *, schedule='cosine', warmup=WARMUP, **optim):
  c = config_lib.default_config()
  c.train.num_steps = NUM_STEPS
  c.optim.name = name
  c.optim.learning_rate = PEAK
  c.optim.schedule = schedule
  c.optim.warmup_steps = warmup
  c.optim.cosine_final_fraction = FINAL
  for key, value in (OPTIM | optim).items():
    setattr(c.optim, key, value)
  return config_lib.validate(c)


def np_learning_rate(step, schedule='cosine', warmup=WARMUP):
  """Linear warmup from 0 to PEAK, then constant or cosine from PEAK to FINAL * PEAK at NUM_STEPS."""
  if step < warmup:
    return PEAK * step / warmup
  if schedule == 'constant':
    return PEAK
  end = FINAL * PEAK
  return end + (PEAK - end) * 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (NUM_STEPS - warmup)))


def np_updates(name, grads, params, *, momentum, weight_decay, clip):
  """The NumPy updates of ``NUM_STEPS`` steps: ``grads[t]`` and the params (dicts of float64 arrays)
  evolve together, as in training."""
  params = {k: v.copy() for k, v in params.items()}
  state = {k: dict(m=np.zeros_like(v), v=np.zeros_like(v), trace=np.zeros_like(v)) for k, v in params.items()}
  b1, b2, eps, rho = OPTIM['beta1'], OPTIM['beta2'], OPTIM['eps'], OPTIM['rmsprop_decay']
  out = []
  for t, g in enumerate(grads):
    lr = np_learning_rate(t)
    norm = math.sqrt(sum(float(np.sum(x * x)) for x in g.values()))
    scale = min(1.0, clip / norm) if clip > 0 else 1.0
    updates = {}
    for k, p in params.items():
      s, matrix = state[k], p.ndim > 1
      gk = g[k] * scale
      if name != 'adamw' and matrix:
        gk = gk + weight_decay * p  # L2 on matrices only
      if name in ('adam', 'adamw'):
        s['m'] = b1 * s['m'] + (1 - b1) * gk
        s['v'] = b2 * s['v'] + (1 - b2) * gk**2
        m_hat, v_hat = s['m'] / (1 - b1 ** (t + 1)), s['v'] / (1 - b2 ** (t + 1))
        direction = m_hat / (np.sqrt(v_hat) + eps)
        if name == 'adamw' and matrix:
          direction = direction + weight_decay * p  # decoupled, scaled by lr
        updates[k] = -lr * direction
      elif name == 'sgd':  # momentum on the gradients, the rate applied after (PyTorch's form)
        if momentum:
          s['trace'] = gk + momentum * s['trace']
          gk = s['trace']
        updates[k] = -lr * gk
      else:  # rmsprop: eps inside the root; momentum on the rate-scaled steps (TensorFlow's form)
        s['v'] = rho * s['v'] + (1 - rho) * gk**2
        step = -lr * gk / np.sqrt(s['v'] + eps)
        if momentum:
          s['trace'] = step + momentum * s['trace']
          step = s['trace']
        updates[k] = step
    params = {k: params[k] + updates[k] for k in params}
    out.append((updates, params))
  return out


def _problem():
  """A params tree with matrices (decayed) and vectors (not), and gradients whose global norm is
  above CLIP on even steps and below it on odd ones."""
  rng = np.random.default_rng(0)
  shapes = {'kernel': (3, 2), 'embed': (4, 3), 'bias': (2,), 'scale': (4,)}
  params = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
  grads = [
    {k: (rng.standard_normal(s) * (1.0 if t % 2 == 0 else 0.03)).astype(np.float32) for k, s in shapes.items()}
    for t in range(NUM_STEPS)
  ]
  assert all(
    (math.sqrt(sum(float(np.sum(x * x)) for x in g.values())) > CLIP) == (t % 2 == 0) for t, g in enumerate(grads)
  )
  return params, grads


CASES = {
  'adam': dict(name='adam', weight_decay=0.0),
  'adam-l2': dict(name='adam', weight_decay=DECAY),
  'adamw': dict(name='adamw', weight_decay=DECAY),
  'sgd-momentum-l2': dict(name='sgd', momentum=0.6, weight_decay=DECAY),
  'sgd-plain-unclipped': dict(name='sgd', momentum=0.0, weight_decay=0.0, clip=0.0),
  'rmsprop-momentum-l2': dict(name='rmsprop', momentum=0.6, weight_decay=DECAY),
  'rmsprop': dict(name='rmsprop', momentum=0.0, weight_decay=0.0),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_each_update_matches_the_numpy_equations(case):
  kwargs = dict(momentum=0.9, clip=CLIP) | CASES[case]
  name = kwargs.pop('name')
  config = make_config(
    name, momentum=kwargs['momentum'], weight_decay=kwargs['weight_decay'], clip_global_norm=kwargs['clip']
  )
  tx, _ = build.optimizer_from_config(config)
  params, grads = _problem()
  want = np_updates(
    name,
    [{k: v.astype(np.float64) for k, v in g.items()} for g in grads],
    {k: v.astype(np.float64) for k, v in params.items()},
    **kwargs,
  )

  update = jax.jit(tx.update)
  state, p = tx.init(params), jax.tree.map(jnp.asarray, params)
  for t, (g, (want_updates, want_params)) in enumerate(zip(grads, want)):
    updates, state = update(g, state, p)
    p = jax.tree.map(lambda a, u: a + u, p, updates)
    for k in params:
      # float32 vs float64 over 8 steps; the updates are ~1e-2, so atol 1e-7 is 1e-5 of them.
      np.testing.assert_allclose(updates[k], want_updates[k], rtol=1e-5, atol=1e-7, err_msg=f'{case} step {t} {k}')
      np.testing.assert_allclose(p[k], want_params[k], rtol=1e-5, atol=1e-6, err_msg=f'{case} step {t} {k}')


@pytest.mark.parametrize('schedule, warmup', [('cosine', WARMUP), ('constant', WARMUP), ('constant', 0), ('cosine', 0)])
def test_learning_rate_schedule_matches_the_formula(schedule, warmup):
  _, lr = build.optimizer_from_config(make_config('sgd', schedule=schedule, warmup=warmup))
  got = [float(lr(t)) for t in range(NUM_STEPS)]
  np.testing.assert_allclose(
    got, [np_learning_rate(t, schedule, warmup) for t in range(NUM_STEPS)], rtol=1e-5, atol=1e-9
  )
