"""The benchmark suite: training throughput of deeprnn_jax against PyTorch and plain Flax.

``python -m benchmarks.bench [--cells lstm,gru,rnn] [--shapes small,medium,deep,long] [--output BENCHMARKS.md]``

Every comparison is a ratio measured side by side in one process: the implementations of one
(shape, cell) take turns, ``--repeats`` rounds of ``--seconds`` each, in a rotating order, so load
from elsewhere hits them alike. Reported: min / median / max of the per-round ratio.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from typing import Callable

import jax
import numpy as np

from benchmarks import impls
from benchmarks.impls import Shape

SHAPES = {
  'small': Shape('small', 32, 64, 32, 64, 1),
  'medium': Shape('medium', 64, 128, 128, 256, 2),
  'deep': Shape('deep', 32, 128, 64, 128, 8),
  'long': Shape('long', 8, 2048, 32, 128, 1),
}
# (shape, reference implementation) -> the ratio we aim for, from the speed issue.
TARGETS = {('small', 'torch'): 1.0, ('medium', 'torch'): 1.2, ('deep', 'torch'): 1.0}
FLAX_TARGET = 1.3


def throughput(step: Callable[[], None], tokens: int, seconds: float) -> float:
  """Tokens per second of ``step`` over about ``seconds`` (at least 2 steps)."""
  start, steps = time.perf_counter(), 0
  while steps < 2 or time.perf_counter() - start < seconds:
    step()
    steps += 1
  return tokens * steps / (time.perf_counter() - start)


def race(benches: dict[str, impls.Bench], tokens: int, repeats: int, seconds: float) -> dict[str, np.ndarray]:
  """Tokens/s of each bench per round, the order rotating every round."""
  for bench in benches.values():
    bench.step()
  names = list(benches)
  rates = {name: [] for name in names}
  for round_ in range(repeats):
    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
      rates[name].append(throughput(benches[name].step, tokens, seconds))
  return {name: np.asarray(r) for name, r in rates.items()}


def ratio_cell(ours: np.ndarray, theirs: np.ndarray) -> str:
  r = ours / theirs
  return f'{np.median(r):.2f} ({r.min():.2f}-{r.max():.2f})'


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def compare(shape: Shape, cell: str, args, with_torch: bool) -> dict:
  benches = {'ours': impls.ours(shape, cell), 'flax': impls.flax_stack(shape, cell)}
  if args.executions:
    for execution in ('time', 'layer'):
      benches[f'ours-{execution}'] = impls.ours(shape, cell, execution=execution)
  if with_torch:
    benches['torch'] = impls.torch_module(shape, cell)
  rates = race(benches, shape.tokens, args.repeats, args.seconds)
  return {'rates': rates, 'compile': {k: b.compile_seconds for k, b in benches.items()}}


def machine_description() -> str:
  device = jax.devices()[0]
  text = (
    f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, '
    f'JAX {jax.__version__} on {device.platform} ({device.device_kind}), Python {platform.python_version()}'
  )
  if torch_available():
    import torch  # pylint: disable=g-import-not-at-top

    text += f', PyTorch {torch.__version__} ({torch.get_num_threads()} threads)'
  return text


def load_average() -> str:
  """The 1-minute load average: other work on the machine skews every ratio, PyTorch's most."""
  return f'{os.getloadavg()[0]:.2f}' if hasattr(os, 'getloadavg') else 'n/a'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--cells', default='lstm,gru,rnn')
  parser.add_argument('--shapes', default='small,medium,deep,long')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--seconds', type=float, default=1.0, help='timing window of one round')
  parser.add_argument('--executions', action='store_true', help="also time execution='time' and 'layer'")
  parser.add_argument(
    '--output',
    default=None,
    help='write the markdown report here (only between its generated-section markers, if it has them)',
  )
  args = parser.parse_args(argv)

  cells = args.cells.split(',')
  shapes = [SHAPES[s] for s in args.shapes.split(',')]
  with_torch = torch_available()
  lines = [
    f'Machine: {machine_description()}. Date: {datetime.date.today()}. Load average at the start: {load_average()}.',
    f'Command: `python -m benchmarks.bench {" ".join(argv if argv is not None else sys.argv[1:])}`',
    '',
    'Training-step throughput (forward + backward + Adam), float32. Ratios are ours / theirs, median',
    f'(min-max) over {args.repeats} alternating rounds of {args.seconds:g} s. "ours" is `DeepRNN` with the',
    "default `execution='auto'`." + ('' if with_torch else ' PyTorch is not installed: no PyTorch column.'),
    '',
  ]
  peak = impls.matmul_flops_per_second()
  lines += [f'Large-matmul (2048^3, float32) rate of this machine under JAX: {peak / 1e9:.1f} GFLOP/s.', '']

  table = [
    '| shape | cell | ours tok/s | vs PyTorch | vs Flax RNN stack | FLOP/s of peak | compile s (ours / flax) |',
    '|---|---|---|---|---|---|---|',
  ]
  for shape in [s for s in shapes if s.name != 'long']:
    for cell in cells:
      result = compare(shape, cell, args, with_torch)
      rates, compile_s = result['rates'], result['compile']
      ours_rate = rates['ours']
      step_seconds = shape.tokens / np.median(ours_rate)
      vs_torch = ratio_cell(ours_rate, rates['torch']) if with_torch else 'n/a'
      row = (
        f'| {shape.name} (B{shape.batch} T{shape.time} in{shape.inputs} H{shape.hidden} L{shape.layers}) '
        f'| {cell} | {np.median(ours_rate):,.0f} | {vs_torch} | {ratio_cell(ours_rate, rates["flax"])} '
        f'| {impls.train_flops(shape, cell) / step_seconds / peak:.1%} '
        f'| {compile_s["ours"]:.1f} / {compile_s["flax"]:.1f} |'
      )
      table.append(row)
      for execution in ('time', 'layer'):
        if f'ours-{execution}' in rates:
          table.append(
            f'| | {cell}, execution={execution} | {np.median(rates[f"ours-{execution}"]):,.0f} '
            f'| {ratio_cell(rates[f"ours-{execution}"], rates["torch"]) if with_torch else "n/a"} '
            f'| {ratio_cell(rates[f"ours-{execution}"], rates["flax"])} | | |'
          )
      print(table[-1], flush=True)
  lines += table + ['']

  if any(s.name == 'small' for s in shapes):
    shape, seeds = SHAPES['small'], 8
    benches = {
      'vmap': impls.ours(shape, 'lstm', seeds=seeds),
      'loop': impls.ours(shape, 'lstm', seeds=seeds, seed_program='loop'),
      'single': impls.ours(shape, 'lstm'),
    }
    rates = race(benches, shape.tokens, args.repeats, args.seconds)
    # One step of the seed program trains `seeds` models: compare model-steps per second.
    lines += [
      f'**{seeds} seeds in one program vs {seeds} separate runs** (small shape, LSTM), throughput ratio: '
      f'vmapped {ratio_cell(rates["vmap"] * seeds, rates["single"])}, '
      f'looped inside the program {ratio_cell(rates["loop"] * seeds, rates["single"])}.',
      '',
    ]
    print(lines[-2], flush=True)

  if any(s.name == 'long' for s in shapes):
    shape = SHAPES['long']
    lines += [
      '**Long sequences** (B8 T2048 in32 H128, 1 layer): associative scan vs sequential scan.',
      '',
      '| cell | sequential tok/s | parallel / sequential |',
      '|---|---|---|',
    ]
    for cell in ('mingru', 'lru'):
      benches = {
        'parallel': impls.ours(shape, cell, execution='parallel'),
        'sequential': impls.ours(shape, cell, execution='layer'),
      }
      rates = race(benches, shape.tokens, args.repeats, args.seconds)
      lines.append(
        f'| {cell} | {np.median(rates["sequential"]):,.0f} | {ratio_cell(rates["parallel"], rates["sequential"])} |'
      )
      print(lines[-1], flush=True)
    lines.append('')

  lines.append(f'Load average at the end: {load_average()}.')
  report = '\n'.join(lines)
  if args.output:
    write_report(args.output, report)
  else:
    print(report)
  return 0


BEGIN, END = '<!-- generated by benchmarks.bench: begin -->', '<!-- generated by benchmarks.bench: end -->'


def write_report(path: str, report: str, begin: str = BEGIN, end: str = END) -> None:
  """Puts ``report`` between the markers ``begin`` and ``end`` of ``path``, keeping the hand-written
  text around them (the analysis of the figures); a file without them gets the section appended."""
  section = f'{begin}\n{report.rstrip()}\n{end}'
  try:
    with open(path) as f:
      text = f.read()
  except FileNotFoundError:
    text = ''
  if begin in text and end in text:
    text = text[: text.index(begin)] + section + text[text.index(end) + len(end) :]
  elif text:
    text = text.rstrip('\n') + f'\n\n{section}\n'
  else:
    text = f'# Benchmarks\n\n{section}\n'
  with open(path, 'w') as f:
    f.write(text)


if __name__ == '__main__':
  sys.exit(main())
