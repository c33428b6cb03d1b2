"""Sweeps end to end: grid -> runs -> report; resumable scheduling; parameter matching; wandb agent."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml

from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import parallel
from deeprnn_jax.training import runlog
from deeprnn_jax.training import train as train_lib
from experiments import run as run_cli
from experiments import sweep

from runner_helpers import config_file_text, records, tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT_FILES = (
  'report.md',
  'summary.csv',
  'learning_curves.png',
  'final_vs_depth.png',
  'convergence_vs_depth.png',
  'grad_norms.png',
  'diverged.png',
)


def test_seed_program_separate_trains_one_seed_at_a_time(tmp_path):
  text = config_file_text(axes={'model.depth': [1]}, **{'sweep.seed_program': 'separate', 'train.num_steps': 2})
  workdir = str(tmp_path / 'runs')
  assert run_cli.main(['--config', write_config(tmp_path, text), '--workdir', workdir]) == 0
  for seed in (0, 1):
    status = runlog.read_status(os.path.join(workdir, f'rnn-d1-w8-s{seed}'))
    assert status['state'] == 'finished' and (status['seeds_in_program'], status['seed_program']) == (1, 'single')


def test_tiny_sweep_writes_every_report_file_and_a_rerun_trains_nothing(tmp_path, capsys):
  cfg = write_config(tmp_path)
  workdir = str(tmp_path / 'runs' / 'tiny')
  assert run_cli.main(['--config', cfg, '--workdir', workdir]) == 0
  out = capsys.readouterr().out
  assert 'sweep' in out and '8 finished' in out
  runs = sorted(d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d)))
  assert runs == [f'{c}-d{d}-w8-s{s}' for c in ('gru', 'rnn') for d in (1, 2) for s in (0, 1)]
  for run in runs:
    assert {'config.json', 'metrics.jsonl', 'status.json', 'checkpoints'} <= set(os.listdir(os.path.join(workdir, run)))
    status = runlog.read_status(os.path.join(workdir, run))
    assert status['seeds_in_program'] == 2 and status['seed_program'] == parallel.resolve_seed_program('auto')
  for name in REPORT_FILES:
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  summary = open(os.path.join(workdir, 'summary.csv')).read().splitlines()
  assert len(summary) == 1 + 8
  assert summary[0].startswith('run_id,cell,depth,width,top_width,seed,params,status')
  report = open(os.path.join(workdir, 'report.md')).read()
  assert '## Findings' in report and 'depth 2 vs depth 1' in report and '![' in report
  assert 'Variant names read `<cell>-d<depth>-w<width>' in report  # the run names explained

  # The same command again: everything is done, nothing is trained.
  config = sweep.load_config(cfg)
  result = sweep.run_sweep(config, workdir, echo=lambda s: None)
  assert len(result.skipped) == 8 and not result.trained


def test_a_sweep_resumes_the_runs_it_did_not_finish(tmp_path):
  config = tiny_config(
    **{'sweep.axes': config_lib.sweep_axes({'optim.learning_rate': [0.001, 0.002]}), 'sweep.seeds': (0,)}
  )
  workdir = str(tmp_path / 'w')
  calls = {'n': 0}

  def stop_in_second_run():  # polled before each grid point and after each step: step 3 of the second run
    calls['n'] += 1
    return calls['n'] == 1 + config.train.num_steps + 1 + 3

  from deeprnn_jax.training.train import Interrupted  # noqa: PLC0415

  first_lines = []
  with pytest.raises(Interrupted):
    sweep.run_sweep(config, workdir, should_stop=stop_in_second_run, echo=first_lines.append)
  # After each grid point, the whole sweep's progress and time left (at this command's time per run).
  assert re.fullmatch(r'sweep: 1 of 2 runs done; about (\d+ s|\d+m\d\ds) left', first_lines[1]), first_lines
  first, second = 'rnn-d1-w8-lr0.001-s0', 'rnn-d1-w8-lr0.002-s0'
  states = {r: runlog.read_status(os.path.join(workdir, r))['state'] for r in (first, second)}
  assert states == {first: 'finished', second: 'interrupted'}
  assert not os.path.exists(os.path.join(workdir, second, runlog.LOCK_FILE))
  lines = []
  result = sweep.run_sweep(config, workdir, echo=lines.append)
  assert result.skipped == [first] and result.trained == [second]
  assert runlog.read_status(os.path.join(workdir, second))['resumed_from'] == 3
  assert lines[0] == f'1 of 2 runs finished; resuming {second} from step 3'  # the rerun says what it picks up
  assert lines[-1] == 'sweep: 2 of 2 runs done'  # nothing left to estimate


def test_a_run_locked_by_a_live_runner_is_left_to_it(tmp_path):
  config = tiny_config(**{'sweep.axes': config_lib.sweep_axes({'optim.learning_rate': [0.001, 0.002]})})
  workdir = str(tmp_path / 'w')
  first, second = 'rnn-d1-w8-lr0.001-s0', 'rnn-d1-w8-lr0.002-s0'
  held = sweep.RunLock(runlog.RunFolder(os.path.join(workdir, first)).lock)
  assert held.acquire()  # flock: a second claim fails, even from this process
  assert not sweep.RunLock(runlog.RunFolder(os.path.join(workdir, first)).lock).acquire()
  result = sweep.run_sweep(config, workdir, echo=lambda s: None)
  assert result.locked == [first] and result.trained == [second]
  held.release()
  # a lock file left by a process that no longer exists holds nothing (the kernel released its flock)
  with open(os.path.join(workdir, first, runlog.LOCK_FILE), 'w') as f:
    json.dump({'host': socket.gethostname(), 'pid': 2**22 + 12345}, f)
  assert sweep.RunLock(runlog.RunFolder(os.path.join(workdir, first)).lock).acquire()


@pytest.mark.parametrize('cell,connection', [('lstm', 'stacked'), ('gru', 'residual'), ('rnn', 'skip')])
def test_parameter_matching_within_two_percent(cell, connection):
  config = tiny_config(
    **{
      'model.cell': cell,
      'model.connection': connection,
      'sweep.axes': config_lib.sweep_axes({'model.depth': [1, 3]}),
      'sweep.param_budget': 7000,
      'sweep.param_tolerance': 0.02,
    }
  )
  points = sweep.expand(config)
  tasks = {}
  assert [p.config.model.depth for p in points] == [1, 3]
  for p in points:
    # the count the sweep solved for is the size of the parameters the trainer initializes
    task = tasks.setdefault('t', build.task_from_config(p.config))
    model = build.model_from_config(p.config, task)
    params = train_lib.init_state(model, build.optimizer_from_config(p.config)[0], task, 0).params
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) == p.params
    assert abs(p.params - 7000) / 7000 <= 0.02, (p.variant, p.params)
  widths = [p.config.model.width for p in points]
  assert widths == sorted(widths, reverse=True)  # deeper is narrower at a fixed budget


def test_parameter_matching_says_when_a_budget_cannot_be_met():
  config = tiny_config(**{'sweep.axes': config_lib.sweep_axes({'model.depth': [1, 3]}), 'sweep.param_budget': 20})
  with pytest.raises(config_lib.ConfigError, match='cannot be matched within 2%'):
    sweep.expand(config)


def test_wandb_agent_entry_point_runs_one_point_from_the_exported_sweep_file(tmp_path):
  cfg = write_config(tmp_path)
  workdir = str(tmp_path / 'runs' / 'agent')
  config = sweep.load_config(cfg, ['train.num_steps=4'])
  path = sweep.export_wandb_sweep(config, cfg, workdir, overrides=['train.num_steps=4'])
  spec = yaml.safe_load(open(path))
  assert spec['method'] == 'grid'
  assert spec['parameters'] == {
    'model.cell': {'values': ['rnn', 'gru']},
    'model.depth': {'values': [1, 2]},
    'train.seed': {'values': [0, 1]},
  }
  # What `wandb agent` does for one run of the grid: substitute the macros and run the command.
  args = ['--model.cell=rnn', '--model.depth=1', '--train.seed=1']
  command = []
  for part in spec['command']:
    command += {'${env}': [], '${interpreter}': [sys.executable], '${args}': args}.get(part, [part])
  env = dict(
    os.environ,
    WANDB_MODE='offline',
    WANDB_SWEEP_ID='localtest',
    WANDB_RUN_ID='agentrun1',
    WANDB_DIR=str(tmp_path / 'wandb'),
    WANDB_CACHE_DIR=str(tmp_path / 'wandb_cache'),
    WANDB_CONFIG_DIR=str(tmp_path / 'wandb_config'),
  )
  env.pop('WANDB_API_KEY', None)
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  runs = [d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d))]
  assert runs == ['rnn-d1-w8-s1']
  status = runlog.read_status(os.path.join(workdir, 'rnn-d1-w8-s1'))
  assert status['state'] == 'finished' and status['step'] == 4 and status['seeds_in_program'] == 1


def test_the_seed_program_asked_for_is_the_one_that_trains(tmp_path, capsys):
  """``sweep.seed_program='vmap'`` on CPU (where 'auto' is 'loop'): the console, status.json and the
  program agree (the run config kept only the parameter budget of ``sweep``, so 'vmap' never reached
  training before)."""
  text = config_file_text(axes={'model.depth': [1]}, **{'sweep.seed_program': 'vmap', 'train.num_steps': 2})
  workdir = str(tmp_path / 'runs')
  assert run_cli.main(['--config', write_config(tmp_path, text), '--workdir', workdir, '--no-report']) == 0
  assert 'seeds 0, 1 in one program (vmap)' in capsys.readouterr().out
  for seed in (0, 1):
    status = runlog.read_status(os.path.join(workdir, f'rnn-d1-w8-s{seed}'))
    assert (status['seed_program'], status['seeds_in_program']) == ('vmap', 2)


def test_a_finished_sweep_extended_to_more_steps_equals_the_longer_sweep(tmp_path, capsys):
  """8 steps, then the same command with ``train.num_steps=12``: every run continues from its final
  checkpoint, and its records and final state equal those of a sweep run for 12 steps at once
  (constant learning rate; 8 is on the log and eval cadence)."""
  cfg = write_config(tmp_path, config_file_text(axes={'model.cell': ['rnn']}))
  short, longer = str(tmp_path / 'short'), str(tmp_path / 'long')
  assert run_cli.main(['--config', cfg, '--workdir', short, '--no-report']) == 0
  assert run_cli.main(['--config', cfg, '--workdir', longer, '--no-report', '--config.train.num_steps=12']) == 0
  capsys.readouterr()
  extend = ['--config', cfg, '--workdir', short, '--config.train.num_steps=12']
  assert run_cli.main([*extend, '--dry-run']) == 0
  assert 'finished at step 8; extends to 12' in capsys.readouterr().out
  assert run_cli.main([*extend, '--no-report']) == 0
  for seed in (0, 1):
    run = f'rnn-d1-w8-s{seed}'
    status = runlog.read_status(os.path.join(short, run))
    assert (status['state'], status['step'], status['resumed_from']) == ('finished', 12, 8)
    assert records(os.path.join(short, run)) == records(os.path.join(longer, run))
    assert json.load(open(os.path.join(short, run, runlog.CONFIG_FILE)))['train']['num_steps'] == 12
    digests = [
      json.load(open(os.path.join(w, run, 'checkpoints', 'latest', '12', 'meta', 'metadata')))['state_digest']
      for w in (short, longer)
    ]
    assert digests[0] == digests[1]
  again = sweep.run_sweep(sweep.load_config(cfg, ['train.num_steps=12']), short, echo=lambda s: None)
  assert not again.trained and len(again.skipped) == 2  # and now it is done
