"""Corrupt state and divergence: a damaged checkpoint, metrics.jsonl or status.json is detected and
the run resumes from the newest good point (or starts over, with a warning), never crash-looping and
never mixing stale records into the curve; NaN/Inf in the loss, gradients or parameters stops that
run (status ``diverged`` and the step) while the others go on, and the report counts it."""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from deeprnn_jax.training import steps
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.tasks import base as task_base
from deeprnn_jax.tasks import synthetic
from experiments import report
from experiments import run as run_cli
from experiments import sweep

import faults
from runner_helpers import config_file_text, records, tiny_config, write_config

CONFIG = tiny_config(**{'model.width': 4})  # 12 steps; logs every 2, evaluates and checkpoints every 4


class _StopAfter:
  """should_stop() that turns true at the n-th step (a clean stop, like SIGTERM)."""

  def __init__(self, n):
    self.n, self.calls = n, 0

  def __call__(self):
    self.calls += 1
    return self.calls >= self.n


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """An uninterrupted run, and the same run stopped at step 10 (checkpoints at 8 and 10, records to 10)."""
  root = tmp_path_factory.mktemp('runs')
  straight, stopped = str(root / 'straight'), str(root / 'stopped')
  assert train_lib.train(CONFIG, straight)['state'] == 'finished'
  with pytest.raises(train_lib.Interrupted):
    train_lib.train(CONFIG, stopped, should_stop=_StopAfter(10))
  assert sorted(os.listdir(os.path.join(stopped, 'checkpoints', 'latest'))) == ['10', '8']
  return straight, stopped


def _copy(src, tmp_path) -> str:
  return shutil.copytree(src, str(tmp_path / 'run'))


def _files(path) -> list[str]:
  return sorted(f for f in glob.glob(os.path.join(path, '**', '*'), recursive=True) if os.path.isfile(f))


def _flip(path):
  data = bytearray(open(path, 'rb').read())
  for i in range(len(data) // 2, len(data) // 2 + 16):
    data[i] ^= 0xFF
  open(path, 'wb').write(bytes(data))


def _flip_bytes(run):
  """Flips bytes in the middle of every array data file."""
  for path in _files(os.path.join(run, 'checkpoints', 'latest', '10', 'state')):
    if f'{os.sep}d{os.sep}' in path:
      _flip(path)


def _truncate(run):
  for path in _files(os.path.join(run, 'checkpoints', 'latest', '10', 'state')):
    open(path, 'wb').close()


def _garble_meta(run):
  for path in _files(os.path.join(run, 'checkpoints', 'latest', '10', 'meta')):
    open(path, 'w').write('{"step": 10, "best_va')


def _garble_all(run):
  for path in _files(os.path.join(run, 'checkpoints', 'latest')):
    open(path, 'wb').write(b'\x00garbage')


def _file_for_folder(run):
  shutil.rmtree(os.path.join(run, 'checkpoints', 'latest'))
  open(os.path.join(run, 'checkpoints', 'latest'), 'w').write('not a folder')


CHECKPOINT_DAMAGE = [
  # (damage to the newest checkpoint, step the run resumes from, warning)
  (_flip_bytes, 8, 'is unreadable'),
  (_truncate, 8, 'is unreadable'),
  (_garble_meta, 8, 'is unreadable (JSONDecodeError'),
  (_garble_all, None, 'restarting them from step 0'),
  (_file_for_folder, None, 'checkpoints/latest is not a folder; moved it to'),
]


@pytest.mark.parametrize(
  'damage,resumed_from,warning', CHECKPOINT_DAMAGE, ids=[d[0].__name__ for d in CHECKPOINT_DAMAGE]
)
def test_a_damaged_checkpoint_falls_back_and_the_run_ends_as_if_never_stopped(
  runs, tmp_path, caplog, damage, resumed_from, warning
):
  straight, stopped = runs
  run = _copy(stopped, tmp_path)
  damage(run)
  status = train_lib.train(CONFIG, run)
  assert status['state'] == 'finished' and status['resumed_from'] == resumed_from
  assert warning in caplog.text
  assert records(run) == records(straight)
  # the damaged checkpoint is gone: a later resume cannot trip over it again
  assert sorted(os.listdir(os.path.join(run, 'checkpoints', 'latest'))) == ['12', '8']


def test_flipped_bytes_that_orbax_restores_without_complaint_are_caught_by_the_digest(tmp_path, caplog):
  """Random float32 data barely compresses, so flipped bytes in it decode fine, as wrong numbers."""
  from deeprnn_jax.training import checkpoint as checkpoint_lib  # noqa: PLC0415

  state = {'w': np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32), 'step': np.int32(4)}
  ck = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  ck.save(4, state, {'step': 4})
  ck.save(8, {**state, 'step': np.int32(8)}, {'step': 8})
  ck.wait()
  _flip(max(_files(str(tmp_path / 'latest' / '8' / 'state')), key=os.path.getsize))  # the array's own data
  step, restored, meta = ck.restore_latest(state)
  ck.close()
  assert (step, meta, int(restored['step'])) == (4, {'step': 4}, 4)
  np.testing.assert_array_equal(restored['w'], state['w'])
  assert 'latest/8 is unreadable (ValueError: its arrays do not match the digest saved with them)' in caplog.text


def _lines(run):
  return open(os.path.join(run, runlog.METRICS_FILE)).read().splitlines(keepends=True)


def _future_records_and_a_partial_line(run, straight):
  """What a kill leaves: records past the checkpoint (here a step-12 record) and half a line."""
  with open(os.path.join(run, runlog.METRICS_FILE), 'a') as f:
    f.write(_lines(straight)[-1] + '{"step": 12, "split": "tr')


def _garble_a_middle_line(run, straight):
  lines = _lines(run)
  i = next(i for i, line in enumerate(lines) if json.loads(line)['step'] == 6)
  lines[i] = 'x' * (len(lines[i]) - 1) + '\n'
  open(os.path.join(run, runlog.METRICS_FILE), 'w').write(''.join(lines))


def _lose_the_tail(run, straight):
  lines = [line for line in _lines(run) if json.loads(line)['step'] < 10]
  open(os.path.join(run, runlog.METRICS_FILE), 'w').write(''.join(lines))


METRICS_DAMAGE = [
  (_future_records_and_a_partial_line, 10, 'skipping garbled line'),
  (_lose_the_tail, 8, 'metrics.jsonl lacks records after step 9'),
  (_garble_a_middle_line, None, 'metrics.jsonl lacks records after step 5'),  # no checkpoint before 6
]


@pytest.mark.parametrize('damage,resumed_from,warning', METRICS_DAMAGE, ids=[d[0].__name__ for d in METRICS_DAMAGE])
def test_a_damaged_metrics_file_resumes_where_the_records_are_whole(
  runs, tmp_path, caplog, damage, resumed_from, warning
):
  """The resumed curve is exactly the uninterrupted one: no stale or duplicate records, no holes."""
  straight, stopped = runs
  run = _copy(stopped, tmp_path)
  damage(run, straight)
  status = train_lib.train(CONFIG, run)
  assert status['state'] == 'finished' and status['resumed_from'] == resumed_from
  assert warning in caplog.text
  assert records(run) == records(straight)


@pytest.mark.parametrize('status_text', ['running', '{"state": "finis'], ids=['killed', 'garbled'])
def test_a_run_killed_after_its_last_checkpoint_or_with_a_damaged_status_is_finished_not_retrained(
  runs, tmp_path, caplog, status_text
):
  """The final checkpoint is committed but status.json does not say finished: a kill right before the
  status write ('running'), or a damaged file. The run is finished from that checkpoint, nothing is
  trained, and nothing fails on the next try either (the crash loop this once was)."""
  straight, _ = runs
  run = _copy(straight, tmp_path)
  before = runlog.read_status(run)
  path = os.path.join(run, runlog.STATUS_FILE)
  if status_text == 'running':
    runlog.update_status(run, state='running')
  else:
    open(path, 'w').write(status_text)
    assert runlog.read_status(run) is None and 'ignoring unreadable' in caplog.text
  status = train_lib.train(CONFIG, run)
  assert (status['state'], status['step'], status['resumed_from']) == ('finished', 12, 12)
  assert status['train_seconds'] == before['train_seconds']  # not one step trained
  assert records(run) == records(straight)
  assert train_lib.train(CONFIG, run)['state'] == 'finished'  # and done for good


def test_a_second_ctrl_c_stops_at_once_and_the_run_resumes(runs, tmp_path):
  """KeyboardInterrupt (a second Ctrl-C) in the middle of training: no new checkpoint, status
  'interrupted' (not failed), and the next run resumes from the last periodic checkpoint."""
  straight, _ = runs
  run = str(tmp_path / 'run')

  calls = []

  def ctrl_c_twice():
    calls.append(1)
    if len(calls) == 7:
      raise KeyboardInterrupt
    return False

  with pytest.raises(KeyboardInterrupt):
    train_lib.train(CONFIG, run, should_stop=ctrl_c_twice)
  status = runlog.read_status(run)
  assert status['state'] == 'interrupted' and status['error'] is None
  status = train_lib.train(CONFIG, run)
  assert status['state'] == 'finished' and status['resumed_from'] == 4
  assert records(run) == records(straight)


def test_ctrl_c_checkpoints_marks_the_run_interrupted_and_says_how_to_resume(runs, tmp_path, capfd, monkeypatch):
  """A real SIGINT (this process sends it to itself at step 7, through the fault point) while the
  command line's handler is installed. (SIGTERM, the same handler: test_reliability_processes.py.)"""
  straight, _ = runs
  cfg = write_config(
    tmp_path,
    config_file_text(axes={'optim.learning_rate': [0.001]}, seeds=(0,), **{'model.width': 4, 'train.num_steps': 12}),
  )
  argv = ['--config', cfg, '--workdir', str(tmp_path / 'w'), '--no-report']
  assert run_cli.main(argv, on_event=faults.signal_at('step:7=SIGINT')) == 130
  err = capfd.readouterr().err
  assert 'SIGINT: saving a checkpoint and stopping (Ctrl-C again to stop at once)' in err
  assert (
    f'interrupted at step 7; run the same command again to resume: python -m experiments.run {" ".join(argv)}' in err
  )
  run = str(tmp_path / 'w' / 'rnn-d1-w4-lr0.001-s0')
  assert (runlog.read_status(run)['state'], runlog.read_status(run)['step']) == ('interrupted', 7)
  assert '7' in os.listdir(os.path.join(run, 'checkpoints', 'latest'))
  assert run_cli.main(argv) == 0
  assert runlog.read_status(run)['resumed_from'] == 7 and records(run) == records(straight)


def test_the_command_line_says_how_to_resume_after_a_second_ctrl_c(tmp_path, capsys, monkeypatch):
  def ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(sweep, 'run_sweep', ctrl_c)
  cfg, workdir = write_config(tmp_path), str(tmp_path / 'w')
  assert run_cli.main(['--config', cfg, '--workdir', workdir, '--no-report']) == 130
  assert capsys.readouterr().err.strip() == (
    'stopped at once, without a new checkpoint; run the same command again to resume from the last one: '
    f'python -m experiments.run --config {cfg} --workdir {workdir} --no-report'
  )


# ----------------------------------------------------------------------------------------------
# Divergence.


POISONS = {1: 'loss', 2: 'grads', 3: 'params'}  # seed -> what goes non-finite for it from step 5 on


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Poisoned(task_base.Task):
  """The adding task, made to go non-finite in one place where the batch's ``poison`` code says so.

  Trained with SGD at learning rate 1e25 on the loss scaled by 1e-30 (an ordinary step), so that
  scaling it by 1e15 instead gives finite gradients whose update overflows the parameters.
  """

  def loss_and_metrics(self, outputs, batch):
    loss, sums = super().loss_and_metrics(outputs, batch)
    code = batch.get('poison', 0)
    # 'loss': NaN; its gradient (through where) is 0 and the parameters stay finite.
    loss = jnp.where(code == 1, jnp.nan, loss)
    # 'grads': the loss unchanged, its gradient NaN (sqrt'(0) = inf, times 0).
    z = jnp.where(code == 2, 0.0, 1.0) + (outputs.sum() - jax.lax.stop_gradient(outputs.sum()))
    loss = loss + 0.0 * jnp.sqrt(z)
    # 'params': finite loss and gradients; the SGD update overflows float32.
    return loss * jnp.where(code == 3, 1e15, 1e-30), sums


def _poisoned_task(at_step=5):
  base = synthetic.adding(seq_len=6, num_eval=24, length_generalization=False)
  data_keys = {seed: steps.seed_keys(seed)[2] for seed in POISONS}

  def train_batch(key, step, batch_size, **kwargs):
    batch = base.train_batch(key, step, batch_size, **kwargs)
    code = sum(jnp.where(jnp.all(key == k), seed, 0) for seed, k in data_keys.items())
    return {**batch, 'poison': jnp.where(step >= at_step, code, 0)}

  fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
  return _Poisoned(**{**fields, 'train_batch': train_batch})


def test_nan_or_inf_in_loss_gradients_or_parameters_stops_that_seed_only(tmp_path):
  """Four seeds in one vmapped program: seed 0 healthy, seeds 1-3 poisoned at step 5 in the loss,
  the gradients and the parameters. Each poisoned seed stops, diverged at step 5; seed 0 goes on."""
  configs = [
    tiny_config(
      **{
        'model.width': 4,
        'train.seed': s,
        'optim.name': 'sgd',
        'optim.learning_rate': 1e25,
        'optim.momentum': 0.0,
        'optim.clip_global_norm': 0.0,
      }
    )
    for s in range(4)
  ]
  dirs = [str(tmp_path / f's{s}') for s in range(4)]
  statuses = train_lib.train_seeds(configs, dirs, task=_poisoned_task())
  assert (statuses[0]['state'], statuses[0]['step']) == ('finished', 12)
  for s in POISONS:
    assert (statuses[s]['state'], statuses[s]['diverged_step'], statuses[s]['step']) == ('diverged', 5, 5), s
    assert max(r['step'] for r in records(dirs[s])) <= 5
    # the step after the last log (at 4) was finite: its train metrics are logged, at the divergence's step
    assert [r['step'] for r in records(dirs[s]) if r['split'] == 'train'][-1] == 5, s
  for d in dirs:  # nothing non-finite was logged by any seed
    for r in records(d):
      assert all(np.isfinite(v) for v in r.values() if isinstance(v, float)), (d, r)


def test_a_sweep_goes_on_after_a_diverged_variant_and_the_report_counts_it(tmp_path):
  config = tiny_config(
    **{
      'model.width': 4,
      'train.num_steps': 4,
      'optim.name': 'sgd',
      'optim.clip_global_norm': 0.0,
      'sweep.axes': config_lib.sweep_axes({'optim.learning_rate': [1e12, 0.01]}),
    }
  )
  workdir = str(tmp_path / 'w')
  lines = []
  result = sweep.run_sweep(config, workdir, echo=lines.append)
  bad, good = 'rnn-d1-w4-lr1000000000000.0-s0', 'rnn-d1-w4-lr0.01-s0'
  assert result.states == {bad: 'diverged', good: 'finished'}  # the first diverged, the second still ran
  assert any(line.strip().startswith(f'{bad}: diverged at step') for line in lines)
  text = open(report.write_report(workdir)).read()
  assert 'Diverged: rnn-d1-w4-lr1000000000000.0: 1/1 seeds.' in text
  rows = {r['run_id']: r for r in csv.DictReader(open(os.path.join(workdir, 'summary.csv')))}
  assert rows[bad]['status'] == 'diverged' and int(rows[bad]['diverged_step']) >= 0
  assert rows[good]['status'] == 'finished' and rows[good]['diverged_step'] == ''
  # A rerun trains nothing: diverged is as done as finished.
  again = sweep.run_sweep(config, workdir, echo=lambda s: None)
  assert not again.trained and sorted(again.skipped) == [good, bad]


@pytest.mark.parametrize('text', ['', '{"state": "runn', '[1, 2]', '{"state": "exploded"}'])
def test_an_unreadable_status_file_is_ignored_with_a_warning(tmp_path, caplog, text):
  (tmp_path / runlog.STATUS_FILE).write_text(text)
  assert runlog.read_status(str(tmp_path)) is None
  if text:
    assert 'unreadable' in caplog.text or 'malformed' in caplog.text


def test_the_report_reads_around_damaged_records(tmp_path, caplog):
  """A finished run whose metrics.jsonl has a garbled line: the report warns and uses the rest."""
  run = tmp_path / 'w' / 'rnn-d1-w4-s0'
  run.mkdir(parents=True)
  c = config_lib.to_dict(CONFIG)
  (run / runlog.CONFIG_FILE).write_text(json.dumps(c))
  (run / runlog.STATUS_FILE).write_text(json.dumps({'state': 'finished', 'step': 12}))
  (run / runlog.METRICS_FILE).write_text(
    '{"step": 4, "split": "val", "loss": 0.5}\n\x00\x00garbage\n'
    '{"step": 12, "split": "val", "loss": 0.25}\n{"step": 12, "spl'
  )
  report.write_report(str(tmp_path / 'w'))
  assert 'skipping garbled line 2' in caplog.text and 'skipping garbled line 4' in caplog.text
  rows = list(csv.DictReader(open(tmp_path / 'w' / 'summary.csv')))
  assert float(rows[0]['final_val_loss']) == 0.25
