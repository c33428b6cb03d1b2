"""The training loop: exact resume, seeds in one program == separate runs, divergence, early stop, logs."""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os

import jax
import numpy as np
import pytest

from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import runlog
from deeprnn_jax import tasks as tasks_lib
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.tasks import synthetic
from deeprnn_jax.tasks.base import Threshold

from runner_helpers import records, tiny_config


class _StopAfter:
  """should_stop() that turns true after n calls (one call per step)."""

  def __init__(self, n, crash=False):
    self.n, self.calls, self.crash = n, 0, crash

  def __call__(self):
    self.calls += 1
    if self.calls >= self.n and self.crash:
      raise RuntimeError('simulated crash')  # dies without saving, like a kill
    return self.calls >= self.n


def _final_state(run_dir):
  ck = checkpoint_lib.Checkpointer(os.path.join(run_dir, 'checkpoints'))
  try:
    step, state, _ = ck.restore_latest(None)
    return step, state
  finally:
    ck.close()


def test_resume_after_interrupt_and_crash_equals_uninterrupted(tmp_path):
  # Two layers, dropout, adamw with weight decay and a warmup + cosine schedule: every piece of state
  # a resumed run must restore (params, optimizer moments and count, rng, the interval's sums).
  config = tiny_config(
    **{
      'model.depth': 2,
      'optim.name': 'adamw',
      'optim.weight_decay': 0.1,
      'optim.schedule': 'cosine',
      'optim.warmup_steps': 3,
    }
  )
  straight = str(tmp_path / 'straight')
  status = train_lib.train(config, straight)

  resumed = str(tmp_path / 'resumed')
  # A clean stop (Ctrl-C) mid-interval at step 3: checkpointed there, marked interrupted.
  with pytest.raises(train_lib.Interrupted):
    train_lib.train(config, resumed, should_stop=_StopAfter(3))
  assert runlog.read_status(resumed)['state'] == 'interrupted'
  # A crash at step 7 (no save): the metrics after the last checkpoint (step 4) get rewritten.
  with pytest.raises(RuntimeError, match='simulated crash'):
    train_lib.train(config, resumed, should_stop=_StopAfter(4, crash=True))
  assert runlog.read_status(resumed)['state'] == 'failed'
  resumed_status = train_lib.train(config, resumed)

  assert resumed_status['state'] == 'finished' and resumed_status['resumed_from'] == 4
  assert records(resumed) == records(straight)
  (s1, a), (s2, b) = _final_state(straight), _final_state(resumed)
  assert s1 == s2 == config.train.num_steps
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 5
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)

  # What the uninterrupted run recorded along the way.
  train = [r for r in records(straight) if r['split'] == 'train']
  assert {'grad_norm', 'grad_norm/layer_0', 'grad_norm/layer_1', 'grad_norm/out'} <= set(train[0])
  assert train[0]['learning_rate'] < train[1]['learning_rate']  # warming up
  assert status['compile_seconds'] > 0 and status['steps_per_sec'] > 0
  assert status['params'] > 0 and status['task']['name'] == 'adding'
  assert json.load(open(os.path.join(straight, 'config.json')))['model']['depth'] == 2
  assert os.listdir(os.path.join(straight, 'checkpoints', 'best'))
  assert sorted(os.listdir(os.path.join(straight, 'checkpoints', 'latest'))) == ['12', '8']


@pytest.mark.parametrize('program', ['vmap', 'loop'])
def test_seeds_in_one_program_equal_separate_runs(tmp_path, program):
  configs = [tiny_config(**{'train.seed': s, 'sweep.seed_program': program}) for s in (0, 1)]
  together = [str(tmp_path / f'v{s}') for s in (0, 1)]
  statuses = train_lib.train_seeds(configs, together)
  assert [(s['seeds_in_program'], s['seed_program']) for s in statuses] == [(2, program)] * 2
  for s, config in enumerate(configs):
    alone = str(tmp_path / f'a{s}')
    status = train_lib.train(config, alone)
    assert (status['seeds_in_program'], status['seed_program']) == (1, 'single')  # no seed axis inside
    a, b = records(together[s]), records(alone)
    assert [(r['step'], r['split']) for r in a] == [(r['step'], r['split']) for r in b]
    for ra, rb in zip(a, b):
      for k in ra:
        if isinstance(ra[k], float):
          np.testing.assert_allclose(ra[k], rb[k], rtol=1e-4, atol=1e-6, err_msg=f'{k} at step {ra["step"]}')
  # and the two seeds really are different runs
  assert records(together[0])[0]['loss'] != records(together[1])[0]['loss']


def test_divergence_stops_the_run_with_its_step(tmp_path):
  config = tiny_config(
    **{
      'optim.name': 'sgd',
      'optim.learning_rate': 1e12,
      'optim.clip_global_norm': 0.0,
      'train.num_steps': 40,
      'train.log_every_steps': 40,
      'train.eval_every_steps': 40,
      'train.checkpoint_every_steps': 40,
    }
  )
  run_dir = str(tmp_path / 'run')
  status = train_lib.train(config, run_dir)
  assert status['state'] == 'diverged'
  assert 0 <= status['diverged_step'] < 40
  # The run stopped at the first sync after diverging and logged nothing non-finite.
  for r in runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE)):
    assert all(np.isfinite(v) for v in r.values() if isinstance(v, float))


def test_early_stop_at_task_threshold(tmp_path, monkeypatch):
  @functools.wraps(synthetic.adding)
  def easy(**kwargs):
    return dataclasses.replace(synthetic.adding(**kwargs), threshold=Threshold('loss', 1e3, 'min'))

  monkeypatch.setitem(tasks_lib.TASKS, 'adding_easy', easy)
  config = tiny_config(**{'task.name': 'adding_easy', 'train.early_stop': True})
  run_dir = str(tmp_path / 'run')
  status = train_lib.train(config, run_dir)
  assert status['state'] == 'finished' and status['stopped_early']
  assert status['step'] == status['threshold_step'] == config.train.eval_every_steps
  # The last eval of a run covers every split.
  splits = {r['split'] for r in runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE))}
  assert splits == {'train', 'val', 'test'}


def test_wandb_offline_run_lands_in_the_run_folder_without_the_key(tmp_path, monkeypatch):
  secret = 'not-a-real-key-0123456789abcdef0123456789abcdef'
  monkeypatch.setenv('WANDB_API_KEY', secret)
  monkeypatch.setenv('WANDB_MODE', 'offline')
  monkeypatch.setenv('WANDB_CACHE_DIR', str(tmp_path / 'wandb_cache'))
  monkeypatch.setenv('WANDB_CONFIG_DIR', str(tmp_path / 'wandb_config'))
  run_dir = str(tmp_path / 'sweep' / 'run')
  # logging.wandb_mode None: taken from $WANDB_MODE
  status = train_lib.train(tiny_config(**{'logging.wandb_mode': None}), run_dir)
  assert status['state'] == 'finished' and status['wandb_mode'] == 'offline'
  assert glob.glob(os.path.join(run_dir, 'wandb', 'offline-run-*', '*.wandb'))
  for path in glob.glob(os.path.join(run_dir, '**', '*'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        assert secret.encode() not in f.read(), path


def test_a_wandb_failure_never_stops_training(tmp_path, monkeypatch, caplog):
  import wandb  # noqa: PLC0415

  def broken(*args, **kwargs):
    raise ConnectionError('no route to api.wandb.ai')

  monkeypatch.setattr(wandb, 'init', broken)
  status = train_lib.train(tiny_config(**{'logging.wandb_mode': 'online'}), str(tmp_path / 'run'))
  assert status['state'] == 'finished'
  assert 'wandb init failed' in caplog.text


def test_wandb_mode_resolution(monkeypatch):
  monkeypatch.delenv('WANDB_MODE', raising=False)
  monkeypatch.delenv('WANDB_API_KEY', raising=False)
  monkeypatch.setenv('HOME', '/nonexistent-home')
  assert runlog.resolve_wandb_mode(None) == 'offline'
  monkeypatch.setenv('WANDB_API_KEY', 'x')
  assert runlog.resolve_wandb_mode(None) == 'online'
  monkeypatch.setenv('WANDB_MODE', 'disabled')
  assert runlog.resolve_wandb_mode(None) == 'disabled'
  assert runlog.resolve_wandb_mode('offline') == 'offline'


def test_checkpoint_falls_back_to_the_previous_one_when_the_newest_is_corrupt(tmp_path):
  ck = checkpoint_lib.Checkpointer(str(tmp_path), keep=2)
  state = {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'step': np.int32(0)}
  ck.save(4, {**state, 'step': np.int32(4)}, {'step': 4})
  ck.save(8, {**state, 'step': np.int32(8)}, {'step': 8})
  ck.wait()
  # garble every file of the newest save
  for path in glob.glob(str(tmp_path / 'latest' / '8' / 'state' / '**' / '*'), recursive=True):
    if os.path.isfile(path):
      with open(path, 'wb') as f:
        f.write(b'garbage')
  step, restored, meta = ck.restore_latest(state)
  ck.close()
  assert step == 4 and meta['step'] == 4 and int(restored['step']) == 4


def test_metrics_reader_skips_a_partial_last_line(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 2, "split": "train", "loss": 1.0}\n{"step": 4, "split": "tr')
  assert runlog.read_metrics(str(path)) == [{'step': 2, 'split': 'train', 'loss': 1.0}]


def test_dataset_task_with_length_buckets_resumes_exactly(tmp_path, monkeypatch):
  """A dataset task: its arrays are a jit argument (train_data), one step program per length bucket,
  the bucket of each step a function of the step: an interrupted run still matches."""
  from deeprnn_jax.tasks import tfds_text  # noqa: PLC0415

  words = ['good', 'bad', 'fine', 'awful', 'great', 'poor']
  rng = np.random.default_rng(0)
  texts = [' '.join(rng.choice(words, rng.integers(1, 9))) for _ in range(40)]
  labels = [int(sum(w in ('good', 'fine', 'great') for w in t.split()) * 2 >= len(t.split())) for t in texts]

  def toy_text(seed: int = 0):
    del seed
    return tfds_text.text_classification_task(
      name='toy_text',
      train_texts=texts[:32],
      train_labels=labels[:32],
      test_texts=texts[32:],
      test_labels=labels[32:],
      num_classes=2,
      vocab_size=8,
      max_len=8,
      num_val=6,
      buckets=(4, 8),
      threshold=None,
    )

  monkeypatch.setitem(tasks_lib.TASKS, 'toy_text', toy_text)
  config = tiny_config(**{'task.name': 'toy_text', 'task.options': {}, 'model.embed_features': 4})
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  assert train_lib.train(config, straight)['state'] == 'finished'
  with pytest.raises(train_lib.Interrupted):
    train_lib.train(config, resumed, should_stop=_StopAfter(5))
  train_lib.train(config, resumed)
  assert records(resumed) == records(straight)
  assert {r['split'] for r in records(straight)} == {'train', 'val', 'test'}


class _RecordingWandb:
  """Stands in for ``runlog.WandbRun``: an active run that records the steps it was sent."""

  sent: list = []

  def __init__(self, mode, **kwargs):
    del mode, kwargs
    self.error, self.active = None, True

  def log(self, step, data):
    type(self).sent.append((step, tuple(sorted(data))))

  def summary(self, data):
    pass

  def finish(self, exit_code=0):
    pass


def test_a_crash_then_resume_sends_wandb_no_step_twice_and_status_names_the_resume_step(tmp_path, monkeypatch):
  """A run that dies at step 7 (no checkpoint of its own; the newest is step 4) had sent wandb the
  train records of steps 2, 4, 6. Its status says step 4 (where a rerun resumes; it said 0 before),
  and the resumed run does not send steps 2-6 again: wandb's curve has each step once, and the
  local records equal an uninterrupted run's."""
  monkeypatch.setattr(runlog, 'WandbRun', _RecordingWandb)
  _RecordingWandb.sent = []
  config = tiny_config(**{'logging.wandb_mode': 'offline'})
  straight = str(tmp_path / 'straight')
  train_lib.train(config, straight)
  _RecordingWandb.sent = []
  run = str(tmp_path / 'run')
  with pytest.raises(RuntimeError, match='simulated crash'):
    train_lib.train(config, run, should_stop=_StopAfter(7, crash=True))
  assert (runlog.read_status(run)['state'], runlog.read_status(run)['step']) == ('failed', 4)
  train_lib.train(config, run)
  steps = [(step, keys) for step, keys in _RecordingWandb.sent]
  assert len(steps) == len(set(steps)), sorted(steps)
  assert sorted({s for s, _ in steps}) == list(range(2, 13, 2))
  assert records(run) == records(straight)


def test_a_second_ctrl_c_records_the_step_a_rerun_resumes_from(tmp_path):
  """KeyboardInterrupt (what a second Ctrl-C raises) at step 7: interrupted, at the newest checkpoint."""

  def second_ctrl_c(event, step):
    if (event, step) == ('step', 7):
      raise KeyboardInterrupt

  run = str(tmp_path / 'run')
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(tiny_config(), run, on_event=second_ctrl_c)
  status = runlog.read_status(run)
  assert (status['state'], status['step'], status['error']) == ('interrupted', 4, None)
  assert train_lib.train(tiny_config(), run)['resumed_from'] == 4


def test_plain_progress_lines_one_per_evaluation(tmp_path, capsys):
  """``train.progress='lines'`` (the default when stdout is not a terminal, e.g. a cluster log): one
  line per evaluation with the step, the train loss, each evaluated split's metrics, the rate and
  the ETA; the numbers are the seeds' means of what metrics.jsonl holds."""
  configs = [tiny_config(**{'train.progress': 'lines', 'train.seed': s}) for s in (0, 1)]
  dirs = [str(tmp_path / f's{s}') for s in (0, 1)]
  train_lib.train_seeds(configs, dirs)
  lines = capsys.readouterr().out.strip().splitlines()
  assert [line.split(' | ')[0] for line in lines] == [f'rnn-d1-w8 x2 seeds step {s}/12' for s in (4, 8, 12)]
  for line, step in zip(lines, (4, 8, 12)):
    parts = line.split(' | ')
    val = [r for d in dirs for r in records(d) if r['step'] == step and r['split'] == 'val']
    train = [r for d in dirs for r in records(d) if r['step'] == step and r['split'] == 'train']
    assert parts[1] == f'train loss {np.mean([r["loss"] for r in train]):.4g}'
    assert parts[2].split()[:3] == ['val', 'loss', f'{np.mean([r["loss"] for r in val]):.4g}']
    assert parts[-2].endswith(' steps/s') and parts[-1].startswith('ETA ')


def test_progress_auto_is_a_bar_on_a_terminal_and_lines_otherwise():
  from deeprnn_jax.training import progress  # noqa: PLC0415

  class Tty:
    def isatty(self):
      return True

  assert progress.resolve('auto', Tty()) == 'bar'
  assert progress.resolve('auto', open(os.devnull, 'w')) == 'lines'
  assert progress.resolve('off', Tty()) == 'off'
