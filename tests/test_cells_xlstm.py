"""xLSTM cells (sLSTM, mLSTM): mLSTM's parallel form against its per-step form from nonzero carries
with padding (values and gradients), the stabilizer against the unstabilized equations, padded
batches against each sequence alone, init facts from the paper and the authors' code, bad options.
(NumPy equations, nn.RNN and the DeepRNN paths are in test_cells.py / test_stack.py; the authors'
code with copied weights in oracles/test_xlstm_oracle.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from refs_xlstm import block_diagonal_recurrence, sigmoid

BATCH, TIME, IN, HIDDEN = 3, 7, 5, 8
LENGTHS = np.array([7, 4, 1])


def _setup(cell, seed=0, time=TIME):
  """Perturbed parameters, a random nonzero carry (m included) and inputs ``[batch, time, in]``."""
  keys = jax.random.split(jax.random.key(seed), 4)
  x = jax.random.normal(keys[0], (BATCH, time, IN))
  carry = cell.initialize_carry(keys[1], x[:, 0].shape)
  params = cell.init(keys[2], carry, x[:, 0])['params']
  leaves, tree = jax.tree.flatten(params)
  noise = jax.random.split(keys[3], len(leaves) + 3)
  params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, noise)])
  c, n, m = carry
  carry = (
    0.5 * jax.random.normal(noise[-3], c.shape),
    0.5 * jax.random.normal(noise[-2], n.shape),
    jax.random.normal(noise[-1], m.shape),
  )
  return params, carry, x


def _per_step(cell, params, carry, x, valid):
  """The reference: ``recur`` step by step, the carry held where a step is padding."""

  def step(carry, inputs):
    x_t, valid_t = inputs
    new, y = cell.apply({'params': params}, carry, x_t)
    new = jax.tree.map(lambda a, b: jnp.where(valid_t.reshape(valid_t.shape + (1,) * (a.ndim - 1)), a, b), new, carry)
    return new, y

  final, ys = jax.lax.scan(step, carry, (jnp.swapaxes(x, 0, 1), jnp.swapaxes(valid, 0, 1)))
  return final, jnp.swapaxes(ys, 0, 1)


def _parallel(cell, params, carry, x, valid):
  def run(module, carry, x, valid):
    return module.parallel_sequence(carry, module.project_inputs(x), valid)

  return cell.apply({'params': params}, carry, x, valid, method=run)


def _valid(lengths=LENGTHS, time=TIME):
  return jnp.arange(time)[None, :] < jnp.asarray(lengths)[:, None]


def _close(got, want, tol=1e-5, msg=''):
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol, err_msg=msg)


@pytest.mark.parametrize(
  'options',
  [
    dict(chunk_size=None),
    dict(chunk_size=3),
    dict(chunk_size=3, forget_gate='exp'),
    dict(num_heads=1, chunk_size=64),
  ],
  ids=['whole', 'chunks-of-3', 'exp-forget', 'one-head'],
)
def test_mlstm_parallel_form_equals_per_step_from_a_nonzero_carry_with_padding(options):
  cell = dr.MLSTMCell(features=HIDDEN, **options)
  params, carry, x = _setup(cell)
  valid = _valid()
  want_final, want_ys = jax.jit(lambda p, c: _per_step(cell, p, c, x, valid))(params, carry)
  final, ys = jax.jit(lambda p, c: _parallel(cell, p, c, x, valid))(params, carry)
  for b, n in enumerate(LENGTHS):
    np.testing.assert_allclose(ys[b, :n], want_ys[b, :n], rtol=1e-5, atol=1e-5, err_msg=f'row {b}')
  # Final carries at each row's last valid step (padding leaves the state, m included, untouched).
  _close(final, want_final, msg='final carry')
  assert not np.allclose(final[0], carry[0])  # the state did move


def test_mlstm_parallel_gradients_equal_per_step_gradients():
  cell = dr.MLSTMCell(features=HIDDEN, chunk_size=4)
  params, carry, x = _setup(cell, seed=1)
  valid = _valid()
  weights = jax.random.normal(jax.random.key(9), (BATCH, TIME, HIDDEN))

  def loss(run, params, carry, x):
    final, ys = run(cell, params, carry, x, valid)
    return jnp.sum(jnp.where(valid[..., None], ys, 0.0) * weights) + sum(jnp.sum(jnp.sin(c)) for c in final)

  grad = lambda run: jax.jit(jax.grad(lambda *a: loss(run, *a), argnums=(0, 1, 2)))(params, carry, x)
  want, got = grad(_per_step), grad(_parallel)
  _close(got, want, tol=1e-4, msg='gradients (params, carry, inputs)')
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(got))


@pytest.mark.parametrize('cell', ['mlstm', 'slstm'])
def test_deep_rnn_padded_batch_equals_each_sequence_alone(cell):
  execution = 'parallel' if cell == 'mlstm' else 'layer'
  model = dr.DeepRNN(cell=cell, features=HIDDEN, num_layers=2, execution=execution)
  x = jax.random.normal(jax.random.key(2), (BATCH, TIME, IN))
  params = model.init(jax.random.key(0), x, LENGTHS)
  run = jax.jit(lambda x, lengths: model.apply(params, x, lengths))
  finals, outputs = run(x, LENGTHS)
  for b, n in enumerate(LENGTHS):
    alone_finals, alone = run(x[b : b + 1, :n], None)
    np.testing.assert_allclose(outputs[b, :n], alone[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs[b, n:], 0.0)
    _close(jax.tree.map(lambda c, b=b: c[b], finals), jax.tree.map(lambda c: c[0], alone_finals), msg=f'carry {b}')


def test_slstm_has_no_parallel_form():
  assert dr.MLSTMCell.parallel_form and not dr.SLSTMCell.parallel_form
  with pytest.raises(ValueError, match="execution='parallel' needs a cell with a parallel form"):
    dr.DeepRNN(cell='slstm', features=HIDDEN, execution='parallel')


def test_slstm_stabilizer_gives_the_unstabilized_outputs_where_exp_would_overflow():
  """Input-gate preactivations near 100 (e^100 overflows float32): the float32 stabilized cell gives
  the outputs of the plain exponential-gating equations computed in float64."""
  cell = dr.SLSTMCell(features=4, num_heads=2)
  x = jax.random.normal(jax.random.key(0), (2, 6, 3))
  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  params = cell.init(jax.random.key(1), carry, x[:, 0])['params']
  params['input_proj']['bias'] = params['input_proj']['bias'].at[:4].set(100.0)  # input gates
  ys = []
  for t in range(6):
    carry, y = cell.apply({'params': params}, carry, x[:, t])
    ys.append(y)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  r = block_diagonal_recurrence(p['recurrent_kernel'])
  c = n = h = np.zeros((2, 4))
  for t in range(6):
    raw = np.asarray(x[:, t], np.float64) @ p['input_proj']['kernel'] + p['input_proj']['bias'] + h @ r
    i, f, z, o = np.split(raw, 4, axis=-1)
    c = sigmoid(f) * c + np.exp(i) * np.tanh(z)
    n = sigmoid(f) * n + np.exp(i)
    h = sigmoid(o) * c / n
    assert np.all(np.exp(i) > 1e40)
    np.testing.assert_allclose(ys[t], h, rtol=1e-5, atol=1e-5, err_msg=f'step {t}')


@pytest.mark.parametrize('forget_gate', ['sigmoid', 'exp'])
def test_mlstm_stabilizer_gives_the_unstabilized_outputs(forget_gate):
  """The paper's unstabilized mLSTM (float64), with input gates up to e^100, equals the cell (eps=0)."""
  cell = dr.MLSTMCell(features=4, num_heads=2, eps=0.0, forget_gate=forget_gate)
  x = jax.random.normal(jax.random.key(0), (2, 6, 3))
  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  params = cell.init(jax.random.key(1), carry, x[:, 0])['params']
  params['gate_proj']['bias'] = jnp.array([100.0, 60.0, 1.0, -1.0])
  params['gate_proj']['kernel'] = jax.random.normal(jax.random.key(2), (3, 4))
  step = jax.jit(lambda c, x: cell.apply({'params': params}, c, x))
  _, ys_parallel = _parallel(cell, params, carry, x, None)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  C, n = np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2))
  for t in range(6):
    carry, y = step(carry, x[:, t])
    xt = np.asarray(x[:, t], np.float64)
    proj = xt @ p['input_proj']['kernel'] + p['input_proj']['bias']
    gates = xt @ p['gate_proj']['kernel'] + p['gate_proj']['bias']
    q, k, v, o = (proj[:, g * 4 : (g + 1) * 4].reshape(2, 2, 2) for g in range(4))
    k = k / np.sqrt(2.0)
    i, f = np.exp(gates[:, :2]), (sigmoid(gates[:, 2:]) if forget_gate == 'sigmoid' else np.exp(gates[:, 2:]))
    C = f[..., None, None] * C + i[..., None, None] * np.einsum('bhk,bhv->bhkv', k, v)
    n = f[..., None] * n + i[..., None] * k
    h = np.einsum('bhkv,bhk->bhv', C, q) / np.maximum(np.abs(np.einsum('bhk,bhk->bh', n, q)), 1.0)[..., None]
    want = sigmoid(o.reshape(2, 4)) * h.reshape(2, 4)
    # rtol 1e-4: float32 rounds preactivations near 100 to 8e-6, which moves each e^{i~} by 1e-5
    # relative, and the normalizer n^T q partly cancels (measured: 1.2e-5).
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5, err_msg=f'per-step, step {t}')
    np.testing.assert_allclose(ys_parallel[:, t], want, rtol=1e-4, atol=1e-5, err_msg=f'parallel, step {t}')


def test_slstm_first_step_from_zeros_is_the_gated_candidate_however_small_the_input_gate():
  """From the zero state the stabilizer starts at i~ (as the authors' code does): h = o * tanh(z),
  with no 0/0 even when e^{i~} underflows."""
  cell = dr.SLSTMCell(features=4)
  x = jax.random.normal(jax.random.key(0), (2, 3))
  carry = cell.initialize_carry(jax.random.key(0), x.shape)
  params = cell.init(jax.random.key(1), carry, x)['params']
  params['input_proj']['bias'] = params['input_proj']['bias'].at[:4].set(-200.0)
  (c, n, m, h), y = cell.apply({'params': params}, carry, x)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  raw = np.asarray(x, np.float64) @ p['input_proj']['kernel'] + p['input_proj']['bias']
  np.testing.assert_allclose(y, sigmoid(raw[:, 12:]) * np.tanh(raw[:, 8:12]), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(m, raw[:, :4], rtol=1e-6)
  np.testing.assert_allclose(n, 1.0)


def test_default_heads_and_bad_options():
  for features, heads in ((8, 4), (6, 2), (5, 1), (4, 4)):
    for cls in (dr.SLSTMCell, dr.MLSTMCell):
      assert cls(features=features).heads == heads
  x = jnp.zeros((1, IN))
  for cls, kwargs, match in (
    (dr.SLSTMCell, dict(num_heads=3), 'num_heads=3 must be a positive divisor of features=8'),
    (dr.MLSTMCell, dict(num_heads=0), 'num_heads=0 must be a positive divisor of features=8'),
    (dr.SLSTMCell, dict(forget_gate='tanh'), "unknown forget_gate 'tanh'; choose one of"),
    (dr.MLSTMCell, dict(forget_gate='tanh'), "unknown forget_gate 'tanh'; choose one of"),
    (dr.MLSTMCell, dict(chunk_size=0), 'chunk_size must be a positive integer or None'),
  ):
    cell = cls(features=HIDDEN, **kwargs)
    with pytest.raises(ValueError, match=match):
      cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(0), x.shape), x)


def _init(cell, in_features=IN):
  x = jnp.zeros((1, in_features))
  return cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(0), x.shape), x)['params']


def test_slstm_init_forget_powerlaw_and_orthogonal_head_blocks():
  params = _init(dr.SLSTMCell(features=8, num_heads=2))
  bias = np.asarray(params['input_proj']['bias']).reshape(4, 2, 4)  # gate, head, unit
  want = 5.0 - 12.0 * (np.arange(4) / 3.0) ** 0.3  # xlstm's powerlaw_blockdependent, first block
  np.testing.assert_allclose(bias[1], np.stack([want, want]), rtol=1e-6)
  assert bias[1, 0, 0] == 5.0 and abs(bias[1, 0, -1] + 7.0) < 1e-5
  np.testing.assert_array_equal(bias[[0, 2, 3]], 0.0)
  r = np.asarray(params['recurrent_kernel'])
  assert r.shape == (2, 4, 4, 4)
  for head in range(2):
    for gate in range(4):
      np.testing.assert_allclose(r[head, :, gate].T @ r[head, :, gate], np.eye(4), atol=1e-5)
  zeros = _init(dr.SLSTMCell(features=8, recurrent_kernel_init='zeros'))['recurrent_kernel']
  np.testing.assert_array_equal(zeros, 0.0)


def test_mlstm_init_follows_xlstm_gates():
  params = _init(dr.MLSTMCell(features=8, num_heads=4))
  np.testing.assert_array_equal(params['gate_proj']['kernel'], 0.0)
  bias = np.asarray(params['gate_proj']['bias'])
  np.testing.assert_allclose(bias[4:], [3.0, 4.0, 5.0, 6.0], rtol=1e-6)
  assert 0.0 < np.abs(bias[:4]).max() < 0.5
  assert params['input_proj']['kernel'].shape == (IN, 32)


def _mlstm_float64(params, carry, x, eps=1e-6):
  r"""The per-step mLSTM (sigmoid forget gate) in float64 over ``x`` ``[batch, time, in]`` -> ``(y, s, final,
  final_abs)``: outputs ``y`` ``[batch, time, H]``, their float32 sensitivity ``s`` (same shape), the final
  carry ``(C, n, m)`` and the final ``(|C|, |n|)``.

  ``y`` is a ratio of sums, :math:`\sigma(o)\, C^\top q / \max(|n^\top q|, e^{-m})`; computed with unit
  roundoff u, its first-order error is at most :math:`\gamma\, s` with
  :math:`s = \sigma(o) (|q|^\top |C| + |\tilde h|\, |q|^\top |n|) / \max(|n^\top q|, e^{-m})`, where
  :math:`|C|, |n|` are the states the same gates build from :math:`|k| |v|^\top, |k|` and
  :math:`\gamma` is u times a small multiple of the number of rounded operations per term. Where
  :math:`n^\top q` cancels, ``s`` is far above ``|y|``: there float32 cannot be closer, on any CPU."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  c, n, m = (np.asarray(a, np.float64) for a in carry)
  c_abs, n_abs = np.abs(c), np.abs(n)
  batch, heads, d, _ = c.shape
  hidden = heads * d
  x = np.asarray(x, np.float64)
  proj = x @ p['input_proj']['kernel'] + p['input_proj']['bias']
  gates = x @ p['gate_proj']['kernel'] + p['gate_proj']['bias']
  ys, sens = [], []
  for t in range(x.shape[1]):
    q, k, v, o = (proj[:, t, g * hidden : (g + 1) * hidden].reshape(batch, heads, d) for g in range(4))
    k = k / np.sqrt(d)
    i_raw, log_f = gates[:, t, :heads], -np.logaddexp(0.0, -gates[:, t, heads:])
    m_new = np.maximum(log_f + m, i_raw)
    i, f = np.exp(i_raw - m_new), np.exp(log_f + m - m_new)
    kv = k[..., :, None] * v[..., None, :]
    c = f[..., None, None] * c + i[..., None, None] * kv
    n = f[..., None] * n + i[..., None] * k
    c_abs = f[..., None, None] * c_abs + i[..., None, None] * np.abs(kv)
    n_abs = f[..., None] * n_abs + i[..., None] * np.abs(k)
    den = np.maximum(np.abs(np.einsum('bhk,bhk->bh', q, n)), np.exp(-m_new)) + eps
    h = np.einsum('bhk,bhkv->bhv', q, c) / den[..., None]
    num_abs = np.einsum('bhk,bhkv->bhv', np.abs(q), c_abs)
    s = (num_abs + np.abs(h) * np.einsum('bhk,bhk->bh', np.abs(q), n_abs)[..., None]) / den[..., None]
    m = m_new
    gate = sigmoid(o.reshape(batch, hidden))
    ys.append(gate * h.reshape(batch, hidden))
    sens.append(gate * s.reshape(batch, hidden))
  return np.stack(ys, 1), np.stack(sens, 1), (c, n, m), (c_abs, n_abs)


def test_mlstm_long_sequence_chunked_equals_whole_and_stays_finite():
  """T = 50 with input and forget gates pushed up by 20 (outputs reach the hundreds where n^T q cancels):
  chunks of 8 (padded to 56) and the whole quadratic form both equal the float64 per-step equations
  within float32's error bound, and each other within a tighter one.

  Bounds in units of u * s (``_mlstm_float64``; u = float32's 2^-23): measured on AMD EPYC at XLA
  optimization levels 0 and 3 over seeds 0-3, at most 6.4 against float64 (the float32 projections
  included) and 1.4 between the two float32 forms; asserted with 4x margin. A relative
  tolerance alone failed on Intel Xeon (357.3916 vs 357.3976 where n^T q cancels)."""
  cell = dr.MLSTMCell(features=4, chunk_size=8)
  params, carry, x = _setup(cell, seed=3, time=50)
  params['gate_proj']['bias'] = params['gate_proj']['bias'] + 20.0
  final, ys = jax.jit(lambda p: _parallel(cell, p, carry, x, None))(params)
  whole = cell.clone(chunk_size=None)
  want_final, want_ys = jax.jit(lambda p: _parallel(whole, p, carry, x, None))(params)
  assert bool(jnp.all(jnp.isfinite(ys)))
  y64, sens, final64, (c_abs, n_abs) = _mlstm_float64(params, carry, x)
  assert np.abs(y64).max() > 100.0 and (sens / np.abs(y64)).max() > 100.0  # the hard case it is meant to be
  u = float(np.finfo(np.float32).eps)
  for name, got in (('chunked', ys), ('whole', want_ys)):
    err = np.abs(np.asarray(got, np.float64) - y64)
    assert np.all(err <= 24 * u * sens + 1e-6), f'{name} vs float64: {(err / (u * sens)).max():.1f} u*s'
  err = np.abs(np.asarray(ys, np.float64) - np.asarray(want_ys, np.float64))
  assert np.all(err <= 6 * u * sens + 1e-6), f'chunked vs whole: {(err / (u * sens)).max():.1f} u*s'
  # Final carries: each entry a weighted sum whose absolute sum is |C|, |n| (m a max of log weights).
  for got in (final, want_final):
    for a, b, scale in zip(got, final64, (c_abs, n_abs, np.abs(final64[2])), strict=True):
      np.testing.assert_array_less(np.abs(np.asarray(a, np.float64) - b), 24 * u * scale + 1e-6)


def test_mlstm_parallel_segments_from_carried_state_equal_the_uninterrupted_run():
  """Truncated BPTT / streaming: the parallel form run segment by segment, each from the carries the
  last one left (padded rows included), equals the per-step run over the whole sequence."""
  x = jax.random.normal(jax.random.key(4), (BATCH, 10, IN))
  lengths = np.array([10, 6, 3])
  reference = dr.DeepRNN(cell='mlstm', features=HIDDEN, num_layers=2, execution='time')
  parallel = reference.clone(execution='parallel', cell_kwargs=dict(chunk_size=2))
  params = reference.init(jax.random.key(0), x)
  want_finals, want = jax.jit(lambda x, l: reference.apply(params, x, l))(x, lengths)
  run = jax.jit(lambda x, l, c: parallel.apply(params, x, l, initial_carries=c))
  carries, outputs = None, []
  for start, stop in ((0, 4), (4, 10)):
    seg_lengths = np.clip(lengths - start, 0, stop - start)
    carries, y = run(x[:, start:stop], seg_lengths, carries)
    outputs.append(y)
  np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), want, rtol=1e-5, atol=1e-5)
  _close(carries, want_finals, msg='final carries')


def test_mlstm_head_norm_normalizes_each_head_before_the_output_gate_on_both_paths():
  """head_norm: y = sigma(o) * LN(h~) per head (no parameters: the same tree as without it), the
  parallel form equal to the per-step one; a head of one unit is refused."""
  plain = dr.MLSTMCell(features=8, num_heads=2, chunk_size=3)
  normed = plain.clone(head_norm=True)
  params, carry, x = _setup(plain, seed=5)
  valid = _valid()
  _, y_plain = jax.jit(lambda p, c, x, v: _per_step(plain, p, c, x, v))(params, carry, x, valid)
  _, y_norm = jax.jit(lambda p, c, x, v: _per_step(normed, p, c, x, v))(params, carry, x, valid)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  o = sigmoid(np.asarray(x, np.float64) @ p64['input_proj']['kernel'][:, 24:] + p64['input_proj']['bias'][24:])
  h = (np.asarray(y_plain, np.float64) / o).reshape(BATCH, TIME, 2, 4)
  h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
  want = o * h.reshape(BATCH, TIME, 8)
  _, y_parallel = jax.jit(lambda p, c, x, v: _parallel(normed, p, c, x, v))(params, carry, x, valid)
  for b, n in enumerate(LENGTHS):
    np.testing.assert_allclose(y_norm[b, :n], want[b, :n], rtol=1e-4, atol=1e-5, err_msg=f'row {b}')
    np.testing.assert_allclose(y_parallel[b, :n], y_norm[b, :n], rtol=1e-5, atol=1e-5, err_msg=f'row {b}')
  assert np.abs(np.asarray(y_norm)).max() <= 2.0  # each head's units have mean 0, variance 1, gated by o < 1
  cell = dr.MLSTMCell(features=4, head_norm=True)  # 4 heads of 1 unit
  x0 = jnp.zeros((1, IN))
  with pytest.raises(ValueError, match='head_norm needs at least 2 units per head'):
    cell.init(jax.random.key(0), cell.initialize_carry(jax.random.key(0), x0.shape), x0)
