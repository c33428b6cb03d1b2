"""The tuning section of a report (``experiments/report/tuning.py``): Dodge et al.'s expected best of n
trials against exact enumeration, the "budget saturated?" mark, and the section on a constructed
``tune.json``."""

import itertools
import json

import numpy as np
import pytest

from experiments.report import tuning


@pytest.mark.parametrize('mode', ['max', 'min'])
@pytest.mark.parametrize('n', [1, 2, 3])
def test_expected_best_equals_the_mean_best_over_every_draw(mode, n):
  values = [0.3, 0.9, 0.5, 0.7]
  pick = max if mode == 'max' else min
  draws = [pick(d) for d in itertools.product(values, repeat=n)]  # every draw with replacement, equally likely
  assert tuning.expected_best(values, n, mode) == pytest.approx(np.mean(draws), rel=1e-12)


def test_saturated_when_more_trials_would_not_move_the_expected_best():
  assert tuning.saturated([0.80, 0.81, 0.80, 0.81, 0.80, 0.81, 0.80, 0.81], 'max') is True
  # One great trial among many poor ones: doubling the budget still moves the expected best a lot.
  assert tuning.saturated([0.1] * 7 + [0.9], 'max') is False
  assert tuning.saturated([0.5, 0.6], 'max') is None  # too few to say


def test_the_section_names_the_chosen_settings_importance_and_saturation(tmp_path):
  curve = [
    {'trial': i, 'value': v, 'best': v, 'params': {'optim.learning_rate': lr, 'optim.warmup_steps': w}}
    for i, (v, lr, w) in enumerate([(0.4, 1e-3, 0), (0.3, 3e-3, 10), (0.35, 1e-2, 5), (0.32, 2e-3, 0)])
  ]
  tune = {
    'trials_per_variant': 4,
    'sampler': 'tpe',
    'pruner': 'none',
    'seed': 0,
    'trial_seed': 3,
    'space': {'optim.learning_rate': ['log_uniform', 1e-4, 1e-2], 'optim.warmup_steps': ['int', 0, 10]},
    'final_dir': 'final',
    'final_seeds': [0, 1, 2],
    'variants': {
      'lstm-d1-w8': {
        'metric': 'val/loss',
        'mode': 'min',
        'chosen': {'optim.learning_rate': 3e-3, 'optim.warmup_steps': 10},
        'value': 0.3,
        'trials': {'complete': 4, 'pruned': 0, 'failed': 0},
        'curve': curve,
        'importance': {'optim.learning_rate': 0.8, 'optim.warmup_steps': 0.2},
      }
    },
  }
  (tmp_path / 'final').mkdir()
  (tmp_path / 'tune.json').write_text(json.dumps(tune))
  loaded = tuning.load_tuning(str(tmp_path / 'final'))
  assert loaded == tune and tuning.load_tuning(str(tmp_path)) is None  # only beside its own final runs
  figure = tuning.plot_tuning(str(tmp_path / 'final'), loaded)
  text = '\n'.join(tuning.tuning_section(loaded, figure))
  assert '| lstm-d1-w8 | `optim.learning_rate`=0.003, `optim.warmup_steps`=10 | 0.3 val/loss | 4 / 0 / 0 |' in text
  assert '| `optim.learning_rate` | 0.8 | 0.8 |' in text and 'tpe sampler' in text and '![tuning](tuning.png)' in text
  assert (tmp_path / 'final' / 'tuning.png').exists()
