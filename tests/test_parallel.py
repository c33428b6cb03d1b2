"""Data-parallel training: a run on 4 (simulated) CPU devices follows the single-device trajectory."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import pytest

from deeprnn_jax import parallel

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

SCRIPT = textwrap.dedent('''
    import json, sys
    import jax
    from deeprnn_jax import train
    from runner_helpers import records, tiny_config

    config = tiny_config(**{'train.batch_size': int(sys.argv[2])})
    train.train(config, sys.argv[1])
    print(json.dumps({'devices': jax.device_count(), 'records': records(sys.argv[1], drop=('steps_per_sec', 'time'))}))
''')


def _train_on(devices: int, workdir, batch_size: int = 8) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), JAX_PLATFORMS='cpu')
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={devices}').strip()
  return subprocess.run([sys.executable, '-c', SCRIPT, str(workdir), str(batch_size)], env=env,
                        capture_output=True, text=True, timeout=300)


def _losses(records):
  return [(r['step'], r[k]) for r in records for k in sorted(r) if 'loss' in k and isinstance(r[k], float)]


def test_four_devices_follow_the_single_device_trajectory(tmp_path):
  runs = {}
  for devices in (1, 4):
    done = _train_on(devices, tmp_path / f'd{devices}')
    assert done.returncode == 0, done.stderr[-2000:]
    runs[devices] = json.loads(done.stdout.strip().splitlines()[-1])
  assert runs[4]['devices'] == 4 and runs[1]['devices'] == 1
  one, four = _losses(runs[1]['records']), _losses(runs[4]['records'])
  assert len(one) >= 6 and [s for s, _ in one] == [s for s, _ in four]
  for (step, a), (_, b) in zip(one, four):
    assert b == pytest.approx(a, rel=1e-4, abs=1e-6), f'step {step}'


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path):
  done = _train_on(4, tmp_path / 'odd', batch_size=6)
  assert done.returncode != 0
  assert "train.batch_size': 6 does not split over 4 devices; use a multiple of 4" in done.stderr


def test_one_device_needs_no_mesh():
  assert parallel.data_mesh(jax.devices()[:1]) is None
