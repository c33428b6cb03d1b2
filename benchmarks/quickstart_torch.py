"""The quickstart grid as a researcher would run it in plain PyTorch: the speed anchor for `make demo`.

``python -m benchmarks.quickstart_torch --workers 2 --workdir DIR`` (or run this file with any Python
that has torch and numpy: it imports nothing else, so it runs in a venv without JAX).

The same work as ``configs/quickstart.py``: bracket counting (the ``parentheses`` task: 2 bracket types,
saturating counters at depth 5, 4 noise tokens at probability 0.2, 40 steps; 500 validation and test
sequences, test splits at 80 and 160 steps), an embedding of width 32, ``nn.RNN`` / ``nn.GRU`` /
``nn.LSTM`` of depth 1 or 2 and width 32, a per-step linear head over the 11 counts; Adam (learning rate
3e-3), gradient norm clipped at 1, batch 32, 1,500 steps, the training loss logged every 50 steps,
validation every 100, a checkpoint (``torch.save`` of model and optimizer) every 500, every split at the
end; 6 grid points x 8 seeds = 48 runs. One process per core (``multiprocessing``, one thread each, as
PyTorch's guidance for several processes on a CPU), runs handed out in grid order.

The data come from a NumPy generator of the same distribution (the task's definition in
``deeprnn_jax/tasks/synthetic.py``), drawn on the host as a PyTorch user would; not the same numbers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

import numpy as np

TYPES, DEPTH_MAX, NOISE, NOISE_PROB = 2, 5, 4, 0.2
VOCAB, CLASSES = 1 + 2 * TYPES + NOISE, TYPES * DEPTH_MAX + 1
SEQ_LEN, NUM_EVAL, WIDTH, LR, STEPS, BATCH = 40, 500, 32, 3e-3, 1500, 32
LOG_EVERY, EVAL_EVERY, CKPT_EVERY, EVAL_BATCH = 50, 100, 500, 512
GRID = [(cell, depth) for cell in ('rnn', 'gru', 'lstm') for depth in (1, 2)]
SEEDS = tuple(range(8))  # as configs/quickstart.py (tests/test_benchmarks.py checks they agree)


def parentheses(rng: np.random.Generator, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
  """Tokens and per-step open-bracket totals ``[batch, length]`` (see ``parentheses_batch``)."""
  noise = rng.random((batch, length)) < NOISE_PROB
  is_open = rng.random((batch, length)) < 0.5
  kind = rng.integers(0, TYPES, (batch, length))
  tokens = np.where(
    noise, 1 + 2 * TYPES + rng.integers(0, NOISE, (batch, length)), 1 + kind + np.where(is_open, 0, TYPES)
  )
  counters, targets = np.zeros((batch, TYPES), np.int64), np.zeros((batch, length), np.int64)
  for t in range(length):
    delta = (tokens[:, t, None] == 1 + np.arange(TYPES)).astype(np.int64) - (
      tokens[:, t, None] == 1 + TYPES + np.arange(TYPES)
    )
    counters = np.clip(counters + delta, 0, DEPTH_MAX)
    targets[:, t] = counters.sum(-1)
  return tokens, targets


def train_one(args: tuple[str, int, int, str]) -> float:
  """Trains one run; returns its final test accuracy."""
  import torch  # pylint: disable=g-import-not-at-top  (after the pool forked: one thread per process)
  from torch import nn  # pylint: disable=g-import-not-at-top

  cell, depth, seed, workdir = args
  torch.set_num_threads(1)
  torch.manual_seed(seed)
  rng = np.random.default_rng(seed)
  splits = {
    name: parentheses(np.random.default_rng(10_000 + i), NUM_EVAL, length)
    for i, (name, length) in enumerate(
      [('val', SEQ_LEN), ('test', SEQ_LEN), ('test_len2x', 2 * SEQ_LEN), ('test_len4x', 4 * SEQ_LEN)]
    )
  }

  class Model(nn.Module):
    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(VOCAB, WIDTH)
      self.rnn = {'rnn': nn.RNN, 'gru': nn.GRU, 'lstm': nn.LSTM}[cell](WIDTH, WIDTH, depth, batch_first=True)
      self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x):
      return self.head(self.rnn(self.embed(x))[0])

  model = Model()
  opt = torch.optim.Adam(model.parameters(), lr=LR)
  loss_fn = nn.CrossEntropyLoss()
  run_dir = os.path.join(workdir, f'{cell}-d{depth}-w{WIDTH}-s{seed}')
  os.makedirs(run_dir, exist_ok=True)
  log = open(os.path.join(run_dir, 'metrics.jsonl'), 'w')

  def evaluate(names):
    model.eval()
    out = {}
    with torch.no_grad():
      for name in names:
        x, y = splits[name]
        correct = loss = 0.0
        for i in range(0, len(x), EVAL_BATCH):
          xb, yb = torch.from_numpy(x[i : i + EVAL_BATCH]), torch.from_numpy(y[i : i + EVAL_BATCH])
          logits = model(xb)
          loss += float(loss_fn(logits.reshape(-1, CLASSES), yb.reshape(-1))) * yb.numel()
          correct += float((logits.argmax(-1) == yb).sum())
        out[name] = {'loss': loss / y.size, 'accuracy': correct / y.size}
    model.train()
    return out

  for step in range(1, STEPS + 1):
    x, y = parentheses(rng, BATCH, SEQ_LEN)
    loss = loss_fn(model(torch.from_numpy(x)).reshape(-1, CLASSES), torch.from_numpy(y).reshape(-1))
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if step % LOG_EVERY == 0:
      log.write(json.dumps({'step': step, 'split': 'train', 'loss': loss.item()}) + '\n')
    if step % EVAL_EVERY == 0 or step == STEPS:
      results = evaluate(list(splits) if step == STEPS else ['val'])
      for name, metrics in results.items():
        log.write(json.dumps({'step': step, 'split': name, **metrics}) + '\n')
    if step % CKPT_EVERY == 0:
      torch.save(
        {'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step}, os.path.join(run_dir, 'checkpoint.pt')
      )
  log.close()
  return results['test']['accuracy']


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workers', type=int, default=os.cpu_count())
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--steps', type=int, default=STEPS, help='fewer for a smoke test')
  args = parser.parse_args(argv)
  globals()['STEPS'] = args.steps  # read by the forked workers
  runs = [(cell, depth, seed, args.workdir) for cell, depth in GRID for seed in SEEDS]
  start = time.perf_counter()
  with multiprocessing.get_context('fork').Pool(args.workers) as pool:
    accuracy = pool.map(train_one, runs, chunksize=1)
  seconds = time.perf_counter() - start
  print(
    json.dumps(
      {'seconds': seconds, 'runs': len(runs), 'workers': args.workers, 'mean_test_accuracy': float(np.mean(accuracy))}
    )
  )
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
