"""Config -> task, model, optimizer: the one place a config is unpacked into objects.

The trainer, the sweep (parameter matching, run names) and ``load_run`` all build from here, so a
run is rebuilt exactly as it was trained. Never pass a ConfigDict into a Module: it stops here.
"""

from __future__ import annotations


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
  """The config checks that need the task: the eval splits it names must exist, and a model that reads
  a fixed number of steps (``pooling='flatten'``) must get that many in every split it is evaluated on."""
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
  by :math:`f` after each epoch. ``steps_per_epoch``: a stateful task's ``windows_per_epoch``.
  """
  peak, warmup = optim.learning_rate, min(optim.warmup_steps, num_steps)
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
  """The optax chain of ``config.optim``: clip -> (L2) -> optimizer, and its learning-rate schedule.

  Weight decay applies to matrices only (not biases or norms): decoupled in adamw, added to the
  gradient (L2) for the others. ``task``: needed by the ``'epoch_decay'`` schedule (its epochs).
  """
  o = config.optim
  per_epoch = task.windows_per_epoch(config.train.batch_size) if task is not None and task.stateful else None
  lr = schedule_from_config(o, config.train.num_steps, per_epoch)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  parts = []
  if o.clip_global_norm > 0:
    parts.append(optax.clip_by_global_norm(o.clip_global_norm))
  if o.weight_decay > 0 and o.name != 'adamw':
    parts.append(optax.add_decayed_weights(o.weight_decay, mask=decay_mask))
  if o.name == 'adam':
    parts.append(optax.adam(lr, b1=o.beta1, b2=o.beta2, eps=o.eps))
  elif o.name == 'adamw':
    parts.append(optax.adamw(lr, b1=o.beta1, b2=o.beta2, eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask))
  elif o.name == 'sgd':
    parts.append(optax.sgd(lr, momentum=o.momentum or None))
  elif o.name == 'rmsprop':
    parts.append(optax.rmsprop(lr, decay=o.rmsprop_decay, eps=o.eps, momentum=o.momentum or None))
  else:
    raise config_lib.ConfigError('optim.name', f'unknown optimizer {o.name!r}')
  return optax.chain(*parts), lr


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
