"""What a training run shows while it runs: a progress bar on a terminal, one plain line per evaluation
in logs (cluster jobs, ``| tee``), or nothing (``train.progress``).

A line reads ``<name> step 400/1500 | train loss 0.1234 | val loss 0.2 accuracy 0.91 | 35.2 steps/s |
ETA 31 s``: metrics are means over the seeds still training, the ETA is the remaining steps at the
latest rate.
"""

from __future__ import annotations

import sys
from typing import Mapping, TextIO

import numpy as np
from tqdm.auto import tqdm

MODES = ('auto', 'bar', 'lines', 'off')


def resolve(mode: str, stream: TextIO | None = None) -> str:
  """``'auto'``: a bar when ``stream`` (stdout) is a terminal, lines otherwise."""
  if mode != 'auto':
    return mode
  stream = stream or sys.stdout
  return 'bar' if hasattr(stream, 'isatty') and stream.isatty() else 'lines'


def duration(seconds: float) -> str:
  """``seconds`` as ``1h02m``, ``3m05s`` or ``42 s`` (``?`` if not finite)."""
  if not np.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f'{h}h{m:02d}m' if h else (f'{m}m{s:02d}s' if m else f'{s} s')


class Progress:
  """The progress display of one grid point's loop (a context manager)."""

  def __init__(self, mode: str, name: str, total: int, start: int, stream: TextIO | None = None):
    self.mode, self.name, self.total, self.stream = resolve(mode, stream), name, total, stream or sys.stdout
    self.train_loss = float('nan')
    self.bar = tqdm(total=total, initial=start, dynamic_ncols=True, desc=name) if self.mode == 'bar' else None

  def __enter__(self) -> 'Progress':
    return self

  def __exit__(self, *exc) -> None:
    if self.bar is not None:
      self.bar.close()

  def step(self) -> None:
    if self.bar is not None:
      self.bar.update(1)

  def synced(
    self, step: int, rate: float, train_loss: float | None, evals: Mapping[str, Mapping[str, float]] | None
  ) -> None:
    """A sync point: the latest mean train loss and, at an evaluation, each split's mean metrics."""
    if train_loss is not None:
      self.train_loss = train_loss
    if self.bar is not None:
      self.bar.set_postfix(loss=f'{self.train_loss:.4g}', steps_per_s=f'{rate:.1f}', refresh=False)
    elif self.mode == 'lines' and evals:
      parts = [f'{self.name} step {step}/{self.total}']
      if np.isfinite(self.train_loss):  # none yet before the first train log
        parts.append(f'train loss {self.train_loss:.4g}')
      parts += [f'{split} ' + ' '.join(f'{k} {v:.4g}' for k, v in metrics.items()) for split, metrics in evals.items()]
      parts += [f'{rate:.1f} steps/s', f'ETA {duration((self.total - step) / rate if rate > 0 else float("nan"))}']
      print(' | '.join(parts), file=self.stream, flush=True)
