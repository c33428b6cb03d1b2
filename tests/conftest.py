"""Shared test setup: strict rank promotion, float32 everywhere, small CPU-only runs."""

import os
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('WANDB_MODE', 'disabled')

import jax  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')


import pytest  # noqa: E402

# Tiny test programs spend far longer in XLA's LLVM backend than running: its lowest optimization
# level compiles them about twice as fast (the HLO is the same, only machine-code tuning is skipped).
# Set before the first compile, so it applies to the backend this process creates.
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_backend_optimization_level=0').strip()


@pytest.fixture(scope='session', autouse=True)
def _jax_compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the whole test session, shared by xdist workers and by the
  subprocesses tests start (through $JAX_COMPILATION_CACHE_DIR), so a program compiled by one test is
  not compiled again by the next; it also keeps sweeps from writing a cache into the home folder."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent
  path = str(root / 'jax_cache')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = path
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)


@pytest.fixture(scope='session', autouse=True)
def _temporary_files_inside_pytest_basetemp(tmp_path_factory):
  """TFDS leaves an empty ``mkdtemp`` folder behind for every builder it makes of a dataset that is
  not prepared (all the mock-data tests); make them in pytest's temp tree, which pytest prunes,
  rather than in /tmp."""
  previous = tempfile.tempdir
  tempfile.tempdir = str(tmp_path_factory.mktemp('tempfile'))
  yield
  tempfile.tempdir = previous


@pytest.fixture
def restore_tasks():
  """Tasks a test registers (``register_task``, or a config file that does) do not outlive it: other
  tests list ``TASKS``."""
  from deeprnn_jax import tasks  # pylint: disable=g-import-not-at-top

  before = dict(tasks.TASKS)
  yield
  tasks.TASKS.clear()
  tasks.TASKS.update(before)
