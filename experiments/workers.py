"""Workers: one sweep trained by several processes on one machine, each on its own cores or GPUs.

``python -m experiments.run --config C --workdir W --workers N`` starts N worker processes on the same
workdir. Each is an ordinary runner of the whole grid (``sweep.run_sweep``, the code path of a single
process): the run locks (``experiments/locks.py``) decide who trains what, so the workers split the grid
without being told how, never train a run twice, and a worker that dies holds nothing. The parent is a
launcher, not a scheduler:

* it checks the sweep first (``sweep.expand`` and the workdir; on the CPU, so it never holds accelerator
  memory): a mistake is one error before any worker starts, and no more workers start than grid points
  are left to train;
* worker i of N owns ``K = --devices-per-worker`` GPUs (``CUDA_VISIBLE_DEVICES``) where there are GPUs,
  else K cores (by default the cores divided among the workers that start: a lone worker gets them
  all): it pins itself to them (``sched_setaffinity``) before JAX starts, so XLA sizes its thread
  pools to them (no XLA flag is needed for that, and ``--xla_cpu_multi_thread_eigen=false`` measured no
  faster: BENCHMARKS.md, "Workers"). All share one persistent compilation cache;
* it shows every worker's lines prefixed with its name (``[w1] [3/9] lstm-d2-w32 ...``), forwards SIGINT
  and SIGTERM (each worker checkpoints and stops, as a single runner does; a second Ctrl-C stops them at
  once), and leaves the one summary and report to ``experiments.run``.

Workers die with the parent (``PR_SET_PDEATHSIG``; where there is no prctl they watch the parent's pid), so
``kill -9`` of the parent, like ``kill -9`` of a worker, leaves runs that resume from their checkpoints
when the same command runs again.

A worker process is ``python -m experiments.worker`` (``experiments/worker.py``). This module imports
nothing heavy at the top: the launcher may run on a machine whose GPUs it must not touch.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pkgutil
import signal
import subprocess
import sys
import threading
from typing import Callable, Mapping, Sequence, TextIO


@dataclasses.dataclass(frozen=True)
class Worker:
  """Worker ``index`` (1-based: ``w1``) of ``count``, and what it owns: cores, or GPU ids."""

  index: int
  count: int
  cpus: tuple[int, ...] = ()
  gpus: tuple[str, ...] = ()

  @property
  def name(self) -> str:
    return f'w{self.index}'

  def describe(self) -> str:
    if self.gpus:
      return f'{self.name}: GPU {",".join(self.gpus)}'
    return f'{self.name}: CPU {",".join(map(str, self.cpus))}' if self.cpus else self.name


# ----------------------------------------------------------------------------------------------
# What a machine has, and who gets what (pure functions, tested as such).


def plan(
  requested: int | None,
  per_worker: int | None,
  cpus: Sequence[int],
  gpus: Sequence[str] = (),
  todo: int | None = None,
) -> list[Worker]:
  """The workers for a machine with ``cpus`` (core ids) and ``gpus`` (visible GPU ids).

  ``requested``: the number of workers, or None for as many as fit: one per ``per_worker`` GPUs where
  there are GPUs (so one on a single accelerator), else one per ``per_worker`` cores. ``todo``: the grid
  points left to train; no more workers than that start (at least one). Worker i gets GPUs
  ``gpus[i*K:(i+1)*K]``, or cores ``cpus[i*K:(i+1)*K]``; more workers than cores share them round-robin
  (their choice), while GPUs are never shared (each worker's JAX would claim most of the memory).

  ``per_worker`` None (``--devices-per-worker`` not given): one GPU each, or on CPU the cores divided
  among the workers that start, in contiguous blocks: one core each while there are grid points for
  every core, and all the cores to a one-run sweep's lone worker. Measured on a quiet 2-core machine
  (BENCHMARKS.md, "The word LM step"): the PTB LM's step ran 1.7x as fast on both cores as pinned to
  one (17.9-18.4 vs 10.2-10.7 steps/s). A ``per_worker`` given is kept as given.
  Raises ``ValueError`` with a one-line message.
  """
  if per_worker is not None and per_worker < 1:
    raise ValueError(f'--devices-per-worker must be >= 1, got {per_worker}')
  if requested is not None and requested < 1:
    raise ValueError(f'--workers must be >= 1 or auto, got {requested}')
  units = list(gpus) or list(cpus)
  if not units:
    raise ValueError('this process may run on no CPU (empty affinity mask)')
  spread = per_worker is None and not gpus
  per_worker = per_worker or 1
  count = max(1, len(units) // per_worker) if requested is None else requested
  if todo is not None:
    count = max(1, min(count, todo))
  if spread and count < len(cpus):
    # Contiguous blocks whose sizes differ by at most one core.
    bounds = [round(i * len(cpus) / count) for i in range(count + 1)]
    return [Worker(i + 1, count, cpus=tuple(cpus[bounds[i] : bounds[i + 1]])) for i in range(count)]
  if gpus:
    if count * per_worker > len(gpus):
      raise ValueError(
        f'{count} workers x {per_worker} GPU{"s" if per_worker > 1 else ""} need {count * per_worker} '
        f'GPUs; {len(gpus)} visible ({",".join(gpus)}); use fewer --workers or --devices-per-worker'
      )
    return [Worker(i + 1, count, gpus=tuple(gpus[i * per_worker : (i + 1) * per_worker])) for i in range(count)]
  return [
    Worker(i + 1, count, cpus=tuple(dict.fromkeys(cpus[(i * per_worker + j) % len(cpus)] for j in range(per_worker))))
    for i in range(count)
  ]


def machine_cpus() -> list[int]:
  """The cores this process may run on (its affinity mask: a cluster job's or ``taskset``'s share)."""
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def gpu_plugin(plugin_names: Sequence[str]) -> bool:
  """Whether JAX has a GPU backend among its installed plugins (``jax_plugins.xla_cuda13`` etc.)."""
  return any('cuda' in n or 'rocm' in n for n in plugin_names)


def _jax_plugin_names() -> list[str]:
  spec = importlib.util.find_spec('jax_plugins')
  if spec is None or not spec.submodule_search_locations:
    return []
  return [m.name for m in pkgutil.iter_modules(list(spec.submodule_search_locations))]


def visible_gpus(
  env: Mapping[str, str] | None = None, plugins: Sequence[str] | None = None, smi: Callable[[], str] | None = None
) -> list[str]:
  """The GPU ids JAX would use, found without starting JAX (a launcher must hold no device memory).

  None when JAX is kept to the CPU (``JAX_PLATFORMS``) or has no GPU plugin; else
  ``CUDA_VISIBLE_DEVICES`` if set, else the GPUs ``nvidia-smi -L`` lists.
  """
  env = os.environ if env is None else env
  platforms = env.get('JAX_PLATFORMS', '').lower()
  if platforms and not any(p in platforms for p in ('cuda', 'gpu', 'rocm')):
    return []
  if not gpu_plugin(_jax_plugin_names() if plugins is None else plugins):
    return []
  if 'CUDA_VISIBLE_DEVICES' in env:
    ids = [d.strip() for d in env['CUDA_VISIBLE_DEVICES'].split(',')]
    return [d for d in ids if d and d != '-1']
  text = (smi or _nvidia_smi)()
  return [line.split(':')[0].split()[1] for line in text.splitlines() if line.startswith('GPU ')]


def _nvidia_smi() -> str:
  try:
    return subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return ''


def worker_env(worker: Worker, env: Mapping[str, str], cache_dir: str | None = None) -> dict[str, str]:
  """The environment of ``worker``'s process: its GPUs and the shared compilation cache. (Its cores are
  set by the worker itself, ``worker_args``: the affinity must be in place before JAX starts.)"""
  env = dict(env)
  env['PYTHONUNBUFFERED'] = '1'  # lines reach the parent's display as they are printed
  if cache_dir:
    env['JAX_COMPILATION_CACHE_DIR'] = cache_dir
  if worker.gpus:
    env['CUDA_VISIBLE_DEVICES'] = ','.join(worker.gpus)
  return env


def worker_args(worker: Worker, parent_pid: int, run_argv: Sequence[str]) -> list[str]:
  """The arguments of ``python -m experiments.worker`` for ``worker`` (``worker.main`` reads them)."""
  args = ['--worker', f'{worker.index}/{worker.count}', '--parent', str(parent_pid)]
  if worker.cpus:
    args += ['--cpus', ','.join(map(str, worker.cpus))]
  return [*args, '--', *run_argv]


def is_free(run_dir: str) -> bool:
  """Whether no live runner (a worker, a job, another command) holds the run: its lock, taken for a
  moment. A run not started yet is free."""
  if not os.path.isdir(run_dir):
    return True
  from deeprnn_jax.training import runlog  # pylint: disable=g-import-not-at-top  (imports JAX: not before a worker pins)
  from experiments.locks import RunLock  # pylint: disable=g-import-not-at-top

  lock = RunLock(runlog.RunFolder(run_dir).lock)
  free = lock.acquire()
  lock.release()
  return free


# ----------------------------------------------------------------------------------------------
# The parent: start the workers, show their lines, forward signals, wait.


@dataclasses.dataclass
class Outcome:
  """How the workers ended: exit codes by worker name (negative: killed by that signal) and the
  signals the parent received (and forwarded) while they ran."""

  codes: dict[str, int]
  signals: list[int]

  @property
  def interrupted(self) -> bool:
    return bool(self.signals) or any(c == 130 for c in self.codes.values())


def launch(
  team: Sequence[Worker],
  run_argv: Sequence[str],
  *,
  command: Sequence[str] | None = None,
  cache_dir: str | None = None,
  out: TextIO | None = None,
  err: TextIO | None = None,
) -> Outcome:
  """Runs ``team`` on ``run_argv`` (the ``experiments.run`` arguments) until every worker has exited.

  ``command``: how a worker process starts (default ``python -m experiments.worker``; it gets
  ``worker_args``). SIGINT and SIGTERM are forwarded to the workers as received, then passed on to the
  handler installed before (the command line's stop flag). A second Ctrl-C that reaches a running worker
  stops it at once; KeyboardInterrupt is raised here once every worker has exited. Call from the main
  thread.
  """
  command = list(command or (sys.executable, '-m', 'experiments.worker'))
  out, err = out or sys.stdout, err or sys.stderr
  procs: dict[str, subprocess.Popen] = {}
  received: list[int] = []
  write_lock = threading.Lock()

  def forward(signum, frame):
    nonlocal stopped_at_once
    again = signum == signal.SIGINT and signal.SIGINT in received
    received.append(signum)
    for proc in procs.values():
      if proc.poll() is None:
        proc.send_signal(signum)
        # a worker still running gets a second Ctrl-C: it stops at once (else all have saved and exited)
        stopped_at_once = stopped_at_once or again
    handler = previous.get(signum)
    if callable(handler):
      handler(signum, frame)

  def show(stream, sink: TextIO, prefix: str) -> None:
    for line in stream:
      if not line.strip():  # (a stop message starts on a line of its own, for a progress bar)
        continue
      with write_lock:
        sink.write(prefix + line)
        sink.flush()

  def watch(name: str, proc: subprocess.Popen) -> None:
    show(proc.stdout, out, f'[{name}] ')
    code = proc.wait()
    if code < 0:
      with write_lock:
        err.write(f'[{name}] worker killed by {signal.Signals(-code).name}\n')
        err.flush()

  previous: dict = {}
  threads, stopped_at_once = [], False
  for s in (signal.SIGINT, signal.SIGTERM):
    previous[s] = signal.signal(s, forward)
  try:
    try:
      for w in team:
        if received:  # stopped while starting: the rest do not start
          break
        # The main thread starts every worker: PR_SET_PDEATHSIG fires when the thread that forked a
        # child ends, not the process. A session of their own keeps the terminal's Ctrl-C to the parent,
        # which forwards it once (the terminal would signal every worker, and again with each forward).
        proc = subprocess.Popen(
          [*command, *worker_args(w, os.getpid(), run_argv)],
          env=worker_env(w, os.environ, cache_dir),
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
          bufsize=1,
          start_new_session=True,
        )
        procs[w.name] = proc
        threads += [
          threading.Thread(target=watch, args=(w.name, proc), daemon=True),
          threading.Thread(target=show, args=(proc.stderr, err, f'[{w.name}] '), daemon=True),
        ]
        threads[-2].start()
        threads[-1].start()
    except KeyboardInterrupt:  # a second Ctrl-C while starting them (forward said whom it reached)
      pass
    for proc in procs.values():
      while True:
        try:
          proc.wait()
          break
        except KeyboardInterrupt:  # a second Ctrl-C, forwarded: wait for the workers it stops at once
          pass
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
  for t in threads:
    # A helper a worker started (e.g. wandb's service) may hold its pipes open after it exits.
    t.join(timeout=10)
  if stopped_at_once:
    raise KeyboardInterrupt
  return Outcome({name: proc.returncode for name, proc in procs.items()}, received)
