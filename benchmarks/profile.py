"""Where the time of one training step goes: the compiled step's ops, ranked by time.

``python -m benchmarks.profile [--shape medium] [--cell lstm] [--impl ours|flax|lm|lm-runner] [--execution time]``

``--impl lm``: the word language model's step of ``configs/reproduce/ptb_lm.py`` (``benchmarks.lm``;
``lm-runner``: the runner's step program of it), on PTB when found, else a synthetic stream.

Traces a few steps of one implementation from ``benchmarks.impls`` with ``jax.profiler`` and reads
the trace back: the wall time per step, the ops the runtime executed per step ("thunks" on
XLA:CPU) and the busiest ops with their count per step and mean duration. The ops of a time loop
run in dependency order, step after step, so for a small recurrent model ``ops per step x per-op
cost`` is what a training step costs; how that adds up is in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import collections
import glob
import sys
import tempfile
import time

import jax
from jax.profiler import ProfileData

from benchmarks import impls
from benchmarks.bench import SHAPES
from deeprnn_jax.training import host_memory

# Trace events that contain other events (the executor, Python frames, loops) rather than being ops.
_CONTAINERS = ('ThunkExecutor', '$', 'while', 'conditional', 'call')


def op_times(trace_dir: str, steps: int) -> tuple[collections.Counter, collections.Counter]:
  """Per step, over the runtime's threads: nanoseconds and executions of each op."""
  path = glob.glob(f'{trace_dir}/**/*.xplane.pb', recursive=True)[0]
  nanos, counts = collections.Counter(), collections.Counter()
  for plane in ProfileData.from_file(path).planes:
    for line in plane.lines:
      if line.name == 'python':
        continue
      for event in line.events:
        if not event.name.startswith(_CONTAINERS):
          nanos[event.name] += event.duration_ns / steps
          counts[event.name] += 1 / steps
  return nanos, counts


def profile_step(bench: impls.Bench, steps: int = 3):
  """``(seconds per step untraced, op nanoseconds, op counts)``, the last two per step."""
  for _ in range(3):  # warm up outside the trace
    bench.step()
  start = time.perf_counter()
  for _ in range(steps):
    bench.step()
  wall = (time.perf_counter() - start) / steps
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        bench.step()
    return (wall, *op_times(trace_dir, steps))


def _lm_bench(variant: str):
  """``benchmarks.lm``'s step with the ``step()`` this module calls."""
  import os  # pylint: disable=g-import-not-at-top

  from benchmarks import lm  # pylint: disable=g-import-not-at-top

  path = lm.PTB if os.path.isdir(lm.PTB) else lm.synthetic_folder(tempfile.mkdtemp())
  config = lm.lm_config(path)
  from deeprnn_jax.training import build  # pylint: disable=g-import-not-at-top

  b = lm.Ours(config, build.task_from_config(config), variant)
  b.step = lambda: b.run(1)
  return b


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--shape', default='medium', choices=sorted(SHAPES))
  parser.add_argument('--cell', default='lstm')
  parser.add_argument('--impl', default='ours', choices=('ours', 'flax', 'lm', 'lm-runner'))
  parser.add_argument('--execution', default='auto', help="DeepRNN's execution path (--impl ours)")
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--top', type=int, default=25)
  args = parser.parse_args(argv)
  host_memory.keep_freed_memory()  # as the trainer does: XLA:CPU's freed buffers reused, not page-faulted anew

  shape = SHAPES[args.shape]
  if args.impl.startswith('lm'):
    bench = _lm_bench('runner' if args.impl == 'lm-runner' else 'ours')
    args.cell, args.shape = 'lstm', 'ptb_lm'
  elif args.impl == 'ours':
    bench = impls.ours(shape, args.cell, execution=args.execution)
  else:
    bench = impls.flax_stack(shape, args.cell)
  wall, nanos, counts = profile_step(bench, args.steps)
  busy = sum(nanos.values()) / 1e6
  print(
    f'{args.impl} {args.cell} {args.shape} (execution={args.execution}) on {jax.devices()[0].device_kind}: '
    f'{wall * 1e3:.1f} ms per step untraced, {sum(counts.values()):,.0f} ops per step, '
    f'{busy:.1f} ms of op time per step (summed over threads)'
  )
  print(f'{"ms/step":>9} {"per step":>9} {"us each":>9}  op')
  for name, ns in nanos.most_common(args.top):
    print(f'{ns / 1e6:9.2f} {counts[name]:9.0f} {ns / 1e3 / counts[name]:9.1f}  {name}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
