"""The report, from run folders written by hand: the numbers, the CIs and the words it states."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from deeprnn_jax import config as config_lib
from experiments import report

TASK = {'name': 'toy', 'seq_len': 10, 'output_kind': 'regression', 'splits': ['val', 'test', 'test_len2x'],
        'baseline': {'metric': 'loss', 'value': 1.0, 'description': 'predict the mean'},
        'threshold': {'metric': 'loss', 'value': 0.1, 'mode': 'min'}, 'metric_modes': {'loss': 'min'}}


def _write_run(workdir, cell, depth, seed, val_curve, state='finished', test=None):
  run_id = f'{cell}-d{depth}-w8-s{seed}'
  d = os.path.join(workdir, run_id)
  os.makedirs(d)
  c = config_lib.to_dict(config_lib.default_config())
  c['model'].update(cell=cell, depth=depth, width=8)
  c['train'].update(seed=seed, num_steps=100)
  json.dump(c, open(os.path.join(d, 'config.json'), 'w'))
  status = {'state': state, 'step': 100, 'params': 100 * depth, 'task': TASK, 'steps_per_sec': 100.0 / depth,
            'compile_seconds': 1.0}
  if state == 'diverged':
    status['diverged_step'] = 30
  json.dump(status, open(os.path.join(d, 'status.json'), 'w'))
  with open(os.path.join(d, 'metrics.jsonl'), 'w') as f:
    for step, v in zip(range(20, 101, 20), val_curve):
      f.write(json.dumps({'step': step, 'split': 'train', 'loss': v * 0.9, 'grad_norm/layer_0': 1.0}) + '\n')
      f.write(json.dumps({'step': step, 'split': 'val', 'loss': v}) + '\n')
    last = val_curve[-1] if test is None else test
    f.write(json.dumps({'step': 100, 'split': 'test', 'loss': last}) + '\n')
    f.write(json.dumps({'step': 100, 'split': 'test_len2x', 'loss': 2 * last}) + '\n')
  return run_id


@pytest.fixture
def workdir(tmp_path):
  w = str(tmp_path / 'toy')
  os.makedirs(w)
  rng = np.random.default_rng(0)
  for cell in ('gru', 'rnn'):
    for seed in range(3):
      noise = rng.normal(0, 0.005, 5)
      # depth 2 learns faster and ends lower: it reaches 0.1 at step 40 instead of step 80
      _write_run(w, cell, 1, seed, list(np.array([0.8, 0.5, 0.3, 0.09, 0.08]) + noise))
      _write_run(w, cell, 2, seed, list(np.array([0.4, 0.09, 0.05, 0.03, 0.02]) + noise))
  _write_run(w, 'rnn', 2, 3, [0.5, 0.4, 0.3, 0.2, 0.1], state='diverged')
  return w


def test_report_files_numbers_and_statements(workdir):
  path = report.write_report(workdir)
  for name in ('report.md', 'summary.csv', 'learning_curves.png', 'final_vs_depth.png', 'convergence_vs_depth.png',
               'grad_norms.png', 'diverged.png', 'length_generalization.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 1000 or name.endswith('.md') or name.endswith('.csv')
  rows = {r['run_id']: r for r in csv.DictReader(open(os.path.join(workdir, 'summary.csv')))}
  assert len(rows) == 13
  r = rows['gru-d1-w8-s0']
  assert int(r['steps_to_threshold']) == 80 and int(rows['gru-d2-w8-s0']['steps_to_threshold']) == 40
  assert float(r['final_test_len2x_loss']) == pytest.approx(2 * float(r['final_test_loss']))
  # generalization gap: test minus train (train loss is 0.9 x val here)
  assert float(r['generalization_gap']) == pytest.approx(float(r['final_test_loss']) - float(r['final_train_loss']))
  # AUC: trapezoids over the val curve divided by its span
  vals = [json.loads(l)['loss'] for l in open(os.path.join(workdir, 'gru-d1-w8-s0', 'metrics.jsonl'))
          if '"val"' in l]
  assert float(r['val_loss_auc']) == pytest.approx(np.trapezoid(vals, range(20, 101, 20)) / 80)
  assert rows['rnn-d2-w8-s3']['status'] == 'diverged' and rows['rnn-d2-w8-s3']['diverged_step'] == '30'

  text = open(path).read()
  assert '**gru**: depth 2 vs depth 1: final test loss' in text
  assert 'better; clear: 95% CI of the difference' in text
  assert 'depth 2 reached the threshold (loss <= 0.1) in 50% fewer steps than depth 1 (mean 40 vs 80; 3/3 vs 3/3' in text
  assert 'Diverged: rnn-d2-w8: 1/4 seeds.' in text
  assert '4 of 4 variants beat the baseline' in text
  assert '![Validation curves](learning_curves.png)' in text


def test_no_difference_is_called_not_distinguishable(tmp_path):
  w = str(tmp_path / 'same')
  os.makedirs(w)
  for seed, (a, b) in enumerate([(0.10, 0.11), (0.12, 0.09), (0.08, 0.10)]):
    _write_run(w, 'lstm', 1, seed, [0.5, 0.3, 0.2, 0.15, a])
    _write_run(w, 'lstm', 4, seed, [0.5, 0.3, 0.2, 0.15, b])
  text = open(report.write_report(w)).read()
  assert 'depth 4 vs depth 1' in text and 'not distinguishable: 95% CI of the difference' in text


def test_confidence_intervals():
  mean, half, n = report.mean_ci([1.0, 2.0, 3.0])
  # t_{0.975, 2} = 4.3027, s = 1
  assert (mean, n) == (2.0, 3) and half == pytest.approx(4.3027 / np.sqrt(3), rel=1e-4)
  assert np.isnan(report.mean_ci([5.0])[1])
  d, lo, hi = report.diff_ci([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
  assert d == 9.0 and lo > 0 and hi > lo
  assert report.diff_ci([1.0], [2.0, 3.0]) is None


def test_plotted_intervals_stay_in_the_metric_range():
  mean, half, _ = report.mean_ci([0.9, 0.99, 1.0])   # t interval 0.963 +- 0.137 reaches 1.10
  assert mean + half > 1
  low, high = report.clipped_interval('accuracy', [mean], [half])
  assert high[0] == 1.0 and low[0] == pytest.approx(mean - half)
  low, high = report.clipped_interval('frame_accuracy', [0.05], [0.1])
  assert (low[0], high[0]) == (0.0, pytest.approx(0.15))
  low, high = report.clipped_interval('loss', [0.1], [0.3])
  assert (low[0], high[0]) == (0.0, pytest.approx(0.4))


def test_report_command_line(tmp_path, workdir, capsys):
  assert report.main([workdir]) == 0
  assert capsys.readouterr().out.strip().endswith('report.md')
  assert report.main([str(tmp_path / 'nothing')]) == 2
