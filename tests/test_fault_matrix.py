"""Faults on disk and in the process (issue 38, part 2), each shown to end in one line that names the
problem and the fix, with nothing already computed lost and a rerun that resumes.

The matrix (fault -> test):

* truncated or corrupt ``metrics.jsonl``, ``status.json``, an orbax checkpoint: test_reliability_state.py
  (``test_a_damaged_metrics_file_...``, ``test_a_run_killed_after_its_last_checkpoint_or_with_a_damaged_status_...``,
  ``test_an_unreadable_status_file_...``, ``test_a_damaged_checkpoint_falls_back_...``, ``test_flipped_bytes_...``);
* truncated or corrupt ``sweep.json`` and ``study.json``: here;
* a full disk while a log or a checkpoint is written, a read-only workdir (root ignores chmod, so the
  errors are injected where runlog and the checkpointer write): here;
* two runners on one workdir: test_reliability_processes.py (``test_runners_stopped_and_killed_...``);
* Ctrl-C during a report, a dataset file changed between a run and its resume, code changed under a
  sweep or a study: here.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import textwrap
import types

import numpy as np
import pytest

from deeprnn_jax import tasks
from deeprnn_jax.tasks import synthetic
from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import runlog
from experiments import report
from experiments import run as run_cli
from experiments import study
from experiments import sweep

import faults
from runner_helpers import config_file_text, records, write_config

A, B = 'rnn-d1-w4-lr0.001-s0', 'rnn-d1-w4-lr0.002-s0'  # the two grid points, trained in this order
SWEEP = config_file_text(axes={'optim.learning_rate': [0.001, 0.002]}, seeds=(0,), **{'model.width': 4})


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The config file and an uninterrupted sweep of it (12 steps; logs every 2, checkpoints every 4)."""
  root = tmp_path_factory.mktemp('reference')
  cfg = write_config(root, SWEEP.replace("'num_steps': 8", "'num_steps': 12"))
  workdir = str(root / 'w')
  result = sweep.run_sweep(sweep.load_config(cfg), workdir, echo=lambda line: None)
  assert sorted(result.trained) == [A, B]
  return cfg, workdir


def _argv(cfg, workdir, *extra):
  return ['--config', cfg, '--workdir', workdir, *extra]


def _one_line(err: str) -> str:
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1, err
  return lines[0]


class _FullDisk:
  """File writes of runlog (metrics appends; atomic writes: status.json, sweep.json, the report) that
  fail with ``code`` once a metrics record of step ``at`` is written (``at=0``: from the start)."""

  def __init__(self, monkeypatch, code: int, *, at: int, metrics: bool = True, atomic: bool = False):
    self.code, self.at, self.failing = code, at, at == 0
    real_open = open

    def fake_open(path, mode='r', *args, **kwargs):
      f = real_open(path, mode, *args, **kwargs)
      if 'a' not in mode:
        return f
      disk = self

      class Appender:  # a file whose write fails as a full disk's does: no file name in the error
        def __enter__(self):
          return self

        def __exit__(self, *exc):
          f.close()

        def write(self, text):
          disk.failing = disk.failing or f'"step": {disk.at},' in text
          if disk.failing:
            raise OSError(disk.code, os.strerror(disk.code))
          return f.write(text)

        def flush(self):
          f.flush()

      return Appender()

    def fake_mkstemp(dir=None, prefix='', suffix=''):  # noqa: A002 (tempfile's own argument name)
      if self.failing:
        raise OSError(self.code, os.strerror(self.code), os.path.join(dir, prefix + 'x' + suffix))
      import tempfile  # noqa: PLC0415

      return tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)

    if metrics:
      monkeypatch.setattr(runlog, 'open', fake_open, raising=False)  # runlog's `open` only
    if atomic:
      monkeypatch.setattr(runlog, 'tempfile', types.SimpleNamespace(mkstemp=fake_mkstemp))


def _no_space_for_checkpoint(monkeypatch, at: int):
  real = checkpoint_lib.Checkpointer.save

  def save(self, step, state, meta):
    if step == at:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(self.directory, 'latest', str(step)))
    return real(self, step, state, meta)

  monkeypatch.setattr(checkpoint_lib.Checkpointer, 'save', save)


STORAGE_FAULTS = {
  # name: (inject, the run's state after it, the message's start)
  'full_disk_writing_metrics': (
    lambda mp: _FullDisk(mp, errno.ENOSPC, at=6),
    'failed',
    'error: no space left on the device writing ',
  ),
  'full_disk_writing_a_checkpoint': (
    lambda mp: _no_space_for_checkpoint(mp, at=8),
    'failed',
    'error: no space left on the device writing ',
  ),
  'read_only_mid_run_every_write': (  # status.json cannot be written either: the run stays 'running'
    lambda mp: _FullDisk(mp, errno.EROFS, at=6, atomic=True),
    'running',
    'error: the file system is read-only writing ',
  ),
}


@pytest.mark.parametrize('fault', list(STORAGE_FAULTS))
def test_a_full_or_read_only_disk_stops_the_sweep_in_one_line_and_the_rerun_resumes(
  reference, tmp_path, capsys, monkeypatch, fault
):
  """The write fails inside the first grid point's training: the command stops there (the next point
  is not tried, where it would fail the same way), says what and how to resume in one line with exit
  code 74; the checkpoint of step 4 is kept, and the same command, once the disk takes writes again,
  ends with exactly the records of an uninterrupted sweep."""
  cfg, ref = reference
  workdir = str(tmp_path / 'w')
  inject, state, message = STORAGE_FAULTS[fault]
  with monkeypatch.context() as mp:
    inject(mp)
    code = run_cli.main(_argv(cfg, workdir, '--no-report'))
  line = _one_line(capsys.readouterr().err)
  assert code == 74 and line.startswith(message), line
  again = f'python -m experiments.run {" ".join(_argv(cfg, workdir, "--no-report"))}'
  assert line.endswith(f'and run the same command again to resume: {again}'), line
  assert runlog.read_status(os.path.join(workdir, A))['state'] == state
  assert not os.path.exists(os.path.join(workdir, B))  # stopped at once
  assert '4' in os.listdir(os.path.join(workdir, A, 'checkpoints', 'latest'))

  assert run_cli.main(_argv(cfg, workdir, '--no-report')) == 0
  assert runlog.read_status(os.path.join(workdir, A))['resumed_from'] == 4
  for run in (A, B):
    assert records(os.path.join(workdir, run)) == records(os.path.join(ref, run)), run


def test_a_read_only_workdir_is_one_line_and_writes_nothing(reference, tmp_path, capsys, monkeypatch):
  """Root ignores chmod, so a read-only workdir (a read-only mount, a folder of another user) is the
  error its first write would get: one line naming the file, exit 74, no run folder made."""
  cfg, _ = reference
  workdir = str(tmp_path / 'w')
  _FullDisk(monkeypatch, errno.EACCES, at=0, metrics=False, atomic=True)
  assert run_cli.main(_argv(cfg, workdir)) == 74
  line = _one_line(capsys.readouterr().err)
  assert line.startswith(f'error: permission denied writing {workdir}{os.sep}.sweep.json.'), line
  assert 'make the workdir writable (or use another --workdir)' in line
  assert os.listdir(workdir) == []


# ----------------------------------------------------------------------------------------------
# sweep.json and study.json.


@pytest.mark.parametrize(
  'damage',
  [b'', b'{"name": "w", "config": {"task": {"na', b'\x00\xff garbage', b'[1, 2]'],
  ids=['empty', 'truncated', 'garbage', 'a_list'],
)
def test_a_damaged_sweep_json_is_set_aside_and_rewritten_and_nothing_is_trained_again(
  reference, tmp_path, caplog, capsys, damage
):
  """A damaged sweep.json: the rerun warns in one line, keeps the damaged file beside (nothing of it is
  lost), writes a whole one, trains nothing again and writes the report."""
  cfg, ref = reference
  workdir = shutil.copytree(ref, str(tmp_path / 'w'))
  path = os.path.join(workdir, sweep.SWEEP_FILE)
  before = {run: records(os.path.join(workdir, run)) for run in (A, B)}
  open(path, 'wb').write(damage)
  assert run_cli.main(_argv(cfg, workdir)) == 0
  warnings = [r.getMessage() for r in caplog.records if 'sweep.json' in r.getMessage()]
  assert len(warnings) == 1 and 'is unreadable' in warnings[0] and 'moved it to' in warnings[0], warnings
  (aside,) = [f for f in os.listdir(workdir) if f.startswith('sweep.json.damaged-')]
  assert open(os.path.join(workdir, aside), 'rb').read() == damage
  assert sorted(r['run_id'] for r in runlog.read_json(path)['runs']) == [A, B]
  assert '2 finished' in capsys.readouterr().out and os.path.isfile(os.path.join(workdir, 'report.md'))
  assert {run: records(os.path.join(workdir, run)) for run in (A, B)} == before


TINY_STUDY = textwrap.dedent(
  """
  import ml_collections
  from deeprnn_jax.training.config import default_config, sweep_axes

  TASKS = ('count',)


  def get_config():
    c = ml_collections.ConfigDict()
    c.study = {'name': 'tiny', 'tasks': ('count',), 'bases': ('params', 'width'), 'shallow_depth': 1}
    return c


  def get_part(study, task, basis):
    c = default_config()
    c.task.name = 'parentheses'
    c.task.options = {'seq_len': 6, 'num_eval': 8, 'length_generalization': False}
    c.model.width = 4
    c.train.num_steps = 2
    c.train.batch_size = 4
    c.train.log_every_steps = 1
    c.train.eval_every_steps = 2
    c.train.checkpoint_every_steps = 2
    c.train.eval_batch_size = 8
    c.train.progress = 'off'
    c.logging.wandb_mode = 'disabled'
    c.sweep.axes = sweep_axes({'model.cell': ['rnn'], 'model.depth': [1]})
    c.sweep.seeds = (0,)
    if basis == 'params':
      c.sweep.param_budget = 400
      c.sweep.param_tolerance = 0.2
    return c
  """
)


def test_a_damaged_study_json_is_rebuilt_from_the_part_folders(tmp_path, caplog, capsys):
  """The study ran its parts in two commands; study.json is then garbled. The next command (one part,
  done already) sets the damaged file aside with a one-line warning and lists both parts again, read
  off their folders: the report still covers the earlier command's part, and nothing is trained again."""
  cfg = tmp_path / 'tiny_study.py'
  cfg.write_text(TINY_STUDY)
  workdir = str(tmp_path / 'study')
  argv = ['--config', str(cfg), '--workdir', workdir, '--no-report']
  assert study.main([*argv, '--parts', 'count-width']) == 0
  assert study.main([*argv, '--parts', 'count-params']) == 0
  path = os.path.join(workdir, study.STUDY_FILE)
  whole = runlog.read_json(path)
  open(path, 'w').write('{"name": "tiny", "parts": [{"task": "cou')
  capsys.readouterr()
  events = []
  assert study.main([*argv, '--parts', 'count-params'], on_event=lambda e, n: events.append(e)) == 0
  assert 'step' not in events  # nothing trained
  warnings = [r.getMessage() for r in caplog.records if 'study.json' in r.getMessage()]
  assert len(warnings) == 1 and 'is unreadable' in warnings[0] and 'moved it to' in warnings[0], warnings
  rebuilt = runlog.read_json(path)
  assert sorted(p['path'] for p in rebuilt['parts']) == sorted(p['path'] for p in whole['parts'])
  assert [f for f in os.listdir(workdir) if f.startswith('study.json.damaged-')]
  assert report.main([workdir]) == 0


# ----------------------------------------------------------------------------------------------
# Ctrl-C during a report.


def _ctrl_c_in_the_plots(monkeypatch):
  """Ctrl-C once summary.csv and verdicts.csv are written, while the plots are drawn."""

  def write_all(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(report.plots, 'write_all', write_all)


def test_ctrl_c_during_the_report_command_is_one_line_and_leaves_every_file_whole(
  reference, tmp_path, capsys, monkeypatch
):
  """``python -m experiments.report``: one line saying how to write it, exit 130; report.md is the whole
  old one, the runs untouched; the same command then writes the report."""
  _, ref = reference
  workdir = shutil.copytree(ref, str(tmp_path / 'w'))
  assert report.main([workdir]) == 0
  old = open(os.path.join(workdir, 'report.md')).read()
  capsys.readouterr()
  with monkeypatch.context() as mp:
    _ctrl_c_in_the_plots(mp)
    assert report.main([workdir]) == 130
  line = _one_line(capsys.readouterr().err)
  assert line == (
    f'stopped writing the report; the runs are untouched; write it with: python -m experiments.report {workdir}'
  )
  assert open(os.path.join(workdir, 'report.md')).read() == old
  assert records(os.path.join(workdir, A)) == records(os.path.join(ref, A))
  assert report.main([workdir]) == 0


def test_ctrl_c_during_the_runners_report_is_one_line_and_the_rerun_writes_it(reference, tmp_path, capsys, monkeypatch):
  """``python -m experiments.run``, every run done, Ctrl-C while it writes the report: one line, exit
  130; the rerun trains nothing and writes the report."""
  cfg, ref = reference
  workdir = shutil.copytree(ref, str(tmp_path / 'w'))
  with monkeypatch.context() as mp:
    _ctrl_c_in_the_plots(mp)
    assert run_cli.main(_argv(cfg, workdir)) == 130
  line = _one_line(capsys.readouterr().err)
  again = f'python -m experiments.run {" ".join(_argv(cfg, workdir))}'
  assert line.startswith('stopped at once') and line.endswith(again), line
  assert not os.path.exists(os.path.join(workdir, 'report.md'))
  events = []
  assert run_cli.main(_argv(cfg, workdir), on_event=lambda e, n: events.append(e)) == 0
  assert events == ['point', 'point'] and os.path.isfile(os.path.join(workdir, 'report.md'))  # no step trained


# ----------------------------------------------------------------------------------------------
# Data and code changed under a run.


def _file_task(*, path: str = '', seq_len: int = 6):
  """The adding task, its evaluation inputs scaled by the number in the file ``path``: a dataset file."""
  base = synthetic.adding(seq_len=seq_len, num_eval=24, length_generalization=False)
  scale = np.float32(open(path).read())
  splits = {k: {**v, 'inputs': np.asarray(v['inputs']) * scale} for k, v in base.eval_splits.items()}
  return dataclasses.replace(base, name='fault_matrix_file', eval_splits=splits)


def test_a_dataset_file_changed_before_a_resume_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
  """A run stopped at step 7 (Ctrl-C) whose dataset file then changes: the rerun refuses in one line
  (the data fingerprint kept in status.json at the start differs from the data now), exit 2, and
  touches nothing; with the file put back, it resumes from step 7."""
  monkeypatch.setitem(tasks.TASKS, 'fault_matrix_file', _file_task)
  data = tmp_path / 'data.txt'
  data.write_text('1.0')
  text = config_file_text(
    axes={'optim.learning_rate': [0.001]},
    seeds=(0,),
    **{'model.width': 4, 'train.num_steps': 12, 'task.name': 'fault_matrix_file', 'task.options': {'path': str(data)}},
  )
  cfg, workdir = write_config(tmp_path, text), str(tmp_path / 'w')
  argv = _argv(cfg, workdir, '--no-report')
  assert run_cli.main(argv, on_event=faults.signal_at('step:7=SIGINT')) == 130
  run = os.path.join(workdir, 'rnn-d1-w4-lr0.001-s0')
  status, kept = runlog.read_status(run), records(run)
  assert status['state'] == 'interrupted' and len(status['data_fingerprint']) == 16
  capsys.readouterr()

  data.write_text('2.0')
  assert run_cli.main(argv) == 2
  line = _one_line(capsys.readouterr().err)
  assert line.startswith(f'error: {run} started on other data (fingerprint {status["data_fingerprint"]}, now ')
  assert line.endswith(
    'a dataset file changed since; put the old file back to resume it, or use another workdir to train on the new data'
  )
  assert runlog.read_status(run) == status and records(run) == kept
  assert '7' in os.listdir(os.path.join(run, 'checkpoints', 'latest'))

  data.write_text('1.0')
  assert run_cli.main(argv) == 0
  assert runlog.read_status(run)['resumed_from'] == 7


def test_a_sweep_whose_code_changed_says_so_in_one_line_and_keeps_its_runs(reference, tmp_path, capsys):
  """A run made by another commit (config.json's ``code`` and status.json's ``git_commit``, as every run
  records them): a rerun of the sweep names the commits in one line and the fix, and keeps every run
  (a study runs each part's sweep through the same runner, so a study says it per part)."""
  if not runlog.code_version().get('git_commit'):
    pytest.skip('the code is not in a git checkout: no commit to compare')
  cfg, ref = reference
  workdir = shutil.copytree(ref, str(tmp_path / 'w'))
  run = os.path.join(workdir, A)
  config = runlog.read_json(os.path.join(run, runlog.CONFIG_FILE))
  config['code'] = {'git_commit': 'deadbeef' * 5, 'git_dirty': False}
  runlog.write_json(os.path.join(run, runlog.CONFIG_FILE), config)
  runlog.update_status(run, git_commit='deadbeef' * 5)
  assert run_cli.main(_argv(cfg, workdir, '--no-report')) == 0
  out = capsys.readouterr().out.splitlines()
  now = runlog.code_version()['git_commit'][:10]
  assert (
    f'the code changed: 1 run here was made by commit deadbeefde, this is {now}; results of two code versions '
    'may not compare: to rerun every run with this code, use another --workdir'
  ) in out
  assert records(run) == records(os.path.join(ref, A))
  assert runlog.read_status(run)['git_commit'] == 'deadbeef' * 5  # not retrained, nothing rewritten
