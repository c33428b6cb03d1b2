"""A sweep's state as its folder holds it: how many runs are done and begun (``run_states``), what a rerun
resumes (``resume_summary``), and the whole sweep's progress and time left (``SweepProgress``).

Read from the runs' status files, so every runner of the sweep (workers, jobs, other commands) counts. The
points are ``sweep.GridPoint``s (not imported: sweep imports this module)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

from deeprnn_jax.training import progress as progress_lib
from deeprnn_jax.training import runlog


def run_states(points: Sequence[Any], workdir: str) -> tuple[int, list[str], int]:
  """``(runs done, ["<run> from step S" for runs begun], runs in all)`` from the sweep folder's status
  files: what every runner of the sweep (workers, jobs, other commands) has left there."""
  finished, partial, total = 0, [], 0
  for point in points:
    for seed in point.seeds:
      total += 1
      status = runlog.read_status(os.path.join(workdir, point.run_id(seed)))
      if status is None:
        continue
      if runlog.is_done(status, point.config.train.num_steps):
        finished += 1
      elif status.get('step'):
        partial.append(f'{point.run_id(seed)} from step {status["step"]}')
  return finished, partial, total


@dataclasses.dataclass
class SweepProgress:
  """The whole sweep's progress and time left, for a line after each grid point: counted from the
  folder, so with ``--workers N`` each worker's line covers the runs every worker finished.

  The estimate is the runs left times the time per run since this command started (runs finished
  before it are not timed); None until one run has finished since."""

  points: Sequence[Any]
  workdir: str
  start: float = dataclasses.field(default_factory=time.monotonic)
  done_at_start: int = -1

  def __post_init__(self):
    self.done_at_start = run_states(self.points, self.workdir)[0]

  def line(self) -> str:
    done, _, total = run_states(self.points, self.workdir)
    text = f'sweep: {done} of {total} runs done'
    new = done - self.done_at_start
    if 0 < new and done < total:
      left = (time.monotonic() - self.start) / new * (total - done)
      text += f'; about {progress_lib.duration(left)} left'
    return text


def resume_summary(points: Sequence[Any], workdir: str) -> str | None:
  """What a rerun finds: ``"K of N runs finished; resuming A from step S, ..."`` (None in a fresh
  folder), so that a command run again after Ctrl-C says what it picks up."""
  finished, partial, total = run_states(points, workdir)
  if not finished and not partial:
    return None
  resuming = f'; resuming {", ".join(partial[:4])}{", ..." if len(partial) > 4 else ""}' if partial else ''
  return f'{finished} of {total} runs finished{resuming}'
