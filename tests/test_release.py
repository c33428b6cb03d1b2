"""The release installs as a wheel: built offline from this checkout, it holds the library and its license, and
the runner with its configs under ``deeprnn_jax/_runner/`` (never as the runner's generic top-level names), takes
its version from ``deeprnn_jax.__version__``, and in a fresh virtual environment, run from a folder outside the
clone, the README's library example works and the ``deeprnn`` command trains a built-in config."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import sysconfig
import zipfile

import pytest

import deeprnn_jax

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp('dist')
  # No build isolation and no index: the venv's setuptools builds it, nothing is downloaded.
  subprocess.run(
    [
      sys.executable,
      '-m',
      'pip',
      'wheel',
      '--quiet',
      '--no-deps',
      '--no-build-isolation',
      '--no-index',
      '-w',
      out,
      ROOT,
    ],
    check=True,
    cwd=out,
  )
  (path,) = out.glob('deeprnn_jax-*.whl')
  return path


def test_the_wheel_holds_the_library_its_license_and_one_version(wheel):
  names = zipfile.ZipFile(wheel).namelist()
  tops = {n.split('/')[0] for n in names}
  assert tops == {'deeprnn_jax', f'deeprnn_jax-{deeprnn_jax.__version__}.dist-info'}, tops
  assert f'deeprnn_jax-{deeprnn_jax.__version__}.dist-info/licenses/LICENSE' in names
  metadata = zipfile.ZipFile(wheel).read(f'deeprnn_jax-{deeprnn_jax.__version__}.dist-info/METADATA').decode()
  assert re.search(rf'^Version: {re.escape(deeprnn_jax.__version__)}$', metadata, re.M)
  assert 'License-Expression: Apache-2.0' in metadata
  assert 'deeprnn_jax/stack/mixer.py' in names and 'deeprnn_jax/cells/conv.py' in names


def test_the_wheel_holds_every_module_of_the_library_the_runner_and_the_configs(wheel):
  """pyproject.toml lists the packages (the runner's are renamed, which package discovery cannot do): a new
  folder of the library, the runner or the configs left out of that list would be missing from the wheel."""
  names = set(zipfile.ZipFile(wheel).namelist())
  expected = {
    (f'deeprnn_jax/_runner/{p.as_posix()}' if p.parts[0] != 'deeprnn_jax' else p.as_posix())
    for top in ('deeprnn_jax', 'experiments', 'configs')
    for p in (q.relative_to(ROOT) for q in (ROOT / top).rglob('*.py'))
    if '__pycache__' not in p.parts
  }
  assert not expected - names, sorted(expected - names)
  entry_points = zipfile.ZipFile(wheel).read(f'deeprnn_jax-{deeprnn_jax.__version__}.dist-info/entry_points.txt')
  assert 'deeprnn = deeprnn_jax.cli:main' in entry_points.decode()


@pytest.fixture(scope='module')
def venv(wheel, tmp_path_factory) -> pathlib.Path:
  """A fresh venv with the wheel installed. It sees this venv's third-party packages through a ``.pth`` line
  (no network), but not its editable install of the checkout (``.pth`` lines in a ``.pth``-added folder are
  not run), so ``import deeprnn_jax`` can only find the wheel's copy."""
  venv = tmp_path_factory.mktemp('wheel') / 'venv'
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', venv], check=True)
  python = venv / 'bin' / 'python'
  site = subprocess.run(
    [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], capture_output=True, text=True
  )
  (pathlib.Path(site.stdout.strip()) / 'deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
  subprocess.run(
    [sys.executable, '-m', 'pip', '--python', python, 'install', '--quiet', '--no-deps', '--no-index', wheel],
    check=True,
  )
  return venv


def outside(tmp_path) -> tuple[pathlib.Path, dict]:
  """A folder outside the clone, and an environment that does not reach the checkout."""
  where = tmp_path / 'elsewhere'
  where.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONSAFEPATH')}
  return where, dict(env, WANDB_MODE='disabled', JAX_PLATFORMS='cpu')


def test_the_wheel_runs_the_readme_example_in_a_fresh_venv_outside_the_clone(venv, tmp_path):
  python = venv / 'bin' / 'python'
  readme = (ROOT / 'README.md').read_text()
  example = next(block for block in re.findall(r'```python\n(.*?)```', readme, re.S) if 'dr.DeepRNN(' in block)
  where, env = outside(tmp_path)
  script = example + '\nprint(dr.__file__, outputs.shape)\n'
  out = subprocess.run([python, '-c', script], capture_output=True, text=True, cwd=where, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  file, shape = out.stdout.split(maxsplit=1)
  assert file.startswith(str(venv)), f'imported {file}, not the wheel'
  assert shape.strip() == '(8, 100, 128)'


def test_the_wheels_deeprnn_command_trains_a_built_in_config_outside_the_clone(venv, tmp_path):
  """The runner and the config come from the wheel (no checkout is reachable), in the command's process and in
  the worker it starts where the machine has two cores (``--workers auto``)."""
  deeprnn = venv / 'bin' / 'deeprnn'
  where, env = outside(tmp_path)
  out = subprocess.run([deeprnn, '--version'], capture_output=True, text=True, cwd=where, env=env, timeout=120)
  assert (out.returncode, out.stdout) == (0, f'deeprnn {deeprnn_jax.__version__}\n'), out.stderr[-2000:]
  tiny = ['--no-sweep', '--no-report', '--config.train.num_steps=2', '--config.train.eval_every_steps=2']
  tiny += ['--config.task.options.num_eval=8', '--config.train.progress=off', '--config.logging.wandb_mode=disabled']
  command = [deeprnn, 'run', 'quickstart', '--workdir', 'runs/q', *tiny]
  out = subprocess.run(command, capture_output=True, text=True, cwd=where, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'sweep runs/q: 1 finished' in out.stdout, out.stdout
  config_file = json.loads((where / 'runs' / 'q' / 'sweep.json').read_text())['config_file']
  assert config_file.startswith(str(venv)) and config_file.endswith('deeprnn_jax/_runner/configs/quickstart.py')
  assert [p.name for p in where.iterdir()] == ['runs']
