"""sLSTM and mLSTM against the authors' code (the ``xlstm`` package, PyTorch, its CPU paths) with
copied weights: outputs, carries and gradients (inputs and parameters) at float32 rounding.

* sLSTM: ``xlstm``'s ``sLSTMCell`` (``backend='vanilla'``, the pure-PyTorch ``slstm_forward``) fed our
  input projection ``W x``, with our bias and head-wise recurrent kernel copied into its layout.
* mLSTM: the backend functions of ``xlstm.blocks.mlstm.backends`` fed the q, k, v and gate
  preactivations our cell computes (from copied weights): ``recurrent_step_stabilized_simple`` against
  the per-step cell, ``parallel_stabilized_simple`` (zero start) and ``chunkwise_simple`` (any start)
  against ``parallel_sequence``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason="authors' reference code needs the oracles extra: make test-oracles")
pytest.importorskip('xlstm', reason="xLSTM's reference code needs the oracles extra: make test-oracles")
from xlstm.blocks.mlstm import backends  # noqa: E402
from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig  # noqa: E402

import deeprnn_jax as dr  # noqa: E402

BATCH, TIME, IN, HIDDEN, HEADS = 3, 6, 5, 8, 2
TOL = dict(rtol=1e-4, atol=1e-5)


def _t(a, grad=False):
  return torch.tensor(np.asarray(a), dtype=torch.float32, requires_grad=grad)


def _params(cell, x, seed=0):
  """Initialized parameters plus noise (zero-initialized ones exercised too)."""
  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  params = cell.init(jax.random.key(seed), carry, x[:, 0])['params']
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  return jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def _scan(cell, params, carry, x):
  def step(carry, x_t):
    return cell.apply({'params': params}, carry, x_t)

  final, ys = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
  return final, jnp.swapaxes(ys, 0, 1)


def _loss_weights():
  return np.asarray(jax.random.normal(jax.random.key(7), (BATCH, TIME, HIDDEN)))


# -- sLSTM ---------------------------------------------------------------------------------------


def _slstm_oracle(params, x, state):
  """xlstm's vanilla sLSTM cell; ``state`` (c, n, m, h) ours -> its (y, c, n, m) [4, B, H]."""
  cell = sLSTMCell(
    sLSTMCellConfig(hidden_size=HIDDEN, num_heads=HEADS, backend='vanilla', dtype='float32', output_shape='BSH')
  )
  head_dim = HIDDEN // HEADS
  with torch.no_grad():
    # Our recurrent kernel is xlstm's external layout [heads, d, gates, d]; our bias [gates, heads, d].
    cell._recurrent_kernel_.copy_(cell._recurrent_kernel_ext2int(_t(params['recurrent_kernel'])))
    bias = np.asarray(params['input_proj']['bias']).reshape(4, HEADS, head_dim).transpose(1, 0, 2)
    cell._bias_.copy_(cell._bias_ext2int(_t(bias)))
  x_t, kernel = _t(x, grad=True), _t(params['input_proj']['kernel'], grad=True)
  c, n, m, h = state
  ys, final = cell(x_t @ kernel, torch.stack([_t(h), _t(c), _t(n), _t(m)]))
  return cell, x_t, kernel, ys, final


@pytest.mark.parametrize('start', ['zeros', 'nonzero'])
def test_slstm_equals_xlstm_vanilla_cell(start):
  model = dr.SLSTMCell(features=HIDDEN, num_heads=HEADS)
  x = jax.random.normal(jax.random.key(1), (BATCH, TIME, IN))
  params = _params(model, x)
  carry = model.initialize_carry(jax.random.key(0), x[:, 0].shape)
  if start == 'nonzero':
    keys = jax.random.split(jax.random.key(3), 4)
    carry = tuple(0.5 * jax.random.normal(k, c.shape) for k, c in zip(keys, carry))
    carry = (carry[0], jnp.abs(carry[1]) + 0.5, carry[2], carry[3])  # a normalizer that has summed gates
  weights = _loss_weights()

  def loss(params, x):
    final, ys = _scan(model, params, carry, x)
    return jnp.sum(ys * weights) + jnp.sum(jnp.sin(final[0])), (final, ys)

  (_, (final, ys)), (grads, grad_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  cell, x_t, kernel, ys_t, final_t = _slstm_oracle(params, x, carry)
  (torch.sum(ys_t * _t(weights)) + torch.sum(torch.sin(final_t[1]))).backward()

  np.testing.assert_allclose(ys, ys_t.detach().numpy(), **TOL, err_msg='outputs')
  for ours, theirs, name in zip(final, final_t[[1, 2, 3, 0]], ('c', 'n', 'm', 'h')):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), **TOL, err_msg=f'final {name}')
  np.testing.assert_allclose(grad_x, x_t.grad.numpy(), **TOL, err_msg='input gradient')
  np.testing.assert_allclose(grads['input_proj']['kernel'], kernel.grad.numpy(), **TOL, err_msg='W gradient')
  r_grad = cell._recurrent_kernel_int2ext(cell._recurrent_kernel_.grad).numpy()
  np.testing.assert_allclose(grads['recurrent_kernel'], r_grad, **TOL, err_msg='R gradient')
  b_grad = cell._bias_int2ext(cell._bias_.grad).numpy().transpose(1, 0, 2).reshape(-1)
  np.testing.assert_allclose(grads['input_proj']['bias'], b_grad, **TOL, err_msg='b gradient')
  assert float(np.abs(r_grad).sum()) > 0


# -- mLSTM ---------------------------------------------------------------------------------------


def _mlstm_inputs(params, x_t):
  """Our projection in torch from copied weights -> q, k, v [B, NH, S, d], o [B, S, H], i~, f~ [B, NH, S, 1]."""
  kernel, bias = _t(params['input_proj']['kernel'], grad=True), _t(params['input_proj']['bias'])
  proj = x_t @ kernel + bias
  gates = x_t @ _t(params['gate_proj']['kernel']) + _t(params['gate_proj']['bias'])
  batch, steps = proj.shape[:2]
  q, k, v, o = (
    proj[..., g * HIDDEN : (g + 1) * HIDDEN].reshape(batch, steps, HEADS, -1).transpose(1, 2) for g in range(4)
  )
  i_pre, f_pre = (gates[..., g * HEADS : (g + 1) * HEADS].transpose(1, 2)[..., None] for g in range(2))
  return kernel, q, k, v, torch.sigmoid(o).transpose(1, 2).reshape(batch, steps, HIDDEN), i_pre, f_pre


def _mlstm_setup(seed=0, **kwargs):
  model = dr.MLSTMCell(features=HIDDEN, num_heads=HEADS, **kwargs)
  x = jax.random.normal(jax.random.key(seed + 1), (BATCH, TIME, IN))
  params = _params(model, x, seed)
  c, n, m = model.initialize_carry(jax.random.key(0), x[:, 0].shape)
  keys = jax.random.split(jax.random.key(seed + 3), 3)
  carry = (
    0.5 * jax.random.normal(keys[0], c.shape),
    0.5 * jax.random.normal(keys[1], n.shape),
    jax.random.normal(keys[2], m.shape),
  )
  return model, params, x, carry


def test_mlstm_step_equals_xlstm_recurrent_step_stabilized_simple():
  model, params, x, carry = _mlstm_setup()
  weights = _loss_weights()

  def loss(params, x):
    final, ys = _scan(model, params, carry, x)
    return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(c)) for c in final), (final, ys)

  (_, (final, ys)), (grads, grad_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)

  x_t = _t(x, grad=True)
  kernel, q, k, v, o, i_pre, f_pre = _mlstm_inputs(params, x_t)
  c_state, n_state, m_state = _t(carry[0]), _t(carry[1])[..., None], _t(carry[2])[..., None, None]
  outputs = []
  for t in range(TIME):
    step = slice(t, t + 1)
    h, (c_state, n_state, m_state) = backends.recurrent_step_stabilized_simple(
      c_state,
      n_state,
      m_state,
      q[:, :, step].clone(),
      k[:, :, step].clone(),
      v[:, :, step].clone(),
      i_pre[:, :, step],
      f_pre[:, :, step],
    )
    outputs.append(h.reshape(BATCH, HIDDEN))  # [B, NH, 1, d] -> [B, H] head by head
  ys_t = o * torch.stack(outputs, dim=1)
  final_t = (c_state, n_state[..., 0], m_state[..., 0, 0])
  (torch.sum(ys_t * _t(weights)) + sum(torch.sum(torch.sin(c)) for c in final_t)).backward()

  np.testing.assert_allclose(ys, ys_t.detach().numpy(), **TOL, err_msg='outputs')
  for ours, theirs, name in zip(final, final_t, ('C', 'n', 'm')):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), **TOL, err_msg=f'final {name}')
  np.testing.assert_allclose(grad_x, x_t.grad.numpy(), **TOL, err_msg='input gradient')
  np.testing.assert_allclose(grads['input_proj']['kernel'], kernel.grad.numpy(), **TOL, err_msg='W gradient')


def _parallel(model, params, carry, x):
  def run(module, carry, x):
    return module.parallel_sequence(carry, module.project_inputs(x), None)

  return model.apply({'params': params}, carry, x, method=run)


def test_mlstm_parallel_form_equals_xlstm_parallel_stabilized_simple():
  """From the zero state (the only start xlstm's parallel form has). eps=0 on both sides: xlstm's
  stabilizer there leaves out the (empty) initial state, which changes only where eps is added."""
  model, params, x, _ = _mlstm_setup(seed=1, eps=0.0, chunk_size=None)
  carry = model.initialize_carry(jax.random.key(0), x[:, 0].shape)
  weights = _loss_weights()

  def loss(params, x):
    _, ys = _parallel(model, params, carry, x)
    return jnp.sum(ys * weights), ys

  (_, ys), (grads, grad_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
  x_t = _t(x, grad=True)
  kernel, q, k, v, o, i_pre, f_pre = _mlstm_inputs(params, x_t)
  h = backends.parallel_stabilized_simple(q, k, v, i_pre, f_pre, eps=0.0)  # [B, NH, S, d]
  ys_t = o * h.transpose(1, 2).reshape(BATCH, TIME, HIDDEN)
  torch.sum(ys_t * _t(weights)).backward()
  np.testing.assert_allclose(ys, ys_t.detach().numpy(), **TOL, err_msg='outputs')
  np.testing.assert_allclose(grad_x, x_t.grad.numpy(), **TOL, err_msg='input gradient')
  np.testing.assert_allclose(grads['input_proj']['kernel'], kernel.grad.numpy(), **TOL, err_msg='W gradient')


def test_mlstm_chunked_parallel_form_equals_xlstm_chunkwise_simple_from_a_nonzero_carry():
  """xlstm's chunkwise form scales q (not k) by 1/sqrt(d), so its C and n are sqrt(d) times ours."""
  model, params, x, carry = _mlstm_setup(seed=2, chunk_size=3)
  final, ys = _parallel(model, params, carry, x)
  scale = math.sqrt(HIDDEN // HEADS)
  with torch.no_grad():
    _, q, k, v, o, i_pre, f_pre = _mlstm_inputs(params, _t(x))
    h, (c_t, n_t, m_t) = backends.chunkwise_simple(
      q,
      k,
      v,
      i_pre[..., 0],
      f_pre[..., 0],
      initial_C=scale * _t(carry[0]),
      initial_n=scale * _t(carry[1]),
      initial_m=_t(carry[2]),
      chunk_size=3,
      return_last_state=True,
    )
  ys_t = o * h.transpose(1, 2).reshape(BATCH, TIME, HIDDEN)
  np.testing.assert_allclose(ys, ys_t.numpy(), **TOL, err_msg='outputs')
  np.testing.assert_allclose(final[0], c_t.numpy() / scale, **TOL, err_msg='final C')
  np.testing.assert_allclose(final[1], n_t.numpy() / scale, **TOL, err_msg='final n')
  np.testing.assert_allclose(final[2], m_t.numpy().reshape(BATCH, HEADS), **TOL, err_msg='final m')
