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

Lens distortion lives in ``distortion``, the sane ranges of cameras read from
files in ``checks``, and video camera paths in ``paths``.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from nerf_jax.cameras import distortion as distortion_lib


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


def to_4x4(poses, xnp=np):
  """Camera-to-world matrices with the bottom row [0, 0, 0, 1] added where
  it is missing: f[..., 3|4, 4] -> f[..., 4, 4] (the dtype is kept; 4x4
  matrices are returned as they are). ``xnp=jnp`` accepts traced poses."""
  if poses.shape[-2] == 4:
    return poses
  bottom = xnp.broadcast_to(xnp.asarray([0, 0, 0, 1], poses.dtype),
                            poses.shape[:-2] + (1, 4))
  return xnp.concatenate([poses, bottom], axis=-2)


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
  cameras = jax.tree_util.tree_map(jnp.asarray, Cameras.create(
      jnp.asarray(c2w)[None], intrinsics, xnp=jnp))
  return cast_rays(cameras, jnp.zeros_like(rows), rows, cols, near, far)


# ---------------------------------------------------------------------------
# Per-view cameras and the one ray caster.


@flax.struct.dataclass
class Cameras:
  """A camera per view: what real captures have (each photo its own lens).

  Every field has a leading view axis [n]. Lens distortion follows OpenCV's
  radial-tangential model (k1, k2, p1, p2) on normalised image coordinates;
  zeros mean a pinhole.

  Attributes:
    poses: f32[n, 4, 4], camera-to-world matrices (OpenGL axes).
    fx, fy: f32[n], focal lengths in pixels.
    cx, cy: f32[n], principal points in pixels.
    width, height: i32[n], image sizes in pixels.
    distortion: f32[n, 4], k1, k2, p1, p2.
    ndc: bool (static), rays in normalised device coordinates (forward-
      facing captures, as LLFF): see ``ndc_rays``.
    distorted: bool (static), whether any view has non-zero distortion
      (pinholes skip undistorting).
  """
  poses: jnp.ndarray
  fx: jnp.ndarray
  fy: jnp.ndarray
  cx: jnp.ndarray
  cy: jnp.ndarray
  width: jnp.ndarray
  height: jnp.ndarray
  distortion: jnp.ndarray
  ndc: bool = flax.struct.field(pytree_node=False, default=False)
  distorted: bool = flax.struct.field(pytree_node=False, default=False)

  @classmethod
  def create(cls, poses, intrinsics, distortion=None, ndc: bool = False,
             xnp=np) -> 'Cameras':
    """Cameras from poses f32[n, 3|4, 4] and one ``Intrinsics`` (shared) or
    a sequence of n; ``distortion`` f32[4] or f32[n, 4] (default none).
    ``xnp=jnp`` accepts traced poses."""
    poses = xnp.asarray(poses, xnp.float32)
    if poses.ndim != 3 or poses.shape[1:] not in ((3, 4), (4, 4)):
      raise ValueError(f'poses must be (n, 3|4, 4), got {poses.shape}')
    n = poses.shape[0]
    poses = to_4x4(poses, xnp=xnp)
    if isinstance(intrinsics, Intrinsics):
      intrinsics = [intrinsics] * n
    if len(intrinsics) != n:
      raise ValueError(f'{len(intrinsics)} intrinsics for {n} poses')
    field = lambda name, dtype: np.asarray(
        [getattr(k, name) for k in intrinsics], dtype)
    if distortion is None:
      distortion = np.zeros((n, 4), np.float32)
    distortion = np.broadcast_to(np.asarray(distortion, np.float32),
                                 (n, 4)).copy()
    return cls(poses=poses, fx=field('fx', np.float32),
               fy=field('fy', np.float32), cx=field('cx', np.float32),
               cy=field('cy', np.float32), width=field('width', np.int32),
               height=field('height', np.int32), distortion=distortion,
               ndc=bool(ndc), distorted=bool(np.any(distortion)))

  def __len__(self) -> int:
    return int(self.poses.shape[0])

  def take(self, views) -> 'Cameras':
    """The cameras of ``views`` (an index array), in that order."""
    views = np.asarray(views)
    return self.replace(**{
        name: getattr(self, name)[views] for name in (
            'poses', 'fx', 'fy', 'cx', 'cy', 'width', 'height', 'distortion')})

  def intrinsics(self, view: int) -> Intrinsics:
    """The pinhole part of view ``view``'s camera."""
    return Intrinsics(fx=float(self.fx[view]), fy=float(self.fy[view]),
                      cx=float(self.cx[view]), cy=float(self.cy[view]),
                      width=int(self.width[view]),
                      height=int(self.height[view]))


def ndc_rays(rays: Rays, fx, fy, width, height, near_plane: float = 1.0,
             xnp=jnp) -> Rays:
  """Rays in normalised device coordinates (the NeRF paper's forward-facing
  parameterisation): the space between ``near_plane`` and infinity in front
  of the camera becomes the unit interval of t.

  Origins are first moved to the plane z = -near_plane (world frame of the
  recentred capture, cameras looking down -z); per-ray intrinsics allow
  cameras of different sizes.

  Returns:
    ``Rays`` with near 0 and far 1.
  """
  o, d = rays.origins, rays.directions
  t = -(near_plane + o[..., 2]) / d[..., 2]
  o = o + t[..., None] * d
  ax, ay = -2.0 * fx / width, -2.0 * fy / height
  oz = o[..., 2]
  origins = xnp.stack([ax * o[..., 0] / oz, ay * o[..., 1] / oz,
                       1.0 + 2.0 * near_plane / oz], axis=-1)
  directions = xnp.stack([
      ax * (d[..., 0] / d[..., 2] - o[..., 0] / oz),
      ay * (d[..., 1] / d[..., 2] - o[..., 1] / oz),
      -2.0 * near_plane / oz], axis=-1)
  viewdirs = directions / xnp.linalg.norm(directions, axis=-1, keepdims=True)
  ones = xnp.ones_like(origins[..., :1])
  return Rays(origins=origins, directions=directions, viewdirs=viewdirs,
              near=0.0 * ones, far=ones)


def cast_rays(cameras: Cameras, view, rows, cols, near: float, far: float,
              xnp=jnp) -> Rays:
  """The rays through pixels of views: the one ray caster of nerf_jax.

  Training (random pixels), evaluation and rendering (whole images) all
  call it, so lens distortion and NDC apply everywhere alike.

  Args:
    cameras: ``Cameras`` of every view.
    view: int array [...], the view of each ray.
    rows, cols: int array [...], pixel row (0 = top) and column (0 = left).
    near, far: float, the sampled interval along t (ignored with NDC, which
      uses [0, 1]).
    xnp: ``jnp`` (default) or ``np``.

  Returns:
    ``Rays`` of batch shape [...]; ``viewdirs`` are the world directions of
    the (undistorted) rays, whatever NDC does to ``directions``.
  """
  f32 = xnp.float32
  fx, fy = cameras.fx[view], cameras.fy[view]
  x = (xnp.asarray(cols, f32) + 0.5 - cameras.cx[view]) / fx
  y = (xnp.asarray(rows, f32) + 0.5 - cameras.cy[view]) / fy
  xy = xnp.stack([x, y], axis=-1)
  if cameras.distorted:
    xy = distortion_lib.undistort(xy, cameras.distortion[view], xnp=xnp)
  # OpenCV's y grows down; ours (OpenGL) grows up and the camera looks -z.
  dirs = xnp.stack([xy[..., 0], -xy[..., 1], -xnp.ones_like(x)], axis=-1)
  rays = camera_rays(xnp.asarray(cameras.poses, f32)[view], dirs, near, far,
                     xnp=xnp)
  if cameras.ndc:
    viewdirs = rays.viewdirs
    rays = ndc_rays(rays, fx, fy, cameras.width[view], cameras.height[view],
                    xnp=xnp)
    rays = rays.replace(viewdirs=viewdirs)
  return rays


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
