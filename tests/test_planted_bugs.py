"""Each test here closes a hole found by a planted bug in scripts/mutants.py: a realistic bug (the
mutant named in the test's docstring) that the rest of the suite let through. Tiny shapes, fast, and
checked against an independent reference where there is one."""

import csv
import io
import os
import signal
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax import inits
from deeprnn_jax import tasks
from deeprnn_jax.tasks import pipeline
from deeprnn_jax.tasks import tfds_image
from deeprnn_jax.tasks import tfds_source
from deeprnn_jax.training import build
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import identity
from deeprnn_jax.training import progress
from deeprnn_jax.training import runlog
from deeprnn_jax.training import tune_config
from experiments import evaluate as evaluate_cli
from experiments import locks
from experiments import optuna_studies as studies
from experiments import publish
from experiments import run as run_cli
from experiments import study as study_cli
from experiments import tune as tune_cli
from experiments.cli import shell_join
from experiments.report import markdown
from experiments.report import plots
from experiments.report import runs as report_runs
from experiments.report import tuning

from runner_helpers import tiny_config


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


def test_sequential_mnist_reads_its_test_images_from_the_test_split(monkeypatch):
  """Mutant ``smnist-test-from-train``: the test images read from TFDS's train split (the mock data of
  tests/test_tasks_tfds.py gives both splits the same shapes, so only their contents tell them apart)."""
  rng = np.random.default_rng(0)
  images = {
    'train': rng.integers(0, 256, (6, 28, 28, 1), np.uint8),
    'test': rng.integers(0, 256, (3, 28, 28, 1), np.uint8),
  }
  labels = {'train': [0, 1, 2, 3, 4, 5], 'test': [7, 8, 9]}

  def load_split(name, split, data_dir=None, **kwargs):
    assert name == 'mnist'
    return [{'image': image, 'label': label} for image, label in zip(images[split], labels[split])]

  monkeypatch.setattr(tfds_source, 'load_split', load_split)
  test = tfds_image.smnist(num_val=2).eval_splits['test']
  np.testing.assert_array_equal(test['targets'], labels['test'])
  np.testing.assert_allclose(test['inputs'][..., 0] * 255, images['test'].reshape(3, 784), atol=1e-3)


def test_publish_resumes_each_wandb_run_with_its_job_type_and_tags(tmp_path, monkeypatch):
  """Mutant ``publish-resume-drops-tags``: the report's resume of a run's wandb run without its tags
  (offline, that resume is a folder of its own, which ``wandb sync`` uploads last)."""
  opened = []

  class Run:
    error = None

    def __init__(self, mode, **kwargs):
      opened.append(dict(kwargs, mode=mode))

    def summary(self, values):
      opened[-1]['summary'] = values

    def log_files(self, *args, **kwargs):
      pass

    def finish(self):
      pass

  monkeypatch.setattr(publish.runlog, 'WandbRun', Run)
  run = tmp_path / 'gru-d1-w8-s0'
  run.mkdir()
  status = {'state': 'finished', 'wandb_mode': 'offline', 'wandb_id': 'abc', 'wandb_job_type': 'gru-d1-w8'}
  runlog.write_json(str(run / runlog.STATUS_FILE), dict(status, wandb_tags=['adding', 'gru']))
  runlog.write_json(str(run / runlog.CONFIG_FILE), {'logging': {'group': 'g'}})
  (tmp_path / 'summary.csv').write_text('run_id,final_val_loss,params\ngru-d1-w8-s0,0.5,97\n')
  assert publish.publish(str(tmp_path), report_files=[str(tmp_path / 'summary.csv')]) == []
  resumed, report = opened
  assert (resumed['run_id'], resumed['job_type'], list(resumed['tags'])) == ('abc', 'gru-d1-w8', ['adding', 'gru'])
  assert resumed['group'] == 'g' and resumed['summary'] == {'report/final_val_loss': 0.5}
  assert report['job_type'] == 'report' and report['group'] == 'g'


def test_after_its_workers_a_run_another_runner_holds_is_held_not_unfinished(tmp_path):
  """Mutant ``run-held-counts-unfinished``: after its workers exit, the parent counts a run another live
  runner holds (its lock taken) as unfinished, and says to run the command again while that runner trains it."""
  point = types.SimpleNamespace(
    seeds=(0, 1, 2, 3),
    run_id=lambda s: f'v-s{s}',
    config=types.SimpleNamespace(train=types.SimpleNamespace(num_steps=4)),
  )
  states = {0: ('finished', 4), 1: ('running', 2), 2: ('running', 2), 3: ('failed', 1)}
  for seed, (state, step) in states.items():
    os.makedirs(tmp_path / f'v-s{seed}')
    runlog.write_json(
      str(tmp_path / f'v-s{seed}' / runlog.STATUS_FILE), {'state': state, 'step': step, 'error': 'boom'}
    )
  held = locks.RunLock(runlog.RunFolder(str(tmp_path / 'v-s1')).lock)
  assert held.acquire()
  try:
    result, unfinished = run_cli._from_status([point], str(tmp_path))
  finally:
    held.release()
  assert result.locked == ['v-s1'] and unfinished == ['v-s2'] and result.failed == {'v-s3': 'boom'}
  assert result.states == {'v-s0': 'finished', 'v-s2': 'unfinished', 'v-s3': 'failed'}


def _tuning_plan(tmp_path, seeds, **tune):
  c = tiny_config(**{'sweep.seeds': seeds, 'train.num_steps': 4})
  c.tune.space = config_lib.tune_space({'optim.learning_rate': ('log_uniform', 1e-4, 1e-1)})
  for key, value in dict(tune, storage=f'sqlite:///{tmp_path}/studies.db').items():
    setattr(c.tune, key, value)
  return tune_cli.make_plan(config_lib.validate(c), str(tmp_path / 'w'))


def _tune_with(plan, trainer) -> list:
  """Tunes ``plan`` with ``trainer`` standing in for training (``Context.trainer``); its trials in order."""
  ctx = studies.Context(lambda: False, lambda name, step: None, echo=lambda line: None, trainer=trainer)
  storage = studies.open_storage(plan)
  tune_cli.tune_variants(plan, storage, ctx)
  (point,) = plan.points
  return sorted(studies.open_study(plan, storage, point).get_trials(), key=lambda t: t.number)


@pytest.mark.parametrize('sampler', ['tpe', 'random'])
def test_each_trial_of_a_seeded_study_draws_its_own_values(tmp_path, sampler):
  """Mutant ``tune-sampler-seed-per-study``: the sampler's seed leaves out the trials asked, so every trial
  draws the same values (the seeded-sampler test of tests/test_tune.py compares two such runs: equal)."""
  trials = _tune_with(_tuning_plan(tmp_path, (0,), sampler=sampler, trials=4), lambda run: 1.0)
  assert len({t.params['optim.learning_rate'] for t in trials}) == 4


def test_trials_train_with_a_seed_no_final_run_uses(tmp_path):
  """Mutant ``trial-seed-is-a-final-seed``: trials train with the largest final seed, so the setting chosen
  for its luck on that seed carries the same luck into one of the final runs."""
  seeds = []
  _tune_with(_tuning_plan(tmp_path, (0, 3, 1), trials=2), lambda run: seeds.append(run.config.train.seed) or 1.0)
  assert seeds == [4, 4]


def test_a_worker_whose_parent_is_already_gone_kills_itself(tmp_path):
  """Mutant ``worker-outlives-its-parent``: a worker whose parent died before it asked the kernel to kill it
  with its parent (a launcher killed while starting its workers) goes on and trains alone."""
  dead = subprocess.Popen(['true'])  # its pid is not the worker's parent (nor anyone's, once waited for)
  dead.wait()
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  argv = ['--worker', '1/1', '--parent', str(dead.pid), '--', '--config', str(tmp_path / 'c.py'), '--workdir', 'w']
  proc = subprocess.run([sys.executable, '-m', 'experiments.worker', *argv], cwd=repo, capture_output=True, timeout=120)
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_the_speed_note_says_when_some_runs_do_not_record_their_workers():
  """Mutant ``speed-unknown-workers``: runs that record one worker count beside runs that record none are
  said to have trained under that count alone (one grid point at a time)."""

  def runs(*workers):
    return [
      report_runs.Run(run_id=f'r{i}', config={}, status={} if w is None else {'workers': w}, records=[])
      for i, w in enumerate(workers)
    ]

  alone = markdown.speed_conditions(runs(1, None, None))
  assert 'one grid point trained at a time' not in alone
  assert 'trained with 1 worker processes at once (2 runs do not say)' in alone and 'with care' in alone
  shared = markdown.speed_conditions(runs(2, None))
  assert '2 grid points trained at once' not in shared and '(1 run does not say)' in shared


def test_the_mean_curve_holds_each_seeds_value_at_or_before_each_step():
  """Mutant ``curve-reads-previous-eval``: each seed's value at a step taken from its evaluation before
  that step (the learning curves drawn one evaluation late)."""

  def run(state, curve):
    records = [{'step': s, 'split': 'val', 'loss': v} for s, v in curve]
    return report_runs.Run(run_id='r', config={}, status={'state': state}, records=records)

  seeds = [
    run('finished', [(10, 3.0), (20, 2.0), (30, 1.0)]),
    run('finished', [(10, 5.0), (20, 4.0)]),  # stopped early at step 20: holds 4.0 at step 30
    run('diverged', [(10, 9.0), (20, float('nan'))]),  # left out
  ]
  steps, mean, half = plots._mean_curve(seeds, 'val', 'loss')
  np.testing.assert_array_equal(steps, [10, 20, 30])
  np.testing.assert_allclose(mean, [4.0, 3.0, 2.5])
  assert np.all(np.isfinite(half))


def test_verdict_flips_list_verdicts_tested_at_only_one_setting(tmp_path):
  """Mutant ``verdict-flips-common-only``: the verdicts whose outcome differs between the fixed and the tuned
  settings leave out those only one of them could test (a comparison that became testable after tuning)."""
  outcomes = {
    'fixed': {'a': 'depth helps', 'b': 'not distinguishable', 'c': 'depth hurts'},
    'final': {'a': 'depth helps', 'b': 'depth helps', 'd': 'depth helps'},
  }
  for folder, rows in outcomes.items():
    os.makedirs(tmp_path / folder)
    with open(tmp_path / folder / report_runs.VERDICTS_FILE, 'w', newline='') as f:
      writer = csv.DictWriter(f, ['verdict', 'outcome'])
      writer.writeheader()
      writer.writerows({'verdict': k, 'outcome': v} for k, v in rows.items())
  assert tuning.verdict_flips(str(tmp_path / 'final')) == [
    ('b', 'not distinguishable', 'depth helps'),
    ('c', 'depth hurts', 'not tested'),
    ('d', 'not tested', 'depth helps'),
  ]


def test_study_json_keeps_the_parts_of_earlier_commands_whose_folders_exist(tmp_path, monkeypatch):
  """Mutant ``study-json-parts-from-cwd``: an earlier command's part is kept only if its folder exists
  relative to the current directory, not to the study folder (a study run one part per command lists
  only its last part, and the report covers only it)."""
  monkeypatch.chdir(tmp_path)
  workdir = str(tmp_path / 'study')
  spec = {'name': 'tiny', 'shallow_depth': 1}
  part = lambda task, basis: study_cli.Part(task, basis, None, 'loss' if basis == 'width' else None)
  for name in ('count-params', 'count-width', 'recall-params'):
    os.makedirs(os.path.join(workdir, name))
  study_cli.write_study_file(workdir, spec, [part('count', 'params'), part('recall', 'params')])
  os.rmdir(os.path.join(workdir, 'recall-params'))  # an earlier part whose folder is gone is dropped
  path = study_cli.write_study_file(workdir, spec, [part('count', 'width')])
  assert runlog.read_json(path) == {
    'name': 'tiny',
    'shallow_depth': 1,
    'parts': [
      {'task': 'count', 'basis': 'params', 'path': 'count-params'},
      {'task': 'count', 'basis': 'width', 'path': 'count-width', 'metric': 'loss'},
    ],
  }
