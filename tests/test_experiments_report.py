"""The report, from run folders written by hand: the numbers, the CIs, the corrected verdicts, the
published references and the words it states."""

from __future__ import annotations

import csv
import glob
import json
import os

import numpy as np
import pytest

from deeprnn_jax.training import config as config_lib
from experiments import report
from experiments.report import stats

TASK = {
  'name': 'toy',
  'seq_len': 10,
  'output_kind': 'regression',
  'splits': ['val', 'test', 'test_len2x'],
  'baseline': {'metric': 'loss', 'value': 1.0, 'description': 'predict the mean'},
  'threshold': {'metric': 'loss', 'value': 0.1, 'mode': 'min'},
  'metric_modes': {'loss': 'min'},
}


def _write_run(workdir, cell, depth, seed, val_curve, state='finished', test=None, task=TASK, param_budget=0):
  run_id = f'{cell}-d{depth}-w8-s{seed}'
  d = os.path.join(workdir, run_id)
  os.makedirs(d)
  c = config_lib.to_dict(config_lib.default_config())
  c['model'].update(cell=cell, depth=depth, width=8)
  c['train'].update(seed=seed, num_steps=100)
  c['sweep'] = {'param_budget': param_budget, 'param_tolerance': 0.02}  # what a sweep's run config keeps
  json.dump(c, open(os.path.join(d, 'config.json'), 'w'))
  params = param_budget or 100 * depth
  status = {
    'state': state,
    'step': 100,
    'params': params,
    'task': task,
    'steps_per_sec': 100.0 / depth,
    'compile_seconds': 1.0,
  }
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
  for name in (
    'report.md',
    'summary.csv',
    'learning_curves.png',
    'final_vs_depth.png',
    'convergence_vs_depth.png',
    'grad_norms.png',
    'diverged.png',
    'length_generalization.png',
  ):
    assert os.path.getsize(os.path.join(workdir, name)) > 1000 or name.endswith('.md') or name.endswith('.csv')
  rows = {r['run_id']: r for r in csv.DictReader(open(os.path.join(workdir, 'summary.csv')))}
  assert len(rows) == 13
  r = rows['gru-d1-w8-s0']
  assert int(r['steps_to_threshold']) == 80 and int(rows['gru-d2-w8-s0']['steps_to_threshold']) == 40
  assert float(r['final_test_len2x_loss']) == pytest.approx(2 * float(r['final_test_loss']))
  # generalization gap: this run's test loss is its last val loss v and its last train loss 0.9 v,
  # so the gap (test minus train) is 0.1 v
  vals = [json.loads(l)['loss'] for l in open(os.path.join(workdir, 'gru-d1-w8-s0', 'metrics.jsonl')) if '"val"' in l]
  assert float(r['generalization_gap']) == pytest.approx(0.1 * vals[-1], rel=1e-9)
  # AUC: trapezoids over the val curve divided by its span
  assert float(r['val_loss_auc']) == pytest.approx(np.trapezoid(vals, range(20, 101, 20)) / 80)
  assert rows['rnn-d2-w8-s3']['status'] == 'diverged' and rows['rnn-d2-w8-s3']['diverged_step'] == '30'

  text = open(path).read()
  assert (
    '**gru**: depth 2 vs depth 1 (equal width 8, deeper = more parameters: 200 vs 100 params): final test loss'
  ) in text
  assert 'Depth is compared **at equal width**' in text
  assert 'better; clear: Holm-adjusted p = ' in text and 'over 7 tests' in text
  assert (
    'depth 2 reached the threshold (loss <= 0.1) in 50% fewer steps than depth 1 (mean 40 vs 80; 3/3 vs 3/3'
  ) in text
  assert '## Comparisons' in text and '| gru-d2-w8 − gru-d1-w8 | final_test_loss | -0.06 |' in text
  assert "Holm's step-down method" in text and 'scipy.stats.ttest_ind' in text and 'scipy.stats.nct' in text
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
  assert 'depth 4 vs depth 1' in text and 'not distinguishable: Holm-adjusted p = ' in text


def test_confidence_intervals_are_the_t_table_intervals():
  """The names report.py has always exported: t_{0.975, 2} = 4.303 (s = 1, n = 3); Welch with n = 3
  and s^2 = 1 on both sides has df = 4 exactly and t_{0.975, 4} = 2.776."""
  mean, half, n = report.mean_ci([1.0, 2.0, 3.0])
  assert (mean, n) == (2.0, 3) and half == pytest.approx(4.303 / np.sqrt(3), rel=1e-3)
  assert np.isnan(report.mean_ci([5.0])[1])
  d, lo, hi = report.diff_ci([10.0, 11.0, 12.0], [1.0, 2.0, 3.0])
  half = 2.776 * np.sqrt(1 / 3 + 1 / 3)
  assert d == 9.0 and (lo, hi) == (pytest.approx(9 - half, rel=1e-3), pytest.approx(9 + half, rel=1e-3))
  assert report.diff_ci([1.0], [2.0, 3.0]) is None
  assert report.clipped_interval is stats.clipped_interval and report.metric_range('accuracy') == (0.0, 1.0)


UNREACHED = dict(TASK, threshold={'metric': 'loss', 'value': 0.001, 'mode': 'min'})


def test_a_difference_clear_alone_is_not_clear_after_the_correction(tmp_path):
  """Depth 2's final losses (0.75, 0.85, 0.95) vs depth 1's (1.0, 1.1, 1.2): Welch p = 0.0376 (df 4),
  so the uncorrected 95% interval excludes 0. The report makes 3 tests (depth 2 and depth 3 vs depth 1;
  the best, depth 2, vs depth 3; depth 2 vs depth 1 again is the same test), so Holm multiplies the
  smallest p by 3: 0.11, not clear."""
  w = str(tmp_path / 'family')
  os.makedirs(w)
  for seed, (d1, d2) in enumerate([(1.0, 0.75), (1.1, 0.85), (1.2, 0.95)]):
    _write_run(w, 'gru', 1, seed, [1.5, 1.4, 1.3, 1.2, d1], task=UNREACHED)
    _write_run(w, 'gru', 2, seed, [1.5, 1.4, 1.3, 1.2, d2], task=UNREACHED)
    _write_run(w, 'gru', 3, seed, [1.5, 1.4, 1.3, 1.2, d1], task=UNREACHED)
  text = open(report.write_report(w)).read()
  line = next(l for l in text.splitlines() if 'depth 2 vs depth 1' in l)
  assert 'better; not distinguishable: Holm-adjusted p = 0.11 over 3 tests' in line
  assert '(uncorrected p = 0.038: alone, its 95% CI would exclude 0)' in line
  assert 'seeds per variant would resolve a difference this large at this spread' in line
  row = next(l for l in text.splitlines() if l.startswith('| gru-d2-w8 − gru-d1-w8 |'))
  cells = [c.strip() for c in row.split('|')[1:-1]]
  low, high = (float(x) for x in cells[3].strip('[]').split(','))
  assert 0 < -high < -low  # the 95% interval of depth 2 - depth 1 excludes 0 ...
  assert cells[4].endswith(' at 98.33%')
  s_low, s_high = (float(x) for x in cells[4].split(' at ')[0].strip('[]').split(','))
  assert s_low < 0 < s_high  # ... the one at Holm's level for it (1 - 0.05/3) does not
  assert cells[8] == 'not distinguishable' and int(cells[9]) > 3
  assert 'Not clearly different from it' in text and 'gru-d1-w8' in text.split('Not clearly different from it')[1]


def test_depth_at_equal_parameters_is_said(tmp_path):
  w = str(tmp_path / 'matched')
  os.makedirs(w)
  for seed in range(2):
    for depth in (1, 2):
      _write_run(w, 'lstm', depth, seed, [0.5, 0.4, 0.3, 0.2, 0.1 + 0.01 * seed], param_budget=2000)
  text = open(report.write_report(w)).read()
  assert 'Depth is compared **at equal parameters**: `sweep.param_budget` = 2000' in text
  assert 'depth 2 vs depth 1 (equal parameters, budget 2000 ± 2%: 2000 vs 2000 params)' in text


def test_published_values_are_shown_beside_ours(tmp_path):
  """sweep.json's config carries report.published: a number (inside or outside our interval) and a
  finding (solves / stays at the baseline), each beside what the runs gave."""
  w = str(tmp_path / 'pub')
  os.makedirs(w)
  for seed, (good, bad) in enumerate([(0.05, 0.9), (0.06, 0.95), (0.07, 1.0)]):
    _write_run(w, 'lstm', 1, seed, [0.5, 0.2, 0.09, 0.08, good])  # reaches loss <= 0.1 at step 60
    _write_run(w, 'rnn', 1, seed, [1.0, 1.0, 0.95, 0.9, bad])
  published = {
    'lstm': {'solved': True, 'source': 'Hochreiter & Schmidhuber 1997'},
    'rnn': {'solved': False, 'source': 'Le et al. 2015'},
    'lstm test loss': {
      'cell': 'lstm',
      'depth': 1,
      'metric': 'loss',
      'value': 0.06,
      'source': 'a paper',
      'note': 'Table 1',
    },
    'rnn test loss': {'cell': 'rnn', 'value': 0.5, 'source': 'another paper'},
    'gru': {'solved': True, 'source': 'not in this sweep'},
  }
  config = config_lib.to_dict(config_lib.default_config())
  config['report'] = {'published': published}
  json.dump({'config': config, 'axes': {'model.cell': ['lstm', 'rnn']}}, open(os.path.join(w, 'sweep.json'), 'w'))
  text = open(report.write_report(w)).read()
  assert '## Published reference' in text
  rows = {
    l.split('|')[1].strip(): [c.strip() for c in l.split('|')[1:-1]]
    for l in text.split('## Published reference')[1].split('## Variants')[0].splitlines()
    if l.startswith('| ')
  }
  assert rows['lstm'][1:3] == ['lstm-d1-w8', 'solves (reaches the threshold)'] and rows['lstm'][4] == 'yes'
  assert rows['lstm'][3].startswith('3/3 seeds reached loss <= 0.1')
  assert rows['rnn'][4:] == ['yes', 'Le et al. 2015', 'robust']
  assert rows['rnn'][3].startswith('0/3 seeds reached') and 'baseline 1' in rows['rnn'][3]
  assert rows['lstm test loss'][4] == 'yes (inside our 95% CI)' and rows['lstm test loss'][5] == 'a paper (Table 1)'
  assert rows['rnn test loss'][2] == 'test loss 0.5' and rows['rnn test loss'][4].startswith('no: ours is +0.45')
  assert rows['gru'][1] == 'no variant of this sweep'


def test_no_published_reference_no_section(workdir):
  assert '## Published reference' not in open(report.write_report(workdir)).read()


def test_report_command_line(tmp_path, workdir, capsys):
  assert report.main([workdir]) == 0
  assert capsys.readouterr().out.strip().endswith('report.md')
  assert report.main([str(tmp_path / 'nothing')]) == 2


REPRODUCE = sorted(
  glob.glob(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'reproduce', '*.py'))
)


@pytest.mark.parametrize('path', REPRODUCE, ids=[os.path.basename(p) for p in REPRODUCE])
def test_reproduce_configs_cite_what_the_report_shows(path):
  """Each configs/reproduce study names its source and published result in its docstring and hands
  the same to the report (report.published), in entries the report can read."""
  from experiments import sweep  # pylint: disable=g-import-not-at-top  (imports JAX; only this test needs it)

  config = sweep.load_config(path)
  entries = config_lib.to_dict(config)['report']['published']
  assert entries, path
  doc = open(path).read().split('"""')[1]
  assert 'Published' in doc and 'python -m experiments.run --config configs/reproduce/' in doc
  cells = set(config_lib.flat_axes(config).get('model.cell', [config.model.cell]))
  for label, entry in entries.items():
    assert entry.get('source') and (entry.get('value') is not None or entry.get('solved') is not None), label
    assert entry['source'].split()[0] in doc, (label, 'the docstring cites the source')
    assert entry.get('cell', label) in cells, (label, 'names a cell of the sweep')


def test_the_report_says_how_many_runs_shared_the_machine_when_speed_was_measured():
  from experiments.report import Run, speed_conditions  # noqa: PLC0415

  def runs(*workers):
    return [
      Run(run_id=f'r{i}', config={}, status={} if w is None else {'workers': w}, records=[])
      for i, w in enumerate(workers)
    ]

  assert '2 grid points trained at once on one machine' in speed_conditions(runs(2, 2))
  assert 'one grid point trained at a time' in speed_conditions(runs(1, 1))
  jobs = runs(1, 1)
  for r in jobs:
    r.status['launcher'] = 'slurm'
  assert 'each grid point trained as a job of its own (submitit, launcher slurm)' in speed_conditions(jobs)
  mixed = speed_conditions(runs(1, 2, None))
  assert 'trained with 1, 2 worker processes at once (1 run does not say)' in mixed and 'with care' in mixed


CLASSIFIER = {
  'name': 'toy_class',
  'seq_len': 10,
  'output_kind': 'class',
  'splits': ['val', 'test'],
  'baseline': {'metric': 'accuracy', 'value': 0.5, 'description': 'chance'},
  'threshold': None,
  'metric_modes': {'loss': 'min', 'accuracy': 'max'},
}


def _write_final(workdir, cell, depth, seed, task=CLASSIFIER, **final):
  """A finished run whose val and test evaluations end at ``final`` (metric -> value)."""
  run_id = f'{cell}-d{depth}-w8-s{seed}'
  d = os.path.join(workdir, run_id)
  os.makedirs(d)
  c = config_lib.to_dict(config_lib.default_config())
  c['model'].update(cell=cell, depth=depth, width=8)
  c['train'].update(seed=seed, num_steps=100)
  json.dump(c, open(os.path.join(d, 'config.json'), 'w'))
  json.dump(
    {'state': 'finished', 'step': 100, 'params': 100 * depth, 'task': task}, open(os.path.join(d, 'status.json'), 'w')
  )
  with open(os.path.join(d, 'metrics.jsonl'), 'w') as f:
    f.write(json.dumps({'step': 100, 'split': 'train', **final}) + '\n')
    for split in ('val', 'test'):
      f.write(json.dumps({'step': 100, 'split': split, **final}) + '\n')
  return run_id


def _sweep_json(workdir, **report_keys):
  config = config_lib.to_dict(config_lib.default_config())
  config['report'] = dict(config['report'], **report_keys)
  json.dump(
    {'config': config, 'axes': {'model.cell': ['gru'], 'model.depth': [1, 2]}},
    open(os.path.join(workdir, 'sweep.json'), 'w'),
  )


def test_the_report_ranks_on_the_tasks_metric_not_the_loss(tmp_path):
  """Depth 1 has the higher accuracy (0.90 vs 0.70) and the higher loss (0.8 vs 0.3, confidently
  wrong where it errs): a classification report ranks on accuracy, so depth 1 is best; report.metric
  = 'loss' turns the ranking over."""
  w = str(tmp_path / 'cls')
  os.makedirs(w)
  for seed, e in enumerate((-0.01, 0.0, 0.01)):
    _write_final(w, 'gru', 1, seed, accuracy=0.90 + e, loss=0.8 + e)
    _write_final(w, 'gru', 2, seed, accuracy=0.70 + e, loss=0.3 + e)
  _sweep_json(w)
  text = open(report.write_report(w)).read()
  assert "compared on test accuracy (higher is better; the task's own metric" in text
  assert '**Best variant** by final test accuracy: gru-d1-w8' in text
  assert 'final test accuracy 0.7 vs 0.9 (-22%, worse' in text
  row = next(csv.DictReader(open(os.path.join(w, 'summary.csv'))))
  assert float(row['best_val_accuracy']) == pytest.approx(0.89)
  _sweep_json(w, metric='loss')
  text = open(report.write_report(w)).read()
  assert 'compared on test loss (lower is better; set by `report.metric`)' in text
  assert '**Best variant** by final test loss: gru-d2-w8' in text
  _sweep_json(w, metric='entity_f1')
  with pytest.raises(ValueError, match="report.metric 'entity_f1' is not a metric these runs record"):
    report.write_report(w)
  assert report.main([w]) == 2


@pytest.mark.parametrize(
  'facts, recorded, want',
  [
    (
      {'baseline': {'metric': 'entity_f1'}, 'metric_modes': {'loss': 'min', 'accuracy': 'max', 'entity_f1': 'max'}},
      {'loss', 'accuracy', 'entity_f1'},
      ('entity_f1', 'max'),
    ),  # tagging
    (
      {
        'baseline': {'metric': 'accuracy'},
        'threshold': {'metric': 'accuracy', 'value': 0.99, 'mode': 'max'},
        'metric_modes': {'loss': 'min', 'accuracy': 'max', 'decoded_exact_match': 'max', 'bleu': 'max'},
      },
      {'loss', 'accuracy', 'decoded_exact_match', 'bleu'},
      ('bleu', 'max'),
    ),  # translation / transduction
    (
      {'baseline': {'metric': 'accuracy'}, 'metric_modes': {'loss': 'min', 'accuracy': 'max', 'bleu': 'max'}},
      {'loss', 'accuracy'},
      ('accuracy', 'max'),
    ),  # BLEU not evaluated: the baseline's metric
    (
      {'baseline': {'metric': 'cer'}, 'metric_modes': {'loss': 'min', 'cer': 'min', 'wer': 'min'}},
      {'loss', 'cer', 'wer'},
      ('cer', 'min'),
    ),  # speech to text, baseline stated in CER
    (
      {'baseline': {'metric': 'loss'}, 'metric_modes': {'loss': 'min', 'wer': 'min', 'cer': 'min'}},
      {'loss', 'cer', 'wer'},
      ('wer', 'min'),
    ),
    (
      {'baseline': {'metric': 'loss'}, 'metric_modes': {'loss': 'min', 'perplexity': 'min'}},
      {'loss', 'perplexity'},
      ('perplexity', 'min'),
    ),  # word language model
    (
      {'baseline': {'metric': 'accuracy'}, 'metric_modes': {'loss': 'min', 'accuracy': 'max'}},
      {'loss', 'accuracy'},
      ('accuracy', 'max'),
    ),  # classification
    (
      {
        'baseline': {'metric': 'loss'},
        'threshold': {'metric': 'loss', 'value': 0.01, 'mode': 'min'},
        'metric_modes': {'loss': 'min'},
      },
      {'loss'},
      ('loss', 'min'),
    ),  # regression (adding)
    ({}, set(), ('loss', 'min')),
  ],
)
def test_the_metric_is_the_fields_metric_for_the_task(facts, recorded, want):
  assert report.main_metric(facts, recorded) == want


# Depth 1 seeds spread widely; depth 2: gru uniformly 0.3 better, rnn's fifth seed stuck at 0.35.
SHALLOW = (0.40, 0.50, 0.60, 0.45, 0.55)
STUCK = (0.70, 0.72, 0.68, 0.71, 0.35)


def test_verdicts_that_rest_on_one_seed_are_marked_fragile(tmp_path):
  """rnn: depth 2 vs 1 is not distinguishable (Welch p = 0.15) but clear without rnn-d2's stuck seed
  (p = 0.0037): fragile. gru: depth 2 is 0.3 better on every seed: clear and robust. rnn-d2's mean
  (0.632) is above the baseline 0.5 but its 95% interval reaches it; without the stuck seed it clears
  it: fragile too."""
  w = str(tmp_path / 'fragile')
  os.makedirs(w)
  for seed in range(5):
    _write_final(w, 'rnn', 1, seed, accuracy=SHALLOW[seed], loss=1.0)
    _write_final(w, 'rnn', 2, seed, accuracy=STUCK[seed], loss=1.0)
    _write_final(w, 'gru', 1, seed, accuracy=SHALLOW[seed], loss=1.0)
    _write_final(w, 'gru', 2, seed, accuracy=SHALLOW[seed] + 0.3, loss=1.0)
  text = open(report.write_report(w)).read()
  rnn = next(l for l in text.splitlines() if l.startswith('- **rnn**: depth 2 vs depth 1'))
  assert 'not distinguishable' in rnn and rnn.endswith('**[fragile: without rnn-d2-w8-s4, it is clear]**.')
  gru = next(l for l in text.splitlines() if l.startswith('- **gru**: depth 2 vs depth 1'))
  assert 'better; clear: Holm-adjusted p' in gru and 'fragile' not in gru
  assert '0 of 4 variants beat the baseline' not in text and 'Better than the baseline on the mean only' in text
  mean_only = next(l for l in text.splitlines() if 'on the mean only' in l)
  assert 'rnn-d2-w8 **[fragile: without rnn-d2-w8-s4, its 95% interval clears the baseline]**' in mean_only
  assert '2 of 4 variants beat the baseline' not in text and '1 of 4 variants beat the baseline' in text
  table = next(l for l in text.splitlines() if l.startswith('| rnn-d2-w8 − rnn-d1-w8 |'))
  assert table.endswith('| **fragile: without rnn-d2-w8-s4, it is clear** |')
  assert next(l for l in text.splitlines() if l.startswith('| gru-d2-w8 − gru-d1-w8 |')).endswith('| robust |')
  rows = {r['run_id']: r for r in csv.DictReader(open(os.path.join(w, 'summary.csv')))}
  assert 'rnn-d2-w8 vs rnn-d1-w8 on final_test_accuracy' in rows['rnn-d2-w8-s4']['fragile_without_this_run']
  assert 'rnn-d2-w8 beats the baseline' in rows['rnn-d2-w8-s4']['fragile_without_this_run']
  assert rows['gru-d2-w8-s0']['fragile_without_this_run'] == ''
  verdicts = {r['verdict']: r for r in csv.DictReader(open(os.path.join(w, 'verdicts.csv')))}
  v = verdicts['rnn-d2-w8 vs rnn-d1-w8 on final_test_accuracy']
  assert (v['outcome'], v['fragile'], v['changed_without'], v['outcome_without']) == (
    'not distinguishable',
    'True',
    'rnn-d2-w8-s4',
    'a > b',
  )
  assert verdicts['gru-d2-w8 vs gru-d1-w8 on final_test_accuracy']['fragile'] == 'False'


def test_a_published_value_inside_our_interval_only_thanks_to_one_seed_is_fragile(tmp_path):
  """Test accuracies 0.88, 0.885, 0.89, 0.875, 0.95: mean 0.896, 95% interval +- 0.038, so the published
  0.91 lies inside; without the 0.95 seed the interval is 0.8825 +- 0.010 and 0.91 lies outside."""
  w = str(tmp_path / 'pub_fragile')
  os.makedirs(w)
  for seed, acc in enumerate((0.88, 0.885, 0.89, 0.875, 0.95)):
    _write_final(w, 'gru', 1, seed, accuracy=acc, loss=0.3)
  mean, half, _ = stats.mean_ci([0.88, 0.885, 0.89, 0.875])
  mean_all, half_all, _ = stats.mean_ci([0.88, 0.885, 0.89, 0.875, 0.95])
  assert mean + half < 0.91 < mean_all + half_all
  _sweep_json(w, published={'gru': {'metric': 'accuracy', 'split': 'test', 'value': 0.91, 'source': 'a paper'}})
  text = open(report.write_report(w)).read()
  row = next(l for l in text.splitlines() if l.startswith('| gru | gru-d1-w8 |'))
  cells = [c.strip() for c in row.split('|')[1:-1]]
  assert cells[4] == 'yes (inside our 95% CI)'
  assert cells[6] == "**fragile: without gru-d1-w8-s4, the answer is 'no'**"


@pytest.mark.parametrize(
  'metric, modes, curve',
  [
    ('wer', {'wer': 'min'}, [0.8, 0.2, 0.5, 0.6, 0.7]),
    ('perplexity', {}, [300.0, 120.0, 150.0, 180.0, 200.0]),  # no metric_modes entry: lower is better by name
    ('loss', {'loss': 'min'}, [0.9, 0.1, 0.3, 0.4, 0.5]),
    ('accuracy', {'accuracy': 'max'}, [0.3, 0.9, 0.5, 0.6, 0.4]),
  ],
)
def test_best_value_and_step_follow_the_metrics_direction(metric, modes, curve):
  """Issue 26, row 7: the best evaluation is the lowest for a lower-is-better metric (loss, perplexity,
  WER) and the highest for accuracy; each curve here is best at its second evaluation (step 40), not at
  its last, and worst at its first, so an argmax for every metric (or the last value) is caught."""
  config = {'model': {'cell': 'gru', 'depth': 1, 'width': 8}, 'train': {'seed': 0, 'num_steps': 100}}
  records = []
  for step, v in zip(range(20, 101, 20), curve):
    records += [{'step': step, 'split': 'val', metric: v}, {'step': step, 'split': 'test', metric: 10 * v}]
  run = report.Run('gru-d1-w8-s0', config, {'state': 'finished'}, records)
  row = report.summarize(run, [], {'splits': ['val', 'test'], 'metric_modes': modes}, metric)
  assert row[f'best_val_{metric}'] == curve[1] and row['best_step'] == 40
  assert row[f'test_at_best_val_{metric}'] == 10 * curve[1]


def test_no_threshold_column_one_test_said_so_and_the_baseline_named_by_its_label(tmp_path):
  """Issue 24's frictions: a task without a threshold gets no "steps to threshold ... 0/2 reached"
  column; a family of one comparison is "over 1 test"; the majority-class baseline names its label
  (``food``), not its id (0)."""
  task = dict(
    CLASSIFIER,
    baseline={
      'metric': 'accuracy',
      'value': 0.5,
      'description': 'always predict the most frequent training label (0), accuracy on test',
    },
    info={'label_names': ['food', 'sport'], 'majority_class': 0},
  )
  w = str(tmp_path / 'cls')
  os.makedirs(w)
  for seed, e in enumerate((-0.01, 0.0, 0.01)):
    _write_final(w, 'gru', 1, seed, task=task, accuracy=0.70 + e, loss=0.5)
    _write_final(w, 'gru', 2, seed, task=task, accuracy=0.80 + 2 * e, loss=0.4)
  text = open(report.write_report(w)).read()
  assert 'threshold' not in text.lower() and 'reached' not in text
  assert 'over 1 test;' in text and 'The 1 test this report makes' in text and '1 tests' not in text
  alone = stats.compare({'same': ([1.0, 2.0, 3.0], [1.1, 2.1, 3.1])})['same']  # a family of one, not clear
  assert report.verdict(alone).startswith('not distinguishable: Holm-adjusted p = 0.91 over 1 test;')
  assert 'always predict the most frequent training label (`food`), accuracy on test' in text
  assert 'label (0)' not in text
