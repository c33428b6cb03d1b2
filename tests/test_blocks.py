"""The modern block (pre-norm residual cell + pre-norm residual gated MLP) against NumPy, on every
execution path, padded and streamed, and its refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr

BATCH, TIME, IN = 3, 5, 3


def gelu(x):  # tanh approximation, jax.nn.gelu's default
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def rms_norm(x, scale, eps=1e-6):
  return x / np.sqrt(np.mean(x**2, axis=-1, keepdims=True) + eps) * scale


def np_modern_rnn(params, x):
  """A modern-block stack of Elman cells, written out from the block's equations."""
  s, layers = x, sorted(k for k in params if k.startswith('layer_'))
  for name in layers:
    p = params[name]
    if 'residual_proj' in p:
      s = s @ p['residual_proj']['kernel']
    u = rms_norm(s, p['mixer_norm']['scale'])
    cell = p['cell']
    h = np.zeros((s.shape[0], cell['recurrent']['kernel'].shape[0]))
    ys = []
    for t in range(s.shape[1]):
      h = np.tanh(u[:, t] @ cell['input_proj']['kernel'] + cell['input_proj']['bias'] + h @ cell['recurrent']['kernel'])
      ys.append(h)
    s = s + np.stack(ys, axis=1)
    if 'mlp' not in p:
      continue
    m = p['mlp']
    gate, up = np.split(rms_norm(s, p['mlp_norm']['scale']) @ m['gate_up']['kernel'] + m['gate_up']['bias'], 2, -1)
    s = s + (gelu(gate) * up) @ m['down']['kernel'] + m['down']['bias']
  return rms_norm(s, params['final_norm']['scale'])


def _perturbed(params):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(7), len(leaves))
  return jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys)])


@pytest.mark.parametrize('mlp_expansion', [1.5, 0.0])
def test_modern_block_matches_numpy_equations(mlp_expansion):
  model = dr.DeepRNN(cell='rnn', features=(4, 6), block='modern', mlp_expansion=mlp_expansion)
  x = jax.random.normal(jax.random.key(0), (BATCH, TIME, IN))
  params = _perturbed(model.init(jax.random.key(1), x)['params'])
  if mlp_expansion:
    assert params['layer_0']['mlp']['gate_up']['kernel'].shape == (4, 2 * 6)  # M = round(1.5 * 4)
  else:  # no MLP half (Mamba's and xLSTM's residual blocks)
    assert 'mlp' not in params['layer_0'] and 'mlp_norm' not in params['layer_0']
  assert 'residual_proj' in params['layer_1'] and 'final_norm' in params
  _, y = model.apply({'params': params}, x)
  want = np_modern_rnn(jax.tree.map(lambda a: np.asarray(a, np.float64), params), np.asarray(x, np.float64))
  np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize('cell,bidirectional', [('lstm', False), ('mingru', False), ('gru', True)])
def test_modern_block_paths_padding_and_streaming_agree(cell, bidirectional):
  x = jax.random.normal(jax.random.key(2), (BATCH, TIME, IN))
  lengths = jnp.array([5, 2, 4])
  make = lambda execution: dr.DeepRNN(
    cell=cell, features=4, num_layers=2, block='modern', bidirectional=bidirectional, execution=execution
  )
  params = make('time').init(jax.random.key(3), x, lengths)
  executions = ['time', 'layer'] + (['parallel'] if dr.cells.has_parallel_form(cell) else [])
  reference_final, reference = make('time').apply(params, x, lengths)
  for execution in executions[1:]:
    final, y = make(execution).apply(params, x, lengths)
    np.testing.assert_allclose(y, reference, rtol=1e-5, atol=1e-5, err_msg=execution)
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(reference_final)):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=execution)
  # Each sequence alone equals its row of the padded batch, and padding is zero.
  for b in range(BATCH):
    n = int(lengths[b])
    _, alone = make('time').apply(params, x[b : b + 1, :n])
    np.testing.assert_allclose(reference[b, :n], alone[0], rtol=1e-5, atol=1e-5)
    assert not np.any(np.asarray(reference[b, n:]))
  if not bidirectional:  # streaming: step by step from the initial carries
    model = make('time')
    full = model.apply(params, x)[1]
    carries = model.apply(params, BATCH, method='initialize_carries')
    for t in range(TIME):
      carries, y_t = model.apply(params, carries, x[:, t], method='step')
      np.testing.assert_allclose(y_t, full[:, t], rtol=1e-5, atol=1e-5)


def test_modern_block_dropout_uses_both_halves_of_the_mask():
  model = dr.DeepRNN(cell='gru', features=4, num_layers=2, block='modern', dropout_rate=0.5)
  x = jax.random.normal(jax.random.key(4), (BATCH, TIME, IN))
  params = model.init(jax.random.key(5), x)
  a = model.apply(params, x, deterministic=False, rngs={'dropout': jax.random.key(6)})[1]
  b = model.apply(params, x, deterministic=False, rngs={'dropout': jax.random.key(7)})[1]
  det = model.apply(params, x)[1]
  assert not np.allclose(a, b) and not np.allclose(a, det)
  # The same key gives the same masks on every execution path.
  c = model.clone(execution='layer').apply(params, x, deterministic=False, rngs={'dropout': jax.random.key(6)})[1]
  np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  'kwargs,message',
  [
    (dict(block='modern', connection='residual'), r"connection='residual' does not apply to block='modern' \(residual"),
    (dict(block='modern', layer_norm=True), r"layer_norm=True does not apply to block='modern' \(residual"),
    (dict(block='transformer'), "unknown block 'transformer'"),
    (dict(block='modern', mlp_expansion=-1.0), 'mlp_expansion must be positive, or 0'),
  ],
)
def test_modern_block_refuses_what_does_not_apply(kwargs, message):
  with pytest.raises(ValueError, match=message):
    dr.DeepRNN(cell='lstm', features=4, **kwargs)


def test_the_block_is_a_config_key_and_its_conflicts_fail_in_one_line():
  from deeprnn_jax.training import config as config_lib

  c = config_lib.default_config()
  c.model.block = 'modern'
  config_lib.validate(c)
  c.model.connection = 'skip'
  message = "config key 'model.connection': connection='skip' does not apply to block"
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c)
