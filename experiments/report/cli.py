"""``python -m experiments.report DIR``: the report of a sweep folder (``sweep.json`` and run folders), or of
a study folder (``study.json`` and one sweep folder per part). Bad input: one line, exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from experiments.report.markdown import write_report
from experiments.report.study import is_study
from experiments.report.study_markdown import write_study_report


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
    prog='python -m experiments.report', description='Write the report of a sweep or of a study.'
  )
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
  print(path)
  return 0
