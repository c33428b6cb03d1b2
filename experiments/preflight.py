"""Before the first step: every optional package a run of the sweep will need, checked at once.

A core install (``pip install .``) trains, but the report's plots need matplotlib, Weights & Biases
needs wandb, and many tasks need an extra of their own (TFDS, librosa, seqeval, ...). Without this
check a sweep trains for minutes or hours and then fails on the first missing package. ``check``
names every missing package, what needs it, and the one install command that brings them all, as one
line (``python -m experiments.run`` prints it as ``error: ...`` and exits with code 2).

Only whether a package can be found is checked (``importlib.util.find_spec``), not imported: importing
TFDS or librosa takes seconds.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable, Mapping

from deeprnn_jax import _extras
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training.config import ConfigError

_TFDS = ('tensorflow_datasets', 'its TFDS data')
_BLEU = ('sacrebleu', 'BLEU')

# The optional packages a built-in task needs, with what for. A task that also reads local files
# (``path=`` given) needs TFDS only without it: ``_LOCAL_OR_TFDS``.
TASK_MODULES: dict[str, tuple[tuple[str, str], ...]] = {
  'digits': (('sklearn', 'its data'),),
  'mnist1d': (('mnist1d', 'its data'),),
  'mnist1d_shuffled': (('mnist1d', 'its data'),),
  'smnist': (_TFDS,),
  'psmnist': (_TFDS,),
  'imdb': (_TFDS,),
  'sst2': (_TFDS,),
  'tiny_shakespeare': (_TFDS,),
  'ner_conll': (('seqeval', 'entity F1'),),
  'conll2003': (('seqeval', 'entity F1'), _TFDS),
  'keyword_spotting': (('librosa', 'log-mel features'),),
  'speech_commands': (('librosa', 'log-mel features'), _TFDS),
  'speech_to_text': (('soundfile', 'audio files'), ('librosa', 'log-mel features'), ('jiwer', 'error rates')),
  'librispeech': (('librosa', 'log-mel features'), ('jiwer', 'error rates'), _TFDS),
  'connected_digits': (('librosa', 'log-mel features'), ('jiwer', 'error rates')),
  'reverse': (_BLEU,),
  'sort': (_BLEU,),
  'addition': (_BLEU,),
  'scan': (_BLEU,),
  'parallel_text': (_BLEU,),
  'ted_pt_en': (_BLEU, _TFDS),
}
_LOCAL_OR_TFDS = ('imdb', 'sst2', 'tiny_shakespeare')


def installed(module: str) -> bool:
  """Whether top-level ``module`` can be imported (found on the path; not imported)."""
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def needs(config: Any, *, report: bool = True, launcher: str | None = None) -> list[tuple[str, str]]:
  """``(module, what for)`` for every optional package a sweep of ``config`` uses, in a stable order."""
  d = config_lib.to_dict(config)
  out: list[tuple[str, str]] = []
  if report:
    out.append(('matplotlib', "the report's plots (--no-report skips the report)"))
  if _wandb_requested(d):
    out.append(('wandb', 'Weights & Biases logging (logging.wandb_mode or $WANDB_MODE)'))
  if launcher:
    out.append(('submitit', f'--launcher {launcher}'))
  for name, options in _tasks(d):
    for module, what in TASK_MODULES.get(name, ()):
      if module == 'tensorflow_datasets' and name in _LOCAL_OR_TFDS:
        if options.get('path'):
          continue  # its local files instead
        what = f'{what}, or task.options.path for local files'
      out.append((module, f'{what} (task {name})'))
  seen, unique = set(), []
  for module, what in out:
    if (module, what) not in seen:
      seen.add((module, what))
      unique.append((module, what))
  return unique


def check(
  config: Any, *, report: bool = True, launcher: str | None = None, available: Callable[[str], bool] = installed
) -> None:
  """Raises ``ConfigError`` (one line: the missing packages, what needs each, the install command) if a
  package the sweep needs is missing; ``available(module)`` says whether one is installed."""
  missing = [(m, what) for m, what in needs(config, report=report, launcher=launcher) if not available(m)]
  if not missing:
    return
  extras = sorted({_extras.EXTRA_OF.get(m, 'all') for m, _ in missing})
  names = ', '.join(f'{m} for {what}' for m, what in missing)
  spec = ','.join(extras)
  raise ConfigError(
    '',
    f'nothing trained: this sweep needs {names}; install the {" and ".join(map(repr, extras))} '
    f"extra{'s' if len(extras) > 1 else ''} in the checkout: pip install '.[{spec}]'",
  )


def _wandb_requested(d: Mapping[str, Any]) -> bool:
  """Whether the config or ``$WANDB_MODE`` asks for wandb. The automatic mode (neither set) is not a
  request: without wandb installed it logs locally only, as with no API key."""
  mode = (d.get('logging') or {}).get('wandb_mode')
  if mode is None:
    env = os.environ.get('WANDB_MODE', '').strip().lower()
    mode = {'dryrun': 'offline', 'run': 'online'}.get(env, env) or None
  return mode in ('online', 'offline')


def _tasks(d: Mapping[str, Any]) -> list[tuple[str, dict]]:
  """Every (task name, options) a sweep of ``d`` trains: the config's, and those its axes name."""
  axes = config_lib.flat_axes(d)
  names = axes.get('task.name') or [d['task']['name']]
  options = dict(d['task'].get('options') or {})
  for key, values in axes.items():
    if key.startswith('task.options.') and values:
      options.setdefault(key[len('task.options.') :], values[0])
  return [(name, options) for name in names]
