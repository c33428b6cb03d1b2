"""``dr.tasks.register_task``: a workload of the researcher's own, from a config file, checked like the
built-in tasks; the example in its docstring (the README's) trains and reports as it stands."""

import functools
import inspect
import os
import textwrap

import pytest

import deeprnn_jax as dr
from deeprnn_jax.training import runlog
from deeprnn_jax import tasks
from experiments import run, sweep

TINY = [
  '--config.model.width=8',
  '--config.train.num_steps=4',
  '--config.train.batch_size=4',
  '--config.train.log_every_steps=2',
  '--config.train.eval_every_steps=2',
  '--config.train.checkpoint_every_steps=2',
  '--config.train.eval_batch_size=8',
  '--config.train.progress=off',
  '--config.logging.wandb_mode=disabled',
  '--config.sweep.seeds=(0,)',
  '--config.task.options.seq_len=5',
  '--config.task.options.num_eval=8',
]


# Tasks registered here (by config files too) do not outlive the test: conftest's restore_tasks.
pytestmark = pytest.mark.usefixtures('restore_tasks')


def docstring_example() -> str:
  """The config file of ``register_task``'s docstring, as a user would copy it."""
  doc = inspect.getdoc(tasks.register_task)
  start = doc.rindex('\n', 0, doc.index('# configs/my_task.py')) + 1
  return textwrap.dedent(doc[start : doc.index('Also usable as a decorator')])


def test_a_config_file_that_registers_its_own_task_trains_and_reports(tmp_path, capsys):
  config = tmp_path / 'my_task.py'
  config.write_text(docstring_example())
  workdir = tmp_path / 'runs'
  assert run.main(['--config', str(config), '--workdir', str(workdir), *TINY]) == 0, capsys.readouterr().err
  assert tasks.TASKS['noisy_sum'].__module__.startswith('deeprnn_config_')
  (run_id,) = [d for d in os.listdir(workdir) if os.path.isdir(workdir / d)]
  status = runlog.read_status(str(workdir / run_id))
  assert status['state'] == 'finished'
  metrics = runlog.read_metrics(str(workdir / run_id / runlog.METRICS_FILE))
  assert {'train', 'val', 'test'} <= {r['split'] for r in metrics}
  report = (workdir / 'report.md').read_text()
  assert 'noisy_sum' in report
  # Loading the config again (a rerun, a sweep worker) registers the same factory again, quietly.
  again = sweep.load_config(str(config), [o[len('--config.') :] for o in TINY])
  assert again.task.name == 'noisy_sum'
  # The registered options are checked before any compute, as for a built-in task.
  assert (
    run.main(['--config', str(config), '--workdir', str(tmp_path / 'bad'), *TINY, '--config.task.options.seq_length=5'])
    == 2
  )
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and '\n' not in err and 'seq_length' in err and 'seq_len' in err
  assert not os.path.exists(tmp_path / 'bad' / run_id)


def test_make_task_checks_the_options_of_a_registered_task():
  def toy(*, seq_len: int = 3, seed: int = 0):
    del seed
    return tasks.make_task('adding', seq_len=seq_len, num_eval=4, length_generalization=False)

  assert dr.tasks.register_task('toy', toy) is toy
  assert tasks.task_options('toy') == {'seq_len': 3, 'seed': 0}
  assert tasks.make_task('toy', seq_len=4).seq_len == 4
  with pytest.raises(ValueError, match=r"^unknown option 'T' for task 'toy'; valid options: seed, seq_len$"):
    tasks.make_task('toy', T=3)
  tasks.register_task('not_a_task', lambda *, n=1: [n])
  with pytest.raises(TypeError, match=r"^task 'not_a_task': its factory returned list, not a deeprnn_jax.tasks.Task$"):
    tasks.make_task('not_a_task')


def test_register_task_refuses_what_would_break_later():
  def good(*, n: int = 1):
    return n

  with pytest.raises(
    ValueError,
    match=r"^task 'copy' is built in; register yours under another name, or pass "
    r'replace=True to replace the built-in one$',
  ):
    tasks.register_task('copy', good)
  tasks.register_task('copy', good, replace=True)
  assert tasks.TASKS['copy'] is good
  for bad, problem in [
    (lambda n=1: n, "option 'n' of the factory must be keyword-only with a default"),
    (lambda *, n: n, "option 'n' of the factory must be keyword-only with a default"),
    (lambda **options: options, 'the factory takes **options; name every option instead'),
    (lambda *args: args, 'the factory takes *args; name every option instead'),
    ('copy', 'the factory must be a function returning a Task'),
  ]:
    with pytest.raises(TypeError) as e:
      tasks.register_task('mine', bad)
    assert str(e.value).startswith(f"task 'mine': {problem}") and '\n' not in str(e.value)
  for name in ('', '9lives', 'my task', None):
    with pytest.raises(ValueError, match='use letters, digits'):
      tasks.register_task(name, good)
  assert 'mine' not in tasks.TASKS

  # Another factory under a name already taken is a mistake; the same one again (a config file
  # loaded twice) is not.
  tasks.register_task('mine', good)
  tasks.register_task('mine', good)

  def other(*, n: int = 2):
    return n

  with pytest.raises(ValueError, match=r"^task 'mine' is already registered \(by .*good\); choose another name"):
    tasks.register_task('mine', other)
  tasks.register_task('mine', other, replace=True)
  tasks.register_task('partial', functools.partial(other, n=3))  # partials of keyword-only functions work

  @tasks.register_task('decorated')
  def decorated(*, n: int = 4):
    return n

  assert tasks.TASKS['decorated'] is decorated and decorated() == 4


def test_a_bad_registration_in_a_config_file_is_a_one_line_error(tmp_path, capsys):
  config = tmp_path / 'bad.py'
  config.write_text(
    textwrap.dedent("""
      from deeprnn_jax import tasks
      from deeprnn_jax.training.config import default_config

      tasks.register_task('copy', lambda *, n=1: None)

      def get_config():
        return default_config()
  """)
  )
  assert run.main(['--config', str(config), '--workdir', str(tmp_path / 'runs')]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith(f"error: config file '{config}' does not load: ValueError: task 'copy' is built in")
  assert '\n' not in err


def test_a_run_of_a_registered_task_loads_back_in_a_fresh_process(tmp_path, capsys):
  """A new process knows none of the tasks a config file registered: ``load_run`` runs the config
  file the sweep recorded in its sweep.json again, then rebuilds the task and evaluates the run."""
  import json  # noqa: PLC0415
  import subprocess  # noqa: PLC0415
  import sys  # noqa: PLC0415

  config = tmp_path / 'my_task.py'
  config.write_text(docstring_example())
  workdir = tmp_path / 'runs'
  assert run.main(['--config', str(config), '--workdir', str(workdir), *TINY, '--no-report']) == 0, (
    capsys.readouterr().err
  )
  (run_id,) = [d for d in os.listdir(workdir) if os.path.isdir(workdir / d)]
  assert json.loads((workdir / 'sweep.json').read_text())['config_file'] == str(config)
  recorded = [r for r in runlog.read_metrics(str(workdir / run_id / runlog.METRICS_FILE)) if r['split'] == 'test'][-1]
  script = (
    'import json, sys, deeprnn_jax as dr\n'
    'assert "noisy_sum" not in dr.tasks.TASKS\n'
    'print(json.dumps(dr.load_run(sys.argv[1], "last").evaluate(["test"])["test"]))\n'
  )
  out = subprocess.run(
    [sys.executable, '-c', script, str(workdir / run_id)],
    capture_output=True,
    text=True,
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    check=True,
  ).stdout
  assert json.loads(out.strip().splitlines()[-1]) == {k: v for k, v in recorded.items() if k not in ('step', 'split')}
