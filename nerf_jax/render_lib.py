"""Rendering whole images in fixed-size chunks of rays.

One jit-compiled function renders a chunk; the last chunk of an image is
padded to the same shape, so it compiles once per chunk size whatever the image
size, and peak memory is set by the chunk, not the image.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nerf_jax import camera, pipeline
from nerf_jax.models import NerfMLP

# Per-ray outputs returned to the host.
OUTPUT_KEYS = ('rgb', 'depth', 'disparity', 'acc')


def make_render_fn(field: NerfMLP, options: pipeline.RenderOptions) -> Callable:
  """A jitted ``fn(params, rays) -> {key: array}`` for the finest level.

  The function is deterministic (no jitter). ``rays`` has batch shape [chunk].
  """

  @jax.jit
  def render_chunk(params, rays: camera.Rays) -> dict:
    out = pipeline.render_rays(field, params, rays, None, options)
    final = out[options.levels[-1]]
    return {k: final[k] for k in OUTPUT_KEYS}

  return render_chunk


def render_rays_chunked(render_fn: Callable, params, rays: camera.Rays,
                        chunk: int) -> dict:
  """Renders rays of any batch shape in chunks of ``chunk`` rays.

  Args:
    render_fn: from ``make_render_fn``.
    params: model parameters.
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
  pieces = []
  for start in range(0, n, chunk):
    part = jax.tree_util.tree_map(lambda x: x[start:start + chunk], flat)
    valid = part.origins.shape[0]
    if valid < chunk:
      # Pad by repeating the last ray so the compiled shape never changes.
      part = jax.tree_util.tree_map(
          lambda x: np.concatenate(
              [x, np.repeat(x[-1:], chunk - valid, axis=0)]), part)
    out = render_fn(params, part)
    pieces.append({k: np.asarray(v)[:valid] for k, v in out.items()})
  return {
      k: np.concatenate([p[k] for p in pieces]).reshape(
          batch_shape + pieces[0][k].shape[1:]) for k in pieces[0]
  }


def render_view(render_fn: Callable, params, intrinsics: camera.Intrinsics,
                c2w: np.ndarray, near: float, far: float, chunk: int) -> dict:
  """Renders one camera view.

  Args:
    render_fn: from ``make_render_fn``.
    params: model parameters.
    intrinsics: the camera (its width and height set the image size).
    c2w: f32[4, 4], camera-to-world pose.
    near, far: float, the sampled interval.
    chunk: int, rays per call.

  Returns:
    dict: rgb f32[h, w, 3]; depth, disparity, acc f32[h, w].
  """
  rays = _image_rays(intrinsics, np.asarray(c2w, np.float32), near, far)
  return render_rays_chunked(render_fn, params, rays, chunk)


def _image_rays(intrinsics, c2w, near, far) -> camera.Rays:
  rows, cols = np.meshgrid(np.arange(intrinsics.height),
                           np.arange(intrinsics.width), indexing='ij')
  dirs = camera.pixel_directions(intrinsics, rows, cols, xnp=np)
  rays = camera.camera_rays(c2w, dirs, near, far, xnp=np)
  return jax.tree_util.tree_map(lambda x: x.astype(np.float32), rays)
