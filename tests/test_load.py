"""Trained runs loaded back (``dr.load_run``) and evaluated (``experiments.evaluate``): a loaded run
reproduces what it recorded; evaluations never touch the training records."""

from __future__ import annotations

import json
import os
import re

import jax

import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training import train as train_lib
from experiments import evaluate as evaluate_cli

from runner_helpers import records, tiny_config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """One run alone and a group of two seeds (looped in one program), 12 steps each."""
  root = tmp_path_factory.mktemp('load')
  alone = str(root / 'w' / 'alone')
  train_lib.train(tiny_config(), alone)
  group = [str(root / 'w' / f'group-s{s}') for s in (0, 1)]
  train_lib.train_seeds([tiny_config(**{'train.seed': s}) for s in (0, 1)], group, seed_program='loop')
  return root, alone, group


def _recorded(run_dir, step, split):
  (r,) = [r for r in records(run_dir) if r['step'] == step and r['split'] == split]
  return {k: v for k, v in r.items() if k not in ('step', 'split')}


def test_a_loaded_run_reproduces_its_recorded_metrics_exactly(trained):
  _, alone, group = trained
  for run_dir in (alone, *group):
    run = dr.load_run(run_dir, checkpoint='last')
    assert run.step == 12
    got = run.evaluate(['val', 'test'])
    assert got == {'val': _recorded(run_dir, 12, 'val'), 'test': _recorded(run_dir, 12, 'test')}, run_dir
    best = dr.load_run(run_dir, checkpoint='best')
    status = runlog.read_status(run_dir)
    assert best.step == status['best_step']
    assert best.evaluate(['val'])['val']['loss'] == status['best_value']


def test_a_loaded_run_is_evaluated_by_the_seed_program_its_status_records(trained, monkeypatch):
  """A lone run was trained by the single-seed program, a looped group by the looped one: each is
  re-evaluated by that program (status.json's ``seed_program``), not by the vmapped one. On a run this
  small the vmapped program's numbers can be bit-equal, so the program built is checked, not them."""
  _, alone, group = trained
  built = []

  class Spy(train_lib.Programs):
    def __init__(self, config, task, seed_program):
      built.append(seed_program)
      super().__init__(config, task, seed_program)

  monkeypatch.setattr(train_lib, 'Programs', Spy)
  for run_dir, want in ((alone, 'single'), (group[0], 'loop'), (group[1], 'loop')):
    assert runlog.read_status(run_dir)['seed_program'] == want
    built.clear()
    dr.load_run(run_dir, checkpoint='last').evaluate(['val'])
    assert built == [want], run_dir


def test_load_run_unpacks_and_runs_the_model_on_a_batch(trained):
  _, alone, _ = trained
  model, params, task, config = dr.load_run(alone, checkpoint=8)
  batch = task.eval_splits['test']
  outputs = model.apply({'params': params}, batch['inputs'][:3], batch['lengths'][:3])
  assert outputs.shape == (3, 1) and np.all(np.isfinite(outputs))
  assert config.model.cell == 'rnn' and task.name == 'adding'


@pytest.fixture(scope='module')
def best_not_last(tmp_path_factory):
  """A run keeping its saves of steps 4, 8 and 12 whose best checkpoint is step 4 (as a run whose
  validation loss rose after step 4 would keep; the best store is rewritten with the step-4 save, since
  a loss that rises on every CPU cannot be planted by training 12 steps). Returns the run folder and
  each kept step's parameters."""
  run_dir = str(tmp_path_factory.mktemp('best') / 'w' / 'run')
  train_lib.train(tiny_config(**{'train.keep_checkpoints': 3}), run_dir)
  ck = checkpoint_lib.Checkpointer(runlog.RunFolder(run_dir).checkpoints, keep=3)
  try:
    assert ck.steps() == {'latest': [4, 8, 12], 'best': [ck.best_step()]}
    saved = {s: ck.restore_latest(None, max_step=s) for s in (4, 8, 12)}
    ck.discard_after(0)  # drops every save, the best included ...
    for s in (4, 8, 12):  # ... then the latest ones come back and step 4 becomes the best
      ck.save(s, saved[s][1], saved[s][2])
    ck.save_best(4, saved[4][1], saved[4][2])
    ck.wait()
    assert ck.steps() == {'latest': [4, 8, 12], 'best': [4]}
  finally:
    ck.close()
  return run_dir, {s: saved[s][1]['params'] for s in saved}


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_best_loads_the_best_checkpoint_not_the_last(best_not_last):
  run_dir, params = best_not_last
  best = dr.load_run(run_dir, checkpoint='best')
  assert best.step == 4 and _same(best.params, params[4]) and not _same(best.params, params[12])
  last = dr.load_run(run_dir, checkpoint='last')
  assert last.step == 12 and _same(last.params, params[12])
  assert dr.load_run(run_dir, checkpoint=8).step == 8 and _same(dr.load_run(run_dir, checkpoint=8).params, params[8])


@pytest.mark.parametrize('step', [2, 10, 13])
def test_a_step_that_was_not_kept_fails_instead_of_loading_an_earlier_one(best_not_last, step):
  # 10 lies between kept saves (8 and 12): a fallback to the newest save at or before it would load 8.
  run_dir, _ = best_not_last
  message = f"no readable checkpoint {step} (latest steps: 4, 8, 12; best: 4); try checkpoint='last'"
  with pytest.raises(dr.training.load.RunNotFoundError, match=re.escape(message)):
    dr.load_run(run_dir, checkpoint=step)


@pytest.mark.parametrize(
  'checkpoint,message',
  [
    (5, 'no readable checkpoint 5 (latest steps: 8, 12; best: '),
    ('first', "checkpoint must be 'best', 'last' or a step number"),
  ],
)
def test_a_missing_checkpoint_is_a_one_line_error(trained, checkpoint, message):
  _, alone, _ = trained
  with pytest.raises((FileNotFoundError, ValueError), match=re.escape(message)):
    dr.load_run(alone, checkpoint=checkpoint)


def test_a_folder_that_is_not_a_run(tmp_path):
  with pytest.raises(dr.training.load.RunNotFoundError, match='is not a run folder'):
    dr.load_run(str(tmp_path))


def test_evaluate_a_sweep_on_a_rebuilt_task_writes_beside_the_runs(trained, capsys):
  """``python -m experiments.evaluate DIR --config.task.options.seq_len=12``: every run of the
  folder, on the task rebuilt at twice the training length; a table on stdout, one JSON line per run
  and split in each run's evaluations.jsonl, and its training records untouched."""
  root, alone, group = trained
  before = {d: open(os.path.join(d, runlog.METRICS_FILE)).read() for d in (alone, *group)}
  argv = [str(root / 'w'), '--split', 'test', '--checkpoint', 'last', '--config.task.options.seq_len=12']
  assert evaluate_cli.main(argv) == 0
  out = capsys.readouterr().out
  assert 'alone' in out and 'group-s0' in out and 'group-s1' in out and 'test/loss' in out
  assert out.startswith("checkpoint: last (each run's final step")  # which checkpoint, said first
  for d in (alone, *group):
    assert open(os.path.join(d, runlog.METRICS_FILE)).read() == before[d]
    (line,) = open(os.path.join(d, evaluate_cli.EVALUATIONS_FILE)).read().splitlines()
    rec = json.loads(line)
    assert (rec['step'], rec['checkpoint'], rec['split'], rec['task_options']) == (12, 'last', 'test', {'seq_len': 12})
    expected = dr.load_run(d, 'last', task_options={'seq_len': 12}).evaluate(['test'])['test']
    assert rec['metrics'] == expected
    assert expected != _recorded(d, 12, 'test')  # another task: other numbers


@pytest.mark.parametrize(
  'argv,message',
  [
    (['--config.model.depth=2'], 'only task options can change'),
    (['--split', 'dev'], "unknown split 'dev'"),
    (['--config.task.options.colour=1'], "unknown option for task 'adding'"),
  ],
)
def test_evaluate_mistakes_are_one_line_exit_2(trained, capsys, argv, message):
  root, _, _ = trained
  assert evaluate_cli.main([str(root / 'w'), *argv]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and '\n' not in err and message in err, err


def test_a_sentiment_run_classifies_raw_sentences_with_its_own_tokenizer(tmp_path):
  """The README's inference example: a text classifier trained from CSV files, loaded back, labels
  new sentences. The task's encoder gives exactly the token ids the run was evaluated on."""
  data = tmp_path / 'reviews'
  data.mkdir()
  good = ['a wonderful moving film', 'great acting and a great story', 'wonderful, I loved it']
  bad = ['dull and far too long', 'a boring mess', 'I hated it, dull']
  for split, rows in (('train', (good + bad) * 6), ('test', good + bad)):
    labels = (['pos'] * 3 + ['neg'] * 3) * (6 if split == 'train' else 1)
    (data / f'{split}.csv').write_text('text,label\n' + ''.join(f'"{t}",{y}\n' for t, y in zip(rows, labels)))
  config = tiny_config(
    **{
      'task.name': 'text_classification',
      'model.cell': 'gru',
      'train.num_steps': 60,
      'train.eval_every_steps': 20,
      'train.log_every_steps': 20,
      'optim.learning_rate': 0.03,
      'task.options': {'path': str(data), 'num_val': 6, 'max_len': 8},
    }
  )
  run_dir = str(tmp_path / 'run')
  train_lib.train(config, run_dir)
  run = dr.load_run(run_dir, checkpoint='last')
  test = run.task.eval_splits['test']
  batch = run.task.encode(good + bad)
  np.testing.assert_array_equal(batch['inputs'], test['inputs'])
  np.testing.assert_array_equal(batch['lengths'], test['lengths'])
  names = run.task.info['label_names']
  predicted = [names[i] for i in np.asarray(run.predict(['what a wonderful story', 'dull, boring and long']))]
  assert predicted == ['pos', 'neg']
  assert np.asarray(run.predict(good + bad)).tolist() == np.asarray(run.predict(batch)).tolist()
