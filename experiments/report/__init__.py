"""``python -m experiments.report runs/x``: what a sweep found, in a table, plots and words.

Reads only the run folders (``config.json``, ``status.json``, ``metrics.jsonl``) and ``sweep.json``;
never rebuilds a task or a model, so a report can be written anywhere, any time, even while the
sweep runs. Writes, into the sweep folder:

* ``summary.csv``: one row per run: cell, depth, width, seed, params, status, final train / val /
  test metrics, steps and seconds to the task threshold, area under the validation curve, the
  generalization gap, length-generalization metrics where the task has them, speed;
* the figures of ``experiments.report.plots`` (learning curves, final metric and convergence vs depth,
  per-layer gradient norms, diverged runs, length generalization);
* ``report.md``: the statements in words, every comparison with its numbers, the variant table, the
  published values the sweep's config cites beside ours, and the plots.

The statistics are ``experiments.report.stats``: Student-t intervals over seeds, Welch comparisons, and
Holm's correction over the whole family of comparisons one report makes; a difference is called
clear only when it holds after that correction. The report says which method made each number.

The metric: the report ranks and compares on the metric the field reports for the task
(``main_metric``): entity F1 for tagging, BLEU for translation and transduction, WER / CER for
speech to text, perplexity / bits per character for language models, accuracy for classification,
not the training loss; ``report.metric`` in the sweep's config overrides it. Its direction (lower
or higher is better) is the task's ``metric_modes``. A variant beats the task's baseline when its
95% interval lies wholly on the better side of the baseline value (``stats.beats``), not its mean.

Fragility: every verdict (each comparison of the family, the best variant, the best cell at each
depth, each "beats the baseline", each published-reference agreement) is recomputed with each
finished run left out in turn (``stats.leave_one_out``, which says why that resampling); a verdict
that changes is marked *fragile* in report.md, with the run whose absence changes it, and listed in
``verdicts.csv`` (one row per verdict) and in summary.csv's ``fragile_without_this_run`` column.

Published references: a sweep config may carry ``report.published``, a mapping
``label -> {cell, depth, metric, split, value, solved, source, note}`` (every field but ``source``
optional; see ``published_rows``). The report reads it from ``sweep.json`` (else from a run's
``config.json``) and tolerates its absence.

The parts: ``runs`` (reading run folders, the summary row, variants), ``verdicts`` (the family of
comparisons, fragility, published agreement), ``statements`` (the findings in words), ``markdown``
(report.md section by section, ``write_report``), ``stats``, ``plots``, ``cli`` (the command line);
``study`` and ``study_markdown``: the cross-task report of a study folder (``study.json`` and one sweep
folder per part; ``write_study_report``), which ``python -m experiments.report DIR`` writes when DIR holds
a study.json.
"""

from experiments.report import plots
from experiments.report import stats
from experiments.report.cli import main
from experiments.report.fmt import CORRECTION, CORRECTION_NAMES
from experiments.report.markdown import comparison_table, published_rows, speed_conditions, write_report
from experiments.report.runs import (
  FIELD_METRICS,
  REPORT_FILE,
  SUMMARY_FILE,
  SWEEP_FILE,
  VERDICTS_FILE,
  Run,
  Sweep,
  Variant,
  json_value,
  load_runs,
  load_sweep,
  main_metric,
  metric_mode,
  published,
  recorded_metrics,
  summarize,
  variants,
  write_csv,
)
from experiments.report.statements import depth_basis, statements, verdict
from experiments.report.study import STUDY_FILE, DepthEffect, Study, depth_effects, is_study, read_study
from experiments.report.study_markdown import CONVERGENCE_FILE, DEPTH_EFFECTS_FILE, HEATMAP_FILES, write_study_report
from experiments.report.stats import clipped_interval, diff_ci, mean_ci, metric_range
from experiments.report.verdicts import (
  Family,
  Fragility,
  agreement,
  comparison_keys,
  comparisons,
  describe,
  fragility,
  outcomes,
  verdict_label,
  verdict_rows,
)
