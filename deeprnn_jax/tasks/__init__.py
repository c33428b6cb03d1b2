"""The workloads single-layer and deep recurrent models are compared on.

``TASKS`` maps a task name to its factory; a factory takes keyword options only and returns a
``Task`` (see ``base.py`` for the batch conventions). ``make_task(name, **options)`` checks the
name and the options before building anything.

Synthetic (generated on device): ``adding``, ``copy``, ``parentheses``, ``capacity``; recall tasks that
separate modern recurrent models: ``selective_copy``, ``mqar``.
No download: ``mnist1d`` (+ ``mnist1d_shuffled``), ``digits``.
TFDS (prepared once as array_record by ``python -m experiments.prepare NAME``): ``imdb``, ``sst2``,
``smnist`` (+ ``psmnist``), ``tiny_shakespeare``; ``imdb``, ``sst2`` and ``tiny_shakespeare`` also read
their authors' files with ``path=`` (``local_text.py``).
Local text files: ``text_classification`` (CSV / TSV / JSON Lines); language models with stateful
truncated BPTT, ``word_lm`` and ``char_lm`` (a PTB / WikiText folder; ``char_lm`` also one text file).
Local pickle: ``polyphonic`` (+ ``jsb_chorales``, ``nottingham``, ``musedata``, ``piano_midi``).
Transduction (``'sequence'``, for ``Seq2Seq``): ``reverse``, ``sort``, ``addition`` (on device),
``scan``; translation: ``parallel_text`` (local aligned files), ``ted_pt_en`` (TFDS).
Tagging (named entities): ``ner_conll`` (local CoNLL files), ``conll2003`` (TFDS).
Speech (keyword spotting, log-mel features): ``keyword_spotting`` (a local folder of WAV files),
``speech_commands`` (TFDS).
Speech to text (CTC over characters, ``'ctc'``): ``speech_to_text`` (a LibriSpeech-layout folder or
CSV/TSV manifests), ``librispeech`` (TFDS), ``connected_digits`` (utterances joined from the Free Spoken
Digit Dataset's recordings).

A workload of your own: ``register_task(name, factory)`` (from a config file or your own module).
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, Callable

from deeprnn_jax.tasks import connected_digits as _connected_digits
from deeprnn_jax.tasks import digits as _digits
from deeprnn_jax.tasks import language_model as _language_model
from deeprnn_jax.tasks import mnist1d as _mnist1d
from deeprnn_jax.tasks import pipeline
from deeprnn_jax.tasks import polyphonic as _polyphonic
from deeprnn_jax.tasks import recall as _recall
from deeprnn_jax.tasks import shakespeare as _shakespeare
from deeprnn_jax.tasks import speech as _speech
from deeprnn_jax.tasks import speech_to_text as _speech_to_text
from deeprnn_jax.tasks import synthetic as _synthetic
from deeprnn_jax.tasks import tagging as _tagging
from deeprnn_jax.tasks import tfds_image as _tfds_image
from deeprnn_jax.tasks import tfds_text as _tfds_text
from deeprnn_jax.tasks import transduction as _transduction
from deeprnn_jax.tasks import translation as _translation
from deeprnn_jax.tasks.base import Baseline, Task, Threshold, bucket_for_step, finalize, loss_and_metrics

TASKS: dict[str, Callable[..., Task]] = {
  'adding': _synthetic.adding,
  'copy': _synthetic.copy,
  'parentheses': _synthetic.parentheses,
  'capacity': _synthetic.capacity,
  'mnist1d': _mnist1d.mnist1d,
  'mnist1d_shuffled': functools.partial(_mnist1d.mnist1d, shuffle_seq=True),
  'digits': _digits.digits,
  'smnist': _tfds_image.smnist,
  'psmnist': functools.partial(_tfds_image.smnist, permute=True),
  'imdb': _tfds_text.imdb,
  'sst2': _tfds_text.sst2,
  'tiny_shakespeare': _shakespeare.tiny_shakespeare,
  'text_classification': _tfds_text.text_classification,
  'char_lm': _language_model.char_lm,
  'word_lm': _language_model.word_lm,
  'polyphonic': _polyphonic.polyphonic,
  'ner_conll': _tagging.ner_conll,
  'conll2003': _tagging.conll2003,
  'keyword_spotting': _speech.keyword_spotting,
  'speech_commands': _speech.speech_commands,
  'speech_to_text': _speech_to_text.speech_to_text,
  'librispeech': _speech_to_text.librispeech,
  'connected_digits': _connected_digits.connected_digits,
  **{name: functools.partial(_polyphonic.polyphonic, dataset=name) for name in _polyphonic.FILES},
  'reverse': _transduction.reverse,
  'sort': _transduction.sort,
  'addition': _transduction.addition,
  'scan': _transduction.scan,
  'selective_copy': _recall.selective_copy,
  'mqar': _recall.mqar,
  'parallel_text': _translation.parallel_text,
  'ted_pt_en': _translation.ted_pt_en,
}


# The package's own tasks: register_task never replaces one of these unless asked to.
BUILTIN_TASKS = frozenset(TASKS)


def register_task(
  name: str, factory: Callable[..., Task] | None = None, *, replace: bool = False
) -> Callable[..., Task]:
  """Adds a workload of your own to ``TASKS``, so a config can name it like a built-in task.

  ``factory`` takes keyword-only options, each with a default, and returns a ``Task`` (see
  ``base.py``); a config's ``task.options`` are checked against those options before anything is
  built, as for built-in tasks. Call it where the config file is loaded: at the top of the config
  file itself, or in a module the config file imports. Every process that loads the config (sweep
  workers included) then registers the task again; registering the same factory (same module and
  name) again replaces it quietly::

    # configs/my_task.py
    import jax, jax.numpy as jnp, numpy as np
    from deeprnn_jax import tasks
    from deeprnn_jax.training.config import default_config

    def noisy_sum(*, seq_len: int = 20, num_eval: int = 256, seed: int = 0) -> tasks.Task:
      def batch(key, n):  # [n, seq_len, 1] inputs, [n, 1] targets: the sum of the inputs
        x = jax.random.normal(key, (n, seq_len, 1))
        return {'inputs': x, 'targets': x.sum(1), 'lengths': jnp.full((n,), seq_len, jnp.int32)}
      return tasks.Task(
          name='noisy_sum', input_kind='features', input_size=1, output_kind='regression',
          output_size=1, seq_len=seq_len,
          train_batch=lambda key, step, batch_size, **_: batch(jax.random.fold_in(key, step), batch_size),
          eval_splits={split: jax.tree.map(np.asarray, batch(jax.random.key(i + 1), num_eval))
                       for i, split in enumerate(('val', 'test'))},
          baseline=tasks.Baseline('loss', float(seq_len), 'predict 0: the variance of the sum'),
          metric_modes={'loss': 'min'})

    tasks.register_task('noisy_sum', noisy_sum)

    def get_config():
      c = default_config()
      c.task.name = 'noisy_sum'
      c.task.options = {'seq_len': 20}
      return c

  Also usable as a decorator: ``@register_task('noisy_sum')`` above the factory.

  Args:
    name: the task's name in configs: letters, digits, ``_``, ``-``, ``.``, starting with a letter.
    factory: ``(**options) -> Task``; None returns a decorator that registers the function it wraps.
    replace: allow replacing a built-in task, or another factory registered under ``name``.

  Returns:
    ``factory`` (so it can be used as a decorator).

  Raises:
    ValueError: a bad name, or ``name`` is taken (a built-in task, or another factory) and
      ``replace`` is False.
    TypeError: ``factory`` is not callable, or its parameters are not keyword-only options with
      defaults (``def f(*, seq_len=20, seed=0)``).
  """
  if factory is None:
    return lambda f: register_task(name, f, replace=replace)
  if not isinstance(name, str) or not re.fullmatch(r'[A-Za-z][A-Za-z0-9_.-]*', name):
    raise ValueError(f'task name {name!r}: use letters, digits, _, - and ., starting with a letter')
  _check_factory(name, factory)
  if name in TASKS and not replace:
    if name in BUILTIN_TASKS:
      raise ValueError(
        f'task {name!r} is built in; register yours under another name, or pass '
        f'replace=True to replace the built-in one'
      )
    if _origin(TASKS[name]) != _origin(factory):
      raise ValueError(
        f'task {name!r} is already registered (by {_origin(TASKS[name])}); choose another name, or pass replace=True'
      )
  TASKS[name] = factory
  return factory


def _origin(factory: Callable[..., Any]) -> str:
  """``module.qualname`` of a factory (of the function inside a ``functools.partial``): the same for
  the factory of a config file loaded twice."""
  f = factory.func if isinstance(factory, functools.partial) else factory
  return f'{getattr(f, "__module__", "?")}.{getattr(f, "__qualname__", type(f).__name__)}'


def _check_factory(name: str, factory: Callable[..., Any]) -> None:
  if not callable(factory):
    raise TypeError(f'task {name!r}: the factory must be a function returning a Task, got {factory!r}')
  try:
    params = inspect.signature(factory).parameters.values()
  except (TypeError, ValueError) as e:
    raise TypeError(f"task {name!r}: the factory's options cannot be read ({e}); use a Python function") from e
  for p in params:
    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
      raise TypeError(
        f'task {name!r}: the factory takes {"*" if p.kind == p.VAR_POSITIONAL else "**"}'
        f'{p.name}; name every option instead, so configs can be checked: '
        f'def {getattr(factory, "__name__", "factory")}(*, seq_len=20, seed=0)'
      )
    if p.kind != p.KEYWORD_ONLY or p.default is p.empty:
      raise TypeError(
        f'task {name!r}: option {p.name!r} of the factory must be keyword-only with a '
        f'default, e.g. def {getattr(factory, "__name__", "factory")}(*, {p.name}=..., seed=0)'
      )


def task_options(name: str) -> dict[str, Any]:
  """The options of task ``name``'s factory with their defaults (``make_task`` also takes
  ``GENERIC_OPTIONS``)."""
  return {p.name: p.default for p in inspect.signature(TASKS[name]).parameters.values()}


# Options every task takes, applied by make_task after the factory: ``pack=True`` packs several training
# sequences into each row (``pipeline.pack_task``; variable-length tasks only).
GENERIC_OPTIONS = {'pack': False}


def make_task(name: str, **options: Any) -> Task:
  """Builds task ``name``; a one-line ValueError names an unknown task or option and the valid ones."""
  if name not in TASKS:
    raise ValueError(f'unknown task {name!r}; valid tasks: {", ".join(sorted(TASKS))}')
  valid = task_options(name)
  pack = options.pop('pack', False) if 'pack' not in valid else False
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise ValueError(f'unknown option {unknown[0]!r} for task {name!r}; valid options: {", ".join(sorted(valid))}')
  task = TASKS[name](**options)
  if not isinstance(task, Task):
    raise TypeError(f'task {name!r}: its factory returned {type(task).__name__}, not a deeprnn_jax.tasks.Task')
  return pipeline.pack_task(task) if pack else task


__all__ = [
  'TASKS',
  'GENERIC_OPTIONS',
  'Baseline',
  'Task',
  'Threshold',
  'bucket_for_step',
  'finalize',
  'loss_and_metrics',
  'make_task',
  'register_task',
  'task_options',
]
