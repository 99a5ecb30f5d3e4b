"""Cameras: intrinsics, camera-to-world poses and pixel -> ray generation.

Conventions (OpenGL / Blender, as in the original NeRF code):
  * camera space: x right, y up, the camera looks down -z;
  * a pose is a camera-to-world matrix ``c2w: f32[4, 4]`` (or ``[3, 4]``) whose
    columns 0..2 are the camera axes in world space and column 3 its centre;
  * pixel (row i, column j) has its centre at (j + 0.5, i + 0.5) in image
    coordinates, which grow right and down.

Ray ``directions`` are *not* normalised: their camera-space z component is -1,
so the ray parameter ``t`` is the distance along the camera's optical axis and
``near`` / ``far`` are planes parallel to the image plane. ``viewdirs`` are the
unit-length directions that the colour branch of the model sees.
"""

from __future__ import annotations

import flax.struct
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Intrinsics:
  """A pinhole camera. Focal lengths and principal point are in pixels.

  Attributes:
    width: int, image width in pixels (static).
    height: int, image height in pixels (static).
    fx, fy: float, focal lengths in pixels.
    cx, cy: float, principal point in pixels (image centre for most data).
  """
  fx: float
  fy: float
  cx: float
  cy: float
  width: int = flax.struct.field(pytree_node=False)
  height: int = flax.struct.field(pytree_node=False)

  @classmethod
  def from_focal(cls, focal: float, width: int, height: int) -> 'Intrinsics':
    """A camera with square pixels and the principal point at the centre."""
    return cls(fx=float(focal), fy=float(focal), cx=width / 2.0,
               cy=height / 2.0, width=int(width), height=int(height))

  def scaled(self, factor: float) -> 'Intrinsics':
    """The same camera at ``factor`` times the resolution."""
    # Floor (with slack for float error) matches integer downsampling `w // k`.
    width = max(1, int(np.floor(self.width * factor + 1e-6)))
    height = max(1, int(np.floor(self.height * factor + 1e-6)))
    sx, sy = width / self.width, height / self.height
    return Intrinsics(fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx,
                      cy=self.cy * sy, width=width, height=height)

  def to_dict(self) -> dict:
    return dict(fx=float(self.fx), fy=float(self.fy), cx=float(self.cx),
                cy=float(self.cy), width=int(self.width),
                height=int(self.height))


@flax.struct.dataclass
class Rays:
  """A batch of rays; every field shares the leading batch shape ``...``.

  Attributes:
    origins: f32[..., 3], ray origins in world space.
    directions: f32[..., 3], directions scaled so that t is camera-axis depth.
    viewdirs: f32[..., 3], unit-length ``directions``.
    near: f32[..., 1], start of the sampled interval along t.
    far: f32[..., 1], end of the sampled interval along t.
  """
  origins: jnp.ndarray
  directions: jnp.ndarray
  viewdirs: jnp.ndarray
  near: jnp.ndarray
  far: jnp.ndarray


def pixel_directions(intrinsics: Intrinsics, rows, cols, xnp=jnp):
  """Camera-space directions through pixel centres.

  Args:
    intrinsics: the camera.
    rows: int or float array [...], pixel row indices (0 = top).
    cols: int or float array [...], pixel column indices (0 = left).
    xnp: ``jnp`` (default) or ``np`` for a NumPy reference path.

  Returns:
    f32[..., 3], directions with z = -1 in camera space.
  """
  x = (xnp.asarray(cols, dtype=xnp.float32) + 0.5 - intrinsics.cx) / intrinsics.fx
  y = -(xnp.asarray(rows, dtype=xnp.float32) + 0.5 - intrinsics.cy) / intrinsics.fy
  return xnp.stack([x, y, -xnp.ones_like(x)], axis=-1)


def camera_rays(c2w, directions_cam, near: float, far: float,
                xnp=jnp) -> Rays:
  """Transforms camera-space directions to world-space rays.

  Args:
    c2w: f32[..., 3 or 4, 4], camera-to-world poses, broadcastable against
      ``directions_cam[..., None, :]``.
    directions_cam: f32[..., 3], camera-space directions.
    near, far: float, the sampled interval along t.
    xnp: ``jnp`` or ``np``.

  Returns:
    ``Rays`` with the batch shape of ``directions_cam``.
  """
  rotation = c2w[..., :3, :3]
  directions = xnp.sum(directions_cam[..., None, :] * rotation, axis=-1)
  origins = xnp.broadcast_to(c2w[..., :3, 3], directions.shape)
  norm = xnp.linalg.norm(directions, axis=-1, keepdims=True)
  viewdirs = directions / norm
  ones = xnp.ones_like(directions[..., :1])
  return Rays(origins=origins, directions=directions, viewdirs=viewdirs,
              near=ones * near, far=ones * far)


def generate_rays(intrinsics: Intrinsics, c2w, near: float,
                  far: float) -> Rays:
  """All the rays of one image.

  Args:
    intrinsics: the camera; its width and height set the output shape.
    c2w: f32[3 or 4, 4], camera-to-world pose.
    near, far: float, the sampled interval along t.

  Returns:
    ``Rays`` with batch shape [height, width].
  """
  rows, cols = jnp.meshgrid(jnp.arange(intrinsics.height),
                            jnp.arange(intrinsics.width), indexing='ij')
  dirs = pixel_directions(intrinsics, rows, cols)
  return camera_rays(jnp.asarray(c2w, jnp.float32), dirs, near, far)


def _translate_z(t: float) -> np.ndarray:
  m = np.eye(4, dtype=np.float64)
  m[2, 3] = t
  return m


def _rotate_phi(phi: float) -> np.ndarray:
  c, s = np.cos(phi), np.sin(phi)
  return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]],
                  dtype=np.float64)


def _rotate_theta(theta: float) -> np.ndarray:
  c, s = np.cos(theta), np.sin(theta)
  return np.array([[c, 0, -s, 0], [0, 1, 0, 0], [s, 0, c, 0], [0, 0, 0, 1]],
                  dtype=np.float64)


def pose_spherical(theta: float, phi: float, radius: float) -> np.ndarray:
  """The camera-to-world pose of the classic NeRF orbit, looking at the origin.

  The camera sits at distance ``radius`` from the origin; ``theta`` is the
  azimuth and ``phi`` the elevation, both in degrees (phi = -30 puts the camera
  above the scene looking down, as in the tiny lego notebook). World z is up.

  Args:
    theta: float, azimuth in degrees.
    phi: float, elevation in degrees (negative looks down from above).
    radius: float, distance from the origin.

  Returns:
    f32[4, 4], the camera-to-world matrix.
  """
  c2w = _translate_z(radius)
  c2w = _rotate_phi(np.deg2rad(phi)) @ c2w
  c2w = _rotate_theta(np.deg2rad(theta)) @ c2w
  # Swap to the Blender world frame (z up) used by the synthetic scenes.
  c2w = np.array([[-1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
                 dtype=np.float64) @ c2w
  return c2w.astype(np.float32)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> np.ndarray:
  """The camera-to-world pose of a camera at ``eye`` looking at ``target``.

  Args:
    eye: f32[3], camera centre in world space.
    target: f32[3], the point the camera's -z axis passes through.
    up: f32[3], world up; must not be parallel to ``target - eye``.

  Returns:
    f32[4, 4], camera-to-world matrix in the OpenGL convention.
  """
  eye = np.asarray(eye, np.float64)
  forward = np.asarray(target, np.float64) - eye
  forward /= np.linalg.norm(forward)
  right = np.cross(forward, np.asarray(up, np.float64))
  right /= np.linalg.norm(right)
  cam_up = np.cross(right, forward)
  c2w = np.eye(4)
  c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, cam_up, -forward, eye
  return c2w.astype(np.float32)
