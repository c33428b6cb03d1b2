"""Matrix-state cells (linear attention, DeltaNet, Gated DeltaNet) and causal attention: the parallel
(chunkwise / masked) form against the per-step form from nonzero carries with padding, padded vs alone,
gradients, properties from the papers (the delta rule's write, bounded memory, RoPE's relative
positions, softmax over the causal window), and attention's NumPy reference from a nonempty cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax.cells.attention import rope
from deeprnn_jax.cells.linear_attention import chunkwise_delta, l2_normalize
from refs_linear_attention import np_attention, rope_matrix

BATCH, TIME, IN, HIDDEN, HEADS = 3, 10, 5, 8, 2
LENGTHS = jnp.array([10, 6, 1])
MATRIX_CELLS = ('linear_attention', 'deltanet', 'gated_deltanet')


def _tree_close(got, want, tol, msg=''):
  got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(got_leaves) == len(want_leaves)
  for g, w in zip(got_leaves, want_leaves):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol, err_msg=msg)


def _setup(name, seed=0, **kwargs):
  """A cell with perturbed parameters and a nonzero starting carry (a nonempty cache for attention)."""
  cell = dr.CELLS[name](features=HIDDEN, num_heads=HEADS, **kwargs)
  x = jax.random.normal(jax.random.key(seed), (BATCH, TIME, IN))
  carry = cell.initialize_carry(jax.random.key(1), x[:, 0].shape)
  params = cell.init(jax.random.key(0), carry, x[:, 0])['params']
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  if name == 'gated_deltanet':  # a strong decay (alpha down to ~e^-8 per step), so the chunk's Gamma matter
    params['dt_bias'] = params['dt_bias'] + 2.0
  if name == 'attention':
    # Three earlier steps in the cache (different positions per row), garbage in the unwritten slots.
    pre = jax.random.normal(jax.random.key(7), (BATCH, 3, IN))
    for t in range(3):
      carry, _ = cell.apply({'params': params}, carry, pre[:, t])
    carry['position'] = carry['position'] - jnp.array([0, 1, 3])
    carry['keys'] = jnp.where(jnp.arange(cell.max_length)[None, :, None, None] >= 3, 5.0, carry['keys'])
  else:
    carry = jax.tree.map(lambda c: c + 0.5 * jax.random.normal(jax.random.key(4), c.shape), carry)
    if name == 'linear_attention':  # the normalizer of a real history is a sum of positive features
      carry = (carry[0], jnp.abs(carry[1]) + 1.0)
  return cell, params, carry, x


def _per_step(cell, params, carry, x, valid):
  """The reference: ``recur`` scanned over time, the carry held at invalid steps (as DeepRNN does)."""

  def run(params, carry, x):
    xp = cell.apply({'params': params}, x, method='project_inputs')

    def body(c, inputs):
      xp_t, valid_t = inputs
      new, y = cell.apply({'params': params}, c, xp_t, method='recur')
      new = jax.tree.map(lambda n, o: jnp.where(valid_t.reshape(valid_t.shape + (1,) * (n.ndim - 1)), n, o), new, c)
      return new, y

    final, ys = jax.lax.scan(body, carry, (jnp.swapaxes(xp, 0, 1), jnp.swapaxes(valid, 0, 1)))
    return final, jnp.swapaxes(ys, 0, 1)

  return run(params, carry, x)


def _parallel(cell, params, carry, x, valid):
  xp = cell.apply({'params': params}, x, method='project_inputs')
  return cell.apply({'params': params}, carry, xp, valid, method='parallel_sequence')


def _valid(lengths, time=TIME):
  return jnp.arange(time)[None, :] < lengths[:, None]


CASES = [(name, c) for name in MATRIX_CELLS for c in (4, 5)] + [('gated_deltanet', 64), ('attention', None)]


@pytest.mark.parametrize('name, chunk_size', CASES, ids=[f'{n}-{c}' for n, c in CASES])
def test_parallel_form_equals_per_step_from_a_nonzero_carry_with_padding(name, chunk_size):
  """Chunk 5 divides T = 10, 4 does not (T is padded inside), 64 > T (one chunk)."""
  kwargs = {} if chunk_size is None else dict(chunk_size=chunk_size)
  cell, params, carry, x = _setup(name, **kwargs)
  valid = _valid(LENGTHS)
  want_final, want_y = jax.jit(lambda p, c, x: _per_step(cell, p, c, x, valid))(params, carry, x)
  got_final, got_y = jax.jit(lambda p, c, x: _parallel(cell, p, c, x, valid))(params, carry, x)
  mask = np.asarray(valid)[..., None]
  np.testing.assert_allclose(np.where(mask, got_y, 0.0), np.where(mask, want_y, 0.0), rtol=1e-4, atol=1e-5)
  _tree_close(got_final, want_final, 1e-5, 'final carry')
  if name == 'attention':
    np.testing.assert_array_equal(got_final['position'], carry['position'] + LENGTHS)


@pytest.mark.parametrize('name', MATRIX_CELLS + ('attention',))
def test_padded_batch_equals_each_sequence_alone_in_the_parallel_form(name):
  cell, params, carry, x = _setup(name, seed=1, **({} if name == 'attention' else dict(chunk_size=4)))
  run = jax.jit(lambda c, x, v: _parallel(cell, params, c, x, v))
  finals, ys = run(carry, x, _valid(LENGTHS))
  for b, n in enumerate(np.asarray(LENGTHS)):
    row = jax.tree.map(lambda c, b=b: c[b : b + 1], carry)
    alone_final, alone_y = run(row, x[b : b + 1, :n], jnp.ones((1, n), bool))
    np.testing.assert_allclose(ys[b, :n], alone_y[0], rtol=1e-5, atol=1e-5, err_msg=f'row {b}')
    row_final = jax.tree.map(lambda c, b=b: c[b], finals)
    _tree_close(row_final, jax.tree.map(lambda c: c[0], alone_final), 1e-5, f'carry {b}')


@pytest.mark.parametrize('name', MATRIX_CELLS + ('attention',))
def test_gradients_of_parallel_and_per_step_forms_agree(name):
  cell, params, carry, x = _setup(name, seed=2, **({} if name == 'attention' else dict(chunk_size=4)))
  valid = _valid(LENGTHS)
  floats = {k: v for k, v in carry.items() if k != 'position'} if name == 'attention' else carry

  def loss(form, params, floats, x):
    start = dict(floats, position=carry['position']) if name == 'attention' else floats
    final, y = form(cell, params, start, x, valid)
    final = {k: v for k, v in final.items() if k != 'position'} if name == 'attention' else final
    y = jnp.where(valid[..., None], y, 0.0)
    return jnp.sum(jnp.sin(y)) + sum(jnp.sum(jnp.cos(f)) for f in jax.tree.leaves(final))

  want = jax.jit(jax.grad(lambda *a: loss(_per_step, *a), argnums=(0, 1, 2)))(params, floats, x)
  got = jax.jit(jax.grad(lambda *a: loss(_parallel, *a), argnums=(0, 1, 2)))(params, floats, x)
  _tree_close(got, want, 2e-4)
  assert float(jnp.abs(got[0]['input_proj']['kernel']).sum()) > 0


@pytest.mark.parametrize('name', MATRIX_CELLS + ('attention',))
def test_deep_rnn_parallel_execution_equals_time_major(name):
  x = jax.random.normal(jax.random.key(3), (BATCH, 7, IN))
  lengths = jnp.array([7, 4, 1])
  kwargs = dict(cell=name, features=HIDDEN, num_layers=2, cell_kwargs=dict(num_heads=HEADS))
  if name != 'attention':
    kwargs['cell_kwargs']['chunk_size'] = 3
  time_model = dr.DeepRNN(execution='time', **kwargs)
  params = time_model.init(jax.random.key(0), x)
  want = jax.jit(lambda p: time_model.apply(p, x, lengths))(params)
  got = jax.jit(lambda p: dr.DeepRNN(execution='parallel', **kwargs).apply(p, x, lengths))(params)
  _tree_close(got, want, 1e-5)


@pytest.mark.parametrize('gated', [False, True], ids=['deltanet', 'gated_deltanet'])
def test_delta_rule_write_moves_the_read_out_value_toward_v_by_beta(gated):
  """Schlag et al. 2021 / Yang et al. 2024: after the write, the memory returns for k_t
  (1 - beta_t) alpha_t S_{t-1}^T k_t + beta_t v_t (beta_t = 1 replaces the old value by v_t exactly)."""
  cell, params, s, x = _setup('gated_deltanet' if gated else 'deltanet')
  xp = cell.apply({'params': params}, x[:, 0], method='project_inputs')
  q, k, v, beta, log_alpha, _ = cell.apply({'params': params}, xp, method=lambda m, xp: m._split(xp))
  new_s, _ = cell.apply({'params': params}, s, xp, method='recur')
  alpha = jnp.ones_like(beta) if log_alpha is None else jnp.exp(log_alpha)
  before = jnp.einsum('bhk,bhkv->bhv', k, s) * alpha[..., None]
  after = jnp.einsum('bhk,bhkv->bhv', k, new_s)
  np.testing.assert_allclose(after, (1 - beta[..., None]) * before + beta[..., None] * v, rtol=1e-5, atol=1e-5)
  assert float(jnp.min(jnp.abs(beta - 0.5))) > 1e-3  # beta really varies, not a constant one-half


def test_delta_rule_memory_stays_bounded_where_linear_attention_grows():
  """With unit keys, beta in (0, 1) and values of norm <= 1, the delta rule is online regression
  (Yang et al. 2024, sec. 2): its memory stays O(1) over 4096 writes (Frobenius norm 1.3 measured),
  while linear attention's sum of random outer products grows like sqrt(writes) (71 measured)."""
  batch, time, heads, d = 1, 4096, 1, 4
  keys = jax.random.split(jax.random.key(0), 3)
  k = l2_normalize(jax.random.normal(keys[0], (batch, time, heads, d)))
  v = l2_normalize(jax.random.normal(keys[1], (batch, time, heads, d)))
  beta = jax.random.uniform(keys[2], (batch, time, heads))
  zero = jnp.zeros((batch, heads, d, d))
  delta, _ = chunkwise_delta(zero, k, k, v, beta, None, 64)
  additive, _ = chunkwise_delta(zero, k, k, v, None, None, 64)
  delta_norm, additive_norm = float(jnp.linalg.norm(delta)), float(jnp.linalg.norm(additive))
  assert delta_norm < 2.0 * np.sqrt(d), delta_norm
  assert additive_norm > 0.5 * np.sqrt(time), additive_norm


def test_rope_inner_products_depend_only_on_relative_position():
  """Su et al. 2021, eq. (16): (R_m q)^T (R_n k) = q^T R_{n-m} k, so shifting both positions changes nothing."""
  q, k = jax.random.normal(jax.random.key(0), (2, 1, 1, 8))
  dot = lambda m, n: float(jnp.sum(rope(q, jnp.array([m])) * rope(k, jnp.array([n]))))
  for m, n in ((0, 0), (3, 1), (5, 9), (100, 37)):
    want = np.asarray(q[0, 0], np.float64) @ rope_matrix(n - m, 8) @ np.asarray(k[0, 0], np.float64)
    for shift in (0, 7, 250):
      np.testing.assert_allclose(dot(m + shift, n + shift), want, rtol=1e-4, atol=1e-4, err_msg=f'{m}, {n}, {shift}')
  # A rotation: norms are kept; and position 0 is the identity.
  positions = jnp.arange(6).reshape(1, 6)
  x = jax.random.normal(jax.random.key(1), (1, 6, 2, 8))
  np.testing.assert_allclose(jnp.linalg.norm(rope(x, positions), axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5)
  np.testing.assert_allclose(rope(x, jnp.zeros((1, 6), jnp.int32)), x, rtol=1e-6)


def test_attention_weights_sum_to_one_over_the_causal_window_only():
  """Every visible value (cached and new) is the same vector c and the unwritten slots hold garbage:
  the output is W_o c exactly when the softmax weights over positions <= m sum to one and nothing
  past the window leaks in, in both forms."""
  cell = dr.AttentionCell(features=HIDDEN, num_heads=HEADS, max_length=16)
  x = jnp.concatenate([jax.random.normal(jax.random.key(0), (BATCH, TIME, IN - 1)), jnp.ones((BATCH, TIME, 1))], -1)
  carry = cell.initialize_carry(jax.random.key(1), x[:, 0].shape)
  params = cell.init(jax.random.key(0), carry, x[:, 0])['params']
  c = jax.random.normal(jax.random.key(2), (HIDDEN,))
  # v = c for every input: the value block of the kernel reads only the constant last feature.
  kernel = params['input_proj']['kernel'].at[:, 2 * HIDDEN :].set(0.0).at[-1, 2 * HIDDEN :].set(c)
  params = {'input_proj': {'kernel': kernel}, 'output_proj': params['output_proj']}
  carry['position'] = jnp.array([0, 2, 5])
  written = jnp.arange(16)[None, :, None, None] < carry['position'][:, None, None, None]
  carry['values'] = jnp.where(written, c.reshape(1, 1, HEADS, -1), 1e3)
  carry['keys'] = jax.random.normal(jax.random.key(3), carry['keys'].shape) * 3.0
  want = np.broadcast_to(c @ params['output_proj']['kernel'], (BATCH, TIME, HIDDEN))
  valid = jnp.ones((BATCH, TIME), bool)
  for form in (_per_step, _parallel):
    _, y = jax.jit(lambda p, c, x, form=form: form(cell, p, c, x, valid))(params, carry, x)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5, err_msg=form.__name__)


def test_attention_matches_numpy_from_a_nonempty_cache():
  """The NumPy reference (tests/refs_linear_attention.py) step by step from a cache with different
  positions per row (tests/test_cells.py's generic check starts every row at position 0)."""
  cell, params, carry, x = _setup('attention')
  np_params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  np_carry = jax.tree.map(np.asarray, carry)
  np_carry = {
    'keys': np_carry['keys'].astype(np.float64),
    'values': np_carry['values'].astype(np.float64),
    'position': np_carry['position'],
  }
  step = jax.jit(lambda c, x: cell.apply({'params': params}, c, x))
  for t in range(4):
    carry, y = step(carry, x[:, t])
    np_carry, np_y = np_attention(np_params, np_carry, np.asarray(x[:, t], np.float64))
    np.testing.assert_allclose(y, np_y, rtol=2e-5, atol=2e-5, err_msg=f'step {t}')
    _tree_close(carry, np_carry, 2e-5, f'carry, step {t}')


def test_attention_past_its_cache_fails_loudly():
  cell = dr.AttentionCell(features=4, max_length=3)
  x = jnp.ones((1, 5, 2))
  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  params = cell.init(jax.random.key(0), carry, x[:, 0])
  xp = cell.apply(params, x, method='project_inputs')
  message = r'a sequence of 5 steps does not fit max_length=3; set cell_kwargs max_length >= 5'
  with pytest.raises(ValueError, match=message):
    cell.apply(params, carry, xp, None, method='parallel_sequence')
  ys = []
  for t in range(5):
    carry, y = cell.apply(params, carry, x[:, t])
    ys.append(y)
  assert np.isfinite(np.asarray(ys[:3])).all() and np.isnan(np.asarray(ys[3:])).all()


@pytest.mark.parametrize(
  'name, kwargs, message',
  [
    ('deltanet', dict(features=6, num_heads=4), r'DeltaNetCell: features=6 must be divisible by num_heads=4'),
    ('linear_attention', dict(features=4, chunk_size=0), r'chunk_size must be a positive integer; got 0'),
    ('attention', dict(features=6, num_heads=2), r'RoPE needs an even head width, got features/num_heads = 6/2'),
    ('attention', dict(features=6, num_heads=4), r'AttentionCell: features=6 must be divisible by num_heads=4'),
  ],
)
def test_impossible_shapes_fail_in_one_line(name, kwargs, message):
  cell = dr.CELLS[name](**kwargs)
  with pytest.raises(ValueError, match=message) as e:
    x = jnp.ones((1, 3))
    cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(0), x.shape), x)
  assert '\n' not in str(e.value)


def test_defaults_work_for_any_width_and_chunk_size_defaults_to_64():
  for name in MATRIX_CELLS + ('attention',):
    for h in (2, 6):
      cell = dr.CELLS[name](features=h)
      x = jnp.ones((1, 3))
      carry = cell.initialize_carry(jax.random.key(0), x.shape)
      init = lambda cell=cell, carry=carry, x=x: cell.init_with_output(jax.random.key(0), carry, x)
      (_, y), _ = jax.eval_shape(init)  # shapes only: nothing to compile
      assert y.shape == (1, h), name
  assert dr.DeltaNetCell(features=4).chunk_size == 64 and dr.AttentionCell(features=4).max_length >= 256
