"""RG-LRU against the authors' code, ``recurrentgemma.jax.layers.RGLRU`` (JAX), with copied weights: outputs,
final state and gradients (inputs, the initial state and parameters) at float32 rounding.

Our cell's ``input_proj`` is set to the identity (in = H), so both layers read the same x. recurrentgemma
resets the recurrence where ``segment_pos == 0`` (a document's first token); our cell never resets (a
step cannot know its position; sequences start from a carry), so it is fed ``segment_pos`` from 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip('recurrentgemma', reason="RG-LRU's reference code needs the oracles extra: make test-oracles")
from recurrentgemma.jax.layers import RGLRU  # noqa: E402

import deeprnn_jax as dr  # noqa: E402

BATCH, TIME, HIDDEN, HEADS = 2, 7, 8, 2
TOL = dict(rtol=1e-4, atol=1e-5)


def _setup():
  theirs = RGLRU(width=HIDDEN, num_heads=HEADS)
  ours = dr.RGLRUCell(features=HIDDEN, num_heads=HEADS)
  x = jax.random.normal(jax.random.key(0), (BATCH, TIME, HIDDEN))
  segment_pos = jnp.broadcast_to(jnp.arange(1, TIME + 1), (BATCH, TIME))
  h0 = 0.5 * jax.random.normal(jax.random.key(1), (BATCH, HIDDEN))
  with jax.numpy_rank_promotion('allow'):  # recurrentgemma broadcasts [H] against [batch, time, H]
    p = theirs.init(jax.random.key(2), x, segment_pos, h0)['params']
  # Noise on every parameter (the gate biases start at zero).
  leaves, tree = jax.tree.flatten(p)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  p = jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
  ours_params = {
    'input_proj': {'kernel': jnp.eye(HIDDEN), 'bias': jnp.zeros(HIDDEN)},
    'input_gate': p['input_gate'],
    'a_gate': p['a_gate'],
    'a_param': p['a_param'],
  }
  return theirs, ours, p, ours_params, x, segment_pos, h0


def _theirs(theirs, p, x, segment_pos, h0):
  with jax.numpy_rank_promotion('allow'):
    return theirs.apply({'params': p}, x, segment_pos, h0)


def _ours(ours, params, x, h0, parallel):
  def run(cell, h0, x):
    if parallel:
      return cell.parallel_sequence(h0, cell.project_inputs(x), None)
    h, ys = jax.lax.scan(lambda h, x_t: cell(h, x_t), h0, jnp.swapaxes(x, 0, 1))
    return h, jnp.swapaxes(ys, 0, 1)

  return ours.apply({'params': params}, h0, x, method=run)


@pytest.mark.parametrize('parallel', [False, True], ids=['per_step', 'parallel'])
def test_rglru_equals_recurrentgemma(parallel):
  theirs, ours, p, params, x, segment_pos, h0 = _setup()
  want_y, want_h = _theirs(theirs, p, x, segment_pos, h0)
  got_h, got_y = _ours(ours, params, x, h0, parallel)
  np.testing.assert_allclose(got_y, want_y, **TOL)
  np.testing.assert_allclose(got_h, want_h, **TOL)

  w = jax.random.normal(jax.random.key(4), want_y.shape)

  def loss_theirs(p, x, h0):
    y, h = _theirs(theirs, p, x, segment_pos, h0)
    return jnp.sum(w * y) + jnp.sum(jnp.sin(h))

  def loss_ours(p, x, h0):
    copied = dict(params, input_gate=p['input_gate'], a_gate=p['a_gate'], a_param=p['a_param'])
    h, y = _ours(ours, copied, x, h0, parallel)
    return jnp.sum(w * y) + jnp.sum(jnp.sin(h))

  want = jax.grad(loss_theirs, argnums=(0, 1, 2))(p, x, h0)
  got = jax.grad(loss_ours, argnums=(0, 1, 2))(p, x, h0)
  for g, t in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, t, **TOL)


def test_recurrentgemma_reset_is_the_only_difference_at_a_documents_first_token():
  # At segment_pos == 0 recurrentgemma drops the state and the sqrt(1 - a^2) factor; the same numbers come
  # from our cell started from a zero carry with that first step's input scaled by 1 / sqrt(1 - a_0^2).
  theirs, ours, p, params, x, _, h0 = _setup()
  reset_pos = jnp.broadcast_to(jnp.arange(TIME), (BATCH, TIME))
  want_y, _ = _theirs(theirs, p, x, reset_pos, h0)
  got_h, got_y = _ours(ours, params, x, h0, parallel=True)
  assert float(jnp.max(jnp.abs(got_y[:, 0] - want_y[:, 0]))) > 1e-3  # the reset is visible
  xp = ours.apply({'params': params}, x[:, 0], method=lambda c, x: c.project_inputs(x))
  a0, b0 = ours.apply({'params': params}, xp, method=lambda c, xp: c.coefficients(xp))
  np.testing.assert_allclose(want_y[:, 0], b0 / jnp.sqrt(1 - a0**2), **TOL)
