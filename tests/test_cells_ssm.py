"""minLSTM, RG-LRU, S6 and Mamba: the parallel form equals the per-step form (values and gradients, from a
nonzero carry, with padding), a padded batch equals each sequence alone, Mamba's conv buffer, and the
papers' initializations. Equations vs NumPy: tests/refs_ssm.py via tests/test_cells.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr

BATCH, TIME, IN, HIDDEN = 3, 6, 5, 4
LENGTHS = np.array([6, 2, 1])
NAMES = ('minlstm', 'rglru', 's6', 'mamba')


def make(name, **kwargs):
  cell = dr.CELLS[name](features=HIDDEN, **kwargs)
  x = jax.random.normal(jax.random.key(1), (BATCH, TIME, IN))
  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  params = cell.init(jax.random.key(0), carry, x[:, 0])['params']
  # Perturbed parameters (zero biases exercised) and a nonzero starting carry (streaming, truncated BPTT).
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  carry = jax.tree.map(lambda c: c + 0.5 * jax.random.normal(jax.random.key(3), c.shape), carry)
  return cell, params, carry, x


def per_step(cell, params, carry, x, valid):
  """The reference: ``__call__`` step by step, the carry held at invalid steps (as DeepRNN does)."""

  def body(carry, inputs):
    x_t, v_t = inputs
    new, y = cell.apply({'params': params}, carry, x_t)
    return jax.tree.map(lambda n, c: jnp.where(v_t.reshape(v_t.shape + (1,) * (n.ndim - 1)), n, c), new, carry), y

  final, ys = jax.lax.scan(body, carry, (jnp.swapaxes(x, 0, 1), jnp.swapaxes(valid, 0, 1)))
  return final, jnp.swapaxes(ys, 0, 1)


def parallel(cell, params, carry, x, valid):
  def run(cell, carry, x):
    return cell.parallel_sequence(carry, cell.project_inputs(x), valid)

  return cell.apply({'params': params}, carry, x, method=run)


def valid_mask(lengths=LENGTHS, time=TIME):
  return jnp.arange(time)[None, :] < jnp.asarray(lengths)[:, None]


def assert_trees_close(got, want, tol, msg=''):
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol, err_msg=msg)


@pytest.mark.parametrize('name', NAMES)
def test_parallel_form_equals_per_step_from_a_nonzero_carry_with_padding(name):
  cell, params, carry, x = make(name)
  assert cell.parallel_form
  valid = valid_mask()
  final, ys = jax.jit(lambda c, x: parallel(cell, params, c, x, valid))(carry, x)
  want_final, want_ys = jax.jit(lambda c, x: per_step(cell, params, c, x, valid))(carry, x)
  assert_trees_close(final, want_final, 1e-5, 'final carry')
  v = np.asarray(valid)
  np.testing.assert_allclose(np.asarray(ys)[v], np.asarray(want_ys)[v], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', NAMES)
def test_parallel_gradients_equal_per_step_gradients(name):
  cell, params, carry, x = make(name)
  valid = valid_mask()
  weights = jax.random.normal(jax.random.key(7), (BATCH, TIME, HIDDEN)) * valid[..., None]

  def loss(run, params, carry, x):
    final, ys = run(cell, params, carry, x, valid)
    return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(final))

  got = jax.jit(jax.grad(lambda *a: loss(parallel, *a), argnums=(0, 1, 2)))(params, carry, x)
  want = jax.jit(jax.grad(lambda *a: loss(per_step, *a), argnums=(0, 1, 2)))(params, carry, x)
  assert_trees_close(got, want, 1e-4, 'gradients (params, carry, x)')
  assert float(jnp.abs(got[0]['input_proj']['kernel']).sum()) > 0


def test_padded_batch_equals_each_sequence_alone():
  # Mamba, whose final carry (the conv buffer) depends on where each sequence ends; the other cells' final
  # state is held at invalid steps by linear_recurrence, checked against the per-step form above.
  cell, params, carry, x = make('mamba')
  final, ys = jax.jit(lambda c, x: parallel(cell, params, c, x, valid_mask()))(carry, x)
  for b, n in enumerate(LENGTHS):
    row = jax.tree.map(lambda c, b=b: c[b : b + 1], carry)
    alone_final, alone_ys = parallel(cell, params, row, x[b : b + 1, :n], None)
    np.testing.assert_allclose(ys[b, :n], alone_ys[0], rtol=1e-5, atol=1e-5, err_msg=f'row {b}')
    row_final = jax.tree.map(lambda c, b=b: c[b], final)
    assert_trees_close(row_final, jax.tree.map(lambda c: c[0], alone_final), 1e-5, f'carry {b}')


def test_mamba_conv_buffer_holds_the_last_valid_inputs():
  cell, params, carry, x = make('mamba')
  (conv, _), _ = jax.jit(lambda c, x: parallel(cell, params, c, x, valid_mask()))(carry, x)
  inner = cell.expand * HIDDEN
  xb = jax.jit(lambda x: cell.apply({'params': params}, x, method=lambda c, x: c.project_inputs(x)))(x)[..., :inner]
  # Length 6: its last three inputs; length 2: the carry's newest input, then its two; length 1: two, then one.
  np.testing.assert_allclose(conv[0], xb[0, 3:6], rtol=1e-6)
  np.testing.assert_allclose(conv[1], jnp.concatenate([carry[0][1, 2:], xb[1, :2]]), rtol=1e-6)
  np.testing.assert_allclose(conv[2], jnp.concatenate([carry[0][2, 1:], xb[2, :1]]), rtol=1e-6)
  assert conv.shape == (BATCH, cell.d_conv - 1, inner)


def _init(name, features=HIDDEN, **kwargs):
  cell = dr.CELLS[name](features=features, **kwargs)
  x = jnp.zeros((1, IN))
  return cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(0), x.shape), x)['params']


def test_rglru_decay_initialized_on_the_ring_as_recurrentgemma():
  a = np.exp(-np.logaddexp(0.0, np.asarray(_init('rglru', features=512)['a_param'], np.float64)))
  assert a.min() >= 0.9 - 1e-6 and a.max() <= 0.999 + 1e-6
  # a^2 uniform on [0.81, 0.998]: its mean is the midpoint.
  assert abs(np.mean(a**2) - (0.81 + 0.998) / 2) < 0.01


def test_rglru_heads_are_block_diagonal_and_must_divide_the_width():
  params = _init('rglru', features=8, num_heads=2)
  assert params['input_gate']['w'].shape == params['a_gate']['w'].shape == (2, 4, 4)
  with pytest.raises(ValueError, match='num_heads=3 must divide features=8'):
    _init('rglru', features=8, num_heads=3)


def test_s6_and_mamba_initialization_as_mamba():
  for name, channels in (('s6', HIDDEN), ('mamba', 2 * HIDDEN)):
    params = _init(name, dt_min=0.01, dt_max=0.05)
    np.testing.assert_allclose(np.exp(params['A_log']), np.tile(np.arange(1, 17), (channels, 1)), rtol=1e-6)
    np.testing.assert_array_equal(params['D'], 1.0)
    dt = np.logaddexp(0.0, np.asarray(params['dt_proj']['bias'], np.float64))
    assert dt.shape == (channels,) and dt.min() >= 0.01 * (1 - 1e-5) and dt.max() <= 0.05 * (1 + 1e-5)
    assert params['dt_proj']['kernel'].shape == (1, channels)  # dt_rank = ceil(4 / 16)
    assert np.abs(params['dt_proj']['kernel']).max() <= 1.0


def test_minlstm_gates_sum_to_one_so_a_constant_candidate_is_a_fixed_point():
  cell, params, _, _ = make('minlstm')
  params = jax.tree.map(lambda p: p, params)
  # Candidate bias c, candidate kernel zero: from h = c every step keeps h = c, whatever the gates.
  params['input_proj']['kernel'] = params['input_proj']['kernel'].at[:, 2 * HIDDEN :].set(0.0)
  c = params['input_proj']['bias'][2 * HIDDEN :]
  h = jnp.broadcast_to(c, (BATCH, HIDDEN))
  x = jax.random.normal(jax.random.key(9), (BATCH, IN)) * 3.0
  new, _ = cell.apply({'params': params}, h, x)
  np.testing.assert_allclose(new, h, rtol=1e-6, atol=1e-6)
