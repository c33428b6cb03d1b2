"""The run configuration: its schema, defaults, command-line overrides and validation.

A config is an ``ml_collections.ConfigDict`` with six groups (``task``, ``model``, ``optim``,
``train``, ``sweep``, ``logging``). ``default_config()`` holds every key there is; a config file
starts from it and changes what it needs. ``validate`` checks a config against the schema *before any
compute*: unknown keys, unknown cells or tasks, wrong types and impossible sizes each raise a
``ConfigError`` whose one-line message names the key and, for choices, the valid values.

Sweep axes are data: ``sweep.axes`` maps a dotted key (``'model.depth'``) to the list of values to
try; the grid is their product. ConfigDict forbids dots in field names, so the axes are stored nested
(``sweep.axes.model.depth``); ``sweep_axes({'model.depth': [1, 2]})`` builds that from dotted keys and
``flat_axes`` reads it back.

Nothing here imports wandb, orbax or the model code: validating a config is cheap and side-effect free.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import functools
import importlib.util
import inspect
import json
import logging
import os
import re
from typing import Any, Callable, Iterable, Mapping

import ml_collections
import optax

from deeprnn_jax import inits
from deeprnn_jax import models
from deeprnn_jax.training import progress
from deeprnn_jax.training import tune_config
from deeprnn_jax.training.config_rules import (  # the rules; re-exported: config.ConfigError is the public name
  ConfigError,
  _bool,
  _choice,
  _float,
  _int,
  _mapping,
  _str,
  _tuple_of,
  _typename,
)
from deeprnn_jax import seq2seq
from deeprnn_jax import stack

# Keys whose value is a free-form mapping (checked by their own rule, not key by key).
_MAPPING_KEYS = (
  'task.options',
  'model.cell_kwargs',
  'optim.kwargs',
  'optim.schedule_kwargs',
  'sweep.axes',
  'report.published',
  'tune.space',
)


def _tree_init(key, v):
  if v is None:
    return None
  try:
    inits.tree_init_scale(v)
  except ValueError as e:
    raise ConfigError(key, str(e)) from None
  return v


def _cell_names():
  from deeprnn_jax.cells import CELLS  # pylint: disable=g-import-not-at-top

  return CELLS.keys()


def _task_names():
  from deeprnn_jax.tasks import TASKS  # pylint: disable=g-import-not-at-top

  return TASKS.keys()


def optimizer_names() -> list[str]:
  """The optax functions ``optim.name`` may name: those whose first parameter is ``learning_rate``
  (not lbfgs, whose update needs the loss, nor the ``scale_by_*`` building blocks)."""
  return sorted(
    name
    for name, fn in vars(optax).items()
    if (inspect.isfunction(fn) or isinstance(fn, functools.partial))  # nadam is adam with nesterov=True
    and not name.startswith(('_', 'scale_by_', 'lbfgs'))
    and list(inspect.signature(fn).parameters)[:1] == ['learning_rate']
  )


SCHEDULES = ('constant', 'cosine', 'epoch_decay')  # ours (build.schedule_from_config)


def schedule_names() -> list[str]:
  """Ours (``SCHEDULES``) and every optax schedule function (not the combinators)."""
  return list(SCHEDULES) + [
    name
    for name, fn in vars(optax.schedules).items()
    if inspect.isfunction(fn) and not {'schedules', 'inner_factory'} & set(inspect.signature(fn).parameters)
  ]


SEED_PROGRAMS = ('auto', 'vmap', 'loop', 'separate')
_RATE = _float(0.0, 1.0, hi_open=True)

# The schema, the one place a key is declared: dotted key -> (default, rule). Comments say what the
# key means; the rule's choices come from the modules that implement them.
SCHEMA: dict[str, tuple[Any, Callable[[str, Any], Any]]] = {
  'task.name': ('adding', _choice(_task_names)),
  'task.options': ({}, _mapping),  # keyword options of the task factory
  'model.cell': ('lstm', _choice(_cell_names)),
  'model.depth': (1, _int(1)),  # number of stacked recurrent layers
  'model.width': (64, _int(1)),  # hidden features per layer (solved per variant when matching params)
  'model.top_width': (
    None,
    _int(1, optional=True),
  ),  # the last layer's width if not `width` (parameter matching fine-tunes it)
  'model.connection': ('stacked', _choice(stack.CONNECTIONS)),
  'model.dropout_rate': (0.0, _RATE),  # between recurrent layers
  'model.dropout_mode': ('step', _choice(stack.DROPOUT_MODES)),  # 'tied': one mask for all time steps
  'model.layer_norm': (False, _bool),
  # 'modern': pre-norm residual cell + pre-norm residual gated MLP (Griffin, Mamba, xLSTM), any cell
  'model.block': ('classic', _choice(stack.BLOCKS)),
  'model.mlp_expansion': (3.0, _float(0.0)),  # the modern block's MLP width / H; 0: no MLP
  # the short causal convolution: 'authors' (where each cell's authors put one), 'on' (every cell), 'off',
  # 'cell' (each cell as it is); None: 'authors' in the modern block, 'cell' in the classic one
  'model.short_conv': (None, _choice(stack.SHORT_CONVS, optional=True)),
  'model.conv_width': (None, _int(1, optional=True)),  # its width (None: 4, or Mamba's own d_conv)
  'model.output_gate': (False, _bool),  # Griffin's GeLU gate branch + output projection around each cell
  'model.bidirectional': (False, _bool),
  'model.merge': ('concat', _choice(stack.MERGES)),
  'model.execution': ('auto', _choice(stack.EXECUTIONS)),
  'model.unroll': (1, _int(1)),
  'model.remat': (False, _bool),
  'model.dtype': ('float32', _choice(('float32', 'bfloat16'))),  # compute dtype; parameters stay float32
  'model.initial_carry': ('zeros', _choice(stack.INITIAL_CARRIES)),
  'model.init': (None, _tree_init),  # 'uniform_<a>': every parameter U(-a, a) (Zaremba et al.); None: each module's own
  'model.cell_kwargs': ({}, _mapping),
  'model.embed_features': (None, _int(1, optional=True)),  # token tasks: embedding size (None: the width)
  'model.input_features': (None, _int(1, optional=True)),  # feature tasks: optional input projection size
  'model.pooling': ('last', _choice(models.POOLINGS)),
  'model.head_features': ((), _tuple_of(_int(1))),  # hidden sizes of the MLP head
  'model.head_dropout_rate': (0.0, _RATE),  # sequence-to-sequence: on both sides' embeddings and outputs
  # Per-step models: head_dropout_rate drops the embedding output (and after each head layer); with
  # dropout_rate (every layer's output, the top one included) that is Zaremba et al.'s dropout on all
  # non-recurrent connections.
  'model.tie_embeddings': (
    False,
    _bool,
  ),  # language models: the output layer is the input embedding (Press & Wolf 2017)
  # Sequence-to-sequence tasks (output_kind 'sequence'): the encoder is the DeepRNN above, the
  # decoder a stack of cells (seq2seq.RecurrentDecoder); None follows the encoder's setting.
  'model.decoder_depth': (None, _int(1, optional=True)),
  'model.decoder_width': (None, _int(1, optional=True)),
  'model.decoder_cell': (None, _choice(_cell_names, optional=True)),
  'model.attention': ('none', _choice(seq2seq.ATTENTIONS)),  # bahdanau (additive), dot / general (Luong)
  'model.attention_features': (None, _int(1, optional=True)),  # width of the additive score (None: decoder width)
  'model.input_feeding': (True, _bool),  # the previous attentional vector feeds the next step
  'model.bridge': ('auto', _choice(seq2seq.BRIDGES)),  # encoder carries -> decoder: learned only where they differ
  'model.reverse_source': (False, _bool),  # Sutskever et al. 2014: each source read backwards
  'model.decode': ('greedy', _choice(seq2seq.DECODES)),  # for the decoded metrics (BLEU, exact match)
  'model.beam_size': (4, _int(1)),
  'model.length_penalty': (0.6, _float(0.0)),  # GNMT's alpha; 0 ranks beams by log-probability
  'model.max_decode_len': (None, _int(1, optional=True)),  # None: each split's target width
  # Any optax optimizer by its name (a function whose first parameter is learning_rate: adam, adamw,
  # lion, adafactor, sgd, rmsprop, adabelief, ...), called with optim.kwargs.
  'optim.name': ('adam', _choice(optimizer_names)),
  # Keyword arguments of optax.<name>, checked against its signature when the optimizer is built
  # (build.optimizer_kwargs: what it fills in), which the runner does for every run before any trains.
  'optim.kwargs': ({}, _mapping),
  'optim.learning_rate': (1e-3, _float(0.0, lo_open=True)),  # peak rate, reached after the warmup
  # Ours: 'constant' or 'cosine' after the warmup, 'epoch_decay' (stateful tasks); or any optax schedule
  # function by its name (cosine_decay_schedule, linear_schedule, ...), called with optim.schedule_kwargs.
  'optim.schedule': ('constant', _choice(schedule_names)),
  'optim.schedule_kwargs': ({}, _mapping),  # keyword arguments of optax.<schedule> (build.schedule_kwargs)
  'optim.decay_start_epoch': (4, _int(0)),  # epoch_decay: epochs at the full rate, then x decay_factor each epoch
  'optim.decay_factor': (0.5, _float(0.0, 1.0, lo_open=True)),
  'optim.warmup_steps': (0, _int(0)),
  'optim.cosine_final_fraction': (0.0, _float(0.0, 1.0)),  # cosine ends at this fraction of the peak rate
  'optim.momentum': (0.9, _RATE),  # sgd and rmsprop
  'optim.rmsprop_decay': (0.9, _RATE),  # rmsprop's average of squared gradients
  'optim.beta1': (0.9, _RATE),  # adam(w)
  'optim.beta2': (0.999, _RATE),
  'optim.eps': (1e-8, _float(0.0, lo_open=True)),  # adam(w) and rmsprop
  # Decoupled for optimizers with a weight_decay argument (adamw, lion, lamb, ...), L2 added to the
  # gradient otherwise; matrices only, either way.
  'optim.weight_decay': (0.0, _float(0.0)),
  'optim.clip_global_norm': (1.0, _float(0.0)),  # 0 turns clipping off
  'train.seed': (0, _int(0)),
  'train.num_steps': (1000, _int(1)),
  'train.batch_size': (64, _int(1)),
  'train.log_every_steps': (50, _int(1)),
  'train.eval_every_steps': (200, _int(1)),
  'train.checkpoint_every_steps': (500, _int(1)),
  'train.keep_checkpoints': (2, _int(1)),  # latest ones kept; the older one is the fallback if the newest is bad
  'train.eval_batch_size': (512, _int(1)),
  'train.eval_splits': ((), _tuple_of(_str())),  # evaluated at every eval (empty: all); a run's last eval covers all
  'train.early_stop': (False, _bool),  # stop a seed once it reaches the task threshold
  'train.progress': ('auto', _choice(progress.MODES)),  # 'auto': a bar on a terminal, one line per eval otherwise
  'sweep.axes': ({}, _mapping),  # nested dotted key -> list of values
  'sweep.seeds': ((0,), _tuple_of(_int(0))),
  'sweep.param_budget': (0, _int(0)),  # >0: solve model.width per variant to this parameter count
  'sweep.param_tolerance': (0.02, _float(0.0, 0.5, lo_open=True)),
  # How the seeds of a grid point train: 'vmap' (one program, seeds batched: fills an accelerator),
  # 'loop' (one program, seeds one after another inside it: the fastest on CPU), 'separate' (one run
  # at a time), 'auto' ('loop' on CPU, 'vmap' on accelerators).
  'sweep.seed_program': ('auto', _choice(SEED_PROGRAMS)),
  'logging.wandb_mode': (
    None,
    _choice(('online', 'offline', 'disabled'), optional=True),
  ),  # None: $WANDB_MODE, else by API key
  'logging.project': ('deeprnn-jax', _str()),
  'logging.entity': (None, _str(optional=True)),
  'logging.group': (None, _str(optional=True)),  # default: the sweep's name (its workdir's folder name)
  'logging.job_type': (None, _str(optional=True)),  # default: the variant name
  'logging.tags': ((), _tuple_of(_str())),  # default: task, cell and depth
  'logging.wandb_dir': (None, _str(optional=True)),  # default: each run's own folder
  'logging.wandb_timeout_seconds': (
    60.0,
    _float(0.0, lo_open=True),
  ),  # wandb init/finish give up after this; the run goes on locally
  # Published results the report shows beside ours: label -> {cell, depth, metric, split, value,
  # solved, source, note} (experiments/report/markdown.py: published_rows).
  'report.published': ({}, _mapping),
  # The metric the report ranks and compares on (None: the field's metric for the task, see
  # experiments/report/runs.py: main_metric), e.g. 'decoded_exact_match' for an algorithmic transduction.
  'report.metric': (None, _str(optional=True)),
  # `--launcher slurm|local` (experiments/slurm.py, through submitit): one job per grid point, in one job array.
  'launch.folder': (None, _str(optional=True)),  # submitit's job files and logs (None: <workdir>/submitit)
  'launch.partition': (None, _str(optional=True)),
  'launch.account': (None, _str(optional=True)),
  'launch.timeout_min': (60, _int(1)),  # each job's time limit; a job reaching it checkpoints and is requeued
  'launch.signal_delay_s': (120, _int(1)),  # SLURM's warning signal (USR2) comes this long before the limit
  'launch.max_num_timeout': (3, _int(0)),  # requeues after reaching the time limit (preemptions do not count)
  'launch.array_parallelism': (64, _int(1)),  # jobs of the array running at once
  'launch.cpus_per_task': (2, _int(1)),
  'launch.gpus_per_task': (0, _int(0)),
  'launch.mem_gb': (None, _int(1, optional=True)),
  'launch.setup': ((), _tuple_of(_str())),  # shell lines run before each job (module load, source .venv/bin/activate)
  'launch.slurm_options': (
    (),
    _tuple_of(_str()),
  ),  # more sbatch options, 'key=value' (e.g. 'qos=high', 'constraint=a100')
  # Tuning (`python -m experiments.tune`; deeprnn_jax/training/tune_config.py): each variant gets `trials`
  # Optuna trials over `space` (dotted key -> ('log_uniform', lo, hi) | ('uniform', lo, hi) | ('int', lo, hi)
  # | ('categorical', [...])), selected on validation; then its best setting trains sweep.seeds.
  'tune.space': ({}, _mapping),  # nested as sweep.axes is (tune_config.tune_space builds it); empty: no tuning
  'tune.trials': (20, _int(1)),  # complete + pruned trials per variant, the same for every variant
  'tune.sampler': ('tpe', _choice(tune_config.SAMPLERS)),  # 'qmc': Sobol; 'grid': categorical / int ranges only
  'tune.pruner': ('none', _choice(tune_config.PRUNERS)),  # 'successive_halving' is ASHA
  'tune.seed': (0, _int(0)),  # the sampler's seed
  'tune.storage': (None, tune_config._storage),  # None: <workdir>/tune.db (SQLite); or an RDB URL
  'tune.metric': (None, tune_config._metric),  # None: the task's own validation metric; 'val/<metric>' only
  'tune.heartbeat_seconds': (10, _int(1)),  # a trial silent for 3x this (a dead machine) is failed
  # also train the seeds at the config's own (untuned) setting into <workdir>/fixed: verdicts side by side
  'tune.compare_fixed': (True, _bool),
}
RULES: dict[str, Callable[[str, Any], Any]] = {k: rule for k, (_, rule) in SCHEMA.items()}


def default_config() -> ml_collections.ConfigDict:
  """Every key a config may set, with its default (``SCHEMA``)."""
  d: dict = {}
  for key, (default, _) in SCHEMA.items():
    set_path(d, key, copy.deepcopy(default))
  return ml_collections.ConfigDict(d)


# Keys a sweep may vary: what describes one run (not how it is launched, logged, shown or reported),
# and the parameter budget (so a sweep can compare depths at several matched sizes).
SWEEPABLE = tuple(
  k
  for k in RULES
  if not k.startswith(('sweep.', 'report.', 'launch.', 'logging.', 'tune.'))
  and k not in ('train.seed', 'train.progress')
) + ('sweep.param_budget',)


# ----------------------------------------------------------------------------------------------
# Plain-dict views.


def to_dict(config: ml_collections.ConfigDict | Mapping) -> dict:
  """A deep plain-dict copy (tuples kept), so editing it never touches the ConfigDict."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  return copy.deepcopy(dict(config))


def from_dict(d: Mapping) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(copy.deepcopy(dict(d)))


def flatten(d: Mapping, prefix: str = '', stop: Iterable[str] = _MAPPING_KEYS) -> dict[str, Any]:
  """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``; keys in ``stop`` keep their mapping value whole."""
  out = {}
  for k, v in d.items():
    key = f'{prefix}{k}'
    if isinstance(v, (Mapping, ml_collections.ConfigDict)) and key not in stop:
      out.update(flatten(v, key + '.', stop))
    else:
      out[key] = v
  return out


def get_path(d: Mapping, key: str) -> Any:
  for part in key.split('.'):
    d = d[part]
  return d


def set_path(d: dict, key: str, value: Any) -> None:
  """Sets a dotted key in a nested plain dict, creating intermediate dicts."""
  parts = key.split('.')
  for part in parts[:-1]:
    nxt = d.get(part)
    if not isinstance(nxt, dict):
      nxt = d[part] = {}
    d = nxt
  d[parts[-1]] = value


def sweep_axes(axes: Mapping[str, Iterable[Any]]) -> ml_collections.ConfigDict:
  """``{'model.depth': [1, 2]}`` -> the nested ConfigDict that ``sweep.axes`` stores."""
  nested: dict = {}
  for key, values in axes.items():
    set_path(nested, key, list(values))
  return ml_collections.ConfigDict(nested)


# ``tune.space`` from dotted keys, for config files beside ``sweep_axes`` (deeprnn_jax/training/tune_config.py).
tune_space = tune_config.tune_space


def flat_axes(config: ml_collections.ConfigDict | Mapping) -> dict[str, list]:
  """The sweep axes of a config as ``{dotted key: list of values}``, in a stable order.

  Cells and depths come first (the axes every report groups by), then the rest alphabetically.
  """
  d = to_dict(config)
  axes = flatten(d.get('sweep', {}).get('axes', {}) or {}, stop=())
  first = [k for k in ('model.cell', 'model.depth', 'model.width') if k in axes]
  rest = sorted(k for k in axes if k not in first)
  return {k: list(axes[k]) if isinstance(axes[k], (list, tuple)) else axes[k] for k in first + rest}


# ----------------------------------------------------------------------------------------------
# Overrides.


def parse_override(text: str) -> tuple[str, Any]:
  """``'model.depth=4'`` -> ``('model.depth', 4)``.

  The value is parsed as a Python *literal* (``ast.literal_eval``: numbers, strings, tuples, lists,
  dicts, True/False/None), never evaluated as code; anything that is not a literal is taken as a
  plain string, so ``model.cell=lstm`` works without quotes.
  """
  if '=' not in text:
    raise ConfigError(text, 'an override must look like key=value (e.g. --config.model.depth=4)')
  key, raw = text.split('=', 1)
  key = key.strip()
  if key.startswith('config.'):
    key = key[len('config.') :]
  try:
    value = ast.literal_eval(raw.strip())
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    value = raw.strip()
  return key, value


def apply_overrides(
  config: ml_collections.ConfigDict | Mapping, overrides: Iterable[tuple[str, Any] | str]
) -> ml_collections.ConfigDict:
  """A new config with ``overrides`` set; keys must exist (``sweep.axes.*`` may be new axes).

  An override of a key that is also a sweep axis *narrows the axis* to that one value
  (``--config.model.depth=1`` on a depth sweep trains depth 1 only): the user asked for that value.
  ``sweep.axes`` itself may be given whole as ``{'model.cell': [...], 'model.depth': [...]}``.
  """
  d = to_dict(config)
  known = set(flatten(to_dict(default_config())))
  for item in overrides:
    key, value = parse_override(item) if isinstance(item, str) else item
    inside_mapping = any(key.startswith(m + '.') for m in _MAPPING_KEYS)
    if key not in known and not inside_mapping:
      raise ConfigError(key, f'unknown key; {_suggest(key, known)}')
    if key in _MAPPING_KEYS and not isinstance(value, (Mapping, ml_collections.ConfigDict)):  # read as one below
      raise ConfigError(key, f'must be a mapping (a dict), got {type(value).__name__} {value!r}')
    if key == 'sweep.axes' and isinstance(value, Mapping):
      value = to_dict(sweep_axes({k: v if isinstance(v, (list, tuple)) else [v] for k, v in value.items()}))
    if key == 'tune.space' and isinstance(value, Mapping):  # given whole, with dotted keys
      value = to_dict(tune_config.tune_space(value))
    set_path(d, key, value)
    if key in flat_axes(d):
      set_path(d, f'sweep.axes.{key}', [value])
  try:
    return from_dict(d)
  except (ValueError, TypeError, AttributeError) as e:  # e.g. a dotted name inside a mapping value
    raise ConfigError(
      '',
      f'the overrides do not make a valid config: {" ".join(str(e).split())}; dotted keys belong in the '
      'override name (--config.task.options.seq_len=40)',
    ) from e


def load(path: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Runs ``get_config()`` of the config file at ``path`` and applies ``overrides`` (``key=value``).

  Only this file is executed as code; override values are parsed as literals. Any problem is a
  ``ConfigError`` with a one-line message. The result is validated.
  """
  if not os.path.isfile(path):
    raise ConfigError('', f'config file {path!r} not found')
  name = 'deeprnn_config_' + re.sub(r'\W', '_', os.path.abspath(path))
  try:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_config = getattr(module, 'get_config', None)
    if not callable(get_config):
      raise ConfigError('', f'config file {path!r} has no get_config() function')
    config = get_config()
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [''])[0]
    raise ConfigError('', f'config file {path!r} does not load: {type(e).__name__}: {first}') from e
  if not isinstance(config, (ml_collections.ConfigDict, dict)):
    raise ConfigError('', f'get_config() in {path!r} must return a ConfigDict, got {type(config).__name__}')
  return validate(apply_overrides(config, overrides))


# Keys that were renamed: the old name's error says what replaced it.
_RENAMED = {
  'train.progress_bar': "renamed train.progress: 'auto' (default: a bar on a terminal, one line per "
  "evaluation otherwise), 'bar', 'lines' or 'off' (progress_bar=False is 'off')",
  'sweep.vmap_seeds': "renamed sweep.seed_program: 'auto' (default), 'vmap', 'loop' or 'separate' "
  "(vmap_seeds=False is 'separate')",
}


def _suggest(key: str, known: Iterable[str]) -> str:
  if key in _RENAMED:
    return _RENAMED[key]
  close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
  if close:
    return f'did you mean {close[0]!r}?'
  group = key.split('.')[0]
  same_group = sorted(k for k in known if k.startswith(group + '.'))
  if same_group:
    return f'valid keys in {group!r}: {", ".join(same_group)}'
  groups = sorted({k.split('.')[0] for k in known})
  return f'valid groups: {", ".join(groups)}'


# ----------------------------------------------------------------------------------------------
# Validation.


def validate(config: ml_collections.ConfigDict | Mapping) -> ml_collections.ConfigDict:
  """Checks every key of ``config``; returns a normalized copy (tuples for lists, floats for rates).

  Also checks the sweep: each axis names a sweepable key and has at least one value, and every value
  passes that key's rule; seeds are distinct. Raises ``ConfigError`` on the first problem.
  """
  d = to_dict(config)
  known = RULES.keys()
  flat = flatten(d)
  for key in flat:
    if key not in known:
      raise ConfigError(key, f'unknown key; {_suggest(key, known)}')
  out: dict = {}
  defaults = flatten(to_dict(default_config()))
  for key, rule in RULES.items():
    value = flat.get(key, defaults[key])
    set_path(out, key, rule(key, value))
  _check_task_options(out)
  _check_cell_kwargs(out['model']['cell'], out['model'].get('cell_kwargs') or {})
  _check_model_options(out['model'])
  _check_sweep(out)
  tune_config.check(out, RULES, SWEEPABLE, flat_axes(out))
  _warn_eval_interval(out)
  return from_dict(out)


_warned: set[str] = set()


def _warn_eval_interval(d: dict) -> None:
  """One warning line (once per process) when ``train.eval_every_steps`` exceeds a run's
  ``train.num_steps``: the run is evaluated only at its end, so its learning curve is one point."""
  every = d['train']['eval_every_steps']
  steps = min([d['train']['num_steps'], *flat_axes(d).get('train.num_steps', ())])
  message = (
    f'warning: train.eval_every_steps={every} is more than train.num_steps={steps}: the run is evaluated '
    f'only once, at its end (a one-point learning curve); e.g. --config.train.eval_every_steps={max(1, steps // 10)}'
  )
  if every > steps and message not in _warned:
    _warned.add(message)
    logging.getLogger(__name__).warning(message)


def _check_task_options(d: dict) -> None:
  from deeprnn_jax.tasks import GENERIC_OPTIONS, task_options  # pylint: disable=g-import-not-at-top

  name = d['task']['name']
  valid = sorted(task_options(name))
  for k in to_dict(d['task'].get('options') or {}):
    if k not in valid and k not in GENERIC_OPTIONS:
      raise ConfigError(f'task.options.{k}', f'unknown option for task {name!r}; valid: {", ".join(valid)}')


def _check_cell_kwargs(cell: str, kwargs: Mapping) -> None:
  if not kwargs:
    return
  from deeprnn_jax.cells import CELLS  # pylint: disable=g-import-not-at-top

  cls = CELLS[cell]
  if dataclasses.is_dataclass(cls):
    valid = sorted(f.name for f in dataclasses.fields(cls) if f.init and f.name not in ('parent', 'name', 'features'))
    for k in kwargs:
      if k not in valid:
        raise ConfigError(f'model.cell_kwargs.{k}', f'unknown option for cell {cell!r}; valid: {", ".join(valid)}')


def _check_model_options(m: dict) -> None:
  """The stack's options checked where the stack checks them (``stack.options.check_options``), with
  the config key the refused option comes from."""
  keys = {'features': 'width', 'num_layers': 'depth'}
  try:
    stack.DeepRNN(
      cell=m['cell'],
      features=m['width'],
      num_layers=m['depth'],
      cell_kwargs=dict(m.get('cell_kwargs') or {}),
      **{k: m[k] for k in _STACK_OPTIONS},
    )
  except stack.OptionError as e:
    message = str(e).removeprefix('DeepRNN: ')
    raise ConfigError(f'model.{keys.get(e.option, e.option)}', message) from None


# The model keys that are DeepRNN options of the same name.
_STACK_OPTIONS = """connection dropout_rate dropout_mode layer_norm bidirectional merge execution initial_carry block
mlp_expansion short_conv conv_width output_gate""".split()


def _check_sweep(d: dict) -> None:
  seeds = d['sweep']['seeds']
  if not seeds:
    raise ConfigError('sweep.seeds', 'needs at least one seed, e.g. (0, 1, 2)')
  if len(set(seeds)) != len(seeds):
    raise ConfigError('sweep.seeds', f'seeds must be distinct, got {list(seeds)}')
  axes = flat_axes(d)
  for key, values in axes.items():
    akey = f'sweep.axes.{key}'
    if key not in SWEEPABLE:
      hint = 'list seeds in sweep.seeds' if key == 'train.seed' else f'{_suggest(key, SWEEPABLE)}'
      raise ConfigError(akey, f'is not a key a sweep can vary; {hint}')
    if not isinstance(values, (list, tuple)):
      raise ConfigError(akey, f'must be a list of values, got {_typename(values)} {values!r}')
    if not values:
      raise ConfigError(akey, 'a sweep axis needs at least one value')
    for v in values:
      RULES[key](akey, v)
    if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
      raise ConfigError(akey, f'values repeat: {list(values)}')
    if key == 'model.cell':
      for cell in values:
        _check_cell_kwargs(cell, d['model'].get('cell_kwargs') or {})
  for key in ('model.width', 'model.top_width'):
    if d['sweep']['param_budget'] and key in axes:
      raise ConfigError(
        f'sweep.axes.{key}', 'cannot sweep the width while sweep.param_budget solves it; drop one of the two'
      )
