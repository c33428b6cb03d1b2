"""Study: does depth help an encoder-decoder? Multi-digit addition as strings ("123+45" -> "168").

Sutskever et al. 2014's setting at toy scale: an LSTM encoder reads the digits, its final state
starts an LSTM decoder of the same depth (no attention, so everything the decoder knows passes
through the carries), depth 1, 2 and 4 at a fixed width, 3 seeds. The report compares teacher-forced
token accuracy and exact match on val, the greedy decodes' exact match and BLEU (``Task.score``),
and ``test_len2x``: operands of 4 to 6 digits, longer than any training example. The baseline is
the source-blind guess of the most frequent training token at each target position.

A trial of this study (one seed, 2000 steps, outside the trainer): token accuracy on val 0.73
(depth 1), 0.81 (depth 2), 0.79 (depth 4); none generalized to longer operands (about 0.25).

  python -m experiments.run --config configs/seq2seq_depth.py --workdir runs/seq2seq_depth
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'addition'
  c.task.options = {'max_digits': 3, 'num_eval': 500}
  c.model.cell = 'lstm'
  c.model.depth = 1
  c.model.width = 64
  c.model.embed_features = 32
  c.model.decoder_depth = None  # follows model.depth: the sweep deepens both sides
  c.model.attention = 'none'  # the carries are the only path from source to target
  c.model.bridge = 'auto'  # same cell, width and depth: the final carries pass as they are
  c.model.reverse_source = False
  c.model.decode = 'greedy'
  c.optim.name = 'adam'
  c.optim.learning_rate = 3e-3
  c.optim.clip_global_norm = 1.0
  c.train.num_steps = 2000
  c.train.batch_size = 64
  c.train.log_every_steps = 100
  c.train.eval_every_steps = 500
  c.train.eval_splits = ('val',)  # test and test_len2x once, at the end
  c.train.checkpoint_every_steps = 1000
  c.train.eval_batch_size = 500
  c.sweep.axes = sweep_axes({'model.depth': [1, 2, 4]})
  c.sweep.seeds = (0, 1, 2)
  return c
