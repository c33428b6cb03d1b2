"""Launching a sweep beyond one process: workers on every core (experiments/workers.py) and submitit jobs
(experiments/slurm.py).

Worker tests run a real parent (``python -c PARENT``) that starts real worker processes; the moments that
matter (both workers inside their own grid point, a worker or the parent killed at step 7, Ctrl-C at the
parent) are made exact with the trainer's event hook inside each worker (``WORKER``): a worker touches a
file at one event, waits for another worker's file at another, and sends a real signal to itself or to its
parent. Nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import identity
from deeprnn_jax.training import runlog
from experiments import run as run_cli
from experiments import slurm
from experiments import sweep
from experiments import workers

import faults
from runner_helpers import config_file_text, records, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LR_A, LR_B = 'rnn-d1-w4-lr0.001', 'rnn-d1-w4-lr0.002'
RUNS = [f'{v}-s{s}' for v in (LR_A, LR_B) for s in (0, 1)]


def _config(tmp_path) -> str:
  """Two grid points (learning rates) x two seeds of a 1-layer width-4 RNN, 12 steps: logs every 2 steps,
  evaluates and checkpoints every 4."""
  text = config_file_text(axes={'optim.learning_rate': [0.001, 0.002]}, **{'model.width': 4, 'train.num_steps': 12})
  return write_config(tmp_path, text, 'launch.py')


# ----------------------------------------------------------------------------------------------
# Who gets what (pure functions).


def test_each_worker_owns_its_own_cores_or_gpus():
  plan = workers.plan
  # CPU: one worker per core by default, each on its own core; K cores per worker with --devices-per-worker.
  assert [w.cpus for w in plan(None, 1, [0, 1, 2, 3])] == [(0,), (1,), (2,), (3,)]
  assert [w.cpus for w in plan(None, 2, [0, 1, 2, 3])] == [(0, 1), (2, 3)]
  assert [(w.name, w.count) for w in plan(None, 1, [4, 5])] == [('w1', 2), ('w2', 2)]
  # no more workers than grid points left (at least one), and never fewer than asked for by the machine
  assert len(plan(None, 1, list(range(16)), todo=3)) == 3 and len(plan(None, 1, [0, 1], todo=0)) == 1
  # fewer grid points left than cores: the cores are divided among the workers that start (measured;
  # see plan's docstring), unless K was given
  assert [w.cpus for w in plan(None, None, [0, 1], todo=1)] == [(0, 1)]
  assert [w.cpus for w in plan(None, None, [0, 1, 2, 3, 4], todo=2)] == [(0, 1), (2, 3, 4)]
  assert [w.cpus for w in plan(None, None, [0, 1, 2, 3], todo=9)] == [(0,), (1,), (2,), (3,)]
  assert [w.cpus for w in plan(2, None, [4, 5, 6, 7])] == [(4, 5), (6, 7)]
  assert [w.cpus for w in plan(None, 1, [0, 1], todo=1)] == [(0,)]
  assert [w.gpus for w in plan(None, None, [0, 1], ['0', '1'], todo=1)] == [('0',)]
  # more workers than cores, if asked for: they share the cores round-robin
  assert [w.cpus for w in plan(3, 1, [0, 1])] == [(0,), (1,), (0,)]
  # GPUs: one worker per GPU (a single accelerator: one worker), or per K GPUs; cores play no part
  assert [w.gpus for w in plan(None, 1, [0, 1], ['0', '1', '2', '3'])] == [('0',), ('1',), ('2',), ('3',)]
  assert [w.gpus for w in plan(None, 2, [0, 1], ['4', '5', '6', '7'])] == [('4', '5'), ('6', '7')]
  assert [w.gpus for w in plan(None, 1, list(range(16)), ['0'])] == [('0',)]
  assert plan(2, 1, [0], ['0', '1'], todo=1)[0].count == 1
  # every GPU belongs to at most one worker: asking for more is an error that says what is there
  with pytest.raises(ValueError, match=r'2 workers x 2 GPUs need 4 GPUs; 3 visible \(0,1,2\)'):
    plan(2, 2, [0], ['0', '1', '2'])
  with pytest.raises(ValueError, match='--devices-per-worker must be >= 1'):
    plan(None, 0, [0])


def test_the_gpus_a_launcher_sees_without_starting_jax():
  smi = lambda: 'GPU 0: NVIDIA H200 (UUID: GPU-1)\nGPU 1: NVIDIA H200 (UUID: GPU-2)\n'
  cuda = ['xla_cuda13']
  assert workers.visible_gpus({}, cuda, smi) == ['0', '1']
  assert workers.visible_gpus({'CUDA_VISIBLE_DEVICES': '2,3'}, cuda, smi) == ['2', '3']
  assert workers.visible_gpus({'CUDA_VISIBLE_DEVICES': ''}, cuda, smi) == []  # hidden on purpose
  assert workers.visible_gpus({'JAX_PLATFORMS': 'cpu'}, cuda, smi) == []  # JAX kept to the CPU
  assert workers.visible_gpus({}, [], smi) == []  # a CPU-only JAX
  assert workers.visible_gpus({}, cuda, lambda: '') == []  # no nvidia-smi


def test_a_worker_environment_holds_its_gpus_and_the_shared_cache():
  base = {'XLA_FLAGS': '--xla_backend_optimization_level=0', 'PATH': '/bin'}
  on_core = workers.worker_env(workers.Worker(1, 2, cpus=(1,)), base, '/cache')
  assert on_core == {**base, 'JAX_COMPILATION_CACHE_DIR': '/cache', 'PYTHONUNBUFFERED': '1'}
  assert base == {'XLA_FLAGS': '--xla_backend_optimization_level=0', 'PATH': '/bin'}
  on_gpus = workers.worker_env(workers.Worker(2, 2, gpus=('2', '3')), {'CUDA_VISIBLE_DEVICES': '0,1,2,3'})
  assert on_gpus['CUDA_VISIBLE_DEVICES'] == '2,3'
  # the cores go on the worker's command line: it pins itself before JAX starts
  assert workers.worker_args(workers.Worker(2, 2, cpus=(1,)), 77, ['--config', 'c.py']) == [
    '--worker',
    '2/2',
    '--parent',
    '77',
    '--cpus',
    '1',
    '--',
    '--config',
    'c.py',
  ]


@pytest.mark.parametrize(
  'extra, message',
  [
    (['--workers', '0'], "argument --workers: expected a whole number >= 1, got '0'"),
    (['--devices-per-worker', 'two'], "argument --devices-per-worker: expected a whole number >= 1, got 'two'"),
    (['--launcher', 'pbs'], "argument --launcher: invalid choice: 'pbs'"),
    (['--launcher', 'local', '--workers', '2'], 'error: --workers is for one machine'),
    (
      ['--launcher', 'slurm', '--config.launch.slurm_options=("qos",)'],
      "error: config key 'launch.slurm_options': each option looks like 'key=value'",
    ),
    (['--config.launch.timeout_min=0'], "error: config key 'launch.timeout_min': must be >= 1, got 0"),
  ],
)
def test_worker_and_launcher_options_are_checked_before_anything_runs(tmp_path, capsys, extra, message):
  cfg, workdir = write_config(tmp_path), str(tmp_path / 'w')
  try:
    code = run_cli.main(['--config', cfg, '--workdir', workdir, *extra])
  except SystemExit as e:  # argparse's mistakes exit from the parser
    code = e.code
  err = capsys.readouterr().err
  assert code == 2 and message in err and err.count('\n') == 1, err
  assert not os.path.exists(workdir)


def test_launch_settings_never_make_another_sweep():
  a = config_lib.default_config()
  b = config_lib.apply_overrides(a, [('launch.partition', 'gpu'), ('launch.timeout_min', 600)])
  assert identity.continuation_problem(a, config_lib.validate(b)) is None


# ----------------------------------------------------------------------------------------------
# The order runners start grid points: the costliest first, under the grid's own names.


def test_runners_start_the_costliest_grid_points_first_under_the_grid_names(tmp_path):
  # Cell x depth at width 8 on 2 input features, steps and seeds equal: the cost orders by parameters,
  # gru-d2 729 > gru-d1 297 > rnn-d2 233 > rnn-d1 97 (per gate W [in, 8], U [8, 8] and biases; a head of 9):
  # the reverse of the grid's order.
  config = sweep.load_config(write_config(tmp_path, config_file_text(seeds=(0, 1))))
  grid = [p.variant for p in sweep.expand(config)]
  assert grid == ['rnn-d1-w8', 'rnn-d2-w8', 'gru-d1-w8', 'gru-d2-w8']
  visited = []

  def note(point, seed):  # run_sweep asks about each point's seeds in the order it starts them; trains none
    visited.append(point.run_id(seed))
    return False

  sweep.run_sweep(config, str(tmp_path / 'w'), select=note, echo=lambda s: None)
  assert visited == [f'{v}-s{s}' for v in ('gru-d2-w8', 'gru-d1-w8', 'rnn-d2-w8', 'rnn-d1-w8') for s in (0, 1)]
  # Points of equal cost (here: learning rates) start in the grid's order.
  ties = sweep.load_config(
    write_config(tmp_path, config_file_text(axes={'optim.learning_rate': [0.003, 0.001, 0.002]}), 'ties.py')
  )
  assert [p.variant for p in sweep.start_order(sweep.expand(ties))] == [
    'rnn-d1-w8-lr0.003',
    'rnn-d1-w8-lr0.001',
    'rnn-d1-w8-lr0.002',
  ]


def test_a_resumed_sweep_trains_the_same_runs_when_the_grid_starts_from_its_end(tmp_path):
  config = sweep.load_config(write_config(tmp_path, config_file_text(axes={'model.depth': [1, 2]}, seeds=(0,))))
  workdir, calls = str(tmp_path / 'w'), {'n': 0}

  def stop_in_second_point():  # polled before each grid point and after each step: step 3 of the second
    calls['n'] += 1
    return calls['n'] == 1 + config.train.num_steps + 1 + 3

  from deeprnn_jax.training.train import Interrupted  # noqa: PLC0415

  with pytest.raises(Interrupted):
    sweep.run_sweep(config, workdir, should_stop=stop_in_second_point, echo=lambda s: None)
  deep, shallow = 'rnn-d2-w8-s0', 'rnn-d1-w8-s0'  # the deeper network is the grid's last point
  assert sorted(os.listdir(workdir)) == sorted([deep, shallow, sweep.SWEEP_FILE])
  assert {r: runlog.read_status(os.path.join(workdir, r))['state'] for r in (deep, shallow)} == {
    deep: 'finished',
    shallow: 'interrupted',
  }
  result = sweep.run_sweep(config, workdir, echo=lambda s: None)
  assert (result.skipped, result.trained) == ([deep], [shallow])
  assert runlog.read_status(os.path.join(workdir, shallow))['resumed_from'] == 3


# ----------------------------------------------------------------------------------------------
# Workers: real processes.

# experiments.run as a parent whose workers run WORKER (argv[1]); the run arguments follow.
PARENT = """
import sys
from experiments import run
sys.exit(run.main(sys.argv[2:], worker_command=[sys.executable, '-c', sys.argv[1]]))
"""

# A worker whose event hook does what $TEST_HOOKS says for it: {worker: {"<event>:<n>": [action, ...]}},
# an action one of ["touch", file], ["wait", file] (in $TEST_SYNC), ["cores", file] (writes the cores it may
# run on), ["kill", "self"|"parent", signal] or ["wait-stop"]: until this worker has been asked to stop (its
# command line's stop flag, which SIGINT and SIGTERM set), so it is still inside its grid point when the
# forwarded signal comes.
WORKER = """
import json, os, signal, sys, time
from experiments import worker
name = 'w' + sys.argv[sys.argv.index('--worker') + 1].split('/')[0]
actions = json.loads(os.environ.get('TEST_HOOKS', '{}')).get(name, {})
sync = os.environ.get('TEST_SYNC', '')

def hook(event, n):
  for what, *args in actions.get(f'{event}:{n}', ()):
    path = os.path.join(sync, args[0]) if args else ''
    if what == 'wait-stop':
      deadline = time.monotonic() + 240
      while not getattr(getattr(signal.getsignal(signal.SIGINT), '__self__', None), 'requested', False):
        assert time.monotonic() < deadline, f'{name} was never asked to stop'
        time.sleep(0.01)
    elif what == 'touch':
      open(path, 'w').close()
    elif what == 'cores':
      with open(path, 'w') as f:
        json.dump(sorted(os.sched_getaffinity(0)), f)
    elif what == 'wait':
      deadline = time.monotonic() + 240
      while not os.path.exists(path):
        assert time.monotonic() < deadline, f'{name} waited for {args[0]} in vain'
        time.sleep(0.01)
    elif what == 'kill':
      os.kill(os.getppid() if args[0] == 'parent' else os.getpid(), signal.Signals[args[1]])

sys.exit(worker.main(sys.argv[1:], on_event=hook))
"""

# w1 takes the first grid point (w2 waits for it to be inside it before looking), so w2 takes the
# second; each then waits at step 2 until the other is training too: both train at once.
TOGETHER = {
  'w1': {'step:1': [['touch', 'w1-in'], ['cores', 'w1-cores']], 'step:2': [['wait', 'w2-in']]},
  'w2': {
    'point:1': [['wait', 'w1-in']],
    'step:1': [['touch', 'w2-in'], ['cores', 'w2-cores']],
    'step:2': [['wait', 'w1-in']],
  },
}


def _with(hooks: dict, name: str, step: str, *actions) -> dict:
  hooks = json.loads(json.dumps(hooks))
  hooks[name].setdefault(step, []).extend(list(a) for a in actions)
  return hooks


def _parent(cfg, workdir, tmp_path, hooks=None, *extra) -> subprocess.Popen:
  sync = tmp_path / f'sync{len(list(tmp_path.glob("sync*")))}'
  sync.mkdir()
  env = dict(os.environ, WANDB_MODE='disabled', TEST_HOOKS=json.dumps(hooks or {}), TEST_SYNC=str(sync))
  return subprocess.Popen(
    [sys.executable, '-c', PARENT, WORKER, '--config', cfg, '--workdir', workdir, '--workers', '2', *extra],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _run_parent(cfg, workdir, tmp_path, hooks=None, *extra):
  proc = _parent(cfg, workdir, tmp_path, hooks, '--no-report', *extra)
  out, err = proc.communicate(timeout=600)
  return proc.returncode, out, err


def _trained(out: str) -> dict[str, set[str]]:
  """Which worker started which grid points, from the lines ``[w1] [n/total] <variant> (...)``."""
  found = {}
  for m in re.finditer(r'^\[(w\d)\] \[\d+/\d+\] (\S+)', out, re.M):
    found.setdefault(m.group(1), set()).add(m.group(2))
  return found


def _state(workdir, run):
  return (runlog.read_status(os.path.join(workdir, run)) or {}).get('state')


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The sweep trained once, undisturbed, by two workers (the runs any interrupted sweep must match)."""
  tmp_path = tmp_path_factory.mktemp('reference')
  cfg, workdir = _config(tmp_path), str(tmp_path / 'w')
  proc = _parent(cfg, workdir, tmp_path, TOGETHER)
  out, err = proc.communicate(timeout=600)
  cores = {w: json.loads((tmp_path / 'sync0' / f'{w}-cores').read_text()) for w in ('w1', 'w2')}
  return proc.returncode, out, err, workdir, cores


def test_two_workers_train_the_grid_together_and_the_parent_reports_once(reference):
  code, out, err, workdir, cores = reference
  assert code == 0, err[-3000:]
  # both trained at once, each its own grid point, never the same one, each on its own core
  assert _trained(out) == {'w1': {LR_A}, 'w2': {LR_B}}, out
  mine = workers.machine_cpus()
  assert cores == {'w1': [mine[0]], 'w2': [mine[1 % len(mine)]]}
  assert out.startswith(f'2 workers on this machine (w1: CPU {mine[0]}; w2: CPU {mine[1 % len(mine)]}), ')
  # one summary and one report, by the parent
  assert out.count('sweep ') == 1 and f'sweep {workdir}: 4 finished' in out
  assert out.count('report: ') == 1 and os.path.isfile(os.path.join(workdir, 'report.md'))
  statuses = [runlog.read_status(os.path.join(workdir, r)) for r in RUNS]
  assert all(s['state'] == 'finished' and s['workers'] == 2 for s in statuses)
  assert statuses[0]['pid'] == statuses[1]['pid'] != statuses[2]['pid'] == statuses[3]['pid']


def _same_as_reference(workdir, reference):
  for run in RUNS:
    assert records(os.path.join(workdir, run)) == records(os.path.join(reference[3], run)), run
    keys = [(r['step'], r['split']) for r in records(os.path.join(workdir, run))]
    assert len(keys) == len(set(keys)) and max(k[0] for k in keys) == 12, run


def test_a_worker_killed_with_kill_9_loses_nothing(tmp_path, reference):
  """w1 is killed inside step 7 of its grid point while w2 trains the other one: w2 finishes its point,
  the parent says what is left, and the same command finishes it exactly."""
  cfg, workdir = _config(tmp_path), str(tmp_path / 'w')
  hooks = _with(TOGETHER, 'w1', 'step:7', ['kill', 'self', 'SIGKILL'])
  code, out, err = _run_parent(cfg, workdir, tmp_path, hooks)
  assert code == 1, err[-3000:]
  assert '[w1] worker killed by SIGKILL' in err
  assert (
    f'2 runs unfinished ({LR_A}-s0, {LR_A}-s1); run the same command again to resume: python -m experiments.run '
    f'--config {cfg} --workdir {workdir} --workers 2 --no-report' in err
  )
  assert [_state(workdir, r) for r in RUNS] == ['running', 'running', 'finished', 'finished']
  code, out, err = _run_parent(cfg, workdir, tmp_path)
  assert code == 0 and _trained(out) == {'w1': {LR_A}}, err[-3000:]  # one point left: one worker
  assert runlog.read_status(os.path.join(workdir, f'{LR_A}-s0'))['resumed_from'] in (None, 4)
  _same_as_reference(workdir, reference)


@pytest.mark.parametrize('sig', ['SIGINT', 'SIGTERM'])
def test_ctrl_c_or_sigterm_at_the_parent_stops_every_worker_with_a_checkpoint(tmp_path, reference, sig):
  """The parent gets the signal while both workers train (w1 at step 7 sends it); it forwards it, each
  worker checkpoints and stops, and the parent exits 130 saying how to resume."""
  cfg, workdir = _config(tmp_path), str(tmp_path / 'w')
  hooks = _with(TOGETHER, 'w1', 'step:7', ['kill', 'parent', sig], ['wait-stop'])
  hooks = _with(hooks, 'w2', 'step:3', ['wait-stop'])
  code, out, err = _run_parent(cfg, workdir, tmp_path, hooks)
  assert code == 130, err[-3000:]
  assert re.search(rf'^{sig}: saving a checkpoint and stopping', err, re.M)  # the parent's own line
  for name in ('w1', 'w2'):  # forwarded to each worker
    assert f'[{name}] {sig}: saving a checkpoint and stopping' in err
  assert err.rstrip().endswith(
    'interrupted; every worker saved a checkpoint; run the same command again to resume: '
    f'python -m experiments.run --config {cfg} --workdir {workdir} --workers 2 --no-report'
  )
  for run, step in zip(RUNS, (7, 7, 3, 3)):  # each worker stopped where it was, with a checkpoint there
    status = runlog.read_status(os.path.join(workdir, run))
    assert (status['state'], status['step']) == ('interrupted', step), run
    assert str(step) in os.listdir(os.path.join(workdir, run, 'checkpoints', 'latest')), run
  code, out, err = _run_parent(cfg, workdir, tmp_path)
  assert code == 0, err[-3000:]
  _same_as_reference(workdir, reference)


def test_the_parent_killed_with_kill_9_takes_its_workers_with_it_and_loses_nothing(tmp_path, reference):
  cfg, workdir = _config(tmp_path), str(tmp_path / 'w')
  hooks = _with(TOGETHER, 'w1', 'step:7', ['kill', 'parent', 'SIGKILL'])
  hooks = _with(hooks, 'w2', 'step:3', ['wait', 'never'])  # still training when its parent dies
  code, _, err = _run_parent(cfg, workdir, tmp_path, hooks)
  assert code == -signal.SIGKILL, err[-3000:]
  pids = {runlog.read_status(os.path.join(workdir, r))['pid'] for r in RUNS}
  assert len(pids) == 2  # both workers were training
  deadline = time.monotonic() + 120
  while any(_alive(pid) for pid in pids):  # the kernel kills them (PR_SET_PDEATHSIG); wait for it to
    assert time.monotonic() < deadline, 'a worker outlived its parent'
    time.sleep(0.05)
  code, out, err = _run_parent(cfg, workdir, tmp_path)
  assert code == 0, err[-3000:]
  _same_as_reference(workdir, reference)


def _alive(pid: int) -> bool:
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
  except FileNotFoundError:
    return False


# ----------------------------------------------------------------------------------------------
# submitit: local jobs, a preemption, and what SLURM would get.


def test_the_local_launcher_trains_every_grid_point_as_a_job_and_reports_once(tmp_path, capsys):
  cfg, workdir = _config(tmp_path), str(tmp_path / 'w')
  assert (
    run_cli.main(['--config', cfg, '--workdir', workdir, '--launcher', 'local', '--config.launch.timeout_min=60']) == 0
  )
  out = capsys.readouterr().out
  assert f'submitted 2 grid points of {workdir} as local jobs:' in out
  assert re.search(rf'^ +\d+  {LR_A}$', out, re.M) and re.search(rf'^ +\d+  {LR_B}$', out, re.M)
  assert f'logs: {workdir}/submitit/' in out and f'sweep {workdir}: 4 finished' in out and 'report: ' in out
  for run in RUNS:
    status = runlog.read_status(os.path.join(workdir, run))
    assert (status['state'], status['launcher'], status['workers']) == ('finished', 'local', 2)
  assert runlog.read_json(os.path.join(workdir, sweep.SWEEP_FILE))['config_file'] == os.path.abspath(cfg)
  # the same command again submits nothing
  assert run_cli.main(['--config', cfg, '--workdir', workdir, '--launcher', 'local', '--no-report']) == 0
  assert 'nothing to submit' in capsys.readouterr().out


def test_a_preempted_local_job_checkpoints_is_requeued_and_resumes_exactly(tmp_path):
  """The job gets SLURM's warning signal (USR2) at step 7 (from its own event hook, as `scancel --signal`
  would send it); submitit's handler calls GridPointJob.checkpoint, which stops the training with a
  checkpoint, and requeues the job (the local executor restarts it), which resumes and finishes."""
  cfg = _config(tmp_path)
  config = sweep.load_config(cfg, ['launch.timeout_min=60'])
  points = [p for p in sweep.expand(config) if p.variant == LR_A]
  workdir = str(tmp_path / 'w')
  (job,) = slurm.submit(
    config, workdir, 'local', points=points, on_event=faults.signal_at('step:7=SIGUSR2'), echo=lambda line: None
  )
  job.wait()
  assert job.result()['states'] == {f'{LR_A}-s0': 'finished', f'{LR_A}-s1': 'finished'}
  log = job.stderr()
  assert 'Caught signal SIGUSR2' in log and 'this job is preempted' in log and 'Calling checkpoint method' in log
  assert re.search(r'Requeued job \S+ \(3 remaining timeouts\)', log), log  # a preemption is no time-out
  reference = str(tmp_path / 'reference')
  sweep.run_sweep(config, reference, select=lambda point, seed: point.variant == LR_A, echo=lambda line: None)
  for seed in (0, 1):
    status = runlog.read_status(os.path.join(workdir, f'{LR_A}-s{seed}'))
    assert 7 <= status['resumed_from'] < 12 and status['launcher'] == 'local'
    assert records(os.path.join(workdir, f'{LR_A}-s{seed}')) == records(os.path.join(reference, f'{LR_A}-s{seed}'))


FAKE_SBATCH = """#!/bin/sh
# sbatch for a test: keeps the script it is given and answers as SLURM does.
cp "$1" "$(dirname "$0")/submitted.sh"
echo "Submitted batch job 4242"
"""


def test_the_slurm_launcher_submits_one_job_array_with_the_launch_settings(tmp_path, capsys, monkeypatch):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'sbatch').write_text(FAKE_SBATCH)
  (bin_dir / 'srun').write_text('#!/bin/sh\nexit 1\n')  # submitit looks for it to believe it is on SLURM
  for tool in ('sbatch', 'srun'):
    (bin_dir / tool).chmod(0o755)
  monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
  cfg, workdir = _config(tmp_path), str(tmp_path / 'w')
  argv = [
    '--config',
    cfg,
    '--workdir',
    workdir,
    '--launcher',
    'slurm',
    '--config.launch.partition=gpu',
    '--config.launch.timeout_min=30',
    '--config.launch.gpus_per_task=1',
    '--config.launch.array_parallelism=1',
    '--config.launch.setup=("source .venv/bin/activate",)',
    '--config.launch.slurm_options=("qos=high",)',
  ]
  assert run_cli.main(argv) == 0
  out = capsys.readouterr().out
  assert f'submitted 2 grid points of {workdir} as job array 4242 (at most 1 at once):' in out
  assert re.search(rf'^ +4242_0  {LR_A}$', out, re.M) and re.search(rf'^ +4242_1  {LR_B}$', out, re.M)
  assert f'logs: {workdir}/submitit/4242_0_0_log.out' in out and f'python -m experiments.report {workdir}' in out
  script = (bin_dir / 'submitted.sh').read_text()
  for line in (
    '#SBATCH --array=0-1%1',
    '#SBATCH --partition=gpu',
    '#SBATCH --time=30',
    '#SBATCH --gpus-per-node=1',
    '#SBATCH --signal=USR2@120',
    '#SBATCH --qos=high',
    '#SBATCH --cpus-per-task=2',
    '#SBATCH --ntasks-per-node=1',
    f'#SBATCH --job-name={os.path.basename(workdir)}',
    'source .venv/bin/activate',
  ):
    assert line in script.splitlines(), (line, script)
  assert not any(os.path.exists(os.path.join(workdir, r)) for r in RUNS)  # nothing trained here
