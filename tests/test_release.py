"""The release installs as a wheel: built offline from this checkout, it holds the library and its license
(never the runner's generic top-level names), takes its version from ``deeprnn_jax.__version__``, and in a
fresh virtual environment, run from a folder outside the clone, the README's library example works."""

from __future__ import annotations

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


def test_the_wheel_runs_the_readme_example_in_a_fresh_venv_outside_the_clone(wheel, tmp_path):
  """A fresh venv sees this venv's third-party packages through a ``.pth`` line (no network), but not
  its editable install of the checkout (``.pth`` lines in a ``.pth``-added folder are not run), so
  ``import deeprnn_jax`` can only find the wheel's copy."""
  venv = tmp_path / 'venv'
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
  readme = (ROOT / 'README.md').read_text()
  example = next(block for block in re.findall(r'```python\n(.*?)```', readme, re.S) if 'dr.DeepRNN(' in block)
  where = tmp_path / 'elsewhere'
  where.mkdir()
  script = example + '\nprint(dr.__file__, outputs.shape)\n'
  out = subprocess.run([python, '-c', script], capture_output=True, text=True, cwd=where, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  file, shape = out.stdout.split(maxsplit=1)
  assert file.startswith(str(venv)), f'imported {file}, not the wheel'
  assert shape.strip() == '(8, 100, 128)'
