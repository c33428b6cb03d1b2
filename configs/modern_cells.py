"""Study: classic and modern recurrent cells at depths 1, 2 and 4, at equal parameters, on the recall
tasks that separate them.

Selective copying (Gu & Dao 2023) asks a model to pick data tokens out of noise at random spacing;
multi-query associative recall (Arora et al. 2024) asks it to look up values by key. The papers report
that input-dependent (selective) state updates and larger states do these, where fixed recurrences
fail. Here every cell runs in the same modern block (pre-norm residual cell + gated MLP; set
``--config.model.block=classic`` for the 2014 stack), every variant at the same parameter budget, so
the comparison is between cells at equal capacity, and between depths at equal capacity.

  python -m experiments.run --config configs/modern_cells.py --workdir runs/modern_cells --workers auto
  python -m experiments.run --config configs/modern_cells.py --workdir runs/modern_mqar --workers auto \\
      --config.task.name=mqar

The splits ``test_len2x`` / ``test_len4x`` stretch the noise between the same tokens (length
generalization); ``exact_match`` is the share of sequences recalled without a single error.
"""

from deeprnn_jax.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'selective_copy'                  # or 'mqar': both take these options
  c.task.options = {'seq_len': 24, 'num_eval': 256}
  c.model.block = 'modern'
  c.model.mlp_expansion = 2.0
  c.model.embed_features = 16
  c.optim.name = 'adam'
  c.optim.learning_rate = 3e-3
  c.train.num_steps = 600
  c.train.batch_size = 32
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 100
  c.train.eval_splits = ('val',)
  c.train.checkpoint_every_steps = 600
  c.sweep.axes = sweep_axes({
      'model.cell': ['lstm', 'gru', 'minlstm', 'rglru', 'mamba', 'mlstm', 'deltanet', 'attention'],
      'model.depth': [1, 2, 4],
  })
  c.sweep.param_budget = 12000
  c.sweep.param_tolerance = 0.05     # attention's width moves in steps of 2 (RoPE): 2% is out of reach at this size
  c.sweep.seeds = (0, 1, 2)
  return c
