"""The cross-task study report, on study folders written by hand as the study runner writes them (study.json
and one sweep folder per part): known depth effects give known verdicts, one Holm family over the whole
study, a bimodal seed is fragile, and a metric where lower is better (WER, perplexity) that drops with
depth reads as "depth helps". No JAX, no training."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from deeprnn_jax.training import config as config_lib
from experiments import report
from experiments.report import stats

ACC = {
  'name': 'toy_acc',
  'seq_len': 10,
  'output_kind': 'class',
  'splits': ['val', 'test', 'test_len2x'],
  'baseline': {'metric': 'accuracy', 'value': 0.5, 'description': 'chance'},
  'threshold': {'metric': 'accuracy', 'value': 0.8, 'mode': 'max'},
  'metric_modes': {'loss': 'min', 'accuracy': 'max'},
}
WER = {
  'name': 'toy_digits',
  'seq_len': 50,
  'output_kind': 'ctc',
  'splits': ['val', 'test'],
  'baseline': {'metric': 'wer', 'value': 1.0, 'description': 'empty transcripts'},
  'threshold': None,
  'metric_modes': {'loss': 'min', 'wer': 'min', 'cer': 'min'},
}
PPL = {
  'name': 'toy_lm',
  'seq_len': 20,
  'output_kind': 'lm',
  'splits': ['val', 'test'],
  'baseline': {'metric': 'perplexity', 'value': 1000.0, 'description': 'uniform'},
  'threshold': None,
  'metric_modes': {'loss': 'min', 'perplexity': 'min'},
}
SMALL = (-0.01, 0.0, 0.01, 0.005)  # per-seed spread: 4 seeds


def _write_run(sweep_dir, task, metric, cell, depth, seed, final, basis='params'):
  """A finished run folder as the runner writes it: config.json, status.json, metrics.jsonl whose val curve
  goes from the baseline to ``final`` over three evaluations (train ends 5% better than held out)."""
  run_id = f'{cell}-d{depth}-s{seed}'
  d = os.path.join(sweep_dir, run_id)
  os.makedirs(d)
  c = config_lib.to_dict(config_lib.default_config())
  c['model'].update(cell=cell, depth=depth, width=8 if basis == 'width' else 16 // depth)
  c['train'].update(seed=seed, num_steps=300)
  c['sweep'] = {'param_budget': 400 if basis == 'params' else 0, 'param_tolerance': 0.02}
  json.dump(c, open(os.path.join(d, 'config.json'), 'w'))
  status = {'state': 'finished', 'step': 300, 'params': 400 if basis == 'params' else 200 * depth, 'task': task}
  json.dump(status, open(os.path.join(d, 'status.json'), 'w'))
  start = task['baseline']['value']
  train = final * (0.95 if task['metric_modes'][metric] == 'min' else 1.05)
  with open(os.path.join(d, 'metrics.jsonl'), 'w') as f:
    for step, v in zip((100, 200, 300), np.linspace(start, final, 3)):
      f.write(json.dumps({'step': step, 'split': 'train', metric: train, 'loss': 0.1}) + '\n')
      f.write(json.dumps({'step': step, 'split': 'val', metric: float(v), 'loss': 0.1}) + '\n')
    for split in task['splits'][1:]:
      f.write(json.dumps({'step': 300, 'split': split, metric: final, 'loss': 0.1}) + '\n')


def _write_sweep(study_dir, path, task, metric, finals, basis='params'):
  """A sweep folder: ``finals`` maps (cell, depth) -> the per-seed final values."""
  sweep_dir = os.path.join(study_dir, path)
  os.makedirs(sweep_dir)
  cells = list(dict.fromkeys(cell for cell, _ in finals))
  depths = sorted({depth for _, depth in finals})
  json.dump(
    {'config': config_lib.to_dict(config_lib.default_config()), 'axes': {'model.cell': cells, 'model.depth': depths}},
    open(os.path.join(sweep_dir, 'sweep.json'), 'w'),
  )
  for (cell, depth), values in finals.items():
    for seed, v in enumerate(values):
      _write_run(sweep_dir, task, metric, cell, depth, seed, v, basis)


def _study_json(study_dir, parts, **extra):
  json.dump(
    {'name': 'depth', 'shallow_depth': 1, 'parts': parts, **extra}, open(os.path.join(study_dir, 'study.json'), 'w')
  )


@pytest.fixture
def study(tmp_path):
  """Three parts. Accuracy (params): gru gains 0.3 with depth 2 (clear), rnn nothing (not distinguishable).
  WER (params): lstm's WER drops 0.5 -> 0.2 with depth 2 (clear, depth helps); gru's drops on three seeds
  while the fourth stays at depth 1's level (bimodal: not clear, clear without that seed: fragile).
  Perplexity (width): lstm's drops 150 -> 100 with depth 2 (clear, depth helps)."""
  s = str(tmp_path / 'study')
  os.makedirs(s)
  acc = {
    ('gru', 1): [0.6 + e for e in SMALL],
    ('gru', 2): [0.9 + e for e in SMALL],
    ('rnn', 1): [0.60, 0.62, 0.58, 0.61],
    ('rnn', 2): [0.61, 0.59, 0.60, 0.62],
  }
  _write_sweep(s, 'acc_params', ACC, 'accuracy', acc)
  wer = {
    ('lstm', 1): [0.5 + e for e in SMALL],
    ('lstm', 2): [0.2 + e for e in SMALL],
    ('gru', 1): [0.50, 0.51, 0.49, 0.50],
    ('gru', 2): [0.30, 0.31, 0.29, 0.50],  # the last seed stuck at the shallow level
  }
  _write_sweep(s, 'wer_params', WER, 'wer', wer)
  ppl = {('lstm', 1): [150 + 100 * e for e in SMALL], ('lstm', 2): [100 + 100 * e for e in SMALL]}
  _write_sweep(s, 'ppl_width', PPL, 'perplexity', ppl, basis='width')
  _study_json(
    s,
    [
      {'task': 'acc', 'basis': 'params', 'path': 'acc_params'},
      {'task': 'digits', 'basis': 'params', 'path': 'wer_params'},
      {'task': 'lm', 'basis': 'width', 'path': 'ppl_width'},
    ],
  )
  return s


def _rows(study_dir):
  return {
    (r['task'], r['cell'], r['depth']): r for r in csv.DictReader(open(os.path.join(study_dir, 'depth_effects.csv')))
  }


def test_known_effects_give_known_verdicts_in_one_family(study):
  path = report.write_study_report(study)
  assert path == os.path.join(study, 'report.md')
  rows = _rows(study)
  assert {k: r['verdict'] for k, r in rows.items()} == {
    ('acc', 'gru', '2'): 'clear',
    ('acc', 'rnn', '2'): 'not distinguishable',
    ('digits', 'lstm', '2'): 'clear',
    ('digits', 'gru', '2'): 'fragile',
    ('lm', 'lstm', '2'): 'clear',
  }
  # one Holm family over the whole study: the adjusted p-values are Holm's over all five Welch p-values
  p = [float(r['p_welch']) for r in rows.values()]
  np.testing.assert_allclose([float(r['p_holm']) for r in rows.values()], stats.holm(p), rtol=1e-9)
  acc = rows[('acc', 'gru', '2')]
  assert float(acc['effect_depth_helps_positive']) == pytest.approx(0.3, abs=1e-9)
  assert float(acc['ci95_low']) > 0 and acc['outcome'] == 'depth helps' and acc['better'] == 'higher'
  for name in ('depth_effects_params.png', 'depth_effects_width.png', 'convergence.csv'):
    assert os.path.getsize(os.path.join(study, name)) > 500
  text = open(path).read()
  assert 'positive means depth helps' in text and 'one family' in text and '5 comparisons' in text
  assert '## Equal parameters (the headline)' in text and '## Equal width' in text
  assert text.index('## Equal parameters') < text.index('## Equal width')
  assert '![Depth effects at equal parameters](depth_effects_params.png)' in text
  # convergence beside generalization: steps to the threshold only where the task has one
  conv = list(csv.DictReader(open(os.path.join(study, 'convergence.csv'))))
  acc_rows = [r for r in conv if r['task'] == 'acc']
  assert all(r['reached'] for r in acc_rows) and all(not r.get('reached') for r in conv if r['task'] != 'acc')
  assert all(r['test_len2x'] for r in acc_rows) and all(r['generalization_gap'] for r in conv)
  assert '(no threshold)' in text and 'test_len2x' in text


def test_what_held_states_only_clear_and_robust_verdicts(study):
  text = open(report.write_study_report(study)).read()
  held = text.split('## What held')[1].split('##')[0]
  params, width = held.split('At equal parameters, depth helped:')[1].split('At equal width, depth helped:')
  assert '- gru on acc: depth 2 vs 1: accuracy 0.9' in params and '- lstm on digits: depth 2 vs 1' in params
  assert '- lstm on lm: depth 2 vs 1' in width
  assert 'gru on digits' not in held and 'rnn on acc' not in held
  assert '1 fragile verdict' in held and '1 not distinguishable' in held


def test_what_held_puts_the_depths_of_one_cell_and_task_on_one_line(tmp_path):
  s = str(tmp_path / 'study')
  os.makedirs(s)
  finals = {
    ('gru', 1): [0.6 + e for e in SMALL],
    ('gru', 2): [0.8 + e for e in SMALL],
    ('gru', 4): [0.9 + e for e in SMALL],
  }
  _write_sweep(s, 'acc_params', ACC, 'accuracy', finals)
  _study_json(s, [{'task': 'acc', 'basis': 'params', 'path': 'acc_params'}])
  held = open(report.write_study_report(s)).read().split('## What held')[1].split('##')[0]
  lines = [line for line in held.splitlines() if line.startswith('- ')]
  assert len(lines) == 1 and lines[0].startswith('- gru on acc: depth 2 vs 1: accuracy 0.8')
  assert '; depth 4 vs 1: accuracy 0.9' in lines[0]


def test_a_bimodal_seed_is_fragile_and_named(study):
  report.write_study_report(study)
  row = _rows(study)[('digits', 'gru', '2')]
  assert row['outcome'] == 'not distinguishable' and row['changed_without'] == 'gru-d2-s3'
  text = open(os.path.join(study, 'report.md')).read()
  assert '*fragile* (without gru-d2-s3: depth helps)' in text


def test_metric_direction_lower_wer_and_perplexity_with_depth_is_depth_helps(study):
  """WER 0.5 -> 0.2 and perplexity 150 -> 100 with depth: both effects positive (shallow minus deep)."""
  report.write_study_report(study)
  rows = _rows(study)
  wer, ppl = rows[('digits', 'lstm', '2')], rows[('lm', 'lstm', '2')]
  assert float(wer['effect_depth_helps_positive']) == pytest.approx(0.3, abs=1e-9) and wer['better'] == 'lower'
  assert float(ppl['effect_depth_helps_positive']) == pytest.approx(50.0, abs=1e-6)
  assert wer['outcome'] == ppl['outcome'] == 'depth helps'
  assert float(wer['mean_deep']) == pytest.approx(0.20125) and float(wer['mean_shallow']) == pytest.approx(0.50125)


def test_the_command_line_detects_a_study_and_refuses_a_bad_one_in_one_line(study, capsys):
  assert report.main([study]) == 0
  assert capsys.readouterr().out.strip() == os.path.join(study, 'report.md')
  good = json.load(open(os.path.join(study, 'study.json')))
  for parts, want in [
    ([{'task': 'acc', 'basis': 'depth', 'path': 'acc_params'}], 'basis must be "params" or "width"'),
    ([{'task': 'acc', 'basis': 'params', 'path': 'acc_params', 'metric': 'bleu'}], "report.metric 'bleu'"),
    ([], 'a non-empty list'),
  ]:
    _study_json(study, parts)
    assert report.main([study]) == 2
    err = capsys.readouterr().err
    assert want in err and err.count('\n') == 1, err
  _study_json(study, good['parts'] + [{'task': 'later', 'basis': 'width', 'path': 'not_run_yet'}])
  text = open(report.write_study_report(study)).read()
  assert '| later | equal width | `not_run_yet` | | not run yet |' in text


def test_a_clear_verdict_one_seed_carries_is_fragile_and_not_said_to_hold(tmp_path):
  """A family of one: Welch p = 0.027 with all seeds (clear), 0.054 without the deep network's 0.72 seed
  (the values of test_stats' carried effect; some shallow seeds change it too): clear but fragile, so
  "what held" states nothing."""
  s = str(tmp_path / 'study')
  os.makedirs(s)
  shallow, carried = [0.40, 0.50, 0.60, 0.45, 0.55], [0.58, 0.59, 0.60, 0.61, 0.72]
  _write_sweep(s, 'acc', ACC, 'accuracy', {('lstm', 1): shallow, ('lstm', 2): carried})
  _study_json(s, [{'task': 'acc', 'basis': 'params', 'path': 'acc'}])
  text = open(report.write_study_report(s)).read()
  row = _rows(s)[('acc', 'lstm', '2')]
  assert row['outcome'] == 'depth helps' and row['verdict'] == 'fragile'
  assert 'lstm-d2-s4' in row['changed_without'].split()
  held = text.split('## What held')[1].split('##')[0]
  assert 'No depth effect held' in held and 'depth helped' not in held and '1 fragile verdict' in held


def test_the_heatmap_draws_only_clear_effects_at_full_strength(tmp_path, monkeypatch):
  """Two cells with the same effect, one clear and one not: the clear one is drawn opaque, the other
  faded and hatched, so an indistinguishable difference cannot be read as a finding."""
  from experiments.report import plots

  figures = []
  monkeypatch.setattr(plots, 'save', lambda fig, path: figures.append(fig))
  panel = {'title': 'params', 'rows': ['a d2', 'b d2', 'c d2'], 'columns': ['task'], 'values': [[0.5], [0.5], [np.nan]]}
  plots.plot_depth_effects(str(tmp_path / 'heat.png'), [dict(panel, text=[['+0.5*'], ['+0.5'], ['']])])
  (ax, _) = figures[0].axes  # the panel and its colour bar
  np.testing.assert_array_equal(np.ravel(ax.images[0].get_alpha()), [1.0, 0.3, 1.0])
  hatched = [(p.get_x(), p.get_y()) for p in ax.patches if p.get_hatch()]
  assert hatched == [(-0.5, 0.5)]  # the second row only
