"""The report on wandb: each run's summary gets the report's per-run measures, and the report itself
(report.md, summary.csv, the plots) is logged as one run of the sweep's group.

A run's own summary (written when it finished) holds its outcome and the last value of every metric;
the measures that need the whole curve or the other splits (area under the validation curve, the
generalization gap, steps to threshold, best step) come from the report's ``summary.csv`` and are
added here under ``report/``, by resuming each run's wandb run (same id, same mode). Offline, a
resume is one more offline-run folder with the same id: sync all of a run's folders in one
``wandb sync`` call, which uploads them in order of start time (README, "wandb").
"""

from __future__ import annotations

import csv
import glob
import hashlib
import os
from typing import Sequence

from deeprnn_jax.training import runlog

# summary.csv columns that are per-run measures (prefixes; the metric names vary by task).
_MEASURES = ('final_', 'best_', 'threshold_', 'val_', 'generalization_gap', 'diverged_step')


def _number(text: str):
  try:
    return float(text)
  except (TypeError, ValueError):
    return None


def measures(row: dict) -> dict[str, float]:
  """The report's per-run measures of one summary.csv row, as ``report/<column>`` numbers."""
  return {
    f'report/{k}': v for k, v in ((k, _number(t)) for k, t in row.items() if k.startswith(_MEASURES)) if v is not None
  }


def publish(workdir: str, report_files: Sequence[str] | None = None) -> list[str]:
  """Publishes the report of ``workdir`` to wandb (see the module docstring); does nothing for runs
  that did not log to wandb. Returns the wandb errors met (each also a logged warning)."""
  summary_path = os.path.join(workdir, 'summary.csv')
  rows = list(csv.DictReader(open(summary_path))) if os.path.isfile(summary_path) else []
  errors, logging_cfg, mode = [], None, None
  for row in rows:
    folder = runlog.RunFolder(os.path.join(workdir, row['run_id']))
    status, config = folder.read_status() or {}, folder.read_config() or {}
    if status.get('wandb_mode') in (None, 'disabled') or not status.get('wandb_id'):
      continue
    logging_cfg, mode = config.get('logging') or {}, status['wandb_mode']
    run = _open(
      mode,
      logging_cfg,
      name=row['run_id'],
      run_id=status['wandb_id'],
      directory=logging_cfg.get('wandb_dir') or folder.path,
      group=logging_cfg.get('group') or os.path.basename(os.path.abspath(workdir)),
      # The run's own job type and tags: offline, this resume is a folder of its own, which `wandb sync`
      # uploads after the run's first one; without them it would carry an empty job type and no tags.
      job_type=status.get('wandb_job_type'),
      tags=status.get('wandb_tags') or (),
    )
    run.summary(measures(row))
    run.finish()
    errors += [run.error] if run.error else []
  if logging_cfg is not None:
    files = list(report_files or []) or sorted(
      glob.glob(os.path.join(workdir, '*.md')) + [summary_path] + glob.glob(os.path.join(workdir, '*.png'))
    )
    name = os.path.basename(os.path.abspath(workdir))
    # One report run per sweep folder, resumed by every rewrite of the report.
    report_id = 'report-' + hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
    run = _open(
      mode,
      logging_cfg,
      name=f'{name}-report',
      run_id=report_id,
      directory=logging_cfg.get('wandb_dir') or workdir,
      group=logging_cfg.get('group') or name,
      job_type='report',
    )
    run.log_files(
      f'{name}-report',
      'report',
      [f for f in files if os.path.isfile(f)],
      table=('summary', rows),
      images=[f for f in files if f.endswith('.png')],
    )
    run.finish()
    errors += [run.error] if run.error else []
  return errors


def _open(
  mode: str,
  logging_cfg: dict,
  *,
  name: str,
  run_id: str,
  directory: str,
  group: str,
  job_type: str | None = None,
  tags: Sequence[str] = (),
) -> runlog.WandbRun:
  return runlog.WandbRun(
    mode,
    project=logging_cfg.get('project') or 'deeprnn-jax',
    entity=logging_cfg.get('entity'),
    name=name,
    run_id=run_id,
    directory=directory,
    config={},
    group=group,
    job_type=job_type,
    tags=tags,
    timeout=float(logging_cfg.get('wandb_timeout_seconds') or 60.0),
  )
