"""The recurrent cells, one module per family, behind one protocol (``base.Cell``) and one registry.

=====================  ==========================================================================
module                 cells
=====================  ==========================================================================
``base``               the ``Cell`` protocol: ``project_inputs`` + ``recur`` (+ ``parallel_sequence``)
``classic``            Elman (``rnn``), IRNN, LSTM, GRU, MGU, IndRNN, UGRNN
``linear``             minGRU, minLSTM, LRU and the associative scan they share
``ssm``                S6 and Mamba (selective state spaces)
``rglru``              RG-LRU (Griffin / Hawk)
``xlstm``              sLSTM and mLSTM
``mlstm_layer``        xLSTM's mLSTM layer (``mlstm_layer``): the mLSTM with its authors' projections and conv
``linear_attention``   linear attention, DeltaNet, Gated DeltaNet (chunkwise WY form)
``attention``          softmax attention with RoPE and a key-value cache carry
``conv``               the short causal depthwise convolution (Mamba's, Griffin's, the DeltaNets', mLSTM's)
``registry``           ``CELLS`` (name -> class), ``resolve_cell``, ``register_cell`` / ``unregister_cell``
=====================  ==========================================================================
"""

from deeprnn_jax.cells.attention import AttentionCell
from deeprnn_jax.cells.base import ACTIVATIONS, Cell, get_activation
from deeprnn_jax.cells.classic import ElmanCell, GRUCell, IndRNNCell, IRNNCell, LSTMCell, MGUCell, UGRNNCell
from deeprnn_jax.cells.linear import LinearRecurrentCell, LRUCell, MinGRUCell, MinLSTMCell, linear_recurrence
from deeprnn_jax.cells.linear_attention import DeltaNetCell, GatedDeltaNetCell, LinearAttentionCell
from deeprnn_jax.cells.registry import (
  CELLS,
  has_parallel_form,
  parallel_cells,
  register_cell,
  resolve_cell,
  unregister_cell,
)
from deeprnn_jax.cells.rglru import RGLRUCell
from deeprnn_jax.cells.ssm import MambaCell, S6Cell
from deeprnn_jax.cells.mlstm_layer import MLSTMLayer
from deeprnn_jax.cells.xlstm import MLSTMCell, SLSTMCell
