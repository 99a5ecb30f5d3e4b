"""The browser's cameras as nerf_jax cameras, and every value a client
sends checked before it is used.

viser reports a camera as the rotation ``wxyz`` and ``position`` of an
OpenCV camera (x right, y down, looking down +z) in the world; nerf_jax
poses are OpenGL camera-to-world matrices (x right, y up, looking down -z).
The two differ by a half-turn about the camera's x axis:
``R_gl = R_cv @ diag(1, -1, -1)`` (``opencv_to_opengl``).

A client (any program that holds the page's token) can send any value for a
GUI input or a camera, whatever the slider's limits: ``clamp_int``,
``choice``, ``clamp_fov``, ``clamp_aspect`` and ``client_camera`` turn
what it sent into a value in range, or refuse it.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy.spatial import transform as sp_transform

from nerf_jax.cameras import camera, checks

# The range of full frames' longer side, in pixels.
MIN_RESOLUTION, MAX_RESOLUTION = 8, 2048
# A browser camera's vertical field of view (radians) and aspect are
# clamped to these.
MIN_FOV, MAX_FOV = math.radians(1.0), math.radians(170.0)
MIN_ASPECT, MAX_ASPECT = 1e-2, 1e2
# Half-turn about the camera's x axis: OpenCV <-> OpenGL camera axes.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def opencv_to_opengl(wxyz, position) -> np.ndarray:
  """A viser camera (OpenCV axes) as a nerf_jax pose (OpenGL axes).

  Args:
    wxyz: f[4], unit quaternion (w first): the camera-to-world rotation of
      an OpenCV camera (x right, y down, looking down +z).
    position: f[3], the camera centre in the world.

  Returns:
    f32[4, 4], camera-to-world matrix with OpenGL axes (x right, y up,
    looking down -z).
  """
  w, x, y, z = np.asarray(wxyz, np.float64)
  rotation = sp_transform.Rotation.from_quat([x, y, z, w]).as_matrix()
  c2w = np.eye(4)
  c2w[:3, :3] = rotation @ _FLIP_YZ
  c2w[:3, 3] = np.asarray(position, np.float64)
  return c2w.astype(np.float32)


def opengl_to_opencv(c2w) -> tuple:
  """The inverse of ``opencv_to_opengl``: (wxyz f64[4], position f64[3]).

  Args:
    c2w: f[3|4, 4], camera-to-world matrix with OpenGL axes.
  """
  c2w = np.asarray(c2w, np.float64)
  rotation = c2w[:3, :3] @ _FLIP_YZ
  x, y, z, w = sp_transform.Rotation.from_matrix(rotation).as_quat()
  return np.array([w, x, y, z]), c2w[:3, 3].copy()


def fov_intrinsics(fov_y: float, width: int,
                   height: int) -> camera.Intrinsics:
  """A ``width`` x ``height`` pinhole camera of vertical field of view
  ``fov_y`` (radians): square pixels, the principal point at the centre."""
  focal = height / (2.0 * math.tan(fov_y / 2.0))
  return camera.Intrinsics(fx=focal, fy=focal, cx=width / 2.0,
                           cy=height / 2.0, width=width, height=height)


def view_intrinsics(fov_y: float, aspect: float,
                    resolution: int) -> camera.Intrinsics:
  """The pinhole camera of a browser view: its longer side ``resolution``
  pixels (``fov_intrinsics``).

  Args:
    fov_y: float, vertical field of view in radians (viser's ``fov``).
    aspect: float, width / height of the browser's canvas.
    resolution: int, pixels along the longer side.
  """
  aspect, fov_y = clamp_aspect(aspect), clamp_fov(fov_y)
  resolution = clamp_int(resolution, 1, MAX_RESOLUTION, MAX_RESOLUTION)
  if aspect >= 1.0:
    width, height = resolution, max(1, round(resolution / aspect))
  else:
    width, height = max(1, round(resolution * aspect)), resolution
  return fov_intrinsics(fov_y, width, height)


def vertical_fov(intrinsics: camera.Intrinsics) -> float:
  """A camera's vertical field of view in radians."""
  return 2.0 * math.atan(intrinsics.height / (2.0 * intrinsics.fy))


def training_intrinsics_view(intrinsics: camera.Intrinsics,
                             resolution: int) -> camera.Intrinsics:
  """The training camera rescaled so its longer side is ``resolution``
  (NDC scenes: rays in NDC are only right for the training field of view
  and aspect)."""
  return intrinsics.scaled(resolution / max(intrinsics.width,
                                            intrinsics.height))

def clamp_int(value, low: int, high: int, default: int) -> int:
  """``value`` as a whole number in [low, high] (rounded, then clamped);
  ``default`` when it is not a finite number (NaN, text, a list)."""
  if isinstance(value, bool):
    return default
  if isinstance(value, int):
    return min(max(value, low), high)
  try:
    number = float(value)
  except (TypeError, ValueError, OverflowError):
    return default
  if not math.isfinite(number):
    return default
  return int(min(max(round(number), low), high))


def choice(value, options, default: str) -> str:
  """``value`` if it is one of ``options``, else ``default``."""
  return value if isinstance(value, str) and value in options else default


def clamp_fov(fov_y) -> float:
  """A vertical field of view in [MIN_FOV, MAX_FOV] radians (1 radian
  when it is not a finite number)."""
  try:
    fov_y = float(fov_y)
  except (TypeError, ValueError, OverflowError):
    fov_y = math.nan
  return float(np.clip(fov_y, MIN_FOV, MAX_FOV)) if math.isfinite(fov_y) else (
      1.0)


def clamp_aspect(aspect) -> float:
  """A width / height in [MIN_ASPECT, MAX_ASPECT] (1 when it is not a
  positive finite number)."""
  try:
    aspect = float(aspect)
  except (TypeError, ValueError, OverflowError):
    aspect = math.nan
  if not (math.isfinite(aspect) and aspect > 0):
    return 1.0
  return float(np.clip(aspect, MIN_ASPECT, MAX_ASPECT))


def client_camera(cam) -> Optional[tuple]:
  """(c2w f32[4, 4] with OpenGL axes, vertical fov, aspect) of a camera as
  a client reported it (viser's ``CameraHandle``), or None when it is not
  a camera: a rotation or position that is not 4 and 3 finite numbers, a
  zero quaternion, or a centre farther than ``checks.MAX_CAMERA_DISTANCE``
  from the origin. The fov and aspect are clamped (``clamp_fov``,
  ``clamp_aspect``)."""
  try:
    wxyz = np.asarray(cam.wxyz, np.float64).reshape(4)
    position = np.asarray(cam.position, np.float64).reshape(3)
    fov = cam.fov
  except Exception:  # pylint: disable=broad-except
    return None  # a client may send anything: it is not a camera
  try:
    aspect = cam.aspect  # viser divides the canvas's width by its height
  except Exception:  # pylint: disable=broad-except
    aspect = 1.0
  if not (np.isfinite(wxyz).all() and np.isfinite(position).all()):
    return None
  norm = float(np.linalg.norm(wxyz))
  far = checks.MAX_CAMERA_DISTANCE
  if norm < 1e-6 or np.abs(position).max() > far or (
      np.linalg.norm(position) > far):
    return None
  return (opencv_to_opengl(wxyz / norm, position), clamp_fov(fov),
          clamp_aspect(aspect))


def scene_up(poses: np.ndarray) -> np.ndarray:
  """f64[3], the unit mean of the cameras' up axes (world +z if none)."""
  poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
  up = poses[:, :3, 1].sum(axis=0) if len(poses) else np.zeros(3)
  norm = np.linalg.norm(up)
  return up / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])

