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
    '  h = num / (jnp.maximum(jnp.abs(den), jnp.exp(-m_new)) + eps)[..., None]\n',
    '  h = num / (jnp.abs(den) + eps)[..., None]\n',
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
  # ---- one per module (issue 38)
  Mutant(
    'attention-rope-frequencies',
    'deeprnn_jax/cells/attention.py',
    "RoPE's frequencies from arange(d / 2) / d, not arange(0, d, 2) / d (the slow pairs rotate too fast)",
    '  theta = base ** (-jnp.arange(0, d, 2, dtype=jnp.float32) / d)  # [d/2]\n',
    '  theta = base ** (-jnp.arange(d // 2, dtype=jnp.float32) / d)  # [d/2]\n',
    ('tests/test_cells.py::test_cell_matches_numpy_equations[attention]',),
  ),
  Mutant(
    'recurrent-init-fused',
    'deeprnn_jax/cells/base.py',
    'the fused recurrent kernel is drawn as one wide matrix, not gate by gate (no gate block is orthogonal)',
    '      kernel_init=per_gate(get_initializer(self.recurrent_kernel_init), num_gates),\n',
    '      kernel_init=get_initializer(self.recurrent_kernel_init),\n',
    ('tests/test_cells.py::test_recurrent_kernels_are_orthogonal_gate_by_gate',),
  ),
  Mutant(
    'conv-reset-first-segment',
    'deeprnn_jax/cells/conv.py',
    "the short convolution's first segment of a packed row reads the reset buffer, not the carried one",
    '      before = restarted & (since + j < k - 1)\n',
    '      before = since + j < k - 1\n',
    ('tests/test_mixer.py::test_causal_conv_equals_numpy_with_buffer_padding_and_resets',),
  ),
  Mutant(
    'gated-deltanet-padding-decays',
    'deeprnn_jax/cells/linear_attention.py',
    "Gated DeltaNet's parallel form decays the memory over padded steps (a short sequence's final state shrinks)",
    '      if log_alpha is not None:\n        log_alpha = jnp.where(valid[..., None], log_alpha, 0.0)\n',
    '',
    ('tests/test_cells_linear_attention.py::test_parallel_form_equals_per_step_from_a_nonzero_carry_with_padding',),
  ),
  Mutant(
    'mlstm-layer-value-convolved',
    'deeprnn_jax/cells/mlstm_layer.py',
    "the mLSTM layer's values read the convolved branch, not the up-projection (xLSTM's v skips the conv)",
    'self._headwise(self.v_proj, x_m)',
    'self._headwise(self.v_proj, u)',
    ('tests/test_cells.py::test_cell_matches_numpy_equations[mlstm_layer]',),
  ),
  Mutant(
    'register-cell-by-identity',
    'deeprnn_jax/cells/registry.py',
    'register_cell compares classes by identity: a config file loaded twice (a sweep worker) refuses its own cell',
    '  if name in CELLS and not replace and _origin(CELLS[name]) != _origin(cls):\n',
    '  if name in CELLS and not replace and CELLS[name] is not cls:\n',
    ('tests/test_register_cell.py::test_the_docstring_example_config_file_registers_its_cell_each_time_it_loads',),
  ),
  Mutant(
    'layer-out-width-sum',
    'deeprnn_jax/stack/deep.py',
    "a bidirectional merge='sum' layer's output width reported doubled (tie_embeddings and dot attention refuse it)",
    "    doubled = self.bidirectional and self.merge == 'concat' and self.block == 'classic'\n",
    "    doubled = self.bidirectional and self.block == 'classic'\n",
    ('tests/test_planted_bugs.py::test_layer_out_features_is_the_width_each_layer_outputs',),
  ),
  Mutant(
    'mixer-conv-activation-skipped',
    'deeprnn_jax/stack/mixer.py',
    "the SiLU after the short convolution is skipped (Gated DeltaNet's and the mLSTM's q/k/v are linear)",
    '    u = _ACTIVATIONS[self.cell.conv_activation](u).astype(v.dtype)\n',
    '    u = u.astype(v.dtype)\n',
    ('tests/test_mixer.py::test_the_mixer_is_the_cell_composed_with_the_convolution_and_the_gate',),
  ),
  Mutant(
    'short-conv-off-keeps-mamba-conv',
    'deeprnn_jax/stack/options.py',
    "short_conv='off' leaves Mamba's own convolution at its d_conv, not cut to width 1",
    "  want = 1 if mode == 'off' else rnn.conv_width\n",
    '  want = rnn.conv_width\n',
    ('tests/test_mixer.py::test_mambas_own_convolution_follows_short_conv_and_conv_width',),
  ),
  Mutant(
    'time-path-steps-through-padding',
    'deeprnn_jax/stack/paths.py',
    "the per-step path (and DeepRNN.step) advances a padded row's carry: final carries run on past the length",
    '      carry = select_rows(valid_t, carry, carries[l])\n      y = zero_invalid(valid_t, y)\n',
    '      y = zero_invalid(valid_t, y)\n',
    ('tests/test_stack.py::test_padded_batch_equals_each_sequence_alone[rnn-skip-time]',),
  ),
  Mutant(
    'ctc-beam-repeat-merges',
    'deeprnn_jax/ctc.py',
    'prefix beam search extends a prefix by its own last label from every path, not only those ending in a blank',
    '          add(nxt, prefix + (c,), 1, p_b + frame[c])\n',
    '          add(nxt, prefix + (c,), 1, total + frame[c])\n',
    ('tests/test_ctc.py::test_decoders_and_forward_algorithm_against_every_alignment',),
  ),
  Mutant(
    'init-tree-one-key',
    'deeprnn_jax/inits.py',
    "the whole-model init ('uniform_0.1') draws every leaf from one key: same-shaped kernels start equal",
    '  return jax.tree.unflatten(treedef, [draw(k, x) for k, x in zip(keys, leaves)])\n',
    '  return jax.tree.unflatten(treedef, [draw(key, x) for x in leaves])\n',
    ('tests/test_planted_bugs.py::test_init_tree_draws_every_leaf_on_its_own_within_its_bound',),
  ),
  Mutant(
    'packed-bidirectional-start',
    'deeprnn_jax/models.py',
    "a packed bidirectional classifier reads each sequence's backward summary at the previous sequence's last step",
    '      starts = jnp.concatenate([jnp.zeros_like(ends[:, :1]), ends[:, :-1] + 1], axis=1)\n',
    '      starts = jnp.concatenate([jnp.zeros_like(ends[:, :1]), ends[:, :-1]], axis=1)\n',
    ('tests/test_planted_bugs.py::test_a_packed_bidirectional_classifier_reads_each_sequence_as_it_reads_it_alone',),
  ),
  Mutant(
    'seq2seq-beams-tiled',
    'deeprnn_jax/seq2seq.py',
    "beam search's initial state tiled, not repeated, over the beams: in a batch, examples decode each other's sources",
    '      state, memory = jax.tree.map(lambda x: jnp.repeat(x, beams, axis=0), (state, memory))\n',
    '      state, memory = jax.tree.map(lambda x: jnp.tile(x, (beams,) + (1,) * (x.ndim - 1)), (state, memory))\n',
    (
      'tests/test_seq2seq.py::test_decoding_of_padded_batch_equals_each_pair_alone[beam]',
      'tests/test_seq2seq.py::test_beam_search_without_pruning_ranks_every_output_exactly[0.0]',
    ),
  ),
  Mutant(
    'build-top-width-ignored',
    'deeprnn_jax/training/build.py',
    'model.top_width is silently ignored: every layer is model.width wide',
    '  return (m.width,) * (m.depth - 1) + (m.top_width or m.width,)\n',
    '  return (m.width,) * m.depth\n',
    ('tests/test_planted_bugs.py::test_top_width_sets_the_last_layers_width',),
  ),
  Mutant(
    'override-keeps-axis',
    'deeprnn_jax/training/config.py',
    'an override of a swept key does not narrow its axis: every value of the axis still runs',
    "    if key in flat_axes(d):\n      set_path(d, f'sweep.axes.{key}', [value])\n",
    '',
    ('tests/test_experiments_errors.py::test_an_override_of_a_swept_key_narrows_its_axis',),
  ),
  Mutant(
    'rate-bound-closed',
    'deeprnn_jax/training/config_rules.py',
    'a half-open range accepts its upper bound (a momentum, beta or dropout rate of 1 validates)',
    '    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)\n',
    '    bad_hi = hi is not None and v > hi\n',
    ('tests/test_planted_bugs.py::test_a_rate_of_one_is_refused',),
  ),
  Mutant(
    'extend-off-eval-cadence',
    'deeprnn_jax/training/identity.py',
    'more steps extend a run whose old end is off the eval cadence (its last eval is one the longer run never makes)',
    "  for key in ('log_every_steps', 'eval_every_steps'):\n",
    "  for key in ('log_every_steps',):\n",
    ('tests/test_planted_bugs.py::test_more_steps_extend_a_run_only_where_the_longer_run_computes_the_same',),
  ),
  Mutant(
    'init-seeds-vmapped',
    'deeprnn_jax/training/parallel.py',
    "the seeds' initial states are vmapped, not looped (batched LAPACK QRs that can hang XLA:CPU)",
    "  return over_seeds(fn, in_axes, 'loop')\n",
    "  return over_seeds(fn, in_axes, 'vmap')\n",
    ('tests/test_parallel.py::test_the_initial_states_loop_over_seeds_so_no_lapack_call_is_batched',),
  ),
  Mutant(
    'progress-eta-whole-run',
    'deeprnn_jax/training/progress.py',
    "the progress line's ETA counts every step of the run, not the steps left",
    'ETA {duration((self.total - step) / rate if rate > 0',
    'ETA {duration(self.total / rate if rate > 0',
    ('tests/test_planted_bugs.py::test_the_progress_line_eta_is_the_steps_left_at_the_latest_rate',),
  ),
  Mutant(
    'rerun-retrains-early-stopped',
    'deeprnn_jax/training/runlog.py',
    'a seed that stopped early at its threshold counts as unfinished: a rerun trains it again',
    " or bool(status.get('stopped_early')) or int(status.get('step') or 0) >= num_steps\n",
    " or int(status.get('step') or 0) >= num_steps\n",
    ('tests/test_planted_bugs.py::test_is_done_counts_finished_diverged_and_early_stopped_runs',),
  ),
  Mutant(
    'tune-grid-int-exclusive',
    'deeprnn_jax/training/tune_config.py',
    "the grid sampler's ('int', lo, hi) range stops before hi, documented inclusive",
    '      return list(range(int(self.low), int(self.high) + 1, self.step))\n',
    '      return list(range(int(self.low), int(self.high), self.step))\n',
    ('tests/test_planted_bugs.py::test_a_grid_of_int_ranges_includes_both_bounds',),
  ),
  Mutant(
    'vocab-ties-by-appearance',
    'deeprnn_jax/tasks/vocab.py',
    "the vocabulary's count ties are broken by first appearance, not alphabetically (ids depend on the text order)",
    '  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max_size - NUM_SPECIAL]\n',
    '  ranked = sorted(counts.items(), key=lambda kv: -kv[1])[: max_size - NUM_SPECIAL]\n',
    ('tests/test_tasks_datasets.py::test_vocabulary_comes_from_train_only_with_pad_oov_and_cap',),
  ),
  Mutant(
    'digits-scaled-by-255',
    'deeprnn_jax/tasks/digits.py',
    "the digits' pixels (0..16) are scaled by 1/255 as MNIST's are: inputs in [0, 0.06], not [0, 1]",
    '    max_value=16.0,\n',
    '    max_value=255.0,\n',
    ('tests/test_tasks_datasets.py::test_digits_rows_pixels_and_fixed_permutation',),
  ),
  Mutant(
    'permuted-test-unpermuted',
    'deeprnn_jax/tasks/image_sequences.py',
    'the permuted tasks permute the training images only: the test split is read in the plain order',
    '  test = to_sequences(np.asarray(test_images, np.uint8), mode, order)\n',
    '  test = to_sequences(np.asarray(test_images, np.uint8), mode, None)\n',
    ('tests/test_tasks_datasets.py::test_digits_rows_pixels_and_fixed_permutation',),
  ),
  Mutant(
    'mnist1d-shuffled-shares-cache',
    'deeprnn_jax/tasks/mnist1d.py',
    "mnist1d_shuffled reads the plain variant's cache file (its sequences are not shuffled after a plain run)",
    '  path = root / f\'mnist1d_n{num_samples}{"_shuffled" if shuffle_seq else ""}.npz\'\n',
    "  path = root / f'mnist1d_n{num_samples}.npz'\n",
    (
      'tests/test_tasks_datasets.py::test_mnist1d_shuffled_is_a_fixed_permutation_of_time',
      'tests/test_planted_bugs.py::test_mnist1d_shuffled_after_a_plain_run_is_the_shuffled_dataset',
    ),
  ),
  Mutant(
    'char-lm-baseline-on-test',
    'deeprnn_jax/tasks/shakespeare.py',
    "the character LM's unigram baseline is the test text's entropy, not the training text's",
    '  entropy = unigram_entropy(train_text)\n',
    '  entropy = unigram_entropy(test_text)\n',
    ('tests/test_tasks_datasets.py::test_char_lm_vocab_windows_and_unigram_baseline',),
  ),
  Mutant(
    'polyphonic-chunks-restart',
    'deeprnn_jax/tasks/polyphonic.py',
    "a chunked piano roll's chunks each start from silence, not from the frame before them",
    '      train_inputs.append(shifted[start : start + step])\n',
    '      train_inputs.append(_shifted(roll[start : start + step]))\n',
    ('tests/test_tasks_datasets.py::test_polyphonic_chunks_keep_their_preceding_frame',),
  ),
  Mutant(
    'mqar-answers-unordered',
    'deeprnn_jax/tasks/recall.py',
    "MQAR answers each repeated key with the value of the pair in the query's slot, not the key's own value",
    '  answers = _place(jnp.take_along_axis(values, order, axis=1).astype(jnp.int32), positions, query_len)\n',
    '  answers = _place(values.astype(jnp.int32), positions, query_len)\n',
    ('tests/test_tasks_recall.py::test_mqar_answers_each_key_with_its_value_once',),
  ),
  Mutant(
    'adding-second-marker-anywhere',
    'deeprnn_jax/tasks/synthetic.py',
    "the adding problem's second marker is drawn over the whole sequence, not its second half (it can hit the first)",
    '  second = jax.random.randint(k_second, (batch_size, 1), half, length)\n',
    '  second = jax.random.randint(k_second, (batch_size, 1), 0, length)\n',
    ('tests/test_tasks_synthetic.py::test_adding_exactly_two_markers_one_per_half_and_target_is_their_sum',),
  ),
  Mutant(
    'pack-rows-exact-fit-refused',
    'deeprnn_jax/tasks/pipeline.py',
    'packing opens a new row for a sequence that exactly fills the room left in one',
    '    fits = next((r for r, free in enumerate(room) if free >= n), None)\n',
    '    fits = next((r for r, free in enumerate(room) if free > n), None)\n',
    ('tests/test_packing.py::test_pack_rows_first_fit_decreasing_and_pack_arrays',),
  ),
  Mutant(
    'tagging-o-not-first',
    'deeprnn_jax/tasks/tagging.py',
    "the tag ids are all tags sorted, so 'O' is not id 0 (padding targets and unseen words mean an entity tag)",
    '  tag_names = (OUTSIDE,) + tuple(sorted({t for s in train for t in s.tags} - {OUTSIDE}))\n',
    '  tag_names = tuple(sorted({t for s in train for t in s.tags}))\n',
    ('tests/test_tasks_tagging.py::test_ner_conll_task_arrays_vocab_and_tags',),
  ),
  Mutant(
    'addition-drops-final-carry',
    'deeprnn_jax/tasks/transduction.py',
    "the addition task's sum has max_digits digits: a final carry is dropped (999 + 1 = 000)",
    '  width = max_digits + 1\n  a, b = _digits(ka, batch_size, la, width), _digits(kb, batch_size, lb, width)\n',
    '  width = max_digits\n  a, b = _digits(ka, batch_size, la, width), _digits(kb, batch_size, lb, width)\n',
    ('tests/test_tasks_transduction.py::test_addition_pairs_are_right',),
  ),
  Mutant(
    'translation-target-vocab-from-source',
    'deeprnn_jax/tasks/translation.py',
    'the target vocabulary is built from the source sentences (a copy-paste slip): target words are mostly OOV',
    '  target_tokens = build_vocab((t for _, t in kept), target_vocab_size)\n',
    '  target_tokens = build_vocab((s for s, _ in kept), target_vocab_size)\n',
    ('tests/test_tasks_transduction.py::test_parallel_text_from_files',),
  ),
  Mutant(
    'split-text-float-cut',
    'deeprnn_jax/tasks/local_text.py',
    "a local text's train part ends at 1 - v - t (0.8999... for 5 % / 5 %): one character off TFDS's split",
    '  i = int(len(text) * (1 - (val_fraction + test_fraction)))\n',
    '  i = int(len(text) * (1 - val_fraction - test_fraction))\n',
    ('tests/test_tasks_local.py::test_char_lm_splits_a_text_file_contiguously_as_tfds_tiny_shakespeare_does',),
  ),
  Mutant(
    'wav-int-scale-by-max',
    'deeprnn_jax/tasks/speech.py',
    'integer WAV samples are divided by the dtype max (32767), not 32768: -32768 reads below -1',
    '    x = a.astype(np.float32) / float(-np.iinfo(a.dtype).min)\n',
    '    x = a.astype(np.float32) / float(np.iinfo(a.dtype).max)\n',
    ('tests/test_tasks_speech.py::test_wav_samples_to_float_mono',),
  ),
  Mutant(
    'default-train-speakers-keep-val',
    'deeprnn_jax/tasks/connected_digits.py',
    'the default training speakers leave out the test speakers only: a val speaker is also trained on',
    "    held = set(given['val']) | set(given['test'])\n",
    "    held = set(given['test'])\n",
    ('tests/test_connected_digits.py::test_speakers_of_the_splits_are_disjoint',),
  ),
  Mutant(
    'shell-join-dollar-in-quotes',
    'experiments/cli.py',
    "the resume hint double-quotes any argument with a single quote, a '$' in it too: the pasted command expands it",
    '    if "\'" in a and not any(c in a for c in \'"$`\\\\!\'):\n',
    '    if "\'" in a:\n',
    ('tests/test_planted_bugs.py::test_the_resume_hint_keeps_a_dollar_inside_single_quotes_literal',),
  ),
  Mutant(
    'evaluate-default-last',
    'experiments/evaluate.py',
    "python -m experiments.evaluate reads each run's last checkpoint by default, not the documented best",
    "  parser.add_argument('--checkpoint', default='best',",
    "  parser.add_argument('--checkpoint', default='last',",
    ('tests/test_planted_bugs.py::test_evaluate_reads_the_best_checkpoint_unless_told',),
  ),
  Mutant(
    'lock-on-a-deleted-file',
    'experiments/locks.py',
    'a runner that locked the file its owner deleted on release believes it holds the run (two runners train it)',
    '      if current is not None and os.path.samestat(os.fstat(fd), current):\n',
    '      if current is not None:\n',
    (
      'tests/test_planted_bugs.py::test_a_lock_taken_on_a_file_its_owner_deleted_is_taken_again_on_the_file_at_the_path',
    ),
  ),
  Mutant(
    'report-ranks-highest-first',
    'experiments/report/verdicts.py',
    "the report's best variant is the highest mean for every metric (for a loss, the worst)",
    "  return sorted(ranked, key=lambda v: np.mean(v.values(col)), reverse=mode == 'max')\n",
    '  return sorted(ranked, key=lambda v: np.mean(v.values(col)), reverse=True)\n',
    ('tests/test_experiments_report.py::test_the_report_ranks_on_the_tasks_metric_not_the_loss',),
  ),
  Mutant(
    'threshold-fewer-steps-flipped',
    'experiments/report/statements.py',
    "the depth statement says 'fewer steps to the threshold' where the deeper variant took more, and vice versa",
    '          fewer = (np.mean(sa) - np.mean(sb)) / np.mean(sa)\n',
    '          fewer = (np.mean(sb) - np.mean(sa)) / np.mean(sa)\n',
    ('tests/test_experiments_report.py::test_report_files_numbers_and_statements',),
  ),
  Mutant(
    'tfds-split-drops-last',
    'deeprnn_jax/tasks/tfds_source.py',
    'load_split reads every example of a prepared TFDS split but its last (one review or image short, silently)',
    '    return [source[i] for i in range(len(source))]\n',
    '    return [source[i] for i in range(len(source) - 1)]\n',
    ('tests/test_tasks_tfds.py::test_real_array_record_source_reads_without_tensorflow',),
  ),
  Mutant(
    'text-majority-counts-val',
    'deeprnn_jax/tasks/tfds_text.py',
    "a text task's majority-label baseline counts the labels of the validation examples carved from train too",
    '  majority, acc = pipeline.majority_accuracy(train_labels[train_idx], test_labels, num_classes)\n',
    '  majority, acc = pipeline.majority_accuracy(train_labels, test_labels, num_classes)\n',
    ('tests/test_tasks_datasets.py::test_vocabulary_comes_from_train_only_with_pad_oov_and_cap',),
  ),
  Mutant(
    'smnist-test-from-train',
    'deeprnn_jax/tasks/tfds_image.py',
    "sequential MNIST's test images are read from TFDS's train split (a copy-paste slip): it tests on training images",
    "  test_x, test_y = _images('mnist', 'test', data_dir)\n",
    "  test_x, test_y = _images('mnist', 'train', data_dir)\n",
    ('tests/test_planted_bugs.py::test_sequential_mnist_reads_its_test_images_from_the_test_split',),
  ),
  Mutant(
    'tune-sampler-seed-per-study',
    'experiments/optuna_studies.py',
    "the TPE / random sampler's seed leaves out the trials asked: every trial of a study draws the same values",
    '  seed = int(np.random.SeedSequence([t.seed, asked, worker_index]).generate_state(1)[0])\n',
    '  seed = int(np.random.SeedSequence([t.seed, worker_index]).generate_state(1)[0])\n',
    ('tests/test_planted_bugs.py::test_each_trial_of_a_seeded_study_draws_its_own_values',),
  ),
  Mutant(
    'prepare-force-refused',
    'experiments/prepare.py',
    'prepare --force is refused on a dataset prepared as tfrecord, the one case the error tells the user to use it for',
    '  if exists and not force and b.info.file_format != array_record:\n',
    '  if exists and b.info.file_format != array_record:\n',
    ('tests/test_prepare.py::test_prepare_function_reuses_a_prepared_dataset_and_regenerates_a_tfrecord_one',),
  ),
  Mutant(
    'publish-resume-drops-tags',
    'experiments/publish.py',
    "the report's resume of each wandb run carries no tags: offline, the synced run ends without its tags",
    "      tags=status.get('wandb_tags') or (),\n    )\n    run.summary(measures(row))\n",
    '    )\n    run.summary(measures(row))\n',
    ('tests/test_planted_bugs.py::test_publish_resumes_each_wandb_run_with_its_job_type_and_tags',),
  ),
  Mutant(
    'run-held-counts-unfinished',
    'experiments/run.py',
    "after its workers, a run another live runner holds is reported unfinished ('run the same command again'), exit 1",
    '      if workers_lib.is_free(run_dir):\n'
    '        unfinished.append(run_id)\n'
    "        result.states[run_id] = 'unfinished'\n"
    '      else:\n'
    '        result.locked.append(run_id)\n',
    "      unfinished.append(run_id)\n      result.states[run_id] = 'unfinished'\n",
    ('tests/test_planted_bugs.py::test_after_its_workers_a_run_another_runner_holds_is_held_not_unfinished',),
  ),
  Mutant(
    'study-json-parts-from-cwd',
    'experiments/study.py',
    "study.json keeps an earlier command's part only if its folder is in the current directory, not the study's",
    "    if isinstance(p, dict) and os.path.isdir(os.path.join(workdir, str(p.get('path')))):\n",
    "    if isinstance(p, dict) and os.path.isdir(str(p.get('path'))):\n",
    ('tests/test_planted_bugs.py::test_study_json_keeps_the_parts_of_earlier_commands_whose_folders_exist',),
  ),
  Mutant(
    'agent-trains-every-seed',
    'experiments/sweep.py',
    'the wandb agent trains every seed of its grid point, not only the one its wandb run names',
    '    return all(_same(dict(point.values)[k], v) for k, v in values.items()) and (seed is None or s == seed)\n',
    '    return all(_same(dict(point.values)[k], v) for k, v in values.items())\n',
    ('tests/test_experiments.py::test_wandb_agent_entry_point_runs_one_point_from_the_exported_sweep_file',),
  ),
  Mutant(
    'trial-seed-is-a-final-seed',
    'experiments/tune.py',
    "trials train with the last final seed, not a fresh one: the chosen setting's luck on it enters the final runs",
    '  seed = max(config.sweep.seeds) + 1\n',
    '  seed = max(config.sweep.seeds)\n',
    ('tests/test_planted_bugs.py::test_trials_train_with_a_seed_no_final_run_uses',),
  ),
  Mutant(
    'worker-outlives-its-parent',
    'experiments/worker.py',
    'a worker whose parent died before it asked to die with it (the parent killed while starting it) trains on alone',
    '  if os.getppid() != parent:  # it died before the request above was made\n'
    '    os.kill(os.getpid(), signal.SIGKILL)\n',
    '',
    ('tests/test_planted_bugs.py::test_a_worker_whose_parent_is_already_gone_kills_itself',),
  ),
  Mutant(
    'workers-asked-not-capped',
    'experiments/workers.py',
    '--workers N starts N workers even when fewer grid points are left (idle workers holding cores or GPUs)',
    '  if todo is not None:\n    count = max(1, min(count, todo))\n',
    '  if todo is not None and requested is None:\n    count = max(1, min(count, todo))\n',
    ('tests/test_launch.py::test_each_worker_owns_its_own_cores_or_gpus',),
  ),
  Mutant(
    'speed-unknown-workers',
    'experiments/report/markdown.py',
    'a sweep whose runs partly do not record their workers is said to have trained one grid point at a time',
    '  if len(counts) == 1 and not unknown:\n',
    '  if len(counts) == 1:\n',
    ('tests/test_planted_bugs.py::test_the_speed_note_says_when_some_runs_do_not_record_their_workers',),
  ),
  Mutant(
    'curve-reads-previous-eval',
    'experiments/report/plots.py',
    "the learning curves plot each seed's value at a step from its evaluation before that step (one evaluation late)",
    "    idx = np.searchsorted(s, steps, side='right') - 1  # the last value at or before each step\n",
    "    idx = np.searchsorted(s, steps, side='left') - 1  # the last value at or before each step\n",
    ('tests/test_planted_bugs.py::test_the_mean_curve_holds_each_seeds_value_at_or_before_each_step',),
  ),
  Mutant(
    'study-effect-unsigned',
    'experiments/report/study.py',
    'a depth effect on a lower-is-better metric (WER, perplexity) is deep minus shallow: depth that lowers it hurts',
    "  return (vals(deep), vals(shallow)) if part.sweep.mode == 'max' else (vals(shallow), vals(deep))\n",
    '  return vals(deep), vals(shallow)\n',
    ('tests/test_study_report.py::test_metric_direction_lower_wer_and_perplexity_with_depth_is_depth_helps',),
  ),
  Mutant(
    'what-held-states-fragile',
    'experiments/report/study_markdown.py',
    "the study's 'What held' states every clear outcome, fragile ones too (a verdict one seed carries)",
    "  held = [e for e in effects if e.verdict == 'clear']\n",
    "  held = [e for e in effects if e.outcome in ('depth helps', 'depth hurts')]\n",
    ('tests/test_study_report.py::test_a_clear_verdict_one_seed_carries_is_fragile_and_not_said_to_hold',),
  ),
  Mutant(
    'verdict-flips-common-only',
    'experiments/report/tuning.py',
    'the verdicts that differ between the fixed and the tuned settings leave out those tested at only one of them',
    '    for k in sorted(set(fixed) | set(tuned))\n',
    '    for k in sorted(set(fixed) & set(tuned))\n',
    ('tests/test_planted_bugs.py::test_verdict_flips_list_verdicts_tested_at_only_one_setting',),
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
