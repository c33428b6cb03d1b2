"""The temporal mixer (``stack.mixer.Mixer``) and the blocks around it.

The short causal convolution against NumPy; its place in each cell (as the cell's authors put it)
against the cell's own pieces composed by hand; every execution path against the per-step reference
on packed and padded rows, with the convolution's buffer in the carry; streaming; the ``short_conv``
options and their refusals; and parameter trees, outputs and a checkpoint written before the blocks
were composed (``tests/data``) that still load and give the same numbers.
"""

import functools
import json
import pathlib
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax.cells.conv import causal_conv_sequence, causal_conv_step
from deeprnn_jax.stack import Mixer
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog

from test_packing import batch, random_params

DATA = pathlib.Path(__file__).parent / 'data'


# -- the convolution ------------------------------------------------------------------------------


def np_conv(buffer, x, kernel, bias, lengths, resets, reset_buffer):
  """Per row, step by step in float64: each step's window is the last k inputs of its segment, read
  from the initial buffer in the first segment and from ``reset_buffer`` after a reset."""
  k = kernel.shape[0]
  u, finals = np.zeros(x.shape), buffer.astype(np.float64).copy()
  for b in range(x.shape[0]):
    history = list(buffer[b])
    for t in range(lengths[b]):
      if resets[b, t]:
        history = list(reset_buffer[b])
      history.append(x[b, t])
      window = np.stack(history[-k:])
      u[b, t] = np.sum(window * kernel, axis=0) + bias
    finals[b] = np.reshape(history[len(history) - (k - 1) :], (k - 1, x.shape[-1]))
  return finals, u


@pytest.mark.parametrize('k', [1, 2, 4])
def test_causal_conv_equals_numpy_with_buffer_padding_and_resets(k):
  rng = np.random.default_rng(0)
  batch_size, time, channels = 3, 9, 5
  x = rng.normal(size=(batch_size, time, channels)).astype(np.float32)
  kernel, bias = rng.normal(size=(k, channels)).astype(np.float32), rng.normal(size=channels).astype(np.float32)
  buffer = rng.normal(size=(batch_size, k - 1, channels)).astype(np.float32)
  reset_buffer = rng.normal(size=(batch_size, k - 1, channels)).astype(np.float32)
  lengths = np.array([9, 6, 2])
  resets = np.zeros((batch_size, time), bool)
  resets[0, [0, 3, 4]] = True  # at step 0, and two segments shorter than the kernel
  resets[1, 5] = True
  resets[2, 4] = True  # on padding: ignored
  valid = np.arange(time)[None] < lengths[:, None]
  want_buffer, want_u = np_conv(buffer, x, kernel, bias, lengths, resets, reset_buffer)
  got_buffer, got_u = causal_conv_sequence(
    jnp.asarray(buffer), jnp.asarray(x), kernel, bias, jnp.asarray(valid), jnp.asarray(resets), reset_buffer
  )
  np.testing.assert_allclose(np.where(valid[..., None], got_u, 0.0), want_u, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got_buffer, want_buffer, rtol=1e-6, atol=1e-6)
  # Without resets, the per-step form is the reference.
  want_buffer, want_u = np_conv(buffer, x, kernel, bias, [time] * batch_size, np.zeros_like(resets), None)
  state = jnp.asarray(buffer)
  for t in range(time):
    state, u_t = causal_conv_step(state, jnp.asarray(x[:, t]), kernel, bias)
    np.testing.assert_allclose(u_t, want_u[:, t], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(state, want_buffer, rtol=1e-6, atol=1e-6)


# -- the convolution's place in each cell ---------------------------------------------------------


def _activation(name):
  return {'identity': lambda u: u, 'silu': lambda u: u / (1.0 + np.exp(-u))}[name]


@pytest.mark.parametrize(
  'cell_cls', [dr.cells.RGLRUCell, dr.cells.GatedDeltaNetCell, dr.cells.MLSTMCell, dr.cells.LSTMCell]
)
def test_the_mixer_is_the_cell_composed_with_the_convolution_and_the_gate(cell_cls):
  """The mixer's output equals the cell's own pieces composed by hand: ``conv_inputs``, a NumPy
  convolution and activation on the leading ``conv_features`` channels, ``from_conv`` and the cell's
  ``recur``, then the GeLU gate branch and output projection written out."""
  features, time = 8, 6
  cell = cell_cls(features=features, **({'num_heads': 2} if cell_cls is not dr.cells.LSTMCell else {}))
  mixer = Mixer(cell, conv_width=3, output_gate=True)
  x = jax.random.normal(jax.random.key(0), (2, time, 5))
  carry = mixer.initialize_carry(jax.random.key(1), x[:, 0].shape)
  params = mixer.init(jax.random.key(2), carry, x[:, 0])
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  p = params['params']

  ys, state = [], carry
  for t in range(time):
    state, y = mixer.apply(params, state, x[:, t])
    ys.append(y)
  got = np.stack(ys, axis=1)

  inner = {'params': p['cell']}
  v = np.asarray(cell.apply(inner, x, method=cell_cls.conv_inputs), np.float64)
  c = cell.conv_features
  bias = np.asarray(p['conv_bias']) if 'conv_bias' in p else 0.0
  assert ('conv_bias' in p) == cell_cls.conv_has_bias
  _, u = np_conv(
    np.zeros((2, 2, c)), v[..., :c], np.asarray(p['conv_kernel']), bias, [time] * 2, np.zeros((2, time), bool), None
  )
  v[..., :c] = _activation(cell_cls.conv_activation)(u)
  xp = cell.apply(inner, jnp.asarray(v, jnp.float32), method=cell_cls.from_conv)
  h, want = cell.initialize_carry(jax.random.key(1), x[:, 0].shape), []
  for t in range(time):
    h, y = cell.apply(inner, h, xp[:, t], method=cell_cls.recur)
    want.append(y)
  gate = np.asarray(x) @ np.asarray(p['gate_proj']['kernel']) + np.asarray(p['gate_proj']['bias'])
  gelu = 0.5 * gate * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (gate + 0.044715 * gate**3)))
  want = (np.stack(want, axis=1) * gelu) @ np.asarray(p['out_proj']['kernel']) + np.asarray(p['out_proj']['bias'])
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


# -- every path, padded, packed, streamed ---------------------------------------------------------

# (cell, short_conv, output_gate): the authors' places, and 'on' for a classic, a linear (hoisted
# readout), a selective-SSM and an attention cell.
MIXER_CASES = [
  ('rglru', 'authors', True),
  ('gated_deltanet', 'authors', False),
  ('mlstm', 'authors', False),
  ('lstm', 'on', True),
  ('mingru', 'on', False),
  ('s6', 'on', False),
  ('attention', 'on', False),
]
CELL_KWARGS = {'attention': dict(max_length=11), 'gated_deltanet': dict(chunk_size=4), 'mlstm': dict(chunk_size=4)}


def _net(cell, short_conv, output_gate, execution):
  return dr.DeepRNN(
    cell=cell,
    features=4,
    num_layers=2,
    block='modern',
    short_conv=short_conv,
    output_gate=output_gate,
    cell_kwargs=CELL_KWARGS.get(cell),
    execution=execution,
  )


@functools.cache
def _run(cell, short_conv, output_gate):
  """The parameters and ``{execution: (finals, outputs)}`` of every path, in one program."""
  executions = ['time', 'layer'] + (['parallel'] if dr.cells.has_parallel_form(cell) else [])
  nets = {e: _net(cell, short_conv, output_gate, e) for e in executions}
  x, lengths, resets, _ = batch()
  params = random_params(nets['time'], x)
  run = jax.jit(lambda p, x: {e: net.apply(p, x, lengths, resets=resets) for e, net in nets.items()})
  return params, run(params, x)


@pytest.mark.parametrize('cell, short_conv, output_gate', MIXER_CASES, ids=[c[0] for c in MIXER_CASES])
def test_every_path_packed_and_streamed_equals_the_per_step_reference(cell, short_conv, output_gate):
  x, lengths, resets, where = batch()
  params, runs = _run(cell, short_conv, output_gate)
  finals, y = runs['time']
  assert 'conv_kernel' in params['params']['layer_0']['cell']
  tol = 1e-4 if cell in ('mlstm', 'gated_deltanet') else 2e-5
  # Packed rows equal their sequences alone, the buffer included (a reset starts a fresh one).
  for row, start, alone, n in where:
    np.testing.assert_allclose(y[row, start : start + n], y[alone, :n], rtol=tol, atol=tol, err_msg=f'row {row}')
  for row, alone in ((0, 4), (1, 6)):
    for leaf in jax.tree.leaves(finals):
      np.testing.assert_allclose(leaf[row], leaf[alone], rtol=tol, atol=tol)
  # The faster paths equal the per-step one.
  for execution in set(runs) - {'time'}:
    other_finals, other_y = runs[execution]
    np.testing.assert_allclose(other_y, y, rtol=tol, atol=tol, err_msg=execution)
    for a, b in zip(jax.tree.leaves(other_finals), jax.tree.leaves(finals)):
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=execution)
  # Streaming the unpacked rows (2..6, right-padded) one step at a time equals the whole run.
  net = _net(cell, short_conv, output_gate, 'time')
  rows = slice(2, 7)
  carries = net.apply(params, 5, method='initialize_carries')
  step = jax.jit(lambda c, x_t, v: net.apply(params, c, x_t, v, method='step'))
  for t in range(x.shape[1]):
    carries, y_t = step(carries, x[rows, t], t < lengths[rows])
    np.testing.assert_allclose(y_t, y[rows, t], rtol=tol, atol=tol, err_msg=f'step {t}')
  for a, b in zip(jax.tree.leaves(carries), jax.tree.leaves(finals)):
    np.testing.assert_allclose(a, b[rows], rtol=tol, atol=tol)


# -- options ----------------------------------------------------------------------------------------


def _tree(**kwargs):
  net = dr.DeepRNN(features=8, **kwargs)
  shapes = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 3, 5)))
  return shapes['params']['layer_0']['cell']


def test_the_modern_block_convolves_where_the_authors_do_and_the_classic_block_keeps_the_cells():
  assert _tree(cell='rglru', block='modern')['conv_kernel'].shape == (4, 8)  # linear_x's width
  assert 'conv_bias' in _tree(cell='rglru', block='modern')
  deltanet = _tree(cell='gated_deltanet', block='modern', cell_kwargs={'num_heads': 2})
  assert deltanet['conv_kernel'].shape == (4, 24) and 'conv_bias' not in deltanet  # q, k, v; no bias (FLA)
  assert _tree(cell='mlstm', block='modern')['conv_kernel'].shape == (4, 16)  # q, k
  assert 'conv_kernel' not in _tree(cell='lstm', block='modern')  # no authors' convolution
  assert 'conv_kernel' not in _tree(cell='rglru', block='classic')
  assert _tree(cell='lstm', block='classic', short_conv='on', conv_width=2)['conv_kernel'].shape == (2, 32)
  assert 'conv_kernel' not in _tree(cell='rglru', block='modern', short_conv='off')


def test_mambas_own_convolution_follows_short_conv_and_conv_width():
  assert _tree(cell='mamba', block='modern')['conv_kernel'].shape == (4, 16)
  assert _tree(cell='mamba', block='classic')['conv_kernel'].shape == (4, 16)
  assert _tree(cell='mamba', block='modern', short_conv='off')['conv_kernel'].shape == (1, 16)
  assert _tree(cell='mamba', block='modern', conv_width=2)['conv_kernel'].shape == (2, 16)
  assert _tree(cell='mamba', block='modern', cell_kwargs={'d_conv': 3})['conv_kernel'].shape == (3, 16)


@pytest.mark.parametrize(
  'kwargs, message',
  [
    (dict(cell='mamba', cell_kwargs={'d_conv': 3}, conv_width=2), 'cell_kwargs d_conv=3 disagrees with'),
    (dict(cell='mamba', short_conv='off', conv_width=2), "conv_width=2 sets no convolution: short_conv='off'"),
    (dict(cell='lstm', conv_width=3), "conv_width=3 sets no convolution: short_conv='cell' gives LSTMCell none"),
    (dict(cell='lstm', short_conv='sometimes'), "unknown short_conv 'sometimes'"),
    (dict(cell=nn.OptimizedLSTMCell, short_conv='on'), "short_conv='on' needs a cell with projected inputs"),
    (dict(cell=nn.GRUCell, output_gate=True), 'output_gate needs one of our cells'),
    (dict(cell='lstm', conv_width=0, short_conv='on'), 'conv_width must be a positive integer'),
  ],
)
def test_short_conv_options_that_cannot_hold_fail_in_one_line(kwargs, message):
  with pytest.raises(dr.stack.OptionError, match=message) as e:
    dr.DeepRNN(features=8, **kwargs)
  assert '\n' not in str(e.value)


def test_the_config_keys_are_checked_before_anything_runs():
  c = config_lib.default_config()
  c.model.short_conv = 'authours'
  with pytest.raises(
    config_lib.ConfigError, match="model.short_conv': unknown value 'authours'; did you mean 'authors'"
  ):
    config_lib.validate(c)
  c.model.short_conv, c.model.conv_width = None, 3
  with pytest.raises(config_lib.ConfigError, match="config key 'model.conv_width': conv_width=3 sets no convolution"):
    config_lib.validate(c)
  c.model.block, c.model.cell = 'modern', 'rglru'
  config_lib.validate(c)


# -- what was written before the blocks -----------------------------------------------------------


def test_parameter_trees_and_outputs_written_before_the_blocks_are_unchanged():
  """46 stacks (every cell in both blocks, bidirectional, residual, skip, learned carries) as the code
  before the blocks built them: the same parameter tree, and the same outputs from the stored
  parameters, with ``short_conv='cell'`` (the classic block's default, the modern block's before)."""
  ref = np.load(DATA / 'stack_round4.npz')
  x, lengths = ref['inputs'], ref['lengths']
  configs, nets, params = json.loads(str(ref['configs'])), [], []
  for i, kwargs in enumerate(configs):
    kwargs['features'] = tuple(kwargs['features']) if isinstance(kwargs['features'], list) else kwargs['features']
    net = dr.DeepRNN(execution='time', short_conv='cell', **kwargs)
    shapes, tree = jax.tree_util.tree_flatten_with_path(jax.eval_shape(net.init, jax.random.key(0), x, lengths))
    names = [f'{i}/params' + jax.tree_util.keystr(path) for path, _ in shapes]
    assert sorted(names) == sorted(k for k in ref.files if k.startswith(f'{i}/params')), kwargs
    nets.append(net)
    params.append(jax.tree_util.tree_unflatten(tree, [ref[name] for name in names]))
  # One program for all 46 (compiling them one by one took 1.7x as long).
  outputs = jax.jit(lambda params: [net.apply(p, x, lengths)[1] for net, p in zip(nets, params)])(params)
  for i, (kwargs, y) in enumerate(zip(configs, outputs)):
    np.testing.assert_allclose(y, ref[f'{i}/outputs'], rtol=1e-4, atol=1e-5, err_msg=str(kwargs))


def test_a_run_written_before_the_blocks_loads_and_reproduces_its_record(tmp_path):
  """A modern-block RG-LRU run trained by the code before the short convolutions: its config.json has
  no ``model.short_conv``, which reads as ``'cell'`` (``runlog.upgraded_config``), so its checkpoint
  restores into the model it was trained as and scores what it recorded."""
  run_dir = shutil.copytree(DATA / 'round4_run_modern_rglru', tmp_path / 'run')
  assert 'short_conv' not in json.loads((run_dir / 'config.json').read_text())['model']
  run = dr.load_run(str(run_dir), checkpoint='last')
  assert run.config.model.short_conv == 'cell'
  (recorded,) = [
    r for r in map(json.loads, (run_dir / 'metrics.jsonl').read_text().splitlines()) if r['split'] == 'val'
  ]
  # Another program than the one that recorded it (the code changed around it): float32 rounding apart.
  assert run.evaluate(['val'])['val']['loss'] == pytest.approx(recorded['loss'], rel=1e-5)


def test_stored_configs_get_the_short_conv_that_rebuilds_their_runs():
  assert runlog.upgraded_config({'model': {'block': 'modern'}})['model']['short_conv'] == 'cell'
  assert runlog.upgraded_config({'model': {'block': 'classic'}})['model']['short_conv'] is None
  assert runlog.upgraded_config({'model': {'block': 'modern', 'short_conv': 'on'}})['model']['short_conv'] == 'on'
