"""Rendering whole images in fixed-size chunks of rays.

One jit-compiled function renders a chunk; the last chunk of an image is
padded to the same shape, so it compiles once per chunk size whatever the image
size, and peak memory is set by the chunk, not the image. Scoring the views
of a split is ``evaluate``; the cameras of videos are ``cameras.paths``.
"""

from __future__ import annotations

from typing import Callable

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


def render_rays_chunked(render_fn: Callable, variables, rays: camera.Rays,
                        chunk: int) -> dict:
  """Renders rays of any batch shape in chunks of ``chunk`` rays.

  Every process calls it with the same rays (a collective when several
  processes take part) and gets every output.

  Args:
    render_fn: from ``make_render_fn``.
    variables: the model's {'params': ..., 'state': ...}.
    rays: ``Rays`` of batch shape [...].
    chunk: int, rays per call; the last chunk is padded to this size.

  Returns:
    dict of NumPy arrays: rgb f32[..., 3]; depth, disparity, acc f32[...].
  """
  batch_shape = rays.origins.shape[:-1]
  flat = jax.tree_util.tree_map(
      lambda x: np.asarray(x).reshape((-1, x.shape[-1])), rays)
  n = flat.origins.shape[0]
  chunk = max(1, min(int(chunk), n))
  devices = jax.device_count()
  chunk = -(-chunk // devices) * devices  # a multiple of the device count
  if jax.process_count() > 1:
    # Host arrays cannot feed devices of other processes: each process
    # places its own devices' rows of the (identical) chunk.
    sharding = distributed.batch_sharded(distributed.make_mesh())
    place = lambda part: jax.tree_util.tree_map(
        lambda x: distributed.global_array(x, sharding), part)
  else:
    place = lambda part: part
  pieces = []
  for start in range(0, n, chunk):
    part = jax.tree_util.tree_map(lambda x: x[start:start + chunk], flat)
    valid = part.origins.shape[0]
    if valid < chunk:
      # Pad by repeating the last ray so the compiled shape never changes.
      part = jax.tree_util.tree_map(
          lambda x: np.concatenate(
              [x, np.repeat(x[-1:], chunk - valid, axis=0)]), part)
    out = render_fn(variables, place(part))
    pieces.append({k: np.asarray(v)[:valid] for k, v in out.items()})
  return {
      k: np.concatenate([p[k] for p in pieces]).reshape(
          batch_shape + pieces[0][k].shape[1:]) for k in pieces[0]
  }


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
