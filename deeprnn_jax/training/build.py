"""Config -> task, model, optimizer: the one place a config is unpacked into objects.

The trainer, the sweep (parameter matching, run names) and ``load_run`` all build from here, so a
run is rebuilt exactly as it was trained. Never pass a ConfigDict into a Module: it stops here.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import optax

from deeprnn_jax.training import config as config_lib
from deeprnn_jax import models
from deeprnn_jax.training import runlog
from deeprnn_jax import seq2seq
from deeprnn_jax.stack import DeepRNN
from deeprnn_jax.tasks import base as task_base

ConfigDict = ml_collections.ConfigDict


def task_from_config(config: ConfigDict):
  """The task named by ``config.task`` (``make_task(name, **options)``).

  A task that cannot be built from these options (a bad value, a dataset that is not prepared)
  raises ``ConfigError`` with the task's own one-line message.
  """
  from deeprnn_jax.tasks import make_task  # pylint: disable=g-import-not-at-top

  try:
    return make_task(config.task.name, **config_lib.to_dict(config.task.options or {}))
  except (ValueError, TypeError, FileNotFoundError) as e:
    if isinstance(e, config_lib.ConfigError):
      raise
    raise config_lib.ConfigError('task', f'{config.task.name!r} cannot be built: {runlog.one_line(e)}') from e


def check_task_config(config: ConfigDict, task: task_base.Task) -> None:
  """The config checks that need the task: the eval splits it names must exist, a model that reads a
  fixed number of steps (``pooling='flatten'``) must get that many in every split it is evaluated on,
  and the optimizer and its schedule must build (their optax arguments, ``'epoch_decay'``'s epochs)."""
  names = tuple(task.eval_splits)
  for s in config.train.eval_splits:
    if s not in names:
      raise config_lib.ConfigError(
        'train.eval_splits', f'unknown split {s!r} for task {task.name!r}; valid: {", ".join(names)}'
      )
  if config.model.pooling == 'flatten' and task.output_kind in ('class', 'regression'):
    # The head's kernel is sized at init by the training length; a run's last eval covers every split.
    for s, batch in task.eval_splits.items():
      if batch['inputs'].shape[1] != task.seq_len:
        raise config_lib.ConfigError(
          'model.pooling',
          f"'flatten' reads exactly the {task.seq_len} training steps, "
          f'but split {s!r} of task {task.name!r} has {batch["inputs"].shape[1]}: pool '
          "with 'last', 'mean', 'max' or 'attention', or drop those splits "
          '(e.g. task.options.length_generalization=False)',
        )
  optimizer_from_config(config, task)  # its optax arguments checked, before anything trains


def model_from_config(config: ConfigDict, task: task_base.Task):
  """The model for ``task`` described by ``config.model``: the one place a config becomes modules.

  A combination the modules refuse (their own checks, made when they are built) is a
  ``ConfigError`` naming ``model``.
  """
  try:
    return _model(config.model, task, layer_widths(config))
  except (ValueError, TypeError) as e:
    raise config_lib.ConfigError('model', runlog.one_line(e)) from e


def _model(m: ConfigDict, task: task_base.Task, widths: tuple[int, ...]):
  cell_kwargs = config_lib.to_dict(m.cell_kwargs or {}) or None
  rnn = DeepRNN(
    cell=m.cell,
    features=widths,
    connection=m.connection,
    dropout_rate=m.dropout_rate,
    dropout_mode=m.dropout_mode,
    layer_norm=m.layer_norm,
    bidirectional=m.bidirectional,
    merge=m.merge,
    execution=m.execution,
    unroll=m.unroll,
    remat=m.remat,
    initial_carry=m.initial_carry,
    block=m.block,
    mlp_expansion=m.mlp_expansion,
    short_conv=m.short_conv,
    conv_width=m.conv_width,
    output_gate=m.output_gate,
    dtype={'float32': None, 'bfloat16': jnp.bfloat16}[m.dtype],
    cell_kwargs=cell_kwargs,
  )
  embed = m.embed_features or m.width
  if m.tie_embeddings and (task.output_kind != 'per_step_class'):
    raise config_lib.ConfigError(
      'model.tie_embeddings',
      f'is for per-step token outputs (language models); task {task.name!r} has output_kind {task.output_kind!r}',
    )
  if m.init is not None and task.output_kind == 'sequence':
    raise config_lib.ConfigError('model.init', 'is not offered for sequence-to-sequence models yet; leave it None')
  if task.output_kind == 'sequence':
    decoder_cell = m.decoder_cell or m.cell
    decoder = seq2seq.RecurrentDecoder(
      vocab_size=task.output_size,
      embed_features=embed,
      cell=decoder_cell,
      features=(m.decoder_width or m.width,) * (m.decoder_depth or m.depth),
      cell_kwargs=cell_kwargs if decoder_cell == m.cell else None,
      attention=m.attention,
      attention_features=m.attention_features,
      input_feeding=m.input_feeding,
      dropout_rate=m.head_dropout_rate,
    )
    return seq2seq.Seq2Seq(
      encoder=rnn,
      decoder=decoder,
      source_vocab_size=task.input_size,
      embed_features=embed,
      bridge=m.bridge,
      reverse_source=m.reverse_source,
      dropout_rate=m.head_dropout_rate,
      decode=m.decode,
      beam_size=m.beam_size,
      length_penalty=m.length_penalty,
      max_decode_len=m.max_decode_len,
    )
  if task.input_kind == 'tokens':
    inputs = dict(vocab_size=task.input_size, embed_features=embed)
  else:
    inputs = dict(input_features=m.input_features)
  common = dict(
    rnn=rnn, head_features=tuple(m.head_features), dropout_rate=m.head_dropout_rate, param_init=m.init, **inputs
  )
  if task.output_kind == 'class':
    return models.Classifier(num_classes=task.output_size, pooling=m.pooling, **common)
  if task.output_kind == 'regression':
    return models.Regressor(out_features=task.output_size, pooling=m.pooling, **common)
  if m.tie_embeddings:
    top = m.head_features[-1] if m.head_features else rnn.layer_out_features[-1]
    if task.input_kind != 'tokens' or task.input_size != task.output_size:
      raise config_lib.ConfigError(
        'model.tie_embeddings',
        f'needs a task whose inputs and outputs share one vocabulary (a language model); {task.name!r} has none',
      )
    if top != embed:
      raise config_lib.ConfigError(
        'model.tie_embeddings',
        f"needs the embedding as wide as the output layer's "
        f'input ({top}), got model.embed_features={embed}: set model.embed_features={top}',
      )
  if task.output_kind == 'ctc':
    return models.CTCModel(out_features=task.output_size, **common)
  return models.PerStepModel(out_features=task.output_size, tie_embeddings=m.tie_embeddings, **common)


def layer_widths(config: ConfigDict) -> tuple[int, ...]:
  """Per-layer hidden sizes: ``width`` for every layer, ``top_width`` (if set) for the last."""
  m = config.model
  return (m.width,) * (m.depth - 1) + (m.top_width or m.width,)


def schedule_from_config(optim: ConfigDict, num_steps: int, steps_per_epoch: int | None = None) -> optax.Schedule:
  r"""Linear warmup from 0 to ``learning_rate``, then constant or cosine decay to the end; or
  ``'epoch_decay'`` (Zaremba et al. 2014): in epoch :math:`e = \lfloor s / \text{steps\_per\_epoch}
  \rfloor` (from 0) the rate is :math:`\eta\, f^{\max(0,\, e - E + 1)}` with :math:`E` =
  ``decay_start_epoch`` and :math:`f` = ``decay_factor``: constant for :math:`E` epochs, then multiplied
  by :math:`f` after each epoch. ``steps_per_epoch``: a stateful task's ``windows_per_epoch``. Any other
  name is an optax schedule function, called with ``schedule_kwargs`` (what they fill in).
  """
  peak, warmup = optim.learning_rate, min(optim.warmup_steps, num_steps)
  if optim.schedule not in config_lib.SCHEDULES:
    d = {'optim': config_lib.to_dict(optim), 'train': {'num_steps': num_steps}}
    return getattr(optax.schedules, optim.schedule)(**schedule_kwargs(d))
  if optim.get('schedule_kwargs'):
    raise config_lib.ConfigError(
      'optim.schedule_kwargs', f'is for optax schedules; {optim.schedule!r} is ours: leave it empty'
    )
  if optim.schedule == 'epoch_decay':
    if not steps_per_epoch:
      raise config_lib.ConfigError(
        'optim.schedule',
        "'epoch_decay' counts epochs of a stateful task (word_lm, "
        "char_lm); this task has none: use 'constant' or 'cosine'",
      )
    if warmup:
      raise config_lib.ConfigError('optim.warmup_steps', "'epoch_decay' has no warmup: set optim.warmup_steps=0")
    start, factor = optim.decay_start_epoch, optim.decay_factor

    def epoch_decay(step):
      epoch = jnp.asarray(step) // steps_per_epoch
      return peak * jnp.power(factor, jnp.maximum(epoch - start + 1, 0).astype(jnp.float32))

    return epoch_decay
  if optim.schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(
      0.0, peak, warmup, max(num_steps, warmup + 1), end_value=peak * optim.cosine_final_fraction
    )
  if warmup == 0:
    return optax.constant_schedule(peak)
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup])


def optimizer_from_config(
  config: ConfigDict, task: task_base.Task | None = None
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optax chain of ``config.optim``: clip -> (L2) -> ``optax.<optim.name>``, and its learning-rate schedule.

  The optimizer is any optax function whose first parameter is ``learning_rate``, called with the
  schedule and ``optimizer_kwargs`` (``optim.kwargs`` and what is filled in). Weight decay applies to
  matrices only (not biases or norms): decoupled where the optimizer takes a ``weight_decay`` (adamw,
  lion, ...), added to the gradient (L2) otherwise. ``task``: needed by the ``'epoch_decay'`` schedule
  (its epochs). A bad name, argument or combination is a ``ConfigError``. ``hyper.optimizer`` builds the
  same chain with the hyperparameters in its state.
  """
  o = config.optim
  lr = learning_rate_schedule(config, task)
  kwargs = optimizer_kwargs(config_lib.to_dict(config))
  clip = o.clip_global_norm if o.clip_global_norm > 0 else None
  return optimizer_chain(o.name, lr, clip, o.weight_decay if o.weight_decay > 0 else None, kwargs), lr


def learning_rate_schedule(config: ConfigDict, task: task_base.Task | None = None) -> optax.Schedule:
  """``config``'s learning-rate schedule over its ``train.num_steps`` (``schedule_from_config``; the
  ``'epoch_decay'`` schedule counts the epochs of a stateful ``task``)."""
  per_epoch = task.windows_per_epoch(config.train.batch_size) if task is not None and task.stateful else None
  return schedule_from_config(config.optim, config.train.num_steps, per_epoch)


def optimizer_chain(name: str, lr, clip, weight_decay, kwargs: dict[str, Any]) -> optax.GradientTransformation:
  """clip (None: none) -> L2 weight decay (None: none; where ``optax.<name>`` has no decoupled one) ->
  ``optax.<name>(lr, **kwargs)``; the values may be traced (``hyper``)."""
  fn = getattr(optax, name)
  args = inspect.signature(fn).parameters
  kwargs = dict(kwargs)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  if 'weight_decay' in args:  # the decay's own mask: 'mask' (adamw, lion, lamb), 'weight_decay_mask' (lars)
    if weight_decay is not None and 'weight_decay' not in kwargs:
      kwargs['weight_decay'] = weight_decay
    mask = next((k for k in ('mask', 'weight_decay_mask') if k in args), None)
    if mask and mask not in kwargs:
      kwargs[mask] = decay_mask
  parts = []
  if clip is not None:
    parts.append(optax.clip_by_global_norm(clip))
  if weight_decay is not None and 'weight_decay' not in args:
    parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
  parts.append(fn(lr, **kwargs))
  return optax.chain(*parts)


# ----------------------------------------------------------------------------------------------
# The optimizer and its schedule by their optax names (big_vision's optax_name + kwargs): the
# arguments a config gives them, checked against the function's signature, and what is filled in.

# The keys the optimizers of the first releases read (config key -> their optax argument). Other
# optimizers take these arguments in optim.kwargs and refuse the keys set.
OPTIMIZER_KEYS = {
  'adam': {'beta1': 'b1', 'beta2': 'b2', 'eps': 'eps'},
  'adamw': {'beta1': 'b1', 'beta2': 'b2', 'eps': 'eps'},
  'sgd': {'momentum': 'momentum'},
  'rmsprop': {'rmsprop_decay': 'decay', 'eps': 'eps', 'momentum': 'momentum'},
}
# The keys only our own schedules read (config_lib.SCHEDULES).
SCHEDULE_KEYS = {'cosine_final_fraction': 'cosine', 'decay_start_epoch': 'epoch_decay', 'decay_factor': 'epoch_decay'}


def _set(d: Mapping, key: str) -> bool:
  return config_lib.get_path(d, key) != config_lib.SCHEMA[key][0]


def _call_kwargs(d: Mapping, where: str, fn, name: str, auto: Mapping[str, tuple[str | None, Any]]) -> dict[str, Any]:
  """The mapping at ``where`` checked against the signature of ``fn`` (``optax.<name>``), with ``auto``
  (argument -> (the config key it comes from, or None; value)) filled in where not given. An argument
  given there and by its config key set to another value is refused rather than one of the two picked."""
  given = config_lib.to_dict(config_lib.get_path(d, where) or {})
  params = {k: p for k, p in inspect.signature(fn).parameters.items() if k != 'learning_rate'}
  for k in given:
    if k not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
      close = difflib.get_close_matches(k, params, n=3)
      hint = f'did you mean {" or ".join(map(repr, close))}? ' if close else ''
      hint = 'set optim.learning_rate instead; ' if k == 'learning_rate' else hint
      raise config_lib.ConfigError(f'{where}.{k}', f'optax.{name} takes no {k!r}; {hint}valid: {", ".join(params)}')
  out = dict(given)
  for arg, (key, value) in auto.items():
    if arg in given and key and _set(d, key) and given[arg] != config_lib.get_path(d, key):
      raise config_lib.ConfigError(
        f'{where}.{arg}', f'set twice: {given[arg]!r} here and {key}={config_lib.get_path(d, key)!r}; keep one'
      )
    if arg in params and arg not in given:
      out[arg] = value
  for k, p in params.items():
    if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and k not in out:
      raise config_lib.ConfigError(where, f'optax.{name} needs {k!r}: set {where}.{k}')
  return out


def optimizer_kwargs(d: Mapping) -> dict[str, Any]:
  """The keyword arguments ``optax.<optim.name>`` gets besides the learning rate (the schedule), from the
  config as a plain dict.

  ``optim.kwargs``, and where they are not given there: the ``OPTIMIZER_KEYS`` of the optimizers that
  read them (``optim.beta1`` is adam's ``b1``; ``optim.momentum`` 0 is no momentum), and
  ``optim.weight_decay`` where the optimizer has a ``weight_decay`` argument (``optimizer_from_config``
  adds the matrices-only mask). ``ConfigError``: an argument the function lacks or needs, one set both
  ways, or an ``OPTIMIZER_KEYS`` key set for another optimizer (``optim.beta1`` with lion: use
  ``optim.kwargs.b1``).
  """
  o, name = d['optim'], d['optim']['name']
  own = OPTIMIZER_KEYS.get(name)
  for key, arg in {k: a for keys in OPTIMIZER_KEYS.values() for k, a in keys.items()}.items():
    if own is None and _set(d, f'optim.{key}'):
      readers = ', '.join(n for n, keys in OPTIMIZER_KEYS.items() if key in keys)
      has = arg in inspect.signature(getattr(optax, name)).parameters
      fix = f'for {name} set optim.kwargs.{arg} instead' if has else f'optax.{name} takes no {arg}'
      raise config_lib.ConfigError(f'optim.{key}', f'is read by {readers} only; {fix}')
  auto = {arg: (f'optim.{key}', o[key]) for key, arg in (own or {}).items()}
  if 'momentum' in auto:
    auto['momentum'] = ('optim.momentum', o['momentum'] or None)
  auto['weight_decay'] = ('optim.weight_decay', o['weight_decay'])
  return _call_kwargs(d, 'optim.kwargs', getattr(optax, name), name, auto)


def schedule_kwargs(d: Mapping) -> dict[str, Any]:
  """The keyword arguments of the optax schedule function ``optim.schedule``, from the config as a plain dict.

  ``optim.schedule_kwargs``, and where the function has the argument and it is not given there:
  ``peak_value`` = ``optim.learning_rate`` with ``init_value`` = 0 (the warmup's start), or else
  ``init_value`` (``value``) = ``optim.learning_rate``; ``warmup_steps`` = ``optim.warmup_steps``;
  ``decay_steps`` = ``train.num_steps`` (optax counts the warmup in it); ``transition_steps`` =
  ``train.num_steps`` less the warmup (so ``exponential_decay``'s ``decay_rate`` is the factor reached at
  the end of the run). ``optim.warmup_steps`` needs a schedule with a warmup (``warmup_*``).
  """
  o, name = d['optim'], d['optim']['schedule']
  for key, reader in SCHEDULE_KEYS.items():
    if _set(d, f'optim.{key}'):
      raise config_lib.ConfigError(
        f'optim.{key}', f'is read by schedule {reader!r} only; for {name} set optim.schedule_kwargs'
      )
  fn = getattr(optax.schedules, name)
  params = inspect.signature(fn).parameters
  if o['warmup_steps'] and 'warmup_steps' not in params:
    raise config_lib.ConfigError('optim.warmup_steps', f'optax.{name} has no warmup: set 0, or use a warmup_* schedule')
  warmup = config_lib.to_dict(o['schedule_kwargs'] or {}).get('warmup_steps', o['warmup_steps'])
  auto = {'init_value': (None, 0.0)} if 'peak_value' in params else {}
  peak = next((k for k in ('peak_value', 'init_value', 'value') if k in params), 'value')
  auto |= {
    peak: ('optim.learning_rate', o['learning_rate']),
    'warmup_steps': ('optim.warmup_steps', o['warmup_steps']),
    'decay_steps': (None, d['train']['num_steps']),
    'transition_steps': (None, max(d['train']['num_steps'] - warmup, 1)),
  }
  return _call_kwargs(d, 'optim.schedule_kwargs', fn, name, auto)


def variant_name(config: ConfigDict) -> str:
  """``<cell>-d<depth>-w<width>[t<top width>]``: how runs and wandb job types name a model."""
  m = config.model
  top = f't{m.top_width}' if m.top_width and m.top_width != m.width else ''
  return f'{m.cell}-d{m.depth}-w{m.width}{top}'


def param_count(config: ml_collections.ConfigDict, task) -> int:
  """Parameters of the model ``config`` describes, from shapes alone (``jax.eval_shape``).

  A model its modules refuse at initialization (e.g. a width the cell's heads do not divide) is a
  ``ConfigError`` naming ``model``, like one refused at construction.
  """
  model = model_from_config(config, task)

  def init():
    key = jax.random.PRNGKey(0)
    batch = task.train_batch(key, 0, 1)
    return model.init({'params': key}, batch['inputs'], batch['lengths'], deterministic=True)['params']

  try:
    shapes = jax.eval_shape(init)
  except ValueError as e:
    raise config_lib.ConfigError('model', runlog.one_line(e)) from e
  return models.count_params(shapes)
