"""Data parallelism: one run over all devices, the batch sharded, the parameters replicated.

The same code serves one device (no mesh: nothing changes) and several local devices. (Several
hosts would also need every host to feed and place its share of the data and only one of them to
write the run's files; the runner does neither, so a run stays on one machine.) The train step is
written for one device; ``shard_batch`` inside it tells XLA's SPMD partitioner to split the batch
axis over the mesh, and the replicated parameters make it insert the gradient all-reduce itself.
"""

from __future__ import annotations

from typing import Any

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
