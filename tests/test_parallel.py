"""Data-parallel training: a run on 4 (simulated) CPU devices follows the single-device trajectory; seeds
in one program: looped = vmapped, and vmapped seeds never hang XLA:CPU."""

import json
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeprnn_jax.training import build, parallel, train
from deeprnn_jax.training.steps import init_state
from runner_helpers import tiny_config

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax
    from deeprnn_jax.training import train
    from runner_helpers import records, tiny_config

    # argv: workdir, batch size, number of seeds (trained together, looped inside one program)
    seeds = range(int(sys.argv[3]))
    configs = [tiny_config(**{'train.batch_size': int(sys.argv[2]), 'train.seed': s, 'sweep.seed_program': 'loop'})
               for s in seeds]
    train.train_seeds(configs, [f'{sys.argv[1]}/s{s}' for s in seeds])
    rows = records(f'{sys.argv[1]}/s0', drop=('steps_per_sec', 'time'))
    print(json.dumps({'devices': jax.device_count(), 'records': rows}))
""")


def _train_on(devices: int, workdir, batch_size: int = 8, seeds: int = 1) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), JAX_PLATFORMS='cpu')
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={devices}').strip()
  return subprocess.run(
    [sys.executable, '-c', SCRIPT, str(workdir), str(batch_size), str(seeds)],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def _losses(records):
  return [(r['step'], r[k]) for r in records for k in sorted(r) if 'loss' in k and isinstance(r[k], float)]


def test_four_devices_follow_the_single_device_trajectory(tmp_path):
  # Seed 0 trained alone on 1 device, alone on 4, and with seed 1 looped in one program on 4.
  runs = {}
  for devices, seeds in ((1, 1), (4, 1), (4, 2)):
    done = _train_on(devices, tmp_path / f'd{devices}s{seeds}', seeds=seeds)
    assert done.returncode == 0, done.stderr[-2000:]
    runs[devices, seeds] = json.loads(done.stdout.strip().splitlines()[-1])
  assert [runs[k]['devices'] for k in runs] == [1, 4, 4]
  one = _losses(runs[1, 1]['records'])
  assert len(one) >= 6
  for key in ((4, 1), (4, 2)):
    other = _losses(runs[key]['records'])
    assert [s for s, _ in one] == [s for s, _ in other]
    for (step, a), (_, b) in zip(one, other):
      assert b == pytest.approx(a, rel=1e-4, abs=1e-6), f'{key}: step {step}'


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path):
  done = _train_on(4, tmp_path / 'odd', batch_size=6)
  assert done.returncode != 0
  assert "train.batch_size': 6 does not split over 4 devices; use a multiple of 4" in done.stderr


def test_one_device_needs_no_mesh():
  assert parallel.data_mesh(jax.devices()[:1]) is None


def test_looped_seeds_compute_what_vmapped_seeds_do():
  def fn(w, shared, scale):
    return {'y': jnp.tanh(shared @ w) * scale, 'norm': jnp.sum(w * w)}

  w = jax.random.normal(jax.random.key(0), (3, 4, 2))  # 3 seeds
  shared = jax.random.normal(jax.random.key(1), (5, 4))
  scale = jnp.arange(3.0)
  vmapped = jax.jit(parallel.over_seeds(fn, (0, None, 0), 'vmap'))(w, shared, scale)
  looped = jax.jit(parallel.over_seeds(fn, (0, None, 0), 'loop'))(w, shared, scale)
  # Two different programs (batched vs one seed at a time): float32 differs in the last bits, by
  # CPU (1.4e-6 relative on an AMD EPYC), so the bound is 1e-5, not bit-identity.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), vmapped, looped)
  assert looped['y'].shape == (3, 5, 2)
  assert parallel.resolve_seed_program('auto') == ('loop' if jax.default_backend() == 'cpu' else 'vmap')
  assert parallel.resolve_seed_program('vmap') == 'vmap'
  assert parallel.resolve_seed_program('separate') == parallel.resolve_seed_program('auto')
  assert {parallel.resolve_seed_program(p, 1) for p in ('auto', 'vmap', 'loop', 'separate')} == {'single'}


def test_a_lone_seed_program_computes_what_the_vmapped_one_does_without_a_seed_axis_inside():
  """``'single'`` (one seed) against ``vmap`` over an axis of size 1: the same results and shapes, and
  no dot of the lowered program carries the seed axis as a batch dimension (which XLA:CPU copied
  around: the word LM's runner step ran at 0.65x its bare step)."""

  def fn(w, shared):
    return {'y': jnp.tanh(shared @ w), 'norm': jnp.sum(w * w)}

  w = jax.random.normal(jax.random.key(0), (1, 4, 2))
  shared = jax.random.normal(jax.random.key(1), (5, 4))
  single = jax.jit(parallel.over_seeds(fn, (0, None), 'single'))
  vmapped = jax.jit(parallel.over_seeds(fn, (0, None), 'vmap'))
  # Two different programs: float32 may differ in the last bits by CPU, as in the test above.
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  jax.tree.map(close, single(w, shared), vmapped(w, shared))
  assert single(w, shared)['y'].shape == (1, 5, 2) and single(w, shared)['norm'].shape == (1,)
  dots = lambda f, *args: re.findall(r'dot_general .*: (\(.*)', f.lower(*args).as_text())
  plain = dots(jax.jit(fn), w[0], shared)  # the one seed's function itself
  assert plain and dots(single, w, shared) == plain
  assert dots(vmapped, w, shared) != plain  # what the check above tells apart


# ----------------------------------------------------------------------------------------------
# Vmapped seeds must not hang XLA:CPU (issue 23; docs/guides/xla_cpu_vmap.md).

HANG_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp
    from deeprnn_jax.training import build, train
    from runner_helpers import tiny_config

    # The initial states of 8 vmapped seeds of an LSTM of width 32: 4 orthogonal [32, 32] gate blocks per
    # layer, so 4 x depth independent QRs of [8, 32, 32]. With the init vmapped, on 2 cores, depth 2 (the
    # quickstart's lstm-d2) hung after 0 to 137 calls (once not in 200), depth 3 at the first (4 runs of 4).
    config = tiny_config(**{'model.cell': 'lstm', 'model.depth': 3, 'model.width': 32, 'sweep.seed_program': 'vmap'})
    task = build.task_from_config(config)
    programs = train.Programs(config, task, 'vmap')
    for r in range(20):
      jax.block_until_ready(programs.init(jnp.arange(8, dtype=jnp.uint32) + 8 * r, task.train_data))
    print('done')
""")


@pytest.mark.skipif(
  len(os.sched_getaffinity(0)) < 2, reason='one core: XLA:CPU runs one intra-op thread, which cannot deadlock so'
)
def test_the_initial_states_of_vmapped_seeds_do_not_hang():
  # A guard against a hang, not a speed threshold: the case took seconds; it hung forever before.
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), JAX_PLATFORMS='cpu')
  try:
    done = subprocess.run([sys.executable, '-c', HANG_SCRIPT], env=env, capture_output=True, text=True, timeout=240)
  except subprocess.TimeoutExpired:
    pytest.fail('the vmapped initial states of 8 LSTM seeds hung XLA:CPU (batched QRs deadlocked its thread pool)')
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip().endswith('done')


def test_the_initial_states_loop_over_seeds_so_no_lapack_call_is_batched():
  """On any machine: the init program's LAPACK calls (the orthogonal initializer's QR) take one
  matrix each, the form that cannot deadlock, while the steps' program stays vmapped."""
  config = tiny_config(**{'model.cell': 'lstm', 'model.width': 8})
  task = build.task_from_config(config)
  programs = train.Programs(config, task, 'vmap')
  assert programs.seed_program == 'vmap'
  text = programs.init.lower(jnp.arange(3, dtype=jnp.uint32), task.train_data).as_text()
  batch_dims = re.findall(r'@lapack_\w+\(.*?num_batch_dims = "(\d+)"', text)
  assert len(batch_dims) >= 2, 'no QR in the init program: the test would check nothing'
  assert set(batch_dims) == {'0'}
  # The same function vmapped batches them: what the check above tells apart.
  vmapped = jax.jit(parallel.over_seeds(lambda seed: init_state(programs.model, programs.tx, task, seed), (0,), 'vmap'))
  assert set(re.findall(r'@lapack_\w+\(.*?num_batch_dims = "(\d+)"', vmapped.lower(jnp.arange(3)).as_text())) == {'1'}
