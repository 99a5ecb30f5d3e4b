"""Rendering the browser's views: frames in chunks of fixed sizes, shown
progressively, and the image each display mode shows.

A view is rendered at a quarter of its resolution while the camera moves and
at full resolution once it has rested for ``SETTLE_S`` (``next_level``); a
newer camera supersedes the frame being rendered, checked between chunks of
rays (``FrameRenderer``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import jax
import numpy as np

from nerf_jax.cameras import camera
from nerf_jax.inference import chunked
from nerf_jax.io import images as images_lib

# Seconds the camera must rest before the full-resolution frame is rendered.
SETTLE_S = 0.2
# Full resolution divided by this while the camera moves.
PREVIEW_DIVISOR = 4
# What the page shows, and the depth range of the depth colours.
MODES = ('colour', 'depth', 'accumulation')
DEPTH_RANGES = ('percentiles', 'near-far')


def colorize(out: dict, mode: str, background: float,
             depth_range: Optional[tuple] = None,
             disparity: bool = False) -> np.ndarray:
  """A rendered frame as the image to show.

  Args:
    out: dict with rgb f32[h, w, 3]; depth, acc f32[h, w].
    mode: one of ``MODES``.
    background: float, grey level of empty space.
    depth_range: (near, far) mapped onto the depth colours, or None for the
      frame's own 1st-99th percentiles of opaque depth.
    disparity: colour 1 / depth over that range (unbounded scenes).

  Returns:
    u8[h, w, 3].
  """
  if mode == 'colour':
    image = out['rgb']
  elif mode == 'depth':
    if depth_range is None:
      image = images_lib.depth_to_rgb(out['depth'][None], out['acc'][None],
                                      background, disparity)[0]
    else:
      image = images_lib.colorize_depth(out['depth'], out['acc'],
                                        *depth_range, background, disparity)
  elif mode == 'accumulation':
    image = np.repeat(out['acc'][..., None], 3, axis=-1)
  else:
    raise ValueError(f'unknown mode {mode!r}; choose one of {MODES}')
  return images_lib.to_uint8(image)


# Raised when a frame was superseded before it was finished.
Cancelled = chunked.Cancelled


class FrameRenderer:
  """Renders pinhole views in chunks of a fixed set of sizes.

  Each chunk's rays are cast (``camera.cast_rays``, the one ray caster)
  and rendered by jitted functions of fixed shapes: ``chunk`` rays for
  full frames and ``chunk // PREVIEW_DIVISOR`` for preview frames, so
  nothing compiles again whatever the window's size. (``chunked.
  render_rays_chunked`` shrinks its chunk to a small image, a compilation
  per size, and cannot stop half-way for a newer camera; both go through
  ``chunked.map_chunked``.)
  """

  def __init__(self, model, info, chunk: int):
    self.info = info
    self.render_fn = chunked.make_render_fn(model)
    self.chunks = (max(1, chunk // PREVIEW_DIVISOR), max(1, chunk))
    self._cast = jax.jit(camera.cast_rays)

  def compile(self, variables) -> None:
    """Renders one chunk of each size, so the first frames are fast."""
    pose = np.eye(4, dtype=np.float32)
    pose[2, 3] = self.info.far
    for chunk in self.chunks:
      intrinsics = camera.Intrinsics.from_focal(8.0, chunk, 1)
      self.render(variables, pose, intrinsics, chunk)

  def render(self, variables, c2w: np.ndarray,
             intrinsics: camera.Intrinsics, chunk: int,
             cancelled: Optional[Callable[[], bool]] = None) -> dict:
    """Renders one view.

    Args:
      variables: the model's {'params': ..., 'state': ...}.
      c2w: f32[4, 4], camera-to-world pose (OpenGL axes).
      intrinsics: the camera; its width and height set the frame's size.
      chunk: int, one of ``self.chunks``: rays per jitted call.
      cancelled: called between chunks; True raises ``Cancelled``.

    Returns:
      dict of rgb f32[h, w, 3]; depth, acc f32[h, w].
    """
    info = self.info
    cameras = camera.Cameras.create(np.asarray(c2w, np.float32)[None],
                                    intrinsics, ndc=info.ndc)
    width, height = intrinsics.width, intrinsics.height

    def render_pixels(index):  # i32[chunk], row-major pixel indices
      rays = self._cast(cameras, np.zeros_like(index), index // width,
                        index % width, np.float32(info.near),
                        np.float32(info.far))
      out = self.render_fn(variables, rays)
      return {k: out[k] for k in ('rgb', 'depth', 'acc')}

    out = chunked.map_chunked(render_pixels, chunk=chunk,
                              size=width * height,
                              devices=jax.device_count(),
                              cancelled=cancelled)
    return {k: v.reshape((height, width) + v.shape[1:])
            for k, v in out.items()}



@dataclasses.dataclass
class ViewRequest:
  """A client's latest camera and what was rendered of it.

  Attributes:
    c2w: f32[4, 4], the camera (OpenGL axes).
    fov_y: float, vertical field of view in radians.
    aspect: float, width / height of the canvas.
    version: int, bumped at every camera (or setting) change.
    changed_at: float, ``time.monotonic()`` of the last camera change.
    done: (version, 'preview' | 'full') of the last frame sent.
  """
  c2w: np.ndarray
  fov_y: float
  aspect: float
  version: int = 0
  changed_at: float = 0.0
  done: tuple = (-1, '')


def next_level(request: ViewRequest, now: float,
               settle_s: float = SETTLE_S) -> tuple:
  """What to render for a request: ('preview' | 'full' | '', seconds to
  wait before asking again (inf: nothing until the next change)).

  A new camera is rendered at preview resolution while it moved less than
  ``settle_s`` ago, at full resolution once it has rested; a preview is
  followed by the full frame when the camera rests.
  """
  resting = now - request.changed_at >= settle_s
  version, level = request.done
  if version != request.version:
    return ('full' if resting else 'preview'), 0.0
  if level == 'preview':
    if resting:
      return 'full', 0.0
    return '', request.changed_at + settle_s - now
  return '', math.inf
