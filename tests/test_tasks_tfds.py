"""TFDS tasks without TensorFlow and without network: mock data, a real array_record dataset built
here, and the error for a dataset that is not prepared."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from deeprnn_jax import tasks
from deeprnn_jax.tasks import base, image_sequences, tfds_image, tfds_source, tfds_text, vocab

KEY = jax.random.key(0)
_loss_and_metrics = jax.jit(base.loss_and_metrics, static_argnums=0)


@pytest.fixture()
def mock_tfds():
  with tfds.testing.mock_data(num_examples=24, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


@pytest.mark.parametrize(
  'name, options',
  [
    ('imdb', dict(num_val=4, max_len=40)),
    ('sst2', dict(num_val=4, max_len=40)),
  ],
)
def test_text_tasks_on_mock_data(mock_tfds, name, options):
  task = tasks.make_task(name, **options)
  assert task.input_kind == 'tokens' and task.output_kind == 'class' and task.seq_len == 40
  assert task.length_buckets == (32, 40) and sum(task.bucket_probs) == pytest.approx(1.0)
  val, test = task.eval_splits['val'], task.eval_splits['test']
  assert val['inputs'].shape == (4, 40) and test['inputs'].shape == (24, 40)
  for split in (val, test):
    assert split['inputs'].dtype == np.int32 and np.all(split['lengths'] >= 1)
    past = np.arange(40)[None, :] >= split['lengths'][:, None]
    assert np.all(split['inputs'][past] == vocab.PAD) and np.all(split['inputs'][~past] != vocab.PAD)
  fn = jax.jit(task.train_batch, static_argnames=('batch_size', 'bucket'))
  b = fn(KEY, 1, batch_size=8, data=task.train_data)
  assert b['inputs'].shape == (8, 40) and b['targets'].shape == (8,)
  assert int(jnp.max(b['inputs'])) < task.input_size
  # The majority-label predictor scores the stated baseline.
  logits = np.zeros((24, 2), np.float32)
  logits[:, task.info['majority_class']] = 1.0
  m = base.finalize(_loss_and_metrics('class', jnp.asarray(logits), test)[1])
  assert m['accuracy'] == pytest.approx(task.baseline.value)


@pytest.mark.parametrize(
  'name, options, shape',
  [
    ('smnist', dict(num_val=4), (784, 1)),
    ('psmnist', dict(num_val=4, mode='rows'), (28, 28)),
  ],
)
def test_sequential_mnist_on_mock_data(mock_tfds, name, options, shape):
  task = tasks.make_task(name, **options)
  assert task.eval_splits['test']['inputs'].shape == (24,) + shape
  assert task.eval_splits['val']['inputs'].shape == (4,) + shape
  x = task.eval_splits['test']['inputs']
  # pixels / 255: whole multiples of 1/255 filling [0, 1] (mock images are uniform uint8 noise)
  assert x.dtype == np.float32 and x.min() == 0.0 and 0.99 < x.max() <= 1.0
  np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 0, 5)
  assert b['inputs'].shape == (5,) + shape and b['inputs'].dtype == jnp.float32
  assert task.baseline.value == pytest.approx(0.1) and task.info['permuted'] == (name == 'psmnist')


def test_tiny_shakespeare_on_mock_data(mock_tfds):
  task = tasks.make_task('tiny_shakespeare', seq_len=4)
  assert task.output_kind == 'per_step_class' and task.input_size == task.output_size
  assert task.baseline.metric == 'loss' and task.baseline.value > 0
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 0, 3)
  assert b['inputs'].shape == b['targets'].shape == (3, 4)


@pytest.mark.parametrize(
  'name, tfds_name, local',
  [
    ('imdb', 'imdb_reviews', '--config.task.options.path=aclImdb'),
    ('sst2', 'glue/sst2', '--config.task.options.path=SST-2'),
    ('smnist', 'mnist', None),
    ('tiny_shakespeare', 'tiny_shakespeare', '--config.task.options.path=input.txt'),
  ],
)
def test_unprepared_dataset_error_names_the_prepare_command(tmp_path, name, tfds_name, local):
  with pytest.raises(tfds_source.DatasetNotPreparedError) as e:
    tasks.make_task(name, data_dir=str(tmp_path))
  msg = str(e.value)
  assert '\n' not in msg
  # The command of experiments/prepare.py (tests/test_prepare.py runs it), not `tfds build`, which
  # needs Apache Beam.
  assert f'prepare it once with `python -m experiments.prepare {tfds_name} --data-dir {tmp_path}`' in msg
  assert "pip install -e '.[prepare]'" in msg and 'tfds build' not in msg
  assert (local in msg) if local else ('path=' not in msg)
  # The trainer shows it as one line of at most 500 characters (runlog.one_line): the command and
  # the alternative come before TFDS's own words, which are cut first.
  shown = f"config key 'task': {name!r} cannot be built: DatasetNotPreparedError: {msg}"[:500]
  assert f'experiments.prepare {tfds_name} --data-dir {tmp_path}`' in shown and (local or '') in shown


class DeeprnnToyReviews(tfds.core.GeneratorBasedBuilder):
  """A tiny text dataset, prepared here as array_record without TensorFlow."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {'text': tfds.features.Text(), 'label': tfds.features.ClassLabel(num_classes=2)}
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
      'train': self._generate_examples(['good film', 'bad film', 'good good', 'très bad']),
      'test': self._generate_examples(['good plot', 'bad plot']),
    }

  def _generate_examples(self, texts):
    for i, text in enumerate(texts):
      yield i, {'text': text, 'label': int('good' in text)}


def test_real_array_record_source_reads_without_tensorflow(tmp_path):
  DeeprnnToyReviews(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  train = tfds_source.load_split('deeprnn_toy_reviews', 'train', str(tmp_path))
  test = tfds_source.load_split('deeprnn_toy_reviews', 'test', str(tmp_path))
  texts = sorted(tfds_source.text_of(ex['text']) for ex in train)
  assert texts == ['bad film', 'good film', 'good good', 'très bad']  # bytes decoded as UTF-8
  task = tfds_text.text_classification_task(
    name='toy',
    train_texts=[tfds_source.text_of(ex['text']) for ex in train],
    train_labels=[int(ex['label']) for ex in train],
    test_texts=[tfds_source.text_of(ex['text']) for ex in test],
    test_labels=[int(ex['label']) for ex in test],
    num_classes=2,
    vocab_size=100,
    max_len=4,
    num_val=1,
    buckets=None,
    threshold=None,
  )
  # 'plot' is only in test: OOV.
  assert np.all(task.eval_splits['test']['inputs'][:, 1] == vocab.OOV)
  assert task.eval_splits['test']['inputs'].shape == (2, 4)


class DeeprnnToyDigits(tfds.core.GeneratorBasedBuilder):
  """Four 28x28 PNG images with TFDS mnist's features, prepared here without TensorFlow."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {'image': tfds.features.Image(shape=(28, 28, 1)), 'label': tfds.features.ClassLabel(num_classes=10)}
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(range(4))}

  def _generate_examples(self, labels):
    from PIL import Image  # pylint: disable=g-import-not-at-top

    for i in labels:
      image = np.zeros((28, 28), np.uint8)
      image[i, :] = 255  # row i lit: the label is readable from the pixels
      buf = io.BytesIO()
      Image.fromarray(image).save(buf, format='PNG')  # PNG bytes: encoding needs no TensorFlow
      yield i, {'image': buf.getvalue(), 'label': i}


def test_real_array_record_images_decode_without_tensorflow(tmp_path):
  DeeprnnToyDigits(data_dir=str(tmp_path), file_format='array_record').download_and_prepare()
  images, labels = tfds_image._images('deeprnn_toy_digits', 'train', str(tmp_path))
  assert images.shape == (4, 28, 28) and images.dtype == np.uint8
  for image, label in zip(images, labels):
    assert np.flatnonzero(image.max(axis=1)).tolist() == [label]
  task = image_sequences.image_sequence_task(
    name='toy',
    train_images=images,
    train_labels=labels,
    test_images=images,
    test_labels=labels,
    max_value=255.0,
    num_classes=10,
    mode='pixels',
    permute=False,
    permutation_seed=0,
    num_val=1,
    threshold=None,
  )
  x = task.eval_splits['test']['inputs']
  assert x.shape == (4, 784, 1) and x.max() == 1.0
  np.testing.assert_array_equal(x[labels == 2, 56:84, 0], 1.0)  # pixels 56..83 are row 2
