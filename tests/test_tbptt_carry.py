"""Truncated BPTT's carried state in the default run (test_language_model.py's learning test, which also
sees it, is marked slow): with the learning rate at 0, the train step's loss on each window equals the
model's loss on those tokens read in one pass from the stream's start (the carry is kept across
windows), and an epoch's first window starts afresh (the carry is reset)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deeprnn_jax import models, tasks
from deeprnn_jax.stack import DeepRNN
from deeprnn_jax.training import steps


def test_the_train_step_carries_state_across_windows_and_resets_it_at_an_epoch_start(tmp_path):
  d = tmp_path / 'corpus'
  d.mkdir()
  # 16 training tokens (with <eos>), 2 streams of 8: 2 windows of 3 per epoch.
  (d / 'train.txt').write_text('a b c d e f g\nh a b c d e f\n')
  (d / 'valid.txt').write_text('a b\n')
  (d / 'test.txt').write_text('a b\n')
  task = tasks.make_task('word_lm', path=str(d), seq_len=3)
  model = models.PerStepModel(
    rnn=DeepRNN(cell='lstm', features=4), vocab_size=task.input_size, embed_features=4, out_features=task.output_size
  )
  tx = optax.sgd(0.0)  # parameters stay put: every difference below is the carry's
  state = steps.init_state(model, tx, task, 0, batch_size=2)
  step = jax.jit(functools.partial(steps.train_step, model, tx, task))
  batches, losses = [], []
  for _ in range(3):
    batch = task.train_batch(state.data_key, state.step, 2)
    before = float(state.acc['loss'])
    state = step(state, batch)
    batches.append(batch)
    losses.append(float(state.acc['loss']) - before)
  assert [bool(b['reset'][0]) for b in batches] == [True, False, True]

  params = {'params': state.params}
  apply = jax.jit(model.apply)  # one program, [2 streams, 6 steps]: two windows read as one sequence
  loss_of = lambda outputs, batch: float(task.loss_and_metrics(outputs, batch)[0])
  first, second = batches[0]['inputs'], batches[1]['inputs']
  both = apply(params, jnp.concatenate([first, second], axis=1))
  swapped = apply(params, jnp.concatenate([second, first], axis=1))
  carried, fresh = loss_of(both[:, 3:], batches[1]), loss_of(swapped[:, :3], batches[1])
  assert abs(carried - fresh) > 1e-4  # the carry matters here, so the test can tell the two apart
  np.testing.assert_allclose(losses[1], carried, rtol=1e-5)  # the carry was kept
  np.testing.assert_allclose(losses[0], loss_of(both[:, :3], batches[0]), rtol=1e-5)
  # A new epoch (the same windows again) starts from the model's initial carry, not from where the
  # last window left it.
  np.testing.assert_array_equal(batches[2]['inputs'], first)
  np.testing.assert_allclose(losses[2], losses[0], rtol=1e-6)
