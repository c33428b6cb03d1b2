"""Named-entity tagging: CoNLL files the tests write, TFDS conll2003 through mock data, entity
scores against hand-computed values, and a small model that learns tags that need context."""

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import deeprnn_jax as dr
from deeprnn_jax import models, tasks
from deeprnn_jax.tasks import tagging, tfds_source, vocab

from runner_helpers import fit

KEY = jax.random.key(0)

TRAIN = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

"""
VALID = 'Peter NNP B-NP B-PER\nrejects VBZ B-VP O\n'
TEST = """-DOCSTART- -X- -X- O

German JJ B-NP B-MISC
Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
Brussels NNP B-NP B-ORG
"""


def _write(folder, files):
  folder.mkdir(parents=True, exist_ok=True)
  for name, text in files.items():
    (folder / name).write_text(text)
  return folder


@pytest.fixture()
def conll_dir(tmp_path):
  return _write(tmp_path / 'conll', {'train.txt': TRAIN, 'valid.txt': VALID, 'test.txt': TEST})


# ------------------------------------------------------------------------------------------ parsing


def test_read_conll_sentences_tags_and_lines(conll_dir):
  sentences = tagging.read_conll(conll_dir / 'train.txt')
  assert [s.tokens for s in sentences] == [('EU', 'rejects', 'German', 'call'), ('Peter', 'Blackburn')]
  assert [s.tags for s in sentences] == [('B-ORG', 'O', 'B-MISC', 'O'), ('B-PER', 'I-PER')]
  assert sentences[1].where(1) == f'{conll_dir / "train.txt"}:9'
  # tag_column picks another column (here the chunk tags).
  assert tagging.read_conll(conll_dir / 'train.txt', tag_column=2)[1].tags == ('B-NP', 'I-NP')


def test_ner_conll_task_arrays_vocab_and_tags(conll_dir):
  task = tasks.make_task('ner_conll', path=str(conll_dir))
  names = task.info['tag_names']
  assert names == ('O', 'B-MISC', 'B-ORG', 'B-PER', 'I-PER')  # 'O' first, the rest sorted
  assert task.output_kind == 'per_step_class' and task.output_size == 5
  assert task.seq_len == 4 and task.length_buckets == (4,)
  test = task.eval_splits['test']
  assert test['inputs'].shape == test['targets'].shape == (1, 4)
  assert [names[t] for t in test['targets'][0]] == ['B-MISC', 'B-PER', 'I-PER', 'B-ORG']
  assert test['inputs'][0, 3] == vocab.OOV  # 'Brussels' is not in train
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 0, 3)
  assert b['inputs'].shape == b['targets'].shape == (3, 4)
  # Case is kept by default and folded with lowercase=True.
  assert tasks.make_task('ner_conll', path=str(conll_dir)).input_size == 8  # 6 words + PAD + OOV
  _write(conll_dir, {'valid.txt': 'peter NNP B-NP B-PER\n'})
  folded = tasks.make_task('ner_conll', path=str(conll_dir), lowercase=True)
  assert folded.eval_splits['val']['inputs'][0, 0] != vocab.OOV


def test_conll2003_file_names_are_accepted(tmp_path):
  folder = _write(tmp_path / 'c', {'eng.train': TRAIN, 'eng.testa': VALID, 'eng.testb': TEST})
  task = tasks.make_task('ner_conll', path=str(folder))
  assert task.info['files']['val'].endswith('eng.testa') and task.info['num_test'] == 1


@pytest.mark.parametrize(
  'files, match',
  [
    ({'train.txt': 'EU\nrejects O\n'}, r'train\.txt:1: one column .*needs a token and a tag'),
    ({'train.txt': 'EU NNP B-ORG\nrejects O\n'}, r'train\.txt:2: 2 columns where .* has 3'),
    ({'train.txt': '\n\n-DOCSTART- O\n\n'}, r'train\.txt: no sentences'),
    ({'train.txt': ''}, r'train\.txt: no sentences'),
    ({'test.txt': 'Berlin B-LOC\n'}, r"test\.txt:1: tag 'B-LOC' of the test split never occurs in training"),
    ({'valid.txt': None}, r'no val file in .*: expected one of valid\.txt, dev\.txt, eng\.testa'),
    ({'dev.txt': VALID}, r'two val files in .*: valid\.txt and dev\.txt'),
  ],
)
def test_malformed_files_give_one_line_errors(conll_dir, files, match):
  for name, text in files.items():
    if text is None:
      (conll_dir / name).unlink()
    else:
      (conll_dir / name).write_text(text)
  with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
    tasks.make_task('ner_conll', path=str(conll_dir))
  assert '\n' not in str(e.value)


def test_missing_folder_bad_tag_column_and_no_path(tmp_path, conll_dir):
  with pytest.raises(FileNotFoundError, match='NER data folder .* not found'):
    tasks.make_task('ner_conll', path=str(tmp_path / 'nope'))
  with pytest.raises(ValueError, match='needs path='):
    tasks.make_task('ner_conll')
  with pytest.raises(ValueError, match=r'train\.txt:3: tag_column=0 is not a tag column'):
    tasks.make_task('ner_conll', path=str(conll_dir), tag_column=0)


# --------------------------------------------------------------------------------------- scoring


def test_entity_scores_match_hand_computed_values():
  true = [['B-PER', 'I-PER', 'O', 'B-LOC'], ['B-ORG', 'I-ORG', 'I-ORG', 'O', 'B-MISC']]
  pred = [['B-PER', 'I-PER', 'O', 'B-ORG'], ['B-ORG', 'I-ORG', 'O', 'O', 'B-MISC']]
  # True entities: PER(0-1), LOC(3), ORG(0-2), MISC(4) = 4. Predicted: PER(0-1), ORG(3), ORG(0-1),
  # MISC(4) = 4. Correct (type and both boundaries): PER and MISC = 2 -> P = R = F1 = 1/2.
  s = tagging.entity_scores(true, pred)
  assert s == pytest.approx({'entity_precision': 0.5, 'entity_recall': 0.5, 'entity_f1': 0.5})
  # One correct of 1 predicted and 4 true: P = 1, R = 1/4, F1 = 2PR / (P + R) = 0.4.
  pred = [['B-PER', 'I-PER', 'O', 'O'], ['O'] * 5]
  s = tagging.entity_scores(true, pred)
  assert s == pytest.approx({'entity_precision': 1.0, 'entity_recall': 0.25, 'entity_f1': 0.4})
  # conlleval rules: an I- tag after O starts an entity (IOB1 files score like IOB2).
  assert tagging.entity_scores([['I-PER', 'I-PER']], [['B-PER', 'I-PER']])['entity_f1'] == 1.0
  # Nothing predicted: zeros, not an exception or a warning.
  assert tagging.entity_scores(true, [['O'] * 4, ['O'] * 5])['entity_f1'] == 0.0


def test_score_reads_only_valid_steps(conll_dir):
  task = tasks.make_task('ner_conll', path=str(conll_dir))
  names = task.info['tag_names']
  val = task.eval_splits['val']  # one sentence 'Peter rejects': B-PER O
  padded = {k: np.pad(v, ((0, 0), (0, 3))) if v.ndim == 2 else v for k, v in val.items()}
  pred = padded['targets'].copy()
  pred[:, 2:] = names.index('B-MISC')  # garbage entities past the length
  assert task.score('val', pred, padded) == pytest.approx(
    {'entity_precision': 1.0, 'entity_recall': 1.0, 'entity_f1': 1.0}
  )
  pred[0, 0] = names.index('B-ORG')  # a wrong type inside the sentence does count
  assert task.score('val', pred, padded)['entity_f1'] == 0.0
  assert task.metric_modes['entity_f1'] == 'max'


def test_baseline_is_the_majority_tag_per_token(conll_dir):
  task = tasks.make_task('ner_conll', path=str(conll_dir))
  # Test: German/B-MISC, Peter Blackburn/B-PER I-PER, Brussels/B-ORG (unseen -> O). The majority
  # tags find MISC and PER: P = 2/2, R = 2/3, F1 = 0.8.
  assert task.baseline.metric == 'entity_f1' and task.baseline.value == pytest.approx(0.8)
  assert task.info['all_o_accuracy_test'] == 0.0


# ----------------------------------------------------------------------------------------- TFDS


CONLL2003_TAGS = ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC']


def _conll2003_source(self, split, **kwargs):
  """Stands in for TFDS's data source of conll2003: its features, known content."""
  del self, kwargs
  tag = {t: i for i, t in enumerate(CONLL2003_TAGS)}
  sentences = {
    'train': [
      (['EU', 'rejects', 'German', 'call'], ['B-ORG', 'O', 'B-MISC', 'O']),
      (['Peter', 'Blackburn'], ['B-PER', 'I-PER']),
    ],
    'dev': [(['Peter', 'rejects'], ['B-PER', 'O'])],
    'test': [(['German', 'EU'], ['B-MISC', 'B-ORG'])],
  }[str(split)]
  return [
    {
      'tokens': np.array([t.encode() for t in toks], dtype=object),  # data sources give bytes
      'ner': np.array([tag[t] for t in tags], np.int64),
      'pos': np.zeros(len(toks), np.int64),
      'chunks': np.zeros(len(toks), np.int64),
    }
    for toks, tags in sentences
  ]


def test_conll2003_from_tfds_mock_data():
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=_conll2003_source):
    task = tasks.make_task('conll2003', max_len=8)
  assert task.info['tag_names'] == ('O', 'B-MISC', 'B-ORG', 'B-PER', 'I-PER')
  assert task.seq_len == 8 and task.info['num_train'] == 2
  test = task.eval_splits['test']
  assert [task.info['tag_names'][t] for t in test['targets'][0]] == ['B-MISC', 'B-ORG']
  assert test['inputs'][0].tolist() == [
    vocab.OOV + 1 + sorted(['Blackburn', 'EU', 'German', 'Peter', 'call', 'rejects']).index(w) for w in ('German', 'EU')
  ]
  assert task.baseline.value == pytest.approx(1.0)  # both test words were unambiguous in train


def test_conll2003_random_mock_data_is_rejected_in_one_line():
  # TFDS's random mock draws token and tag sequences of different lengths: the check must say so.
  with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
    with pytest.raises(ValueError, match=r'TFDS conll2003 train example 0: \d+ tokens but \d+ NER tags') as e:
      tasks.make_task('conll2003')
  assert '\n' not in str(e.value)


def test_conll2003_not_prepared_says_how(tmp_path):
  with pytest.raises(tfds_source.DatasetNotPreparedError) as e:
    tasks.make_task('conll2003', data_dir=str(tmp_path))
  assert tfds_source.prepare_command('conll2003', str(tmp_path)) in str(e.value)
  assert '\n' not in str(e.value)


# -------------------------------------------------------------------------------------- learning


NAMES = ('Ada', 'Bo', 'Cy', 'Di', 'Ed', 'Flo')
FILLER = ('the', 'a', 'dog', 'ran', 'today', 'and', 'then', 'slept')


def _synthetic_conll(rng, num_sentences):
  """Sentences where a capitalized name is an entity whose type and B/I tag come from context only:
  after 'in' names are places (B-LOC, I-LOC), after 'met' people (B-PER, I-PER); every name occurs
  in both roles and at both positions, so the tag of a word alone says little."""
  lines = []
  for _ in range(num_sentences):
    words = []
    for _ in range(rng.integers(1, 3)):
      words += [(w, 'O') for w in rng.choice(FILLER, rng.integers(0, 3))]
      kind = rng.choice(['LOC', 'PER'])
      words.append(('in' if kind == 'LOC' else 'met', 'O'))
      names = rng.choice(NAMES, rng.integers(1, 3), replace=False)
      words += [(n, f'{"B" if j == 0 else "I"}-{kind}') for j, n in enumerate(names)]
    words += [(w, 'O') for w in rng.choice(FILLER, rng.integers(0, 2))]
    lines += [f'{w} {t}' for w, t in words] + ['']
  return '\n'.join(lines) + '\n'


def test_tiny_bidirectional_model_learns_entities_from_context(tmp_path):
  rng = np.random.default_rng(0)
  folder = _write(
    tmp_path / 'synthetic',
    {
      'train.txt': _synthetic_conll(rng, 200),
      'valid.txt': _synthetic_conll(rng, 20),
      'test.txt': _synthetic_conll(rng, 60),
    },
  )
  task = tasks.make_task('ner_conll', path=str(folder))
  assert task.baseline.value < 0.5  # a word's most frequent tag is a poor guess here
  model = models.PerStepModel(
    rnn=dr.DeepRNN(cell='gru', features=16, num_layers=1, bidirectional=True),
    vocab_size=task.input_size,
    embed_features=16,
    out_features=task.output_size,
  )
  state, losses = fit(model, task, steps=60, batch_size=32, learning_rate=2e-2)
  params = state.params
  test = task.eval_splits['test']
  pred = model.apply({'params': params}, test['inputs'], test['lengths'], method=model.predict)
  scores = task.score('test', np.asarray(pred), test)
  # Loose: the baseline is ~0.19 here and 60 steps reach 1.0 (the synthetic tags are deterministic).
  assert scores['entity_f1'] > task.baseline.value + 0.3, (scores, task.baseline.value)
  assert float(losses[-5:].mean()) < float(losses[:5].mean())
