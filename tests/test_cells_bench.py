"""The per-cell benchmark runs (tiny; no timing asserted), matches parameters, and keeps the other
sections of BENCHMARKS.md."""

from benchmarks import bench, cells_bench
from deeprnn_jax.cells import registry

# What ``execution='auto'`` takes on CPU for every built-in cell (``Cell.cpu_execution``), as measured
# on a quiet 2-core AMD EPYC (BENCHMARKS.md, "Every cell's execution paths, measured quietly", and
# mlstm_layer's own measurement below it).
MEASURED_CPU_EXECUTION = {
  'attention': 'parallel',
  'linear_attention': 'parallel',
  'mlstm': 'parallel',
  'mlstm_layer': 'parallel',
  'deltanet': 'parallel',
  'gated_deltanet': 'parallel',
  'rglru': 'layer',
  'lru': 'layer',
  'minlstm': 'layer',
  'mingru': 'layer',
  'indrnn': 'layer',
  'mamba': 'time',
  's6': 'time',
  'lstm': 'time',
  'gru': 'time',
  'rnn': 'time',
  'irnn': 'time',
  'mgu': 'time',
  'ugrnn': 'time',
  'slstm': 'time',
}


def test_every_built_in_cell_takes_its_measured_cpu_path():
  """The measured table, pinned. A change to a cell's ``cpu_execution`` (or a new built-in cell) needs
  a new measurement first: ``python -m benchmarks.cells_bench --cells all --output BENCHMARKS.md``
  (benchmarks/cells_bench.py) on a quiet machine, the rule in BENCHMARKS.md applied to its tables,
  and then this table and BENCHMARKS.md updated together. ``auto`` taking another path than the
  measured one costs 2-50x in training speed on CPU (mLSTM's per-step path is 3-4x slower)."""
  got = {name: cls.cpu_execution for name, cls in registry.BUILTIN_CELLS.items()}
  assert got == MEASURED_CPU_EXECUTION


def test_matched_widths_are_the_nearest_to_the_budget():
  for cell in ('gru', 'mingru'):
    width = cells_bench.matched_width(cell, 20_000)
    count = cells_bench.param_count(cell, width)
    neighbours = [cells_bench.param_count(cell, w) for w in (width - 4, width + 4)]
    assert width % 4 == 0
    assert all(abs(count - 20_000) <= abs(n - 20_000) for n in neighbours)


def test_the_tables_land_in_their_own_section(tmp_path):
  path = tmp_path / 'BENCHMARKS.md'
  bench.write_report(str(path), 'the main suite')
  assert (
    cells_bench.main(
      [
        '--cells',
        'rnn,mingru',
        '--budget',
        '3000',
        '--time',
        '4',
        '--lengths',
        '4,8',
        '--repeats',
        '1',
        '--seconds',
        '0',
        '--output',
        str(path),
      ]
    )
    == 0
  )
  text = path.read_text()
  assert 'the main suite' in text and cells_bench.BEGIN in text
  assert '| rnn |' in text and 'no parallel form' in text.split('| rnn |')[1].splitlines()[0]
  # Per-cell, hoisted-vs-per-step and parallel-vs-per-step tables; rnn has no parallel form, so two rows.
  assert text.count('| mingru |') == 3 and text.count('| rnn |') == 2
  layer_table = text.split('**Hoisted')[1].split('**Parallel')[0]
  assert '| T=4 | T=8 |' in layer_table and '| rnn |' in layer_table and '| mingru |' in layer_table
