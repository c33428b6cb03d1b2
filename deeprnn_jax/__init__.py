"""deeprnn_jax: deep (stacked) recurrent networks in JAX/Flax, built for comparing them.

.. code-block:: python

    import deeprnn_jax as dr
    cell = dr.CELLS['lstm'](features=128)                  # a Flax RNN cell
    dr.register_cell('mycell', MyCell)                     # your own, by name like a built-in one
    model = dr.DeepRNN(cell='lstm', features=128, num_layers=4)
    final_carries, outputs = model.apply(params, x, seq_lengths=lengths)   # x: [batch, time, features]
"""

from deeprnn_jax import _moved
from deeprnn_jax import models
from deeprnn_jax import tasks
from deeprnn_jax.cells import (
  CELLS,
  AttentionCell,
  Cell,
  DeltaNetCell,
  ElmanCell,
  GatedDeltaNetCell,
  GRUCell,
  IndRNNCell,
  IRNNCell,
  LinearAttentionCell,
  LinearRecurrentCell,
  LRUCell,
  LSTMCell,
  MambaCell,
  MGUCell,
  MinGRUCell,
  MinLSTMCell,
  MLSTMCell,
  MLSTMLayer,
  RGLRUCell,
  S6Cell,
  SLSTMCell,
  UGRNNCell,
  linear_recurrence,
  register_cell,
  resolve_cell,
  unregister_cell,
)
from deeprnn_jax.inits import INITIALIZERS, get_initializer
from deeprnn_jax.models import Classifier, PerStepModel, Regressor, count_params
from deeprnn_jax.seq2seq import RecurrentDecoder, Seq2Seq
from deeprnn_jax.sequences import reverse_padded
from deeprnn_jax.stack import DeepRNN, StackedCell
from deeprnn_jax.training.load import TrainedRun, load_run

_moved.install()


def __getattr__(name: str):
  return _moved.package_attribute(name)  # old module paths of 0.2 (dr.registry, ...), until 0.4


__version__ = '0.2.0'
