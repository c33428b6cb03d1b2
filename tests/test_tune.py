"""Tuning (``experiments/tune.py``, ``experiments/optuna_studies.py``): each variant's Optuna study, selection on
validation only, pruning, resume after kill -9, and a study shared by worker processes through a real
PostgreSQL server.

The sampler and pruner tests run Optuna through our code with a stand-in trainer (``Context.trainer``,
the seam the code offers): they show what our seeding and reporting do, not what training does. The
end-to-end tests train real (tiny) runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import optuna
import pytest

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from experiments import optuna_studies as studies
from experiments import tune

import faults
from runner_helpers import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Tasks registered here (by config files too) do not outlive the test: conftest's restore_tasks.
pytestmark = pytest.mark.usefixtures('restore_tasks')


def config_text(space: dict, *, tune: dict | None = None, axes: dict | None = None, planted: bool = False, **over):
  """A config file: ``tiny_config(**over)`` with ``tune.space = space`` and ``tune.<k> = v``. ``planted``:
  the task is ``planted_adding``, the adding problem whose test targets are the val targets negated, so
  validation and test disagree about which setting is better."""
  base = config_lib.to_dict(tiny_config(**{'train.num_steps': 8, 'sweep.seeds': (0,), **over}))
  return textwrap.dedent(f"""
      import dataclasses, json
      from deeprnn_jax import tasks
      from deeprnn_jax.training.config import from_dict, sweep_axes, tune_space

      def planted_adding(*, seq_len: int = 6, num_eval: int = 24, length_generalization: bool = False):
        t = tasks.TASKS['adding'](seq_len=seq_len, num_eval=num_eval, length_generalization=False)
        val = t.eval_splits['val']
        test = {{**val, 'targets': -val['targets']}}
        return dataclasses.replace(t, name='planted_adding', eval_splits={{'val': val, 'test': test}})

      tasks.register_task('planted_adding', planted_adding)

      def get_config():
        c = from_dict(json.loads({json.dumps(base)!r}))
        if {planted!r}:
          c.task.name = 'planted_adding'
        c.sweep.axes = sweep_axes({axes or {}!r})
        c.tune.space = tune_space({space!r})
        c.tune.compare_fixed = False  # the tests that want the fixed setting's runs say so
        for k, v in {tune or {}!r}.items():
          setattr(c.tune, k, v)
        return c
  """)


def write(tmp_path, text: str, name: str = 'cfg.py') -> str:
  path = tmp_path / name
  path.write_text(text)
  return str(path)


LR = {'optim.learning_rate': ('log_uniform', 1e-4, 1e-1)}


# ----------------------------------------------------------------------------------------------
# Bad tune sections: one line, exit code 2, nothing written.


@pytest.mark.parametrize(
  'space, tune_keys, needle',
  [
    ({'optim.learnig_rate': ('log_uniform', 1e-4, 1e-2)}, {}, "did you mean 'optim.learning_rate'"),
    ({'optim.learning_rate': ('log_uniform', 1e-2, 1e-4)}, {}, 'empty range'),
    ({'optim.learning_rate': ('log_uniform', -1e-4, 1e-2)}, {}, 'positive lower bound'),
    ({'optim.warmup_steps': ('int', 5, 5)}, {}, 'empty range'),
    ({'optim.learning_rate': ('gaussian', 0.0, 1.0)}, {}, 'unknown distribution'),
    (LR, {'metric': 'test/loss'}, 'validation only'),
    (LR, {'trials': 0}, 'must be >= 1'),
    (LR, {'sampler': 'grid'}, "'grid' needs finite values"),
  ],
)
def test_a_bad_tune_section_fails_in_one_line_before_anything_is_written(tmp_path, capsys, space, tune_keys, needle):
  workdir = tmp_path / 'runs'
  code = tune.main(['--config', write(tmp_path, config_text(space, tune=tune_keys)), '--workdir', str(workdir)])
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
  assert not workdir.exists()


def test_an_unreachable_database_is_one_line_naming_it_without_its_password(tmp_path, capsys, monkeypatch):
  """The storage's password comes from the environment; the one-line error (exit code 2) names the
  database it cannot reach with the password masked, and nothing is written."""
  monkeypatch.setenv('TUNE_PW', 'hunter2-secret')
  cfg = write(tmp_path, config_text(LR, tune={'storage': 'postgresql+psycopg2://tuner:${TUNE_PW}@127.0.0.1:9/db'}))
  workdir = tmp_path / 'runs'
  assert tune.main(['--config', cfg, '--workdir', str(workdir)]) == 2
  out, err = capsys.readouterr()
  assert len(err.strip().splitlines()) == 1 and 'postgresql+psycopg2://tuner:***@127.0.0.1:9/db' in err, err
  assert 'hunter2' not in out + err and not workdir.exists()


# ----------------------------------------------------------------------------------------------
# Samplers and pruners, through our studies with a stand-in trainer.


def _plan(tmp_path, name: str, **tune_keys) -> studies.Plan:
  """A plan whose study (named after the workdir ``name``) lives in one SQLite file shared by the test."""
  space = LR | {'optim.warmup_steps': ('int', 0, 4)}
  storage = f'sqlite:///{tmp_path}/studies.db'
  config = config_lib.load(write(tmp_path, config_text(space, tune={'storage': storage, **tune_keys})))
  return tune.make_plan(config, str(tmp_path / name))


def _tune(plan: studies.Plan, trainer) -> list:
  """Tunes ``plan`` with ``trainer`` standing in for training; returns the study's trials in order."""
  ctx = studies.Context(lambda: False, lambda name, step: None, echo=lambda line: None, trainer=trainer)
  storage = studies.open_storage(plan)
  tune.tune_variants(plan, storage, ctx)
  (point,) = plan.points
  return sorted(studies.open_study(plan, storage, point).get_trials(), key=lambda t: t.number)


@pytest.mark.parametrize('sampler', ['tpe', 'qmc'])  # TPE's first trials are the random sampler's
def test_a_seeded_sampler_gives_the_same_trials_twice_and_a_resumed_study_goes_on(tmp_path, sampler):
  score = lambda run: (run.values['optim.learning_rate'] - 3e-3) ** 2 + run.values['optim.warmup_steps']
  first = _tune(_plan(tmp_path, 'a', sampler=sampler, trials=5, seed=7), score)
  again = _tune(_plan(tmp_path, 'b', sampler=sampler, trials=5, seed=7), score)
  assert [t.params for t in first] == [t.params for t in again]
  # Stopped after 3 trials, then resumed to 5 (a new process: a new sampler object): the same 5 trials.
  _tune(_plan(tmp_path, 'c', sampler=sampler, trials=3, seed=7), score)
  resumed = _tune(_plan(tmp_path, 'c', sampler=sampler, trials=5, seed=7), score)
  assert [t.params for t in resumed] == [t.params for t in first]
  other = _tune(_plan(tmp_path, 'd', sampler=sampler, trials=5, seed=8), score)
  assert [t.params for t in other] != [t.params for t in first]


def test_the_median_pruner_stops_the_weak_trials(tmp_path):
  """Each stand-in trial reports its learning rate at steps 1..4 (lower is better) and stops when told."""
  reported = {}

  def trainer(run):
    lr = run.values['optim.learning_rate']
    for step in range(1, 5):
      reported.setdefault(run.run_dir, []).append(lr)
      if run.report(lr, step):
        raise optuna.TrialPruned(f'pruned at step {step}')
    return lr

  trials = _tune(_plan(tmp_path, 'p', sampler='random', pruner='median', trials=12), trainer)
  states = [t.state.name for t in trials]
  assert states.count('COMPLETE') + states.count('PRUNED') == 12 and states.count('PRUNED') >= 2, states
  for i, t in enumerate(trials):
    if t.state.name == 'PRUNED':  # worse than the median of the earlier trials, and stopped at the first step
      earlier = sorted(u.intermediate_values[1] for u in trials[:i])
      assert t.intermediate_values[1] > earlier[len(earlier) // 2 - (len(earlier) % 2 == 0)]
      assert list(t.intermediate_values) == [1]
    else:
      assert list(t.intermediate_values) == [1, 2, 3, 4]
  assert all(t.state.name == 'COMPLETE' for t in trials[:5])  # the median pruner's startup trials


# ----------------------------------------------------------------------------------------------
# End to end: real trials, kill -9 and resume, selection on validation, the final seeds.


def _runner(cfg, workdir, fault='', *extra):
  env = dict(os.environ, WANDB_MODE='disabled', **{faults.ENV: fault})
  return subprocess.run(
    [sys.executable, '-c', faults.RUNNER, '--config', cfg, '--workdir', workdir, '--no-report', *extra],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_kill_9_mid_trial_then_resume_selects_on_validation_and_trains_fresh_seeds(tmp_path, capsys):
  """``python -m experiments.run`` on a tune config (it tunes) is killed (-9) inside trial 0. The rerun
  fails that trial (its runner's lock is free), asks a new one in its place, and completes the budget:
  two counted trials, none counted twice. The planted task's test split prefers the other learning rate
  (its targets are negated); the choice follows val, and no trial evaluated test."""
  space = {'optim.learning_rate': ('categorical', [1e-6, 0.05])}
  cfg = write(tmp_path, config_text(space, tune={'sampler': 'grid', 'trials': 2, 'compare_fixed': True}, planted=True))
  workdir = str(tmp_path / 'runs')
  killed = _runner(cfg, workdir, 'step:3=SIGKILL')
  assert killed.returncode == -9, killed.stderr[-2000:]
  assert tune.main(['--config', cfg, '--workdir', workdir, '--no-report']) == 0, capsys.readouterr().err
  summary = json.load(open(os.path.join(workdir, tune.TUNE_FILE)))
  (variant,) = summary['variants']
  v = summary['variants'][variant]
  assert v['trials'] == {'complete': 2, 'pruned': 0, 'failed': 1, 'surplus': 0, 'running': 0, 'waiting': 0}
  assert [c['trial'] for c in v['curve']] == [1, 2]  # trial 0 (killed) is failed, never counted
  values = {}
  for n in (1, 2):
    run_dir = os.path.join(workdir, variant, 'trials', str(n))
    config = json.load(open(os.path.join(run_dir, 'config.json')))
    records = runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE))
    assert {r['split'] for r in records} == {'train', 'val'}  # a trial never evaluates test
    assert runlog.read_status(run_dir)['resumed_from'] is None
    values[config['optim']['learning_rate']] = min(r[v['metric'][4:]] for r in records if r['split'] == 'val')
  assert sorted(values) == [1e-6, 0.05]
  assert v['chosen'] == {'optim.learning_rate': min(values, key=values.get)} == {'optim.learning_rate': 0.05}
  # The chosen setting trained the seeds, the only runs that read test: there the planted test disagrees.
  final = os.path.join(workdir, tune.FINAL_DIR, f'{variant}-s0')
  assert json.load(open(os.path.join(final, 'config.json')))['optim']['learning_rate'] == 0.05
  last = {r['split']: r for r in runlog.read_metrics(os.path.join(final, runlog.METRICS_FILE))}
  assert last['test']['loss'] > last['val']['loss']
  # The same seed at the config's own setting (tune.compare_fixed); the final runs' report says what the
  # search chose, with its curve, and which verdicts differ from the fixed setting's.
  fixed = os.path.join(workdir, tune.FIXED_DIR, f'{variant}-s0')
  assert json.load(open(os.path.join(fixed, 'config.json')))['optim']['learning_rate'] == 1e-3  # tiny_config's
  from experiments import report  # noqa: PLC0415

  report.write_report(os.path.join(workdir, tune.FIXED_DIR))
  text = open(report.write_report(os.path.join(workdir, tune.FINAL_DIR))).read()
  assert '## Tuning' in text and '| `optim.learning_rate`=0.05 |' in text, text
  assert "Verdicts at the tuned settings against the same seeds at the config's fixed setting" in text
  assert os.path.exists(os.path.join(workdir, tune.FINAL_DIR, 'tuning.png'))
  # Once more: everything is done, nothing trains.
  capsys.readouterr()
  assert tune.main(['--config', cfg, '--workdir', workdir, '--no-report']) == 0
  out = capsys.readouterr().out
  assert not re.search(r' trial \d+:|^\[1/1\]', out, re.M), out
  # --dry-run: the numbers of trials, and a time estimated from the finished ones.
  assert tune.main(['--config', cfg, '--workdir', workdir, '--dry-run']) == 0
  out = capsys.readouterr().out
  assert '1 variants x 2 trials per variant = 2 trials (0 left)' in out and 'mean of the 2 finished' in out, out


def test_two_workers_share_a_postgresql_study_and_run_no_trial_twice(tmp_path):
  pgserver = pytest.importorskip('pgserver', reason='pgserver (the dev extra) is not installed')
  try:
    server = pgserver.get_server(str(tmp_path / 'pg'), cleanup_mode='stop')
    uri = server.get_uri()
  except Exception as e:  # pylint: disable=broad-except
    pytest.skip(f'pgserver cannot start a PostgreSQL server here: {str(e).splitlines()[0][:200]}')
  try:
    cfg = write(
      tmp_path, config_text(LR, tune={'sampler': 'random', 'trials': 4, 'storage': uri}, **{'train.num_steps': 4})
    )
    workdir = str(tmp_path / 'runs')
    proc = subprocess.run(
      [
        sys.executable,
        '-m',
        'experiments.tune',
        '--config',
        cfg,
        '--workdir',
        workdir,
        '--workers',
        '2',
        '--no-report',
      ],
      cwd=REPO,
      env=dict(os.environ, WANDB_MODE='disabled'),
      capture_output=True,
      text=True,
      timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    started = [tuple(m) for m in re.findall(r'^\[(w\d)\] \S+ trial (\d+):', proc.stdout, re.M)]
    numbers = [int(n) for _, n in started]
    assert len(numbers) == len(set(numbers)) and len(numbers) >= 4, proc.stdout  # no trial number run twice
    summary = json.load(open(os.path.join(workdir, tune.TUNE_FILE)))
    ((variant, v),) = summary['variants'].items()
    assert v['trials']['complete'] == 4 and v['trials']['running'] == 0, v['trials']  # exactly the budget
    assert len(started) == 4 + v['trials']['failed']  # every started trial is counted or failed, not more
    for n in numbers:
      status = runlog.read_status(os.path.join(workdir, variant, 'trials', str(n)))
      assert status['state'] == 'finished' and status['resumed_from'] is None
    study = optuna.load_study(study_name=v['study'], storage=uri.replace('postgresql://', 'postgresql+psycopg2://'))
    assert sorted(t.number for t in study.trials if t.state.name == 'COMPLETE') == sorted(numbers)
  finally:
    server.cleanup()
