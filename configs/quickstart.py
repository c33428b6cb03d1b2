"""Quickstart, the default main job (`make demo`): does depth help, and for which cell?

A depth x cell sweep on bracket counting (the ``parentheses`` task, after Collins et al. 2017): at
each of 40 steps the model must output how many brackets are open, over two bracket types with
saturating counters, among noise tokens. No download. The grid: 3 cells (vanilla RNN, GRU, LSTM) x
depths 1 and 2 at width 32 x 8 seeds (48 runs), the seeds of each variant trained together as one
program. The 5-seed grid of the round before ran in about 2 minutes on 2 CPU cores (one worker per
core; BENCHMARKS.md); 8 seeds train 8/5 as many runs.

Why this grid: its headline verdicts must not flip with float rounding. The report corrects its
whole family of comparisons (Holm), so a verdict needs a large effect or many seeds. With 3 seeds
and depths 1, 2, 3 (27 runs, the grid before) no depth comparison survived the correction, and the
best variant changed when the computation was perturbed at rounding level (seeds vmapped instead
of looped). With 5 seeds and the question that matters (one layer vs two), the same perturbation
left every headline verdict as it was (README, "Quickstart"), in less time (30 runs, the slowest
depth dropped). But training outcomes are bimodal: with 5 seeds and the seeds vmapped, two of rnn-d2's
seeds stayed near depth 1 (0.64, 0.62 vs 0.83-0.88) and the headline, depth helps the vanilla RNN,
read "not distinguishable" (Holm p 0.13), where the looped run read "clear" (p 0.0009). Measured on
the rnn half of the grid with 10 seeds in both seed programs (seeds 0-4 gave the same accuracies as
in the 5-seed runs), the first 8 seeds make it clear in both (Welch p 2e-06 looped, 0.00035 vmapped;
clear even at Bonferroni over the report's 9 tests) and robust to leaving out any one seed; 7 did
not (vmapped, leaving out one of four seeds made it not distinguishable). Hence 8 seeds.

Widths are fixed (not parameter-matched), so a deeper network is also a larger one; the report
lists the parameter counts. For the fair, parameter-matched comparison set
``--config.sweep.param_budget=7000`` (every variant within 2% of 7000 parameters).

  python -m experiments.run --config configs/quickstart.py --workdir runs/quickstart
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'parentheses'
  c.task.options = {'seq_len': 40, 'num_eval': 500}  # val/test at 40 steps; test_len2x/4x at 80/160
  c.model.width = 32
  c.optim.name = 'adam'
  c.optim.learning_rate = 3e-3
  c.train.num_steps = 1500
  c.train.batch_size = 32
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 100
  c.train.eval_splits = ('val',)  # the learning curves; test splits once, at the end
  c.train.checkpoint_every_steps = 500
  c.sweep.axes = sweep_axes({'model.cell': ['rnn', 'gru', 'lstm'], 'model.depth': [1, 2]})
  c.sweep.seeds = tuple(range(8))  # the fewest for a robust headline in both seed programs (docstring)
  return c
