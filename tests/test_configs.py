"""The shipped configs: each loads, validates, and (where its data needs no download) expands into
its grid with matched parameter counts."""

from __future__ import annotations

import glob
import json
import os

import pytest

from experiments import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(REPO, 'configs', '**', '*.py'), recursive=True))
# configs/studies/: study configs (experiments.study), not run configs; tests/test_study.py checks them
CONFIGS = [p for p in CONFIGS if os.sep + 'studies' + os.sep not in p]
# Data the user prepares or has.
# text_classification.py: the user's CSV (docs/tutorials/your_csv.md runs it end to end on a written one)
NEEDS_DATA = {
  'imdb_sentiment.py',
  'ner_conll.py',
  'keyword_spotting.py',
  'speech_ctc_depth.py',
  'ptb_lm.py',
  'text_classification.py',
  'connected_digits_depth.py',
}


def test_there_are_configs():
  names = {os.path.basename(p) for p in CONFIGS}
  assert {'quickstart.py', 'imdb_sentiment.py'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_loads_and_validates(path):
  config = sweep.load_config(path)
  assert config.train.num_steps > 0


EXPANDABLE = [
  pytest.param(p, id=os.path.basename(p), marks=() if os.path.basename(p) == 'quickstart.py' else pytest.mark.slow)
  for p in CONFIGS
  if os.path.basename(p) not in NEEDS_DATA
]


@pytest.mark.parametrize('path', EXPANDABLE)
def test_config_grid_expands(path):
  """The grid builds (tasks, parameter matching within tolerance); the studies' tasks are large, so
  all but the quickstart are slow tests."""
  config = sweep.load_config(path)
  points = sweep.expand(config)
  assert points and len({p.variant for p in points}) == len(points)
  if config.sweep.param_budget:
    for p in points:
      budget = p.config.sweep.param_budget
      assert abs(p.params - budget) / budget <= p.config.sweep.param_tolerance, p.variant


def test_a_sweep_made_before_the_seed_program_rename_is_the_same_sweep():
  from deeprnn_jax.training import config as config_lib
  from deeprnn_jax.training import identity

  new = config_lib.to_dict(config_lib.default_config())
  old = json.loads(json.dumps(new))
  del old['sweep']['seed_program']
  old['sweep']['vmap_seeds'] = True  # what a config.json written before the rename holds
  assert identity.result_fingerprint(old) == identity.result_fingerprint(new)
