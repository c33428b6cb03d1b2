"""One test per bug of issue 26's planted-bug audit that no test saw (row 5, a parameter with no
gradient at init, is checked in test_stack.py's per-cell gradient test; row 7, the report's best value,
in test_experiments_report.py). Each was shown to fail with its bug planted and to pass without it;
``scripts/mutants.py`` plants them again (its list names the test each one needs)."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import deeprnn_jax as dr
from deeprnn_jax.cells import rglru
from deeprnn_jax.tasks import base as task_base
from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import steps
from deeprnn_jax.training import train as train_lib

from experiments import slurm, sweep
from runner_helpers import config_file_text, tiny_config, write_config

# ------------------------------------------------------------------ 1. audio of another rate, no librosa


def test_audio_of_another_rate_is_refused_without_librosa_never_kept_at_its_rate(tmp_path, monkeypatch):
  sf = pytest.importorskip('soundfile', reason='speech to text reads audio with soundfile')
  from deeprnn_jax.tasks import speech_to_text as stt  # noqa: PLC0415

  x = (0.1 * np.sin(np.arange(1600) / 5.0)).astype(np.float32)
  sf.write(str(tmp_path / 'a.wav'), x, 16000, subtype='FLOAT')
  monkeypatch.setitem(sys.modules, 'librosa', None)  # as an install without the speech extra's librosa
  np.testing.assert_array_equal(stt.read_audio(tmp_path / 'a.wav', 16000), x)  # its own rate needs no librosa
  with pytest.raises(ImportError, match="needs librosa, from the 'speech' extra"):
    stt.read_audio(tmp_path / 'a.wav', 8000)


# --------------------------------------------------- 2. exact_match over a split the eval batch does not divide


def test_exact_match_counts_only_weighted_rows_of_a_padded_eval_split():
  """5 rows in eval chunks of 2: the last chunk is filled with a copy of row 0 at weight 0. Row 0 is an
  exact match, so a filler counted as a row (its weight ignored) would give 3/5, not 2/5."""
  rng = np.random.default_rng(0)
  rows, time, vocab = 5, 4, 3
  targets = rng.integers(0, vocab, (rows, time)).astype(np.int32)
  answer = np.zeros((rows, time), np.float32)
  answer[:, 2:] = 1.0
  hit = np.array([1, 0, 1, 0, 0], np.float32)  # rows whose every answer step is predicted right
  split = {
    'inputs': targets,
    'targets': targets,
    'lengths': np.full(rows, time, np.int32),
    'target_mask': answer,
    'hit': hit,
  }
  totals = {}
  chunks = steps.eval_chunks(split, 2)
  assert len(chunks) == 3 and chunks[-1]['weight'].tolist() == [1.0, 0.0]
  for chunk in chunks:
    wrong = (chunk['targets'] + 1) % vocab
    wrong[:, :3] = chunk['targets'][:, :3]  # right except the last answer step
    predicted = np.where(chunk['hit'][:, None] > 0, chunk['targets'], wrong)
    logits = jax.nn.one_hot(predicted, vocab)
    sums = task_base.loss_and_metrics('per_step_class', logits, {k: jnp.asarray(v) for k, v in chunk.items()})[1]
    for k, (t, c) in sums.items():
      totals[k] = (totals.get(k, (0.0, 0.0))[0] + float(t), totals.get(k, (0.0, 0.0))[1] + float(c))
  means = task_base.finalize(totals)
  assert means['exact_match'] == pytest.approx(2 / 5)
  assert means['accuracy'] == pytest.approx((2 * 2 + 3 * 1) / 10)


# ------------------------------------------------------- 3. perplexity = exp(the split's summed NLL / tokens)


def test_derived_perplexity_is_exp_of_the_split_mean_not_a_mean_over_eval_batches():
  """Several eval batches (7 rows in chunks of 3, the last padded) and parameters scaled up so that the
  batches' losses differ: the evaluator's perplexity is exp(sum of the answer steps' NLL / their count)
  over the split, computed here in one batch; the mean over batches of exp(batch loss) is far off."""
  c = tiny_config(
    **{
      'task.name': 'mqar',
      'task.options': {'seq_len': 8, 'num_pairs': 2, 'num_keys': 4, 'num_values': 5, 'num_eval': 7},
      'model.width': 4,
      'model.dropout_rate': 0.0,
      'train.eval_batch_size': 3,
    }
  )
  task = dr.tasks.make_task('mqar', seq_len=8, num_pairs=2, num_keys=4, num_values=5, num_eval=7)
  task = dataclasses.replace(task, derived=lambda means: {'perplexity': np.exp(np.asarray(means['loss'], np.float64))})
  programs = train_lib.Programs(c, task, 'loop')
  assert len(programs.eval_data['val']) == 3
  state = programs.init(jnp.arange(1), None)
  params = jax.tree.map(lambda p: 4.0 * p + 0.5, state.params)
  got = programs.evaluate(params, ['val'])['val']
  # Each batch's sums from the evaluator's own compiled program (one seed), added up here.
  sums = [programs.eval_fn(params, chunk)['loss'] for chunk in programs.eval_data['val']]
  per_batch = [tuple(float(np.asarray(v)[0]) for v in pair) for pair in sums]
  total, count = (sum(column) for column in zip(*per_batch))  # the split's summed NLL and its answer steps
  assert count == float(np.sum(task.eval_splits['val']['target_mask']))
  assert got['perplexity'][0] == pytest.approx(np.exp(total / count), rel=1e-5)
  per_batch = [np.exp(t / n) for t, n in per_batch]
  assert abs(np.mean(per_batch) / np.exp(total / count) - 1) > 1e-3  # the test can tell the two apart


# ------------------------------------------------------------ 4. RG-LRU's bounded-derivative square root


def test_sqrt_bounded_derivative_gradient_is_autodiff_of_sqrt_and_capped_below():
  g = 1000.0
  x = jnp.array([1e-9, 1e-8, 2.4e-7, 1e-4, 0.3, 0.99])
  grad = jax.vmap(jax.grad(lambda v: rglru.sqrt_bounded_derivative(v, g)))(x)
  plain = jax.vmap(jax.grad(jnp.sqrt))(x)
  above = np.asarray(x) >= 1.0 / (4.0 * g**2)
  np.testing.assert_allclose(np.asarray(grad)[above], np.asarray(plain)[above], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(grad)[~above], g, rtol=1e-6)  # the derivative's cap, where sqrt's is larger
  np.testing.assert_allclose(rglru.sqrt_bounded_derivative(x, g), jnp.sqrt(x), rtol=1e-7)


# 5. every parameter of every cell learns from the start: tests/test_stack.py's
# test_gradients_are_finite_through_4_layers_and_200_steps (one compile per cell serves both checks).


# ----------------------------------------------------- 6. the modern block's two dropout masks are independent


def test_modern_block_dropout_equals_numpy_with_two_independent_masks():
  """deterministic=False: the layer's mask (recorded where it enters ``post``) has two halves, the
  mixer's and the MLP's; they are independent draws, and the output is the block's equations with the
  mixer's half on the cell's output and the MLP's half on the MLP's."""
  from test_blocks import gelu, rms_norm  # noqa: PLC0415

  model = dr.DeepRNN(
    cell='rnn', features=4, num_layers=1, block='modern', dropout_rate=0.5, mlp_expansion=1.0, execution='layer'
  )
  x = jax.random.normal(jax.random.key(0), (3, 5, 3))
  variables = model.init(jax.random.key(1), x)
  masks = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == 'post':
      masks.append(args[2])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    _, y = model.apply(variables, x, deterministic=False, rngs={'dropout': jax.random.key(3)})
  mask = np.asarray(masks[0], np.float64)  # [batch, time, 2H], the whole sequence's (layer-major path)
  assert mask.shape == (3, 5, 8) and all(np.array_equal(m, mask) for m in masks)
  mixer, mlp = mask[..., :4], mask[..., 4:]
  assert set(np.unique(mask)) == {0.0, 2.0}
  assert np.mean(mixer == mlp) < 0.75  # 60 independent coin pairs agree about half the time, never all
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  layer, s = p['layer_0'], np.asarray(x, np.float64) @ p['layer_0']['residual_proj']['kernel']
  u = rms_norm(s, layer['mixer_norm']['scale'])
  cell, h, ys = layer['cell'], np.zeros((3, 4)), []
  for t in range(5):
    h = np.tanh(u[:, t] @ cell['input_proj']['kernel'] + cell['input_proj']['bias'] + h @ cell['recurrent']['kernel'])
    ys.append(h)
  s = s + np.stack(ys, axis=1) * mixer
  m = layer['mlp']
  gate, up = np.split(rms_norm(s, layer['mlp_norm']['scale']) @ m['gate_up']['kernel'] + m['gate_up']['bias'], 2, -1)
  s = s + ((gelu(gate) * up) @ m['down']['kernel'] + m['down']['bias']) * mlp
  np.testing.assert_allclose(y, rms_norm(s, p['final_norm']['scale']), rtol=2e-5, atol=2e-5)


# --------------------------------------------------------------- 8. the job array starts the costliest first

FAKE_SBATCH = """#!/bin/sh
cp "$1" "$(dirname "$0")/submitted.sh"
echo "Submitted batch job 4242"
"""


def test_the_slurm_job_array_starts_the_costliest_grid_point_first(tmp_path, monkeypatch):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'sbatch').write_text(FAKE_SBATCH)
  (bin_dir / 'srun').write_text('#!/bin/sh\nexit 1\n')
  for tool in ('sbatch', 'srun'):
    (bin_dir / tool).chmod(0o755)
  monkeypatch.setenv('PATH', f'{bin_dir}:{os.environ["PATH"]}')
  # Grid order puts the cheap point (width 4) first; the wide one (width 32) costs more.
  cfg = write_config(tmp_path, config_file_text(axes={'model.width': [4, 32]}, seeds=(0,)), 'launch.py')
  lines = []
  assert slurm.launch(sweep.load_config(cfg, []), str(tmp_path / 'w'), 'slurm', echo=lines.append) is None
  order = re.findall(r'^ +4242_(\d+)  (\S+)$', '\n'.join(lines), re.M)
  assert order == [('0', 'rnn-d1-w32'), ('1', 'rnn-d1-w4')], lines


# --------------------------------------------------- 9. a best step older than the kept latest ones restores


def test_restore_step_loads_the_best_step_after_it_left_the_latest_saves(tmp_path):
  ck = checkpoint_lib.Checkpointer(str(tmp_path / 'checkpoints'), keep=2)
  state = lambda step: {'w': np.full((2,), float(step), np.float32)}
  ck.save_best(2, state(2), {'step': 2})
  for step in (2, 4, 6):
    ck.save(step, state(step), {'step': step})
  ck.wait()
  assert ck.steps() == {'latest': [4, 6], 'best': [2]}
  step, restored, meta = ck.restore_step(2, None)
  assert step == 2 and meta['step'] == 2
  np.testing.assert_array_equal(restored['w'], [2.0, 2.0])
  assert ck.restore_step(6, None)[0] == 6 and ck.restore_step(3, None) is None
  ck.close()


# ----------------------------------------- (mutants) every train step draws fresh dropout masks


def _tiny_recall_model(dropout_rate: float = 0.0):
  """A tiny MQAR task and a one-layer rnn for driving ``steps.train_step`` directly."""
  task = dr.tasks.make_task('mqar', seq_len=8, num_pairs=2, num_keys=4, num_values=5, num_eval=2)
  model = dr.models.PerStepModel(
    rnn=dr.DeepRNN(cell='rnn', features=8, dropout_rate=dropout_rate),
    vocab_size=task.input_size,
    embed_features=4,
    out_features=task.output_size,
  )
  return task, model


def test_every_train_step_draws_its_own_dropout_masks_and_a_rerun_the_same_ones():
  """Learning rate 0, dropout 0.5, one batch fed to every step: the steps' losses differ only by their
  masks, so they must differ from step to step (a key not folded with the step repeats them) and
  repeat exactly when the same steps run again."""
  task, model = _tiny_recall_model(dropout_rate=0.5)
  tx = optax.sgd(0.0)
  step = jax.jit(functools.partial(steps.train_step, model, tx, task))

  start = steps.init_state(model, tx, task, 0)
  batch = task.train_batch(start.data_key, start.step, 4)

  def losses():
    state, out = start, []
    for _ in range(3):
      before = float(state.acc['loss'])
      state = step(state, batch)
      out.append(float(state.acc['loss']) - before)
    return out

  first = losses()
  assert len(set(first)) == 3, first
  assert losses() == first


# ----------------------------------------- (mutants) a non-finite update is refused in the step


def test_a_step_whose_update_is_not_finite_keeps_the_last_finite_state_and_records_the_step():
  """``train_step``'s contract (its docstring), seen by anyone who drives it directly: an infinite
  learning rate makes the new parameters non-finite; the step must keep the state it was given
  (parameters, optimizer state, the interval's sums), record the step in ``diverged_at``, and stay
  frozen at the next step. The trainer never shows a diverged seed's parameters or optimizer state,
  so only this test sees them."""
  task, model = _tiny_recall_model()
  tx = optax.sgd(float('inf'))
  step = jax.jit(functools.partial(steps.train_step, model, tx, task))
  start = steps.init_state(model, tx, task, 0)
  batch = task.train_batch(start.data_key, start.step, 4)

  state = step(step(start, batch), batch)
  assert int(state.step) == 2 and int(state.diverged_at) == 0
  same = lambda a, b: jax.tree.map(np.testing.assert_array_equal, a, b)
  same(state.params, start.params)
  same(state.opt_state, start.opt_state)
  same(state.acc, start.acc)  # nothing of the refused steps is summed (no NaN reaches a log)
