"""``dr.register_cell``: a researcher's own cell class, named like a built-in one everywhere a cell name is
read (``DeepRNN``, the config's choices and ``cell_kwargs``, ``has_parallel_form``, the runner), checked
against its equations in NumPy; and the registrations it refuses."""

import inspect
import json
import os
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as dr
from deeprnn_jax import cells
from deeprnn_jax.cells import Cell, MinGRUCell
from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training import runlog
from experiments import run

from runner_helpers import config_file_text, write_config


class LeakyElmanCell(Cell):
  r"""A leaky Elman cell: :math:`h_t = (1 - a) h_{t-1} + a \tanh(W x_t + U h_{t-1} + b)`, :math:`y_t = h_t`.

  Parameters: ``input_proj`` (W, b), ``recurrent`` (U). Carry: ``h`` ``[batch, H]``.
  """

  leak: float = 0.5

  def setup(self):
    super().setup()
    self.recurrent = self.recurrent_dense(1)

  def recur(self, h, xp):
    h = (1.0 - self.leak) * h + self.leak * jnp.tanh(xp + self.recurrent(h))
    return h, h


class MyMinGRUCell(MinGRUCell):
  """A cell with a parallel form (it inherits minGRU's associative scan)."""


@pytest.fixture(autouse=True)
def _unregister():
  """Cells registered here do not outlive the test (other tests list CELLS)."""
  yield
  for name in [n for n, cls in cells.CELLS.items() if cls is not cells.registry.BUILTIN_CELLS.get(n)]:
    cells.unregister_cell(name)
  assert cells.CELLS == dict(cells.registry.BUILTIN_CELLS)


def np_leaky(params, x, leak):
  """The cell's equations in float64 NumPy, step by step: ``x`` ``[batch, time, in]`` -> ``[batch, time, H]``."""
  w, b = (np.asarray(params['input_proj'][k], np.float64) for k in ('kernel', 'bias'))
  u = np.asarray(params['recurrent']['kernel'], np.float64)
  h, out = np.zeros((x.shape[0], u.shape[0])), []
  for t in range(x.shape[1]):
    h = (1 - leak) * h + leak * np.tanh(x[:, t] @ w + b + h @ u)
    out.append(h)
  return np.stack(out, axis=1)


def test_a_registered_cell_steps_as_its_numpy_equations_and_runs_in_the_stack():
  assert dr.register_cell('leaky', LeakyElmanCell) is LeakyElmanCell
  assert dr.CELLS['leaky'] is dr.resolve_cell('leaky') is LeakyElmanCell
  x = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
  cell = dr.CELLS['leaky'](features=6, leak=0.3)
  carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
  params = cell.init(jax.random.key(1), carry, x[:, 0])['params']
  ys = []
  for t in range(x.shape[1]):
    carry, y = cell.apply({'params': params}, carry, x[:, t])
    ys.append(y)
  want = np_leaky(params, x.astype(np.float64), 0.3)
  np.testing.assert_allclose(np.stack(ys, axis=1), want, rtol=1e-5, atol=1e-6)

  # By name in the stack, two layers deep, on both of its paths: per step and the projection hoisted.
  lengths = jnp.full((3,), 5)
  for execution in ('time', 'layer'):
    model = dr.DeepRNN(cell='leaky', features=6, num_layers=2, execution=execution, cell_kwargs={'leak': 0.3})
    variables = model.init(jax.random.key(2), x, lengths)
    layers = [variables['params'][f'layer_{l}']['cell'] for l in range(2)]
    want = np_leaky(layers[1], np_leaky(layers[0], x.astype(np.float64), 0.3), 0.3)
    np.testing.assert_allclose(model.apply(variables, x, seq_lengths=lengths)[1], want, rtol=1e-5, atol=1e-6)


def test_the_config_and_the_parallel_queries_read_the_live_registry():
  def config(**model):
    c = config_lib.default_config()
    for k, v in model.items():
      setattr(c.model, k, v)
    return c

  with pytest.raises(config_lib.ConfigError, match=r"^config key 'model.cell': unknown value 'leaky'"):
    config_lib.validate(config(cell='leaky'))
  dr.register_cell('leaky', LeakyElmanCell)
  assert config_lib.validate(config(cell='leaky', cell_kwargs={'leak': 0.3})).model.cell == 'leaky'
  assert config_lib.validate(config(cell='gru', decoder_cell='leaky')).model.decoder_cell == 'leaky'
  with pytest.raises(
    config_lib.ConfigError,
    match=r"^config key 'model.cell_kwargs.leek': unknown option for cell 'leaky'; valid: .*leak",
  ):
    config_lib.validate(config(cell='leaky', cell_kwargs={'leek': 0.3}))
  assert not dr.cells.has_parallel_form('leaky') and 'leaky' not in dr.cells.parallel_cells()
  with pytest.raises(config_lib.ConfigError, match=r"^config key 'model.execution': execution='parallel' needs a cell"):
    config_lib.validate(config(cell='leaky', execution='parallel'))

  dr.register_cell('my_mingru', MyMinGRUCell)
  assert dr.cells.has_parallel_form('my_mingru') and 'my_mingru' in dr.cells.parallel_cells()
  assert config_lib.validate(config(cell='my_mingru', execution='parallel')).model.execution == 'parallel'

  dr.unregister_cell('leaky')
  with pytest.raises(config_lib.ConfigError, match=r"unknown value 'leaky'"):
    config_lib.validate(config(cell='leaky'))
  with pytest.raises(ValueError, match=r"^unknown cell 'leaky'; .*register yours with register_cell"):
    dr.DeepRNN(cell='leaky', features=4)


def test_a_registered_cell_trains_through_the_runner_named_by_an_override(tmp_path, capsys):
  dr.register_cell('leaky', LeakyElmanCell)
  path = write_config(tmp_path, config_file_text(axes={'model.cell': ['rnn']}, seeds=(0,)))
  workdir = tmp_path / 'runs'
  argv = [
    '--config',
    path,
    '--workdir',
    str(workdir),
    '--config.model.cell=leaky',
    '--config.model.cell_kwargs.leak=0.3',
  ]
  assert run.main(argv) == 0, capsys.readouterr().err
  (run_id,) = [d for d in os.listdir(workdir) if os.path.isdir(workdir / d)]
  assert run_id.startswith('leaky-d1-')
  assert runlog.read_status(str(workdir / run_id))['state'] == 'finished'
  saved = json.loads((workdir / run_id / runlog.CONFIG_FILE).read_text())
  assert saved['model']['cell'] == 'leaky' and saved['model']['cell_kwargs'] == {'leak': 0.3}
  losses = [
    r['loss'] for r in runlog.read_metrics(str(workdir / run_id / runlog.METRICS_FILE)) if r['split'] == 'train'
  ]
  assert losses and all(np.isfinite(losses))
  # A misspelled option of the registered cell is a one-line error before anything runs.
  bad = ['--config', path, '--workdir', str(tmp_path / 'bad'), '--config.model.cell=leaky']
  capsys.readouterr()
  assert run.main([*bad, '--config.model.cell_kwargs.leek=0.3']) == 2
  err = capsys.readouterr().err.strip()
  assert (
    err.startswith('error: ')
    and '\n' not in err
    and "cell_kwargs.leek': unknown option for cell 'leaky'; valid: " in err
  )
  assert not os.path.exists(tmp_path / 'bad')


def test_the_docstring_example_config_file_registers_its_cell_each_time_it_loads(tmp_path):
  doc = inspect.getdoc(dr.register_cell)
  start = doc.rindex('\n', 0, doc.index('# configs/leaky.py')) + 1
  path = tmp_path / 'leaky.py'
  path.write_text(textwrap.dedent(doc[start : doc.index('As with ``register_task``')]))
  for _ in range(2):  # a rerun, a sweep worker: the same class again, quietly
    config = config_lib.load(str(path), ['model.depth=2'])
    assert (config.model.cell, config.model.cell_kwargs.leak) == ('leaky', 0.3)
  assert dr.CELLS['leaky'].__module__.startswith('deeprnn_config_')


def test_register_cell_refuses_what_would_break_later():
  def refused(name, cls, match, **kwargs):
    with pytest.raises(ValueError, match=match) as e:
      dr.register_cell(name, cls, **kwargs)
    assert '\n' not in str(e.value)

  for name in ('', '9lives', 'my cell', None):
    refused(name, LeakyElmanCell, r'use letters, digits, _, - and \., starting with a letter$')
  for cls in (LeakyElmanCell(features=3), lambda features: None, int, nn.Dense):
    refused('mine', cls, r"^cell 'mine': register a class, a subclass of deeprnn_jax.cells.Cell")

  class NoFeatures(nn.RNNCellBase):
    size: int = 3

  refused('mine', NoFeatures, r"^cell 'mine': NoFeatures has no features field; the stack builds cells as cls")
  refused('lstm', LeakyElmanCell, r"^cell 'lstm' is built in; register yours under another name, or pass replace=True$")
  assert 'mine' not in dr.CELLS and dr.CELLS['lstm'] is dr.LSTMCell

  # The same class again (a config file loaded twice) is fine; another class under a taken name is not.
  dr.register_cell('mine', LeakyElmanCell)
  dr.register_cell('mine', LeakyElmanCell)
  refused('mine', MyMinGRUCell, r"^cell 'mine' is already registered \(by .*LeakyElmanCell\); choose another name")
  dr.register_cell('mine', MyMinGRUCell, replace=True)
  assert dr.CELLS['mine'] is MyMinGRUCell

  # A built-in replaced on purpose comes back when unregistered.
  dr.register_cell('lstm', LeakyElmanCell, replace=True)
  assert dr.CELLS['lstm'] is LeakyElmanCell
  dr.unregister_cell('lstm')
  assert dr.CELLS['lstm'] is dr.LSTMCell
  for name in ('lstm', 'never_registered'):
    with pytest.raises(ValueError, match=rf"^cell '{name}' was not registered with register_cell; registered: mine$"):
      dr.unregister_cell(name)

  @dr.register_cell('decorated')
  class Decorated(LeakyElmanCell):
    pass

  assert dr.CELLS['decorated'] is Decorated and dr.cells.register_cell is dr.register_cell
