"""Sweeps on a cluster through submitit: one job per grid point, all in one job array.

``python -m experiments.run --config C --workdir W --launcher slurm`` submits the grid points that have
runs left to train as one SLURM job array (submitit's ``AutoExecutor``; settings: the config's
``launch.*`` keys), prints the job ids and where the logs go, and returns. Each array task trains its grid
point through the code path of a local run (``sweep.run_sweep`` with a ``select`` for that point) into the
same workdir, so run folders, locks, resume and the report are those of a run on one machine.
``--launcher local`` runs the same jobs on this machine (submitit's local executor) and waits for them.

Preemption and time limits: SLURM sends a job USR2 ``launch.signal_delay_s`` seconds before its time
limit (and on preemption where the cluster sends the job's signal then). submitit's handler for it runs in
the job's main thread: it calls the job's ``checkpoint()``, saves what that returns as the job to run
next, requeues the job and exits the process. So a ``GridPointJob`` trains in a second thread while its
main thread only waits: ``checkpoint()`` sets the stop flag the training polls at every step (the flag
Ctrl-C sets in a local run), waits for the training to save its checkpoint and mark its runs interrupted,
and returns the same call; the requeued job resumes from that checkpoint exactly. Time limits count
against ``launch.max_num_timeout``; preemptions do not.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Sequence

import ml_collections

from deeprnn_jax.training import config as config_lib
from deeprnn_jax._extras import require
from deeprnn_jax.training import runlog
from deeprnn_jax.training import train as train_lib
from deeprnn_jax.training.config import ConfigError
from experiments import sweep
from experiments import workers

submitit = require('submitit', 'cluster', '--launcher slurm|local (experiments.slurm)')

LAUNCHERS = ('local', 'slurm')


class GridPointJob(submitit.helpers.Checkpointable):
  """One array task: trains the runs of the grid point ``variant`` of the sweep ``config`` in ``workdir``.

  ``config``: the sweep's validated config as a plain dict (what was submitted, whatever the config file
  says by the time the job starts); ``facts``: how it was launched, kept in each run's status.json;
  ``on_event``: the trainer's event hook (``train.EventHook``; tests use it); ``config_file``: the file the
  config came from, recorded in sweep.json. Returns
  ``{'variant', 'states', 'locked'}``; raises if a run failed, so the job shows as failed.
  """

  def __init__(
    self,
    config: dict,
    workdir: str,
    facts: dict,
    on_event: train_lib.EventHook | None = None,
    config_file: str | None = None,
  ):
    self.config, self.workdir, self.facts, self.on_event = config, workdir, facts, on_event
    self.config_file = config_file
    self._stop: threading.Event | None = None
    self._finished = True  # set False while a training thread runs; True (a plain attribute) when it ends

  def __getstate__(self) -> dict:
    # What is pickled for the requeued job: the call, not this process's thread and flag.
    return {**self.__dict__, '_stop': None, '_finished': True}

  def __call__(self, variant: str) -> dict:
    self._stop, outcome, self._finished = threading.Event(), {}, False
    threading.Thread(target=self._train, args=(variant, outcome), name='training', daemon=True).start()
    try:
      self._wait_for_training()  # signal handlers run here, in the main thread (see checkpoint)
    except KeyboardInterrupt:  # the job is cancelled: stop with a checkpoint while there is time
      self._stop.set()
      self._wait_for_training()
      raise
    if 'error' in outcome:
      raise outcome['error']
    return outcome['result']

  def _wait_for_training(self) -> None:
    # Polls a plain attribute, never a lock: a signal handler that waits too (checkpoint) may run in
    # the middle of this wait, and two waits on one thread's lock, one inside the other, can deadlock
    # (the outer one may hold the lock when the handler starts).
    while not self._finished:
      time.sleep(0.05)

  def _train(self, variant: str, outcome: dict) -> None:
    try:
      config = config_lib.validate(self.config)
      result = sweep.run_sweep(
        config,
        self.workdir,
        should_stop=self._stop.is_set,
        select=lambda point, seed: point.variant == variant,
        on_event=self.on_event,
        facts=self.facts,
        config_file=self.config_file,
      )
      outcome['result'] = {'variant': variant, 'states': result.states, 'locked': result.locked}
      if result.failed:
        outcome['error'] = RuntimeError('; '.join(f'{run} failed: {msg}' for run, msg in result.failed.items()))
    except BaseException as e:  # pylint: disable=broad-except  (handed to the main thread)
      outcome['error'] = e
    finally:
      self._finished = True

  def checkpoint(self, variant: str) -> submitit.helpers.DelayedSubmission:
    """submitit calls this from its USR2 handler, in the main thread, before requeueing the job.

    The training thread sees the stop flag at its next step, saves a checkpoint, marks its runs
    interrupted and ends; only then may submitit requeue and exit, or the steps since the last periodic
    checkpoint would be lost."""
    if self._stop is not None:
      self._stop.set()
      self._wait_for_training()
    return submitit.helpers.DelayedSubmission(self, variant)


# ----------------------------------------------------------------------------------------------
# Submitting.


def slurm_options(config: ml_collections.ConfigDict) -> dict[str, str]:
  """``launch.slurm_options`` (``'key=value'`` strings) as sbatch options; ``ConfigError`` if malformed."""
  options = {}
  for text in config.launch.slurm_options:
    key, sep, value = text.partition('=')
    if not sep or not key.strip() or not value.strip():
      raise ConfigError('launch.slurm_options', f"each option looks like 'key=value' (e.g. 'qos=high'), got {text!r}")
    options[key.strip().lstrip('-')] = value.strip()
  return options


def executor(config: ml_collections.ConfigDict, workdir: str, cluster: str) -> submitit.AutoExecutor:
  """submitit's executor for ``cluster`` (``'slurm'`` or ``'local'``) with the config's ``launch.*``."""
  launch = config.launch
  folder = launch.folder or os.path.join(os.path.abspath(workdir), 'submitit')
  ex = submitit.AutoExecutor(
    folder=folder,
    cluster=cluster,
    slurm_max_num_timeout=launch.max_num_timeout,
    local_max_num_timeout=launch.max_num_timeout,
  )
  params = dict(
    name=os.path.basename(os.path.abspath(workdir)),
    timeout_min=launch.timeout_min,
    nodes=1,
    tasks_per_node=1,
    cpus_per_task=launch.cpus_per_task,
    gpus_per_node=launch.gpus_per_task,
    mem_gb=launch.mem_gb,
    local_setup=list(launch.setup),
  )
  if cluster == 'slurm':
    params.update(
      slurm_partition=launch.partition,
      slurm_account=launch.account,
      slurm_array_parallelism=launch.array_parallelism,
      slurm_signal_delay_s=launch.signal_delay_s,
      slurm_setup=list(launch.setup),
      slurm_additional_parameters=slurm_options(config) or None,
    )
  ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
  return ex


def unfinished(points: Sequence[sweep.GridPoint], workdir: str) -> list[sweep.GridPoint]:
  """The grid points with a run that is not done and that no live runner holds (a running job)."""
  todo = []
  for point in points:
    for seed in point.seeds:
      run_dir = os.path.join(workdir, point.run_id(seed))
      if runlog.is_done(runlog.read_status(run_dir), point.config.train.num_steps):
        continue
      if workers.is_free(run_dir):
        todo.append(point)
      break  # a point's runs train together: one not done (or held) decides
  return todo


def submit(
  config: ml_collections.ConfigDict,
  workdir: str,
  cluster: str,
  *,
  points: Sequence[sweep.GridPoint] | None = None,
  facts: dict | None = None,
  on_event: train_lib.EventHook | None = None,
  config_file: str | None = None,
  echo: Callable[[str], None] = print,
) -> list:
  """Submits the grid points of ``points`` (default: ``unfinished``) as one job array; returns the jobs."""
  if points is None:
    everything = sweep.expand(config)
    sweep.check_workdir(config, workdir, everything)
    points = unfinished(everything, workdir)
  if not points:
    return []
  ex = executor(config, workdir, cluster)
  workdir = os.path.abspath(workdir)  # jobs may start elsewhere
  facts = facts or {'workers': 1, 'launcher': cluster}
  job = GridPointJob(
    config_lib.to_dict(config), workdir, facts, on_event, os.path.abspath(config_file) if config_file else None
  )
  jobs = ex.map_array(job, [p.variant for p in points])
  what = (
    f'job array {jobs[0].job_id.split("_")[0]} (at most {config.launch.array_parallelism} at once)'
    if cluster == 'slurm'
    else 'local jobs'
  )
  echo(f'submitted {len(jobs)} grid point{"s" if len(jobs) > 1 else ""} of {workdir} as {what}:')
  for j, point in zip(jobs, points):
    echo(f'  {j.job_id:>14}  {point.variant}')
  echo(f'logs: {jobs[0].paths.stdout} (and .err; one pair per job)')
  return jobs


def launch(
  config: ml_collections.ConfigDict,
  workdir: str,
  cluster: str,
  *,
  config_file: str | None = None,
  command: str = 'python -m experiments.run',
  should_stop: Callable[[], bool] | None = None,
  echo: Callable[[str], None] = print,
) -> list[sweep.GridPoint] | None:
  """``--launcher``: submits the unfinished grid points. On SLURM it returns None at once (the jobs run
  on); ``local`` runs at most ``launch.array_parallelism`` jobs at a time on this machine, waits for them
  and returns the grid (for the summary and the report). ``config_file``: the file ``config`` came from
  (sweep.json records it); ``command``: the command line that launched it, for the hints. Raises ``Interrupted`` if
  ``should_stop()`` turns true while waiting (the jobs' runs keep
  their last checkpoint)."""
  if cluster not in LAUNCHERS:
    raise ConfigError('', f'unknown launcher {cluster!r}; valid: {", ".join(LAUNCHERS)}')
  slurm_options(config)  # a malformed option is an error before anything is written
  sweep.enable_compilation_cache()
  points = sweep.expand(config)
  sweep.check_workdir(config, workdir, points)
  sweep.write_sweep_file(config, workdir, points, config_file)
  # The costliest points first, as workers do (sweep.start_order): the array's first jobs start them.
  todo = sweep.start_order(unfinished(points, workdir))
  if not todo:
    echo(f'nothing to submit: every run of {workdir} is done or held by a running job')
    return points if cluster == 'local' else None
  if cluster == 'slurm':
    submit(config, workdir, cluster, points=todo, config_file=config_file, echo=echo)
    echo(
      f"watch: squeue --me; each run's progress: {command} --dry-run\n"
      'preempted or timed-out jobs checkpoint and requeue themselves; for jobs that failed or ran out of requeues, '
      'run the same command again: it submits only what is left\n'
      f'when all are done: python -m experiments.report {workdir}'
    )
    return None
  should_stop = should_stop or (lambda: False)
  size = config.launch.array_parallelism
  for start in range(0, len(todo), size):
    wave = todo[start : start + size]
    jobs = submit(
      config,
      workdir,
      cluster,
      points=wave,
      config_file=config_file,
      echo=echo,
      facts={'workers': len(wave), 'launcher': cluster},
    )
    while not all(j.done() for j in jobs):
      if should_stop():
        for j in jobs:
          j.cancel()
        raise train_lib.Interrupted(
          'interrupted; the local jobs were cancelled and their runs keep their last '
          'checkpoint; run the same command again to resume'
        )
      time.sleep(0.5)
    for j, point in zip(jobs, wave):
      if j.state != 'FINISHED' or not j.paths.result_pickle.exists():
        echo(f'  {point.variant}: job {j.job_id} ended without a result ({j.state}); see {j.paths.stderr}')
        continue
      try:
        j.result()
      except Exception as e:  # pylint: disable=broad-except
        echo(f'  {point.variant}: job {j.job_id} failed: {runlog.one_line(e)}; see {j.paths.stderr}')
  return points
