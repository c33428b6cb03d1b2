"""``experiments.study``: a study's bad configs fail in one line before anything trains, study.json follows the
report's contract, a study resumes; and ``configs/studies/depth.py`` expands into valid parts."""

from __future__ import annotations

import json
import os
import re
import textwrap

import pytest

from deeprnn_jax.training import config as config_lib
from experiments import study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTH = os.path.join(REPO, 'configs', 'studies', 'depth.py')

# Two tasks, each at both bases: one rnn variant per depth, two steps, one seed.
TINY = textwrap.dedent(
  """
  import ml_collections
  from deeprnn_jax.training.config import default_config, sweep_axes

  TASKS = ('count', 'recall')


  def get_config():
    c = ml_collections.ConfigDict()
    c.study = {'name': 'tiny', 'tasks': ('count',), 'bases': ('params', 'width'), 'shallow_depth': 1,
               'depths': (1,), 'budget': 400}
    return c


  def get_part(study, task, basis):
    c = default_config()
    c.task.name = 'parentheses' if task == 'count' else 'selective_copy'
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
    c.sweep.axes = sweep_axes({'model.cell': ['rnn'], 'model.depth': list(study['depths'])})
    c.sweep.seeds = (0,)
    if basis == 'params':
      c.sweep.param_budget = study['budget']
      c.sweep.param_tolerance = 0.2
    return c
  """
)


@pytest.fixture
def tiny(tmp_path):
  path = tmp_path / 'tiny.py'
  path.write_text(TINY)
  return str(path)


def _fails_in_one_line(capsys, tiny, workdir, *overrides) -> str:
  events = []
  code = study.main(['--config', tiny, '--workdir', workdir, *overrides], on_event=lambda e, s: events.append(e))
  err = capsys.readouterr().err
  assert code == 2, err
  assert err.startswith('error: ') and err.count('\n') == 1, err
  assert not events and not os.path.exists(workdir)  # nothing trained, nothing written
  return err


def test_unknown_task_fails_in_one_line(capsys, tiny, tmp_path):
  err = _fails_in_one_line(capsys, tiny, str(tmp_path / 'w'), "--config.study.tasks=('count', 'sorting')")
  assert "unknown task 'sorting'" in err and 'count, recall' in err


def test_metric_a_task_lacks_fails_in_one_line(capsys, tiny, tmp_path):
  err = _fails_in_one_line(capsys, tiny, str(tmp_path / 'w'), '--config.report.metric=bleu')
  assert "does not report 'bleu'" in err and 'accuracy' in err and 'study part count-params' in err


def test_depth_the_budget_cannot_reach_fails_in_one_line(capsys, tiny, tmp_path):
  # 60 parameters: rnn depth 1 reaches them within 20%; at depth 16 even width 1 has more than 72 (3 a
  # layer, an embedding and a head): the depth 1 part of the grid is fine, depth 16 is not
  err = _fails_in_one_line(
    capsys, tiny, str(tmp_path / 'w'), '--config.study.depths=(1, 16)', '--config.study.budget=60'
  )
  assert 'study part count-params' in err and 'cannot be matched' in err and 'depth 16' in err


def test_a_later_part_is_checked_before_the_first_trains(capsys, tiny, tmp_path):
  # the recall part's task lacks the override's option: found before the count part trains
  err = _fails_in_one_line(
    capsys, tiny, str(tmp_path / 'w'), "--config.study.tasks=('count', 'recall')", '--config.task.options.num_types=2'
  )
  assert 'study part recall-params' in err and 'num_types' in err


def test_study_writes_the_contract_and_resumes(capsys, tiny, tmp_path):
  workdir = str(tmp_path / 'study')
  steps = []
  argv = ['--config', tiny, '--workdir', workdir, '--no-report']
  assert study.main(argv, on_event=lambda e, s: steps.append(s) if e == 'step' else None) == 0
  assert steps  # it trained
  out = capsys.readouterr().out
  assert 'checked part 1/2 count-params: 1 grid point (' in out and 'checked part 2/2 count-width' in out
  with open(os.path.join(workdir, study.STUDY_FILE)) as f:
    written = json.load(f)
  assert written == {
    'name': 'tiny',
    'shallow_depth': 1,
    'parts': [
      {'task': 'count', 'basis': 'params', 'path': 'count-params'},
      {'task': 'count', 'basis': 'width', 'path': 'count-width'},
    ],
  }
  for part in written['parts']:
    with open(os.path.join(workdir, part['path'], 'sweep.json')) as f:
      sweep_file = json.load(f)
    assert set(sweep_file['axes']) == {'model.cell', 'model.depth'}
    (run,) = sweep_file['runs']
    with open(os.path.join(workdir, part['path'], run['run_id'], 'status.json')) as f:
      assert json.load(f)['state'] == 'finished'
  assert written['parts'][0]['path'] != written['parts'][1]['path']
  capsys.readouterr()
  again = []
  assert study.main(argv, on_event=lambda e, s: again.append(e)) == 0
  assert again and set(again) == {'point'}  # both grid points visited, every run done: no step trained
  assert 'sweep' in capsys.readouterr().out


def test_a_study_stopped_in_a_later_part_lists_the_parts_it_ran(capsys, tiny, tmp_path, monkeypatch):
  """study.json is written before the first part trains: a study stopped (Ctrl-C, a killed job) in its
  second part still lists the first, so the report covers what ran and the next command adds to it."""
  workdir = str(tmp_path / 'study')
  ran = []

  def run_part(argv, on_event=None):
    ran.append(argv[argv.index('--workdir') + 1])
    os.makedirs(ran[-1], exist_ok=True)
    return 0 if len(ran) == 1 else study.cli.EXIT_INTERRUPTED

  monkeypatch.setattr(study.run_lib, 'main', run_part)
  assert study.main(['--config', tiny, '--workdir', workdir, '--no-report']) == study.cli.EXIT_INTERRUPTED
  assert len(ran) == 2 and 'run the same command again' in capsys.readouterr().err
  with open(os.path.join(workdir, study.STUDY_FILE)) as f:
    assert [p['path'] for p in json.load(f)['parts']] == ['count-params', 'count-width']


def test_parts_select_and_metric_is_recorded(capsys, tiny, tmp_path):
  workdir = str(tmp_path / 'study')
  argv = [
    '--config',
    tiny,
    '--workdir',
    workdir,
    '--no-report',
    '--parts',
    'count-width',
    '--config.report.metric=loss',
  ]
  assert study.main(argv) == 0, capsys.readouterr().err
  with open(os.path.join(workdir, study.STUDY_FILE)) as f:
    assert json.load(f)['parts'] == [{'task': 'count', 'basis': 'width', 'path': 'count-width', 'metric': 'loss'}]
  assert not os.path.exists(os.path.join(workdir, 'count-params'))
  code = study.main(['--config', tiny, '--workdir', workdir, '--parts', 'nope'])
  assert code == 2 and "unknown part 'nope'" in capsys.readouterr().err


def test_depth_study_parts_validate(monkeypatch, tmp_path):
  """The flagship study: every part of both scales is a valid sweep of cell x depth at its basis (tasks not
  built: that needs the data and minutes; ``--dry-run`` does it)."""
  (tmp_path / 'SST-2').mkdir()
  (tmp_path / 'ptb').mkdir()
  (tmp_path / 'fsdd').mkdir()
  for scale in ('cpu', 'full'):
    overrides = [
      f'study.scale={scale}',
      f'study.sst2_path={tmp_path / "SST-2"}',
      f'study.ptb_path={tmp_path / "ptb"}',
      f'study.digits_path={tmp_path / "fsdd"}',
      f'study.tasks={study.load_module(DEPTH).TASKS}',
    ]
    settings, parts, skipped = study.expand(DEPTH, overrides)
    assert all('basis out' in reason for _, reason in skipped), skipped  # never the data: it is here
    assert settings['shallow_depth'] == 1
    assert {p.basis for p in parts} == {'params', 'width'}
    assert {p.task for p in parts} == set(study.load_module(DEPTH).TASKS)
    for part in parts:
      axes = config_lib.flat_axes(part.config)
      assert axes['model.depth'][:3] == [1, 2, 4], part.name
      assert len(axes['model.cell']) == (1 if part.task == 'ptb' else 8), part.name
      assert bool(part.config.sweep.param_budget) == (part.basis == 'params')


def test_depth_study_names_missing_data_in_one_line(monkeypatch, tmp_path):
  monkeypatch.delenv('DEEPRNN_SST2_DIR', raising=False)
  with pytest.raises(study.ConfigError, match=r'part sst2 needs .*DEEPRNN_SST2_DIR'):
    study.expand(DEPTH, ['study.sst2_path=', "study.tasks=('sst2',)"])


def test_parts_without_their_data_are_skipped_each_with_the_line_that_enables_it(monkeypatch, capsys):
  """The README's study command on a fresh clone: the parts that need a download are named and
  skipped, the rest are selected; a part named by --parts that cannot run is an error."""
  for name in ('DEEPRNN_SST2_DIR', 'DEEPRNN_PTB_DIR', 'DEEPRNN_FSDD_DIR'):
    monkeypatch.delenv(name, raising=False)
  overrides = ['study.sst2_path=', 'study.ptb_path=', 'study.digits_path=']
  _, parts, skipped = study.expand(DEPTH, overrides)
  reasons = dict(skipped)
  assert 'sst2' not in {p.task for p in parts} and parts
  assert re.search(r"part sst2 needs GLUE's SST-2/ folder .*DEEPRNN_SST2_DIR", reasons['sst2-params'])
  assert any('basis out' in r for r in reasons.values())  # a basis the CPU grid leaves out, said so
  with pytest.raises(study.ConfigError, match=r'--parts sst2-params: part sst2 needs'):
    study.expand(DEPTH, overrides, ['sst2-params'])
  with pytest.raises(study.ConfigError, match=r'--parts adding-width: the cpu grid leaves the width basis out'):
    study.expand(DEPTH, overrides, ['adding-width'])
