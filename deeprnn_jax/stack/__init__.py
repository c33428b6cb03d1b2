"""Deep recurrent stacks: ``DeepRNN`` (a sequence through L blocks) and ``StackedCell`` (one step).

=============  =====================================================================================
module         what it holds
=============  =====================================================================================
``deep``       ``DeepRNN`` (the stack of blocks and their connection) and ``StackedCell``
``blocks``     ``ClassicBlock`` and ``ModernBlock`` (pre-norm residual mixer + ``GatedMLP``)
``mixer``      ``Mixer``: a cell with a short causal convolution and/or an output gate branch
``paths``      the execution paths (per step, hoisted, parallel) and ``execution='auto'``
``options``    the options' choices, the one place they are checked, and the blocks they build
=============  =====================================================================================
"""

from deeprnn_jax.stack.blocks import Block, ClassicBlock, GatedMLP, ModernBlock
from deeprnn_jax.stack.deep import DeepRNN, StackedCell
from deeprnn_jax.stack.mixer import Mixer
from deeprnn_jax.stack.options import (
  BLOCKS,
  CONNECTIONS,
  DROPOUT_MODES,
  EXECUTIONS,
  INITIAL_CARRIES,
  MERGES,
  SHORT_CONVS,
  OptionError,
)
