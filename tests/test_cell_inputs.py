"""Every registered cell, used directly in flax.linen.RNN, refuses complex inputs in one line (as DeepRNN
does) instead of dropping their imaginary part; real inputs of the same shape still run.

The check is on the static dtype, so abstract evaluation (``jax.eval_shape``) exercises it without compiling."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import deeprnn_jax as dr


@pytest.mark.parametrize('name', sorted(dr.CELLS))
def test_cell_in_flax_rnn_refuses_complex_inputs(name):
  x = jax.ShapeDtypeStruct((2, 3, 4), jnp.float32)
  rnn = nn.RNN(dr.CELLS[name](features=4))
  params = jax.eval_shape(rnn.init, jax.random.key(1), x)
  y = jax.eval_shape(rnn.apply, params, x)
  assert (y.shape, y.dtype) == ((2, 3, 4), jnp.float32)
  with pytest.raises(ValueError, match=r'expects real inputs, got complex64: pass the real and imaginary') as err:
    jax.eval_shape(rnn.apply, params, jax.ShapeDtypeStruct((2, 3, 4), jnp.complex64))
  assert '\n' not in str(err.value)
