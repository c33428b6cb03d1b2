"""PyTorch's side of tests/test_benchmarks.py: ``impls.torch_module`` (the speed anchor of `make bench`)
computes our loss from our weights, so the speeds compare like work."""

import jax
import numpy as np
import pytest

torch = pytest.importorskip(
  'torch', reason="PyTorch's side of the benchmarks needs the oracles extra: make test-oracles"
)

from benchmarks import impls  # noqa: E402
from test_benchmarks import TINY, _ours  # noqa: E402


def test_torch_baseline_trains_one_step():
  impls.torch_module(TINY, 'lstm').step()


@pytest.mark.parametrize('cell', ['rnn', 'lstm', 'gru'])
def test_torch_computes_our_loss_from_our_weights(cell):
  x, loss, params = _ours(cell)
  # As impls.torch_module builds it: torch's gate order (i, f, g, o; r, z, n) is ours.
  module = getattr(torch.nn, impls.TORCH_MODULES[cell])(TINY.inputs, TINY.hidden, TINY.layers, batch_first=True)
  with torch.no_grad():
    for l in range(TINY.layers):
      cp = jax.tree.map(np.asarray, params['params'][f'layer_{l}']['cell'])
      bh = cp['recurrent'].get('bias', np.zeros_like(cp['input_proj']['bias']))
      for name, value in (
        (f'weight_ih_l{l}', cp['input_proj']['kernel'].T),
        (f'bias_ih_l{l}', cp['input_proj']['bias']),
        (f'weight_hh_l{l}', cp['recurrent']['kernel'].T),
        (f'bias_hh_l{l}', bh),
      ):
        getattr(module, name).copy_(torch.from_numpy(np.ascontiguousarray(value, np.float32)))
    torch_value = module(torch.from_numpy(np.asarray(x)))[0].square().mean().item()
  np.testing.assert_allclose(float(loss(params, x)), torch_value, rtol=1e-5)
