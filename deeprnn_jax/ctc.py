r"""Connectionist temporal classification (CTC): decoding per-frame outputs, and error rates.

Graves, Fernández, Gomez & Schmidhuber (2006), "Connectionist temporal classification: labelling
unsegmented sequence data with recurrent neural networks", ICML. A network reads ``T`` frames and
emits at every frame a distribution :math:`y_t` over ``K + 1`` symbols: the ``K`` labels and a
*blank*. Here the blank is id ``BLANK = 0`` (optax's ``ctc_loss`` default) and label ``k`` of a
task's alphabet is id ``k + 1``. A path :math:`\pi \in \{0..K\}^T` has probability
:math:`p(\pi \mid x) = \prod_t y_t[\pi_t]`; the collapse map :math:`\mathcal{B}` merges repeated
symbols and then drops blanks (``a a - a b -`` -> ``a a b``), and a label sequence :math:`l` has

.. math:: p(l \mid x) = \sum_{\pi \in \mathcal{B}^{-1}(l)} p(\pi \mid x).

Training minimises :math:`-\log p(l \mid x)` (``tasks/base.py``, output kind ``'ctc'``, with
``optax.ctc_loss``). Decoding looks for :math:`\arg\max_l p(l \mid x)`, which has no exact
polynomial algorithm; the two usual approximations, on the host in NumPy:

* ``greedy_decode`` (best path): :math:`\mathcal{B}(\arg\max_t y_t)`, the collapse of the single most
  probable path;
* ``prefix_beam_search`` (Graves 2012, "Supervised sequence labelling with recurrent neural
  networks", sec. 7.5; Hannun et al. 2014, "First-pass large vocabulary continuous speech
  recognition using bi-directional recurrent DNNs", Algorithm 1): keeps the ``beam_size`` most
  probable label prefixes, each with the exact probability of its alignments ending in a blank
  and in a non-blank. With a beam that holds every prefix it is exact.

``sequence_log_prob`` is the CTC forward algorithm (the loss, in NumPy), and ``error_rates`` the
character and word error rates of decoded text (jiwer: edit distance summed over the corpus,
divided by the reference length summed over the corpus).

Shapes: ``log_probs`` ``[T, K + 1]`` (one utterance) or ``[batch, T, K + 1]`` with ``lengths``
``[batch]``; log-probabilities (e.g. ``jax.nn.log_softmax`` of the model's logits).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from deeprnn_jax._extras import require

BLANK = 0


def collapse(path: Sequence[int], blank: int = BLANK) -> list[int]:
  r"""The collapse map :math:`\mathcal{B}`: merge runs of one symbol, then drop blanks."""
  out, prev = [], None
  for s in path:
    s = int(s)
    if s != prev and s != blank:
      out.append(s)
    prev = s
  return out


def greedy_decode(log_probs: np.ndarray, length: int | None = None, blank: int = BLANK) -> list[int]:
  """Best-path decoding of one utterance: the collapse of the per-frame argmax over its first
  ``length`` frames (all of them when None). ``log_probs``: ``[T, K + 1]``; returns label ids."""
  lp = np.asarray(log_probs)
  lp = lp if length is None else lp[: int(length)]
  return collapse(np.argmax(lp, axis=-1), blank)


def prefix_beam_search(
  log_probs: np.ndarray, length: int | None = None, *, beam_size: int = 8, blank: int = BLANK
) -> tuple[list[int], float]:
  r"""Prefix beam search over one utterance; returns ``(labels, log p(labels | x))``.

  For each kept prefix :math:`l` the search tracks :math:`p_b(l)` and :math:`p_{nb}(l)`, the
  probability of the frames so far being any path that collapses to :math:`l` and ends in a blank,
  resp. in :math:`l`'s last label. At frame :math:`t`, with :math:`p = p_b + p_{nb}`:

  * blank: :math:`p_b'(l) \mathrel{+}= p(l)\, y_t[\text{blank}]`;
  * the last label :math:`c = l_{-1}` again: :math:`p_{nb}'(l) \mathrel{+}= p_{nb}(l)\, y_t[c]` (a
    repeat collapses) and :math:`p_{nb}'(l c) \mathrel{+}= p_b(l)\, y_t[c]` (a blank separated them);
  * any other label :math:`c`: :math:`p_{nb}'(l c) \mathrel{+}= p(l)\, y_t[c]`;

  then the ``beam_size`` prefixes with the highest :math:`p'` are kept. The result is the kept
  prefix with the highest :math:`p` after the last frame. In log space throughout. Ties between
  prefixes are broken by the shorter, then the lexicographically smaller, label sequence.

  Args:
    log_probs: ``[T, K + 1]`` per-frame log-probabilities.
    length: valid frames (the rest is padding); None: all ``T``.
    beam_size: prefixes kept per frame (>= 1). A beam as large as the number of distinct prefixes
      makes the search exact: it then returns :math:`\arg\max_l p(l \mid x)`.
    blank: the blank's id.
  """
  if beam_size < 1:
    raise ValueError(f'beam_size must be >= 1, got {beam_size}')
  lp = np.asarray(log_probs, np.float64)
  lp = lp if length is None else lp[: int(length)]
  num_symbols = lp.shape[-1]
  labels = np.array([s for s in range(num_symbols) if s != blank])
  neg_inf = -np.inf
  beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg_inf)}

  def add(nxt, prefix, which, value):
    entry = nxt.setdefault(prefix, [neg_inf, neg_inf])
    entry[which] = np.logaddexp(entry[which], value)

  for frame in lp:
    nxt: dict[tuple[int, ...], list[float]] = {}

    for prefix, (p_b, p_nb) in beams.items():
      total = np.logaddexp(p_b, p_nb)
      add(nxt, prefix, 0, total + frame[blank])
      last = prefix[-1] if prefix else None
      # Every label at once: p(l) y_t[c] extends the prefix, except the repeat of its last label.
      extend = total + frame[labels]
      for c, value in zip(labels.tolist(), extend.tolist()):
        if c == last:
          add(nxt, prefix, 1, p_nb + frame[c])
          add(nxt, prefix + (c,), 1, p_b + frame[c])
        else:
          add(nxt, prefix + (c,), 1, value)
    ranked = sorted(nxt.items(), key=lambda kv: (-np.logaddexp(*kv[1]), len(kv[0]), kv[0]))
    beams = {prefix: tuple(p) for prefix, p in ranked[:beam_size]}
  best, (p_b, p_nb) = min(beams.items(), key=lambda kv: (-np.logaddexp(*kv[1]), len(kv[0]), kv[0]))
  return list(best), float(np.logaddexp(p_b, p_nb))


def decode_batch(
  log_probs: np.ndarray, lengths: np.ndarray, *, method: str = 'greedy', beam_size: int = 8, blank: int = BLANK
) -> list[list[int]]:
  """``[batch, T, K + 1]`` log-probabilities and ``[batch]`` frame lengths -> label ids per
  utterance, by ``method`` ``'greedy'`` or ``'beam'`` (``prefix_beam_search`` with ``beam_size``)."""
  if method == 'greedy':
    return [greedy_decode(lp, n, blank) for lp, n in zip(log_probs, lengths)]
  if method == 'beam':
    return [prefix_beam_search(lp, n, beam_size=beam_size, blank=blank)[0] for lp, n in zip(log_probs, lengths)]
  raise ValueError(f"unknown CTC decoding method {method!r}; use 'greedy' or 'beam'")


def sequence_log_prob(
  log_probs: np.ndarray, labels: Sequence[int], length: int | None = None, blank: int = BLANK
) -> float:
  r""":math:`\log p(l \mid x)` by the CTC forward algorithm (Graves et al. 2006, eq. 5-8).

  Over the extended sequence :math:`l' = (\text{blank}, l_1, \text{blank}, \dots, l_U, \text{blank})`
  of length :math:`2U + 1`: :math:`\alpha_1(1) = y_1[\text{blank}]`, :math:`\alpha_1(2) = y_1[l_1]`,
  :math:`\alpha_t(s) = (\alpha_{t-1}(s) + \alpha_{t-1}(s-1) + [l'_s \ne \text{blank} \wedge
  l'_s \ne l'_{s-2}]\,\alpha_{t-1}(s-2))\, y_t[l'_s]`, and
  :math:`p(l \mid x) = \alpha_T(2U + 1) + \alpha_T(2U)`. ``-inf`` when no path fits in the frames.
  """
  lp = np.asarray(log_probs, np.float64)
  lp = lp if length is None else lp[: int(length)]
  ext = [blank]
  for c in labels:
    ext += [int(c), blank]
  s_len = len(ext)
  alpha = np.full(s_len, -np.inf)
  if len(lp) == 0:
    return 0.0 if not labels else -np.inf
  alpha[0] = lp[0, blank]
  if s_len > 1:
    alpha[1] = lp[0, ext[1]]
  skip = np.array([s >= 2 and ext[s] != blank and ext[s] != ext[s - 2] for s in range(s_len)])
  for t in range(1, len(lp)):
    prev = alpha
    alpha = prev.copy()
    alpha[1:] = np.logaddexp(alpha[1:], prev[:-1])
    alpha[2:] = np.where(skip[2:], np.logaddexp(alpha[2:], prev[:-2]), alpha[2:])
    alpha = alpha + lp[t, ext]
  return float(np.logaddexp(alpha[-1], alpha[-2]) if s_len > 1 else alpha[-1])


def _jiwer():
  return require('jiwer', 'speech', 'character and word error rates (deeprnn_jax.ctc)')


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
  r"""``{'cer', 'wer'}`` of ``hypotheses`` against ``references`` over the whole corpus (jiwer):

  .. math:: \mathrm{ER} = \frac{\sum_i (S_i + D_i + I_i)}{\sum_i N_i}

  with substitutions, deletions and insertions of the Levenshtein alignment of utterance ``i``
  and :math:`N_i` its reference length, in characters (spaces count) for CER and in
  whitespace-separated words for WER. Every reference must be non-empty; an empty hypothesis is
  all deletions. Both can exceed 1 (insertions).
  """
  if len(references) != len(hypotheses):
    raise ValueError(f'{len(references)} references but {len(hypotheses)} hypotheses')
  if not references:
    raise ValueError('error rates of an empty corpus are undefined')
  if any(not r.strip() for r in references):
    raise ValueError('an empty reference has no error rate; remove utterances with empty transcripts')
  jiwer = _jiwer()
  return {
    'cer': float(jiwer.cer(list(references), list(hypotheses))),
    'wer': float(jiwer.wer(list(references), list(hypotheses))),
  }
