"""Every cell against an independent NumPy implementation of its equations, under nn.RNN, and its
initialization schemes."""

import importlib
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr

BATCH, IN, HIDDEN, STEPS = 3, 5, 4, 4


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def gelu(x):  # tanh approximation, as jax.nn.gelu's default
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def relu(x):
  return np.maximum(x, 0.0)


# NumPy references: (params as float64 NumPy, carry, x_t) -> (carry, y). Written from the papers'
# equations, not from the cells' code.
def np_elman(p, h, x, act=np.tanh):
  h = act(x @ p['input_proj']['kernel'] + p['input_proj']['bias'] + h @ p['recurrent']['kernel'])
  return h, h


def np_lstm(p, carry, x):
  c, h = carry
  z = x @ p['input_proj']['kernel'] + p['input_proj']['bias'] + h @ p['recurrent']['kernel']
  i, f, g, o = np.split(z, 4, axis=-1)
  c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
  h = sigmoid(o) * np.tanh(c)
  return (c, h), h


def np_gru(p, h, x):
  wi, bi = p['input_proj']['kernel'], p['input_proj']['bias']
  wh, bh = p['recurrent']['kernel'], p['recurrent']['bias']
  H = h.shape[-1]
  r = sigmoid(x @ wi[:, :H] + bi[:H] + h @ wh[:, :H] + bh[:H])
  z = sigmoid(x @ wi[:, H : 2 * H] + bi[H : 2 * H] + h @ wh[:, H : 2 * H] + bh[H : 2 * H])
  n = np.tanh(x @ wi[:, 2 * H :] + bi[2 * H :] + r * (h @ wh[:, 2 * H :] + bh[2 * H :]))
  h = (1 - z) * n + z * h
  return h, h


def np_mgu(p, h, x):
  wi, bi, H = p['input_proj']['kernel'], p['input_proj']['bias'], h.shape[-1]
  f = sigmoid(x @ wi[:, :H] + bi[:H] + h @ p['recurrent_gate']['kernel'])
  cand = np.tanh(x @ wi[:, H:] + bi[H:] + (f * h) @ p['recurrent_candidate']['kernel'])
  h = (1 - f) * h + f * cand
  return h, h


def np_indrnn(p, h, x):
  h = relu(x @ p['input_proj']['kernel'] + p['input_proj']['bias'] + p['recurrent_kernel'] * h)
  return h, h


def np_ugrnn(p, h, x):
  wi, bi, H = p['input_proj']['kernel'], p['input_proj']['bias'], h.shape[-1]
  wh = p['recurrent']['kernel']
  c = np.tanh(x @ wi[:, :H] + bi[:H] + h @ wh[:, :H])
  g = sigmoid(x @ wi[:, H:] + bi[H:] + h @ wh[:, H:])
  h = g * h + (1 - g) * c
  return h, h


def np_mingru(p, h, x):
  wi, bi, H = p['input_proj']['kernel'], p['input_proj']['bias'], h.shape[-1]
  z = sigmoid(x @ wi[:, :H] + bi[:H])
  h_tilde = x @ wi[:, H:] + bi[H:]
  h = (1 - z) * h + z * h_tilde
  return h, h


def np_lru(p, h, x):
  N = p['nu_log'].shape[0]
  lam = np.exp(-np.exp(p['nu_log']) + 1j * np.exp(p['theta_log']))
  k = p['input_proj']['kernel']
  B = k[:, :N] + 1j * k[:, N : 2 * N]
  D = k[:, 2 * N :]
  # The output kernel is the real form of C: Re(C h) = Re(h) C_re - Im(h) C_im.
  ck = p['output_proj']['kernel']
  C = ck[:N] - 1j * ck[N:]
  h = lam * h + np.exp(p['gamma_log']) * (x @ B)
  y = gelu(np.real(h @ C) + x @ D + p['output_proj']['bias'])
  return h, y


REFERENCES = {
  'rnn': np_elman,
  'irnn': lambda p, h, x: np_elman(p, h, x, act=relu),
  'lstm': np_lstm,
  'gru': np_gru,
  'mgu': np_mgu,
  'indrnn': np_indrnn,
  'ugrnn': np_ugrnn,
  'mingru': np_mingru,
  'lru': np_lru,
}


# Each cell family's references live in a file of their own, tests/refs_<family>.py (REFERENCES there).
for _path in sorted(pathlib.Path(__file__).parent.glob('refs_*.py')):
  REFERENCES.update(importlib.import_module(_path.stem).REFERENCES)


def test_every_registered_cell_has_a_reference():
  assert set(REFERENCES) == set(dr.CELLS)
  assert {'rnn', 'irnn', 'lstm', 'gru', 'indrnn', 'ugrnn', 'mgu', 'mingru', 'lru'} <= set(dr.CELLS)


def _perturbed_params(cell, x0):
  """Initialized parameters plus noise, so zero-initialized biases are exercised too."""
  params = cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(1), x0.shape), x0)['params']
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  leaves = [p + 0.3 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)]
  return jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize('name', sorted(dr.CELLS))
def test_cell_matches_numpy_equations(name):
  _check_numpy_equations(name, scale=1.0)


@pytest.mark.parametrize('name', ['rglru', 'lstm', 'mlstm'])
def test_cell_matches_numpy_equations_at_large_gate_inputs(name):
  """Inputs x10: saturated gates, RG-LRU's decay a near 1 (where 1 - a^2 cancels in float32 unless
  computed as -expm1(2 log a): 2x over the tolerance before), mLSTM outputs near 1e3. Measured worst
  error / tolerance at x10 over every cell (AMD EPYC, XLA levels 0 and 3): at most 0.09 except Mamba (0.85,
  values near 2.5e4, left out)."""
  _check_numpy_equations(name, scale=10.0)


def _check_numpy_equations(name, scale):
  """The cell against its float64 NumPy reference for STEPS steps from a random nonzero carry, inputs
  ``scale`` x N(0, 1). Tolerance 2e-5 relative + 2e-5 absolute: the worst measured error is 0.03 of it
  at scale 1 (AMD EPYC, XLA optimization levels 0 and 3)."""
  cell = dr.CELLS[name](features=HIDDEN)
  xs = scale * jax.random.normal(jax.random.key(3), (STEPS, BATCH, IN))
  params = _perturbed_params(cell, xs[0])
  np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)

  carry = cell.initialize_carry(jax.random.key(1), xs[0].shape)
  # A nonzero starting state, so the recurrent weights matter from the first step.
  # (Integer leaves, such as the attention cache's position, stay as they are.)
  carry = jax.tree.map(
    lambda c: (
      c + 0.5 * jax.random.normal(jax.random.key(4), c.shape, c.dtype) if jnp.issubdtype(c.dtype, jnp.inexact) else c
    ),
    carry,
  )
  np_carry = jax.tree.map(lambda c: np.asarray(c, np.complex128 if jnp.iscomplexobj(c) else np.float64), carry)
  step = jax.jit(lambda c, x: cell.apply({'params': params}, c, x))
  for t in range(STEPS):
    carry, y = step(carry, xs[t])
    np_carry, np_y = REFERENCES[name](np_params, np_carry, np.asarray(xs[t], np.float64))
    np.testing.assert_allclose(y, np_y, rtol=2e-5, atol=2e-5, err_msg=f'{name} output, step {t}')
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(np_carry)):
      np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=f'{name} carry, step {t}')


@pytest.mark.parametrize('name', sorted(dr.CELLS))
def test_cell_inside_flax_rnn_equals_python_loop(name):
  cell = dr.CELLS[name](features=HIDDEN)
  x = jax.random.normal(jax.random.key(5), (BATCH, STEPS, IN))
  rnn = nn.RNN(cell, return_carry=True)
  variables = rnn.init(jax.random.key(0), x)
  final, ys = rnn.apply(variables, x)

  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  loop_ys = []
  for t in range(STEPS):
    carry, y = cell.apply({'params': variables['params']['cell']}, carry, x[:, t])
    loop_ys.append(y)
  # A scan against eager steps: two programs, so a float32 tolerance that holds on any CPU.
  np.testing.assert_allclose(ys, jnp.stack(loop_ys, axis=1), rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(carry)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _init_params(cell, in_features=IN):
  x = jnp.zeros((1, in_features))
  return cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(0), x.shape), x)['params']


def test_recurrent_kernels_are_orthogonal_gate_by_gate():
  params = _init_params(dr.LSTMCell(features=HIDDEN))
  kernel = np.asarray(params['recurrent']['kernel'])
  assert kernel.shape == (HIDDEN, 4 * HIDDEN)
  for g in range(4):
    block = kernel[:, g * HIDDEN : (g + 1) * HIDDEN]
    np.testing.assert_allclose(block.T @ block, np.eye(HIDDEN), atol=1e-5)


def test_irnn_starts_from_identity_recurrence_and_tiny_inputs():
  params = _init_params(dr.IRNNCell(features=8), in_features=64)
  np.testing.assert_array_equal(params['recurrent']['kernel'], np.eye(8))
  np.testing.assert_array_equal(params['input_proj']['bias'], np.zeros(8))
  assert 0.0005 < float(jnp.std(params['input_proj']['kernel'])) < 0.002


def test_initializers_are_selectable_by_name():
  params = _init_params(dr.GRUCell(features=HIDDEN, recurrent_kernel_init='identity'))
  np.testing.assert_array_equal(params['recurrent']['kernel'], np.tile(np.eye(HIDDEN), (1, 3)))
  with pytest.raises(ValueError, match="unknown initializer 'bogus'; choose one of"):
    _init_params(dr.GRUCell(features=HIDDEN, recurrent_kernel_init='bogus'))


def test_lstm_forget_bias_constant_and_chrono():
  bias = np.asarray(_init_params(dr.LSTMCell(features=HIDDEN))['input_proj']['bias'])
  np.testing.assert_array_equal(bias[HIDDEN : 2 * HIDDEN], 1.0)
  np.testing.assert_array_equal(np.delete(bias, np.s_[HIDDEN : 2 * HIDDEN]), 0.0)
  bias = np.asarray(
    _init_params(dr.LSTMCell(features=64, forget_init='chrono', chrono_max_length=100))['input_proj']['bias']
  )
  forget, inp = bias[64:128], bias[:64]
  assert np.all(forget >= 0.0) and np.all(forget <= np.log(99.0)) and forget.std() > 0.3
  np.testing.assert_array_equal(inp, -forget)
  with pytest.raises(ValueError, match="forget_init 'bogus'"):
    _init_params(dr.LSTMCell(features=HIDDEN, forget_init='bogus'))


def test_ugrnn_starts_remembering():
  bias = np.asarray(_init_params(dr.UGRNNCell(features=HIDDEN))['input_proj']['bias'])
  np.testing.assert_array_equal(bias[HIDDEN:], 1.0)


def test_lru_eigenvalues_on_the_ring_with_normalization():
  cell = dr.LRUCell(features=HIDDEN, state_features=256, r_min=0.5, r_max=0.9)
  params = _init_params(cell)
  radius = np.exp(-np.exp(np.asarray(params['nu_log'])))
  assert radius.min() >= 0.5 - 1e-6 and radius.max() <= 0.9 + 1e-6
  np.testing.assert_allclose(np.exp(params['gamma_log']), np.sqrt(1 - radius**2), rtol=1e-5)
  phase = np.exp(np.asarray(params['theta_log']))
  assert phase.min() >= 0.0 and phase.max() <= 2 * np.pi


def test_indrnn_recurrent_weights_and_clipping():
  cell = dr.IndRNNCell(features=HIDDEN, recurrent_max_abs=0.5)
  params = _init_params(cell)
  u = np.asarray(params['recurrent_kernel'])
  assert u.shape == (HIDDEN,) and np.all((u >= 0) & (u <= 1))
  params = jax.tree.map(lambda a: a, params)
  params['recurrent_kernel'] = jnp.full((HIDDEN,), 3.0)
  params['input_proj']['kernel'] = jnp.zeros_like(params['input_proj']['kernel'])
  params['input_proj']['bias'] = jnp.zeros((HIDDEN,))
  h, _ = cell.apply({'params': params}, jnp.ones((1, HIDDEN)), jnp.zeros((1, IN)))
  np.testing.assert_allclose(h, 0.5)  # u clipped to 0.5, not 3.0


def test_bf16_compute_keeps_float32_params_and_state():
  cell = dr.LSTMCell(features=HIDDEN, dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(0), (BATCH, IN))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  params = cell.init(jax.random.key(0), carry, x)['params']
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  (c, h), y = cell.apply({'params': params}, carry, x)
  assert c.dtype == h.dtype == jnp.float32
  (c32, _), y32 = dr.LSTMCell(features=HIDDEN).apply({'params': params}, carry, x)
  np.testing.assert_allclose(y, y32, atol=3e-2)
  # dtype is not ignored: both matmuls (input and recurrent) read bfloat16, and the rounding shows
  # in the output (max difference 1e-3 here; float32 programs differ by ~1e-7).
  jaxpr = jax.make_jaxpr(lambda c, x: cell.apply({'params': params}, c, x))(carry, x).jaxpr
  dots = [tuple(str(v.aval.dtype) for v in e.invars) for e in jaxpr.eqns if e.primitive.name == 'dot_general']
  assert dots == [('bfloat16', 'bfloat16')] * 2, dots
  assert float(np.max(np.abs(y - y32))) > 1e-4
