r"""Optimizer hyperparameters as inputs of the compiled program, not constants in it.

The runner's optimizer (``build.optimizer_from_config``) bakes the learning rate, warmup, weight decay,
clipping threshold and the optimizer's numeric arguments (``optim.kwargs``: Adam's ``b1``, ``b2``,
``eps``, ...) into the traced program as constants. Here they become state instead, with optax's
``inject_hyperparams``: ``opt_state.hyperparams`` holds them as arrays, and the update reads them there.
Two consequences:

* the trials of a tuning study that differ only in these values trace to the same program, so they
  compile once (the jit cache within a process, the persistent compilation cache across processes);
* runs that differ only in these values and in the seed train as one *population*: the seed axis of
  ``train.train_seeds`` carries each row's own hyperparameters in its optimizer state (PureJaxRL's
  populations), vmapped or looped like seeds.

The learning-rate schedule is computed from the injected peak and warmup in the program
(``schedule``), the same formula as the runner's ``'constant'`` (with its linear warmup) and
``'cosine'`` schedules (optax's ``warmup_cosine_decay_schedule``); other schedules are not injectable
(``problem`` says why). Clipping is always in the chain (a threshold of 0, "off", is injected as
:math:`\infty`, which clips nothing) and so is the L2 weight decay of optimizers without a decoupled one
(0 adds nothing), so that every member of a population has the same optimizer structure.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import identity

# The config keys injected (besides the numbers in optim.kwargs), by their names in opt_state.hyperparams.
KEYS = {
  'learning_rate': 'optim.learning_rate',
  'warmup_steps': 'optim.warmup_steps',
  'weight_decay': 'optim.weight_decay',
  'clip_global_norm': 'optim.clip_global_norm',
}
SCHEDULES = ('constant', 'cosine')
_KWARG = 'opt_'  # prefix of an optimizer keyword argument among the hyperparameters (opt_b1)


def _numeric(v: Any) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def problem(config: ml_collections.ConfigDict | Mapping) -> str | None:
  """Why ``config``'s optimizer cannot take its hyperparameters as inputs, or None if it can."""
  o = config_lib.to_dict(config)['optim']
  if o['schedule'] not in SCHEDULES:
    return f'optim.schedule={o["schedule"]!r}: only {" and ".join(SCHEDULES)} compute their rate from injected values'
  return None


def values(config: ml_collections.ConfigDict | Mapping) -> dict[str, float]:
  """The injected hyperparameters of ``config``: the four of ``KEYS`` and every number among the
  optimizer's keyword arguments (``build.optimizer_kwargs``: ``optim.kwargs``, ``optim.beta1``, ...)."""
  d = config_lib.to_dict(config)
  out = {name: config_lib.get_path(d, key) for name, key in KEYS.items()}
  kwargs = build.optimizer_kwargs(d)
  out.update({_KWARG + k: v for k, v in kwargs.items() if _numeric(v) and k != 'weight_decay'})
  return out


def without_values(config: ml_collections.ConfigDict | Mapping) -> dict:
  """``config`` with the numbers ``values`` injects blanked: what the members of a population share."""
  d = config_lib.to_dict(config)
  for key in list(KEYS.values()) + [f'optim.{k}' for k in build.OPTIMIZER_KEYS.get(d['optim']['name'], {})]:
    config_lib.set_path(d, key, None)
  kwargs = d['optim'].get('kwargs') or {}
  d['optim']['kwargs'] = {k: (None if _numeric(v) else v) for k, v in kwargs.items()}
  return d


def schedule(optim: Mapping, num_steps: int, learning_rate, warmup_steps):
  """The learning rate at step ``count`` of schedule ``optim['schedule']``, from a (traced) peak and
  warmup: ``'constant'``, :math:`\\eta \\min(1, t / w)` (:math:`\\eta` from step 0 without warmup);
  ``'cosine'``, the linear warmup then :math:`\\eta \\big((1 - \\alpha) \\tfrac{1}{2}(1 + \\cos(\\pi
  \\min(t', D) / D)) + \\alpha\\big)` with :math:`t' = t - w`, :math:`D = \\max(T, w + 1) - w` and
  :math:`\\alpha` = ``cosine_final_fraction``: optax's formulas, with the same operations."""

  def warm(count):
    frac = 1 - jnp.clip(count, 0, warmup_steps) / jnp.maximum(warmup_steps, 1)
    return (0.0 - learning_rate) * frac + learning_rate

  def rate(count):
    if optim['schedule'] == 'constant':
      after = learning_rate * jnp.ones_like(count, jnp.result_type(float))
    else:
      alpha = optim['cosine_final_fraction']
      decay = jnp.maximum(num_steps, warmup_steps + 1) - warmup_steps
      t = jnp.minimum(count - warmup_steps, decay)
      after = learning_rate * ((1 - alpha) * (0.5 * (1 + jnp.cos(jnp.pi * t / decay))) + alpha)
    return jnp.where((warmup_steps > 0) & (count < warmup_steps), warm(count), after)

  return rate


def optimizer(config: ml_collections.ConfigDict, task=None) -> optax.GradientTransformation:
  """``build.optimizer_from_config``'s chain with the hyperparameters (``values``) in the optimizer's state."""
  reason = problem(config)
  if reason is not None:
    raise config_lib.ConfigError('optim.schedule', f'cannot inject the hyperparameters: {reason}')
  build.optimizer_from_config(config, task)  # every check of the plain optimizer first
  optim, num_steps = config_lib.to_dict(config)['optim'], config.train.num_steps
  static = {k: v for k, v in build.optimizer_kwargs(config_lib.to_dict(config)).items() if not _numeric(v)}

  def factory(learning_rate, warmup_steps, weight_decay, clip_global_norm, **numbers):
    lr = schedule(optim, num_steps, learning_rate, warmup_steps)
    clip = jnp.where(clip_global_norm > 0, clip_global_norm, jnp.inf)
    kwargs = static | {k[len(_KWARG) :]: v for k, v in numbers.items()}
    return build.optimizer_chain(optim['name'], lr, clip, weight_decay, kwargs)

  start = values(config)
  # inject_hyperparams takes the factory's hyperparameters from its signature: name each one.
  factory.__signature__ = inspect.Signature([inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in start])
  # As a float: inject_hyperparams would keep an int as a constant of the program, not in the state.
  start['warmup_steps'] = float(start['warmup_steps'])
  return optax.inject_hyperparams(factory)(**start)


def set_rows(opt_state: Any, rows: Sequence[Mapping[str, float]]) -> Any:
  """``opt_state`` of S stacked rows (leading axis) with row i's hyperparameters from ``rows[i]``."""
  hp = opt_state.hyperparams
  if set(hp) != set(rows[0]):  # a value left out of the state would be one constant for every row
    raise ValueError(f'hyperparameters in the state {sorted(hp)} are not those of the rows {sorted(rows[0])}')
  stacked = {k: jnp.asarray(np.asarray([r[k] for r in rows]), hp[k].dtype) for k in hp}
  return opt_state._replace(hyperparams=stacked)


def is_population(configs: Sequence[ml_collections.ConfigDict]) -> bool:
  """Whether the configs of a group differ in their injected hyperparameters (besides the seed); a
  ValueError if they differ in anything else, or in hyperparameters that cannot be injected."""
  if len({identity.fingerprint(identity.without_seed(c)) for c in configs}) == 1:
    return False
  if len({identity.fingerprint(identity.without_seed(without_values(c))) for c in configs}) > 1 or (
    len({tuple(values(c)) for c in configs}) > 1
  ):
    raise ValueError(
      'train_seeds: the configs of a group may differ only in train.seed and the optimizer hyperparameters '
      f'{", ".join(KEYS.values())}, optim.kwargs'
    )
  reason = problem(configs[0])
  if reason is not None:
    raise ValueError(f'train_seeds: a population needs injectable hyperparameters; {reason}')
  return True
