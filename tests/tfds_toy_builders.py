"""TFDS builders of the tests' own, prepared without network or TensorFlow (import registers them).

``deeprnn_local_reviews`` reads ``train.tsv`` and ``test.tsv`` (``text<TAB>label`` lines) from the
manual dir, the way a TFDS builder of files downloaded by hand does; ``deeprnn_remote_reviews``
downloads its file, so offline it fails the way a real dataset does.
"""

import tensorflow_datasets as tfds


class DeeprnnLocalReviews(tfds.core.GeneratorBasedBuilder):
  """Labelled review lines from ``<manual_dir>/{train,test}.tsv``."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Write train.tsv and test.tsv (text<TAB>label lines) in the manual dir.'

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {'text': tfds.features.Text(), 'label': tfds.features.ClassLabel(names=['neg', 'pos'])}
      ),
    )

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(dl_manager.manual_dir / f'{split}.tsv') for split in ('train', 'test')}

  def _generate_examples(self, path):
    for i, line in enumerate(path.read_text(encoding='utf-8').splitlines()):
      text, label = line.split('\t')
      yield i, {'text': text, 'label': int(label)}


class DeeprnnRemoteReviews(tfds.core.GeneratorBasedBuilder):
  """A dataset that must be downloaded (the tests cut the network off)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({'text': tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    path = dl_manager.download('https://example.org/deeprnn/reviews.txt')
    return {'train': self._generate_examples(path)}

  def _generate_examples(self, path):
    for i, line in enumerate(path.read_text().splitlines()):
      yield i, {'text': line}


class DeeprnnNeedsModule(tfds.core.GeneratorBasedBuilder):
  """A builder that imports a module which is not installed, as TFDS's builders import TensorFlow."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({'text': tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    import deeprnn_module_not_installed  # noqa: F401  pylint: disable=g-import-not-at-top,import-error

    return {}

  def _generate_examples(self):
    yield from ()


class DeeprnnNeedsTensorflow(tfds.core.GeneratorBasedBuilder):
  """A builder that reads its files with TensorFlow, as TFDS's imdb_reviews, mnist, ... do, on a
  machine without it (raised as TFDS's lazy import raises it: the test must not depend on whether
  `make data` has installed TensorFlow in this environment)."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({'text': tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    raise ModuleNotFoundError("No module named 'tensorflow'", name='tensorflow')

  def _generate_examples(self):
    yield from ()
