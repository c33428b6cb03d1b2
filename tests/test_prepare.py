"""``python -m experiments.prepare``, end to end without network or TensorFlow: a TFDS builder of the
tests' own (``tfds_toy_builders.py``) is prepared from local files, then a run trains on it through
``tfds_source`` with TensorFlow never imported; and each way preparing fails is one line."""

import json
import os
import subprocess
import sys

import pytest
import requests

import tfds_toy_builders  # noqa: F401  (registers the builders in this process)
from deeprnn_jax.training import runlog
from deeprnn_jax.tasks import tfds_source
from experiments import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, 'tests')

TRAIN = 'good film\t1\nbad film\t0\ngood good\t1\ntrès bad\t0\nfine plot\t1\nawful plot\t0\ngood fun\t1\ndull\t0\n'
TEST = 'good plot\t1\nbad plot\t0\n'

# An importable `tensorflow` that records who imported it and then fails as if it were not installed:
# with the real one installed (the `prepare` extra) an import would succeed silently.
TRAP = """
import os, traceback
with open(os.environ['DEEPRNN_TF_TRAP'], 'a') as f:
  f.write(''.join(traceback.format_stack()))
raise ImportError('tensorflow imported')
"""

# A config file, as a researcher writes one, whose task reads the prepared dataset through tfds_source.
CONFIG = """
from deeprnn_jax import tasks
from deeprnn_jax.training.config import default_config
from deeprnn_jax.tasks import tfds_source, tfds_text

DATA_DIR = {data_dir!r}


def local_reviews(*, max_len: int = 4, seed: int = 0) -> tasks.Task:
  del seed
  train, test = (tfds_source.load_split('deeprnn_local_reviews', s, DATA_DIR) for s in ('train', 'test'))
  texts = lambda split: [tfds_source.text_of(ex['text']) for ex in split]
  labels = lambda split: [int(ex['label']) for ex in split]
  return tfds_text.text_classification_task(
      name='local_reviews', train_texts=texts(train), train_labels=labels(train), test_texts=texts(test),
      test_labels=labels(test), num_classes=2, vocab_size=50, max_len=max_len, num_val=2, buckets=None,
      threshold=None)


tasks.register_task('local_reviews', local_reviews)


def get_config():
  c = default_config()
  c.task.name = 'local_reviews'
  c.model.width = 8
  c.model.embed_features = 8
  c.train.num_steps = 2
  c.train.batch_size = 4
  c.train.log_every_steps = 1
  c.train.eval_every_steps = 2
  c.train.checkpoint_every_steps = 2
  c.train.eval_batch_size = 8
  c.train.progress = 'off'
  c.logging.wandb_mode = 'disabled'
  c.sweep.seeds = (0,)
  return c
"""

TRAIN_AND_CHECK = """
import json, sys
from experiments import run
code = run.main(['--config', sys.argv[1], '--workdir', sys.argv[2], '--no-report'])
print(json.dumps({'code': code, 'tensorflow': 'tensorflow' in sys.modules}))
"""


@pytest.fixture()
def local_files(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'train.tsv').write_text(TRAIN, encoding='utf-8')
  (manual / 'test.tsv').write_text(TEST, encoding='utf-8')
  return manual


def _env(tmp_path):
  trap = tmp_path / 'trap'
  (trap / 'tensorflow').mkdir(parents=True)
  (trap / 'tensorflow' / '__init__.py').write_text(TRAP)
  env = dict(
    os.environ,
    PYTHONPATH=os.pathsep.join([str(trap), TESTS, ROOT]),
    DEEPRNN_TF_TRAP=str(tmp_path / 'tensorflow_imported.txt'),
    JAX_PLATFORMS='cpu',
  )
  return env


def test_prepare_command_end_to_end_then_training_never_imports_tensorflow(tmp_path, local_files):
  env = _env(tmp_path)
  data_dir = tmp_path / 'tfds'
  # Before: the task's error names the command that prepares it.
  with pytest.raises(
    tfds_source.DatasetNotPreparedError,
    match=f'`python -m experiments.prepare deeprnn_local_reviews --data-dir {data_dir}`',
  ):
    tfds_source.load_split('deeprnn_local_reviews', 'train', str(data_dir))
  command = [
    sys.executable,
    '-m',
    'experiments.prepare',
    'deeprnn_local_reviews',
    '--data-dir',
    str(data_dir),
    '--manual-dir',
    str(local_files),
    '--import',
    'tfds_toy_builders',
  ]
  done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  where = data_dir / 'deeprnn_local_reviews' / '1.0.0'
  assert f'deeprnn_local_reviews: ready in {where} (train 8, test 2 examples)' in done.stdout
  assert 'Generating splits' in done.stderr  # TFDS's progress bars
  info = json.loads((where / 'dataset_info.json').read_text())
  assert info['fileFormat'] == 'array_record'
  again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0 and f'deeprnn_local_reviews: already prepared in {where}' in again.stdout

  # A run trains on it, reading through tfds_source, in a process that never imports TensorFlow (the
  # builder's module is not imported either: the prepared files describe themselves).
  config = tmp_path / 'local_reviews.py'
  config.write_text(CONFIG.format(data_dir=str(data_dir)))
  workdir = tmp_path / 'runs'
  trained = subprocess.run(
    [sys.executable, '-c', TRAIN_AND_CHECK, str(config), str(workdir)],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert json.loads(trained.stdout.strip().splitlines()[-1]) == {'code': 0, 'tensorflow': False}
  assert not os.path.exists(env['DEEPRNN_TF_TRAP']), open(env['DEEPRNN_TF_TRAP']).read()
  (run_id,) = [d for d in os.listdir(workdir) if os.path.isdir(workdir / d)]
  assert runlog.read_status(str(workdir / run_id))['state'] == 'finished'
  test = [r for r in runlog.read_metrics(str(workdir / run_id / runlog.METRICS_FILE)) if r['split'] == 'test']
  # the test split holds 2 reviews: an accuracy over exactly those two (not over a padded eval batch)
  assert test and test[-1]['accuracy'] in (0.0, 0.5, 1.0), test


def test_prepare_function_reuses_a_prepared_dataset_and_regenerates_a_tfrecord_one(tmp_path, local_files, capsys):
  data_dir = str(tmp_path / 'tfds')
  first = prepare.prepare('deeprnn_local_reviews', data_dir=data_dir, manual_dir=str(local_files))
  assert first.splits == {'train': 8, 'test': 2} and not first.reused
  assert prepare.prepare('deeprnn_local_reviews', data_dir=data_dir, manual_dir=str(local_files)).reused
  texts = sorted(
    tfds_source.text_of(ex['text']) for ex in tfds_source.load_split('deeprnn_local_reviews', 'test', data_dir)
  )
  assert texts == ['bad plot', 'good plot']
  # A dataset prepared before as tfrecord (by `tfds build`) is not readable without TensorFlow.
  info_file = os.path.join(first.path, 'dataset_info.json')
  info = json.loads(open(info_file).read())
  with open(info_file, 'w') as f:
    json.dump({**info, 'fileFormat': 'tfrecord'}, f)
  argv = ['deeprnn_local_reviews', '--data-dir', data_dir, '--manual-dir', str(local_files), '--no-progress']
  capsys.readouterr()
  assert prepare.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err == (
    f"error: 'deeprnn_local_reviews' is prepared in {first.path} as tfrecord, which the tasks "
    f'cannot read without TensorFlow; run again with --force to regenerate it as array_record '
    f'(downloads are reused)'
  )
  assert prepare.main(argv + ['--force']) == 0
  assert 'deeprnn_local_reviews: ready in' in capsys.readouterr().out
  assert json.loads(open(info_file).read())['fileFormat'] == 'array_record'


def _error(capsys, argv):
  assert prepare.main(argv + ['--no-progress']) == 2
  captured = capsys.readouterr()
  lines = [line for line in captured.err.splitlines() if line.startswith('error: ')]
  assert len(lines) == 1, captured.err
  return lines[0]


def test_prepare_errors_are_one_line_with_exit_code_2(tmp_path, capsys, monkeypatch):
  data_dir = str(tmp_path / 'tfds')
  err = _error(capsys, ['imdb_reveiws', '--data-dir', data_dir])
  assert err.startswith("error: unknown TFDS dataset 'imdb_reveiws'; did you mean imdb_reviews?")
  # Names are checked before anything is downloaded.
  err = _error(capsys, ['deeprnn_local_reviews', 'glue/sst9', '--data-dir', data_dir])
  assert err.startswith("error: TFDS dataset 'glue/sst9' cannot be built") and 'sst2' in err
  assert not os.path.exists(os.path.join(data_dir, 'deeprnn_local_reviews'))
  err = _error(capsys, ['deeprnn_local_reviews', '--data-dir', data_dir])  # no --manual-dir
  assert err.startswith("error: 'deeprnn_local_reviews' must be downloaded by hand (Write train.tsv")
  assert '--manual-dir DIR' in err
  err = _error(capsys, ['deeprnn_needs_tensorflow', '--data-dir', data_dir])
  assert err.startswith(
    "error: preparing 'deeprnn_needs_tensorflow' needs the Python module 'tensorflow', "
    "which is not installed; install the prepare extra with `pip install -e '.[prepare]'` "
    '(or run `make data DATASETS=deeprnn_needs_tensorflow`), then run this again'
  )
  err = _error(capsys, ['deeprnn_needs_module', '--data-dir', data_dir])
  assert err.startswith(
    "error: preparing 'deeprnn_needs_module' needs the Python module "
    "'deeprnn_module_not_installed', which is not installed; install it (pip install "
    'deeprnn_module_not_installed;'
  )
  err = _error(capsys, ['mnist', '--import', 'deeprnn_no_such_module'])
  assert err.startswith('error: --import deeprnn_no_such_module: the module cannot be imported')

  # Offline: what requests raises when no name resolves. TFDS's retries are cut to a few.
  def offline(self, request, **kwargs):
    del self, kwargs
    raise requests.exceptions.ConnectionError(
      "HTTPSConnectionPool(host='example.org', port=443): Max retries exceeded (Caused by "
      'NameResolutionError("<urllib3.connection.HTTPSConnection>: Failed to resolve \'example.org\'"))',
      request=request,
    )

  monkeypatch.setattr(requests.adapters.HTTPAdapter, 'send', offline)
  err = _error(capsys, ['deeprnn_remote_reviews', '--data-dir', data_dir])
  assert err.startswith(
    "error: cannot download 'deeprnn_remote_reviews': https://example.org/deeprnn/"
    "reviews.txt: Failed to resolve 'example.org'; this needs a network connection once"
  )
  assert 'or prepare it on a machine that has one and copy' in err


def test_make_data_installs_the_prepare_extra_and_runs_this_command():
  dry = subprocess.run(
    ['make', '-n', 'data', 'DATASETS=imdb_reviews glue/sst2', 'DATA_DIR=/data/tfds'],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert dry.returncode == 0, dry.stderr
  assert "pip install --quiet -e '.[prepare]'" in dry.stdout
  assert '-m experiments.prepare imdb_reviews glue/sst2 --data-dir /data/tfds' in dry.stdout
  import tomllib  # pylint: disable=g-import-not-at-top

  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    extra = tomllib.load(f)['project']['optional-dependencies']['prepare']
  assert any(r.startswith('tensorflow-cpu') for r in extra) and any('importlib_resources' in r for r in extra)


def test_prepare_help_describes_the_command(capsys):
  assert prepare.main(['--help']) == 0
  out = capsys.readouterr().out
  assert '--data-dir' in out and '--manual-dir' in out and '--force' in out
