"""The ``tune`` section of a config: what hyperparameter tuning searches, and its rules.

``experiments/tune.py`` gives every variant (grid point of ``sweep.axes``) the same tuning budget: an
Optuna study of ``tune.trials`` trials over ``tune.space``, selected on validation only. This module
holds what the config says about it and checks it before anything trains (``check``); it imports
neither Optuna nor the runner, so validating a config stays cheap.

``tune.space`` maps a dotted config key to a distribution, stored nested as ``sweep.axes`` is
(``tune_space`` builds it from dotted keys, ``flat_space`` reads it back)::

  c.tune.space = tune_space({
    'optim.learning_rate': ('log_uniform', 1e-4, 1e-2),   # lo > 0; sampled uniformly in log space
    'optim.warmup_steps': ('int', 0, 200),                # inclusive; ('int', lo, hi, step) for a stride
    'optim.schedule': ('categorical', ['constant', 'cosine']),
    'model.dropout_rate': ('uniform', 0.0, 0.3),
  })

Every bound and choice must pass the key's own rule (a dropout rate in [0, 1), a positive learning rate).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from typing import Any, Iterable, Mapping, Sequence

import ml_collections

from deeprnn_jax.training.config_rules import ConfigError, _typename

SAMPLERS = ('tpe', 'random', 'grid', 'qmc')  # TPE (the default), random, a grid, quasi-random (Sobol)
PRUNERS = ('none', 'median', 'successive_halving', 'hyperband')  # successive halving = ASHA
DISTRIBUTIONS = ('uniform', 'log_uniform', 'int', 'categorical')
_STORAGE_SCHEMES = ('sqlite', 'postgresql', 'mysql')
# Keys a trial may not change: the task (a study compares settings on one task's validation split), and
# the keys that name the variant or the training seed.
_UNTUNABLE_PREFIXES = ('task.',)


@dataclasses.dataclass(frozen=True)
class Dimension:
  """One searched key: ``kind`` is one of ``DISTRIBUTIONS``; ``low``/``high`` bound the numeric kinds
  (inclusive), ``step`` strides an ``int``, ``choices`` lists a ``categorical``'s values."""

  key: str
  kind: str
  low: float | int | None = None
  high: float | int | None = None
  step: int = 1
  choices: tuple = ()

  def grid_values(self) -> list:
    """The values a grid sampler tries: the choices, or every integer of the range (stride ``step``)."""
    if self.kind == 'categorical':
      return list(self.choices)
    if self.kind == 'int':
      return list(range(int(self.low), int(self.high) + 1, self.step))
    raise ConfigError(
      f'tune.space.{self.key}',
      f"tune.sampler 'grid' needs finite values, not a continuous {self.kind!r} range; "
      "use ('categorical', [...]) or ('int', lo, hi), or another sampler",
    )

  def endpoints(self) -> list:
    """The values whose validity stands for the whole range: the bounds, or every choice."""
    return list(self.choices) if self.kind == 'categorical' else [self.low, self.high]


def tune_space(space: Mapping[str, Sequence]) -> ml_collections.ConfigDict:
  """``{'optim.learning_rate': ('log_uniform', 1e-4, 1e-2)}`` -> the nested ConfigDict ``tune.space`` stores."""
  nested: dict = {}
  for key, spec in space.items():
    d = nested
    parts = key.split('.')
    for part in parts[:-1]:
      d = d.setdefault(part, {})
    d[parts[-1]] = tuple(spec) if isinstance(spec, list) else spec
  return ml_collections.ConfigDict(nested)


def flat_space(space: Mapping | ml_collections.ConfigDict | None) -> dict[str, Any]:
  """``tune.space`` as ``{dotted key: spec}``, keys sorted (a stable order for samplers and files)."""
  if isinstance(space, ml_collections.ConfigDict):
    space = space.to_dict()
  out: dict[str, Any] = {}

  def walk(d, prefix):
    for k, v in d.items():
      if isinstance(v, Mapping):
        walk(v, f'{prefix}{k}.')
      else:
        out[f'{prefix}{k}'] = v

  walk(dict(space or {}), '')
  return dict(sorted(out.items()))


def _number(key: str, v: Any, what: str) -> float:
  if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
    raise ConfigError(key, f'{what} must be a finite number, got {v!r}')
  return v


def dimension(key: str, spec: Any) -> Dimension:
  """``spec`` (a tuple such as ``('log_uniform', 1e-4, 1e-2)``) checked and parsed; ``key`` is dotted."""
  where = f'tune.space.{key}'
  example = "e.g. ('log_uniform', 1e-4, 1e-2), ('int', 0, 200), ('categorical', ['constant', 'cosine'])"
  if not isinstance(spec, (list, tuple)) or not spec or not isinstance(spec[0], str):
    raise ConfigError(where, f'must be a (distribution, ...) tuple, {example}; got {_typename(spec)} {spec!r}')
  kind, args = spec[0], tuple(spec[1:])
  if kind not in DISTRIBUTIONS:
    close = difflib.get_close_matches(kind, DISTRIBUTIONS, n=1)
    hint = f'did you mean {close[0]!r}? ' if close else ''
    raise ConfigError(where, f'unknown distribution {kind!r}; {hint}valid: {", ".join(DISTRIBUTIONS)}')
  if kind == 'categorical':
    if len(args) != 1 or not isinstance(args[0], (list, tuple)) or not args[0]:
      raise ConfigError(where, f"categorical needs one non-empty list of values: ('categorical', [a, b]); got {spec!r}")
    choices = tuple(args[0])
    if len({json.dumps(c, sort_keys=True, default=str) for c in choices}) != len(choices):
      raise ConfigError(where, f'categorical values repeat: {list(choices)}')
    return Dimension(key, kind, choices=choices)
  if len(args) not in ((2, 3) if kind == 'int' else (2,)):
    shape = "('int', lo, hi) or ('int', lo, hi, step)" if kind == 'int' else f"('{kind}', lo, hi)"
    raise ConfigError(where, f'{kind} needs {shape}; got {spec!r}')
  lo, hi = (_number(where, v, name) for v, name in zip(args[:2], ('the lower bound', 'the upper bound')))
  step = args[2] if len(args) == 3 else 1
  if kind == 'int' and not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, step)):
    raise ConfigError(where, f"int bounds and step must be whole numbers, got {spec!r}; use 'uniform' for a real range")
  if kind == 'int' and step < 1:
    raise ConfigError(where, f'the int step must be >= 1, got {step}')
  if lo >= hi:
    raise ConfigError(where, f'empty range: the lower bound {lo} must be below the upper bound {hi}')
  if kind == 'log_uniform' and lo <= 0:
    raise ConfigError(where, f'log_uniform needs a positive lower bound, got {lo}; e.g. 1e-5')
  return Dimension(key, kind, low=lo, high=hi, step=step)


def _storage(key: str, v: Any) -> str | None:
  """None (SQLite in the workdir) or an RDB URL with no password written in it."""
  if v is None:
    return None
  if not isinstance(v, str) or '://' not in v:
    raise ConfigError(key, f'must be None (a SQLite file in the workdir) or a database URL, got {v!r}')
  scheme = v.split('://', 1)[0].split('+', 1)[0]
  if scheme not in _STORAGE_SCHEMES:
    raise ConfigError(key, f'unknown database {scheme!r} in {mask(v)!r}; valid: {", ".join(_STORAGE_SCHEMES)}')
  password = _password(v)
  if password and not re.fullmatch(r'\$\{?\w+\}?', password):
    raise ConfigError(
      key,
      f'{mask(v)!r} writes its password in the config (and so in every run folder); read it from the '
      'environment: postgresql+psycopg2://user:${PGPASSWORD}@host/db, or leave it out (libpq reads $PGPASSWORD)',
    )
  return v


def _metric(key: str, v: Any) -> str | None:
  """None (the task's own validation metric) or ``'<metric>'`` / ``'val/<metric>'``; never another split."""
  if v is None:
    return None
  if not isinstance(v, str) or not v:
    raise ConfigError(key, f'must be None or a metric name such as val/accuracy, got {v!r}')
  split, _, name = v.rpartition('/')
  if split and split != 'val':
    raise ConfigError(
      key,
      f'{v!r} selects on the {split!r} split; tuning selects on validation only (test is read once, by the '
      f'final seeds): use val/{name}',
    )
  return v


def _password(url: str) -> str | None:
  m = re.match(r'^[^:]+://[^:/@]*:([^@]*)@', url)
  return m.group(1) if m else None


def mask(url: str) -> str:
  """``url`` with its password (if any) as ``***``: what every message and file shows of a storage URL."""
  return re.sub(
    r'^([^:]+://[^:/@]*:)([^@]*)(@)', lambda m: m.group(1) + ('***' if m.group(2) else '') + m.group(3), url
  )


def check(d: Mapping[str, Any], rules: Mapping[str, Any], tunable: Iterable[str], axes: Mapping[str, Any]) -> None:
  """The ``tune`` section against the rest of the (normalized, plain-dict) config ``d``.

  ``rules``: the schema's rule per key; ``tunable``: the keys a trial may set (those a sweep may vary);
  ``axes``: the sweep axes (a key is either swept or tuned). Raises ``ConfigError`` on the first problem.
  """
  t = d['tune']
  space = flat_space(t['space'])
  tunable = [k for k in tunable if not k.startswith(_UNTUNABLE_PREFIXES)]
  dims = []
  for key, spec in space.items():
    where = f'tune.space.{key}'
    if key not in rules:
      close = difflib.get_close_matches(key, tunable, n=3)
      hint = f'did you mean {" or ".join(map(repr, close))}?' if close else 'tunable keys are those a sweep may vary'
      raise ConfigError(where, f'unknown config key {key!r}; {hint}')
    if key not in tunable:
      raise ConfigError(where, f'{key!r} cannot be tuned (the task, seeds and launch keys stay fixed in a study)')
    if key in axes:
      raise ConfigError(where, f'{key!r} is also a sweep axis; sweep it or tune it, not both')
    if key in ('model.width', 'model.top_width') and d['sweep']['param_budget']:
      raise ConfigError(where, 'sweep.param_budget solves the width; tune it or match parameters, not both')
    dim = dimension(key, spec)
    for value in dim.endpoints():
      rules[key](where, value)
    dims.append(dim)
  if dims and t['sampler'] == 'grid':
    size = math.prod(len(dim.grid_values()) for dim in dims)
    if t['trials'] > size:
      raise ConfigError(
        'tune.trials', f'{t["trials"]} trials but the grid has {size} points; set tune.trials <= {size}'
      )


def dimensions(config: Mapping | ml_collections.ConfigDict) -> list[Dimension]:
  """The parsed ``tune.space`` of a validated config, in key order."""
  d = config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config
  return [dimension(k, v) for k, v in flat_space(d['tune']['space']).items()]
