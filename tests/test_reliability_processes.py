"""Reliability with real runner processes and real signals: kill -9 at exact moments, SIGTERM and
Ctrl-C, two runners on one workdir, locks of dead runners, and nothing unpickled or leaked.

The moments are hit with the runner's test-only fault points (``deeprnn_jax/faults.py``): the runner
sends itself the signal there, so no test depends on timing.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deeprnn_jax import faults
from deeprnn_jax import logging as log_lib

from runner_helpers import config_file_text, records, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = 'f00dfeed' * 5   # looks like a wandb API key (40 characters); must never be written anywhere
LR_A, LR_B = 'rnn-d1-w4-lr0.001', 'rnn-d1-w4-lr0.002'
RUNS = [f'{v}-s{s}' for v in (LR_A, LR_B) for s in (0, 1)]

# The runner, with an audit hook that records (and refuses) any unpickling of objects: nothing a run
# reads back (checkpoints, run folders) may be a pickle.
AUDITED_RUN = '''
import os, runpy, sys
def audit(event, args):
  if event == 'pickle.find_class':
    with open(os.environ['AUDIT_LOG'], 'a') as f:
      f.write(f'{args}\\n')
    raise RuntimeError(f'unpickling {args}')
sys.addaudithook(audit)
sys.argv[0] = 'experiments.run'
runpy.run_module('experiments.run', run_name='__main__', alter_sys=True)
'''


def _sweep_config(tmp_path) -> str:
  """Two grid points (learning rates) x two vmapped seeds of a 1-layer width-4 RNN, 12 steps:
  logs every 2 steps, evaluates and checkpoints every 4."""
  text = config_file_text(axes={'optim.learning_rate': [0.001, 0.002]}, **{'model.width': 4, 'train.num_steps': 12})
  return write_config(tmp_path, text, 'reliability.py')


def _start(cfg, workdir, tmp_path, fault='', *extra, env=None):
  env = dict(os.environ, WANDB_MODE='disabled', AUDIT_LOG=str(tmp_path / 'unpickled.log'),
             WANDB_API_KEY=SECRET, **(env or {}))
  env.pop(faults.ENV, None)
  if fault:
    env[faults.ENV] = fault
  return subprocess.Popen([sys.executable, '-c', AUDITED_RUN, '--config', cfg, '--workdir', workdir, *extra],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(cfg, workdir, tmp_path, fault='', *extra, env=None, report=False):
  proc = _start(cfg, workdir, tmp_path, fault, *(() if report else ('--no-report',)), *extra, env=env)
  out, err = proc.communicate(timeout=300)
  assert SECRET not in out + err
  return proc.returncode, out, err


def _trained(out: str) -> set[str]:
  """The grid points a runner trained, from its progress lines ``[n/total] <variant> (...)``."""
  return {line.split()[1] for line in out.splitlines() if line.startswith('[')}


def _state(workdir, run):
  return (log_lib.read_status(os.path.join(workdir, run)) or {}).get('state')


def _latest(workdir, run):
  return sorted(os.listdir(os.path.join(workdir, run, 'checkpoints', 'latest')))


def _wait_stopped(proc):
  """Until ``proc`` is stopped (SIGSTOP); fails if it exits instead."""
  while True:
    with open(f'/proc/{proc.pid}/stat') as f:
      if f.read().rsplit(')', 1)[1].split()[0] == 'T':
        return
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.02)


@pytest.fixture(scope='module')
def two_runners(tmp_path_factory):
  """The sweep trained by two runners on one workdir. Runner X stops itself (SIGSTOP) at step 6 of
  the first grid point while holding its locks; runner Y is run to the end meanwhile; then X goes on."""
  tmp_path = tmp_path_factory.mktemp('two_runners')
  cfg, workdir = _sweep_config(tmp_path), str(tmp_path / 'w')
  x = _start(cfg, workdir, tmp_path, 'step:6=SIGSTOP', '--no-report')
  try:
    _wait_stopped(x)
    y = _run(cfg, workdir, tmp_path)
    x.send_signal(signal.SIGCONT)
    x_out, x_err = x.communicate(timeout=300)
  finally:
    if x.poll() is None:
      x.kill()
  return tmp_path, workdir, (x.returncode, x_out, x_err), y


def test_two_runners_on_one_workdir_split_the_grid(two_runners):
  tmp_path, workdir, (x_code, x_out, x_err), (y_code, y_out, y_err) = two_runners
  assert (x_code, y_code) == (0, 0), (x_err[-2000:], y_err[-2000:])
  # Y found the first point held by X (stopped, alive) and took the second; X then found it done.
  assert _trained(x_out) == {LR_A} and _trained(y_out) == {LR_B}
  assert '2 held by another runner' in y_out and 'held by another runner' not in x_out
  for run in RUNS:
    assert _state(workdir, run) == 'finished'
    recs = records(os.path.join(workdir, run))
    keys = [(r['step'], r['split']) for r in recs]
    assert len(keys) == len(set(keys)) and max(k[0] for k in keys) == 12, run   # each record once
    assert not os.path.exists(os.path.join(workdir, run, '.lock'))
  assert json.load(open(os.path.join(workdir, 'sweep.json')))['axes'] == {'optim.learning_rate': [0.001, 0.002]}
  assert not glob.glob(os.path.join(workdir, '**', '*.tmp'), recursive=True)
  assert not os.path.exists(tmp_path / 'unpickled.log')


def test_kills_and_signals_at_every_moment_lose_nothing(two_runners, tmp_path):
  """One sweep, killed or stopped at each kind of moment in turn; after each, the same command again.

  It must end with exactly the metrics of the uninterrupted sweep (the two-runner one: each run there
  trained start to finish in one process), and never train a finished run again.
  """
  _, reference, _, _ = two_runners
  cfg, workdir = _sweep_config(tmp_path), str(tmp_path / 'w')
  a0, a1 = f'{LR_A}-s0', f'{LR_A}-s1'

  # 1. kill -9 inside a train step (step 7): records go to step 6, past the checkpoint of step 4
  #    (which orbax may or may not have committed yet: it writes in the background).
  code, _, err = _run(cfg, workdir, tmp_path, 'step:7=SIGKILL')
  assert code == -signal.SIGKILL, err[-2000:]
  assert _state(workdir, a0) == 'running' and _latest(workdir, a0) in (['4'], ['4.orbax-checkpoint-tmp'])
  assert max(r['step'] for r in records(os.path.join(workdir, a0))) == 6

  # 2. kill -9 while the checkpoint of step 8 is being written.
  code, _, err = _run(cfg, workdir, tmp_path, 'checkpoint:8=SIGKILL')
  assert code == -signal.SIGKILL, err[-2000:]
  assert any(name.startswith('8.') and 'tmp' in name for name in _latest(workdir, a0)), _latest(workdir, a0)

  # 3. SIGTERM at step 10: a checkpoint there, status interrupted, exit 130, how to resume.
  code, _, err = _run(cfg, workdir, tmp_path, 'step:10=SIGTERM')
  assert code == 130, err[-2000:]
  assert f'interrupted at step 10; run the same command again to resume: python -m experiments.run --config {cfg} ' \
         f'--workdir {workdir} --no-report' in err
  for run in (a0, a1):
    status = log_lib.read_status(os.path.join(workdir, run))
    assert (status['state'], status['step']) == ('interrupted', 10) and status['resumed_from'] in (None, 4)
    assert '10' in _latest(workdir, run)

  # 4. kill -9 between runs: the first grid point is finished (steps 11 and 12), the second not started.
  #    (A kill after a run's last checkpoint but before its final status: test_reliability_state.py.)
  code, out, err = _run(cfg, workdir, tmp_path, 'point:2=SIGKILL')
  assert code == -signal.SIGKILL, err[-2000:]
  assert [_state(workdir, r) for r in RUNS] == ['finished', 'finished', None, None]
  assert log_lib.read_status(os.path.join(workdir, a0))['resumed_from'] == 10
  done = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(workdir, LR_A + '*', '**'), recursive=True)}

  # 5. Ctrl-C (SIGINT) at step 3 of the second grid point.
  code, out, err = _run(cfg, workdir, tmp_path, 'step:3=SIGINT')
  assert code == 130 and 'SIGINT: saving a checkpoint and stopping' in err, err[-2000:]
  assert 'interrupted at step 3; run the same command again to resume' in err
  assert _trained(out) == {LR_B}
  assert [_state(workdir, r) for r in RUNS] == ['finished', 'finished', 'interrupted', 'interrupted']

  # 6. The same command once more (wandb offline this time, with an API key in the environment).
  code, out, err = _run(cfg, workdir, tmp_path, '', '--config.logging.wandb_mode=offline', report=True,
                        env={'WANDB_DIR': str(tmp_path / 'wandb'), 'WANDB_CACHE_DIR': str(tmp_path / 'wandb_cache'),
                             'WANDB_CONFIG_DIR': str(tmp_path / 'wandb_config')})
  assert code == 0, err[-2000:]
  assert _trained(out) == {LR_B} and '4 finished' in out and os.path.exists(os.path.join(workdir, 'report.md'))

  # Nothing lost, nothing stale, nothing trained twice.
  for run in RUNS:
    assert _state(workdir, run) == 'finished'
    assert records(os.path.join(workdir, run)) == records(os.path.join(reference, run)), run
  assert {p: os.stat(p).st_mtime_ns for p in done} == done
  assert not os.path.exists(tmp_path / 'unpickled.log')
  # wandb ran (offline) and no file anywhere (run folders, wandb's, the report) holds the key.
  assert log_lib.read_status(os.path.join(workdir, f'{LR_B}-s0'))['wandb_mode'] == 'offline'
  for path in glob.glob(os.path.join(str(tmp_path), '**', '*'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        assert SECRET.encode() not in f.read(), path


# ----------------------------------------------------------------------------------------------
# Locks, between plain processes (no JAX: fast).

LOCK_HOLDER = '''
import subprocess, sys, time
from experiments.locks import RunLock
assert RunLock(sys.argv[1]).acquire()
helper = subprocess.Popen(['sleep', '600'], stdout=subprocess.DEVNULL)   # outlives us, as wandb's service may
print(helper.pid, flush=True)
time.sleep(600)
'''

CONTENDER = '''
import os, sys, time
from experiments.locks import RunLock
run_dir, go = sys.argv[1], sys.argv[2]
print('ready', flush=True)
while not os.path.exists(go):
  time.sleep(0.001)
lock = RunLock(run_dir)
print('won' if lock.acquire() else 'lost', flush=True)
while not os.path.exists(go + '.end'):
  time.sleep(0.01)
'''


def test_a_runner_killed_with_kill_9_holds_no_lock(tmp_path):
  from experiments.locks import RunLock  # noqa: PLC0415
  run_dir = str(tmp_path / 'run')
  holder = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER, run_dir], cwd=REPO, stdout=subprocess.PIPE, text=True)
  helper = int(holder.stdout.readline())
  try:
    assert not RunLock(run_dir).acquire()    # a live runner holds it
    holder.kill()
    holder.wait()
    lock = RunLock(run_dir)
    assert lock.acquire()                    # at once, though the dead runner's child still runs
    with open(lock.path) as f:
      assert json.load(f)['pid'] == os.getpid()
    lock.release()
    assert not os.path.exists(lock.path)
  finally:
    holder.kill()
    os.kill(helper, signal.SIGKILL)


@pytest.mark.parametrize('round_', range(3))
def test_runners_taking_over_a_dead_runners_lock_at_once_get_it_once(tmp_path, round_):
  """Six processes released together on a lock file its dead runner left: exactly one wins (the old
  'stale? delete it, then create mine' scheme let two or three win in about one round in six)."""
  del round_
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  (run_dir / '.lock').write_text(json.dumps({'host': 'here', 'pid': 2 ** 22 + 1}))
  go = str(tmp_path / 'go')
  procs = [subprocess.Popen([sys.executable, '-c', CONTENDER, str(run_dir), go], cwd=REPO, stdout=subprocess.PIPE,
                            text=True) for _ in range(6)]
  try:
    assert [p.stdout.readline().strip() for p in procs] == ['ready'] * 6
    open(go, 'w').close()
    results = sorted(p.stdout.readline().strip() for p in procs)
  finally:
    open(go + '.end', 'w').close()
    for p in procs:
      p.wait(timeout=60)
  assert results == ['lost'] * 5 + ['won']


def test_a_filesystem_without_locks_is_a_warning_not_a_failure(tmp_path, monkeypatch, caplog):
  import errno  # noqa: PLC0415
  import fcntl  # noqa: PLC0415

  from experiments.locks import RunLock  # noqa: PLC0415

  def no_locks(fd, op):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
  monkeypatch.setattr(fcntl, 'flock', no_locks)
  lock = RunLock(str(tmp_path / 'run'))
  assert lock.acquire()
  assert 'does not support file locks' in caplog.text and 'run only one runner on this workdir' in caplog.text
  lock.release()
