"""Blender synthetic scenes (the NeRF ``nerf_synthetic`` format).

A scene folder holds ``transforms_{train,val,test}.json``; each has
``camera_angle_x`` (horizontal field of view, radians) and ``frames`` with a
``file_path`` (e.g. './train/r_0', '.png' appended when it has no extension)
and a 4x4 camera-to-world ``transform_matrix``. Images are RGBA PNGs that are
downsampled by block-averaging premultiplied RGBA, then composited onto the
background: ``rgb * a + bg * (1 - a)``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from nerf_jax.io import inputs
from nerf_jax.cameras import checks
from nerf_jax.cameras.camera import Intrinsics
from nerf_jax.datasets.scene import DEFAULT_AABB
from nerf_jax.datasets.images import read_images
from nerf_jax.datasets.base import DatasetError, Scene, Split, pinhole_split

def _image_path(root: str, file_path: str) -> str:
  path = os.path.normpath(os.path.join(root, file_path))
  return path if os.path.splitext(path)[1] else path + '.png'


def _read_transforms(json_path: str, max_views: int):
  """Parses a transforms json: (camera_angle_x, file_paths, f32[n, 4, 4])."""
  inputs.check_input_file(json_path, 'a transforms json file',
                          inputs.MAX_JSON_BYTES, DatasetError)
  meta = inputs.read_json(json_path, DatasetError)
  try:
    angle = float(meta['camera_angle_x'])
    frames = meta['frames']
    frames = frames[:max_views] if max_views > 0 else frames
    files = [str(frame['file_path']) for frame in frames]
    poses = np.array([frame['transform_matrix'] for frame in frames],
                     np.float32)
  except KeyError as e:
    raise DatasetError(f'{json_path}: missing key {e}') from None
  except (TypeError, ValueError) as e:
    raise DatasetError(f'{json_path}: malformed transforms ({e})') from None
  if not files:
    raise DatasetError(f'{json_path}: no frames')
  if not (np.isfinite(angle) and 0 < angle < np.pi):
    raise DatasetError(f'{json_path}: camera_angle_x must be in (0, pi), got '
                       f'{angle}')
  if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
    raise DatasetError(f'{json_path}: each transform_matrix must be 4x4, got '
                       f'shape {poses.shape[1:]}')
  # Check the cameras before reading any image.
  problem = checks.pose_problem(poses, what='transform_matrix of frame')
  if problem:
    raise DatasetError(f'{json_path}: {problem}')
  return angle, files, poses


def _load_split(root: str, name: str, downsample: int, white_background: bool,
                max_views: int) -> Split:
  """Reads one split's json and images (in a thread pool)."""
  json_path = os.path.join(root, f'transforms_{name}.json')
  angle, files, poses = _read_transforms(json_path, max_views)
  paths = [_image_path(root, f) for f in files]
  images = read_images(paths, downsample,
                       background=1.0 if white_background else 0.0,
                       same_size=True)
  shapes = {image.shape for image in images}
  if len(shapes) != 1:
    raise DatasetError(f'{json_path}: images differ in size: {sorted(shapes)}')
  height, width = images[0].shape[:2]
  if min(height, width) < 1:
    raise DatasetError(f'{json_path}: downsample={downsample} leaves no pixels')
  focal = 0.5 * width / np.tan(0.5 * angle)
  return pinhole_split(np.stack(images), poses,
                       Intrinsics.from_focal(focal, width, height),
                       np.arange(len(images)), json_path)


def load_blender(path: str, *, downsample: int = 1,
                 white_background: bool = True, near: float = 2.0,
                 far: float = 6.0,
                 splits: Sequence[str] = ('train', 'val', 'test'),
                 max_views: int = 0) -> Scene:
  """Loads a Blender synthetic scene.

  Args:
    path: str, the scene folder (with transforms_train.json at least).
    downsample: int >= 1, integer downsampling factor (area averaging).
    white_background: bool, composite onto white (the NeRF default) or black.
    near, far: float, the sampled interval along t.
    splits: the split names to load; those without a json are skipped.
    max_views: int, keep only the first max_views frames per split (0 = all).

  Returns:
    ``Scene`` named after the folder; focal is in downsampled pixels.
  """
  if not path or not os.path.isdir(path):
    raise DatasetError(f'blender scene folder not found: {path!r} (pass '
                       f'--config.data.path=DIR)')
  if int(downsample) != downsample or downsample < 1:
    raise DatasetError(f'{path}: downsample must be a positive integer, got '
                       f'{downsample}')
  if not os.path.isfile(os.path.join(path, 'transforms_train.json')):
    raise DatasetError(f'{path}: no transforms_train.json, not a Blender scene')
  loaded = {}
  for name in splits:
    if os.path.isfile(os.path.join(path, f'transforms_{name}.json')):
      loaded[name] = _load_split(path, name, int(downsample), white_background,
                                 max_views)
  return Scene(name=os.path.basename(os.path.normpath(path)), splits=loaded,
               near=float(near), far=float(far),
               white_background=bool(white_background),
               aabb=DEFAULT_AABB)
