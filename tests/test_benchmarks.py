"""The benchmark suite runs (tiny shapes; no timing is asserted: speed lives in `make bench`)."""

import numpy as np
import pytest

from benchmarks import bench, impls

TINY = impls.Shape('tiny', batch=2, time=5, inputs=3, hidden=4, layers=2)


def test_every_implementation_trains_one_step():
  benches = {'ours': impls.ours(TINY, 'gru'), 'flax': impls.flax_stack(TINY, 'gru'), 'seeds': impls.ours(TINY, 'gru', seeds=3),
             'looped': impls.ours(TINY, 'gru', seeds=3, seed_program='loop')}
  rates = bench.race(benches, TINY.tokens, repeats=2, seconds=0.0)
  assert all(r.shape == (2,) and np.all(r > 0) for r in rates.values())
  assert all(b.compile_seconds > 0 for b in benches.values())


def test_torch_baseline_when_installed():
  pytest.importorskip('torch')
  impls.torch_module(TINY, 'lstm').step()


def test_train_flops_counts_every_layer():
  # Layer 0: (3 + 4) * 4 gates * 4; layer 1: (4 + 4) * 16; times 2 * tokens, times 3 for backward.
  assert impls.train_flops(TINY, 'lstm') == 3 * 2 * TINY.tokens * (7 * 16 + 8 * 16)


def test_profile_finds_the_ops_of_the_time_loop():
  from benchmarks import profile
  wall, nanos, counts = profile.profile_step(impls.ours(TINY, 'lstm', execution='time'), steps=2)
  assert wall > 0 and sum(nanos.values()) > 0
  # Ops inside the time loop run once per time step (forward and backward loops: >= 5 per step).
  assert max(counts.values()) >= TINY.time


def test_report_replaces_only_its_generated_section(tmp_path):
  path = tmp_path / 'BENCHMARKS.md'
  bench.write_report(str(path), 'first run')
  text = path.read_text()
  assert 'first run' in text and bench.BEGIN in text
  path.write_text('# Analysis\n\n' + text + '\nWhat limits it: measured.\n')
  bench.write_report(str(path), 'second run')
  text = path.read_text()
  assert 'second run' in text and 'first run' not in text
  assert text.startswith('# Analysis') and text.endswith('What limits it: measured.\n')
