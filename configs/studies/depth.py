"""Study: does depth help, across real workloads and today's recurrent cells?

One question, asked the same way on every task: at depths 1, 2 and 4 (8 where a part's budget
reaches it), does a deeper stack of the same cell do better than one layer, on the task's own
metric? Asked of the classic cells (rnn, gru, lstm) and the modern ones (mamba, rglru, mlstm,
gated_deltanet, attention), at equal parameters (the headline: a deeper network is not a larger
one) and, beside it, at equal width (a deeper network is a larger one, as a practitioner stacks).

  python -m experiments.study --config configs/studies/depth.py --workdir runs/depth --workers 2
  python -m experiments.study --config configs/studies/depth.py --workdir runs/depth --parts mqar,sst2-params
  python -m experiments.study --config configs/studies/depth.py --workdir runs/depth_full \\
      --config.study.scale=full --launcher slurm --config.launch.partition=gpu
  python -m experiments.report runs/depth     # the cross-task report (study.json and one sweep per part)

Each part (task x basis) is an ordinary sweep in ``runs/depth/<task>-<basis>/``; running the command
again resumes (finished runs are skipped), so the grid can run one part at a time (``--parts``).
``--config.<key>=<value>`` applies to every part, ``--config.study.<key>=<value>`` sets the study's
keys below.

The block: every cell, classic ones included, runs in the modern block (pre-norm residual cell and
gated MLP, as Griffin, Mamba and xLSTM stack theirs), each with its authors' short convolution
(``model.short_conv='authors'``, the block's default: RG-LRU, Gated DeltaNet, mLSTM and Mamba have one, the
classic cells and attention none; ``--config.model.short_conv=on`` or ``off`` holds the scaffold equal, so a
cell-by-cell table then compares recurrences alone; the results committed so far were measured with ``cell``,
no convolution but Mamba's). Two reasons for the modern block. Each cell is then stacked as its authors stack
it, so a cell-by-cell table compares the models the field uses. And depth is then
asked fairly: without the residual path and normalization a deep classic stack is harder to
optimize, which would confound "depth does not help" with "this stack does not train". The classic
2014 stack is one override away (``--config.model.block=classic``) for the classic cells; the
quickstart's verdicts are in that block.

The tasks (``study.tasks``; ``TASKS`` lists every label the study defines):

* ``selective_copy`` and ``mqar`` (``deeprnn_jax/tasks/recall.py``; Gu & Dao 2023, Arora et al.
  2024): sized (``RECALL``) so that the cells separate; the measured sizing runs are below.
* ``parentheses``: bracket counting as in the quickstart (``configs/quickstart.py``).
* ``adding``: the adding problem as in ``configs/adding_depth.py``, at T = 50 on the CPU grid.
* ``sst2``: real text classification, GLUE's SST-2 (67,349 training phrases, 872 validation
  sentences as the test split). The study reads GLUE's ``SST-2/`` folder (``train.tsv`` and
  ``dev.tsv``, header ``sentence<TAB>label``) from ``$DEEPRNN_SST2_DIR`` or
  ``--config.study.sst2_path``. Where it came from here: the public repository
  ``awake020/pytorch_Bert_sst2`` at commit ce2ab1719d32182e6233b24b2de246bd32814fde carries GLUE's
  SST-2 files with the columns swapped (``label<TAB>sentence``, CRLF line ends; dev's header says ``content``). Its
  rows are GLUE's (67,349 train, 872 dev); swap the columns back into the GLUE layout::

    for f in train dev; do git -C pytorch_Bert_sst2 show HEAD:SST-2/$f.tsv | tr -d '\\r' | awk -F'\\t' \\
      'BEGIN{OFS="\\t"} NR==1{print "sentence","label"; next} {print $2,$1}' > /work/data/SST-2/$f.tsv; done

  (GLUE's own archive, ``local_text.SST2_URL``, unpacks to the same layout.)
* ``ptb`` (full scale only by default): word-level Penn Treebank with the recipe of
  ``configs/reproduce/ptb_lm.py``, shortened to ``PTB_EPOCHS`` epochs for the study; the files from
  ``$DEEPRNN_PTB_DIR`` or ``--config.study.ptb_path``.
* ``digits`` (full scale only by default): connected spoken digits, the workload of
  ``configs/connected_digits_depth.py`` (its ``get_config('modern')``: bidirectional, CTC, judged on
  WER / CER), with the study's cells and depths; the Free Spoken Digit Dataset from
  ``$DEEPRNN_FSDD_DIR`` or ``--config.study.digits_path``.

Sizing the recall tasks (``RECALL``). ``configs/modern_cells.py`` found exact match 0 for every cell at
context 24 with 8 tokens, 12k parameters and 600 steps: too hard to separate anything. Single runs here
(seed 0, depth 2, 12k parameters, modern block, Adam 3e-3, batch 32; 2 CPU cores shared with other
work at load 8-21), test exact match (per-answer accuracy in brackets):

* selective copying, context 16, 4 tokens of 8, 600 steps: attention 0.93 (0.98), gru 0.68 (0.91),
  mamba 0.51 (0.85), lstm 0.38 (0.82), gated_deltanet 0.38 (0.81). Every curve but attention's was
  still rising at step 600 (lstm 0.01 / 0.06 / 0.22 / 0.40 at steps 150 / 300 / 450 / 600).
* selective copying, context 32, the same 4 tokens, 600 steps: attention 0.52 (0.86), gru 0.44 (0.84),
  gated_deltanet 0.13 (0.66): a longer context slowed every cell, so the study keeps context 16.
* MQAR, 16 steps, 3 pairs, 8 keys, 8 values, 1500 steps: attention 0.98 (0.99), gated_deltanet 0.95
  (0.97), lstm 0.62 (0.86); gated_deltanet was at 0.92 (validation) by step 750, attention at 0.91 by
  1125 (the CPU grid trains 1200 steps). At 24 steps with 4 pairs of 16 keys and 16 values, 600
  steps, nothing learned the lookup (attention 0.00 (0.32), gated_deltanet 0.00 (0.42), lstm 0.00 (0.31)).

So at the CPU grid's budget at least one cell solves each task (exact match >= 0.9) and lstm does not.
Not measured (time): rnn, rglru, mlstm on either task, and mamba, gru on MQAR; the grid measures them.

Seeds per task come from the report's power column (``experiments/report/stats.py``: ``seeds_needed``,
the seeds per variant at which a two-sided t-test at level alpha/m, the strictest Holm step, has power
0.8 at the observed difference and spread, from the noncentral t). Holm's family is the whole study:
m = cells x deep depths x parts, 8 x 2 x 8 = 128 on the CPU grid, about 290 on the full one. At
m = 160, n seeds resolve a standardized depth effect (difference / seed spread) of at least: 3 seeds
11.7, 4 seeds 6.4, 5 seeds 4.6, 6 seeds 3.6, 8 seeds 2.9, 10 seeds 2.4, 16 seeds 1.8. Per task:

* recall tasks, 4 seeds (6 in full): the effect the study looks for is solved vs not (exact match
  0.9 vs 0.4-0.7 above), a difference of 0.3-0.5 at a seed spread well under 0.1: over 6.4.
* parentheses, 6 seeds (10 in full): the quickstart measured depth's effect on the rnn there at
  about 0.2 accuracy with bimodal seeds; it needed 8 seeds in the classic block at 1500 steps to be
  clear and robust. 6 is what the CPU time allows (effects >= 3.6); the full grid's 10 resolve 2.4.
* adding, 3 seeds (6 in full): the CPU grid can only call large MSE differences (>= 11.7 spreads).
  Measured: at T = 50 and 600 steps every cell but rnn solves it at every depth (test MSE 0.0007-0.009,
  the constant 1 scores 0.167), so the CPU part separates rnn from the rest, not depths; the full
  grid's T = 100 and 10,000 steps is where depth can show.
* sst2, 3 seeds (16 in full): depth effects on sentiment accuracy are a point or two at a seed
  spread of about a point (standardized 1-2), which needs 16 or more seeds: the CPU grid's SST-2 part
  is indicative only; the full grid's 16 resolve 1.8. Measured: 500 steps of 64 (half an epoch) leave
  it under-trained (test accuracy 0.52-0.77; an LSTM reaches about 0.84 in the literature).
* digits 3 / 6, ptb 2 / 3 seeds: their runs are the costliest; full scale only by default.

The CPU grid (``study.scale='cpu'``, the default): 8 cells x depths 1, 2, 4; selective_copy, mqar and
parentheses at both bases, adding and sst2 at equal parameters only (their equal-width view is in the
full grid): 8 parts, 192 variants, 816 runs. Measured 2026-12-07 with ``--workers 2`` on 2 AMD EPYC
cores, one part at a time: 2 h 21 min (sst2 30.5 min, parentheses 16.5 / 23.9 at equal parameters / width,
mqar 13.9 / 15.6, selective_copy 12.1 (seeds vmapped) / 13.3, adding 15.5); docs/guides/depth_study.md has
the results. The estimate made before it ran was about 3 hours and 15 minutes. How: the sizing runs' CPU
seconds (``/usr/bin/time``; their wall time was 7 times that, under others' load) give per variant
about 45 s of fixed cost (process share, compiling the
training and evaluation programs, evaluations) plus, per training step of one seed at depth 2 and
about 20 steps of input, 2 ms for lstm, 4 for attention, 12 for gated_deltanet and 40 for mamba
(others taken as 8); steps scale with sequence length, cost with depth (depths 1, 2, 4 cost 3.5 times
depth 2; batch 50 and 64 cost 1.5 and 2 times batch 32). Parts, wall time on 2 workers: mqar 21 min a
basis (1200 steps), selective_copy 17, parentheses 26, adding 28, sst2 39. The rates were measured at
depth 2 on single runs under heavy load; treat the figure as +-50%.

Checked with ``--dry-run`` (every width solved within 5% of its budget): the CPU grid's parts, and the
full grid's depth 8 on the four synthetic tasks (e.g. attention at 48,217 of 50,000 on selective
copying). Not checked here: the full grid's SST-2, digits and PTB parts (their data and minutes of
parameter solving); ``--dry-run --config.study.scale=full`` checks them before anything trains.

Scale: ``'full'`` (``--config.study.scale=full``) is the grid for a cluster or a GPU: every task
(digits and PTB too), both bases, 4x-10x the steps, more seeds, depth 8 on the synthetic tasks, SST-2
and digits; ``--launcher slurm`` submits each part as one SLURM job array (``launch.*`` keys set the
partition, time and GPUs; every run is a job, and a part resumes where its jobs left off).
"""

import importlib.util
import os

import ml_collections

from deeprnn_jax.training import config as config_lib
from deeprnn_jax.training.config import default_config, sweep_axes
from experiments.study import SkipPart

CLASSIC = ('rnn', 'gru', 'lstm')
MODERN = ('mamba', 'rglru', 'mlstm', 'gated_deltanet', 'attention')
CELLS = CLASSIC + MODERN
TASKS = ('selective_copy', 'mqar', 'parentheses', 'adding', 'sst2', 'digits', 'ptb')
SCALES = ('cpu', 'full')
PTB_EPOCHS = 2  # of the recipe's 13; the study compares depths at a shortened budget
PTB_WINDOWS_PER_EPOCH = 2323
PTB_STEPS = PTB_EPOCHS * PTB_WINDOWS_PER_EPOCH
PTB_BUDGET = 4_650_000  # the recipe's 2 x 200 LSTM with its 10k-word embedding and softmax

# The recall tasks' sizes (task options), sized by the runs in the docstring.
RECALL = {
  'selective_copy': {'seq_len': 16, 'num_tokens': 4, 'vocab_size': 8},
  'mqar': {'seq_len': 16, 'num_pairs': 3, 'num_keys': 8, 'num_values': 8},
}

# Per task and scale: parameter budget (basis params), width (basis width), steps, batch, depths, seeds.
PLAN = {
  'selective_copy': {
    'cpu': dict(budget=12000, width=32, steps=600, batch=32, depths=(1, 2, 4), seeds=4),
    'full': dict(budget=50000, width=64, steps=3000, batch=64, depths=(1, 2, 4, 8), seeds=6),
  },
  'mqar': {
    'cpu': dict(budget=12000, width=32, steps=1200, batch=32, depths=(1, 2, 4), seeds=4),
    'full': dict(budget=50000, width=64, steps=3000, batch=64, depths=(1, 2, 4, 8), seeds=6),
  },
  'parentheses': {
    'cpu': dict(budget=7000, width=32, steps=600, batch=32, depths=(1, 2, 4), seeds=6),
    'full': dict(budget=20000, width=48, steps=3000, batch=32, depths=(1, 2, 4, 8), seeds=10),
  },
  'adding': {
    'cpu': dict(budget=7000, width=32, steps=600, batch=50, depths=(1, 2, 4), seeds=3, bases=('params',)),
    'full': dict(budget=20000, width=48, steps=10000, batch=50, depths=(1, 2, 4, 8), seeds=6),
  },
  'sst2': {
    'cpu': dict(budget=300000, width=64, steps=500, batch=64, depths=(1, 2, 4), seeds=3, bases=('params',)),
    'full': dict(budget=400000, width=96, steps=5000, batch=64, depths=(1, 2, 4, 8), seeds=16),
  },
  'digits': {
    'cpu': dict(budget=100_000, width=48, steps=600, batch=32, depths=(1, 2, 4), seeds=3),
    'full': dict(budget=100_000, width=64, steps=2000, batch=32, depths=(1, 2, 4, 8), seeds=6),
  },
  'ptb': {
    'cpu': dict(budget=PTB_BUDGET, width=200, steps=PTB_STEPS, batch=20, depths=(1, 2, 4), seeds=2),
    'full': dict(budget=PTB_BUDGET, width=200, steps=PTB_STEPS, batch=20, depths=(1, 2, 4), seeds=3),
  },
}
# PTB: the LSTM recipe of Zaremba et al. (plain SGD at their scaled rate), in its own (classic) block; other
# cells would need a recipe of their own.
PTB_CELLS = ('lstm',)
PTB_RECIPE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reproduce', 'ptb_lm.py')
# Connected digits: the workload of configs/connected_digits_depth.py (its 'modern' variant: bidirectional, CTC,
# modern block), with the study's cells and depths.
DIGITS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'connected_digits_depth.py')
CPU_TASKS = ('selective_copy', 'mqar', 'parentheses', 'adding', 'sst2')


def get_config():
  c = ml_collections.ConfigDict()
  c.study = {
    'name': 'depth',
    'scale': 'cpu',  # or 'full': the cluster / GPU grid
    'tasks': None,  # the task axis, any of TASKS; None: default_tasks (CPU_TASKS at scale cpu, TASKS at full)
    'bases': ('params', 'width'),
    'shallow_depth': 1,
    'sst2_path': os.environ.get('DEEPRNN_SST2_DIR', ''),
    'ptb_path': os.environ.get('DEEPRNN_PTB_DIR', ''),
    'digits_path': os.environ.get('DEEPRNN_FSDD_DIR', ''),
  }
  return c


def default_tasks(study):
  return CPU_TASKS if study['scale'] == 'cpu' else TASKS


def get_part(study, task, basis):
  """The sweep config of one part: ``task`` at ``basis`` ('params' or 'width'), at ``study['scale']``."""
  scale = study['scale']
  if scale not in SCALES:
    raise ValueError(f'study.scale must be one of {", ".join(SCALES)}, got {scale!r}')
  plan = PLAN[task][scale]
  if basis not in plan.get('bases', ('params', 'width')):
    # The CPU grid's time: this task's equal-width view is in the full grid only.
    raise SkipPart(f'the {scale} grid leaves the {basis} basis out for {task} (--config.study.scale=full has it)')
  c = _task_config(task, study)
  c.train.num_steps = plan['steps']
  c.train.batch_size = plan['batch']
  c.sweep.seeds = tuple(range(plan['seeds']))
  cells = PTB_CELLS if task == 'ptb' else CELLS
  c.sweep.axes = sweep_axes({'model.cell': list(cells), 'model.depth': list(plan['depths'])})
  if basis == 'params':
    c.sweep.param_budget = plan['budget']
    c.sweep.param_tolerance = 0.05  # attention's width moves in steps of 2 (RoPE): 2% is out of reach when small
  else:
    c.sweep.param_budget = 0  # (the digits workload's own config matches parameters)
    c.model.width = plan['width']
  return c


def _digits_config():
  """configs/connected_digits_depth.py's get_config('modern'): its task, features and optimizer."""
  spec = importlib.util.spec_from_file_location('deeprnn_config_connected_digits_depth', DIGITS)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('modern')


def _task_config(task, study):
  c = default_config()
  c.model.block = 'modern'
  c.model.mlp_expansion = 2.0
  c.optim.name = 'adam'
  c.optim.learning_rate = 3e-3
  c.train.log_every_steps = 50
  c.train.eval_splits = ('val',)  # the learning curves; every split once, at the end
  c.train.eval_every_steps = 100
  c.train.checkpoint_every_steps = 500
  if task in RECALL:
    c.task.name = task
    c.task.options = dict(RECALL[task], num_eval=256)
    c.model.embed_features = 16
  elif task == 'parentheses':
    c.task.name = 'parentheses'
    c.task.options = {'seq_len': 40, 'num_eval': 500}
  elif task == 'adding':
    c.task.name = 'adding'
    c.task.options = {'seq_len': 50 if study['scale'] == 'cpu' else 100, 'num_eval': 1000}
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 100
  elif task == 'sst2':
    path = study['sst2_path']
    if not path or not os.path.isdir(os.path.expanduser(path)):
      raise SkipPart(
        "part sst2 needs GLUE's SST-2/ folder (train.tsv, dev.tsv)"
        f'{": " + repr(path) + " is not a folder" if path else ""}'
        '; set DEEPRNN_SST2_DIR or --config.study.sst2_path (configs/studies/depth.py says where to get it)'
      )
    c.task.name = 'sst2'
    c.task.options = {'path': path, 'vocab_size': 8000, 'max_len': 48, 'num_val': 2000}
    c.model.embed_features = 32
    c.model.pooling = 'last'
    c.optim.learning_rate = 1e-3
    c.train.eval_every_steps = 200
    c.train.eval_batch_size = 500
  elif task == 'ptb':
    path = study['ptb_path']
    if not path or not os.path.isdir(os.path.expanduser(path)):
      raise SkipPart(
        f'part ptb needs the PTB folder (ptb.train.txt, ptb.valid.txt, ptb.test.txt)'
        f'{": " + repr(path) + " is not a folder" if path else ""}; set DEEPRNN_PTB_DIR or --config.study.ptb_path'
      )
    c = config_lib.load(PTB_RECIPE)  # the recipe (SGD at lr 20, clip 0.25, init, schedule), classic block
    c.task.options = dict(c.task.options, path=path)
    c.report.published = {}  # the published 13-epoch number is not this budget's
    c.train.eval_every_steps = PTB_WINDOWS_PER_EPOCH
    c.train.checkpoint_every_steps = PTB_WINDOWS_PER_EPOCH
  elif task == 'digits':
    path = study['digits_path']
    if not path or not os.path.isdir(os.path.expanduser(path)):
      raise SkipPart(
        'part digits needs a clone of github.com/Jakobovski/free-spoken-digit-dataset (or its recordings/ folder)'
        f'{": " + repr(path) + " is not a folder" if path else ""}; set DEEPRNN_FSDD_DIR or --config.study.digits_path'
      )
    c = _digits_config()
    c.task.options = dict(c.task.options, path=path)
  else:
    raise ValueError(f'unknown task {task!r}; the study defines {", ".join(TASKS)}')
  return c
