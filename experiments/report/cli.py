"""``python -m experiments.report DIR``: the report of a sweep folder (``sweep.json`` and run folders), or of
a study folder (``study.json`` and one sweep folder per part). Bad input: one line, exit 2. Ctrl-C: one
line, exit 130 (the report only reads the runs and writes each of its files atomically: a stop leaves
each file whole, old or new). A full or read-only disk: one line, exit 74."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from deeprnn_jax.training import runlog
from experiments import cli
from experiments.report.markdown import write_report
from experiments.report.study import is_study
from experiments.report.study_markdown import write_study_report


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog=cli.command('report'), description='Write the report of a sweep or of a study.')
  parser.add_argument('workdir')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.workdir):
    print(f'error: {args.workdir!r} is not a folder', file=sys.stderr)
    return 2
  try:
    path = write_study_report(args.workdir) if is_study(args.workdir) else write_report(args.workdir)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(
      f'stopped writing the report; the runs are untouched; write it with: {cli.command("report")} {args.workdir}',
      file=sys.stderr,
    )
    return 130
  except OSError as e:
    problem = runlog.storage_problem(e)
    if not problem:
      raise
    what = problem.split(';')[0]  # the problem and the file; the runs themselves are only read
    print(
      f'error: {what}; the runs are untouched: free some space or make the folder writable, then: '
      f'{cli.command("report")} {args.workdir}',
      file=sys.stderr,
    )
    return 74
  print(path)
  return 0
