"""A built-in procedural scene, rendered exactly in NumPy (no files or network).

A fixed set of coloured primitives (spheres, axis-aligned boxes and a vertical
capped cylinder) stands on a grey plinth inside [-1.2, 1.2]^3, z up. Views are
rendered with analytic ray intersections through the very rays that
``nerf_jax.cameras.camera`` gives the NeRF (one ray per pixel centre), so the ground
truth matches what the model renders.

Shading is view-independent Lambertian with two fixed directional lights,
``albedo * (ambient + sum_k w_k * max(0, n . l_k))``, so a NeRF without view
directions can represent it exactly.

``make_scene(environment=True)`` is the unbounded variant: the same objects
on a textured ground plane under a textured dome of radius 40
(``environment``), both emissive; every ray hits something, so depth is
finite and alpha 1 at every pixel.

Symbols used below:
  o: f[..., 3], ray origins; d: f[..., 3], ray directions (not normalised,
  camera-space z = -1); t: f[...], the ray parameter, i.e. camera-axis depth,
  ``inf`` where a ray misses.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence, Tuple, Union

import numpy as np

from nerf_jax.cameras import camera
from nerf_jax.datasets import environment as env_lib
from nerf_jax.datasets.base import DatasetError, Scene, Split, pinhole_split

CAMERA_RADIUS = 4.0  # distance of every camera from the origin
CAMERA_ANGLE_X = 0.6911112070083618  # horizontal field of view (rad), as lego
MIN_ELEVATION_DEG = 10.0  # lowest camera elevation above the xy plane
MAX_ELEVATION_DEG = 80.0  # highest camera elevation
AMBIENT = 0.25  # light that reaches every surface
# Two fixed directional lights (towards the light, unit length) and weights.
LIGHTS = (
    (np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82]), 0.7),
    (np.array([-0.6, 0.7, 0.38]) / np.linalg.norm([-0.6, 0.7, 0.38]), 0.3),
)
# Every shape lies inside this box (see SHAPES; the module docstring).
AABB = ((-1.2, -1.2, -1.2), (1.2, 1.2, 1.2))
_EPS = 1e-9  # smallest accepted hit distance; cameras are outside all shapes
_RAYS_PER_CHUNK = 1 << 20  # bound the memory of one vectorised pass
# The unbounded variant's least far plane: no camera-axis depth exceeds the
# farthest dome point's distance from a camera, CAMERA_RADIUS + DOME_RADIUS.
ENVIRONMENT_FAR = CAMERA_RADIUS + env_lib.DOME_RADIUS + 1.0


@dataclasses.dataclass(frozen=True)
class Sphere:
  """A sphere with a constant albedo (RGB in [0, 1])."""
  name: str
  center: Tuple[float, float, float]
  radius: float
  albedo: Tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Box:
  """An axis-aligned box between corners ``lo`` and ``hi``."""
  name: str
  lo: Tuple[float, float, float]
  hi: Tuple[float, float, float]
  albedo: Tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Cylinder:
  """A vertical capped cylinder: axis through (x, y), z in [z_min, z_max]."""
  name: str
  center_xy: Tuple[float, float]
  radius: float
  z_min: float
  z_max: float
  albedo: Tuple[float, float, float]


Shape = Union[Sphere, Box, Cylinder]

# The fixed object set: a plinth with five coloured objects standing on it.
SHAPES: Tuple[Shape, ...] = (
    Box('plinth', (-1.1, -1.1, -1.0), (1.1, 1.1, -0.85), (0.72, 0.72, 0.72)),
    Sphere('red_sphere', (0.35, 0.3, -0.35), 0.5, (0.9, 0.12, 0.1)),
    Box('green_box', (-0.9, -0.85, -0.85), (-0.2, -0.15, -0.15),
        (0.15, 0.75, 0.2)),
    Cylinder('blue_cylinder', (-0.45, 0.55), 0.3, -0.85, 0.6,
             (0.12, 0.3, 0.9)),
    Sphere('yellow_sphere', (0.6, -0.55, -0.57), 0.28, (0.95, 0.8, 0.1)),
    Sphere('magenta_sphere', (-0.55, -0.5, 0.1), 0.25, (0.85, 0.15, 0.8)),
)


def _sphere_hit(shape: Sphere, o: np.ndarray, d: np.ndarray):
  """Nearest positive root of |o + t d - c|^2 = r^2, and the outward normal."""
  oc = o - np.asarray(shape.center)
  a = np.sum(d * d, axis=-1)
  b = np.sum(d * oc, axis=-1)
  c = np.sum(oc * oc, axis=-1) - shape.radius ** 2
  disc = b * b - a * c
  root = np.sqrt(np.maximum(disc, 0.0))
  t = (-b - root) / a
  t = np.where((disc >= 0) & (t > _EPS), t, np.inf)
  normal = (oc + np.where(np.isfinite(t), t, 0.0)[..., None] * d) / shape.radius
  return t, normal


def _box_hit(shape: Box, o: np.ndarray, d: np.ndarray):
  """Slab-method entry point into an axis-aligned box, and its face normal."""
  # Nudge exact zeros so 1 / d stays finite-signed; the hit is unchanged.
  d = np.where(d == 0, 1e-30, d)
  t1 = (np.asarray(shape.lo) - o) / d
  t2 = (np.asarray(shape.hi) - o) / d
  t_near, t_far = np.minimum(t1, t2), np.maximum(t1, t2)
  axis = np.argmax(t_near, axis=-1)
  t_in = np.max(t_near, axis=-1)
  t_out = np.min(t_far, axis=-1)
  t = np.where((t_in <= t_out) & (t_in > _EPS), t_in, np.inf)
  normal = np.zeros_like(o)
  sign = -np.sign(np.take_along_axis(d, axis[..., None], axis=-1))
  np.put_along_axis(normal, axis[..., None], sign, axis=-1)
  return t, normal


def _cylinder_hit(shape: Cylinder, o: np.ndarray, d: np.ndarray):
  """Nearest hit with the side or the caps of a vertical cylinder."""
  oc = o[..., :2] - np.asarray(shape.center_xy)
  a = np.sum(d[..., :2] ** 2, axis=-1)
  b = np.sum(d[..., :2] * oc, axis=-1)
  c = np.sum(oc * oc, axis=-1) - shape.radius ** 2
  disc = b * b - a * c
  with np.errstate(divide='ignore', invalid='ignore'):
    t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    z_side = o[..., 2] + t_side * d[..., 2]
    side_ok = ((disc >= 0) & (a > 0) & (t_side > _EPS)
               & (z_side >= shape.z_min) & (z_side <= shape.z_max))
    t_side = np.where(side_ok, t_side, np.inf)
    # A ray enters through the top cap when going down, the bottom one if up.
    z_cap = np.where(d[..., 2] < 0, shape.z_max, shape.z_min)
    t_cap = (z_cap - o[..., 2]) / d[..., 2]
  t_cap_finite = np.nan_to_num(t_cap, posinf=0.0, neginf=0.0)
  xy_cap = oc + t_cap_finite[..., None] * d[..., :2]
  cap_ok = (np.isfinite(t_cap) & (t_cap > _EPS)
            & (np.sum(xy_cap ** 2, axis=-1) <= shape.radius ** 2))
  t_cap = np.where(cap_ok, t_cap, np.inf)
  t = np.minimum(t_side, t_cap)
  side_xy = (oc + np.where(np.isfinite(t_side), t_side, 0.0)[..., None]
             * d[..., :2]) / shape.radius
  normal_side = np.concatenate([side_xy, np.zeros_like(t)[..., None]], axis=-1)
  normal_cap = np.zeros_like(o)
  normal_cap[..., 2] = -np.sign(d[..., 2])
  normal = np.where((t_side <= t_cap)[..., None], normal_side, normal_cap)
  return t, normal


def _hit(shape: Shape, o: np.ndarray, d: np.ndarray):
  if isinstance(shape, Sphere):
    return _sphere_hit(shape, o, d)
  if isinstance(shape, Box):
    return _box_hit(shape, o, d)
  return _cylinder_hit(shape, o, d)


def trace(origins: np.ndarray, directions: np.ndarray,
          white_background: bool = False, environment: bool = False):
  """Renders rays against ``SHAPES``: the nearest hit, shaded.

  Args:
    origins: f[..., 3], ray origins in world space.
    directions: f[..., 3], ray directions (any length; t is measured in
      units of these directions).
    white_background: bool, composite misses onto white instead of black.
    environment: bool, rays reach the ground and the dome
      (``environment.hit``) where no shape is hit before them.

  Returns:
    (rgb f32[..., 3], depth f32[..., ] with inf on misses,
    alpha f32[...] in {0, 1}).
  """
  o = np.asarray(origins, np.float64)
  d = np.asarray(directions, np.float64)
  depth = np.full(o.shape[:-1], np.inf)
  normal = np.zeros_like(o)
  albedo = np.zeros_like(o)
  for shape in SHAPES:
    t, n = _hit(shape, o, d)
    closer = t < depth
    depth = np.where(closer, t, depth)
    normal = np.where(closer[..., None], n, normal)
    albedo = np.where(closer[..., None], np.asarray(shape.albedo), albedo)
  light = np.full(depth.shape, AMBIENT)
  for direction, weight in LIGHTS:
    light += weight * np.maximum(0.0, normal @ direction)
  rgb = np.clip(albedo * light[..., None], 0, 1)
  if environment:
    t, emitted = env_lib.hit(o, d)
    behind = t < depth  # no shape in front of the environment's surface
    depth = np.where(behind, t, depth)
    rgb = np.where(behind[..., None], emitted, rgb)
  alpha = np.isfinite(depth)
  background = 1.0 if white_background else 0.0
  rgb = np.where(alpha[..., None], rgb, background)
  return (rgb.astype(np.float32), depth.astype(np.float32),
          alpha.astype(np.float32))


def default_intrinsics(width: int, height: int) -> camera.Intrinsics:
  """Square pixels, principal point at the centre, lego's field of view."""
  focal = 0.5 * width / np.tan(0.5 * CAMERA_ANGLE_X)
  return camera.Intrinsics.from_focal(focal, width, height)


def render_views(poses: np.ndarray, intrinsics: camera.Intrinsics,
                 white_background: bool = False, environment: bool = False):
  """Renders several views, one ray per pixel centre.

  Args:
    poses: f32[n, 4, 4] (or [n, 3, 4]), camera-to-world matrices.
    intrinsics: the camera shared by all views.
    white_background: bool, composite onto white instead of black.
    environment: bool, the objects inside the textured environment.

  Returns:
    (rgb f32[n, h, w, 3], depth f32[n, h, w], alpha f32[n, h, w]).
  """
  poses = np.asarray(poses, np.float32)
  h, w = intrinsics.height, intrinsics.width
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  dirs = camera.pixel_directions(intrinsics, rows, cols, xnp=np)
  per_chunk = max(1, _RAYS_PER_CHUNK // (h * w))
  outputs = []
  for start in range(0, poses.shape[0], per_chunk):
    chunk = poses[start:start + per_chunk, None, None]
    rays = camera.camera_rays(chunk, dirs, 0.0, 1.0, xnp=np)
    outputs.append(trace(rays.origins, rays.directions, white_background,
                         environment))
  return tuple(np.concatenate(parts, axis=0) for parts in zip(*outputs))


def render_view(c2w: np.ndarray, intrinsics: camera.Intrinsics,
                white_background: bool = False, environment: bool = False):
  """Renders one view of the scene from an arbitrary pose.

  Args:
    c2w: f32[4, 4] (or [3, 4]), the camera-to-world matrix.
    intrinsics: the camera.
    white_background: bool, composite onto white instead of black.
    environment: bool, the objects inside the textured environment.

  Returns:
    (rgb f32[h, w, 3], depth f32[h, w] camera-axis depth with inf on misses,
    alpha f32[h, w] in {0, 1}).
  """
  rgb, depth, alpha = render_views(np.asarray(c2w)[None], intrinsics,
                                   white_background, environment)
  return rgb[0], depth[0], alpha[0]


def _poses_from_angles(azimuth_deg: np.ndarray,
                       elevation_deg: np.ndarray) -> np.ndarray:
  """Cameras at ``CAMERA_RADIUS`` looking at the origin, z up: f32[n, 4, 4]."""
  az, el = np.deg2rad(azimuth_deg), np.deg2rad(elevation_deg)
  eyes = CAMERA_RADIUS * np.stack(
      [np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
  poses = [camera.look_at(eye) for eye in eyes]
  return np.stack(poses) if poses else np.zeros((0, 4, 4), np.float32)


def random_poses(num: int, rng: np.random.Generator) -> np.ndarray:
  """Cameras spread uniformly over the spherical cap of allowed elevations."""
  lo, hi = np.sin(np.deg2rad([MIN_ELEVATION_DEG, MAX_ELEVATION_DEG]))
  elevation = np.rad2deg(np.arcsin(rng.uniform(lo, hi, num)))
  azimuth = rng.uniform(0.0, 360.0, num)
  return _poses_from_angles(azimuth, elevation)


def spiral_poses(num: int, phase_deg: float, elevation_range: Sequence[float]
                 ) -> np.ndarray:
  """Cameras evenly spaced in azimuth, rising through ``elevation_range``."""
  azimuth = phase_deg + 360.0 * np.arange(num) / max(num, 1)
  elevation = np.linspace(elevation_range[0], elevation_range[1], num)
  return _poses_from_angles(azimuth, elevation)


def _make_split(poses: np.ndarray, intrinsics: camera.Intrinsics,
                white_background: bool, environment: bool,
                where: str) -> Split:
  rgb, depth, alpha = render_views(poses, intrinsics, white_background,
                                   environment)
  return pinhole_split(rgb, poses, intrinsics, np.arange(len(poses)), where,
                       depths=depth, alphas=alpha)


def make_scene(width: int = 64, height: int = 64, num_train: int = 100,
               num_val: int = 8, num_test: int = 8, seed: int = 0,
               white_background: bool = False, near: float = 2.0,
               far: float = 6.0, environment: bool = False) -> Scene:
  """The procedural scene with train / val / test views.

  The object set is fixed; ``seed`` only places the cameras. Train cameras are
  random on the upper hemisphere, val and test cameras lie on two interleaved
  spirals (elevation 20-60 and 30-70 degrees) whose phase depends on the seed.
  Splits with zero views are left out.

  With ``environment`` the objects stand inside the textured ground and dome
  (``environment``): the scene's extent is 'unbounded', its box ``aabb`` is
  still the objects' and its far plane is ``max(far, ENVIRONMENT_FAR)``
  (45), so that the sampled interval reaches the dome from every camera
  while a larger ``far`` is kept; ``near`` is used as given.

  Args:
    width, height: int, image size in pixels.
    num_train, num_val, num_test: int, views per split (num_train >= 1).
    seed: int, seeds the camera placement.
    white_background: bool, composite onto white instead of black.
    near, far: float, the sampled interval along t (see above for the far
      plane with ``environment``).
    environment: bool, the unbounded variant.

  Returns:
    ``Scene`` named 'procedural' whose splits carry ground-truth depths and
    alphas.
  """
  if num_train < 1 or min(num_val, num_test) < 0 or min(width, height) < 1:
    raise DatasetError(
        f'procedural scene: need num_train >= 1, num_val/num_test >= 0 and a '
        f'positive size, got {num_train}/{num_val}/{num_test}, '
        f'{width}x{height}')
  intrinsics = default_intrinsics(width, height)
  rng = np.random.default_rng([seed, 0])
  phase = float(np.random.default_rng([seed, 1]).uniform(0.0, 360.0))
  poses = {
      'train': random_poses(num_train, rng),
      'val': spiral_poses(num_val, phase, (20.0, 60.0)),
      'test': spiral_poses(num_test, phase + 180.0 / max(num_test, 1),
                           (30.0, 70.0)),
  }
  splits = {name: _make_split(p, intrinsics, white_background, environment,
                              f'procedural scene, {name} split')
            for name, p in poses.items() if len(p)}
  far = max(float(far), ENVIRONMENT_FAR) if environment else float(far)
  return Scene(name='procedural', splits=splits, near=float(near), far=far,
               white_background=bool(white_background), aabb=AABB,
               extent='unbounded' if environment else 'bounded')
