"""Transduction tasks: the generated pairs are right (checked in plain Python), the splits probe
length generalization, the 'sequence' loss and the decoded metrics match references, the text
loaders read what the test writes and refuse bad files in one line, and a tiny encoder-decoder
learns reversal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sacrebleu
import tensorflow_datasets as tfds

import deeprnn_jax as dr
from deeprnn_jax import tasks
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.seq2seq import RecurrentDecoder
from deeprnn_jax.tasks import base, transduction
from deeprnn_jax.tasks.base import BOS_ID, EOS_ID, OOV_ID, PAD_ID

from runner_helpers import fit

KEY = jax.random.key(0)
_loss_and_metrics = jax.jit(base.loss_and_metrics, static_argnums=0)


def _rows(batch):
  """Per pair: (source ids, target ids without EOS), checking the batch layout on the way."""
  src, tin, tgt = (np.asarray(a) for a in (batch['inputs']['source'], batch['inputs']['target_in'], batch['targets']))
  src_len, tgt_len = np.asarray(batch['lengths']['source']), np.asarray(batch['lengths']['target'])
  assert tin.shape == tgt.shape and src.dtype == tin.dtype == tgt.dtype == np.int32
  out = []
  for b in range(len(src)):
    n, m = src_len[b], tgt_len[b]
    assert np.all(src[b, n:] == PAD_ID) and np.all(src[b, :n] >= base.NUM_SEQUENCE_SPECIALS)
    assert tgt[b, m - 1] == EOS_ID and np.all(tgt[b, m:] == PAD_ID) and np.all(tin[b, m:] == PAD_ID)
    assert tin[b, 0] == BOS_ID and list(tin[b, 1:m]) == list(tgt[b, : m - 1])  # shifted by one
    out.append((list(src[b, :n]), list(tgt[b, : m - 1])))
  return out


@pytest.fixture(scope='module')
def small_tasks():
  return {
    'reverse': tasks.make_task('reverse', min_len=2, max_len=5, num_symbols=6, num_eval=16),
    'sort': tasks.make_task('sort', min_len=2, max_len=5, num_symbols=6, num_eval=16),
    'addition': tasks.make_task('addition', max_digits=3, num_eval=16),
  }


@pytest.mark.parametrize('name', ['reverse', 'sort'])
def test_reverse_and_sort_pairs_are_right(small_tasks, name):
  task = small_tasks[name]
  assert task.output_kind == 'sequence' and task.input_size == task.output_size == 4 + 6
  want = (lambda s: s[::-1]) if name == 'reverse' else sorted
  for split, (lo, hi) in [('val', (2, 5)), ('test', (2, 5)), ('test_len2x', (6, 10))]:
    pairs = _rows(task.eval_splits[split])
    assert len(pairs) == 16 and all(lo <= len(s) <= hi for s, _ in pairs)
    assert all(t == want(s) for s, t in pairs)
  batch = jax.jit(task.train_batch, static_argnums=2)(KEY, 7, 12)
  pairs = _rows(batch)
  assert all(t == want(s) and 2 <= len(s) <= 5 for s, t in pairs)


def test_addition_pairs_are_right(small_tasks):
  task = small_tasks['addition']
  tokens = task.info['target_vocab']

  def number(ids):
    text = ''.join(tokens[i] for i in ids)
    assert text == '0' or not text.startswith('0'), text  # no leading zeros
    return int(text)

  for split, (lo, hi) in [('test', (1, 3)), ('test_len2x', (4, 6))]:
    for source, target in _rows(task.eval_splits[split]):
      plus = source.index(transduction.PLUS)
      a, b = source[:plus], source[plus + 1 :]
      assert lo <= len(a) <= hi and lo <= len(b) <= hi
      assert number(a) + number(b) == number(target)
  longest_train = 2 * 3 + 1
  assert task.eval_splits['test_len2x']['lengths']['source'].min() > longest_train


def test_train_batches_are_a_pure_function_of_key_and_step(small_tasks):
  fn = jax.jit(small_tasks['reverse'].train_batch, static_argnums=2)
  a, b, c = fn(KEY, 3, 8), fn(KEY, 3, 8), fn(KEY, 4, 8)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(a['inputs']['source'], c['inputs']['source'])


def test_scan_grammar_and_its_length_split():
  pairs = dict(transduction.scan_commands())
  assert len(pairs) == 20910  # Lake & Baroni 2018; every command is distinct
  assert pairs['jump twice and walk left'] == 'JUMP JUMP LTURN WALK'
  assert pairs['turn around right'] == 'RTURN RTURN RTURN RTURN'
  assert pairs['look opposite left after run thrice'] == 'RUN RUN RUN LTURN LTURN LOOK'
  assert pairs['walk around left twice'] == ' '.join(['LTURN WALK'] * 8)
  assert max(len(a.split()) for a in pairs.values()) == 48
  task = tasks.make_task('scan', num_eval=100)
  assert task.input_size == 4 + 13 and task.output_size == 4 + 6
  train = task.train_data['arrays']
  assert int(train['target_len'].max()) - 1 <= 22
  long = task.eval_splits['test_len2x']['lengths']['target'] - 1
  assert long.min() > 22 and len(long) == 100
  # No evaluation command is trained on.
  seen = {tuple(r) for r in np.asarray(train['source'])}
  for split in ('val', 'test', 'test_len2x'):
    assert not seen & {tuple(r) for r in task.eval_splits[split]['inputs']['source']}
  words = task.info['source_vocab']
  for source, target in _rows(task.eval_splits['test'])[:20]:
    command = ' '.join(words[i] for i in source)
    assert pairs[command] == ' '.join(task.info['target_vocab'][i] for i in target)
  simple = tasks.make_task('scan', split='simple', num_eval=100)
  assert 'test_len2x' not in simple.eval_splits
  with pytest.raises(ValueError, match='unknown split'):
    tasks.make_task('scan', split='add_jump')


def test_sequence_loss_and_metrics_match_numpy():
  rng = np.random.default_rng(0)
  batch = transduction.pad_pairs([[4, 5, 6], [5], [6, 6]], [[4, 5, 6, 7], [5], [6, 4]])
  batch['weight'] = np.array([1.0, 1.0, 0.0], np.float32)  # a padding row of an eval chunk
  targets, lengths = batch['targets'], batch['lengths']['target']
  logits = rng.normal(size=targets.shape + (8,)).astype(np.float32)
  logits[1, 0, 5] = logits[1, 1, EOS_ID] = 10.0  # pair 1 is all right
  loss, sums = _loss_and_metrics('sequence', jnp.asarray(logits), batch)
  m = base.finalize(sums)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
  valid = np.arange(targets.shape[1])[None, :] < lengths[:, None]
  mask = valid * batch['weight'][:, None]
  correct = logits.argmax(-1) == targets
  assert float(loss) == pytest.approx((nll * mask).sum() / mask.sum(), rel=1e-5)
  assert m['loss'] == pytest.approx((nll * mask).sum() / mask.sum(), rel=1e-5)
  assert m['accuracy'] == pytest.approx((correct * mask).sum() / mask.sum(), rel=1e-5)
  exact = np.array([np.all(correct[b, : lengths[b]]) for b in range(3)])
  assert m['exact_match'] == pytest.approx((exact * batch['weight']).sum() / 2)
  assert m['exact_match'] == pytest.approx(0.5) and 'sequence' in base.OUTPUT_KINDS


def test_decoded_score_exact_match_and_bleu(small_tasks):
  task = small_tasks['reverse']
  split = task.eval_splits['test']
  perfect = np.asarray(split['targets'])  # EOS then PAD, as predict writes them
  assert task.score('test', perfect, split) == {'decoded_exact_match': 1.0, 'bleu': pytest.approx(100.0)}
  tokens = task.info['target_vocab']
  worse = perfect.copy()
  worse[::2, 0] = 4 if worse[0, 0] != 4 else 5  # every other output starts wrong
  worse[1, 1:] = PAD_ID  # one output never ends (no EOS): everything up to the limit counts
  got = task.score('test', worse, split)
  refs = [' '.join(tokens[i] for i in transduction.strip(r)) for r in perfect]
  hyps = [' '.join(tokens[i] for i in transduction.strip(r)) for r in worse]
  assert got['decoded_exact_match'] == pytest.approx(np.mean([h == r for h, r in zip(hyps, refs)]))
  assert got['bleu'] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize='none').score)
  assert 0 < got['bleu'] < 100


def test_position_baseline_is_the_best_source_blind_guess():
  # Training targets (EOS added): 4 5 EOS, 4 5 EOS, 6 EOS. Most frequent per position: 4, 5, EOS;
  # overall (for positions past the longest target): EOS.
  train = transduction.pad_pairs([[4]] * 3, [[4, 5], [4, 5], [6]])
  split = transduction.pad_pairs([[4]] * 2, [[4, 5, 7], [6]])
  # 4 5 7 EOS: right, right, wrong, right; 6 EOS: wrong, wrong.
  assert transduction.position_baseline(train, split) == pytest.approx(3 / 6)


# -- text ----------------------------------------------------------------------------------------


def _write(path, lines, encoding='utf-8'):
  path.write_bytes(('\n'.join(lines) + '\n').encode(encoding))
  return str(path)


def test_parallel_text_from_files(tmp_path):
  src = _write(tmp_path / 'train.pt', ['o gato', 'o cão preto', 'um gato', 'o gato preto', 'um cão'])
  tgt = _write(tmp_path / 'train.en', ['the cat', 'the black dog', 'a cat', 'the black cat', 'a dog'])
  test_src = _write(tmp_path / 'test.pt', ['o peixe', 'um gato'])
  test_tgt = _write(tmp_path / 'test.en', ['the fish', 'a cat'])
  task = tasks.make_task(
    'parallel_text',
    train_source=src,
    train_target=tgt,
    test_source=test_src,
    test_target=test_tgt,
    num_val=1,
    max_len=3,
  )
  assert task.output_kind == 'sequence' and task.info['num_train'] == 4 and task.info['num_val'] == 1
  src_vocab, tgt_vocab = task.info['source_vocab'], task.info['target_vocab']
  assert tgt_vocab[:4] == ['<pad>', '<s>', '</s>', '<unk>'] and 'fish' not in tgt_vocab  # train only
  test = task.eval_splits['test']
  assert [src_vocab[i] for i in test['inputs']['source'][0, :2]] == ['o', '<unk>']
  assert test['targets'][0, 1] == OOV_ID and test['targets'][0, 2] == EOS_ID
  # Decoding the OOV id is never credited as the unseen word: BLEU compares with the true text.
  got = task.score('test', np.asarray(test['targets']), test)
  assert got['decoded_exact_match'] == 0.5 and got['bleu'] < 100
  fn = jax.jit(task.train_batch, static_argnums=2)
  b = fn(KEY, 0, 3, data=task.train_data)
  assert b['inputs']['source'].shape == (3, 3) and b['targets'].shape == (3, 4)


def test_parallel_text_refuses_bad_files_in_one_line(tmp_path):
  good = _write(tmp_path / 'a.txt', ['one', 'two'])
  short = _write(tmp_path / 'b.txt', ['uno'])
  empty = tmp_path / 'empty.txt'
  empty.write_bytes(b'\n\n')
  latin = _write(tmp_path / 'latin1.txt', ['un', 'deux é'], encoding='latin-1')
  cases = [
    (dict(train_source=good, train_target=short), 'has 2 lines but'),
    (dict(train_source=good, train_target=str(empty)), 'is empty'),
    (dict(train_source=good, train_target=latin), r'is not UTF-8 text: byte 8 \(line 2\)'),
    (dict(train_source=good, train_target=str(tmp_path / 'missing.txt')), 'cannot read'),
    (dict(train_source=''), 'needs train_source and train_target'),
  ]
  for options, match in cases:
    options = {'test_source': good, 'test_target': good, 'train_target': good, **options}
    with pytest.raises(ValueError, match=match) as e:
      tasks.make_task('parallel_text', **options)
    assert '\n' not in str(e.value)


def test_ted_translation_on_mock_data():
  with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
    task = tasks.make_task('ted_pt_en', max_len=6, source_vocab_size=30, target_vocab_size=30)
  assert task.output_kind == 'sequence' and task.info['tfds_name'] == 'ted_hrlr_translate/pt_to_en'
  assert set(task.eval_splits) == {'val', 'test'}
  for split in task.eval_splits.values():
    assert split['inputs']['source'].shape == (12, 6) and split['targets'].shape == (12, 7)
  assert task.input_size <= 30 and task.output_size <= 30


def test_unprepared_translation_dataset_says_how_to_prepare(tmp_path):
  from deeprnn_jax.tasks import tfds_source

  with pytest.raises(tfds_source.DatasetNotPreparedError) as e:
    tasks.make_task('ted_pt_en', data_dir=str(tmp_path))
  assert "'ted_hrlr_translate/pt_to_en'" in str(e.value) and 'prepare' in str(e.value) and '\n' not in str(e.value)


# -- a tiny model learns -------------------------------------------------------------------------


def test_tiny_encoder_decoder_learns_reversal():
  task = tasks.make_task('reverse', min_len=1, max_len=4, num_symbols=4, num_eval=64)
  model = dr.Seq2Seq(
    encoder=dr.DeepRNN(cell='gru', features=32),
    decoder=RecurrentDecoder(
      vocab_size=task.output_size, embed_features=16, cell='gru', features=32, attention='dot', input_feeding=False
    ),
    source_vocab_size=task.input_size,
    embed_features=16,
  )
  state, _ = fit(model, task, steps=0, batch_size=32, learning_rate=1e-2)
  test = task.eval_splits['test']
  evaluate = jax.jit(lambda p: train_lib.eval_step(model, task, p, test))
  before = base.finalize(evaluate(state.params))['accuracy']
  after = base.finalize(evaluate(fit(model, task, steps=40, batch_size=32, learning_rate=1e-2)[0].params))['accuracy']
  assert after > before + 0.3 and after > task.baseline.value + 0.2, (before, after, task.baseline.value)
