"""A template: text classification from your own CSV (or TSV, JSON Lines) file, depth 1 vs 2.

Copy this file, or run it as it is with the path to your data:

  python -m experiments.run --config configs/text_classification.py --workdir runs/mytexts \\
      --config.task.options.path=reviews.csv

The data (``deeprnn_jax.tasks.tfds_text.text_classification``; the readers are in
``deeprnn_jax/tasks/local_text.py``):

* one file with a header row and the columns ``text``, ``label`` and ``split`` (``train``, ``test``,
  and optionally ``val`` / ``validation`` / ``dev`` rows), or a folder with ``train.csv`` and
  ``test.csv`` (and optionally ``val.csv``). Other column names: ``task.options.text_column``,
  ``label_column``, ``split_column``. Labels are strings or integers.
* Texts are lower-cased and split into words; the ``vocab_size`` most frequent training words get
  ids, the others become one out-of-vocabulary id. Texts longer than ``max_len`` words are cut.
* Without validation rows, ``num_val`` training rows (a fixed random choice) become the validation
  split. It must be smaller than the number of training rows.

Every setting below is written out, so nothing is inherited silently: each line says what it does
and what to change for a dataset of another size. The rules of thumb, for ``N`` training rows:

* ``num_val``: about 10% of ``N`` (the default of the task, 1000, needs N > 1000);
* ``train.num_steps`` x ``train.batch_size`` / ``N`` is the number of epochs (here 2000 x 32: 64,000
  examples, e.g. 6 epochs of 10,000 rows);
* ``train.eval_every_steps`` gives the learning curves: about 10-20 evaluations per run. An interval
  longer than the run leaves one evaluation, at the end (the config check warns about it).

The grid: an LSTM at depths 1 and 2, 3 seeds each (6 runs); the report says whether depth helped.
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'text_classification'
  c.task.options = {
    'path': None,  # required: your file or folder (--config.task.options.path=reviews.csv)
    'text_column': 'text',
    'label_column': 'label',
    'split_column': 'split',  # for one file: which rows are train / val / test
    'vocab_size': 20000,  # the most frequent training words; the rest share one id
    'max_len': 256,  # words kept per text (longer texts are cut; shorter ones padded and masked)
    'num_val': 1000,  # validation rows carved from train when the data has none: ~10% of train
    'threshold': None,  # an accuracy that counts as solved (reported as steps to reach it); None: none
  }
  c.model.cell = 'lstm'
  c.model.depth = 1  # swept below
  c.model.width = 128  # hidden features per layer
  c.model.embed_features = 128  # word embedding size
  c.model.pooling = 'last'  # read the last valid word's output ('mean', 'max', 'attention' also work)
  c.model.dropout_rate = 0.2  # between stacked layers (depth >= 2)
  c.optim.name = 'adam'
  c.optim.learning_rate = 1e-3
  c.optim.clip_global_norm = 1.0
  c.train.num_steps = 2000  # x batch_size / train rows = epochs
  c.train.batch_size = 32
  c.train.log_every_steps = 50  # training loss records
  c.train.eval_every_steps = 100  # validation evaluations: ~20 per run (keep it below num_steps)
  c.train.eval_splits = ('val',)  # the learning curves; the test split once, at the end
  c.train.eval_batch_size = 256
  c.train.checkpoint_every_steps = 500  # resume points after a crash or Ctrl-C
  c.sweep.axes = sweep_axes({'model.depth': [1, 2]})
  c.sweep.seeds = (0, 1, 2)  # more seeds make the report's verdicts surer
  return c
