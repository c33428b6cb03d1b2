"""How work shares programs and devices: seeds in one program, and one run over all local devices.

Seeds: ``over_seeds`` turns the step of one seed into a step of S seeds in one program, batched
(``vmap``) or one after another inside it (``loop``), or keeps a lone seed's program free of the seed
axis (``single``); ``resolve_seed_program`` picks per backend and seed count;
``init_over_seeds`` always loops the initial states (vmapped, they can deadlock XLA:CPU).

Data parallelism: the batch sharded, the parameters replicated.

The same code serves one device (no mesh: nothing changes) and several local devices. (Several
hosts would also need every host to feed and place its share of the data and only one of them to
write the run's files; the runner does neither, so a run stays on one machine.) The train step is
written for one device; ``shard_batch`` inside it tells XLA's SPMD partitioner to split the batch
axis over the mesh, and the replicated parameters make it insert the gradient all-reduce itself.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

AXIS = 'data'


def data_mesh(devices=None) -> Mesh | None:
  """A 1-D mesh over ``devices`` (default: all), or None for a single device."""
  devices = jax.devices() if devices is None else list(devices)
  if len(devices) == 1:
    return None
  # Auto axes: the partitioner propagates shardings from the constraint (no sharding in types).
  return Mesh(devices, (AXIS,), axis_types=(AxisType.Auto,))


def place(tree: Any, mesh: Mesh | None) -> Any:
  """Puts every array of ``tree`` on the device: replicated over ``mesh``, or the default device."""
  if mesh is None:
    return jax.device_put(tree)
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: Any, mesh: Mesh | None) -> Any:
  """Inside a jitted step: split axis 0 (the examples) of every array of ``batch`` over the mesh."""
  if mesh is None:
    return batch
  sharding = NamedSharding(mesh, PartitionSpec(AXIS))
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), batch)


def resolve_seed_program(name: str, seeds: int = 2) -> str:
  """How ``seeds`` seeds that train together share their program, ``'vmap'`` or ``'loop'``, from
  ``sweep.seed_program``: ``'auto'`` is ``'loop'`` on CPU and ``'vmap'`` elsewhere. ``'separate'``
  makes the sweep train one seed per program; seeds handed over together still train together, as
  ``'auto'`` would. One seed is always ``'single'``: nothing to batch or loop.

  Measured on a 2-core CPU (BENCHMARKS.md): one training step of 8 vmapped seeds ran at 0.57-0.63x
  the throughput of 8 separate steps (small LSTM), the same seeds looped inside one program at
  1.00-1.10x. A lone seed vmapped over its axis of size 1 (what the runner did before ``'single'``)
  trained the word LM at 0.65x the speed of its bare step: XLA:CPU kept the size-1 batch dimension in
  its dots and copied around it.
  """
  if seeds == 1:
    return 'single'
  if name in ('vmap', 'loop'):
    return name
  return 'loop' if jax.default_backend() == 'cpu' else 'vmap'


def over_seeds(fn: Callable, in_axes: Sequence[int | None], program: str) -> Callable:
  """``fn`` of one seed, applied to every seed: arguments whose ``in_axes`` entry is 0 carry a leading
  seed axis, those with None are shared. ``program='loop'`` runs the seeds one after another inside
  the program (``lax.map``); ``program='single'`` is for a seed axis of size 1: the program indexes
  the lone seed out and puts the axis back on its results, so no op sees a batch dimension; anything
  else batches them (``jax.vmap``)."""
  if program == 'single':

    def single(*args):
      args = (jax.tree.map(lambda x: x[0], a) if axis == 0 else a for a, axis in zip(args, in_axes))
      return jax.tree.map(lambda x: x[None], fn(*args))

    return single
  if program != 'loop':
    return jax.vmap(fn, in_axes=tuple(in_axes))

  def looped(*args):
    def one_seed(per_seed):
      per_seed = iter(per_seed)
      return fn(*(next(per_seed) if axis == 0 else a for a, axis in zip(args, in_axes)))

    return jax.lax.map(one_seed, tuple(a for a, axis in zip(args, in_axes) if axis == 0))

  return looped


def init_over_seeds(fn: Callable, in_axes: Sequence[int | None]) -> Callable:
  """``over_seeds`` for the program that draws the seeds' initial states: always ``'loop'``, whatever
  the steps' program.

  Why not ``vmap``: vmapped over S seeds, the orthogonal initializer's QR (``geqrf``/``orgqr``)
  becomes one ``[S, n, n]`` LAPACK call, and jaxlib's CPU kernels split such a batch over XLA's
  intra-op thread pool and block the calling pool thread until the pieces finish. When several
  independent QRs (an LSTM's 4 gates x 2 layers) hold every pool thread that way, nothing is left to
  run the pieces and the program never finishes: the vmapped quickstart lstm-d2 (8 seeds, width 32)
  hung so on 2 cores (docs/guides/xla_cpu_vmap.md). Looped, every QR is one matrix, which the kernel
  runs inline. Nothing is lost: the program runs once per grid point, and each seed's state is
  bit-identical to the vmapped one (``tests/test_parallel.py``).
  """
  return over_seeds(fn, in_axes, 'loop')
