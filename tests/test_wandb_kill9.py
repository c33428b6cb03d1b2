"""wandb records survive kill -9: a resumed run sends wandb every record it has not written, once.

A runner process (offline wandb) is killed with SIGKILL at step 11; wandb then holds what its process
had written to the run's transaction log. What a kill takes from wandb is the log's tail (records still
in the killed process's buffers, or in a writer that died with it): the test cuts the log before the
first record of step 4, which makes that loss certain instead of a matter of timing (under load the
kill often takes more: wandb had written no history row at all). The resumed run (from the step-4 or
step-8 checkpoint) must leave wandb with every record of metrics.jsonl exactly once: those up to the
checkpoint resent from metrics.jsonl where wandb lacks them, the later ones from the retraining.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pytest

from deeprnn_jax.training import runlog
from experiments import run as run_cli

import faults
import wandb_records as wr
from runner_helpers import config_file_text, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def offline(tmp_path, monkeypatch):
  import wandb  # noqa: PLC0415

  for var, name in (('WANDB_DIR', 'wandb'), ('WANDB_CACHE_DIR', 'wandb_cache'), ('WANDB_CONFIG_DIR', 'wandb_config')):
    monkeypatch.setenv(var, str(tmp_path / name))
  monkeypatch.setenv('WANDB_MODE', 'offline')
  yield
  wandb.teardown()


def _record_offsets(path: str) -> list[tuple[int, object]]:
  """``(offset of its first chunk, record)`` for every record of a wandb transaction log."""
  data = open(path, 'rb').read()
  out, pos, start, pending = [], wr._HEADER, None, b''
  while pos + wr._HEADER <= len(data):
    left = wr._BLOCK - pos % wr._BLOCK
    if left < wr._HEADER:
      pos += left
      continue
    length, kind = struct.unpack('<HB', data[pos + 4 : pos + 7])
    if kind == 0 and length == 0:
      break
    start = pos if kind in (1, 2) else start
    pending += data[pos + 7 : pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):
      record = wr.wandb_internal_pb2.Record()
      record.ParseFromString(pending)
      out.append((start, record))
      pending = b''
  return out


def _holders(path: str) -> set[int]:
  """The processes that hold ``path`` open (Linux's /proc)."""
  pids = set()
  for fd in glob.glob('/proc/[0-9]*/fd/*'):
    try:
      if os.readlink(fd) == path:
        pids.add(int(fd.split('/')[2]))
    except (OSError, ValueError):
      continue
  return pids


def _kill_the_writers(path: str, timeout: float = 60.0) -> None:
  """wandb writes its log from a service process of its own (wandb-core), which outlives a SIGKILL of
  the runner until it notices, which under load took over two minutes. A job killed whole (a preempted
  SLURM job, a machine that dies) loses it too: kill -9 whatever still holds ``path``, and wait until
  it has let go."""
  deadline = time.monotonic() + timeout
  while (pids := _holders(path)) and time.monotonic() < deadline:
    for pid in pids:
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    time.sleep(0.2)
  assert not _holders(path), f'{path} still open after {timeout:g} s'


def _history_keys(recs) -> list[tuple[str, int]]:
  return sorted((key.split('/')[0], row['step']) for row in wr.history(recs) for key in row if key.endswith('/loss'))


def test_records_wandb_had_not_written_at_a_kill_9_are_sent_on_resume_each_once(tmp_path, offline):
  cfg = write_config(
    tmp_path,
    config_file_text(
      axes={'model.cell': ['rnn']}, seeds=(0,), **{'logging.wandb_mode': 'offline', 'train.num_steps': 12}
    ),
  )
  workdir = str(tmp_path / 'sweep')
  argv = ['--config', cfg, '--workdir', workdir, '--no-report']
  # WANDB_SERVICE would connect the runner to this process's wandb-core (started by an earlier test),
  # which the kill below would then take from the resumed run: a separate job has a service of its own
  env = {k: v for k, v in os.environ.items() if k not in (faults.ENV, 'WANDB_SERVICE')}
  env[faults.ENV] = 'step:11=SIGKILL'
  proc = subprocess.run(
    [sys.executable, '-c', faults.RUNNER, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  run_dir = os.path.join(workdir, 'rnn-d1-w8-s0')
  status = runlog.read_status(run_dir)
  assert status['state'] == 'running' and status['wandb_step'] == 10  # logged to wandb through step 10
  (segment,) = wr.segments(run_dir)
  _kill_the_writers(os.path.abspath(segment))
  cut = [
    offset
    for offset, r in _record_offsets(segment)
    if r.WhichOneof('record_type') == 'history'
    and any(item.key == 'step' and json.loads(item.value_json) >= 4 for item in r.history.item)
  ]
  if cut:  # the tail a kill can take (under load it often took more: wandb had written no row at all)
    with open(segment, 'r+b') as f:
      f.truncate(cut[0])
  assert set(_history_keys(wr.records(segment))) <= {('train', 2)}

  assert run_cli.main(argv) == 0
  status = runlog.read_status(run_dir)
  # orbax commits a save before it starts the next: step 4's is whole, step 8's may be
  assert status['state'] == 'finished' and status['resumed_from'] in (4, 8)
  segments = wr.segments(run_dir)
  assert len(segments) == 2
  got = _history_keys([r for s in segments for r in wr.records(s)])
  want = sorted((r['split'], r['step']) for r in runlog.read_metrics(os.path.join(run_dir, runlog.METRICS_FILE)))
  assert got == want  # every record once: none lost to the kill, none sent twice
  assert ('train', 4) in got and ('val', 4) in got and ('train', 10) in got
