"""Where a run's time went (status.json's ``time_parts``, train.TIME_PARTS): every part is recorded, none is
negative, training and evaluation took some, and together they are no more than the command's wall time."""

import time

from deeprnn_jax.training import runlog, train
from deeprnn_jax.training import config as config_lib


def test_a_run_records_where_its_time_went(tmp_path):
  c = config_lib.default_config()
  c.task.name = 'parentheses'
  c.task.options = {'seq_len': 6, 'num_eval': 8, 'length_generalization': False}
  c.model.width = 4
  c.train.num_steps, c.train.batch_size, c.train.eval_batch_size = 6, 4, 8
  c.train.log_every_steps, c.train.eval_every_steps, c.train.checkpoint_every_steps = 2, 3, 3
  c.train.progress, c.logging.wandb_mode = 'off', 'disabled'
  start = time.perf_counter()
  status = train.train(c, str(tmp_path / 'run'))
  wall = time.perf_counter() - start
  parts = status['time_parts']
  assert set(parts) == set(train.TIME_PARTS)
  assert all(v >= 0 for v in parts.values()), parts
  assert parts['train'] > 0 and parts['evaluate'] > 0 and parts['compile'] > 0 and parts['checkpoint'] > 0, parts
  assert sum(parts.values()) <= wall + 0.01, (parts, wall)
  assert runlog.read_status(str(tmp_path / 'run'))['time_parts'] == parts
