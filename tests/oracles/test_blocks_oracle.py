"""The modern block around RG-LRU against the authors' code, recurrentgemma's ``ResidualBlock`` (JAX) with
its recurrent temporal block (``RecurrentBlock``: ``linear_y``/GeLU gate branch, ``linear_x``, ``Conv1D``
of width 4 with bias, ``RGLRU``, ``linear_out``) and ``MLPBlock``, followed by Griffin's final
``RMSNorm``, with copied weights.

Ours: a one-layer ``DeepRNN(cell='rglru', block='modern', short_conv='authors', output_gate=True)``. Its
layer-0 ``residual_proj`` (a layer-0 block always has one) is set to the identity, and ``final_norm``
is Griffin's final norm (``griffin.py``: a ``layers.RMSNorm`` on the top of the residual stack), which
the reference applies with recurrentgemma's own ``layers.RMSNorm``. recurrentgemma's norms compute
``x * rsqrt(mean(x^2) + 1e-6) * (1 + scale)``; Flax's ``nn.RMSNorm`` ``x * rsqrt(mean(x^2) + 1e-6) *
scale``: ours = 1 + theirs. The MLP's ``ffw_up`` ``w`` ``[2, H, M]`` is our ``gate_up`` kernel
``[w[0], w[1]]``. Noise is added to every parameter (the biases and norm scales start at zero).

Compared: outputs and final states (conv buffer = ``conv1d_state``, ``h`` = ``rg_lru_state``) on the three
execution paths, from a zero state over a whole sequence (their training mode) and from a nonzero state
(their decoding mode, one token per call, the only mode that takes a cache); our ``method='step'``
streaming against their decoding token by token; gradients with respect to the inputs and every
parameter (through the weight copy) on the per-step and parallel paths.

Not comparable: recurrentgemma resets the RG-LRU and masks the convolution's taps at a document's first
token (``segment_pos == 0``); our cell has no positions (``resets`` does the packing), so it is fed
``segment_pos`` from 1. Nor ``lru_width != width`` or the complex RG-LRU (``lru_only_real=False``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip('recurrentgemma', reason="Griffin's reference code needs the oracles extra: make test-oracles")
from recurrentgemma.common import TemporalBlockType  # noqa: E402
from recurrentgemma.jax.layers import Conv1D, RMSNorm  # noqa: E402
from recurrentgemma.jax.modules import RecurrentBlockCache, ResidualBlock  # noqa: E402

import deeprnn_jax as dr  # noqa: E402
from deeprnn_jax.cells.rglru import RGLRUCell  # noqa: E402

BATCH, TIME, HIDDEN, HEADS, MLP, WIDTH = 2, 7, 8, 2, 24, 4
EXECUTIONS = ['time', 'layer', 'parallel']


def _close(got, want, rtol=1e-4, atol=1e-5):
  # Float32 rounding, scaled to the reference's magnitude (gradients reach ~1e2 here).
  want = np.asarray(want)
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.max(np.abs(want)))))


def _theirs_modules():
  block = ResidualBlock(
    width=HIDDEN,
    mlp_expanded_width=MLP,
    num_heads=HEADS,
    attention_window_size=TIME,  # unused by the recurrent block
    temporal_block_type=TemporalBlockType.RECURRENT,
    conv1d_temporal_width=WIDTH,
  )
  return block, RMSNorm(width=HIDDEN)


def _ours_module(execution):
  return dr.DeepRNN(
    cell='rglru',
    features=HIDDEN,
    block='modern',
    short_conv='authors',
    output_gate=True,
    conv_width=WIDTH,
    cell_kwargs={'num_heads': HEADS},
    mlp_expansion=MLP / HIDDEN,
    execution=execution,
  )


def _setup():
  block, norm = _theirs_modules()
  x = jax.random.normal(jax.random.key(0), (BATCH, TIME, HIDDEN))
  segment_pos = jnp.broadcast_to(jnp.arange(1, TIME + 1), (BATCH, TIME))
  with jax.numpy_rank_promotion('allow'):  # recurrentgemma broadcasts [H] against [batch, time, H]
    p = {
      'block': block.init(jax.random.key(1), x, segment_pos)['params'],
      'final_norm': norm.init(jax.random.key(2), x)['params'],
    }
  leaves, tree = jax.tree.flatten(p)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  p = jax.tree.unflatten(tree, [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)])
  return p, x, segment_pos


def _ours_params(p):
  """recurrentgemma's parameter tree -> ours (differentiable, so gradients map back through it)."""
  rb, lru, mlp = p['block']['recurrent_block'], p['block']['recurrent_block']['rg_lru'], p['block']['mlp_block']
  up_w, up_b = mlp['ffw_up']['w'], mlp['ffw_up']['b']
  mixer = {
    'cell': {
      'input_proj': rb['linear_x'],
      'input_gate': lru['input_gate'],
      'a_gate': lru['a_gate'],
      'a_param': lru['a_param'],
    },
    'conv_kernel': rb['conv_1d']['w'],  # [K, H], slot K - 1 the newest input in both codes
    'conv_bias': rb['conv_1d']['b'],
    'gate_proj': rb['linear_y'],
    'out_proj': rb['linear_out'],
  }
  layer = {
    'cell': mixer,
    'residual_proj': {'kernel': jnp.eye(HIDDEN)},
    'mixer_norm': {'scale': 1.0 + p['block']['temporal_pre_norm']['scale']},
    'mlp_norm': {'scale': 1.0 + p['block']['channel_pre_norm']['scale']},
    'mlp': {
      'gate_up': {
        'kernel': jnp.concatenate([up_w[0], up_w[1]], axis=-1),
        'bias': jnp.concatenate([up_b[0].ravel(), up_b[1].ravel()]),
      },
      'down': mlp['ffw_down'],
    },
  }
  return {'layer_0': layer, 'final_norm': {'scale': 1.0 + p['final_norm']['scale']}}


def _theirs(p, x, segment_pos, cache=None):
  """Training mode (``cache=None``) over the whole sequence, else decoding one token per call."""
  block, norm = _theirs_modules()
  with jax.numpy_rank_promotion('allow'):
    if cache is None:
      y, cache = block.apply({'params': p['block']}, x, segment_pos)
    else:
      ys = []
      for t in range(x.shape[1]):
        y_t, cache = block.apply({'params': p['block']}, x[:, t : t + 1], segment_pos[:, t : t + 1], cache)
        ys.append(y_t)
      y = jnp.concatenate(ys, axis=1)
    return norm.apply({'params': p['final_norm']}, y), cache


def _ours(params, x, execution, carries=None):
  model = _ours_module(execution)
  finals, y = model.apply({'params': params}, x, initial_carries=carries)
  ((buffer, h),) = finals
  return y, RecurrentBlockCache(rg_lru_state=h, conv1d_state=buffer)


def _nonzero_state():
  k1, k2 = jax.random.split(jax.random.key(5))
  return RecurrentBlockCache(
    rg_lru_state=0.5 * jax.random.normal(k1, (BATCH, HIDDEN)),
    conv1d_state=jax.random.normal(k2, (BATCH, WIDTH - 1, HIDDEN)),
  )


def _carries(cache):
  return ((cache.conv1d_state, cache.rg_lru_state),)


def test_parameter_tree_is_ours():
  p, x, _ = _setup()
  want = jax.eval_shape(_ours_module('time').init, jax.random.key(0), x)['params']
  got = jax.eval_shape(_ours_params, p)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  assert jax.tree.map(lambda a: a.shape, got) == jax.tree.map(lambda a: a.shape, want)


@pytest.mark.parametrize('execution', EXECUTIONS)
def test_modern_block_equals_residual_block_from_zero_state(execution):
  p, x, segment_pos = _setup()
  want_y, want_cache = _theirs(p, x, segment_pos)
  got_y, got_cache = _ours(_ours_params(p), x, execution)
  assert float(jnp.std(want_y)) > 0.1
  _close(got_y, want_y)
  _close(got_cache.conv1d_state, want_cache.conv1d_state)  # the last K - 1 inputs of the conv, oldest first
  _close(got_cache.rg_lru_state, want_cache.rg_lru_state)


@pytest.mark.parametrize('execution', EXECUTIONS)
def test_modern_block_equals_residual_block_decoding_from_nonzero_state(execution):
  p, x, segment_pos = _setup()
  cache = _nonzero_state()
  want_y, want_cache = _theirs(p, x, segment_pos, cache)
  # The state matters (else this is the zero-state test again).
  assert float(jnp.max(jnp.abs(want_y - _theirs(p, x, segment_pos)[0]))) > 1e-2
  got_y, got_cache = _ours(_ours_params(p), x, execution, _carries(cache))
  _close(got_y, want_y)
  _close(got_cache.conv1d_state, want_cache.conv1d_state)
  _close(got_cache.rg_lru_state, want_cache.rg_lru_state)


def test_streaming_step_equals_recurrentgemma_decoding():
  p, x, segment_pos = _setup()
  cache = _nonzero_state()
  want_y, want_cache = _theirs(p, x, segment_pos, cache)
  model, params = _ours_module('time'), _ours_params(p)
  step = jax.jit(lambda c, x_t: model.apply({'params': params}, c, x_t, method='step'))
  carries, ys = _carries(cache), []
  for t in range(TIME):
    carries, y_t = step(carries, x[:, t])
    ys.append(y_t)
  _close(jnp.stack(ys, axis=1), want_y)
  ((buffer, h),) = carries
  _close(buffer, want_cache.conv1d_state)
  _close(h, want_cache.rg_lru_state)


@pytest.mark.parametrize('execution', ['time', 'parallel'])
def test_gradients_equal_recurrentgemma(execution):
  p, x, segment_pos = _setup()
  w = jax.random.normal(jax.random.key(4), (BATCH, TIME, HIDDEN))

  def loss(fn, p, x):
    y, cache = fn(p, x)
    return jnp.sum(w * y) + jnp.sum(jnp.sin(cache.rg_lru_state)) + jnp.sum(jnp.sin(cache.conv1d_state))

  theirs = lambda p, x: _theirs(p, x, segment_pos)
  ours = lambda p, x: _ours(_ours_params(p), x, execution)
  want = jax.grad(lambda p, x: loss(theirs, p, x), argnums=(0, 1))(p, x)
  got = jax.grad(lambda p, x: loss(ours, p, x), argnums=(0, 1))(p, x)
  _close(got[1], want[1])  # the inputs
  for (path, g), t in zip(jax.tree_util.tree_flatten_with_path(got[0])[0], jax.tree.leaves(want[0]), strict=True):
    assert float(jnp.max(jnp.abs(t))) > 0, path  # every parameter reaches the loss
    _close(g, t)


def test_conv_init_matches_recurrentgemma():
  channels = 512
  theirs = Conv1D(width=channels, temporal_width=WIDTH)
  x = jnp.zeros((1, 2, channels))
  with jax.numpy_rank_promotion('allow'):
    want = theirs.init(jax.random.key(0), x, jnp.ones((1, 2), jnp.int32))['params']
  kernel_init, bias_init = RGLRUCell(features=channels).conv_init(WIDTH)
  got_w = kernel_init(jax.random.key(1), (WIDTH, channels))
  got_b = bias_init(jax.random.key(2), (channels,))
  np.testing.assert_array_equal(got_b, want['b'])  # zeros
  np.testing.assert_allclose(float(jnp.std(got_w)), float(jnp.std(want['w'])), rtol=0.1)
