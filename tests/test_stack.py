"""DeepRNN and StackedCell: execution paths agree, padding never leaks, streaming equals the whole
sequence, gradients stay finite, dropout does what it says."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import pytest

import deeprnn_jax as dr

BATCH, TIME, IN, HIDDEN = 3, 7, 5, 4
LENGTHS = jnp.array([7, 4, 1])


def inputs(seed=0, batch=BATCH, time=TIME, features=IN):
  return jax.random.normal(jax.random.key(seed), (batch, time, features))


def assert_trees_close(got, want, tol=1e-5, msg=''):
  got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
  assert len(got_leaves) == len(want_leaves), msg
  for g, w in zip(got_leaves, want_leaves):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=tol, atol=tol, err_msg=msg)


def apply(model, params, x, lengths=None, **kwargs):
  return jax.jit(lambda p, x, l: model.apply(p, x, l, **kwargs))(params, x, lengths)


# The bidirectional wrapper is the same code around every cell (stack/paths.run_block): it is run on
# each kind of carry and path (a dense and a linear recurrence, a selective SSM with its conv buffer, a
# matrix memory, a key-value cache) rather than on every cell.
AGREE_CASES = [(cell, False) for cell in sorted(dr.CELLS)] + [
  (cell, True) for cell in ('gru', 'mingru', 'mamba', 'mlstm', 'gated_deltanet', 'attention')
]


@pytest.mark.parametrize(
  'cell, bidirectional', AGREE_CASES, ids=[f'{c}-{"bi" if b else "uni"}' for c, b in AGREE_CASES]
)
def test_time_layer_parallel_agree(cell, bidirectional):
  x = inputs()
  executions = ('time', 'layer') + (('parallel',) if dr.cells.has_parallel_form(cell) else ())
  models = {
    e: dr.DeepRNN(cell=cell, features=HIDDEN, num_layers=2, bidirectional=bidirectional, execution=e)
    for e in executions
  }
  params = models['time'].init(jax.random.key(0), x)

  @jax.jit  # every path, unpadded and padded, in one program
  def run(params, x, lengths):
    return {
      (e, padded): m.apply(params, x, lengths if padded else None) for e, m in models.items() for padded in (0, 1)
    }

  runs = run(params, x, LENGTHS)
  for (execution, padded), got in runs.items():
    assert_trees_close(got, runs['time', padded], msg=f'{execution}, padded={padded}')


def _alone_vs_padded(model, params, x, lengths, tol=1e-5, **kwargs):
  finals, outputs = apply(model, params, x, lengths, **kwargs)
  for b, n in enumerate(np.asarray(lengths)):
    alone_finals, alone_outputs = apply(model, params, x[b : b + 1, :n], None, **kwargs)
    np.testing.assert_allclose(outputs[b, :n], alone_outputs[0], rtol=tol, atol=tol, err_msg=f'row {b}')
    np.testing.assert_array_equal(outputs[b, n:], 0.0)
    assert_trees_close(
      jax.tree.map(lambda c, b=b: c[b], finals), jax.tree.map(lambda c: c[0], alone_finals), tol, f'carry {b}'
    )


PADDING_CASES = {
  'lstm-stacked': dict(cell='lstm', num_layers=3),
  'gru-bidirectional-concat': dict(cell='gru', num_layers=2, bidirectional=True),
  'mgu-bidirectional-sum-time': dict(cell='mgu', num_layers=2, bidirectional=True, merge='sum', execution='time'),
  'rnn-skip-time': dict(cell='rnn', num_layers=3, connection='skip', execution='time'),
  'ugrnn-skip-bidirectional': dict(cell='ugrnn', num_layers=2, connection='skip', bidirectional=True),
  'indrnn-residual-widths': dict(cell='indrnn', features=(4, 6, 6), connection='residual', layer_norm=True),
  'lstm-residual-time-learned': dict(
    cell='lstm', num_layers=3, connection='residual', execution='time', initial_carry='learned'
  ),
  'mingru-parallel-bidirectional': dict(cell='mingru', num_layers=2, execution='parallel', bidirectional=True),
  'lru-parallel-residual': dict(cell='lru', num_layers=2, execution='parallel', connection='residual'),
  'flax-optimized-lstm': dict(cell=nn.OptimizedLSTMCell, num_layers=2),
}


@pytest.mark.parametrize('case', sorted(PADDING_CASES))
def test_padded_batch_equals_each_sequence_alone(case):
  kwargs = dict(features=HIDDEN) | PADDING_CASES[case]
  model = dr.DeepRNN(**kwargs)
  x = inputs(1)
  params = model.init(jax.random.key(0), x, LENGTHS)
  if kwargs.get('initial_carry') == 'learned':  # a nonzero learned start, so it is really used
    params = jax.tree.map(lambda p: p + 0.5, params)
  _alone_vs_padded(model, params, x, LENGTHS)


@pytest.mark.parametrize('cell', sorted(dr.CELLS))
def test_every_cell_streams_and_pads_as_each_sequence_alone(cell):
  """The masking contract for every registered cell, on its fastest path (the parallel form where it
  has one): a padded batch equals each sequence alone (final carries at each one's last valid step),
  and ``DeepRNN.step`` streaming from the initial carries equals the whole run."""
  x = inputs(6)
  execution = 'parallel' if dr.cells.has_parallel_form(cell) else 'layer'
  model = dr.DeepRNN(cell=cell, features=HIDDEN, num_layers=2, execution=execution)
  params = model.init(jax.random.key(0), x, LENGTHS)
  # Chunkwise forms (the delta rule's triangular solves) round differently at different lengths.
  tol = 5e-5 if execution == 'parallel' else 1e-5
  _alone_vs_padded(model, params, x, LENGTHS, tol)
  finals, outputs = apply(model, params, x, LENGTHS)
  carries = model.apply(params, BATCH, method='initialize_carries')
  step = jax.jit(lambda c, x_t, v: model.apply(params, c, x_t, v, method='step'))
  for t in range(TIME):
    carries, y = step(carries, x[:, t], t < LENGTHS)
    np.testing.assert_allclose(y, outputs[:, t], rtol=tol, atol=tol, err_msg=f'step {t}')
  assert_trees_close(carries, finals, tol)


@pytest.mark.parametrize('flax_cell', [nn.LSTMCell, nn.OptimizedLSTMCell, nn.GRUCell, nn.SimpleCell, nn.MGUCell])
def test_flax_cells_work_inside_the_stack(flax_cell):
  x = inputs(2)
  time_model = dr.DeepRNN(cell=flax_cell, features=HIDDEN, num_layers=2, execution='time')
  layer_model = time_model.clone(execution='layer')
  params = time_model.init(jax.random.key(0), x)
  assert_trees_close(apply(layer_model, params, x, LENGTHS), apply(time_model, params, x, LENGTHS))
  _, outputs = apply(time_model, params, x, LENGTHS)
  np.testing.assert_array_equal(outputs[2, 1:], 0.0)


def test_stacked_cell_steps_equal_the_full_sequence_run():
  x = inputs(3)
  model = dr.DeepRNN(cell='lstm', features=(4, 6, 3))
  params = model.init(jax.random.key(0), x)['params']
  finals, outputs = model.apply({'params': params}, x)

  stack = dr.StackedCell(cells=(dr.LSTMCell(4), dr.LSTMCell(6), dr.LSTMCell(3)))
  stack_params = {f'layer_{l}': params[f'layer_{l}']['cell'] for l in range(3)}
  carry = stack.initialize_carry(jax.random.key(0), x[:, 0].shape)
  step = jax.jit(lambda c, x_t: stack.apply({'params': stack_params}, c, x_t))
  for t in range(TIME):
    carry, y = step(carry, x[:, t])
    np.testing.assert_allclose(y, outputs[:, t], rtol=1e-5, atol=1e-5)
  assert_trees_close(carry, finals)

  # The same StackedCell under flax.linen.RNN.
  rnn_finals, rnn_outputs = nn.RNN(stack, return_carry=True).apply({'params': {'cell': stack_params}}, x)
  np.testing.assert_allclose(rnn_outputs, outputs, rtol=1e-5, atol=1e-5)
  assert_trees_close(rnn_finals, finals)


def test_streaming_step_equals_the_full_sequence_run():
  """DeepRNN.step streams any unidirectional configuration (here residual + layer norm + skip)."""
  x = inputs(4)
  for options in (
    dict(connection='residual', layer_norm=True, features=(4, 6, 6)),
    dict(connection='skip', num_layers=3),
  ):
    model = dr.DeepRNN(cell='gru', **(dict(features=HIDDEN) | options))
    params = model.init(jax.random.key(0), x, LENGTHS)
    finals, outputs = apply(model, params, x, LENGTHS)
    carries = model.apply(params, BATCH, method='initialize_carries')
    step = jax.jit(lambda c, x_t, v: model.apply(params, c, x_t, v, method='step'))  # noqa: B023 (used in this iteration)
    for t in range(TIME):
      carries, y = step(carries, x[:, t], t < LENGTHS)
      np.testing.assert_allclose(y, outputs[:, t], rtol=1e-5, atol=1e-5)
    assert_trees_close(carries, finals)


def test_remat_and_unroll_change_nothing():
  x = inputs(5)
  base = dr.DeepRNN(cell='lstm', features=HIDDEN, num_layers=2)
  params = base.init(jax.random.key(0), x)

  def loss(model, params):
    return jnp.sum(model.apply(params, x, LENGTHS)[1] ** 2)

  want = jax.value_and_grad(lambda p: loss(base, p))(params)
  for variant in (base.clone(remat=True), base.clone(unroll=3), base.clone(execution='time', remat=True, unroll=2)):
    assert_trees_close(jax.jit(jax.value_and_grad(lambda p, v=variant: loss(v, p)))(params), want)


@pytest.mark.parametrize('cell', sorted(dr.CELLS))
def test_gradients_are_finite_through_4_layers_and_200_steps(cell):
  x = inputs(6, batch=2, time=200, features=3)
  model = dr.DeepRNN(cell=cell, features=8, num_layers=4)
  params = model.init(jax.random.key(0), x)
  grads = jax.jit(jax.grad(lambda p: jnp.mean(model.apply(p, x, jnp.array([200, 150]))[1][:, -1] ** 2)))(params)
  leaves = jax.tree.leaves(grads)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
  # Every parameter, the bottom layer's included, gets a nonzero gradient at the cells' own
  # initialization: one starting at a dead value (e.g. a norm scale at 0, which zeroes the path behind
  # it) would never learn (issue 26, row 5).
  paths = jax.tree_util.tree_flatten_with_path(grads)[0]
  dead = [jax.tree_util.keystr(k) for k, g in paths if not np.any(np.asarray(g))]
  assert not dead, f'{cell}: zero gradient at init for {dead}'


def test_elman_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(7), (2, 5, 3), jnp.float64)
    model = dr.DeepRNN(cell='rnn', features=4, num_layers=2, param_dtype=jnp.float64)
    params = model.init(jax.random.key(0), x)
    flat, unravel = ravel_pytree(params)

    def loss(theta):
      return jnp.sum(jnp.sin(model.apply(unravel(theta), x, jnp.array([5, 3]))[1]))

    grad = jax.grad(loss)(flat)
    eps = 1e-6
    for i in np.random.default_rng(0).choice(flat.size, 12, replace=False):
      e = jnp.zeros_like(flat).at[i].set(eps)
      numeric = (loss(flat + e) - loss(flat - e)) / (2 * eps)
      np.testing.assert_allclose(grad[i], numeric, rtol=1e-6, atol=1e-8)  # float64


def _dropout_run(mode, execution='layer', deterministic=False, seed=0):
  x = inputs(8, time=6)
  model = dr.DeepRNN(cell='rnn', features=32, dropout_rate=0.5, dropout_mode=mode, execution=execution)
  params = model.init(jax.random.key(0), x)
  no_dropout = model.clone(dropout_rate=0.0).apply(params, x)[1]
  out = model.apply(params, x, deterministic=deterministic, rngs={'dropout': jax.random.key(seed)})[1]
  return out, no_dropout


def test_dropout_is_identity_when_deterministic():
  out, no_dropout = _dropout_run('step', deterministic=True)
  np.testing.assert_array_equal(out, no_dropout)


@pytest.mark.parametrize('mode', ['step', 'tied'])
def test_dropout_masks_per_step_or_tied_across_time(mode):
  out, no_dropout = _dropout_run(mode)
  dropped = np.asarray(out == 0.0)
  kept = ~dropped
  np.testing.assert_allclose(np.asarray(out)[kept], 2.0 * np.asarray(no_dropout)[kept], rtol=1e-5, atol=1e-6)
  assert 0.3 < dropped.mean() < 0.7
  same_over_time = np.all(dropped == dropped[:, :1], axis=1).all()
  assert same_over_time == (mode == 'tied')
  # The time-major path applies exactly the same masks (a different program: float32 tolerance).
  np.testing.assert_allclose(_dropout_run(mode, execution='time')[0], out, rtol=1e-5, atol=1e-5)


def test_learned_initial_carry_is_a_parameter_per_layer():
  x = inputs(9)
  model = dr.DeepRNN(cell='lstm', features=HIDDEN, num_layers=2, initial_carry='learned')
  params = model.init(jax.random.key(0), x)
  c, h = params['params']['layer_1']['initial_carry']
  assert c.shape == h.shape == (HIDDEN,)
  zeros_out = dr.DeepRNN(cell='lstm', features=HIDDEN, num_layers=2).apply(
    {'params': {k: {'cell': v['cell']} for k, v in params['params'].items()}}, x
  )
  assert_trees_close(model.apply(params, x), zeros_out)  # learned carries start at zero
  grads = jax.grad(lambda p: jnp.sum(model.apply(p, x)[1]))(params)
  assert float(jnp.abs(grads['params']['layer_0']['initial_carry'][1]).sum()) > 0


def test_residual_projection_only_where_widths_differ():
  model = dr.DeepRNN(cell='gru', features=(4, 4, 6), connection='residual')
  params = model.init(jax.random.key(0), inputs())['params']
  assert 'residual_proj' not in params['layer_0'] and 'residual_proj' not in params['layer_1']
  assert params['layer_2']['residual_proj']['kernel'].shape == (4, 6)


def test_output_widths_of_skip_and_bidirectional():
  x = inputs()
  for kwargs, width in (
    (dict(connection='skip', features=(4, 5)), 9),
    (dict(bidirectional=True), 2 * HIDDEN),
    (dict(bidirectional=True, merge='sum'), HIDDEN),
  ):
    model = dr.DeepRNN(cell='rnn', **(dict(features=HIDDEN) | kwargs))
    assert model.init_with_output(jax.random.key(0), x)[0][1].shape == (BATCH, TIME, width)


def dot_operand_dtypes(jaxpr):
  """The operand dtypes of every ``dot_general`` in ``jaxpr``, inside scans and jits too."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else (param,):
        sub = getattr(sub, 'jaxpr', sub)  # a ClosedJaxpr holds its Jaxpr
        if hasattr(sub, 'eqns'):
          found += dot_operand_dtypes(sub)
  return found


def test_bfloat16_compute_policy():
  x = inputs(10)
  model = dr.DeepRNN(cell='lstm', features=HIDDEN, num_layers=2, dtype=jnp.bfloat16, layer_norm=True)
  params = model.init(jax.random.key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  finals, outputs = apply(model, params, x, LENGTHS)
  assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(finals))
  _, outputs32 = apply(model.clone(dtype=None), params, x, LENGTHS)
  np.testing.assert_allclose(outputs, outputs32, atol=5e-2)
  # dtype is not ignored: every matmul (input and recurrent, both layers) reads bfloat16, and the
  # rounding shows in the outputs (max difference 2e-2 here; float32 paths differ by ~1e-6).
  dots = dot_operand_dtypes(jax.make_jaxpr(lambda p: model.apply(p, x, LENGTHS))(params).jaxpr)
  assert len(dots) >= 4 and all(d == ('bfloat16', 'bfloat16') for d in dots), dots
  assert float(np.max(np.abs(outputs - outputs32))) > 1e-3


@pytest.mark.parametrize(
  'kwargs, message',
  [
    (dict(cell='lsmt'), "unknown cell 'lsmt'; did you mean 'lstm' or 'slstm' or 'mlstm'\\? choose one of"),
    (dict(connection='dense'), "unknown connection 'dense'; choose one of"),
    (dict(execution='parallel', cell='lstm'), "execution='parallel' needs a cell with a parallel form"),
    (dict(features=0), 'features must be positive integers'),
    (dict(features=(4, 4), num_layers=3), 'num_layers=3 but features has 2 entries'),
    (dict(dropout_rate=1.0), r'dropout_rate must be in \[0, 1\)'),
    (dict(dropout_mode='column'), "unknown dropout_mode 'column'"),
    (dict(cell='attention', initial_carry='learned'), "initial_carry='learned' does not apply to 'attention'"),
  ],
)
def test_bad_options_fail_at_construction(kwargs, message):
  with pytest.raises(ValueError, match=message):
    dr.DeepRNN(**kwargs)


def test_auto_execution_resolves_to_the_documented_path_per_backend():
  """What 'auto' stands for on this backend, as the docstring says (on CPU each cell's measured
  ``cpu_execution``; on accelerators the parallel form where there is one, else the hoisted path).
  Which path is fastest is measured by benchmarks/cells_bench.py, not here; every path is tested
  equal to the per-step one elsewhere."""
  on_cpu = jax.default_backend() == 'cpu'
  for name, cell in dr.CELLS.items():
    want = cell.cpu_execution if on_cpu else ('parallel' if cell.parallel_form else 'layer')
    assert dr.DeepRNN(cell=name, features=HIDDEN).resolved_execution == want, name
    assert cell.cpu_execution in ('time', 'layer', 'parallel'), name
    assert cell.cpu_execution != 'parallel' or cell.parallel_form, name
  assert dr.DeepRNN(cell='lstm').resolved_execution == ('time' if on_cpu else 'layer')
  assert dr.DeepRNN(cell='attention').resolved_execution == 'parallel'  # on every backend
  assert dr.DeepRNN(cell='gru', execution='layer').resolved_execution == 'layer'
  assert dr.DeepRNN(cell=nn.OptimizedLSTMCell).resolved_execution == ('time' if on_cpu else 'layer')


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='cpu_execution is read on CPU only')
def test_a_cell_naming_a_path_it_lacks_for_cpu_fails_in_one_line():
  class Odd(dr.cells.LSTMCell):
    cpu_execution = 'parallel'  # the LSTM has no parallel form

  with pytest.raises(ValueError, match=r"Odd.cpu_execution='parallel': use 'time', 'layer'"):
    _ = dr.DeepRNN(cell=Odd).resolved_execution


@pytest.mark.parametrize(
  'x, lengths, message',
  [
    (
      jnp.zeros((4, 7), jnp.int32),
      None,
      r'expects inputs \[batch, time, features\], got shape \(4, 7\): token ids need an embedding first',
    ),
    (jnp.zeros((4, 7)), None, r'got shape \(4, 7\): add the missing axis: x\[\.\.\., None\]'),
    (jnp.zeros((2, 4, 7, 3)), None, r'got shape \(2, 4, 7, 3\): reshape'),
    (inputs().astype(jnp.complex64), None, r'expects real inputs, got complex64: pass the real and imaginary'),
    (inputs(), jnp.array([7, 4]), r'seq_lengths \[batch\] = \(3,\) integers, got shape \(2,\) int32'),
    (inputs(), [7.0, 4.0, 1.0], r'seq_lengths .* got shape \(3,\) float32'),
    (inputs(), LENGTHS[:, None], r'seq_lengths .* got shape \(3, 1\)'),
  ],
  ids=['token-ids', 'no-feature-axis', 'rank-4', 'complex', 'lengths-short', 'lengths-float', 'lengths-2d'],
)
def test_inputs_it_would_misread_fail_in_one_line_naming_the_fix(x, lengths, message):
  # Unchecked (under JAX's default rank promotion), an LSTM initialises from token ids [4, 7] with a
  # kernel whose input axis is the batch, and casts complex inputs to real with only a warning.
  model = dr.DeepRNN(cell='lstm', features=HIDDEN)
  params = model.init(jax.random.key(0), inputs())
  for call in (lambda: model.init(jax.random.key(0), x, lengths), lambda: model.apply(params, x, lengths)):
    with pytest.raises(ValueError, match=message) as e:
      call()
    assert '\n' not in str(e.value)


def test_lengths_may_be_a_list_tuple_or_numpy_array():
  x = inputs(11)
  model = dr.DeepRNN(cell='gru', features=HIDDEN, num_layers=2, bidirectional=True)
  params = model.init(jax.random.key(0), x, LENGTHS)
  want = model.apply(params, x, LENGTHS)
  for lengths in ([7, 4, 1], (7, 4, 1), np.array([7, 4, 1], np.int64)):
    assert_trees_close(model.apply(params, x, lengths), want, tol=0.0, msg=repr(lengths))
