"""The benchmark suite runs (tiny shapes; no timing is asserted: speed lives in `make bench`), and
its implementations compute the same loss from the same weights, so their speeds compare like work.
PyTorch's side of that check needs torch: tests/oracles/test_torch_bench_oracle.py (make test-oracles)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from benchmarks import bench, impls

TINY = impls.Shape('tiny', batch=2, time=5, inputs=3, hidden=4, layers=2)


def test_every_implementation_trains_one_step():
  benches = {
    'ours': impls.ours(TINY, 'gru'),
    'flax': impls.flax_stack(TINY, 'gru'),
    'seeds': impls.ours(TINY, 'gru', seeds=3),
    'looped': impls.ours(TINY, 'gru', seeds=3, seed_program='loop'),
  }
  rates = bench.race(benches, TINY.tokens, repeats=2, seconds=0.0)
  assert all(r.shape == (2,) and np.all(r > 0) for r in rates.values())
  assert all(b.compile_seconds > 0 for b in benches.values())


def test_train_flops_counts_every_layer():
  # Layer 0: (3 + 4) * 4 gates * 4; layer 1: (4 + 4) * 16; times 2 * tokens, times 3 for backward.
  assert impls.train_flops(TINY, 'lstm') == 3 * 2 * TINY.tokens * (7 * 16 + 8 * 16)


def test_profile_finds_the_ops_of_the_time_loop():
  from benchmarks import profile

  wall, nanos, counts = profile.profile_step(impls.ours(TINY, 'lstm', execution='time'), steps=2)
  assert wall > 0 and sum(nanos.values()) > 0
  # Ops inside the time loop run once per time step (forward and backward loops: >= 5 per step).
  assert max(counts.values()) >= TINY.time


def test_report_replaces_only_its_generated_section(tmp_path):
  path = tmp_path / 'BENCHMARKS.md'
  bench.write_report(str(path), 'first run')
  text = path.read_text()
  assert 'first run' in text and bench.BEGIN in text
  path.write_text('# Analysis\n\n' + text + '\nWhat limits it: measured.\n')
  bench.write_report(str(path), 'second run')
  text = path.read_text()
  assert 'second run' in text and 'first run' not in text
  assert text.startswith('# Analysis') and text.endswith('What limits it: measured.\n')


# Every implementation's loss is the mean square of the top layer's outputs (impls' docstring);
# its models are built here as impls builds them, and our weights are copied into the others.
GATES = {'rnn': ('',), 'lstm': ('i', 'f', 'g', 'o'), 'gru': ('r', 'z', 'n')}
FLAX_NAMES = {'rnn': 'SimpleCell', 'lstm': 'OptimizedLSTMCell', 'gru': 'GRUCell'}


def _ours(cell):
  """Our model as ``impls.ours`` builds it, with every weight (biases too) random and nonzero."""
  x = impls._inputs(TINY)
  model = dr.DeepRNN(cell=cell, features=TINY.hidden, num_layers=TINY.layers)
  params = model.init(jax.random.key(1), x)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  return x, (lambda p, x: jnp.mean(jnp.square(model.apply(p, x)[1]))), params


def _blocks(cell, layer_params):
  """Our fused kernels split per gate: ``{gate: (W_input, b_input, W_recurrent, b_recurrent)}``
  (``b_recurrent`` zero where our cell has none), NumPy, ``x @ W`` layout."""
  p = jax.tree.map(np.asarray, layer_params['cell'])
  H = TINY.hidden
  wi, bi, wh = p['input_proj']['kernel'], p['input_proj']['bias'], p['recurrent']['kernel']
  bh = p['recurrent'].get('bias', np.zeros_like(bi))
  return {g: tuple(a[..., k * H : (k + 1) * H] for a in (wi, bi, wh, bh)) for k, g in enumerate(GATES[cell])}


def _to_flax(cell, params):
  out = {}
  for l in range(TINY.layers):
    b = _blocks(cell, params['params'][f'layer_{l}'])
    if cell == 'rnn':
      wi, bi, wh, _ = b['']
      p = {'i': {'kernel': wi, 'bias': bi}, 'h': {'kernel': wh}}
    elif cell == 'lstm':  # OptimizedLSTMCell: input kernels without bias, recurrent ones with it
      p = {}
      for g, (wi, bi, wh, _) in b.items():
        p['i' + g], p['h' + g] = {'kernel': wi}, {'kernel': wh, 'bias': bi}
    else:  # GRUCell: r and z sum input and recurrent terms, so one bias each; n keeps both
      p = {f'h{g}': {'kernel': wh} for g, (_, _, wh, _) in b.items()}
      p |= {f'i{g}': {'kernel': wi, 'bias': bi + (bh if g != 'n' else 0.0)} for g, (wi, bi, _, bh) in b.items()}
      p['hn']['bias'] = b['n'][3]
    out[f'{FLAX_NAMES[cell]}_{l}'] = p
  return {'params': out}


@pytest.mark.parametrize('cell', ['rnn', 'lstm', 'gru'])
def test_ours_and_plain_flax_compute_the_same_loss_from_the_same_weights(cell):
  x, loss, params = _ours(cell)
  flax_model = impls.FlaxStack(cell, TINY.hidden, TINY.layers)
  flax_params = _to_flax(cell, params)
  # The copy fills exactly the tree plain Flax makes (no parameter left at its initial value).
  want_shapes = jax.tree.map(jnp.shape, flax_model.init(jax.random.key(0), x))
  assert jax.tree.map(jnp.shape, flax_params) == want_shapes
  flax_loss = lambda p, x: jnp.mean(jnp.square(flax_model.apply(p, x)))
  # Two different float32 programs: relative 1e-5 holds on any CPU. The input gradient needs no
  # weight mapping, so it also checks the backward pass.
  ours_value, ours_grad = jax.jit(jax.value_and_grad(loss, argnums=1))(params, x)
  flax_value, flax_grad = jax.jit(jax.value_and_grad(flax_loss, argnums=1))(flax_params, x)
  assert float(ours_value) > 0.01
  np.testing.assert_allclose(ours_value, flax_value, rtol=1e-5)
  np.testing.assert_allclose(ours_grad, flax_grad, rtol=1e-4, atol=1e-6)


def test_the_pytorch_quickstart_draws_the_parentheses_task():
  """benchmarks.quickstart_torch's NumPy generator (what a PyTorch user would write) against the task's
  definition: the targets our task computes from the same tokens, and its token frequencies."""
  from benchmarks import quickstart_torch as qt  # imports torch only inside a run
  from deeprnn_jax.tasks import synthetic

  tokens, targets = qt.parentheses(np.random.default_rng(0), 64, 40)
  # our task's counters, run on the same tokens: the targets of a batch whose tokens are these
  types = np.arange(qt.TYPES)
  counters, want = np.zeros((64, qt.TYPES), int), np.zeros((64, 40), int)
  for t in range(40):
    delta = (tokens[:, t, None] == 1 + types).astype(int) - (tokens[:, t, None] == 1 + qt.TYPES + types)
    counters = np.clip(counters + delta, 0, qt.DEPTH_MAX)
    want[:, t] = counters.sum(-1)
  np.testing.assert_array_equal(targets, want)
  ours = synthetic.parentheses_batch(
    jax.random.key(0), 64, 40, num_types=qt.TYPES, max_depth=qt.DEPTH_MAX, num_noise=qt.NOISE, noise_prob=qt.NOISE_PROB
  )
  assert set(np.unique(tokens)) == set(np.unique(np.asarray(ours['inputs']))) == set(range(1, qt.VOCAB))
  assert int(np.asarray(ours['targets']).max()) < qt.CLASSES and targets.max() < qt.CLASSES
  task = synthetic.parentheses(seq_len=40, num_eval=8)
  assert (task.input_size, task.output_size) == (qt.VOCAB, qt.CLASSES)


def test_the_pytorch_quickstart_runs_the_quickstart_config():
  from benchmarks import quickstart_torch as qt
  from deeprnn_jax.training import config as config_lib
  import os

  c = config_lib.load(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'quickstart.py')
  )
  t = c.train
  assert (c.task.name, c.task.options.seq_len, c.task.options.num_eval) == ('parentheses', qt.SEQ_LEN, qt.NUM_EVAL)
  assert (c.model.width, c.optim.name, c.optim.learning_rate, c.optim.clip_global_norm) == (
    qt.WIDTH,
    'adam',
    qt.LR,
    1.0,
  )
  assert (
    t.num_steps,
    t.batch_size,
    t.log_every_steps,
    t.eval_every_steps,
    t.checkpoint_every_steps,
    t.eval_batch_size,
  ) == (qt.STEPS, qt.BATCH, qt.LOG_EVERY, qt.EVAL_EVERY, qt.CKPT_EVERY, qt.EVAL_BATCH)
  axes = config_lib.flat_axes(c)
  assert [(cell, depth) for cell in axes['model.cell'] for depth in axes['model.depth']] == qt.GRID
  assert tuple(c.sweep.seeds) == qt.SEEDS
