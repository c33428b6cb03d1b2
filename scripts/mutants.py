"""Plants known bugs in the core paths, one at a time, and reports which ones the tests catch.

``make mutants`` (or ``python scripts/mutants.py [--only ID,...] [--output FILE]``). Each mutant is a
textual patch of one file (an exact snippet, found exactly once, and its replacement) and the tests
that should see it. The script copies the working tree (tracked and untracked files that git does not
ignore) into a temporary folder, so the checkout is never touched, runs the tests of every mutant once
unpatched (a baseline: a mutant is only caught if its tests passed without it), then for each mutant
patches the copy, runs its tests (``pytest -x``), and restores the file. A mutant is

* ``caught``: its tests fail with it and passed without it;
* ``MISSED``: its tests pass with the bug in place (a hole in the suite);
* ``stale``: its snippet is no longer in the file (the code moved on: update the list);
* ``baseline fails``: one of its tests fails without it (not run: nothing to learn).

Why a curated list and not a mutation tool (mutmut 3, cosmic-ray 8): those generate every operator
swap of every line and run the suite, or the tests that cover it, for each. At this suite's cost
(minutes, dominated by XLA compiles) that is days for a package this size, and most random mutants
are equivalent or trivially caught. Each mutant here is a bug that happened or nearly did (the
planted-bug audits of issue 26, with their tests), so a MISSED line is a real hole, and the whole
list runs in about a quarter of an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
REG = 'tests/test_regressions.py'


@dataclasses.dataclass(frozen=True)
class Mutant:
  id: str
  path: str
  what: str
  old: str
  new: str
  tests: tuple[str, ...]


MUTANTS = (
  # ---- issue 26's table (row 7 is the report's)
  Mutant(
    'audio-rate',
    'deeprnn_jax/tasks/speech_to_text.py',
    "read_audio swallows librosa's MissingExtraError: a file of another rate kept at its own rate",
    "    librosa = require('librosa', 'speech', __name__)\n"
    '    signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate).astype(np.float32)\n',
    '    try:\n'
    "      librosa = require('librosa', 'speech', __name__)\n"
    '      signal = librosa.resample(signal, orig_sr=rate, target_sr=sample_rate).astype(np.float32)\n'
    '    except ImportError:\n'
    '      pass\n',
    (f'{REG}::test_audio_of_another_rate_is_refused_without_librosa_never_kept_at_its_rate',),
  ),
  Mutant(
    'exact-match-weight',
    'deeprnn_jax/tasks/base.py',
    "answer-only exact_match ignores the row weight (the evaluator's filler rows count)",
    "      'accuracy': ((acc * mask).sum(), count),\n      'exact_match': ((exact * w).sum(), w.sum()),\n",
    "      'accuracy': ((acc * mask).sum(), count),\n      'exact_match': (exact.sum(), w.sum()),\n",
    (f'{REG}::test_exact_match_counts_only_weighted_rows_of_a_padded_eval_split',),
  ),
  Mutant(
    'perplexity-mean-of-exp',
    'deeprnn_jax/training/train.py',
    'derived metrics at eval (perplexity) as the mean over eval batches of exp(batch loss)',
    '      if self.task.derived is not None:\n        out[split].update(self.task.derived(out[split]))\n',
    '      if self.task.derived is not None:\n'
    '        means = [\n'
    '          {k: np.asarray(t, np.float64) / np.maximum(np.asarray(n, np.float64), 1e-12)\n'
    '           for k, (t, n) in jax.device_get(self.eval_fn(params, chunk)).items()}\n'
    '          for chunk in self.eval_data[split]\n'
    '        ]\n'
    '        derived = [self.task.derived(m) for m in means]\n'
    '        out[split].update({k: np.mean([d[k] for d in derived], axis=0) for k in derived[0]})\n',
    (f'{REG}::test_derived_perplexity_is_exp_of_the_split_mean_not_a_mean_over_eval_batches',),
  ),
  Mutant(
    'rglru-sqrt-grad',
    'deeprnn_jax/cells/rglru.py',
    "sqrt_bounded_derivative's custom gradient drops the 0.5",
    '(g * 0.5 * jax.lax.rsqrt(',
    '(g * jax.lax.rsqrt(',
    (f'{REG}::test_sqrt_bounded_derivative_gradient_is_autodiff_of_sqrt_and_capped_below',),
  ),
  Mutant(
    's6-norm-scale-zero',
    'deeprnn_jax/cells/ssm.py',
    "S6's inner RMSNorm scale starts at 0 (the SSM path's gradients are 0 at init)",
    "self.param('scale', jax.nn.initializers.ones,",
    "self.param('scale', jax.nn.initializers.zeros,",
    ('tests/test_stack.py::test_gradients_are_finite_through_4_layers_and_200_steps[s6]',),
  ),
  Mutant(
    'modern-mlp-mask',
    'deeprnn_jax/stack/blocks.py',
    "the modern block's MLP dropout reuses the mixer's mask",
    '    return u + _drop(self.mlp(self.mlp_norm(u)), mlp_mask)\n',
    '    return u + _drop(self.mlp(self.mlp_norm(u)), mixer_mask)\n',
    (f'{REG}::test_modern_block_dropout_equals_numpy_with_two_independent_masks',),
  ),
  Mutant(
    'report-best-argmax',
    'experiments/report/runs.py',
    'summary best value and step by argmax for every metric (the worst for loss)',
    "    best = int(np.argmin(values) if mode == 'min' else np.argmax(values))\n",
    '    best = int(np.argmax(values))\n',
    ('tests/test_experiments_report.py::test_best_value_and_step_follow_the_metrics_direction',),
  ),
  Mutant(
    'slurm-grid-order',
    'experiments/slurm.py',
    'the job array submits in grid order, not costliest first',
    '  todo = sweep.start_order(unfinished(points, workdir))\n',
    '  todo = unfinished(points, workdir)\n',
    (f'{REG}::test_the_slurm_job_array_starts_the_costliest_grid_point_first',),
  ),
  Mutant(
    'restore-step-latest-only',
    'deeprnn_jax/training/checkpoint.py',
    'restore_step looks only in the latest saves (a best step older than them is not found)',
    '    for manager in (self._latest, self._best):\n      if step in manager.all_steps():\n',
    '    for manager in (self._latest,):\n      if step in manager.all_steps():\n',
    (f'{REG}::test_restore_step_loads_the_best_step_after_it_left_the_latest_saves',),
  ),
  # ---- issue 26's notes
  Mutant(
    'tbptt-carry-lost',
    'deeprnn_jax/training/steps.py',
    "truncated BPTT: a window's final carries are not kept for the next",
    '    carries=keep(jax.lax.stop_gradient(carries), state.carries),\n',
    '    carries=state.carries,\n',
    ('tests/test_tbptt_carry.py',),
  ),
  Mutant(
    'tbptt-carry-unreset',
    'deeprnn_jax/training/steps.py',
    "truncated BPTT: an epoch's first window starts from the last window's carries",
    '  pick = lambda f, c: jnp.where(reset.reshape(reset.shape + (1,) * (c.ndim - 1)), f, jax.lax.stop_gradient(c))\n',
    '  pick = lambda f, c: jax.lax.stop_gradient(c)\n',
    ('tests/test_tbptt_carry.py',),
  ),
  Mutant(
    'wandb-kill9',
    'deeprnn_jax/training/seed_run.py',
    "a resume trusts status.json's wandb_step (marked when logged, not when wandb wrote it)",
    "    self.wandb_has = runlog.wandb_written(wandb_dir, wandb_id) if wandb_mode != 'disabled' else None\n",
    '    self.wandb_has = None\n',
    ('tests/test_wandb_kill9.py',),
  ),
  # ---- cells
  Mutant(
    'lstm-gates-swapped',
    'deeprnn_jax/cells/classic.py',
    'LSTM: input and forget gates swapped',
    '    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)\n',
    '    c = jax.nn.sigmoid(i) * c + jax.nn.sigmoid(f) * jnp.tanh(g)\n',
    ('tests/test_cells.py::test_cell_matches_numpy_equations[lstm]',),
  ),
  Mutant(
    'gru-no-reset-gate',
    'deeprnn_jax/cells/classic.py',
    'GRU: the reset gate is not applied to the candidate',
    '    n = jnp.tanh(xn + r * hn)\n',
    '    n = jnp.tanh(xn + hn)\n',
    ('tests/test_cells.py::test_cell_matches_numpy_equations[gru]',),
  ),
  Mutant(
    'linear-scan-combine',
    'deeprnn_jax/cells/linear.py',
    "the associative scan's operator composes in the wrong order",
    '  return a2 * a1, a2 * b1 + b2\n',
    '  return a2 * a1, a1 * b2 + b1\n',
    ('tests/test_stack.py::test_time_layer_parallel_agree[mingru-uni]',),
  ),
  Mutant(
    'rglru-cancellation',
    'deeprnn_jax/cells/rglru.py',
    'RG-LRU computes 1 - a^2 as 1 - exp(2 log a): cancellation where a is near 1',
    '-jnp.expm1(2.0 * log_a)',
    '1.0 - jnp.exp(2.0 * log_a)',
    ('tests/test_cells.py::test_cell_matches_numpy_equations_at_large_gate_inputs[rglru]',),
  ),
  Mutant(
    'mlstm-initial-state',
    'deeprnn_jax/cells/xlstm.py',
    "mLSTM's parallel form ignores the carry it starts from",
    '  a0 = jnp.exp(log_0 - m)\n',
    '  a0 = jnp.zeros_like(m)\n',
    ('tests/test_cells_xlstm.py',),
  ),
  Mutant(
    'mlstm-normalizer-bound',
    'deeprnn_jax/cells/xlstm.py',
    "mLSTM's per-step output drops the max(|n^T q|, e^-m) lower bound",
    '    h = num / (jnp.maximum(jnp.abs(den), jnp.exp(-m_new)) + self.eps)[..., None]\n',
    '    h = num / (jnp.abs(den) + self.eps)[..., None]\n',
    ('tests/test_cells_xlstm.py',),
  ),
  # ---- stack
  Mutant(
    'reverse-ignores-lengths',
    'deeprnn_jax/sequences.py',
    'the backward direction reverses padded sequences over the whole time axis',
    '  index = jnp.where(time < lengths[:, None], lengths[:, None] - 1 - time, time)\n',
    '  index = jnp.where(time < lengths[:, None], x.shape[1] - 1 - time, time)\n',
    ('tests/test_stack.py::test_padded_batch_equals_each_sequence_alone',),
  ),
  Mutant(
    'padding-not-zeroed',
    'deeprnn_jax/sequences.py',
    'outputs past a sequence length are not zeroed',
    '  return y if valid is None else jnp.where(valid[..., None], y, jnp.zeros((), y.dtype))\n',
    '  return y\n',
    ('tests/test_stack.py::test_padded_batch_equals_each_sequence_alone',),
  ),
  # ---- steps and tasks
  Mutant(
    'divergence-not-guarded',
    'deeprnn_jax/training/steps.py',
    'a non-finite update is applied (the seed is not frozen at its last finite state)',
    '  ok = live & finite\n',
    '  ok = live\n',
    (
      'tests/test_regressions.py::test_a_step_whose_update_is_not_finite_keeps_the_last_finite_state_and_records_the_step',
      'tests/test_reliability_state.py::test_nan_or_inf_in_loss_gradients_or_parameters_stops_that_seed_only',
    ),
  ),
  Mutant(
    'dropout-key-fixed',
    'deeprnn_jax/training/steps.py',
    'every train step draws the same dropout masks',
    '  dropout_key = jax.random.fold_in(state.dropout_key, state.step)\n',
    '  dropout_key = state.dropout_key\n',
    (f'{REG}::test_every_train_step_draws_its_own_dropout_masks_and_a_rerun_the_same_ones',),
  ),
  Mutant(
    'per-step-mask-weight',
    'deeprnn_jax/tasks/base.py',
    "per-step metrics ignore the row weight (the evaluator's filler rows count)",
    "  mask = step_mask(batch['lengths'], outputs.shape[1]) * w[:, None]\n",
    "  mask = step_mask(batch['lengths'], outputs.shape[1])\n",
    (f'{REG}::test_exact_match_counts_only_weighted_rows_of_a_padded_eval_split',),
  ),
  Mutant(
    'eval-filler-weighted',
    'deeprnn_jax/training/steps.py',
    "the eval split's filler rows get weight 1",
    "    arrays['weight'][n:] = 0.0\n",
    '    pass\n',
    (f'{REG}::test_exact_match_counts_only_weighted_rows_of_a_padded_eval_split',),
  ),
  Mutant(
    'lm-targets-unshifted',
    'deeprnn_jax/tasks/language_model.py',
    'language-model targets are the inputs, not the next tokens',
    '    targets = jax.lax.dynamic_slice_in_dim(streams, w * seq_len + 1, seq_len, axis=1)\n',
    '    targets = jax.lax.dynamic_slice_in_dim(streams, w * seq_len, seq_len, axis=1)\n',
    ('tests/test_language_model.py::test_stream_layout_matches_a_numpy_construction',),
  ),
  Mutant(
    'checkpoint-digest-unchecked',
    'deeprnn_jax/training/checkpoint.py',
    "a restored checkpoint's arrays are not checked against their digest",
    '    if digest is not None and state_digest(state) != digest:\n',
    '    if False:\n',
    (
      'tests/test_reliability_state.py::test_flipped_bytes_that_orbax_restores_without_complaint_are_caught_by_the_digest',
    ),
  ),
  Mutant(
    'host-memory-mmap-kept',
    'deeprnn_jax/training/host_memory.py',
    "only malloc's trim threshold is lifted: large blocks still come from a fresh mmap every step",
    '_SETTINGS = ((M_MMAP_THRESHOLD, _LARGEST), (M_TRIM_THRESHOLD, _LARGEST), (M_TOP_PAD, 512 << 20))\n',
    '_SETTINGS = ((M_TRIM_THRESHOLD, _LARGEST), (M_TOP_PAD, 512 << 20))\n',
    ('tests/test_host_memory.py',),
  ),
  # ---- issue 38: the four misses of its audit
  Mutant(
    'host-memory-values-swapped',
    'deeprnn_jax/training/host_memory.py',
    "mallopt's mmap threshold and top pad swapped: 2 GiB heap steps, blocks over 512 MiB from a fresh mmap",
    '_SETTINGS = ((M_MMAP_THRESHOLD, _LARGEST), (M_TRIM_THRESHOLD, _LARGEST), (M_TOP_PAD, 512 << 20))\n',
    '_SETTINGS = ((M_MMAP_THRESHOLD, 512 << 20), (M_TRIM_THRESHOLD, _LARGEST), (M_TOP_PAD, _LARGEST))\n',
    ('tests/test_host_memory.py::test_mallopt_is_called_with_the_intended_settings',),
  ),
  Mutant(
    'mlstm-cpu-path',
    'deeprnn_jax/cells/xlstm.py',
    "mLSTM's measured CPU path changed without a measurement ('auto' takes a path 3-4x slower)",
    '  # trained 3.4-4.5x faster on CPU at T = 64-1024 (BENCHMARKS.md, cells_bench).\n'
    "  cpu_execution: ClassVar[str] = 'parallel'\n",
    '  # trained 3.4-4.5x faster on CPU at T = 64-1024 (BENCHMARKS.md, cells_bench).\n'
    "  cpu_execution: ClassVar[str] = 'layer'\n",
    ('tests/test_cells_bench.py::test_every_built_in_cell_takes_its_measured_cpu_path',),
  ),
  Mutant(
    'load-run-vmaps-a-lone-seed',
    'deeprnn_jax/training/load.py',
    "load_run re-evaluates a lone-seed run with the vmapped program, not the 'single' one that recorded it",
    "    program = program if program in ('vmap', 'loop', 'single') else 'vmap'\n",
    "    program = program if program in ('vmap', 'loop') else 'vmap'\n",
    ('tests/test_load.py::test_a_loaded_run_is_evaluated_by_the_seed_program_its_status_records',),
  ),
  Mutant(
    'preflight-tfds-text-local',
    'experiments/preflight.py',
    'the preflight counts imdb, sst2 and tiny_shakespeare as local files even without a path (no TFDS needed)',
    "        if options.get('path'):\n          continue  # its local files instead\n",
    '        if True:\n          continue  # its local files instead\n',
    ('tests/test_first_hour.py::test_a_tfds_text_task_without_a_local_path_needs_tensorflow_datasets',),
  ),
  Mutant(
    'traced-lengths-unclamped',
    'deeprnn_jax/sequences.py',
    'a traced length above T is not clamped (the backward direction reads outside the sequence)',
    '    return jnp.clip(array, 0, time).astype(jnp.int32)\n',
    '    return array.astype(jnp.int32)\n',
    ('tests/test_api_inputs.py::test_traced_lengths_are_clamped_to_zero_and_t_so_every_path_reads_the_same',),
  ),
  # ---- report
  Mutant(
    'holm-is-bonferroni',
    'experiments/report/stats.py',
    "Holm's step-down multiplies every p-value by m (Bonferroni)",
    '  stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])\n',
    '  stepped = np.maximum.accumulate(m * p[order])\n',
    ('tests/test_stats.py',),
  ),
)


def copy_tree(dest: pathlib.Path) -> None:
  """The working tree as it is (tracked and untracked, not ignored) into ``dest``."""
  files = subprocess.run(
    ['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=REPO, capture_output=True, check=True
  ).stdout.split(b'\0')
  for name in filter(None, files):
    src = REPO / os.fsdecode(name)
    if src.is_file():
      target = dest / os.fsdecode(name)
      target.parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(src, target)


def pytest(root: pathlib.Path, tests, timeout: float, stop_at_first: bool = True):
  """pytest on ``tests`` inside ``root`` (``-x`` unless ``stop_at_first`` is False): (exit code, or None
  on time-out; seconds; output tail; the node ids that failed)."""
  env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1')
  env.pop('PYTEST_ADDOPTS', None)
  start = time.monotonic()
  flags = ['-q', '-rf', '-p', 'no:xdist', '-p', 'no:cacheprovider'] + (['-x'] if stop_at_first else [])
  try:
    proc = subprocess.run(
      [sys.executable, '-m', 'pytest', *flags, *tests],
      cwd=root,
      env=env,
      capture_output=True,
      text=True,
      timeout=timeout,
    )
  except subprocess.TimeoutExpired:
    return None, time.monotonic() - start, '', []
  failing = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith('FAILED ')]
  return proc.returncode, time.monotonic() - start, (proc.stdout + proc.stderr)[-1500:], failing


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--only', default='', help='comma-separated mutant ids (default: all)')
  parser.add_argument('--list', action='store_true', help='list the mutants and exit')
  parser.add_argument('--output', help='also write the report (markdown) to this file')
  parser.add_argument('--timeout', type=float, default=600.0, help='seconds per pytest run')
  args = parser.parse_args(argv)
  mutants = MUTANTS
  if args.only:
    wanted = set(args.only.split(','))
    unknown = wanted - {m.id for m in MUTANTS}
    if unknown:
      print(f'error: unknown mutant id(s) {sorted(unknown)}; see --list', file=sys.stderr)
      return 2
    mutants = tuple(m for m in MUTANTS if m.id in wanted)
  if args.list:
    for m in mutants:
      print(f'{m.id:28} {m.path}: {m.what}')
    return 0

  rows = []
  with tempfile.TemporaryDirectory(prefix='mutants-') as tmp:
    root = pathlib.Path(tmp)
    copy_tree(root)
    tests = sorted({t for m in mutants for t in m.tests})
    code, seconds, tail, failing = pytest(root, tests, args.timeout * 3, stop_at_first=False)
    print(f'baseline: {len(tests)} test selections, exit {code}, {seconds:.0f} s', flush=True)
    if code not in (0, 1) or (code == 1 and not failing):  # no summary: pytest itself died on the way
      print(tail)
      print('error: the baseline run did not complete; see above', file=sys.stderr)
      return 1
    for node in failing:
      print(f'baseline: {node} fails without any mutant', flush=True)
    for m in mutants:
      path = root / m.path
      original = path.read_text() if path.exists() else ''
      found = original.count(m.old)
      if found != 1:
        rows.append((m, f'stale ({found} matches)', 0.0))
        print(f'{m.id}: stale ({found} matches of its snippet)', flush=True)
        continue
      broken = [node for node in failing if any(node.startswith(t.split('[')[0]) for t in m.tests)]
      if broken:
        rows.append((m, f'baseline fails ({broken[0]})', 0.0))
        print(f'{m.id}: not run, its tests fail without it ({", ".join(broken)})', flush=True)
        continue
      try:
        path.write_text(original.replace(m.old, m.new))
        code, seconds, tail, _ = pytest(root, m.tests, args.timeout)
      finally:
        path.write_text(original)
      result = 'caught' if code == 1 else 'MISSED' if code == 0 else 'timeout' if code is None else f'error {code}'
      rows.append((m, result, seconds))
      print(f'{m.id}: {result} ({seconds:.0f} s)', flush=True)

  caught = sum(r == 'caught' for _, r, _ in rows)
  lines = [
    f'Planted bugs caught: {caught} of {len(rows)} (scripts/mutants.py).',
    '',
    '| mutant | file | bug | tests | result | s |',
    '|---|---|---|---|---|---|',
  ]
  for m, result, seconds in rows:
    tests = ', '.join(t.replace('tests/', '') for t in m.tests)
    lines.append(f'| {m.id} | `{m.path}` | {m.what} | `{tests}` | {result} | {seconds:.0f} |')
  report = '\n'.join(lines) + '\n'
  print(report)
  if args.output:
    pathlib.Path(args.output).write_text(report)
  return 0 if caught == len(rows) else 1


if __name__ == '__main__':
  sys.exit(main())
