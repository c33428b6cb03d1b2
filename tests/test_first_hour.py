"""What a newcomer meets first: the runner refuses before it trains when a package is missing, a
misspelled name gets a suggestion, an evaluation interval longer than the run is flagged, and the
text-classification template runs on a CSV of one's own."""

import logging
import os
import subprocess
import sys
import textwrap

import pytest

from deeprnn_jax.training import config as config_lib
from experiments import preflight

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_needs_lists_the_report_wandb_launcher_and_task_packages(monkeypatch):
  monkeypatch.delenv('WANDB_MODE', raising=False)
  d = config_lib.to_dict(config_lib.default_config())
  d['task'] = {'name': 'ner_conll', 'options': {}}
  d['logging']['wandb_mode'] = 'offline'
  modules = [m for m, _ in preflight.needs(d, report=True, launcher='local')]
  assert modules == ['matplotlib', 'wandb', 'submitit', 'seqeval']
  d['logging']['wandb_mode'] = None
  assert [m for m, _ in preflight.needs(d, report=False)] == ['seqeval']
  # A TFDS text task reading local files (path=) needs no TFDS; a swept task's packages count too.
  d['task'] = {'name': 'imdb', 'options': {'path': '/data/aclImdb'}}
  assert preflight.needs(d, report=False) == []
  d['sweep']['axes'] = {'task': {'name': ['adding', 'digits']}}
  assert [m for m, _ in preflight.needs(d, report=False)] == ['sklearn']


@pytest.mark.parametrize('task', ['imdb', 'sst2', 'tiny_shakespeare'])
def test_a_tfds_text_task_without_a_local_path_needs_tensorflow_datasets(task, monkeypatch):
  """Without ``path`` these tasks read their TFDS dataset, so a missing tensorflow-datasets is refused
  before the first step (not at the first data load, minutes into a sweep); with ``path`` they read
  local files and need nothing."""
  monkeypatch.delenv('WANDB_MODE', raising=False)
  d = config_lib.to_dict(config_lib.default_config())
  d['task'] = {'name': task, 'options': {}}
  assert preflight.needs(d, report=False) == [
    ('tensorflow_datasets', f'its TFDS data, or task.options.path for local files (task {task})')
  ]
  with pytest.raises(config_lib.ConfigError, match=rf'needs tensorflow_datasets for its TFDS data.*task {task}'):
    preflight.check(d, report=False, available=lambda m: m != 'tensorflow_datasets')
  d['task']['options'] = {'path': '/data/local'}
  assert preflight.needs(d, report=False) == []
  # Swept over: the axis's path counts the same way.
  d['task']['options'] = {}
  d['sweep']['axes'] = {'task': {'options': {'path': ['/data/local']}}}
  assert preflight.needs(d, report=False) == []


def test_wandb_counts_when_the_environment_asks_for_it(monkeypatch):
  d = config_lib.to_dict(config_lib.default_config())
  monkeypatch.setenv('WANDB_MODE', 'dryrun')
  assert [m for m, _ in preflight.needs(d, report=False)] == ['wandb']
  monkeypatch.setenv('WANDB_MODE', 'disabled')
  assert preflight.needs(d, report=False) == []


def test_check_names_every_missing_package_and_one_install_command(monkeypatch):
  monkeypatch.delenv('WANDB_MODE', raising=False)
  d = config_lib.to_dict(config_lib.default_config())
  d['task'] = {'name': 'keyword_spotting', 'options': {}}
  with pytest.raises(config_lib.ConfigError) as e:
    preflight.check(d, available=lambda m: m not in ('matplotlib', 'librosa'))
  message = str(e.value)
  assert '\n' not in message
  assert message.startswith('nothing trained: this sweep needs matplotlib for the report')
  assert 'librosa for log-mel features (task keyword_spotting)' in message
  assert "pip install '.[experiments,speech]'" in message
  preflight.check(d, available=lambda m: True)  # nothing missing: no error


def test_every_task_the_preflight_knows_is_registered():
  from deeprnn_jax import _extras
  from deeprnn_jax.tasks import TASKS

  assert set(preflight.TASK_MODULES) <= set(TASKS)
  assert {m for needs in preflight.TASK_MODULES.values() for m, _ in needs} <= set(_extras.EXTRA_OF)


@pytest.mark.slow  # a fresh interpreter imports JAX
def test_the_runner_refuses_before_the_first_step_without_matplotlib(tmp_path):
  """A core-like install (matplotlib hidden, as tests/test_core_install.py hides the extras): exit 2,
  one line naming the package, and no run folder written."""
  code = textwrap.dedent("""
      import importlib.abc, runpy, sys

      class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] == 'matplotlib':
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
          return None

      sys.meta_path.insert(0, Hide())
      sys.argv = ['experiments.run'] + sys.argv[1:]
      runpy.run_module('experiments.run', run_name='__main__')
  """)
  workdir = tmp_path / 'sweep'
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu', WANDB_MODE='disabled')
  proc = subprocess.run(
    [sys.executable, '-c', code, '--config', 'configs/quickstart.py', '--workdir', str(workdir), '--workers', '1']
    + ['--no-sweep', '--config.train.num_steps=2', '--config.train.eval_every_steps=1'],  # cheap if it trains
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=env,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: nothing trained: this sweep needs matplotlib'), lines
  assert not workdir.exists() or not any(workdir.iterdir())


def test_a_misspelled_cell_gets_a_suggestion():
  from deeprnn_jax.cells import resolve_cell

  with pytest.raises(ValueError, match=r"unknown cell 'lstn'; did you mean 'lstm' or "):
    resolve_cell('lstn')
  d = config_lib.to_dict(config_lib.default_config())
  d['model']['cell'] = 'mamab'
  with pytest.raises(config_lib.ConfigError, match=r"unknown value 'mamab'; did you mean 'mamba'\? valid: "):
    config_lib.validate(d)
  d['model']['cell'] = 'zzzzzz'  # nothing close: no suggestion
  with pytest.raises(config_lib.ConfigError, match=r"unknown value 'zzzzzz'; valid: "):
    config_lib.validate(d)


def test_an_eval_interval_longer_than_the_run_is_warned_once(caplog):
  d = config_lib.to_dict(config_lib.default_config())
  d['train']['num_steps'], d['train']['eval_every_steps'] = 300, 501
  config_lib._warned.clear()
  with caplog.at_level(logging.WARNING, logger='deeprnn_jax.training.config'):
    config_lib.validate(d)
    config_lib.validate(d)
  messages = [r.getMessage() for r in caplog.records if r.name == 'deeprnn_jax.training.config']
  assert len(messages) == 1 and '\n' not in messages[0], messages
  assert messages[0].startswith('warning: train.eval_every_steps=501 is more than train.num_steps=300')
  assert '--config.train.eval_every_steps=30' in messages[0]
  caplog.clear()
  d['train']['eval_every_steps'] = 300  # equal: evaluated at the end anyway, nothing to warn about
  d['sweep']['axes'] = {'train': {'num_steps': [100, 300]}}  # but a swept shorter run is
  with caplog.at_level(logging.WARNING, logger='deeprnn_jax.training.config'):
    config_lib.validate(d)
  got = [r.getMessage()[9:69] for r in caplog.records]
  assert got == ['train.eval_every_steps=300 is more than train.num_steps=100:']
