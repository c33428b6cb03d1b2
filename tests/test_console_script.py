"""``deeprnn``, the console script of the checkout's install (``[project.scripts]``): the runner's commands from
any folder, configs by file or by built-in name, mistakes in one line with exit code 2. The same command from
the wheel, in a fresh venv: tests/test_release.py."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

import deeprnn_jax
from deeprnn_jax import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEEPRNN = pathlib.Path(sys.executable).parent / 'deeprnn'
# The quickstart config at its smallest: one grid point, one seed, two steps, a small eval set, no report.
TINY = [
  '--no-sweep',
  '--no-report',
  '--config.train.num_steps=2',
  '--config.train.eval_every_steps=2',
  '--config.task.options.num_eval=8',
  '--config.train.progress=off',
  '--config.logging.wandb_mode=disabled',
]


def deeprnn(*args, cwd, timeout=300):
  if not DEEPRNN.exists():
    pytest.fail(f'{DEEPRNN} is missing: reinstall the checkout (make install) after a change to pyproject.toml')
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONSAFEPATH')}
  env.update(WANDB_MODE='disabled', JAX_PLATFORMS='cpu')
  return subprocess.run([DEEPRNN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_version_and_an_unknown_command(tmp_path):
  out = deeprnn('--help', cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  for name in ('run', 'study', 'tune', 'evaluate', 'report', 'prepare', 'configs'):
    assert any(line.split()[:1] == [name] and len(line.split()) > 2 for line in out.stdout.splitlines()), name
  out = deeprnn('--version', cwd=tmp_path)
  assert (out.returncode, out.stdout) == (0, f'deeprnn {deeprnn_jax.__version__}\n')
  out = deeprnn('rn', '--workdir', 'w', cwd=tmp_path)
  assert out.returncode == 2 and out.stderr.startswith("error: unknown command 'rn' (did you mean 'run'?)")
  assert out.stderr.count('\n') == 1 and not out.stdout
  assert not list(tmp_path.iterdir())


def test_an_unknown_config_name_lists_the_built_in_ones(tmp_path):
  out = deeprnn('run', 'quickstrt', '--workdir', 'w', cwd=tmp_path)
  assert out.returncode == 2 and out.stderr.count('\n') == 1, out.stderr
  assert out.stderr.startswith("error: no config file or built-in config 'quickstrt' (did you mean 'quickstart'?)")
  assert 'built-in configs: ' in out.stderr and 'studies/depth' in out.stderr and 'text_classification' in out.stderr
  assert not list(tmp_path.iterdir())


def test_a_bad_override_is_one_line_and_exit_2_as_with_python_m(tmp_path):
  out = deeprnn('run', '--config', 'quickstart', '--workdir', 'w', '--config.train.num_stepz=2', cwd=tmp_path)
  assert out.returncode == 2
  assert out.stderr.strip().splitlines() == [
    "error: config key 'train.num_stepz': unknown key; did you mean 'train.num_steps'?"
  ]
  assert not (tmp_path / 'w').exists()


def test_a_tiny_run_of_a_built_in_config_from_another_folder(tmp_path):
  """From a folder outside the clone that holds a package of its own named ``experiments`` (which must not
  hide the runner, in this process nor in its workers), with the default ``--workers auto``: on two cores or
  more a worker process trains (``python -m experiments.worker``), on one this process does."""
  decoy = tmp_path / 'experiments'
  decoy.mkdir()
  (decoy / '__init__.py').write_text("raise ImportError('the decoy experiments package was imported')\n")
  out = deeprnn('run', 'quickstart', '--workdir', 'runs/q', *TINY, cwd=tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'sweep runs/q: 1 finished' in out.stdout, out.stdout
  sweep = json.loads((tmp_path / 'runs' / 'q' / 'sweep.json').read_text())
  assert sweep['config_file'] == str(ROOT / 'configs' / 'quickstart.py')  # the checkout's, by name
  (run,) = [p for p in (tmp_path / 'runs' / 'q').iterdir() if p.is_dir()]
  assert json.loads((run / 'status.json').read_text())['state'] == 'finished'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['experiments', 'runs']  # nothing else written here


def test_configs_lists_every_built_in_config(tmp_path):
  out = deeprnn('configs', cwd=tmp_path)
  assert out.returncode == 0, out.stderr
  names = [line.split()[0] for line in out.stdout.splitlines()]
  files = (p.relative_to(ROOT / 'configs').with_suffix('').as_posix() for p in (ROOT / 'configs').rglob('*.py'))
  assert names == sorted(f for f in files if not f.rsplit('/', 1)[-1].startswith('_'))
  assert any(line.startswith('studies/depth') and line.endswith('(deeprnn study)') for line in out.stdout.splitlines())


def test_the_runner_is_the_checkouts_in_an_editable_install():
  assert cli.runner_root() == ROOT


def test_the_config_is_resolved_in_one_place(tmp_path, monkeypatch):
  quickstart = str(ROOT / 'configs' / 'quickstart.py')
  monkeypatch.chdir(tmp_path)
  assert cli.resolve_config(['quickstart', '--workdir', 'w']) == ['--config', quickstart, '--workdir', 'w']
  assert cli.resolve_config(['--workdir', 'w', '--config', 'studies/depth']) == [
    '--workdir',
    'w',
    '--config',
    str(ROOT / 'configs' / 'studies' / 'depth.py'),
  ]
  assert cli.resolve_config(['--config=configs/quickstart.py', '--config.train.num_steps=2']) == [
    f'--config={quickstart}',
    '--config.train.num_steps=2',
  ]
  (tmp_path / 'quickstart').write_text('def get_config(): ...\n')  # a file of that name wins over the built-in one
  assert cli.resolve_config(['--config', 'quickstart']) == ['--config', 'quickstart']
  assert cli.resolve_config(['--workdir', 'w']) == ['--workdir', 'w']  # no config: the command says so
  with pytest.raises(cli.UsageError, match='given twice'):
    cli.resolve_config(['quickstart', '--config', 'quickstart'])
  with pytest.raises(cli.UsageError, match=r"'depth' \(did you mean 'studies/depth'\?\)"):
    cli.config_path('depth')


def test_a_call_from_python_puts_back_the_path_and_the_environment(tmp_path, capsys):
  path, env = list(sys.path), dict(os.environ)
  assert cli.main(['report', str(tmp_path / 'missing')]) == 2
  assert capsys.readouterr().err == f'error: {str(tmp_path / "missing")!r} is not a folder\n'
  assert sys.path == path and dict(os.environ) == env
