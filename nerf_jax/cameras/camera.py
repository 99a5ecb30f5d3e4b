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
import jax
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
    if poses.shape[1] == 3:
      bottom = xnp.broadcast_to(xnp.asarray([0, 0, 0, 1], xnp.float32),
                                (n, 1, 4))
      poses = xnp.concatenate([poses, bottom], axis=1)
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


def distort(xy, coeffs, xnp=jnp):
  """OpenCV's radial-tangential distortion of normalised coordinates.

  Args:
    xy: f32[..., 2], undistorted normalised coordinates (x right, y down).
    coeffs: f32[..., 4], k1, k2, p1, p2 (broadcast against ``xy``).
    xnp: ``jnp`` or ``np``.

  Returns:
    f32[..., 2], where the lens images them.
  """
  x, y = xy[..., 0], xy[..., 1]
  k1, k2, p1, p2 = (coeffs[..., i] for i in range(4))
  r2 = x * x + y * y
  radial = 1.0 + r2 * (k1 + r2 * k2)
  xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
  yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
  return xnp.stack([xd, yd], axis=-1)


def undistort(xy_distorted, coeffs, iterations: int = 10, xnp=jnp):
  """Inverts ``distort`` by Newton's method (from the distorted point).

  Args:
    xy_distorted: f32[..., 2], distorted normalised coordinates.
    coeffs: f32[..., 4], k1, k2, p1, p2.
    iterations: int, Newton steps (10 reach float32 precision for the
      distortions of real lenses).
    xnp: ``jnp`` or ``np``.

  Returns:
    f32[..., 2], the undistorted coordinates.
  """
  k1, k2, p1, p2 = (coeffs[..., i] for i in range(4))
  xd, yd = xy_distorted[..., 0], xy_distorted[..., 1]

  def newton_step(xy):
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * k2)
    d_radial = k1 + 2.0 * k2 * r2  # d radial / d r2
    fx = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
    fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
    # Jacobian of the residual.
    a = radial + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
    b = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
    c = 2.0 * x * y * d_radial + 2.0 * p2 * y + 2.0 * p1 * x
    d = radial + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
    det = a * d - b * c
    det = xnp.where(xnp.abs(det) < 1e-12, 1e-12, det)
    return xnp.stack([x - (d * fx - b * fy) / det,
                      y - (a * fy - c * fx) / det], axis=-1)

  if xnp is np:
    xy = xy_distorted
    for _ in range(iterations):
      xy = newton_step(xy)
    return xy
  # A loop that stays a loop: the unrolled steps, fused by XLA:CPU 0.10.2
  # into one kernel, hung at run time on image-sized batches (24 x 24).
  return jax.lax.fori_loop(0, iterations, lambda _, xy: newton_step(xy),
                           jnp.asarray(xy_distorted))


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
    xy = undistort(xy, cameras.distortion[view], xnp=xnp)
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


# ---------------------------------------------------------------------------
# Sane ranges of cameras read from files and flags.
#
# Wide enough for any real camera, narrow enough to catch a unit or
# convention mistake (millimetres for pixels, a scaled or transposed matrix)
# where the value enters, instead of as a black render hours later.

MAX_CAMERA_DISTANCE = 1e6  # world units between a camera and the origin
ROTATION_TOLERANCE = 1e-2  # largest entry of |R^T R - I| of a pose's rotation
# Focal length over the image's larger side: fields of view from 177.7 down
# to 0.06 degrees.
FOCAL_RATIO_RANGE = (1e-2, 1e3)
# The principal point may lie off the image (a shifted lens) by at most this
# many image sizes on each side.
PRINCIPAL_POINT_MARGIN = 1.0


def pose_problem(poses, what: str = 'pose', labels=None) -> str:
  """Why camera-to-world matrices are not rigid poses in range, or ''.

  A pose must be finite, its rotation orthonormal (``ROTATION_TOLERANCE``)
  and right-handed, a 4x4 pose's bottom row (0, 0, 0, 1), and the camera
  within ``MAX_CAMERA_DISTANCE`` of the origin.

  Args:
    poses: f[n, 3|4, 4] (any real dtype).
    what: str, the name of one matrix in the message ('pose', 'row', ...).
    labels: optional list of n names used instead of '<what> <i>' (e.g. the
      image file of each pose).

  Returns:
    '' if every pose is fine, else one line naming the first bad one(s),
    e.g. 'pose 3: rotation is not orthonormal (|R^T R - I| up to 0.5)'.
  """
  poses = np.asarray(poses, np.float64)
  bad = np.nonzero(~np.isfinite(poses).all(axis=(1, 2)))[0]
  if bad.size:
    if labels is not None:
      return f'{", ".join(labels[i] for i in bad[:3])}: NaN or inf values'
    return f'{what}(s) {bad[:5].tolist()} contain NaN or inf values'
  rotation = poses[:, :3, :3]
  error = np.abs(np.einsum('nji,njk->nik', rotation, rotation)
                 - np.eye(3)).max(axis=(1, 2))
  distance = np.linalg.norm(poses[:, :3, 3], axis=-1)
  checks = [
      (error > ROTATION_TOLERANCE, lambda i: (
          f'rotation is not orthonormal (|R^T R - I| up to {error[i]:.3g}, '
          f'tolerance {ROTATION_TOLERANCE:g}): not a rigid camera pose')),
      (np.linalg.det(rotation) < 0, lambda i: (
          'rotation is a reflection (determinant -1): the axes are not '
          'right-handed')),
      (distance > MAX_CAMERA_DISTANCE, lambda i: (
          f'camera is {distance[i]:.3g} units from the origin (at most '
          f'{MAX_CAMERA_DISTANCE:g})')),
  ]
  if poses.shape[1] == 4:
    bottom = np.abs(poses[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=-1)
    checks.append((bottom > 1e-4, lambda i: (
        f'bottom row is {poses[i, 3].tolist()}, not [0, 0, 0, 1]')))
  for failed, message in checks:
    if failed.any():
      i = int(np.argmax(failed))
      label = f'{what} {i}' if labels is None else labels[i]
      return f'{label}: {message(i)}'
  return ''


def intrinsics_problem(fx, fy, cx, cy, width, height,
                       names=('fx', 'fy', 'cx', 'cy', 'width', 'height'),
                       what: str = 'view') -> str:
  """Why pinhole intrinsics are out of range, or ''.

  Sizes must be positive, focal lengths positive and within
  ``FOCAL_RATIO_RANGE`` times the larger image side, and the principal point
  within ``PRINCIPAL_POINT_MARGIN`` image sizes of the image.

  Args:
    fx, fy, cx, cy: float or f[n], in pixels.
    width, height: number or [n], the image size in pixels.
    names: the six values' names in the message (a file's own keys).
    what: str, the name of one camera in the message.

  Returns:
    '' or one line naming the first bad value, prefixed by '<what> i: ' when
    arrays of several cameras are given.
  """
  values = np.broadcast_arrays(*[np.asarray(v, np.float64).reshape(-1)
                                 for v in (fx, fy, cx, cy, width, height)])
  width, height = values[4:]
  side = np.maximum(width, height)
  lo, hi = FOCAL_RATIO_RANGE
  margin = PRINCIPAL_POINT_MARGIN
  for k in (4, 5, 0, 1, 2, 3):  # sizes first: the other ranges use them
    value = values[k]
    size = (width, height)[k % 2] if k < 4 else value
    with np.errstate(invalid='ignore'):
      if k >= 4:
        ok = value >= 1
      elif k < 2:
        ok = (value >= lo * side) & (value <= hi * side)
      else:
        ok = (value >= -margin * size) & (value <= (1 + margin) * size)
    failed = ~(np.isfinite(value) & ok)
    if not failed.any():
      continue
    i = int(np.argmax(failed))
    image = f'{width[i]:g}x{height[i]:g} image'
    if k >= 4 or (k < 2 and not value[i] > 0):  # NaN too
      reason = 'must be a positive number' + (' of pixels' if k >= 4 else '')
    elif k < 2:
      reason = (f'is absurd for a {image} (expected {lo:g} to {hi:g} times '
                f'its larger side: {lo * side[i]:g} to {hi * side[i]:g})')
    else:
      reason = (f'is far outside the {image} (expected {-margin * size[i]:g} '
                f'to {(1 + margin) * size[i]:g})')
    prefix = f'{what} {i}: ' if len(value) > 1 else ''
    return f'{prefix}{names[k]}={value[i]:g} {reason}'
  return ''


# Lens distortion (OpenCV's k1 k2 p1 p2 on normalised coordinates, as
# ``distort``) that a real lens can have. The bounds on the coefficients are
# loose (a narrow lens sees so little of the polynomial that COLMAP's k1 and
# k2 are poorly pinned down); what decides is what the lens does within the
# image: ``distortion_problem``.
MAX_DISTORTION = (100.0, 1e4, 0.1, 0.1)  # |k1|, |k2|, |p1|, |p2|
# Within the image the lens may change a point's distance from the
# principal point by at most this factor either way (a wide-angle lens
# fitted with this model: about 1.5).
MAX_RADIAL_SCALE = 4.0
# ``undistort`` (float32, its default Newton steps) must bring every pixel
# of the image back within this many pixels of itself through ``distort``.
UNDISTORT_TOLERANCE_PX = 0.01
_GRID = 65  # pixels sampled along each side of the image (edges included)


def _pixel_grid(fx, fy, cx, cy, width, height) -> np.ndarray:
  """f32[k, 2], distorted normalised coordinates (x right, y down) of a
  grid of pixel centres spanning the image, its border pixels included."""
  cols = np.unique(np.linspace(0, int(width) - 1, min(int(width), _GRID)))
  rows = np.unique(np.linspace(0, int(height) - 1, min(int(height), _GRID)))
  x = (cols + 0.5 - cx) / fx
  y = (rows + 0.5 - cy) / fy
  return np.stack(np.meshgrid(x, y), -1).reshape(-1, 2).astype(np.float32)


def _undistort_grid(coeffs, fx, fy, cx, cy, width, height) -> tuple:
  """(undistorted f32[k, 2], error in pixels f64[k]) of ``_pixel_grid``."""
  coeffs = np.asarray(coeffs, np.float32)
  xy = _pixel_grid(fx, fy, cx, cy, width, height)
  with np.errstate(all='ignore'):
    und = undistort(xy, coeffs, xnp=np)
    back = distort(und, coeffs, xnp=np)
    error = (np.abs(back.astype(np.float64) - xy) * np.array([fx, fy])).max(-1)
  return und, np.where(np.isfinite(error), error, np.inf)


def undistort_error_px(coeffs, fx, fy, cx, cy, width, height) -> float:
  """How far, in pixels, ``distort(undistort(x))`` lands from ``x`` at worst
  over the image's pixels: what ray casting's Newton steps leave (float32,
  NumPy, as ``cast_rays``); inf where they diverge."""
  _, error = _undistort_grid(coeffs, fx, fy, cx, cy, width, height)
  return float(error.max()) if error.size else 0.0


def distortion_problem(coeffs, fx, fy, cx, cy, width, height,
                       names=('k1', 'k2', 'p1', 'p2')) -> str:
  """Why a camera's lens distortion is implausible, or ''.

  Refused: coefficients beyond ``MAX_DISTORTION``; a radial profile
  ``r (1 + k1 r^2 + k2 r^4)`` that stops growing (folds the image over, so
  that some pixels' rays would point the wrong way) or scales a distance
  from the principal point by more than ``MAX_RADIAL_SCALE`` before
  reaching the image's farthest pixel; a mapping whose Jacobian is not
  positive at every pixel; and undistortion that does not converge to
  ``UNDISTORT_TOLERANCE_PX`` (``undistort_error_px``).

  Args:
    coeffs: f[4], k1, k2, p1, p2.
    fx, fy, cx, cy, width, height: the pinhole part (pixels), already
      checked by ``intrinsics_problem``.
    names: the four coefficients' names in the message (a file's own keys).

  Returns:
    '' or one line naming the coefficients.
  """
  coeffs = np.asarray(coeffs, np.float64).reshape(4)
  for name, value, limit in zip(names, coeffs, MAX_DISTORTION):
    if not np.isfinite(value):
      return f'{name}={value:g} must be finite'
    if abs(value) > limit:
      return (f'{name}={value:g} is implausible for a real lens (at most '
              f'{limit:g} in magnitude)')
  if not coeffs.any():
    return ''
  k1, k2, p1, p2 = coeffs
  radial = ', '.join(f'{n}={v:g}' for n, v in zip(names[:2], coeffs[:2]))
  lens = ', '.join(f'{n}={v:g}' for n, v in zip(names, coeffs) if v)
  xy = _pixel_grid(fx, fy, cx, cy, width, height).astype(np.float64)
  reach = float(np.sqrt((xy ** 2).sum(-1)).max())  # farthest pixel
  if reach > 0 and (k1 or k2):
    r = np.linspace(0.0, MAX_RADIAL_SCALE * reach, 4001)[1:]
    scale = 1.0 + r * r * (k1 + r * r * k2)
    growth = 1.0 + r * r * (3.0 * k1 + 5.0 * r * r * k2)  # d(r scale)/dr
    inside = np.nonzero(r * scale >= reach)[0]
    end = int(inside[0]) + 1 if inside.size else len(r)
    folds = np.nonzero(growth[:end] <= 0.0)[0]
    if folds.size:
      return (f'{radial}: the lens folds the image over at radius '
              f'{r[folds[0]]:.3g} (normalised), inside the image (its '
              f'farthest pixel is at {reach:.3g}), so some rays would point '
              'the wrong way; not a real lens')
    bad = np.nonzero((scale[:end] > MAX_RADIAL_SCALE)
                     | (scale[:end] < 1.0 / MAX_RADIAL_SCALE))[0]
    if bad.size or not inside.size:
      worst = scale[bad[0]] if bad.size else scale[-1]
      return (f'{radial}: the lens would scale distances from the '
              f'principal point by {worst:.3g} inside the image (at most '
              f'{MAX_RADIAL_SCALE:g} either way); not a real lens')
  und, error = _undistort_grid(coeffs, fx, fy, cx, cy, width, height)
  error = float(error.max()) if error.size else 0.0
  if not error <= UNDISTORT_TOLERANCE_PX:
    return (f'{lens}: undistorting the image\'s pixels does not converge '
            f'(off by up to {error:.3g} pixels, at most '
            f'{UNDISTORT_TOLERANCE_PX:g}); not a real lens')
  with np.errstate(all='ignore'):
    x, y = und[..., 0].astype(np.float64), und[..., 1].astype(np.float64)
    r2 = x * x + y * y
    radial_scale = 1.0 + r2 * (k1 + r2 * k2)
    d_radial = k1 + 2.0 * k2 * r2
    a = radial_scale + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
    b = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
    d = radial_scale + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
    jacobian = a * d - b * b
  if not np.all(jacobian > 0.0):
    return (f'{lens}: the lens folds the image over (its Jacobian is not '
            'positive at every pixel), so some rays would point the wrong '
            'way; not a real lens')
  return ''
