"""wandb that hangs, errs or is unreachable never stops a run; configs are code only from the file the
user names, overrides are literals, nothing is unpickled, and the wandb API key is written nowhere.

No network: the "unreachable server" is a closed port on this machine, the rest are fakes.
"""

from __future__ import annotations

import glob
import os
import pickle
import threading

import pytest

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training import train as train_lib
from experiments import report
from experiments import run as run_cli
from experiments import sweep

from runner_helpers import config_file_text, records, tiny_config, write_config

SECRET = 'c0ffee42' * 5  # looks like a wandb API key (40 characters)


def _online(**overrides):
  return tiny_config(**{'model.width': 4, 'train.num_steps': 4, 'logging.wandb_mode': 'online', **overrides})


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
  """wandb's own folders in tmp_path; its service stopped afterwards."""
  import wandb  # noqa: PLC0415

  for var, name in (('WANDB_DIR', 'wandb'), ('WANDB_CACHE_DIR', 'wandb_cache'), ('WANDB_CONFIG_DIR', 'wandb_config')):
    monkeypatch.setenv(var, str(tmp_path / name))
  monkeypatch.delenv('WANDB_MODE', raising=False)
  yield wandb
  wandb.teardown()


def _scan_for(secret: str, *roots) -> list[str]:
  hits = []
  for root in roots:
    for path in glob.glob(os.path.join(str(root), '**', '*'), recursive=True):
      if os.path.isfile(path) and secret.encode() in open(path, 'rb').read():
        hits.append(path)
  return hits


def _train_two_seeds(tmp_path, release):
  """Seeds 0 and 1 trained as one vmapped group with a 0.5 s wandb timeout; ``release`` is set after,
  so a fake wandb call left waiting on it ends with the test. Returns (statuses, run dirs)."""
  configs = [_online(**{'train.seed': s, 'logging.wandb_timeout_seconds': 0.5}) for s in (0, 1)]
  dirs = [str(tmp_path / f's{s}') for s in (0, 1)]
  try:
    return train_lib.train_seeds(configs, dirs), dirs
  finally:
    release.set()


def test_a_hanging_wandb_init_times_out_once_and_the_seeds_train_locally(tmp_path, wandb_env, monkeypatch, caplog):
  release, calls = threading.Event(), []

  def hang(*args, **kwargs):
    calls.append(1)
    release.wait()  # a wandb server that never answers

  monkeypatch.setattr(wandb_env, 'init', hang)
  statuses, dirs = _train_two_seeds(tmp_path, release)
  assert [s['state'] for s in statuses] == ['finished', 'finished']
  assert len(calls) == 1  # the second seed does not wait out the same timeout again
  assert 'wandb init failed (TimeoutError: wandb.init did not return within 0.5 s)' in caplog.text
  for s, d in zip(statuses, dirs):
    assert s['wandb_mode'] == 'disabled' and s['wandb_error'].startswith('init: TimeoutError')
    assert {r['step'] for r in records(d)} == {2, 4}


class _FakeRun:
  """A wandb run whose ``log`` raises (``fault='log'``) or whose ``finish`` hangs (``'finish'``)."""

  def __init__(self, fault, release):
    self.fault, self.release, self.logged = fault, release, 0
    self.summary = {}

  def define_metric(self, *args, **kwargs):
    pass

  def log(self, data):
    self.logged += 1
    if self.fault == 'log' and self.logged == 2:
      raise ConnectionError('Connection reset by peer')

  def finish(self, exit_code=0):
    if self.fault == 'finish':
      self.release.wait()


def test_a_wandb_error_or_hang_while_running_never_stops_training(tmp_path, wandb_env, monkeypatch, caplog):
  """Two seeds: the first one's wandb run fails to log, the second one's never finishes."""
  release, fakes = threading.Event(), []

  def init(*args, **kwargs):
    fakes.append(_FakeRun(('log', 'finish')[len(fakes)], release))
    return fakes[-1]

  monkeypatch.setattr(wandb_env, 'init', init)
  statuses, dirs = _train_two_seeds(tmp_path, release)
  assert [s['state'] for s in statuses] == ['finished', 'finished']
  assert caplog.text.count('wandb log failed (ConnectionError: Connection reset by peer)') == 1
  assert caplog.text.count('wandb finish failed (TimeoutError: wandb finish did not return within 0.5 s)') == 1
  assert [f.logged for f in fakes] == [2, 4]  # after its failure the first is left alone
  for d in dirs:
    assert {r['step'] for r in records(d)} == {2, 4}


@pytest.mark.parametrize(
  'key,timeout,errors',
  [
    ('abc', 60.0, ('AuthenticationError',)),  # refused before any connection
    (SECRET, 1.0, ('CommError: Timed out', 'TimeoutError: wandb.init did not return')),
  ],  # wandb's or ours
  ids=['bad key', 'unreachable server'],
)
def test_real_wandb_with_a_bad_key_or_no_server_warns_and_the_run_goes_on(
  tmp_path, wandb_env, monkeypatch, capfd, caplog, key, timeout, errors
):
  monkeypatch.setenv('WANDB_API_KEY', key)
  monkeypatch.setenv('WANDB_BASE_URL', 'http://127.0.0.1:9')  # nothing listens there: connection refused
  run_dir = str(tmp_path / 'run')
  status = train_lib.train(_online(**{'logging.wandb_timeout_seconds': timeout}), run_dir)
  assert status['state'] == 'finished' and status['wandb_mode'] == 'disabled'
  assert 'wandb init failed' in caplog.text and any(e in status['wandb_error'] for e in errors), status
  assert {r['step'] for r in records(run_dir)} == {2, 4}
  out, err = capfd.readouterr()
  assert SECRET not in out + err + caplog.text and not _scan_for(SECRET, tmp_path)


def test_an_error_that_quotes_the_api_key_is_written_without_it(tmp_path, wandb_env, monkeypatch, caplog):
  monkeypatch.setenv('WANDB_API_KEY', SECRET)

  def init(*args, **kwargs):
    raise PermissionError(f'key {SECRET} was revoked')

  monkeypatch.setattr(wandb_env, 'init', init)
  status = train_lib.train(_online(), str(tmp_path / 'run'))
  assert status['wandb_error'] == 'init: PermissionError: key <WANDB_API_KEY> was revoked'
  assert SECRET not in caplog.text and not _scan_for(SECRET, tmp_path)


# ----------------------------------------------------------------------------------------------
# Code, literals, pickles.

MARKER_CODE = "__import__('pathlib').Path({path!r}).touch()"


def test_overrides_are_literals_never_code(tmp_path, capsys):
  marker = str(tmp_path / 'ran')
  cfg = write_config(tmp_path)
  code = MARKER_CODE.format(path=marker)
  assert (
    run_cli.main(['--config', cfg, '--workdir', str(tmp_path / 'w'), '--dry-run', f'--config.logging.project={code}'])
    == 0
  )
  assert sweep.load_config(cfg, [f'logging.project={code}']).logging.project == code  # kept as text
  for override in (f'model.width={code}', 'model.width=(lambda: 4)()', 'model.depth=2+2'):
    assert run_cli.main(['--config', cfg, '--workdir', str(tmp_path / 'w'), f'--config.{override}']) == 2
    assert 'must be an int, got str' in capsys.readouterr().err
  assert (
    run_cli.main(
      [
        '--config',
        cfg,
        '--workdir',
        str(tmp_path / 'w'),
        '--dry-run',
        f'--config.sweep.axes.model.cell=["rnn", {code!r}]',
      ]
    )
    == 2
  )
  assert not os.path.exists(marker)


def test_only_the_named_config_file_is_code_and_nothing_is_unpickled(tmp_path, monkeypatch):
  """A sweep folder full of Python files and JSON holding code: resuming in it and reporting on it
  runs none of them; no unpickling happens on the way (checkpoints, run folders)."""
  marker = str(tmp_path / 'ran')
  text = config_file_text(axes={'optim.learning_rate': [0.001]}, seeds=(0,), **{'model.width': 4})
  cfg = write_config(tmp_path, text)
  workdir = tmp_path / 'w'
  config = sweep.load_config(cfg)
  with pytest.raises(train_lib.Interrupted):
    sweep.run_sweep(config, str(workdir), should_stop=iter([False] * 6 + [True]).__next__, echo=lambda s: None)
  run_dir = workdir / 'rnn-d1-w4-lr0.001-s0'
  code = MARKER_CODE.format(path=marker)
  for folder in (workdir, run_dir, run_dir / 'checkpoints'):
    for name in ('get_config.py', '__init__.py', 'sitecustomize.py', 'conftest.py', 'config.py'):
      (folder / name).write_text(code + '\ndef get_config():\n  ' + code + '\n')
  runlog.update_status(str(run_dir), note=code)
  with open(run_dir / runlog.METRICS_FILE, 'a') as f:
    f.write('{"step": 1, "split": "note", "text": %s}\n' % runlog.dumps(code))

  def no_unpickling(*args, **kwargs):
    raise AssertionError('something was unpickled')

  for name in ('load', 'loads', 'Unpickler'):
    monkeypatch.setattr(pickle, name, no_unpickling)
  monkeypatch.chdir(workdir)
  result = sweep.run_sweep(config, str(workdir), echo=lambda s: None)
  assert result.trained == ['rnn-d1-w4-lr0.001-s0']
  assert runlog.read_status(str(run_dir))['resumed_from'] == 6
  report.write_report(str(workdir))
  assert not os.path.exists(marker)
  assert config_lib.to_dict(sweep.load_config(cfg)) == config_lib.to_dict(config)
