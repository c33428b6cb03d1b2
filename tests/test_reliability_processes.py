"""Reliability with real runner processes and real signals: kill -9 at exact moments, SIGTERM, two
runners on one workdir, locks of dead runners, and nothing unpickled or leaked.

The moments are hit with the trainer's event hook (``tests/faults.py``): the runner
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

from deeprnn_jax.training import runlog
from experiments import report
from experiments import sweep

import faults
from runner_helpers import config_file_text, records, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = 'f00dfeed' * 5  # looks like a wandb API key (40 characters); must never be written anywhere
LR_A, LR_B = 'rnn-d1-w4-lr0.001', 'rnn-d1-w4-lr0.002'
RUNS = [f'{v}-s{s}' for v in (LR_A, LR_B) for s in (0, 1)]

# The runner, with an audit hook that records (and refuses) any unpickling of objects: nothing a run
# reads back (checkpoints, run folders) may be a pickle.
AUDITED_RUN = (
  """
import os, sys
def audit(event, args):
  if event == 'pickle.find_class':
    with open(os.environ['AUDIT_LOG'], 'a') as f:
      f.write(f'{args}\\n')
    raise RuntimeError(f'unpickling {args}')
sys.addaudithook(audit)
"""
  + faults.RUNNER
)


def _sweep_config(tmp_path) -> str:
  """Two grid points (learning rates) x two vmapped seeds of a 1-layer width-4 RNN, 12 steps:
  logs every 2 steps, evaluates and checkpoints every 4."""
  text = config_file_text(axes={'optim.learning_rate': [0.001, 0.002]}, **{'model.width': 4, 'train.num_steps': 12})
  return write_config(tmp_path, text, 'reliability.py')


def _start(cfg, workdir, tmp_path, fault='', *extra, env=None):
  env = dict(
    os.environ, WANDB_MODE='disabled', AUDIT_LOG=str(tmp_path / 'unpickled.log'), WANDB_API_KEY=SECRET, **(env or {})
  )
  env.pop(faults.ENV, None)
  if fault:
    env[faults.ENV] = fault
  return subprocess.Popen(
    [sys.executable, '-c', AUDITED_RUN, '--config', cfg, '--workdir', workdir, *extra],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _run(cfg, workdir, tmp_path, fault='', *extra, env=None, report=False):
  proc = _start(cfg, workdir, tmp_path, fault, *(() if report else ('--no-report',)), *extra, env=env)
  out, err = proc.communicate(timeout=300)
  assert SECRET not in out + err
  return proc.returncode, out, err


def _trained(out: str) -> set[str]:
  """The grid points a runner trained, from its progress lines ``[n/total] <variant> (...)``."""
  return {line.split()[1] for line in out.splitlines() if line.startswith('[')}


def _state(workdir, run):
  return (runlog.read_status(os.path.join(workdir, run)) or {}).get('state')


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


def test_runners_stopped_and_killed_at_every_moment_never_overlap_and_lose_nothing(tmp_path):
  """One sweep, two grid points x two vmapped seeds, run by a sequence of runner processes:

  * runner X stops itself (SIGSTOP) inside step 7 of the first point, holding its locks; runner Y,
    started meanwhile on the same workdir, leaves that point to X and trains the second;
  * X is killed there (kill -9 inside a train step); its locks go with it, and each next runner,
    started with the same command, takes the first point over at once and is killed or stopped at
    the next kind of moment: while writing a checkpoint, SIGTERM, between runs.

  The sweep must end with exactly the metrics of an uninterrupted run, no run trained twice or by
  two runners, the finished runs untouched, nothing unpickled, and the wandb key written nowhere.
  """
  cfg, workdir = _sweep_config(tmp_path), str(tmp_path / 'w')
  a0, a1 = f'{LR_A}-s0', f'{LR_A}-s1'

  # Two runners: Y finds the first point held by X (alive, stopped) and trains only the second.
  x = _start(cfg, workdir, tmp_path, 'step:7=SIGSTOP', '--no-report')
  try:
    _wait_stopped(x)
    code, out, err = _run(cfg, workdir, tmp_path)
    assert code == 0, err[-2000:]
    assert _trained(out) == {LR_B} and '2 finished; 2 held by another runner' in out
    assert [_state(workdir, r) for r in RUNS] == ['running', 'running', 'finished', 'finished']
    done = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(workdir, LR_B + '*', '**'), recursive=True)}
  finally:
    x.kill()  # 1. kill -9 inside a train step (step 7)
    x.communicate()
  # records up to step 6, past the last checkpoint (step 4, which orbax may not have committed yet)
  assert max(r['step'] for r in records(os.path.join(workdir, a0))) == 6

  # 2. kill -9 while the checkpoints of step 8 are being written (seed 1's was handed to orbax last).
  #    The dead runner's locks are free at once: no timeout.
  code, out, err = _run(cfg, workdir, tmp_path, 'checkpoint:8=SIGKILL')
  assert code == -signal.SIGKILL and _trained(out) == {LR_A}, err[-2000:]
  # not committed: at most orbax's temporary folder for it exists (or not even that yet)
  assert set(_latest(workdir, a1)) - {'4'} <= {'8.orbax-checkpoint-tmp'}, _latest(workdir, a1)

  # 3. SIGTERM at step 10: a checkpoint there, status interrupted, exit 130, how to resume.
  code, _, err = _run(cfg, workdir, tmp_path, 'step:10=SIGTERM')
  assert code == 130, err[-2000:]
  assert 'SIGTERM: saving a checkpoint and stopping' in err
  assert (
    f'interrupted at step 10; run the same command again to resume: python -m experiments.run --config {cfg} '
    f'--workdir {workdir} --no-report' in err
  )
  for run in (a0, a1):
    status = runlog.read_status(os.path.join(workdir, run))
    # resumed from the checkpoint of step 4, or from scratch if orbax had not committed it when X died
    assert (status['state'], status['step']) == ('interrupted', 10) and status['resumed_from'] in (None, 4)
    assert '10' in _latest(workdir, run)

  # 4. kill -9 between runs: the first point finishes (steps 11 and 12, wandb offline this time, with
  #    the API key in the environment), and the runner dies before the next point.
  code, out, err = _run(
    cfg,
    workdir,
    tmp_path,
    'point:2=SIGKILL',
    '--config.logging.wandb_mode=offline',
    env={
      'WANDB_DIR': str(tmp_path / 'wandb'),
      'WANDB_CACHE_DIR': str(tmp_path / 'wandb_cache'),
      'WANDB_CONFIG_DIR': str(tmp_path / 'wandb_config'),
    },
  )
  assert code == -signal.SIGKILL and _trained(out) == {LR_A}, err[-2000:]
  status = runlog.read_status(os.path.join(workdir, a0))
  assert (status['state'], status['resumed_from'], status['wandb_mode']) == ('finished', 10, 'offline')

  # The same command once more has nothing left to do.
  config = sweep.load_config(cfg)
  result = sweep.run_sweep(config, workdir, echo=lambda line: None)
  assert not result.trained and sorted(result.skipped) == sorted(RUNS)
  report.write_report(workdir)

  # Exactly the metrics of an uninterrupted run; the second point untouched since Y finished it.
  reference = str(tmp_path / 'reference')
  sweep.run_sweep(config, reference, select=lambda point, seed: point.variant == LR_A, echo=lambda line: None)
  for run in (a0, a1):
    assert records(os.path.join(workdir, run)) == records(os.path.join(reference, run)), run
  assert {p: os.stat(p).st_mtime_ns for p in done} == done
  for run in RUNS:
    keys = [(r['step'], r['split']) for r in records(os.path.join(workdir, run))]
    assert len(keys) == len(set(keys)) and max(k[0] for k in keys) == 12, run
    assert not os.path.exists(os.path.join(workdir, run, '.lock'))
  assert not os.path.exists(tmp_path / 'unpickled.log')
  # no file anywhere (run folders, wandb's, the report) holds the key
  for path in glob.glob(os.path.join(workdir, '**', '*'), recursive=True) + glob.glob(str(tmp_path / 'wandb*' / '**')):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        assert SECRET.encode() not in f.read(), path


# ----------------------------------------------------------------------------------------------
# Locks, between plain processes (no JAX: fast).

LOCK_HOLDER = """
import subprocess, sys, time
from experiments.locks import RunLock
assert RunLock(sys.argv[1] + '/.lock').acquire()
helper = subprocess.Popen(['sleep', '600'], stdout=subprocess.DEVNULL)   # outlives us, as wandb's service may
print(helper.pid, flush=True)
time.sleep(600)
"""

CONTENDER = """
import os, sys, time
from experiments.locks import RunLock
run_dir, go = sys.argv[1], sys.argv[2]
print('ready', flush=True)
while not os.path.exists(go):
  time.sleep(0.001)
lock = RunLock(run_dir + '/.lock')
print('won' if lock.acquire() else 'lost', flush=True)
while not os.path.exists(go + '.end'):
  time.sleep(0.01)
"""


def test_a_runner_killed_with_kill_9_holds_no_lock(tmp_path):
  from experiments.locks import RunLock  # noqa: PLC0415

  run_dir = str(tmp_path / 'run')
  holder = subprocess.Popen([sys.executable, '-c', LOCK_HOLDER, run_dir], cwd=REPO, stdout=subprocess.PIPE, text=True)
  helper = int(holder.stdout.readline())
  try:
    assert not RunLock(run_dir + '/.lock').acquire()  # a live runner holds it
    holder.kill()
    holder.wait()
    lock = RunLock(run_dir + '/.lock')
    assert lock.acquire()  # at once, though the dead runner's child still runs
    with open(lock.path) as f:
      assert json.load(f)['pid'] == os.getpid()
    lock.release()
    assert not os.path.exists(lock.path)
  finally:
    holder.kill()
    os.kill(helper, signal.SIGKILL)


@pytest.mark.parametrize('round_', range(20))
def test_runners_taking_over_a_dead_runners_lock_at_once_get_it_once(tmp_path, round_):
  """Six processes released together on a lock file its dead runner left: exactly one wins (the old
  'stale? delete it, then create mine' scheme let two or three win in about one round in six, so 20
  rounds catch it with probability 1 - (5/6)^20 = 97%; each round costs 0.1-0.2 s: no JAX)."""
  del round_
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  (run_dir / '.lock').write_text(json.dumps({'host': 'here', 'pid': 2**22 + 1}))
  go = str(tmp_path / 'go')
  procs = [
    subprocess.Popen([sys.executable, '-c', CONTENDER, str(run_dir), go], cwd=REPO, stdout=subprocess.PIPE, text=True)
    for _ in range(6)
  ]
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
  lock = RunLock(str(tmp_path / 'run' / '.lock'))
  assert lock.acquire()
  assert 'does not support file locks' in caplog.text and 'run only one runner on this workdir' in caplog.text
  lock.release()


def test_a_runner_killed_after_its_last_checkpoint_but_before_its_status_finishes_it_untrained(tmp_path):
  """kill -9 at ``finish:12``: the run's last checkpoint is committed and says so, its final status is
  not written. The next runner restores that checkpoint and marks the run finished without training
  a step more (and without writing a record twice)."""
  cfg = write_config(
    tmp_path,
    config_file_text(axes={'optim.learning_rate': [0.001]}, seeds=(0,), **{'model.width': 4, 'train.num_steps': 12}),
  )
  workdir, run = str(tmp_path / 'w'), f'{LR_A}-s0'
  code, _, err = _run(cfg, workdir, tmp_path, 'finish:12=SIGKILL')
  assert code == -signal.SIGKILL, err[-2000:]
  assert _state(workdir, run) == 'running' and '12' in _latest(workdir, run)
  before = records(os.path.join(workdir, run))
  code, out, err = _run(cfg, workdir, tmp_path)
  assert code == 0, err[-2000:]
  status = runlog.read_status(os.path.join(workdir, run))
  assert (status['state'], status['step'], status['resumed_from']) == ('finished', 12, 12)
  assert records(os.path.join(workdir, run)) == before
  reference = str(tmp_path / 'reference')
  sweep.run_sweep(sweep.load_config(cfg), reference, echo=lambda line: None)
  assert records(os.path.join(workdir, run)) == records(os.path.join(reference, run))
