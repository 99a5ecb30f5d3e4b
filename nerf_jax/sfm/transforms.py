"""COLMAP's reconstruction as a transforms.json scene: poses, intrinsics,
the world and its box.

The world of ``transforms.json`` follows instant-ngp's colmap2nerf: +z is the
mean of the cameras' up vectors, the origin is the point closest (least
squares) to all the cameras' optical axes, and the mean camera distance to it
is 4. Camera-to-world matrices use OpenGL axes (x right, y up, looking down
-z). ``umeyama`` and ``alignment_errors`` compare recovered cameras with
reference ones.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from nerf_jax.cameras import poses as poses_lib
from nerf_jax.sfm import images
from nerf_jax.sfm import report

# Camera models whose parameters map onto transforms.json's fl_x, fl_y, cx, cy
# and OpenCV radial-tangential k1 k2 p1 p2.
CAMERA_MODELS = ('OPENCV', 'RADIAL', 'SIMPLE_RADIAL', 'PINHOLE',
                 'SIMPLE_PINHOLE')
TARGET_RADIUS = 4.0  # mean camera distance to the origin, as colmap2nerf
# instant-ngp maps a position x to x * 0.33 + 0.5: its unit cube spans
# [-1.5, 1.5] here, and aabb_scale multiplies that.
NGP_UNIT_HALF_WIDTH = 1.5


def colmap_to_c2w(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
  """COLMAP's world-to-camera (OpenCV axes) R, t -> 4x4 camera-to-world with
  OpenGL axes (x right, y up, looking down -z)."""
  w2c = np.eye(4)
  w2c[:3, :3] = rotation
  w2c[:3, 3] = np.ravel(translation)
  c2w = np.linalg.inv(w2c)
  c2w[:3, 1:3] *= -1.0
  return c2w


def normalize_poses(c2w: np.ndarray, points: Optional[np.ndarray] = None,
                    radius: float = TARGET_RADIUS) -> tuple:
  """Re-expresses OpenGL camera-to-world matrices in colmap2nerf's world.

  +z becomes the mean of the cameras' up vectors; the origin the point
  closest to all optical axes (for nearly parallel axes, the median of
  ``points`` or else the cameras' mean); the mean camera distance ``radius``.

  Returns (new c2w [n, 4, 4], world_from_old 4x4 similarity).
  """
  c2w = np.asarray(c2w, np.float64)
  origins = c2w[:, :3, 3]
  try:
    centre = poses_lib.focus_point(c2w)
  except ValueError:
    centre = (np.median(points, axis=0) if points is not None and len(points)
              else origins.mean(0))
  dist = np.linalg.norm(origins - centre, axis=-1).mean()
  scale = radius / dist if dist > 0 else 1.0
  return poses_lib.orient_and_center(c2w, centre, scale=scale)


def umeyama(src, dst, with_scale: bool = True) -> tuple:
  """Similarity (s, R, t) minimising sum |dst - (s R src + t)|^2 (Umeyama
  1991). ``src`` and ``dst`` are [n, 3] corresponding points, n >= 3."""
  src = np.asarray(src, np.float64)
  dst = np.asarray(dst, np.float64)
  mu_s, mu_d = src.mean(0), dst.mean(0)
  xs, xd = src - mu_s, dst - mu_d
  cov = xd.T @ xs / len(src)
  u, sv, vt = np.linalg.svd(cov)
  sign = np.eye(3)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    sign[2, 2] = -1.0
  rot = u @ sign @ vt
  var_s = (xs ** 2).sum() / len(src)
  scale = float(np.trace(np.diag(sv) @ sign) / var_s) if with_scale else 1.0
  return scale, rot, mu_d - scale * rot @ mu_s


def rotation_angle_deg(r1, r2) -> np.ndarray:
  """Angle in degrees of the rotation r1^T r2 (batched over leading axes)."""
  rel = np.swapaxes(np.asarray(r1), -1, -2) @ np.asarray(r2)
  cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def alignment_errors(ours_c2w, ref_c2w) -> dict:
  """Aligns our camera centres to reference ones with a similarity and
  measures what is left: centre RMS error (absolute and relative to the
  reference cameras' RMS spread about their mean) and rotation errors."""
  ours = np.asarray(ours_c2w, np.float64)
  ref = np.asarray(ref_c2w, np.float64)
  s, rot, t = umeyama(ours[:, :3, 3], ref[:, :3, 3])
  moved = s * ours[:, :3, 3] @ rot.T + t
  err = np.linalg.norm(moved - ref[:, :3, 3], axis=-1)
  spread = np.sqrt(((ref[:, :3, 3] - ref[:, :3, 3].mean(0)) ** 2)
                   .sum(-1).mean())
  angles = rotation_angle_deg(rot @ ours[:, :3, :3], ref[:, :3, :3])
  return dict(rms=float(np.sqrt((err ** 2).mean())), max=float(err.max()),
              spread=float(spread),
              rms_relative=float(np.sqrt((err ** 2).mean()) / spread),
              rot_mean_deg=float(angles.mean()),
              rot_max_deg=float(angles.max()), scale=s, rotation=rot,
              translation=t)


def auto_aabb_scale(c2w) -> int:
  """The smallest power of 2 (1..128) whose instant-ngp box, half-width
  1.5 * aabb_scale about the origin, holds every camera centre."""
  extent = float(np.abs(np.asarray(c2w)[:, :3, 3]).max())
  scale = 1
  while NGP_UNIT_HALF_WIDTH * scale < extent and scale < 128:
    scale *= 2
  return scale


def camera_intrinsics(camera) -> dict:
  """A pycolmap camera as transforms.json intrinsics (fl_x ... p2)."""
  names = [p.strip() for p in camera.params_info.split(',')]
  values = dict(zip(names, (float(v) for v in camera.params)))
  out = dict(fl_x=0.0, fl_y=0.0, cx=0.0, cy=0.0, w=int(camera.width),
             h=int(camera.height), k1=0.0, k2=0.0, p1=0.0, p2=0.0)
  for key, value in values.items():
    if key == 'f':
      out['fl_x'] = out['fl_y'] = value
    elif key in ('fx', 'fy'):
      out['fl_' + key[1]] = value
    elif key == 'k':
      out['k1'] = value
    elif key in ('cx', 'cy', 'k1', 'k2', 'p1', 'p2'):
      out[key] = value
    else:
      raise report.SfmError(
          f'camera model {camera.model_name} has parameter {key!r}, which '
          'transforms.json cannot hold; use one of '
          f'{", ".join(CAMERA_MODELS)}')
  out['camera_angle_x'] = 2.0 * math.atan(out['w'] / (2.0 * out['fl_x']))
  out['camera_angle_y'] = 2.0 * math.atan(out['h'] / (2.0 * out['fl_y']))
  return out


def reconstruction_to_transforms(rec, *, image_prefix: str = 'images',
                                 sharpness_by_name: Optional[dict] = None,
                                 aabb_scale: Optional[int] = 0) -> tuple:
  """A pycolmap.Reconstruction as a transforms.json dict.

  ``aabb_scale``: 0 picks it with ``auto_aabb_scale``; None leaves it out.

  Returns (transforms dict, world_from_colmap 4x4 similarity: a COLMAP world
  point x maps to world_from_colmap @ [x, 1]).
  """
  registered = sorted((rec.image(i) for i in rec.reg_image_ids()),
                      key=lambda im: images.natural_key(im.name))
  if not registered:
    raise report.SfmError('the reconstruction has no registered images')
  c2w = []
  for im in registered:
    pose = im.cam_from_world()
    c2w.append(colmap_to_c2w(pose.rotation.matrix(), pose.translation))
  points = np.array([p.xyz for p in rec.points3D.values()]).reshape(-1, 3)
  c2w, world = normalize_poses(np.stack(c2w), points)
  camera_ids = sorted({im.camera_id for im in registered})
  model = rec.camera(camera_ids[0]).model_name
  shared = len(camera_ids) == 1
  out = dict(camera_model=model)
  if shared:
    out.update(camera_intrinsics(rec.camera(camera_ids[0])))
  if aabb_scale is not None:
    out['aabb_scale'] = int(aabb_scale) or auto_aabb_scale(c2w)
  frames = []
  for im, m in zip(registered, c2w):
    frame = dict(file_path=f'{image_prefix}/{im.name}')
    if not shared:
      frame.update(camera_intrinsics(rec.camera(im.camera_id)))
    if sharpness_by_name and im.name in sharpness_by_name:
      frame['sharpness'] = float(sharpness_by_name[im.name])
    frame['transform_matrix'] = m.tolist()
    frames.append(frame)
  out['frames'] = frames
  return out, world

