"""Mamba's mixer and S6 (with mambapy's inner_layernorms) against ``mambapy`` (pure PyTorch, ``MambaBlock``) with
copied weights: the whole-sequence forward (its parallel scan) and its recurrent ``step`` from a nonzero cache,
outputs, final caches and gradients (inputs and parameters) at float32 rounding, for our per-step and parallel
forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason="authors' reference code needs the oracles extra: make test-oracles")
pytest.importorskip('mambapy', reason="Mamba's reference code needs the oracles extra: make test-oracles")
from mambapy.mamba import MambaBlock, MambaConfig  # noqa: E402

import deeprnn_jax as dr  # noqa: E402

BATCH, TIME, HIDDEN, STATE = 2, 7, 8, 4
TOL = dict(rtol=1e-4, atol=1e-5)


def _np(t):
  return np.asarray(t.detach().numpy())


def _setup():
  torch.manual_seed(0)
  config = MambaConfig(d_model=HIDDEN, n_layers=1, d_state=STATE)
  theirs = MambaBlock(config)
  with torch.no_grad():  # noise on every parameter, so A_log, D and the biases are not at their init
    for p in theirs.parameters():
      p.add_(0.3 * torch.randn_like(p))
  ours = dr.MambaCell(features=HIDDEN, state_size=STATE)
  assert ours.rank == config.dt_rank and ours.inner == config.d_inner and ours.d_conv == config.d_conv
  params = {
    'input_proj': {'kernel': _np(theirs.in_proj.weight).T},
    'conv_kernel': _np(theirs.conv1d.weight)[:, 0, :].T,
    'conv_bias': _np(theirs.conv1d.bias),
    'x_proj': {'kernel': _np(theirs.x_proj.weight).T},
    'dt_proj': {'kernel': _np(theirs.dt_proj.weight).T, 'bias': _np(theirs.dt_proj.bias)},
    'A_log': _np(theirs.A_log),
    'D': _np(theirs.D),
    'output_proj': {'kernel': _np(theirs.out_proj.weight).T},
  }
  x = np.asarray(jax.random.normal(jax.random.key(0), (BATCH, TIME, HIDDEN)))
  return theirs, ours, jax.tree.map(jnp.asarray, params), x


def _ours(ours, params, carry, x, parallel):
  def run(cell, carry, x):
    if parallel:
      return cell.parallel_sequence(carry, cell.project_inputs(x), None)
    carry, ys = jax.lax.scan(lambda c, x_t: cell(c, x_t), carry, jnp.swapaxes(x, 0, 1))
    return carry, jnp.swapaxes(ys, 0, 1)

  return ours.apply({'params': params}, carry, x, method=run)


@pytest.mark.parametrize('parallel', [False, True], ids=['per_step', 'parallel'])
def test_mamba_equals_mambapy_forward_outputs_and_gradients(parallel):
  theirs, ours, params, x = _setup()
  w = np.asarray(jax.random.normal(jax.random.key(1), (BATCH, TIME, HIDDEN)))
  x_t = torch.tensor(x, requires_grad=True)
  y_t = theirs(x_t)
  (y_t * torch.tensor(w)).sum().backward()

  carry = ours.initialize_carry(jax.random.key(0), x[:, 0].shape)

  def loss(params, x):
    _, y = _ours(ours, params, carry, x, parallel)
    return jnp.sum(y * w), y

  (_, y), (g_params, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, jnp.asarray(x))
  np.testing.assert_allclose(y, _np(y_t), **TOL)
  np.testing.assert_allclose(g_x, _np(x_t.grad), **TOL)
  np.testing.assert_allclose(g_params['A_log'], _np(theirs.A_log.grad), **TOL)
  np.testing.assert_allclose(g_params['dt_proj']['bias'], _np(theirs.dt_proj.bias.grad), **TOL)
  np.testing.assert_allclose(g_params['conv_kernel'], _np(theirs.conv1d.weight.grad)[:, 0, :].T, **TOL)
  np.testing.assert_allclose(g_params['input_proj']['kernel'], _np(theirs.in_proj.weight.grad).T, **TOL)
  np.testing.assert_allclose(g_params['x_proj']['kernel'], _np(theirs.x_proj.weight.grad).T, **TOL)


@pytest.mark.parametrize('parallel', [False, True], ids=['per_step', 'parallel'])
def test_mamba_equals_mambapy_step_from_a_nonzero_cache(parallel):
  theirs, ours, params, x = _setup()
  d, k = ours.inner, ours.d_conv
  h0 = np.asarray(0.5 * jax.random.normal(jax.random.key(2), (BATCH, d, STATE)))
  conv0 = np.asarray(0.5 * jax.random.normal(jax.random.key(3), (BATCH, k - 1, d)))
  # mambapy's cache: (h [B, ED, N], inputs [B, ED, d_conv - 1], oldest first).
  cache = (torch.tensor(h0), torch.tensor(conv0.transpose(0, 2, 1).copy()))
  ys = []
  with torch.no_grad():
    for t in range(TIME):
      y, cache = theirs.step(torch.tensor(x[:, t]), cache)
      ys.append(_np(y))
  (conv, h), y = _ours(ours, params, (jnp.asarray(conv0), jnp.asarray(h0)), jnp.asarray(x), parallel)
  np.testing.assert_allclose(y, np.stack(ys, axis=1), **TOL)
  np.testing.assert_allclose(h, _np(cache[0]), **TOL)
  np.testing.assert_allclose(conv, _np(cache[1]).transpose(0, 2, 1), **TOL)


def _s6_setup():
  torch.manual_seed(1)
  # S6Cell's inner RMSNorms are mambapy's inner_layernorms; its D = 2 * d_model channels are our H.
  config = MambaConfig(d_model=HIDDEN // 2, n_layers=1, d_state=STATE, dt_rank=2, inner_layernorms=True)
  theirs = MambaBlock(config)
  with torch.no_grad():
    for p in theirs.parameters():
      p.add_(0.3 * torch.randn_like(p))
  ours = dr.S6Cell(features=HIDDEN, state_size=STATE, dt_rank=2)
  params = {
    'input_proj': {'kernel': np.eye(HIDDEN, dtype=np.float32), 'bias': np.zeros(HIDDEN, np.float32)},
    'x_proj': {'kernel': _np(theirs.x_proj.weight).T},
    'dt_norm': {'scale': _np(theirs.dt_layernorm.weight)},
    'B_norm': {'scale': _np(theirs.B_layernorm.weight)},
    'C_norm': {'scale': _np(theirs.C_layernorm.weight)},
    'dt_proj': {'kernel': _np(theirs.dt_proj.weight).T, 'bias': _np(theirs.dt_proj.bias)},
    'A_log': _np(theirs.A_log),
    'D': _np(theirs.D),
  }
  u = np.asarray(jax.random.normal(jax.random.key(4), (BATCH, TIME, HIDDEN)))
  return theirs, ours, jax.tree.map(jnp.asarray, params), u


@pytest.mark.parametrize('parallel', [False, True], ids=['per_step', 'parallel'])
def test_s6_equals_mambapy_selective_scan_with_inner_norms(parallel):
  theirs, ours, params, u = _s6_setup()
  w = np.asarray(jax.random.normal(jax.random.key(5), (BATCH, TIME, HIDDEN)))
  u_t = torch.tensor(u, requires_grad=True)
  y_t = theirs.ssm(u_t, None)
  (y_t * torch.tensor(w)).sum().backward()

  carry = ours.initialize_carry(jax.random.key(0), u[:, 0].shape)

  def loss(params, u):
    _, y = _ours(ours, params, carry, u, parallel)
    return jnp.sum(y * w), y

  (_, y), (g_params, g_u) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, jnp.asarray(u))
  np.testing.assert_allclose(y, _np(y_t), **TOL)
  np.testing.assert_allclose(g_u, _np(u_t.grad), **TOL)
  np.testing.assert_allclose(g_params['A_log'], _np(theirs.A_log.grad), **TOL)
  np.testing.assert_allclose(g_params['B_norm']['scale'], _np(theirs.B_layernorm.weight.grad), **TOL)
  np.testing.assert_allclose(g_params['dt_proj']['kernel'], _np(theirs.dt_proj.weight.grad).T, **TOL)


def test_s6_equals_mambapy_ssm_step_from_a_nonzero_state():
  theirs, ours, params, u = _s6_setup()
  h0 = np.asarray(0.5 * jax.random.normal(jax.random.key(6), (BATCH, HIDDEN, STATE)))
  h, ys = torch.tensor(h0), []
  with torch.no_grad():
    for t in range(TIME):
      y, h = theirs.ssm_step(torch.tensor(u[:, t]), h)
      ys.append(_np(y))
  for parallel in (False, True):
    got_h, got_y = _ours(ours, params, jnp.asarray(h0), jnp.asarray(u), parallel)
    np.testing.assert_allclose(got_y, np.stack(ys, axis=1), **TOL)
    np.testing.assert_allclose(got_h, _np(h), **TOL)
