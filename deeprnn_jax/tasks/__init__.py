"""The workloads single-layer and deep recurrent models are compared on.

``TASKS`` maps a task name to its factory; a factory takes keyword options only and returns a
``Task`` (see ``base.py`` for the batch conventions). ``make_task(name, **options)`` checks the
name and the options before building anything.

Synthetic (generated on device): ``adding``, ``copy``, ``parentheses``, ``capacity``.
No download: ``mnist1d`` (+ ``mnist1d_shuffled``), ``digits``.
TFDS (prepared as array_record): ``imdb``, ``sst2``, ``smnist`` (+ ``psmnist``), ``tiny_shakespeare``.
Local pickle: ``polyphonic`` (+ ``jsb_chorales``, ``nottingham``, ``musedata``, ``piano_midi``).
Transduction (``'sequence'``, for ``Seq2Seq``): ``reverse``, ``sort``, ``addition`` (on device),
``scan``; translation: ``parallel_text`` (local aligned files), ``ted_pt_en`` (TFDS).
Tagging (named entities): ``ner_conll`` (local CoNLL files), ``conll2003`` (TFDS).
Speech (keyword spotting, log-mel features): ``keyword_spotting`` (a local folder of WAV files),
``speech_commands`` (TFDS).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from deeprnn_jax.tasks import digits as _digits
from deeprnn_jax.tasks import mnist1d as _mnist1d
from deeprnn_jax.tasks import polyphonic as _polyphonic
from deeprnn_jax.tasks import shakespeare as _shakespeare
from deeprnn_jax.tasks import speech as _speech
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
    'polyphonic': _polyphonic.polyphonic,
    'ner_conll': _tagging.ner_conll,
    'conll2003': _tagging.conll2003,
    'keyword_spotting': _speech.keyword_spotting,
    'speech_commands': _speech.speech_commands,
    **{name: functools.partial(_polyphonic.polyphonic, dataset=name) for name in _polyphonic.FILES},
    'reverse': _transduction.reverse,
    'sort': _transduction.sort,
    'addition': _transduction.addition,
    'scan': _transduction.scan,
    'parallel_text': _translation.parallel_text,
    'ted_pt_en': _translation.ted_pt_en,
}


def task_options(name: str) -> dict[str, Any]:
  """The options of task ``name`` with their defaults."""
  return {p.name: p.default for p in inspect.signature(TASKS[name]).parameters.values()}


def make_task(name: str, **options: Any) -> Task:
  """Builds task ``name``; a one-line ValueError names an unknown task or option and the valid ones."""
  if name not in TASKS:
    raise ValueError(f'unknown task {name!r}; valid tasks: {", ".join(sorted(TASKS))}')
  valid = task_options(name)
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise ValueError(f'unknown option {unknown[0]!r} for task {name!r}; valid options: '
                     f'{", ".join(sorted(valid))}')
  return TASKS[name](**options)


__all__ = ['TASKS', 'Baseline', 'Task', 'Threshold', 'bucket_for_step', 'finalize',
           'loss_and_metrics', 'make_task', 'task_options']
