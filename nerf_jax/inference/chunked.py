"""Rendering whole images in fixed-size chunks of rays.

One jit-compiled function renders a chunk; the last chunk of an image is
padded to the same shape, so it compiles once per chunk size whatever the image
size, and peak memory is set by the chunk, not the image. ``map_chunked`` is
the one host-side chunked evaluator (images here, the viewer's frames, the
export tools' fields). Scoring the views of a split is ``evaluate``; the
cameras of videos are ``cameras.paths``.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from nerf_jax import distributed, models
from nerf_jax.cameras import camera


def make_render_fn(model: models.Model) -> Callable:
  """A jitted ``fn(variables, rays) -> {key: array}`` of a model.

  ``variables`` is {'params': ..., 'state': ...} (``TrainState.variables``).
  The function is deterministic (no jitter) and returns ``OUTPUT_KEYS``.
  ``rays`` has batch shape [chunk]; the chunk is split over every device of
  every process (variables are replicated) and the outputs come back whole
  to every process, so chunk sizes must be multiples of
  ``jax.device_count()`` (``render_rays_chunked`` rounds them up).
  """

  def render_chunk(variables, rays: camera.Rays) -> dict:
    out = model.render(variables['params'], variables['state'], rays, None)
    return {k: out[k] for k in models.OUTPUT_KEYS}

  if jax.device_count() == 1:
    return jax.jit(render_chunk)
  mesh = distributed.make_mesh()
  if model.couples_rays:  # each device renders its rays on its own
    batch = P(distributed.AXIS)
    render_chunk = jax.shard_map(render_chunk, mesh=mesh,
                                 in_specs=(P(), batch), out_specs=batch,
                                 check_vma=False)
  return jax.jit(render_chunk,
                 in_shardings=(distributed.replicated(mesh),
                               distributed.batch_sharded(mesh)),
                 out_shardings=distributed.replicated(mesh))


class Cancelled(Exception):
  """An evaluation was stopped by its ``cancelled`` callback (e.g. a newer
  camera superseded the viewer's frame)."""


def map_chunked(fn: Callable, *arrays, chunk: int,
                size: Optional[int] = None, devices: int = 1,
                place: Optional[Callable] = None,
                cancelled: Optional[Callable[[], bool]] = None):
  """``fn`` over a leading axis of n rows, in calls of ``chunk`` rows each.

  The one host-side chunked evaluator. Every call of ``fn`` gets the same
  shapes: the last chunk is padded by repeating its last row, so a jitted
  ``fn`` compiles once per chunk size whatever n, and peak memory is set
  by the chunk. The results are trimmed to n rows.

  Args:
    fn: ``fn(*parts) -> pytree`` of arrays with one row per input row.
    *arrays: pytrees of host arrays (NumPy), every leaf of leading size n.
      With none, ``fn(index)`` gets index i32[chunk], the chunk's rows of
      ``range(size)``, for inputs made on the device from their index.
    chunk: int, rows per call (the callers fit it to n).
    size: int, n when no ``arrays`` are given.
    devices: int; the chunk is rounded up to a multiple of it, so that it
      splits evenly over that many devices.
    place: applied to every leaf of each (padded) part before ``fn``, e.g.
      to make global arrays (``render_rays_chunked``); default: as is.
    cancelled: called before each chunk; True raises ``Cancelled``.

  Returns:
    ``fn``'s pytree of outputs as NumPy arrays of leading size n.
  """
  n = _leading_size(arrays) if arrays else int(size)
  chunk = -(-max(1, int(chunk)) // devices) * devices
  out = None
  for start in range(0, n, chunk):
    if cancelled is not None and cancelled():
      raise Cancelled()
    parts = _chunk_rows(arrays, start, chunk, n)
    if place is not None:
      parts = jax.tree_util.tree_map(place, parts)
    piece = jax.tree_util.tree_map(np.asarray, fn(*parts))
    if out is None:
      out = jax.tree_util.tree_map(
          lambda v: np.empty((n,) + v.shape[1:], v.dtype), piece)
    valid = min(chunk, n - start)
    for o, v in zip(jax.tree_util.tree_leaves(out),
                    jax.tree_util.tree_leaves(piece)):
      o[start:start + valid] = v[:valid]
  return _empty_result(fn, arrays, chunk) if out is None else out


def _leading_size(arrays: tuple) -> int:
  sizes = {x.shape[0] for x in jax.tree_util.tree_leaves(arrays)}
  if len(sizes) != 1:
    raise ValueError(f'arrays of different leading sizes {sorted(sizes)}')
  return sizes.pop()


def _chunk_rows(arrays: tuple, start: int, chunk: int, n: int) -> tuple:
  """Rows [start, start + chunk) of every leaf, the rows past n repeating
  row n - 1 (so the compiled shape never changes)."""
  if not arrays:
    index = np.minimum(np.arange(start, start + chunk), n - 1)
    return (index.astype(np.int32),)

  def rows(x):
    part = x[start:start + chunk]
    missing = chunk - part.shape[0]
    if missing:
      part = np.concatenate([part, np.repeat(part[-1:], missing, axis=0)])
    return part

  return jax.tree_util.tree_map(rows, arrays)


def _empty_result(fn: Callable, arrays: tuple, chunk: int):
  """``fn``'s outputs for no rows: its output shapes with 0 rows (traced by
  ``jax.eval_shape``, nothing runs)."""
  if arrays:
    specs = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct((chunk,) + x.shape[1:], x.dtype),
        arrays)
  else:
    specs = (jax.ShapeDtypeStruct((chunk,), np.int32),)
  shapes = jax.eval_shape(fn, *specs)
  return jax.tree_util.tree_map(
      lambda s: np.zeros((0,) + s.shape[1:], s.dtype), shapes)


def process_placement() -> Optional[Callable]:
  """With several processes, the ``place`` of ``map_chunked`` for the
  functions of ``make_render_fn``: host arrays cannot feed devices of other
  processes, so each process places its own devices' rows of the
  (identical) chunk in a global array. None in one process."""
  if jax.process_count() == 1:
    return None
  sharding = distributed.batch_sharded(distributed.make_mesh())
  return lambda x: distributed.global_array(x, sharding)


def render_rays_chunked(render_fn: Callable, variables, rays: camera.Rays,
                        chunk: int) -> dict:
  """Renders rays of any batch shape in chunks of ``chunk`` rays.

  Every process calls it with the same rays (a collective when several
  processes take part) and gets every output.

  Args:
    render_fn: from ``make_render_fn``.
    variables: the model's {'params': ..., 'state': ...}.
    rays: ``Rays`` of batch shape [...].
    chunk: int, rays per call (at most the number of rays, rounded up to a
      multiple of ``jax.device_count()``); the last chunk is padded to it.

  Returns:
    dict of NumPy arrays: rgb f32[..., 3]; depth, disparity, acc f32[...].
  """
  batch_shape = rays.origins.shape[:-1]
  flat = jax.tree_util.tree_map(
      lambda x: np.asarray(x).reshape((-1, x.shape[-1])), rays)
  n = flat.origins.shape[0]
  out = map_chunked(lambda part: render_fn(variables, part), flat,
                    chunk=max(1, min(int(chunk), n)),
                    devices=jax.device_count(), place=process_placement())
  return {k: v.reshape(batch_shape + v.shape[1:]) for k, v in out.items()}


def render_view(render_fn: Callable, variables, intrinsics: camera.Intrinsics,
                c2w: np.ndarray, near: float, far: float, chunk: int,
                ndc: bool = False) -> dict:
  """Renders one pinhole camera view (``ndc``: rays through NDC, as the
  scene was trained).

  Args:
    render_fn: from ``make_render_fn``.
    variables: the model's {'params': ..., 'state': ...}.
    intrinsics: the camera (its width and height set the image size).
    c2w: f32[4, 4], camera-to-world pose.
    near, far: float, the sampled interval.
    chunk: int, rays per call.

  Returns:
    dict: rgb f32[h, w, 3]; depth, disparity, acc f32[h, w].
  """
  cameras = camera.Cameras.create(np.asarray(c2w, np.float32)[None],
                                  intrinsics, ndc=ndc)
  return render_camera(render_fn, variables, cameras, 0, near, far, chunk)


def render_camera(render_fn: Callable, variables, cameras: camera.Cameras,
                  view: int, near: float, far: float, chunk: int) -> dict:
  """Renders view ``view`` of ``cameras`` (its own size, lens distortion and
  NDC): dict of rgb f32[h, w, 3]; depth, disparity, acc f32[h, w]."""
  rays = image_rays(cameras, view, near, far)
  return render_rays_chunked(render_fn, variables, rays, chunk)


def image_rays(cameras: camera.Cameras, view: int, near: float,
               far: float) -> camera.Rays:
  """Every ray of one view, [height, width], by ``camera.cast_rays`` (the
  ray caster training uses), computed on the default device."""
  height, width = int(cameras.height[view]), int(cameras.width[view])
  rows, cols = np.meshgrid(np.arange(height, dtype=np.int32),
                           np.arange(width, dtype=np.int32), indexing='ij')
  rays = _cast_rays(cameras, np.full_like(rows, view), rows, cols,
                    np.float32(near), np.float32(far))
  return jax.tree_util.tree_map(np.asarray, rays)


_cast_rays = jax.jit(camera.cast_rays)


def render_sequence(render_fn: Callable, variables, poses: np.ndarray,
                    intrinsics: camera.Intrinsics, near: float, far: float,
                    chunk: int, progress: bool = True,
                    ndc: bool = False) -> dict:
  """Renders a camera path (pinhole cameras; ``ndc`` as the scene was
  trained).

  Returns:
    dict: rgb f32[n, h, w, 3], depth and acc f32[n, h, w].
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  rgbs, depths, accs = [], [], []
  for c2w in tqdm(poses, desc='frames', disable=not progress,
                  dynamic_ncols=True):
    out = render_view(render_fn, variables, intrinsics, c2w, near, far, chunk,
                      ndc=ndc)
    rgbs.append(out['rgb'])
    depths.append(out['depth'])
    accs.append(out['acc'])
  return dict(rgb=np.stack(rgbs), depth=np.stack(depths), acc=np.stack(accs))
