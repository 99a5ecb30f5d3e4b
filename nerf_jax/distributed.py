"""Devices and processes: one code path for 1 CPU, N GPUs/TPUs and N hosts.

Every array that training and rendering use lives on one ``Mesh`` over all
devices of all processes, with a single axis ``'data'``:

- parameters, optimizer and model state, cameras: replicated;
- the ray batch and render chunks: split over ``'data'``;
- training pixels (one flat table of every image's pixels): its rows split
  over ``'data'``, so each device holds only its share (see ``shard_rows``
  and ``gather_rows``).

With several processes (``jax.distributed.initialize``), every process runs
the same program on the same host-side values; only the primary process
(index 0) writes files and prints.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nerf_jax import errors

AXIS = 'data'


class DistributedError(errors.UserError):
  """The distributed runtime could not start as asked (one-line message)."""


def initialize(coordinator: str = '', num_processes: Optional[int] = None,
               process_id: Optional[int] = None, auto: bool = False) -> bool:
  """Joins a multi-process run; call before anything else touches JAX.

  Args:
    coordinator: 'host:port' of process 0's coordinator service.
    num_processes: how many processes take part.
    process_id: this process's index in [0, num_processes).
    auto: let JAX detect the cluster (Cloud TPU pods, SLURM, Open MPI, or
      the ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
      ``JAX_PROCESS_ID`` environment variables).

  Returns:
    Whether the distributed runtime was started (False: one process).
  """
  explicit = bool(coordinator) or num_processes is not None or (
      process_id is not None)
  if not (explicit or auto):
    return False
  if explicit and not (coordinator and num_processes is not None and
                       process_id is not None):
    raise DistributedError('--coordinator, --num_processes and --process_id '
                           'go together (or use --distributed to let JAX '
                           'detect the cluster)')
  if explicit and not 0 <= process_id < num_processes:
    raise DistributedError(f'--process_id={process_id} must be in [0, '
                           f'--num_processes={num_processes})')
  # CPU devices of different processes talk through gloo (GPUs use NCCL,
  # TPUs their interconnect; for them this setting changes nothing).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = {}
  if explicit:
    kwargs = dict(coordinator_address=coordinator,
                  num_processes=num_processes, process_id=process_id)
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    raise DistributedError(f'could not join the distributed run: {first}') from e
  return True


def is_primary() -> bool:
  """True in the process that writes files and prints (process 0)."""
  return jax.process_index() == 0


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process."""
  return Mesh(np.asarray(jax.devices()), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Host values, identical in every process, replicated on every device."""
  return jax.device_put(tree, replicated(mesh))


def shard_rows(table: np.ndarray, mesh: Mesh) -> jax.Array:
  """A table [p, ...] (the training pixels) with its rows split over the mesh.

  The rows are padded with zeros to a multiple of the mesh size (padded rows
  are never sampled). Each process builds only the shards of its own
  devices.
  """
  p = table.shape[0]
  size = mesh.devices.size
  padded = -(-p // size) * size
  shape = (padded,) + table.shape[1:]

  def shard(index):
    rows = index[0]
    start, stop = rows.start or 0, padded if rows.stop is None else rows.stop
    part = np.asarray(table[start:min(stop, p)])
    if stop > p:
      pad = np.zeros((stop - max(start, p),) + table.shape[1:], table.dtype)
      part = np.concatenate([part, pad])
    return part[(slice(None),) + tuple(index[1:])]

  return jax.make_array_from_callback(shape, batch_sharded(mesh), shard)


def gather_rows(table: jax.Array, index: jnp.ndarray,
                mesh: Optional[Mesh]) -> jnp.ndarray:
  """``table[index]`` for a row-sharded table (``shard_rows``).

  The indices (i32[b], the same on every device) pick any row; each device
  reads the rows it holds and one reduce-scatter assembles the batch, split
  over the mesh like the rays. The result equals the plain gather exactly,
  whatever the number of devices.

  Returns:
    [b, ...] of the table's dtype, sharded over 'data' with a mesh.
  """
  if mesh is None:
    return table[index]
  dtype = table.dtype

  def local(table, index):
    held = table.shape[0]
    mine = index - jax.lax.axis_index(AXIS) * held
    inside = (mine >= 0) & (mine < held)
    rows = table[jnp.clip(mine, 0, held - 1)]
    inside = inside.reshape(inside.shape + (1,) * (rows.ndim - 1))
    # Exact: one device contributes each row, the others add zeros.
    rows = jnp.where(inside, rows, 0).astype(
        jnp.int32 if jnp.issubdtype(dtype, jnp.integer) else dtype)
    return jax.lax.psum_scatter(rows, AXIS, scatter_dimension=0, tiled=True)

  gathered = jax.shard_map(
      local, mesh=mesh, in_specs=(P(AXIS), P()),
      out_specs=P(AXIS))(table, index)
  return gathered.astype(dtype)


def global_array(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """A host array (identical in every process) as a global jax.Array."""
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding,
                                      lambda index: value[index])


def agree(value: float) -> float:
  """Process 0's ``value`` in every process (a collective: all must call).

  Loop decisions that depend on a clock (time budgets, timed evaluations)
  use it, so that processes never take different branches and hang.
  """
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return float(multihost_utils.broadcast_one_to_all(np.float32(value)))


def any_process(flag: bool) -> bool:
  """Whether ``flag`` is true in any process (a collective: all must call).

  A stop signal may reach one process only; all must stop together.
  """
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  flags = multihost_utils.process_allgather(np.int32(bool(flag)))
  return bool(np.any(flags))
