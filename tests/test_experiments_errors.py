"""Every mistake in the input: a one-line message that names the key (and the valid choices), exit
code 2, and nothing written. Each case is (command-line arguments or config text, expected text)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from deeprnn_jax.training import config as config_lib
from experiments import run as run_cli
from experiments import sweep

from runner_helpers import CONFIG_FILE, config_file_text, tiny_config, write_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (overrides, a fragment of the one-line message)
BAD_OVERRIDES = [
  (['--config.modle.depth=2'], "config key 'modle.depth': unknown key; did you mean 'model.depth'?"),
  (['--config.train.num_step=2'], "config key 'train.num_step': unknown key; did you mean 'train.num_steps'?"),
  (['--config.model.foo=2'], "config key 'model.foo': unknown key; valid keys in 'model': model.attention, "),
  (['--config.layers.depth=2'], "config key 'layers.depth': unknown key; valid groups: "),
  (
    ['--config.model.cell=lstmm'],
    "config key 'model.cell': unknown value 'lstmm'; did you mean 'lstm' or 'slstm' or 'mlstm'? valid: attention, ",
  ),
  (
    ['--config.task.name=adding2'],
    "config key 'task.name': unknown value 'adding2'; did you mean 'adding' or 'addition'? valid: adding, ",
  ),
  (['--config.model.depth=0'], "config key 'model.depth': must be >= 1, got 0"),
  (['--config.model.width=-8'], "config key 'model.width': must be >= 1, got -8"),
  (['--config.model.depth=2.5'], "config key 'model.depth': must be an int, got float 2.5"),
  (["--config.train.num_steps='many'"], "config key 'train.num_steps': must be an int, got str 'many'"),
  (['--config.train.batch_size=True'], "config key 'train.batch_size': must be an int, got bool True"),
  (['--config.optim.learning_rate=0'], "config key 'optim.learning_rate': must be in (0.0, inf], got 0.0"),
  (['--config.model.dropout_rate=1.5'], "config key 'model.dropout_rate': must be in [0.0, 1.0), got 1.5"),
  (
    ['--config.optim.name=adamm'],
    "config key 'optim.name': unknown value 'adamm'; did you mean 'adam'",
  ),
  (['--config.model.layer_norm=yes'], "config key 'model.layer_norm': must be True or False, got str 'yes'"),
  (
    ['--config.sweep.axes.model.depth=[]'],
    "config key 'sweep.axes.model.depth': a sweep axis needs at least one value",
  ),
  (['--config.sweep.axes.model.colour=[1]'], "config key 'sweep.axes.model.colour': is not a key a sweep can vary"),
  (["--config.sweep.axes.model.cell=['rnn','nope']"], "config key 'sweep.axes.model.cell': unknown value 'nope'"),
  (['--config.sweep.axes.train.seed=[1,2]'], 'is not a key a sweep can vary; list seeds in sweep.seeds'),
  (['--config.sweep.seeds=()'], "config key 'sweep.seeds': needs at least one seed"),
  (['--config.sweep.seeds=(0,0)'], "config key 'sweep.seeds': seeds must be distinct"),
  (
    ['--config.task.options.sequence_length=5'],
    "config key 'task.options.sequence_length': unknown option for task 'adding'; "
    'valid: length_generalization, num_eval, seed, seq_len',
  ),
  (
    ['--config.model.cell_kwargs.forget_bias=1.0'],
    "config key 'model.cell_kwargs.forget_bias': unknown option for cell",
  ),
  (
    ['--config.task.options.seq_len=1'],
    "config key 'task': 'adding' cannot be built: ValueError: adding needs seq_len >= 2, got 1",
  ),
  (
    ["--config.train.eval_splits=('val','dev')"],
    "config key 'train.eval_splits': unknown split 'dev' for task 'adding'; valid: val, test",
  ),
  (['--config.sweep.param_budget=50'], "config key 'sweep.param_budget': 50 parameters cannot be matched within 2%"),
  (
    ['--config.logging.wandb_mode=sometimes'],
    "config key 'logging.wandb_mode': unknown value 'sometimes'; valid: disabled, offline, online",
  ),
  (
    ['--config.sweep.seed_program=fast'],
    "config key 'sweep.seed_program': unknown value 'fast'; valid: auto, loop, separate, vmap",
  ),
  (
    ['--config.sweep.vmap_seeds=False'],
    "config key 'sweep.vmap_seeds': unknown key; renamed sweep.seed_program: 'auto' (default), 'vmap', "
    "'loop' or 'separate' (vmap_seeds=False is 'separate')",
  ),
  (['--config.model.depth'], "config key 'model.depth': an override must look like key=value"),
  (
    ['--config.model.execution=parallel', '--config.model.cell=lstm'],
    "config key 'model.execution': execution='parallel' needs a cell with a parallel form (",
  ),
  (
    ["--config.sweep.axes={'model.cell': ['gru'], 'model.colour': [1]}"],
    "config key 'sweep.axes.model.colour': is not a key a sweep can vary",
  ),
  # The head of pooling='flatten' is sized by the training length: longer test splits would fail at the last eval.
  (
    ['--config.model.pooling=flatten', '--config.task.options.length_generalization=True'],
    "config key 'model.pooling': 'flatten' reads exactly the 6 training steps, but split 'test_len2x' of task "
    "'adding' has 12: pool with 'last', 'mean', 'max' or 'attention', or drop those splits",
  ),
  (['model.depth=2'], "unrecognized argument 'model.depth=2'"),
  (['--model.depth=2'], "unrecognized arguments ['--model.depth=2']"),
  (["--config.model.width=__import__('os').getcwd()"], "config key 'model.width': must be an int, got str"),
]

BAD_FILES = [
  ('def get_config(:\n', 'does not load: SyntaxError'),
  ('import deeprnn_jax.nope\n', "does not load: ModuleNotFoundError: No module named 'deeprnn_jax.nope'"),
  ('x = 1\n', 'has no get_config() function'),
  ('def get_config():\n  raise RuntimeError("boom")\n', 'does not load: RuntimeError: boom'),
  ('def get_config():\n  return [1, 2]\n', 'get_config() in'),
  (CONFIG_FILE.replace('  return c', '  c.model.widht = 8\n  return c'), "config key 'model.widht': unknown key"),
]


def _run(argv, capsys):
  code = run_cli.main(argv)
  err = capsys.readouterr().err.strip()
  return code, err


@pytest.mark.parametrize('overrides,message', BAD_OVERRIDES, ids=[o[0] for o, _ in BAD_OVERRIDES])
def test_bad_override_is_one_line_exit_2_nothing_written(tmp_path, capsys, overrides, message):
  workdir = tmp_path / 'runs' / 'x'
  code, err = _run(['--config', write_config(tmp_path), '--workdir', str(workdir), *overrides], capsys)
  assert code == 2
  assert err.startswith('error: ') and '\n' not in err, err
  assert message in err, err
  assert not workdir.exists()


@pytest.mark.parametrize('text,message', BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_config_file_is_one_line_exit_2(tmp_path, capsys, text, message):
  workdir = tmp_path / 'runs' / 'x'
  code, err = _run(['--config', write_config(tmp_path, text), '--workdir', str(workdir)], capsys)
  assert (code, '\n' in err) == (2, False), err
  assert message in err, err
  assert not workdir.exists()


def test_missing_config_file(tmp_path, capsys):
  code, err = _run(['--config', str(tmp_path / 'nope.py'), '--workdir', str(tmp_path / 'w')], capsys)
  assert code == 2 and 'nope.py' in err and 'not found' in err


def _tree(path) -> dict[str, bytes]:
  """Every file under ``path`` with its content: to show that nothing was written or overwritten."""
  return {str(p): p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


def test_a_workdir_holding_another_sweep_is_refused_untouched(tmp_path, capsys):
  cfg = write_config(tmp_path)
  workdir = tmp_path / 'w'
  assert run_cli.main(['--config', cfg, '--workdir', str(workdir), '--dry-run']) == 0
  # a dry run writes nothing; a real sweep.json from a shorter sweep, with a run folder of it:
  config = sweep.load_config(cfg, ['optim.learning_rate=0.5'])
  points = sweep.expand(config)
  sweep.write_sweep_file(config, str(workdir), points)
  (workdir / points[0].run_id(0)).mkdir()
  (workdir / points[0].run_id(0) / 'status.json').write_text('{"state": "finished"}')
  before = _tree(workdir)
  code, err = _run(['--config', cfg, '--workdir', str(workdir)], capsys)
  assert code == 2 and 'holds a different sweep (differs in optim.learning_rate)' in err
  assert _tree(workdir) == before


def test_a_run_folder_holding_another_config_is_refused_untouched(tmp_path, capsys):
  """No sweep.json (e.g. it was deleted), but a run folder of another config: refused all the same."""
  workdir = tmp_path / 'w'
  (workdir / 'rnn-d1-w8-s0').mkdir(parents=True)
  (workdir / 'rnn-d1-w8-s0' / 'config.json').write_text(
    json.dumps(config_lib.to_dict(tiny_config(**{'optim.learning_rate': 0.5})))
  )
  before = _tree(workdir)
  code, err = _run(['--config', write_config(tmp_path), '--workdir', str(workdir)], capsys)
  assert code == 2 and "run folder 'rnn-d1-w8-s0'" in err and 'holds another run (differs in optim.learning_rate' in err
  assert '\n' not in err
  assert _tree(workdir) == before


def test_a_file_in_place_of_a_run_folder_is_refused_untouched(tmp_path, capsys):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  (workdir / 'gru-d2-w8-s1').write_text('notes')
  code, err = _run(['--config', write_config(tmp_path), '--workdir', str(workdir)], capsys)
  assert code == 2 and "should be the folder of run 'gru-d2-w8-s1' but is a file" in err and '\n' not in err
  assert _tree(workdir) == {str(workdir / 'gru-d2-w8-s1'): b'notes'}


def test_a_config_path_that_is_a_folder(tmp_path, capsys):
  code, err = _run(['--config', str(tmp_path), '--workdir', str(tmp_path / 'w')], capsys)
  assert code == 2 and 'not found' in err and not (tmp_path / 'w').exists()


@pytest.mark.parametrize(
  'point,message',
  [
    (['--model.cell=lstm', '--model.depth=1'], "config key 'model.cell': value 'lstm' is not on this sweep axis"),
    (['--model.cell=rnn'], "config key 'model.depth': no value given for this sweep axis"),
    (['--model.cell=rnn', '--model.depth=1', '--model.width=4'], "config key 'model.width': is not an axis"),
    (['--model.cell=rnn', '--model.depth=1', '--train.seed=7'], "config key 'train.seed': seed 7 is not in"),
  ],
)
def test_a_bad_wandb_agent_point_is_one_line_exit_2(tmp_path, capsys, point, message):
  workdir = tmp_path / 'w'
  code = sweep.main(['agent', '--config', write_config(tmp_path), '--workdir', str(workdir), *point])
  err = capsys.readouterr().err.strip()
  assert (code, '\n' in err) == (2, False) and message in err, err
  assert not workdir.exists()


def test_a_workdir_that_cannot_be_created_is_refused(tmp_path, capsys):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  code, err = _run(['--config', write_config(tmp_path), '--workdir', str(blocker / 'runs')], capsys)
  assert code == 2 and 'is not writable' in err and '\n' not in err


def test_a_cache_folder_that_cannot_be_made_does_not_hide_the_error(tmp_path, capsys, monkeypatch, caplog):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a folder')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(blocker / 'cache'))
  code, err = _run(
    ['--config', write_config(tmp_path), '--workdir', str(tmp_path / 'w'), '--config.task.options.seq_len=1'], capsys
  )  # an error found while building the grid
  assert code == 2 and err.startswith("error: config key 'task': 'adding' cannot be built") and '\n' not in err
  assert 'no compilation cache (' in caplog.text


def test_an_unwritable_workdir_is_refused(tmp_path, capsys):
  if os.geteuid() == 0:
    pytest.skip('root can write anywhere')
  locked = tmp_path / 'locked'
  locked.mkdir()
  locked.chmod(0o500)
  try:
    code, err = _run(['--config', write_config(tmp_path), '--workdir', str(locked / 'x')], capsys)
  finally:
    locked.chmod(0o700)
  assert code == 2 and 'is not writable' in err


def test_a_missing_dataset_is_a_one_line_error(tmp_path, capsys):
  text = config_file_text(**{'task.name': 'polyphonic', 'task.options': {'path': str(tmp_path / 'missing.pickle')}})
  code, err = _run(['--config', write_config(tmp_path, text), '--workdir', str(tmp_path / 'w')], capsys)
  assert code == 2 and "'polyphonic' cannot be built: FileNotFoundError" in err and '\n' not in err
  assert not (tmp_path / 'w').exists()


def test_the_real_command_line_exits_2(tmp_path):
  """The same through `python -m experiments.run`, as a user types it."""
  proc = subprocess.run(
    [
      sys.executable,
      '-m',
      'experiments.run',
      '--config',
      write_config(tmp_path),
      '--workdir',
      str(tmp_path / 'w'),
      '--config.model.cell=lstmm',
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
    "error: config key 'model.cell': unknown value 'lstmm'; did you mean 'lstm' or 'slstm' or 'mlstm'? "
    'valid: attention, deltanet, gated_deltanet, gru, '
    'indrnn, irnn, linear_attention, lru, lstm, mamba, mgu, mingru, minlstm, mlstm, mlstm_layer, rglru, rnn, s6, '
    'slstm, ugrnn'
  ]


def _dry_run(argv, capsys) -> list[str]:
  assert run_cli.main(['--dry-run', *argv]) == 0
  return [line.split()[0] for line in capsys.readouterr().out.splitlines()]


def test_the_axes_given_whole_as_a_dict_override(tmp_path, capsys):
  """``--config.sweep.axes={...}`` with dotted axis names replaces the axes (it was a traceback)."""
  argv = [
    '--config',
    write_config(tmp_path),
    '--workdir',
    str(tmp_path / 'w'),
    "--config.sweep.axes={'model.cell': ['gru'], 'model.depth': [1, 2]}",
  ]
  assert _dry_run(argv, capsys) == ['gru-d1-w8-s0', 'gru-d1-w8-s1', 'gru-d2-w8-s0', 'gru-d2-w8-s1']


def test_an_override_of_a_swept_key_narrows_its_axis(tmp_path, capsys):
  """The config sweeps depth over [1, 2]; ``--config.model.depth=2`` asks for depth 2: only it runs
  (it was silently ignored, and every depth listed)."""
  argv = ['--config', write_config(tmp_path), '--workdir', str(tmp_path / 'w'), '--config.model.depth=2']
  assert _dry_run(argv, capsys) == ['rnn-d2-w8-s0', 'rnn-d2-w8-s1', 'gru-d2-w8-s0', 'gru-d2-w8-s1']
  config = sweep.load_config(write_config(tmp_path), ['model.depth=2'])
  assert config_lib.flat_axes(config)['model.depth'] == [2]


def test_a_finished_sweep_that_cannot_be_extended_says_why(tmp_path, capsys):
  """A cosine schedule depends on the number of steps: more steps would be another run."""
  cfg = write_config(
    tmp_path,
    config_file_text(axes={'model.cell': ['rnn']}, seeds=(0,), **{'optim.schedule': 'cosine', 'train.num_steps': 4}),
  )
  workdir = str(tmp_path / 'w')
  assert run_cli.main(['--config', cfg, '--workdir', workdir, '--no-report']) == 0
  capsys.readouterr()
  before = _tree(tmp_path / 'w')
  for extra in ([], ['--dry-run']):  # the dry run refuses what the run refuses
    code, err = _run(['--config', cfg, '--workdir', workdir, '--config.train.num_steps=8', *extra], capsys)
    assert code == 2 and '\n' not in err, err
    assert "train.num_steps 4 -> 8 cannot extend these runs: the 'cosine' schedule depends on train.num_steps" in err
  assert _tree(tmp_path / 'w') == before


def test_the_resume_hint_is_a_command_a_person_can_read_and_paste():
  """An override with single quotes (a sweep's axes) is double-quoted, not shlex's '"'"' chains, and the
  shell reads the line back as the same arguments."""
  import subprocess

  from experiments.cli import shell_join

  args = ['--config', 'c.py', "--config.sweep.axes={'model.cell': ['gru', 'lstm']}", 'a b', 'x$y', 'it"s']
  line = shell_join(args)
  assert "'\"'\"'" not in line and "\"--config.sweep.axes={'model.cell': ['gru', 'lstm']}\"" in line
  back = subprocess.run(['bash', '-c', 'printf "%s\\n" ' + line], capture_output=True, text=True, check=True)
  assert back.stdout.splitlines() == args
