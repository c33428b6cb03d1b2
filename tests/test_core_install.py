"""`pip install deeprnn-jax` without extras: the library imports and trains, and every part that needs an
extra fails in one line naming the install command.

The extras are installed in the test environment, so a subprocess hides them: a meta-path finder
(installed before anything else is imported) raises ModuleNotFoundError for their top-level names, as
an environment without them would.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# The top-level modules the core install does not have (the extras and what only they bring).
HIDDEN = (
  'wandb',
  'tensorflow_datasets',
  'tensorflow',
  'matplotlib',
  'mnist1d',
  'sklearn',
  'sacrebleu',
  'seqeval',
  'librosa',
  'soundfile',
  'jiwer',
  'numba',
  'submitit',
  'orbax',
)
# Installed with the core (jax requires scipy) but not imported by `import deeprnn_jax` nor a train step.
NOT_IMPORTED = HIDDEN + ('scipy',)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = textwrap.dedent(f'''
    import importlib.abc, json, sys

    class HideExtras(importlib.abc.MetaPathFinder):
      def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {HIDDEN!r}:
          raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
        return None

    sys.meta_path.insert(0, HideExtras())

    def one_line_error(fn):
      """The message of the ImportError ``fn()`` raises (it must raise one)."""
      try:
        fn()
      except ImportError as e:
        return f'{{type(e).__name__}}: {{e}}'
      raise AssertionError('no ImportError')
''')


def run_core(body: str) -> dict:
  """Runs ``body`` after the prelude in a fresh interpreter; it prints one JSON object as its last line."""
  code = PRELUDE + textwrap.dedent(body)
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['PYTHONPATH'] = ROOT
  env.setdefault('JAX_PLATFORMS', 'cpu')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh interpreter imports JAX and compiles a step
def test_import_and_one_train_step_without_extras():
  out = run_core(f"""
      import deeprnn_jax as dr
      imported = sorted({{m.split('.')[0] for m in sys.modules}} & set({NOT_IMPORTED!r}))

      import functools
      import jax, numpy as np, optax
      from deeprnn_jax.training import train
      task = dr.tasks.make_task('adding', seq_len=6, num_eval=8)
      model = dr.Regressor(rnn=dr.DeepRNN(cell='lstm', features=8, num_layers=2), out_features=1)
      tx = optax.adam(1e-2)
      state = train.init_state(model, tx, task, seed=0)
      before = jax.tree.map(np.asarray, state.params)
      step = jax.jit(functools.partial(train.train_step, model, tx, task))
      state = step(state, task.train_batch(state.data_key, state.step, 4))
      moved = max(float(np.abs(np.asarray(a) - b).max())
                  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)))
      sums = train.eval_step(model, task, state.params, task.eval_splits['val'])
      print(json.dumps({{'imported': imported, 'step': int(state.step), 'moved': moved,
                        'diverged_at': int(state.diverged_at), 'loss': float(sums['loss'][0] / sums['loss'][1])}}))
  """)
  assert out['imported'] == []
  assert out['step'] == 1 and out['diverged_at'] == -1
  assert out['moved'] > 0
  assert np_isfinite(out['loss'])


def np_isfinite(x: float) -> bool:
  return x == x and abs(x) != float('inf')


@pytest.mark.slow
def test_parts_needing_an_extra_fail_in_one_line_naming_it():
  out = run_core("""
      import numpy as np
      import deeprnn_jax as dr
      from deeprnn_jax import ctc
      from deeprnn_jax.tasks import speech, tagging, transduction
      errors = {
          'experiments': one_line_error(lambda: dr.tasks.make_task('digits')),
          'experiments-tfds': one_line_error(lambda: dr.tasks.make_task('smnist')),
          'speech': one_line_error(lambda: speech.log_mel(np.zeros(800, np.float32), speech.FeatureOptions())),
          'speech-jiwer': one_line_error(lambda: ctc.error_rates(['a b'], ['a c'])),
          'text': one_line_error(lambda: tagging.entity_scores([['B-PER']], [['B-PER']])),
          'cluster': one_line_error(lambda: __import__('experiments.slurm')),
          'experiments-plots': one_line_error(lambda: __import__('experiments.report.plots', fromlist=['_plt'])._plt()),
      }
      registered = all(name in dr.tasks.TASKS for name in ('speech_commands', 'librispeech', 'conll2003', 'digits'))
      print(json.dumps({'errors': errors, 'registered': registered}))
  """)
  assert out['registered']
  for key, message in out['errors'].items():
    extra = key.split('-')[0]
    assert '\n' not in message, message
    assert message.startswith('MissingExtraError: '), message
    assert f"pip install 'deeprnn-jax[{extra}]'" in message, (key, message)


def test_require_names_the_module_and_the_extra():
  from deeprnn_jax import _extras

  with pytest.raises(
    ImportError,
    match=r"^my_feature needs no_such_module_x, from the 'speech' extra: "
    r"pip install 'deeprnn-jax\[speech\]'$",
  ):
    _extras.require('no_such_module_x.sub', 'speech', 'my_feature')
  assert _extras.require('json').dumps([1]) == '[1]'
  lazy = _extras.LazyModule('json')
  assert lazy.dumps({}) == '{}'
  with pytest.raises(ModuleNotFoundError, match=r"needs no_such_module_y, from the 'all' extra"):
    _extras.LazyModule('no_such_module_y').anything  # noqa: B018  (the access is the test)
