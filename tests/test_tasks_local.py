"""Tasks from the files a researcher already has: aclImdb (folder and archive), GLUE SST-2 tsv,
CSV / TSV / JSON Lines tables, plain text; each malformed layout is a one-line error naming the file."""

import json
import os
import tarfile

import jax
import numpy as np
import pytest

from deeprnn_jax import tasks
from deeprnn_jax.tasks import language_model, local_text, pipeline, shakespeare, tfds_text, vocab

KEY = jax.random.key(0)

IMDB = {  # split -> folder -> {file name: review}
  'train': {
    'neg': {
      '0_3.txt': 'A dull, bad film.<br /><br />Bad.',
      '10_1.txt': 'Awful plot, bad acting.',
      '2_2.txt': 'bad bad bad',
    },
    'pos': {'1_9.txt': 'A good film!', '3_10.txt': 'Great acting, good plot.', '12_8.txt': 'good'},
  },
  'test': {
    'neg': {'0_2.txt': 'bad zebra', '4_4.txt': 'très mauvais: bad'},
    'pos': {'1_7.txt': 'good zebra', '5_10.txt': 'good good'},
  },
}


def write_imdb(root, reviews=IMDB):
  """``root/aclImdb/{train,test}/{neg,pos}/*.txt`` plus the parts the loader must skip."""
  for split, folders in reviews.items():
    for folder, files in folders.items():
      os.makedirs(root / 'aclImdb' / split / folder, exist_ok=True)
      for name, text in files.items():
        (root / 'aclImdb' / split / folder / name).write_text(text, encoding='utf-8')
  os.makedirs(root / 'aclImdb' / 'train' / 'unsup', exist_ok=True)
  (root / 'aclImdb' / 'train' / 'unsup' / '0_0.txt').write_text('unlabelled')
  (root / 'aclImdb' / 'imdb.vocab').write_text('the\nbad\n')
  (root / 'aclImdb' / 'train' / 'labeledBow.feat').write_text('0:1\n')
  return root / 'aclImdb'


def tar_gz(folder, archive):
  with tarfile.open(archive, 'w:gz') as tar:
    tar.add(folder, arcname=os.path.basename(folder))
  return archive


def one_line_error(kind, fn, *args, **kwargs):
  with pytest.raises(kind) as e:
    fn(*args, **kwargs)
  msg = str(e.value)
  assert '\n' not in msg, msg
  return msg


def same_splits(a, b):
  assert a.eval_splits.keys() == b.eval_splits.keys()
  for split in a.eval_splits:
    for k in a.eval_splits[split]:
      np.testing.assert_array_equal(a.eval_splits[split][k], b.eval_splits[split][k])


# --------------------------------------------------------------------------------------------- IMDB


def test_imdb_from_the_folder_and_from_the_archive_is_one_task(tmp_path):
  folder = write_imdb(tmp_path)
  archive = tar_gz(folder, tmp_path / 'aclImdb_v1.tar.gz')
  opts = dict(num_val=2, max_len=6, vocab_size=30)
  task = tasks.make_task('imdb', path=str(folder), **opts)
  same_splits(task, tasks.make_task('imdb', path=str(archive), **opts))
  same_splits(task, tasks.make_task('imdb', path=str(tmp_path), **opts))  # the folder holding aclImdb/
  # The loader is the TFDS tasks' pipeline over the reviews in numeric file order, neg = 0, pos = 1;
  # unsup/ and the bag-of-words files are not read.
  order = lambda files: [files[n] for n in sorted(files, key=lambda n: int(n.split('_')[0]))]
  texts = {s: order(IMDB[s]['neg']) + order(IMDB[s]['pos']) for s in IMDB}
  labels = {s: [0] * len(IMDB[s]['neg']) + [1] * len(IMDB[s]['pos']) for s in IMDB}
  assert texts['train'][:3] == ['A dull, bad film.<br /><br />Bad.', 'bad bad bad', 'Awful plot, bad acting.']
  direct = tfds_text.text_classification_task(
    name='imdb',
    train_texts=texts['train'],
    train_labels=labels['train'],
    test_texts=texts['test'],
    test_labels=labels['test'],
    num_classes=2,
    buckets=None,
    threshold=0.85,
    **opts,
  )
  same_splits(task, direct)
  assert task.info['num_train'] == 4 and task.info['num_test'] == 4
  assert task.info['label_names'] == ['neg', 'pos'] and task.info['source'] == str(folder)
  assert task.threshold.value == 0.85 and task.baseline.value == 0.5
  # 'zebra' is only in test; 'très' and 'mauvais' too: OOV.
  test = task.eval_splits['test']
  assert vocab.OOV in test['inputs'][0][:2]
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 0, 3)
  assert b['inputs'].shape == (3, 6)


def test_imdb_layout_mistakes_are_one_line_errors_naming_the_file(tmp_path):
  folder = write_imdb(tmp_path / 'ok')
  msg = one_line_error(FileNotFoundError, tasks.make_task, 'imdb', path=str(tmp_path / 'nope'))
  assert str(tmp_path / 'nope') in msg and 'aclImdb' in msg

  missing = write_imdb(tmp_path / 'missing')
  for f in os.listdir(missing / 'test' / 'neg'):
    os.remove(missing / 'test' / 'neg' / f)
  os.rmdir(missing / 'test' / 'neg')
  msg = one_line_error(FileNotFoundError, tasks.make_task, 'imdb', path=str(missing))
  assert f'{missing}: no test/neg/ folder' in msg and '{train,test}/{neg,pos}/*.txt' in msg

  empty = write_imdb(tmp_path / 'empty')
  (empty / 'train' / 'pos' / '7_7.txt').write_text('  \n')
  msg = one_line_error(ValueError, tasks.make_task, 'imdb', path=str(empty))
  assert msg.startswith(f'{empty / "train" / "pos" / "7_7.txt"}: empty review file')

  latin = write_imdb(tmp_path / 'latin')
  (latin / 'test' / 'pos' / '9_9.txt').write_bytes('un film très bon\nsuperbe'.encode('latin-1'))
  msg = one_line_error(ValueError, tasks.make_task, 'imdb', path=str(latin))
  assert msg.startswith(f'{latin / "test" / "pos" / "9_9.txt"}: not UTF-8 text (byte 0xe8 on line 1)')
  assert 'iconv' in msg

  archive = tar_gz(latin, tmp_path / 'latin.tar.gz')
  msg = one_line_error(ValueError, tasks.make_task, 'imdb', path=str(archive))
  assert msg.startswith(f'{archive}:aclImdb/test/pos/9_9.txt: not UTF-8 text')

  partial = tmp_path / 'partial.tar.gz'
  with tarfile.open(partial, 'w:gz') as tar:
    tar.add(folder / 'train', arcname='aclImdb/train')
  msg = one_line_error(ValueError, tasks.make_task, 'imdb', path=str(partial))
  assert msg.startswith(f'{partial}: no aclImdb/test/neg/*.txt reviews in the archive')

  corrupt = tmp_path / 'aclImdb_v1.tar.gz'
  corrupt.write_bytes(tar_gz(folder, tmp_path / 'whole.tar.gz').read_bytes()[:300])  # a cut download
  msg = one_line_error(ValueError, tasks.make_task, 'imdb', path=str(corrupt))
  assert msg.startswith(f'{corrupt}: not a readable tar archive') and 'download' in msg

  msg = one_line_error(ValueError, tasks.make_task, 'imdb', path=str(folder), data_dir=str(tmp_path))
  assert 'not both' in msg


# -------------------------------------------------------------------------------------------- SST-2


def write_sst2(root, train=None, dev=None):
  root.mkdir(parents=True, exist_ok=True)
  train = train or (
    'sentence\tlabel\n'
    'a "gripping" film \t1\nit \'s dull\t0\nfunny , warm\t1\nflat and dull\t0\n'
    'warm , gripping\t1\ntedious\t0\n'
  )
  dev = dev or 'sentence\tlabel\nwarm and funny\t1\ndull zebra\t0\n'
  (root / 'train.tsv').write_text(train, encoding='utf-8')
  (root / 'dev.tsv').write_text(dev, encoding='utf-8')
  (root / 'test.tsv').write_text('index\tsentence\n0\tno labels here\n', encoding='utf-8')  # GLUE's
  return root


def test_sst2_from_the_glue_folder_tests_on_dev_and_carves_val_from_train(tmp_path):
  folder = write_sst2(tmp_path / 'SST-2')
  splits = local_text.read_sst2(folder)
  assert splits['train'].texts[0] == 'a "gripping" film '  # GLUE's tsv is unquoted: quotes are text
  assert splits['train'].labels == [1, 0, 1, 0, 1, 0] and splits['dev'].labels == [1, 0]
  task = tasks.make_task('sst2', path=str(folder), num_val=2, max_len=8, vocab_size=40)
  same_splits(task, tasks.make_task('sst2', path=str(tmp_path), num_val=2, max_len=8, vocab_size=40))
  direct = tfds_text.text_classification_task(
    name='sst2',
    train_texts=splits['train'].texts,
    train_labels=splits['train'].labels,
    test_texts=splits['dev'].texts,
    test_labels=splits['dev'].labels,
    num_classes=2,
    vocab_size=40,
    max_len=8,
    num_val=2,
    buckets=None,
    threshold=0.8,
  )
  same_splits(task, direct)
  assert task.info['num_test'] == 2 and task.info['num_val'] == 2 and task.info['num_train'] == 4


@pytest.mark.parametrize(
  'train, dev, kind, problem',
  [
    (None, 'sentence\tlabel\nfine\t2\n', ValueError, "dev.tsv line 2: label '2' is not 0 or 1"),
    ('text\tlabel\nfine\t1\n', None, ValueError, "train.tsv: no column 'sentence' in the header"),
    ('sentence\tlabel\nfine\t1\tx\n', None, ValueError, 'train.tsv line 2: 3 fields, the header has 2'),
    ('\n', None, ValueError, 'train.tsv: empty file'),
    ('sentence\tlabel\n', None, ValueError, 'train.tsv: no examples (only a header)'),
  ],
)
def test_sst2_malformed_files_are_one_line_errors(tmp_path, train, dev, kind, problem):
  folder = write_sst2(tmp_path / 'SST-2', train, dev)
  msg = one_line_error(kind, tasks.make_task, 'sst2', path=str(folder))
  assert f'{folder}/{problem}' in msg, msg


def test_sst2_missing_file_and_wrong_encoding(tmp_path):
  folder = write_sst2(tmp_path / 'SST-2')
  os.remove(folder / 'dev.tsv')
  msg = one_line_error(FileNotFoundError, tasks.make_task, 'sst2', path=str(folder))
  assert msg.startswith(f'{folder}: no dev.tsv') and 'GLUE SST-2/' in msg
  write_sst2(folder)
  (folder / 'train.tsv').write_bytes('sentence\tlabel\nfine\t1\nna\xefve\t0\n'.encode('latin-1'))
  msg = one_line_error(ValueError, tasks.make_task, 'sst2', path=str(folder))
  assert msg.startswith(f'{folder / "train.tsv"}: not UTF-8 text (byte 0xef on line 3)')


# ---------------------------------------------------------------------------- CSV / TSV / JSON Lines


def test_text_classification_from_a_folder_of_csv_and_jsonl_with_string_labels(tmp_path):
  (tmp_path / 'train.csv').write_text(
    'id,text,topic\n'
    '1,"Goals, goals and a late winner",sports\n'
    '2,Markets fall as rates rise,business\n'
    '3,"The match, the cup",sports\n'
    '4,Election results are in,world\n'
    '5,Shares rise,business\n'
    '\n'
    '6,"A summit, a treaty",world\n',
    encoding='utf-8',
  )
  (tmp_path / 'dev.jsonl').write_text(
    json.dumps({'text': 'Cup final tonight', 'topic': 'sports'}) + '\n', encoding='utf-8'
  )
  (tmp_path / 'test.jsonl').write_text(
    '\n'.join(
      json.dumps(r)
      for r in [
        {'text': 'Shares fall', 'topic': 'business'},
        {'text': 'A treaty', 'topic': 'world'},
        {'text': 'Late goals', 'topic': 'sports'},
      ]
    )
    + '\n',
    encoding='utf-8',
  )
  (tmp_path / 'notes.txt').write_text('not a split')
  task = tasks.make_task('text_classification', path=str(tmp_path), label_column='topic', max_len=8, vocab_size=100)
  assert task.output_size == 3 and task.info['label_names'] == ['business', 'sports', 'world']
  np.testing.assert_array_equal(task.eval_splits['test']['targets'], [0, 2, 1])
  np.testing.assert_array_equal(task.eval_splits['val']['targets'], [1])  # dev.jsonl, not carved
  assert task.info['num_train'] == 6 and task.info['num_val'] == 1
  # 'cup' is in train, 'final' and 'tonight' only in the validation file: OOV.
  val = task.eval_splits['val']['inputs'][0]
  assert val[0] != vocab.OOV and list(val[1:3]) == [vocab.OOV, vocab.OOV]
  # Quoted commas stay inside the text ('Goals, goals and a late winner' is one field): 'late' and
  # 'goals' of the test text 'Late goals' are training words.
  assert vocab.OOV not in task.eval_splits['test']['inputs'][2][:2]
  b = jax.jit(task.train_batch, static_argnums=2)(KEY, 0, 4)
  assert b['inputs'].shape == (4, 8) and int(b['targets'].max()) < 3


def test_text_classification_from_one_file_with_a_split_column_and_integer_labels(tmp_path):
  rows = [
    ('train', 'alpha beta', 10),
    ('train', 'beta gamma', 2),
    ('train', 'gamma alpha', 10),
    ('train', 'beta beta', 2),
    ('train', 'alpha alpha', 10),
    ('validation', 'beta', 2),
    ('test', 'alpha', 10),
    ('test', 'gamma delta', 2),
  ]
  jsonl = tmp_path / 'all.jsonl'
  jsonl.write_text(''.join(json.dumps({'split': s, 'review': t, 'stars': y}) + '\n' for s, t, y in rows))
  task = tasks.make_task(
    'text_classification', path=str(jsonl), text_column='review', label_column='stars', max_len=4, vocab_size=10
  )
  assert task.info['label_names'] == ['2', '10']  # numeric order, not string order
  np.testing.assert_array_equal(task.eval_splits['test']['targets'], [1, 0])
  assert task.info['num_val'] == 1
  # The same rows as a TSV (labels are strings there): the same task.
  tsv = tmp_path / 'all.tsv'
  tsv.write_text('split\treview\tstars\n' + ''.join(f'{s}\t{t}\t{y}\n' for s, t, y in rows))
  same_splits(
    task,
    tasks.make_task(
      'text_classification', path=str(tsv), text_column='review', label_column='stars', max_len=4, vocab_size=10
    ),
  )
  # Without validation rows, num_val examples are carved from train.
  csv_file = tmp_path / 'no_val.csv'
  csv_file.write_text('split,text,label\n' + ''.join(f'{s},{t},{y}\n' for s, t, y in rows if s != 'validation'))
  carved = tasks.make_task('text_classification', path=str(csv_file), num_val=2, max_len=4, vocab_size=10)
  tr, va = pipeline.carve_validation(5, 2)
  np.testing.assert_array_equal(carved.eval_splits['val']['targets'], [1 if rows[i][2] == 10 else 0 for i in va])


@pytest.mark.parametrize(
  'name, content, options, kind, problem',
  [
    (
      'train.csv',
      'body,label\nhi,a\nho,b\n',
      {},
      ValueError,
      "train.csv: no column 'text' in the header (columns: 'body', 'label'); name the right one with the "
      'task option text_column=...',
    ),
    (
      'train.jsonl',
      '{"text": "hi", "label": "a"}\n{"text": "ho"}\n',
      {},
      ValueError,
      "train.jsonl line 2: no 'label' field (fields: 'text'); name the right one with the task option label_column=...",
    ),
    (
      'train.jsonl',
      '{"text": "hi", "label": "a"}\n{"text": "ho", "label": "b"\n',
      {},
      ValueError,
      'train.jsonl line 2: not valid JSON',
    ),
    (
      'train.jsonl',
      '{"text": "hi", "label": "a"}\n{"text": "ho", "label": 0.5}\n',
      {},
      ValueError,
      'train.jsonl line 2: label 0.5 is float; labels are strings or integers',
    ),
    (
      'test.csv',
      'text,label\nhi,a\nho,c\n',
      {},
      ValueError,
      "test.csv line 3: label 'c' does not occur in the training data (its labels: a, b)",
    ),
    ('test.csv', 'text,label\nhi,\n', {}, ValueError, 'test.csv line 2: empty label'),
    ('train.csv', '', {}, ValueError, 'train.csv: empty file'),
    ('train.csv', 'text,label\n', {}, ValueError, 'train.csv: no examples (only a header)'),
    (
      'train.csv',
      'text,label\nhi,a\nho,a\n',
      {},
      ValueError,
      "train.csv: every training example has label 'a'; a classifier needs at least 2 classes",
    ),
    ('train.csv', 'text,label\n"hi,a\n', {}, ValueError, 'train.csv line 2: not valid CSV (unexpected end of data)'),
    ('train.csv', 'text,label\nhi, there,a\n', {}, ValueError, 'train.csv line 2: 3 fields, the header has 2'),
    ('test.csv', b'text,label\nna\xefve,a\n', {}, ValueError, 'test.csv: not UTF-8 text (byte 0xef on line 2)'),
  ],
)
def test_text_classification_malformed_tables_are_one_line_errors(tmp_path, name, content, options, kind, problem):
  (tmp_path / 'train.csv').write_text('text,label\nhi,a\nho,b\n')
  (tmp_path / 'test.csv').write_text('text,label\nhi,a\n')
  if name.endswith('.jsonl'):
    os.remove(tmp_path / name.replace('.jsonl', '.csv'))
  file = tmp_path / name
  file.write_bytes(content) if isinstance(content, bytes) else file.write_text(content)
  msg = one_line_error(kind, tasks.make_task, 'text_classification', path=str(tmp_path), num_val=0, **options)
  assert f'{tmp_path}/{problem}' in msg, msg


def test_text_classification_path_mistakes(tmp_path):
  msg = one_line_error(ValueError, tasks.make_task, 'text_classification')
  assert msg.startswith('text_classification needs path=')
  (tmp_path / 'train.csv').write_text('text,label\nhi,a\nho,b\n')
  msg = one_line_error(FileNotFoundError, tasks.make_task, 'text_classification', path=str(tmp_path))
  assert msg.startswith(f'{tmp_path}: no test file (test.csv, test.tsv, test.jsonl or test.json)')
  (tmp_path / 'test.csv').write_text('text,label\nhi,a\n')
  (tmp_path / 'test.jsonl').write_text('{"text": "hi", "label": "a"}\n')
  msg = one_line_error(ValueError, tasks.make_task, 'text_classification', path=str(tmp_path))
  assert msg == f'{tmp_path}: two test files (test.csv and test.jsonl); keep one'
  msg = one_line_error(ValueError, tasks.make_task, 'text_classification', path=str(tmp_path / 'train.csv'))
  assert msg.startswith(f"{tmp_path / 'train.csv'}: no column 'split' in the header")
  one = tmp_path / 'one.csv'
  one.write_text('split,text,label\ntrain,hi,a\ntrain,ho,b\nholdout,hu,a\n')
  msg = one_line_error(ValueError, tasks.make_task, 'text_classification', path=str(one))
  assert msg.startswith(f"{one} line 4: split 'holdout' is not one of train, val, test")
  one.write_text('split,text,label\ntrain,hi,a\ntrain,ho,b\n')
  msg = one_line_error(ValueError, tasks.make_task, 'text_classification', path=str(one))
  assert msg.startswith(f"{one}: no example has split = 'test'")
  other = tmp_path / 'data.parquet'
  other.write_bytes(b'PAR1')
  msg = one_line_error(ValueError, tasks.make_task, 'text_classification', path=str(other))
  assert msg.startswith(f"{other}: unknown table format '.parquet'")
  msg = one_line_error(FileNotFoundError, tasks.make_task, 'text_classification', path=str(tmp_path / 'no.csv'))
  assert str(tmp_path / 'no.csv') in msg


# --------------------------------------------------------------------------------- character LM


def test_char_lm_splits_a_text_file_contiguously_as_tfds_tiny_shakespeare_does(tmp_path):
  for n in (100, 1003, 4097, 1115394):  # 1115394: the length of tiny Shakespeare
    text = 'x' * n
    i = int(n * 0.9)  # TFDS tiny_shakespeare's split, verbatim
    j = int((n - i) * 0.5)
    assert [len(p) for p in local_text.split_text(text, 0.05, 0.05)] == [i, j, n - i - j]
  # char_lm (language_model.py, stateful) reads one text file split the same way; a character of the
  # val/test parts must occur in the training part.
  text = 'é' + ''.join(chr(ord('a') + (k * 7) % 26) + (' ' if k % 5 == 4 else '') for k in range(400)) + '\r\né'
  file = tmp_path / 'book.txt'
  file.write_bytes(text.encode('utf-8'))
  task = tasks.make_task('char_lm', path=str(file), seq_len=8, val_fraction=0.1, test_fraction=0.2)
  train, val, test = local_text.split_text(text, 0.1, 0.2)
  assert train + val + test == text and test.endswith('\r\né')
  tokens = {s: language_model.tokenize(t, 'char') for s, t in (('train', train), ('val', val), ('test', test))}
  assert task.stateful and task.stream_tokens == len(tokens['train']) == task.info['train_tokens']
  assert task.info['val_tokens'] == len(tokens['val']) and task.info['test_tokens'] == len(tokens['test'])
  assert task.info['files']['train'] == f'{file} (train part)'
  # tiny_shakespeare from Karpathy's input.txt: TFDS's 90/5/5 split, in random windows (char_lm_task).
  train, val, test = local_text.split_text(text, 0.05, 0.05)
  same_splits(
    tasks.make_task('tiny_shakespeare', path=str(file), seq_len=8),
    shakespeare.char_lm_task(name='tiny_shakespeare', train_text=train, val_text=val, test_text=test, seq_len=8),
  )


def test_char_lm_file_mistakes_are_one_line_errors(tmp_path):
  msg = one_line_error(ValueError, tasks.make_task, 'char_lm')
  assert msg.startswith('char_lm needs path=')
  msg = one_line_error(FileNotFoundError, tasks.make_task, 'char_lm', path=str(tmp_path / 'no.txt'))
  assert msg.startswith(f'{tmp_path / "no.txt"}: no such file or folder')
  empty = tmp_path / 'empty.txt'
  empty.write_text('')
  assert one_line_error(ValueError, tasks.make_task, 'char_lm', path=str(empty)).startswith(f'{empty}: empty file')
  latin = tmp_path / 'latin.txt'
  latin.write_bytes('ligne un\nça va\n'.encode('latin-1'))
  msg = one_line_error(ValueError, tasks.make_task, 'char_lm', path=str(latin))
  assert msg.startswith(f'{latin}: not UTF-8 text (byte 0xe7 on line 2)')
  short = tmp_path / 'short.txt'
  short.write_text('abcdefghij' * 3)
  msg = one_line_error(ValueError, tasks.make_task, 'char_lm', path=str(short), seq_len=64)
  assert msg.startswith(f'{short} (train part): 28 training tokens are too few for seq_len=64')
  msg = one_line_error(ValueError, tasks.make_task, 'char_lm', path=str(short), val_fraction=0.6, test_fraction=0.5)
  assert 'must be in (0, 1) and add up to less than 1' in msg


# ------------------------------------------------------------------------------------ through the runner


TINY = [
  '--config.model.depth=1',
  '--config.model.width=8',
  '--config.model.embed_features=8',
  '--config.train.num_steps=2',
  '--config.train.batch_size=4',
  '--config.train.log_every_steps=1',
  '--config.train.eval_every_steps=2',
  '--config.train.checkpoint_every_steps=2',
  '--config.train.eval_batch_size=8',
  '--config.train.progress=off',
  '--config.logging.wandb_mode=disabled',
  '--config.task.options.max_len=8',
  '--config.task.options.vocab_size=50',
  '--config.task.options.num_val=2',
]


def test_imdb_sentiment_config_trains_from_the_aclimdb_archive(tmp_path, capsys):
  from deeprnn_jax.training import runlog  # pylint: disable=g-import-not-at-top
  from experiments import run  # pylint: disable=g-import-not-at-top

  archive = tar_gz(write_imdb(tmp_path / 'data'), tmp_path / 'aclImdb_v1.tar.gz')
  workdir = str(tmp_path / 'runs')
  argv = ['--config', 'configs/imdb_sentiment.py', '--workdir', workdir, '--no-report', *TINY]
  assert run.main(argv + [f'--config.task.options.path={archive}']) == 0
  (run_id,) = [d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d))]
  assert runlog.read_status(os.path.join(workdir, run_id))['state'] == 'finished'
  splits = {r['split'] for r in runlog.read_metrics(os.path.join(workdir, run_id, runlog.METRICS_FILE))}
  assert {'train', 'val', 'test'} <= splits
  # A missing folder stops the run before any compute: one line, exit code 2.
  capsys.readouterr()
  assert run.main(argv + [f'--config.task.options.path={tmp_path / "aclImdb"}']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and '\n' not in err and f'{tmp_path / "aclImdb"}: no such file' in err
