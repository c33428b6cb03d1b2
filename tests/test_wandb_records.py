"""What a researcher finds in wandb, read from the offline files wandb wrote (``wandb_records``):
grouping, tags, the code version, per-metric summaries (best and last), the report's measures, the
report itself, and a resumed run whose segments share one id and never repeat a step."""

from __future__ import annotations

import os

import pytest

from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import runlog
from experiments import run as run_cli

import faults
import wandb_records as wr
from runner_helpers import config_file_text, write_config


@pytest.fixture
def offline(tmp_path, monkeypatch):
  import wandb  # noqa: PLC0415

  for var, name in (('WANDB_DIR', 'wandb'), ('WANDB_CACHE_DIR', 'wandb_cache'), ('WANDB_CONFIG_DIR', 'wandb_config')):
    monkeypatch.setenv(var, str(tmp_path / name))
  monkeypatch.setenv('WANDB_MODE', 'offline')
  yield
  wandb.teardown()


def test_an_interrupted_then_resumed_offline_sweep_reads_whole_in_wandb(tmp_path, offline):
  cfg = write_config(
    tmp_path,
    config_file_text(
      axes={'model.cell': ['rnn']}, seeds=(0,), **{'logging.wandb_mode': 'offline', 'train.num_steps': 12}
    ),
  )
  workdir = tmp_path / 'sweep'
  argv = ['--config', cfg, '--workdir', str(workdir)]
  assert run_cli.main(argv, on_event=faults.signal_at('step:7=SIGINT')) == 130
  assert run_cli.main(argv) == 0
  run_dir = str(workdir / 'rnn-d1-w8-s0')
  status = runlog.read_status(run_dir)
  segments = wr.segments(run_dir)
  # the first start, the resume, and the report's update of the summary: one id
  assert len(segments) == 3 and all(s.endswith(f'run-{status["wandb_id"]}.wandb') for s in segments)
  recs = [r for s in segments for r in wr.records(s)]
  run = wr.run_record(wr.records(segments[0]))
  assert run.run_group == 'sweep' and run.job_type == 'rnn-d1-w8'
  assert list(run.tags) == ['adding', 'rnn', 'depth1']
  # every segment carries them, the report's resume included (`wandb sync` uploads all three)
  kept = [(wr.run_record(wr.records(s)).job_type, list(wr.run_record(wr.records(s)).tags)) for s in segments]
  assert kept == [('rnn-d1-w8', ['adding', 'rnn', 'depth1'])] * 3, kept
  config = wr.config(recs)
  assert (config['cell'], config['depth'], config['seed']) == ('rnn', 1, 0)
  assert config['git_commit'] == status['git_commit'] and isinstance(config['git_dirty'], bool)
  steps = wr.history_steps(recs)
  # one row per record of metrics.jsonl: train at every 2 steps, val at every 4, test at the end
  records = runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE))
  assert sorted(steps) == sorted(r['step'] for r in records)
  assert sorted(set(steps)) == list(range(2, 13, 2))
  summary = wr.summary(recs)
  records = runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE))
  last_val = [r for r in records if r['split'] == 'val'][-1]
  assert summary['val/loss/last'] == pytest.approx(last_val['loss'])
  # the best over the whole run, both segments (wandb's own 'val/loss' min sees one process's steps)
  assert summary['val/loss/best'] == pytest.approx(min(r['loss'] for r in records if r['split'] == 'val'))
  assert summary['state'] == 'finished' and summary['best_step'] == status['best_step']
  assert summary['report/val_loss_auc'] > 0 and 'report/generalization_gap' in summary
  # the report, as one run of the group with the files as an artifact
  reports = [p for p in wr.segments(str(workdir)) if 'report-' in p]
  assert reports
  report_recs = wr.records(reports[-1])
  assert wr.run_record(report_recs).job_type == 'report'
  kinds = {r.WhichOneof('record_type') for r in report_recs}
  assert 'artifact' in kinds


def test_a_run_resumed_before_what_wandb_has_sends_each_record_once_and_its_best_over_both_processes(tmp_path, offline):
  """Ctrl-C at step 7 (wandb has steps 2-6 and a checkpoint of step 7 is saved), then the checkpoints
  after step 4 are lost, so the resumed process trains steps 5-7 again. wandb must hold every record of
  metrics.jsonl exactly once (the re-trained step 6 is not sent again), and each summary best must be
  over both processes' records: the learning rate warms up over the whole run, so its lowest value
  (step 2) was sent by the first process only."""
  cfg = write_config(
    tmp_path,
    config_file_text(
      axes={'model.cell': ['rnn']},
      seeds=(0,),
      **{'logging.wandb_mode': 'offline', 'train.num_steps': 12, 'optim.warmup_steps': 12},
    ),
  )
  workdir = tmp_path / 'sweep'
  argv = ['--config', cfg, '--workdir', str(workdir), '--no-report']
  assert run_cli.main(argv, on_event=faults.signal_at('step:7=SIGINT')) == 130
  run_dir = str(workdir / 'rnn-d1-w8-s0')
  ck = checkpoint_lib.Checkpointer(runlog.RunFolder(run_dir).checkpoints)
  ck.discard_after(4)
  ck.close()
  assert run_cli.main(argv) == 0
  assert runlog.read_status(run_dir)['resumed_from'] == 4
  segments = wr.segments(run_dir)
  assert len(segments) == 2
  rows = [row for s in segments for row in wr.history(wr.records(s))]
  records = runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE))
  want = sorted((r['split'], r['step']) for r in records)
  got = sorted((key.split('/')[0], row['step']) for row in rows for key in row if key.endswith('/loss'))
  assert got == want  # every record once: none lost, none sent twice
  assert sorted(r['step'] for r in records if r['split'] == 'train') == list(range(2, 13, 2))
  for row in rows:  # with the values of the records
    (split,) = {k.split('/')[0] for k in row if '/' in k}
    (rec,) = [r for r in records if (r['split'], r['step']) == (split, row['step'])]
    assert row[f'{split}/loss'] == pytest.approx(rec['loss'])
  summary = wr.summary([r for s in segments for r in wr.records(s)])
  lrs = {r['step']: r['learning_rate'] for r in records if r['split'] == 'train'}
  assert min(lrs.values()) == lrs[2] < min(v for k, v in lrs.items() if k > 4)  # the best lies before the resume
  assert summary['train/learning_rate/best'] == pytest.approx(lrs[2])
  for split in ('train', 'val'):
    losses = [r['loss'] for r in records if r['split'] == split]
    assert summary[f'{split}/loss/best'] == pytest.approx(min(losses)) and summary[f'{split}/loss/last'] == losses[-1]
