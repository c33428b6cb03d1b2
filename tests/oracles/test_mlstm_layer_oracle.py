"""``MLSTMLayer`` (``cell='mlstm_layer'``) against xLSTM's ``mLSTMLayer`` (the ``xlstm`` package,
``xlstm/blocks/mlstm/layer.py``, PyTorch) with copied weights.

Compared: outputs of the three execution paths against ``mLSTMLayer.forward`` (zero state, the authors'
parallel backend); outputs and final states (conv buffer, matrix memory) against ``mLSTMLayer.step`` run
token by token, from zero and from nonzero states; our ``method='step'`` streaming against the same;
gradients with respect to the inputs and every parameter (through ``forward``); the initialization's scales against
``mLSTMLayer.reset_parameters``. The layer is small and odd-sized (inner width 20, 4 heads of 5, 5
q/k/v blocks) so that a wrong reshape cannot pass by symmetry.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason="xLSTM's reference code needs the oracles extra: make test-oracles")
pytest.importorskip('xlstm', reason="xLSTM's reference code needs the oracles extra: make test-oracles")
from xlstm.blocks.mlstm.layer import mLSTMLayer, mLSTMLayerConfig  # noqa: E402

import deeprnn_jax as dr  # noqa: E402

BATCH, TIME, EMBED, HEADS, WIDTH, CHUNK = 2, 7, 10, 4, 4, 3
INNER = 20  # 2 * EMBED, a multiple of 4: xlstm's rounding (to 4 here) and ours agree
D = INNER // HEADS
EXECUTIONS = ['time', 'layer', 'parallel']


def _close(got, want, rtol=1e-4, atol=1e-5):
  # Float32 rounding, scaled to the reference's magnitude.
  want = np.asarray(want)
  np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol * max(1.0, float(np.max(np.abs(want)))))


def _np(t):
  return t.detach().numpy()


def _theirs(seed=0):
  """xlstm's layer, its zero-initialized weights (gates, norm) made random so that each one matters."""
  torch.manual_seed(seed)
  config = mLSTMLayerConfig(
    embedding_dim=EMBED,
    num_heads=HEADS,
    conv1d_kernel_size=WIDTH,
    qkv_proj_blocksize=4,
    proj_factor=2.0,
    round_proj_up_to_multiple_of=4,
    context_length=TIME,
  )
  layer = mLSTMLayer(config)
  assert config._inner_embedding_dim == INNER
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    cell = layer.mlstm_cell
    for p in (cell.igate.weight, cell.fgate.weight, cell.outnorm.weight, layer.learnable_skip):
      p.add_(0.3 * torch.randn(p.shape, generator=gen))
  return layer


def _ours_params(layer, grads=False):
  """xlstm's weights (or their gradients: the map is linear) -> our parameter tree."""
  get = (lambda p: _np(p.grad)) if grads else _np
  cell = layer.mlstm_cell
  ours = {
    'proj_up': {'kernel': get(layer.proj_up.weight).T},
    'conv_kernel': get(layer.conv1d.conv.weight)[:, 0, :].T,  # [D, 1, k] -> [k, D]
    'conv_bias': get(layer.conv1d.conv.bias),
    'q_proj': get(layer.q_proj.weight),
    'k_proj': get(layer.k_proj.weight),
    'v_proj': get(layer.v_proj.weight),
    'gate_proj': {
      'kernel': np.concatenate([get(cell.igate.weight), get(cell.fgate.weight)], axis=0).T,
      'bias': np.concatenate([get(cell.igate.bias), get(cell.fgate.bias)]),
    },
    'norm_scale': get(cell.outnorm.weight),
    'skip': get(layer.learnable_skip),
    'proj_down': {'kernel': get(layer.proj_down.weight).T},
  }
  return {'layer_0': {'cell': ours}}


def _ours_module(execution):
  return dr.DeepRNN(
    cell='mlstm_layer',
    features=EMBED,
    block='classic',
    cell_kwargs={'num_heads': HEADS, 'chunk_size': CHUNK},
    execution=execution,
  )


def _states(seed=2):
  """Nonzero states, ours and xlstm's: the conv buffer [B, k-1, D] (xlstm's [B, k, D] has one more,
  oldest, slot that its step never reads) and the memory (C, n, m)."""
  gen = torch.Generator().manual_seed(seed)
  buffer = torch.randn(BATCH, WIDTH - 1, INNER, generator=gen)
  c = 0.5 * torch.randn(BATCH, HEADS, D, D, generator=gen)
  n = 0.5 * torch.randn(BATCH, HEADS, D, generator=gen)
  m = torch.randn(BATCH, HEADS, generator=gen)
  ours = ((jnp.asarray(_np(buffer)), (jnp.asarray(_np(c)), jnp.asarray(_np(n)), jnp.asarray(_np(m)))),)
  garbage = torch.randn(BATCH, 1, INNER, generator=gen)
  theirs = ((torch.cat([garbage, buffer], dim=1),), (c, n[..., None], m[..., None, None]))
  return ours, theirs


def _stepped(layer, x, states=None):
  """``mLSTMLayer.step`` token by token -> outputs [B, T, E], final buffer [B, k-1, D], (C, n, m) ours."""
  conv_state, mlstm_state = (None, None) if states is None else states
  if conv_state is not None:
    conv_state = tuple(s.clone() for s in conv_state)  # its step updates the cache in place
  ys = []
  for t in range(x.shape[1]):
    y, state = layer.step(x[:, t : t + 1], mlstm_state=mlstm_state, conv_state=conv_state)
    mlstm_state, conv_state = state['mlstm_state'], state['conv_state']
    ys.append(y)
  c, n, m = mlstm_state
  return torch.cat(ys, dim=1), conv_state[0][:, 1:], (c, n[..., 0], m[..., 0, 0])


def _inputs():
  return torch.randn(BATCH, TIME, EMBED, generator=torch.Generator().manual_seed(3))


def test_parameter_tree_is_ours():
  x = jnp.zeros((BATCH, TIME, EMBED))
  want = jax.eval_shape(_ours_module('time').init, jax.random.key(0), x)['params']
  got = _ours_params(_theirs())
  assert jax.tree.structure(got) == jax.tree.structure(want)
  assert jax.tree.map(np.shape, got) == jax.tree.map(lambda a: a.shape, want)


@pytest.mark.parametrize('execution', EXECUTIONS)
def test_layer_equals_xlstm_forward_and_step(execution):
  layer, x = _theirs(), _inputs()
  with torch.no_grad():
    want_y = layer(x)
    step_y, want_buffer, want_memory = _stepped(layer, x)
  _close(_np(step_y), _np(want_y))  # xlstm's own two forms agree
  assert float(torch.std(want_y)) > 0.01
  finals, got_y = _ours_module(execution).apply({'params': _ours_params(layer)}, jnp.asarray(_np(x)))
  ((buffer, memory),) = finals
  _close(got_y, _np(want_y))
  _close(buffer, _np(want_buffer))
  for got, want in zip(memory, want_memory, strict=True):
    _close(got, _np(want))


@pytest.mark.parametrize('execution', EXECUTIONS)
def test_layer_from_nonzero_states_equals_xlstm_step(execution):
  layer, x = _theirs(), _inputs()
  ours_states, their_states = _states()
  with torch.no_grad():
    want_y, want_buffer, want_memory = _stepped(layer, x, their_states)
    assert float(torch.max(torch.abs(want_y - layer(x)))) > 1e-3  # the state matters
  finals, got_y = _ours_module(execution).apply(
    {'params': _ours_params(layer)}, jnp.asarray(_np(x)), initial_carries=ours_states
  )
  ((buffer, memory),) = finals
  _close(got_y, _np(want_y))
  _close(buffer, _np(want_buffer))
  for got, want in zip(memory, want_memory, strict=True):
    _close(got, _np(want))


def test_streaming_step_equals_xlstm_step():
  layer, x = _theirs(), _inputs()
  ours_states, their_states = _states()
  with torch.no_grad():
    want_y, want_buffer, want_memory = _stepped(layer, x, their_states)
  model, params = _ours_module('time'), _ours_params(layer)
  step = jax.jit(lambda c, x_t: model.apply({'params': params}, c, x_t, method='step'))
  carries, ys = ours_states, []
  for t in range(TIME):
    carries, y_t = step(carries, jnp.asarray(_np(x[:, t])))
    ys.append(y_t)
  _close(jnp.stack(ys, axis=1), _np(want_y))
  ((buffer, memory),) = carries
  _close(buffer, _np(want_buffer))
  for got, want in zip(memory, want_memory, strict=True):
    _close(got, _np(want))


@pytest.mark.parametrize('execution', ['time', 'parallel'])
def test_gradients_equal_xlstm(execution):
  # Through mLSTMLayer.forward: its step updates the conv cache in place, which autograd refuses.
  layer = _theirs()
  x = _inputs().requires_grad_(True)
  weight = torch.randn(BATCH, TIME, EMBED, generator=torch.Generator().manual_seed(4))
  torch.sum(weight * layer(x)).backward()
  want_dw = _ours_params(layer, grads=True)

  weight = jnp.asarray(_np(weight))

  def ours_loss(params, x):
    return jnp.sum(weight * _ours_module(execution).apply({'params': params}, x)[1])

  params = jax.tree.map(jnp.asarray, _ours_params(layer))
  got_dw, got_dx = jax.grad(ours_loss, argnums=(0, 1))(params, jnp.asarray(_np(x)))
  _close(got_dx, _np(x.grad))
  flat_got = jax.tree_util.tree_flatten_with_path(got_dw)[0]
  for (path, g), t in zip(flat_got, jax.tree.leaves(want_dw), strict=True):
    assert float(np.max(np.abs(t))) > 0, path
    _close(g, t)


def test_initialization_matches_xlstm_reset_parameters():
  """Each parameter's init against xlstm's at a width where samples are large enough: constants exactly,
  random ones by their sample standard deviation (a wrong fan-in is off by a factor, not by 25%)."""
  embed = 64
  config = mLSTMLayerConfig(embedding_dim=embed, num_heads=HEADS, context_length=8, round_proj_up_to_multiple_of=4)
  torch.manual_seed(0)
  theirs = _ours_params(mLSTMLayer(config))['layer_0']['cell']
  model = dr.DeepRNN(cell='mlstm_layer', features=embed, block='classic', cell_kwargs={'num_heads': HEADS})
  ours = model.init(jax.random.key(0), jnp.zeros((1, 2, embed)))['params']['layer_0']['cell']
  for name in ('norm_scale', 'skip'):
    np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)
  np.testing.assert_array_equal(ours['gate_proj']['kernel'], theirs['gate_proj']['kernel'])
  # Forget gate biases linspace(3, 6); input gate biases N(0, 0.1^2), 4 samples.
  np.testing.assert_allclose(ours['gate_proj']['bias'][HEADS:], theirs['gate_proj']['bias'][HEADS:], rtol=1e-6)
  assert np.all(np.abs(ours['gate_proj']['bias'][:HEADS]) < 0.5)
  for name in ('proj_up', 'proj_down'):
    np.testing.assert_allclose(np.std(ours[name]['kernel']), np.std(theirs[name]['kernel']), rtol=0.25, err_msg=name)
  for name in ('conv_kernel', 'conv_bias', 'q_proj', 'k_proj', 'v_proj'):
    np.testing.assert_allclose(np.std(ours[name]), np.std(theirs[name]), rtol=0.25, err_msg=name)
