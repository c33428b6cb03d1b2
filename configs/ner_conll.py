"""Study: does depth help a bidirectional tagger? Named-entity recognition on CoNLL-2003.

Word embeddings -> a bidirectional LSTM stack (the forward and backward outputs of each layer are
concatenated and read by the next) -> a linear tag classifier at every token, as in Huang et al.
2015 and Lample et al. 2016 without their CRF and character features. Depth 1, 2 and 3 at a fixed
width; the report compares entity F1 (seqeval, CoNLL rules) on val, token accuracy beside it, and
the baseline of tagging each word with its most frequent training tag.

Needs TFDS ``conll2003`` prepared once as array_record (the error message says how). Local CoNLL
files instead (train.txt/valid.txt/test.txt or eng.train/eng.testa/eng.testb in one folder): add
``--config.task.name=ner_conll --config.task.options.path=/data/conll2003``.

  python -m experiments.run --config configs/ner_conll.py --workdir runs/ner
"""

from deeprnn_jax.training.config import default_config, sweep_axes


def get_config():
  c = default_config()
  c.task.name = 'conll2003'
  c.task.options = {'vocab_size': 30000, 'lowercase': False}  # case is the main cue for a name
  c.model.cell = 'lstm'
  c.model.bidirectional = True
  c.model.merge = 'concat'
  c.model.depth = 1
  c.model.width = 100
  c.model.embed_features = 100
  c.model.dropout_rate = 0.3  # between recurrent layers
  c.model.head_dropout_rate = 0.3  # on the word embeddings
  c.optim.name = 'adam'
  c.optim.learning_rate = 2e-3
  c.optim.clip_global_norm = 5.0
  c.train.num_steps = 4000  # ~9 epochs of 14041 sentences at batch 32
  c.train.batch_size = 32
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 500
  c.train.eval_splits = ('val',)  # test once, at the end
  c.train.checkpoint_every_steps = 1000
  c.train.eval_batch_size = 512
  c.sweep.axes = sweep_axes({'model.depth': [1, 2, 3]})
  c.sweep.seeds = (0, 1, 2)
  return c
