"""CTC: the decoders and the loss against brute force over every alignment, error rates against a
hand-written edit distance, and the 'ctc' output kind's padding."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeprnn_jax import ctc
from deeprnn_jax.tasks import base

pytest.importorskip('jiwer', reason="error rates need jiwer: pip install 'jiwer>=4'")


def _log_probs(rng, frames, symbols, sharpness=2.0):
  logits = sharpness * rng.standard_normal((frames, symbols))
  return np.asarray(jax.nn.log_softmax(logits, axis=-1), np.float64)


def _brute_force(log_probs):
  """Every path of ``symbols ** frames``: ``({labels: log p(labels)}, best path)``."""
  frames, symbols = log_probs.shape
  totals, best_path, best_lp = {}, None, -np.inf
  for path in itertools.product(range(symbols), repeat=frames):
    lp = float(sum(log_probs[t, s] for t, s in enumerate(path)))
    key = tuple(ctc.collapse(path))
    totals[key] = np.logaddexp(totals.get(key, -np.inf), lp)
    if lp > best_lp:
      best_path, best_lp = path, lp
  return totals, best_path


def test_collapse_merges_repeats_then_drops_blanks():
  assert ctc.collapse([1, 1, 0, 1, 2, 0, 0]) == [1, 1, 2]
  assert ctc.collapse([0, 0]) == [] and ctc.collapse([]) == []
  assert ctc.collapse([2, 2, 2]) == [2]


@pytest.mark.parametrize('frames,symbols,seed', [(4, 3, 0), (5, 3, 1), (6, 3, 2), (4, 4, 3), (5, 4, 4)])
def test_decoders_and_forward_algorithm_against_every_alignment(frames, symbols, seed):
  lp = _log_probs(np.random.default_rng(seed), frames, symbols)
  totals, best_path = _brute_force(lp)
  # The forward algorithm sums the same paths as the enumeration, for every label sequence.
  for labels, total in totals.items():
    np.testing.assert_allclose(ctc.sequence_log_prob(lp, labels), total, rtol=1e-10)
  # Labels with no path in this many frames have probability 0.
  assert ctc.sequence_log_prob(lp, [1] * frames) == -np.inf
  # Greedy decoding is the collapse of the single most probable path.
  assert ctc.greedy_decode(lp) == ctc.collapse(best_path)
  # A beam wide enough to keep every prefix finds the most probable label sequence, with its probability.
  best = max(totals, key=totals.get)
  labels, score = ctc.prefix_beam_search(lp, beam_size=len(totals) + 1)
  assert tuple(labels) == best
  np.testing.assert_allclose(score, totals[best], rtol=1e-10)


def test_beam_search_beats_greedy_where_many_paths_share_a_labelling():
  # Frame-wise, blank is most likely (greedy: empty), but the label 'a' summed over its alignments wins.
  p = np.array([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1]])
  lp = np.log(p)
  assert ctc.greedy_decode(lp) == []
  # p(empty) = 0.25; p(a) = 0.4*0.4 + 0.4*0.5 + 0.5*0.4 = 0.56.
  labels, score = ctc.prefix_beam_search(lp, beam_size=4)
  assert labels == [1]
  np.testing.assert_allclose(np.exp(score), 0.56, rtol=1e-12)


def test_length_limits_the_frames_read():
  lp = _log_probs(np.random.default_rng(7), 6, 3)
  assert ctc.greedy_decode(lp, length=3) == ctc.greedy_decode(lp[:3])
  assert ctc.prefix_beam_search(lp, 3, beam_size=4) == ctc.prefix_beam_search(lp[:3], beam_size=4)
  batch = np.stack([lp, lp])
  assert ctc.decode_batch(batch, [6, 3]) == [ctc.greedy_decode(lp), ctc.greedy_decode(lp[:3])]
  beam = ctc.decode_batch(batch, [6, 3], method='beam', beam_size=4)
  assert beam[1] == ctc.prefix_beam_search(lp[:3], beam_size=4)[0]
  with pytest.raises(ValueError, match="unknown CTC decoding method 'viterbi'"):
    ctc.decode_batch(batch, [6, 3], method='viterbi')
  with pytest.raises(ValueError, match='beam_size must be >= 1'):
    ctc.prefix_beam_search(lp, beam_size=0)


def _edit_distance(ref, hyp):
  """Levenshtein distance by the textbook dynamic programme."""
  d = np.arange(len(hyp) + 1)
  for i in range(1, len(ref) + 1):
    prev, d[0] = d.copy(), i
    for j in range(1, len(hyp) + 1):
      d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
  return int(d[-1])


def test_error_rates_are_corpus_edit_distances():
  refs = ['the cat sat', 'on a mat', "it's here"]
  hyps = ['the bat sat down', 'on mat', '']
  cer = sum(_edit_distance(r, h) for r, h in zip(refs, hyps)) / sum(len(r) for r in refs)
  wer = sum(_edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps)) / sum(len(r.split()) for r in refs)
  # By hand: words 2 + 1 + 2 errors over 3 + 3 + 2 words.
  assert wer == pytest.approx(5 / 8)
  out = ctc.error_rates(refs, hyps)
  assert out['cer'] == pytest.approx(cer) and out['wer'] == pytest.approx(wer)
  assert ctc.error_rates(refs, refs) == {'cer': 0.0, 'wer': 0.0}
  with pytest.raises(ValueError, match='empty reference'):
    ctc.error_rates(['a', ' '], ['a', 'b'])
  with pytest.raises(ValueError, match='2 references but 1 hypotheses'):
    ctc.error_rates(['a', 'b'], ['a'])


_ctc_loss = jax.jit(lambda logits, batch: base.loss_and_metrics('ctc', logits, batch))
_ctc_nll = jax.jit(base.ctc_nll)


def test_ctc_loss_of_a_padded_batch_is_each_utterance_alone():
  rng = np.random.default_rng(0)
  symbols = 4
  utts = [(7, [1, 2, 2]), (4, [3]), (6, [1, 3, 1, 2])]
  frames, width = 9, 5
  logits = rng.standard_normal((len(utts), frames, symbols)).astype(np.float32)
  targets = np.zeros((len(utts), width), np.int32)
  for i, (_, lab) in enumerate(utts):
    targets[i, : len(lab)] = lab
  # Garbage past each length must not matter.
  targets[1, 1:] = 2
  logits[1, 4:] = 50.0
  batch = {
    'targets': jnp.asarray(targets),
    'lengths': jnp.array([n for n, _ in utts], jnp.int32),
    'label_lengths': jnp.array([len(lab) for _, lab in utts], jnp.int32),
    'weight': jnp.ones(3),
  }
  loss, sums = _ctc_loss(jnp.asarray(logits), batch)
  # Each utterance alone, unpadded, by the NumPy forward algorithm.
  alone = [
    -ctc.sequence_log_prob(np.asarray(jax.nn.log_softmax(logits[i, :n].astype(np.float64), axis=-1)), lab)
    for i, (n, lab) in enumerate(utts)
  ]
  np.testing.assert_allclose(np.asarray(_ctc_nll(jnp.asarray(logits), batch)), alone, rtol=1e-5)
  np.testing.assert_allclose(float(loss), np.mean(alone), rtol=1e-5)
  assert float(sums['loss'][1]) == 3
  np.testing.assert_allclose(
    float(sums['loss_per_label'][0]) / float(sums['loss_per_label'][1]), sum(alone) / 8, rtol=1e-5
  )
  # And by optax with no padding at all.
  n, lab = utts[2]
  one = {
    'targets': jnp.asarray([lab], jnp.int32),
    'lengths': jnp.array([n], jnp.int32),
    'label_lengths': jnp.array([len(lab)], jnp.int32),
  }
  np.testing.assert_allclose(float(_ctc_nll(jnp.asarray(logits[2:, :n]), one)[0]), alone[2], rtol=1e-5)
  # A weight-0 row (the evaluator's filler) does not count.
  loss_w, _ = _ctc_loss(jnp.asarray(logits), {**batch, 'weight': jnp.array([1.0, 1.0, 0.0])})
  np.testing.assert_allclose(float(loss_w), np.mean(alone[:2]), rtol=1e-5)
