"""Each test here closes a hole found by a planted bug in scripts/mutants.py: a realistic bug (the
mutant named in the test's docstring) that the rest of the suite let through. Tiny shapes, fast, and
checked against an independent reference where there is one."""

import io
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax import inits
from deeprnn_jax import tasks
from deeprnn_jax.tasks import pipeline
from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import identity
from deeprnn_jax.training import progress
from deeprnn_jax.training import runlog
from deeprnn_jax.training import tune_config
from experiments import evaluate as evaluate_cli
from experiments import locks
from experiments.cli import shell_join


def test_init_tree_draws_every_leaf_on_its_own_within_its_bound():
  """Mutant ``init-tree-one-key``: every leaf drawn from one key (same-shaped kernels start equal)."""
  params = {'a': jnp.zeros((64, 64)), 'b': {'kernel': jnp.zeros((64, 64))}, 'c': jnp.zeros((500,), jnp.complex64)}
  out = inits.init_tree(params, jax.random.key(0), 'uniform_0.1')
  assert jax.tree.map(lambda x: (x.shape, x.dtype), out) == jax.tree.map(lambda x: (x.shape, x.dtype), params)
  a, b, c = np.asarray(out['a']), np.asarray(out['b']['kernel']), np.asarray(out['c'])
  for values in (a, b, c.real, c.imag):
    assert np.all(np.abs(values) <= 0.1) and abs(values.std() - 0.1 / np.sqrt(3)) < 0.1 * (0.1 / np.sqrt(3))
  # Independent draws: two same-shaped leaves, and a complex leaf's two parts, are uncorrelated.
  assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.1
  assert abs(np.corrcoef(c.real, c.imag)[0, 1]) < 0.2


def test_a_packed_bidirectional_classifier_reads_each_sequence_as_it_reads_it_alone():
  """Mutant ``packed-bidirectional-start``: each packed sequence's backward summary read at the
  previous sequence's last step, not at its own first."""
  model = dr.Classifier(rnn=dr.DeepRNN(cell='gru', features=4, bidirectional=True), vocab_size=9, embed_features=3)
  lengths = np.asarray([3, 2, 4], np.int32)
  tokens = np.asarray([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 2]], np.int32)
  packed = pipeline.pack_arrays(
    {'inputs': tokens, 'targets': np.asarray([0, 1, 1]), 'lengths': lengths}, 5, ('inputs',), [[0, 1], [2]]
  )
  params = model.init(jax.random.key(0), tokens, lengths)
  alone = model.apply(params, tokens, lengths)
  got = model.apply(params, packed['inputs'], packed['lengths'], resets=packed['resets'], ends=packed['ends'])
  np.testing.assert_allclose(got[0], alone[:2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[1, 0], alone[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
  'kwargs',
  [
    dict(bidirectional=True, merge='sum'),
    dict(bidirectional=True, merge='concat'),
    dict(bidirectional=True, merge='sum', connection='residual'),
    dict(features=(3, 5)),
  ],
  ids=['bi-sum', 'bi-concat', 'bi-sum-residual', 'widths'],
)
def test_layer_out_features_is_the_width_each_layer_outputs(kwargs):
  """Mutant ``layer-out-width-sum``: a bidirectional ``merge='sum'`` layer's width reported doubled
  (what ``tie_embeddings`` and Seq2Seq's dot attention check their widths against)."""
  model = dr.DeepRNN(cell='rnn', **(dict(features=4, num_layers=2) | kwargs))
  x = jnp.zeros((2, 3, 5))
  (_, y), _ = model.init_with_output(jax.random.key(0), x)
  assert y.shape[-1] == model.layer_out_features[-1]
  encoder = dr.DeepRNN(cell='rnn', features=4, bidirectional=True, merge='sum')
  decoder = dr.RecurrentDecoder(vocab_size=7, embed_features=3, cell='rnn', features=4, attention='dot')
  assert dr.Seq2Seq(encoder=encoder, decoder=decoder, source_vocab_size=7, embed_features=3).memory_features == 4


def test_top_width_sets_the_last_layers_width():
  """Mutant ``build-top-width-ignored``: ``model.top_width`` silently ignored (every layer ``width`` wide)."""
  c = config_lib.default_config()
  c.model.depth, c.model.width, c.model.top_width = 3, 8, 5
  assert build.layer_widths(c) == (8, 8, 5)
  model = build.model_from_config(c, build.task_from_config(c))
  assert model.rnn.layer_features == (8, 8, 5)
  c.model.top_width = None
  assert build.layer_widths(c) == (8, 8, 8)


def test_more_steps_extend_a_run_only_where_the_longer_run_computes_the_same():
  """Mutant ``extend-off-eval-cadence``: a run whose old end is off the eval cadence extended (its
  evaluation at the old end is not one the longer run makes)."""

  def config(steps, **train):
    c = config_lib.default_config()
    c.train.num_steps, c.train.log_every_steps, c.train.eval_every_steps = steps, 10, 200
    for k, v in train.items():
      setattr(c.train, k, v)
    return config_lib.validate(c)

  assert identity.continuation_problem(config(1000), config(2000)) is None
  problem = identity.continuation_problem(config(1010), config(2000))
  assert problem is not None and 'not a multiple of train.eval_every_steps' in problem, problem
  assert 'log_every_steps' not in problem
  problem = identity.continuation_problem(config(1005), config(2000))
  assert problem is not None and 'not a multiple of train.log_every_steps' in problem, problem
  assert 'below the 1000 steps trained' in identity.continuation_problem(config(1000), config(800))


def test_the_progress_line_eta_is_the_steps_left_at_the_latest_rate():
  """Mutant ``progress-eta-whole-run``: the ETA counts every step of the run, not the steps left."""
  stream = io.StringIO()
  with progress.Progress('lines', 'x', total=1500, start=0, stream=stream) as p:
    p.synced(400, 10.0, 0.5, {'val': {'loss': 0.25}})
    p.synced(1490, 10.0, None, {'val': {'loss': 0.125}})
  first, last = stream.getvalue().splitlines()
  assert first == 'x step 400/1500 | train loss 0.5 | val loss 0.25 | 10.0 steps/s | ETA 1m50s'
  assert last.endswith('| ETA 1 s')


def test_is_done_counts_finished_diverged_and_early_stopped_runs():
  """Mutant ``rerun-retrains-early-stopped``: a seed that stopped early at its threshold counted as
  unfinished, so a rerun trains it again."""
  assert not runlog.is_done(None, 100)
  assert not runlog.is_done({'state': 'running', 'step': 100}, 100)
  assert runlog.is_done({'state': 'finished', 'step': 100}, 100)
  assert not runlog.is_done({'state': 'finished', 'step': 50}, 100)  # more steps asked: extended
  assert runlog.is_done({'state': 'finished', 'step': 50, 'stopped_early': True}, 100)
  assert runlog.is_done({'state': 'diverged', 'step': 7}, 100)


def test_a_grid_of_int_ranges_includes_both_bounds():
  """Mutant ``tune-grid-int-exclusive``: the grid sampler's int range stops before its upper bound,
  documented inclusive."""
  assert tune_config.dimension('optim.warmup_steps', ('int', 0, 4, 2)).grid_values() == [0, 2, 4]
  assert tune_config.dimension('model.depth', ('int', 1, 3)).grid_values() == [1, 2, 3]
  assert tune_config.dimension('model.cell', ('categorical', ['gru', 'lstm'])).grid_values() == ['gru', 'lstm']


@pytest.mark.parametrize('key', ['model.dropout_rate', 'optim.momentum', 'optim.beta1', 'optim.beta2'])
def test_a_rate_of_one_is_refused(key):
  """Mutant ``rate-bound-closed``: a half-open range [0, 1) accepts 1 (a momentum or beta of 1 never
  forgets, a dropout rate of 1 drops everything)."""
  good = config_lib.apply_overrides(config_lib.default_config(), [(key, 0.0)])
  config_lib.validate(good)
  bad = config_lib.apply_overrides(config_lib.default_config(), [(key, 1.0)])
  with pytest.raises(config_lib.ConfigError, match=r'must be in \[0.0, 1.0\), got 1.0'):
    config_lib.validate(bad)


def test_mnist1d_shuffled_after_a_plain_run_is_the_shuffled_dataset(tmp_path):
  """Mutant ``mnist1d-shuffled-shares-cache``: the shuffled variant read the plain variant's cache file
  (an identity permutation passes the permutation test of tests/test_tasks_datasets.py)."""
  plain = tasks.make_task('mnist1d', num_samples=500, data_dir=str(tmp_path / 'both'))
  shuffled = tasks.make_task('mnist1d_shuffled', num_samples=500, data_dir=str(tmp_path / 'both'))
  alone = tasks.make_task('mnist1d_shuffled', num_samples=500, data_dir=str(tmp_path / 'alone'))
  x, xs = plain.eval_splits['test']['inputs'], shuffled.eval_splits['test']['inputs']
  assert not np.allclose(x, xs)
  np.testing.assert_array_equal(xs, alone.eval_splits['test']['inputs'])


def test_the_resume_hint_keeps_a_dollar_inside_single_quotes_literal():
  """Mutant ``shell-join-dollar-in-quotes``: an argument holding single quotes and a ``$`` is put in
  double quotes, where the shell expands the ``$``: the pasted command is not the one that ran."""
  args = ["--config.logging.group='$HOME run'", "--config.logging.tags=('it`s', 'a\"b')", "--x='y'"]
  line = shell_join(args)
  back = subprocess.run(['bash', '-c', 'printf "%s\\n" ' + line], capture_output=True, text=True, check=True)
  assert back.stdout.splitlines() == args


def test_a_lock_taken_on_a_file_its_owner_deleted_is_taken_again_on_the_file_at_the_path(tmp_path, monkeypatch):
  """Mutant ``lock-on-a-deleted-file``: a runner that locked the file its previous owner deleted on
  release (between this runner's open and its flock) believes it holds the run, beside the runner that
  locks the new file."""
  path = str(tmp_path / 'run' / '.lock')
  real, calls = locks.fcntl.flock, []

  def flock(fd, op):
    if not calls:  # the owner releases just now: its file goes, and another runner creates the next
      os.unlink(path)
      open(path, 'w').close()
    calls.append(fd)
    return real(fd, op)

  monkeypatch.setattr(locks.fcntl, 'flock', flock)
  lock = locks.RunLock(path)
  assert lock.acquire() and len(calls) == 2
  assert os.path.samestat(os.fstat(lock._fd), os.stat(path))
  lock.release()


def test_evaluate_reads_the_best_checkpoint_unless_told(tmp_path, monkeypatch, capsys):
  """Mutant ``evaluate-default-last``: ``python -m experiments.evaluate DIR`` reads the last checkpoint,
  not the documented best."""
  seen = []
  monkeypatch.setattr(
    evaluate_cli, 'evaluate', lambda paths, splits, checkpoint, options: seen.append(checkpoint) or ([], {})
  )
  assert evaluate_cli.main([str(tmp_path)]) == 0
  assert evaluate_cli.main([str(tmp_path), '--checkpoint', '7']) == 0
  assert seen == ['best', 7]
