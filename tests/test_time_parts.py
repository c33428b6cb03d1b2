"""Where a run's time went (status.json's ``time_parts``, train.TIME_PARTS): every part is recorded, none is
negative, training and evaluation took some, and together they are no more than the command's wall time."""

import time

from deeprnn_jax.training import runlog, train

from runner_helpers import tiny_config


def test_a_run_records_where_its_time_went(tmp_path):
  c = tiny_config(**{'train.num_steps': 6, 'train.eval_every_steps': 3, 'train.checkpoint_every_steps': 3})
  start = time.perf_counter()
  status = train.train(c, str(tmp_path / 'run'))
  wall = time.perf_counter() - start
  parts = status['time_parts']
  assert set(parts) == set(train.TIME_PARTS)
  assert all(v >= 0 for v in parts.values()), parts
  assert parts['train'] > 0 and parts['evaluate'] > 0 and parts['compile'] > 0 and parts['checkpoint'] > 0, parts
  assert sum(parts.values()) <= wall + 0.01, (parts, wall)
  assert runlog.read_status(str(tmp_path / 'run'))['time_parts'] == parts
