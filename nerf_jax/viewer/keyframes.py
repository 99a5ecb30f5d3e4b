"""Camera paths made in the viewer: keyframes, their interpolation, the
camera a path is rendered with and the file name it is saved under.

Saved paths are in the JSON format that ``paths.load_camera_path`` reads
and ``render.py --path`` renders (``paths.save_camera_path``).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from scipy import interpolate as sp_interpolate
from scipy.spatial import transform as sp_transform

from nerf_jax.cameras import camera, paths
from nerf_jax.io import outputs
from nerf_jax.viewer import cameras

# Camera paths made in the viewer: keyframes, frames, and the length of the
# file name they are saved under (in the run directory).
MAX_KEYFRAMES = 100
MIN_PATH_FRAMES, MAX_PATH_FRAMES = 2, 10000
MAX_PATH_NAME = 100


@dataclasses.dataclass(frozen=True)
class Keyframe:
  """A camera placed in the viewer.

  Attributes:
    c2w: f32[4, 4], camera-to-world pose (OpenGL axes).
    fov_y: float, vertical field of view in radians.
    aspect: float, width / height.
  """
  c2w: np.ndarray
  fov_y: float
  aspect: float


def interpolate_keyframes(poses, num_frames: int,
                          loop: bool = False) -> np.ndarray:
  """A smooth camera path through keyframes, in their order.

  Positions follow a C2 cubic spline (natural ends, or periodic when
  ``loop``), rotations a C2 rotation spline (``scipy`` ``RotationSpline``),
  both parameterised by the keyframe index. Frame ``i`` sits at time
  ``i * (k - 1) / (num_frames - 1)`` (``i * k / num_frames`` when
  ``loop``), so with ``num_frames = m * (k - 1) + 1`` every m-th frame is a
  keyframe exactly.

  Args:
    poses: f[k, 4, 4], keyframe camera-to-world matrices (k >= 1).
    num_frames: int >= 1, poses to return.
    loop: bool, the path returns to the first keyframe and repeats smoothly.

  Returns:
    f32[num_frames, 4, 4].
  """
  poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
  k = len(poses)
  if k == 0 or num_frames < 1:
    raise ValueError('a camera path needs at least one keyframe and frame')
  if k == 1:
    return np.repeat(poses[:1], num_frames, axis=0).astype(np.float32)
  rotations = sp_transform.Rotation.from_matrix(poses[:, :3, :3])
  positions = poses[:, :3, 3]
  if loop:
    times = np.arange(num_frames) * k / num_frames
    # Periodic positions; rotations are extended by wrapped keyframes on
    # both ends so the curve is smooth across the seam.
    spline = sp_interpolate.CubicSpline(
        np.arange(k + 1), np.concatenate([positions, positions[:1]]),
        bc_type='periodic')
    wrap = np.concatenate([np.arange(k - 2, k), np.arange(k),
                           np.arange(0, 3)]) % k
    key_times = np.arange(-2, k + 3)
    rotation_spline = sp_transform.RotationSpline(key_times,
                                                  rotations[wrap])
  else:
    times = np.linspace(0.0, k - 1, num_frames) if num_frames > 1 else (
        np.zeros(1))
    spline = sp_interpolate.CubicSpline(np.arange(k), positions,
                                        bc_type='natural')
    rotation_spline = sp_transform.RotationSpline(np.arange(k), rotations)
  out = np.tile(np.eye(4), (num_frames, 1, 1))
  out[:, :3, :3] = rotation_spline(times).as_matrix()
  out[:, :3, 3] = spline(times)
  return out.astype(np.float32)


def path_intrinsics(keyframe: Keyframe, height: int) -> camera.Intrinsics:
  """The camera of a saved path: ``keyframe``'s field of view and aspect at
  ``height`` pixels (both sides at most ``paths.MAX_RENDER_SIDE``)."""
  side = paths.MAX_RENDER_SIDE
  aspect = cameras.clamp_aspect(keyframe.aspect)
  height = cameras.clamp_int(height, 1, side, min(side, 256))
  width = max(1, round(height * aspect))
  if width > side:
    width, height = side, max(1, round(side / aspect))
  return cameras.fov_intrinsics(cameras.clamp_fov(keyframe.fov_y), width,
                                height)


def camera_path_name(name) -> str:
  """The file name a camera path saved from the viewer gets, from what the
  "Save as" field holds; ValueError (one line) for anything but a plain
  file name: paths, '..', hidden names, characters other than letters,
  digits, '.', '_', '-' and spaces, more than ``MAX_PATH_NAME``
  characters, and the names of a run's own files. '.json' is appended when
  missing. (The message never repeats a refused name: it is shown in the
  page.)"""
  if not isinstance(name, str):
    raise ValueError('the name must be text')
  name = name.strip()
  if not name:
    raise ValueError('give a file name, e.g. camera_path.json')
  if any(sep in name for sep in ('/', '\\', os.sep, os.altsep or '/')):
    raise ValueError('give a file name, not a path: camera paths are saved '
                     'in the run folder')
  if '..' in name:
    raise ValueError('a file name may not contain ".."')
  if name.startswith('.'):
    raise ValueError('a file name may not start with "." (a hidden file)')
  if not all(ch.isalnum() or ch in '._- ' for ch in name):
    raise ValueError('use only letters, digits, ".", "_", "-" and spaces in '
                     'the file name')
  if not (name[0].isalnum() or name[0] == '_'):
    raise ValueError('start the file name with a letter, digit or "_"')
  if not name.lower().endswith('.json'):
    name += '.json'
  if len(name) > MAX_PATH_NAME or len(name.encode('utf-8')) > 2 * (
      MAX_PATH_NAME):
    raise ValueError(f'the file name is longer than {MAX_PATH_NAME} '
                     'characters')
  if (name in outputs.RUN_ENTRIES or name == outputs.LEDGER
      or name.startswith(outputs.RUN_EVENT_PREFIX)):
    raise ValueError(f'{name} is one of the run\'s own files; choose another '
                     'name')
  return name

