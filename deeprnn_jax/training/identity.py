"""When two configs describe the same runs: fingerprints, the keys that differ, and whether runs made
with one config can go on as runs of another (a rerun resumes; more steps extend).

A run folder's ``config.json`` is compared with the config a launch asks for: equal results
fingerprints (every key but ``RUNTIME_KEYS``) resume, ``train.num_steps`` raised alone extends where
``continuation_problem`` allows it, anything else is another sweep.
"""

from __future__ import annotations

import json
from typing import Mapping

import ml_collections

from deeprnn_jax.training.config import flatten, to_dict


def without_seed(config: ml_collections.ConfigDict | Mapping) -> dict:
  """The config without ``train.seed`` and ``sweep``: what the runs of one grid point share."""
  d = to_dict(config)
  d['train'].pop('seed', None)
  d.pop('sweep', None)
  return d


def fingerprint(config: ml_collections.ConfigDict | Mapping) -> str:
  """A canonical JSON string of a config (key order and tuple/list differences removed)."""
  return json.dumps(to_dict(config), sort_keys=True, default=list)


# Keys that change how a run is launched or watched, never its numbers: they may differ between the
# launches of one sweep (e.g. adding seeds, switching wandb off) without making it another sweep.
# 'code' is the code version a run folder's config.json records; 'sweep.vmap_seeds' and
# 'train.progress_bar' are old names, still in the config.json of sweeps made before. 'tune': how the
# settings are searched (experiments/tune.py sets a trial's values on their own keys), never a run's numbers.
RUNTIME_KEYS = (
  'code',
  'logging',
  'report',
  'launch',
  'tune',
  'train.progress',
  'train.progress_bar',
  'sweep.axes',
  'sweep.seeds',
  'sweep.seed_program',
  'sweep.vmap_seeds',
)


def result_fingerprint(config: ml_collections.ConfigDict | Mapping) -> str:
  """``fingerprint`` of the keys that decide a run's results (all but ``RUNTIME_KEYS``)."""
  d = to_dict(config)
  for key in RUNTIME_KEYS:
    parts = key.split('.')
    parent = d
    for part in parts[:-1]:
      parent = parent.get(part, {})
    if isinstance(parent, dict):
      parent.pop(parts[-1], None)
  return fingerprint(d)


def differing_keys(a: ml_collections.ConfigDict | Mapping, b: ml_collections.ConfigDict | Mapping) -> list[str]:
  """Dotted keys whose values differ between two configs (RUNTIME_KEYS ignored)."""
  fa = json.loads(result_fingerprint(a))
  fb = json.loads(result_fingerprint(b))
  fa, fb = flatten(fa, stop=()), flatten(fb, stop=())
  return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def continuation_problem(
  old: ml_collections.ConfigDict | Mapping, new: ml_collections.ConfigDict | Mapping
) -> str | None:
  """Why runs made with config ``old`` cannot go on as runs of ``new``; None if they can.

  Equal configs can (a rerun resumes). A config that only raises ``train.num_steps`` extends a run:
  it continues from its final checkpoint exactly as an uninterrupted longer run would, which holds
  when nothing the run computed depends on the old length: a constant learning rate whose warmup
  ended within the old steps, and an old end on the log and eval cadence (the interval sums and the
  evaluations at the old end are the ones the longer run makes).
  """
  keys = differing_keys(old, new)
  if not keys:
    return None
  if keys != ['train.num_steps']:
    return f'differs in {", ".join(keys[:6])}'
  o, n = to_dict(old), to_dict(new)
  before, after = o['train']['num_steps'], n['train']['num_steps']
  if after < before:
    return f'train.num_steps {after} is below the {before} steps trained; only more steps can extend it'
  why = []
  if n['optim'].get('schedule') != 'constant':
    why.append(f'the {n["optim"].get("schedule")!r} schedule depends on train.num_steps')
  if n['optim'].get('warmup_steps', 0) > before:
    why.append(f'the warmup ({n["optim"]["warmup_steps"]} steps) did not end within the {before} steps trained')
  for key in ('log_every_steps', 'eval_every_steps'):
    if before % n['train'][key]:
      why.append(f'the {before} steps trained are not a multiple of train.{key}')
  if why:
    return f'train.num_steps {before} -> {after} cannot extend these runs: {"; ".join(why)}'
  return None
