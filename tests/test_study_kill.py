"""A study survives kill -9: its runner killed three times in the middle of its parts, then run once more
to the end, leaves exactly the runs, and the metrics, of the same study run without interruption.

Each kill is hit with the trainer's event hook (as ``tests/faults.py``): the runner sends itself SIGKILL
at an exact moment, so nothing depends on timing. A study's runner sees the ``point`` event once per
grid point of every part (finished ones included, in ``start_order``), so "the k-th ``point`` event of
this process, then the next ``step:n`` (or ``checkpoint:n``)" names one place in one part's run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from deeprnn_jax.training import runlog
from experiments import study

from runner_helpers import records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8
PARTS = ('count-params', 'count-width')
KILL = 'DEEPRNN_JAX_TEST_STUDY_KILL'

# One task at both bases: one cell at depths 1 and 2, one seed (the vmapped seeds' resume is the sweep-level
# kill test's), 8 steps; logs every 2 steps, evaluates and checkpoints every 4: 2 runs a part.
STUDY = textwrap.dedent(
  f"""
  import ml_collections
  from deeprnn_jax.training.config import default_config, sweep_axes

  TASKS = ('count',)


  def get_config():
    c = ml_collections.ConfigDict()
    c.study = {{'name': 'killed', 'tasks': ('count',), 'bases': ('params', 'width'), 'shallow_depth': 1,
               'depths': (1, 2), 'budget': 400}}
    return c


  def get_part(study, task, basis):
    c = default_config()
    c.task.name = 'parentheses'
    c.task.options = {{'seq_len': 6, 'num_eval': 8, 'length_generalization': False}}
    c.model.width = 4
    c.train.num_steps = {STEPS}
    c.train.batch_size = 4
    c.train.log_every_steps = 2
    c.train.eval_every_steps = 4
    c.train.checkpoint_every_steps = 4
    c.train.eval_batch_size = 8
    c.train.progress = 'off'
    c.logging.wandb_mode = 'disabled'
    c.sweep.axes = sweep_axes({{'model.cell': ['gru'], 'model.depth': list(study['depths'])}})
    c.sweep.seeds = (0,)
    if basis == 'params':
      c.sweep.param_budget = study['budget']
      c.sweep.param_tolerance = 0.2
    return c
  """
)

# `python -c STUDY_RUNNER --config ... --workdir ...`: experiments.study in one process (parts trained
# in it, as `study.main(argv, on_event)` does), killing itself where $DEEPRNN_JAX_TEST_STUDY_KILL says:
# '<k>:<event>:<n>' is the first (event, n) after the k-th 'point' event.
STUDY_RUNNER = f"""
import os, signal, sys
from experiments import study
k, event, n = os.environ.get({KILL!r}, '0:none:0').split(':')
points = 0

def hook(name, step):
  global points
  points += name == 'point'
  if points >= int(k) > 0 and (name, step) == (event, int(n)):
    os.kill(os.getpid(), signal.SIGKILL)

sys.exit(study.main(sys.argv[1:], on_event=hook))
"""


def _run(argv, kill=''):
  env = {key: value for key, value in os.environ.items() if key != KILL}
  env.update({KILL: kill} if kill else {})
  proc = subprocess.run(
    [sys.executable, '-c', STUDY_RUNNER, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )
  return proc.returncode, proc.stdout, proc.stderr


def _trained(out: str) -> list[tuple[str, str]]:
  """The (part, grid point) a study runner trained, in order, from its lines ``[part i/N] <part>: ...``
  and ``[n/total] <variant> (...)``."""
  part, trained = None, []
  for line in out.splitlines():
    if line.startswith('[part '):
      part = line.split()[2].rstrip(':')
    elif line.startswith('['):
      trained.append((part, line.split()[1]))
  return trained


def _runs(workdir: str) -> dict[str, dict[str, dict]]:
  """Per part, each run folder's status.json."""
  out = {}
  for part in PARTS:
    folder = os.path.join(workdir, part)
    out[part] = {
      name: runlog.read_status(os.path.join(folder, name))
      for name in sorted(os.listdir(folder))
      if os.path.isfile(os.path.join(folder, name, 'status.json'))
    }
  return out


def _sweep_runs(workdir: str, part: str) -> list[str]:
  with open(os.path.join(workdir, part, 'sweep.json')) as f:
    return sorted(r['run_id'] for r in json.load(f)['runs'])


def test_a_study_killed_three_times_in_its_parts_ends_as_an_uninterrupted_one(tmp_path):
  """kill -9, each time with the same command rerun:

  1. inside a train step (step 6, past the step-4 checkpoint) of the first part's second grid point;
  2. inside a train step (step 3, before any checkpoint) of the second part's first grid point;
  3. while the step-4 checkpoint of the second part's second grid point is being written;

  then the same command once more, to the end. Each rerun resumes: a finished run is never trained
  again, and a killed one is taken up by the next runner. The study folder then holds the runs of an
  uninterrupted study, no more and no fewer, each finished at step 8 with bit-equal metrics.jsonl (the
  same program, and a resumed run follows the uninterrupted trajectory, as the sweep-level kill test
  in test_reliability_processes.py asserts), and study.json lists both parts.
  """
  cfg = tmp_path / 'study.py'
  cfg.write_text(STUDY)
  workdir, clean = str(tmp_path / 'killed'), str(tmp_path / 'clean')
  argv = ['--config', str(cfg), '--workdir', workdir, '--no-report']

  trained = []
  for kill in ('2:step:6', '3:step:3', '4:checkpoint:4'):
    code, out, err = _run(argv, kill)
    assert code == -signal.SIGKILL, f'{kill}: exit {code}\n{err[-3000:]}'
    trained.append(_trained(out))
  code, out, err = _run(argv)
  assert code == 0, err[-3000:]
  trained.append(_trained(out))

  # Where each kill landed: the point trained last by each killed runner.
  killed = [t[-1] for t in trained[:3]]
  assert [part for part, _ in killed] == ['count-params', 'count-width', 'count-width'], trained
  assert len(set(killed)) == 3, trained
  # A runner trains each point once; a point it finished is never trained again, and a point a runner
  # was killed in is taken up by the next one.
  seen = set()
  for k, points in enumerate(trained):
    assert len(points) == len(set(points)), (k, trained)
    done_before = seen - ({killed[k - 1]} if k else set())
    assert not done_before & set(points), (k, trained)
    assert k == 0 or points[0] == killed[k - 1], (k, trained)
    seen |= set(points)

  assert study.main(['--config', str(cfg), '--workdir', clean, '--no-report']) == 0

  runs, reference = _runs(workdir), _runs(clean)
  for part in PARTS:
    assert sorted(runs[part]) == sorted(reference[part]) == _sweep_runs(workdir, part) == _sweep_runs(clean, part)
    assert len(runs[part]) == 2, sorted(runs[part])  # 2 grid points x 1 seed
    assert {(p, v) for p, v in seen if p == part} == {(part, r.rsplit('-s', 1)[0]) for r in runs[part]}  # all trained
    for run, status in runs[part].items():
      assert (status['state'], status['step']) == ('finished', STEPS), (part, run, status)
      got = records(os.path.join(workdir, part, run))
      keys = [(r['step'], r['split']) for r in got]
      assert len(keys) == len(set(keys)), (part, run, keys)  # no record written twice
      assert got == records(os.path.join(clean, part, run)), (part, run)
  # each killed run was taken up from its step-4 checkpoint where orbax had committed one, else from scratch
  for part, variant in killed:
    assert runs[part][f'{variant}-s0']['resumed_from'] in (None, 4), (part, variant)

  with open(os.path.join(workdir, study.STUDY_FILE)) as f:
    written = json.load(f)
  with open(os.path.join(clean, study.STUDY_FILE)) as f:
    assert written == json.load(f)
  assert [p['path'] for p in written['parts']] == list(PARTS)
