"""The seed's example: IMDB sentiment with an embedding, a 2-layer LSTM and a linear head on the
last hidden state (``pooling='last'``, the last *valid* step of each padded review), Adam.

The data, either way (both give the same 25000 train / 25000 test reviews; the 2500 validation
reviews carved from train differ between the two, so compare runs of one source):

* From TFDS, prepared once (downloads 80 MB; preparing needs TensorFlow, training does not):

    pip install -e '.[prepare]'      # or: make data DATASETS=imdb_reviews
    python -m experiments.prepare imdb_reviews
    python -m experiments.run --config configs/imdb_sentiment.py --workdir runs/imdb

  ``--config.task.options.data_dir=DIR`` reads a TFDS data dir other than the default
  (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``; pass the same ``--data-dir DIR`` to prepare).

* From the authors' files (https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz): pass
  the archive as downloaded, or the ``aclImdb/`` folder it unpacks to (``{train,test}/{neg,pos}/*.txt``):

    python -m experiments.run --config configs/imdb_sentiment.py --workdir runs/imdb \\
        --config.task.options.path=aclImdb_v1.tar.gz
"""

from deeprnn_jax.training.config import default_config


def get_config():
  c = default_config()
  c.task.name = 'imdb'
  c.task.options = {'vocab_size': 20000, 'max_len': 400}
  c.model.cell = 'lstm'
  c.model.depth = 2
  c.model.width = 128
  c.model.embed_features = 128
  c.model.pooling = 'last'
  c.model.dropout_rate = 0.2
  c.optim.name = 'adam'
  c.optim.learning_rate = 1e-3
  c.optim.clip_global_norm = 1.0
  c.train.num_steps = 6000  # ~15 epochs of 22.5k reviews at batch 64
  c.train.batch_size = 64
  c.train.log_every_steps = 50
  c.train.eval_every_steps = 500
  c.train.eval_splits = ('val',)  # test once, at the end
  c.train.checkpoint_every_steps = 1000
  c.train.eval_batch_size = 500
  c.sweep.seeds = (0,)
  return c
