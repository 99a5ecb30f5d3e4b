"""The in-memory form every dataset loader returns."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from nerf_jax import scene as scene_lib
from nerf_jax.camera import Intrinsics


class DatasetError(Exception):
  """A dataset that is missing, unreadable or malformed (one-line message)."""


@dataclasses.dataclass
class Split:
  """The views of one split.

  Attributes:
    images: f32[n, height, width, 3], linear RGB in [0, 1], already composited
      onto the scene's background colour.
    poses: f32[n, 4, 4], camera-to-world matrices (OpenGL convention).
    intrinsics: the camera shared by all views of the split.
    indices: int[n], the view numbers in the source data.
    depths: optional f32[n, height, width], ground-truth t along the rays
      (camera-axis depth), ``inf`` where the ray hits nothing.
    alphas: optional f32[n, height, width], ground-truth coverage in [0, 1].
  """
  images: np.ndarray
  poses: np.ndarray
  intrinsics: Intrinsics
  indices: np.ndarray
  depths: Optional[np.ndarray] = None
  alphas: Optional[np.ndarray] = None

  def __len__(self) -> int:
    return int(self.images.shape[0])


@dataclasses.dataclass
class Scene:
  """A loaded dataset: its splits and the scene-wide rendering settings.

  Attributes:
    name: str, a short name for logs.
    splits: dict from split name ('train', 'val', 'test') to ``Split``.
    near, far: float, the sampled interval along t.
    white_background: bool, whether images were composited onto white.
    aabb: ((x, y, z), (x, y, z)), min and max corner of the box holding the
      scene's content (the fast model's grids span it).
  """
  name: str
  splits: dict
  near: float
  far: float
  white_background: bool = False
  aabb: tuple = scene_lib.DEFAULT_AABB

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise DatasetError(
          f'dataset {self.name!r} has no {name!r} split '
          f'(it has: {", ".join(sorted(self.splits))})')
    return self.splits[name]

  def info(self, path: str = '') -> scene_lib.SceneInfo:
    """The facts a model keeps of this scene (saved as scene.json)."""
    train = self.split('train')
    radius, elevation = scene_lib.camera_orbit_stats(train.poses)
    poses = [self.splits[k].poses for k in sorted(self.splits)]
    return scene_lib.SceneInfo(
        name=self.name, near=float(self.near), far=float(self.far),
        white_background=bool(self.white_background),
        aabb=scene_lib.as_aabb(self.aabb),
        intrinsics=train.intrinsics, camera_radius=radius,
        camera_elevation_deg=elevation,
        fingerprint=scene_lib.fingerprint(train.images, poses,
                                          train.intrinsics),
        path=path)


def validate_split(split: Split, where: str) -> Split:
  """Checks shapes and values; raises ``DatasetError`` with one clear line."""
  images = np.asarray(split.images)
  poses = np.asarray(split.poses)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise DatasetError(
        f'{where}: images must have shape (n, height, width, 3), got '
        f'{images.shape}')
  if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
    raise DatasetError(
        f'{where}: poses must have shape (n, 4, 4) or (n, 3, 4), got '
        f'{poses.shape}')
  if poses.shape[0] != images.shape[0]:
    raise DatasetError(
        f'{where}: {images.shape[0]} images but {poses.shape[0]} poses')
  if images.shape[0] == 0:
    raise DatasetError(f'{where}: no views')
  if not np.all(np.isfinite(poses)):
    bad = np.unique(np.nonzero(~np.isfinite(poses))[0])
    raise DatasetError(
        f'{where}: pose(s) {bad[:5].tolist()} contain NaN or inf values')
  if not np.all(np.isfinite(images)):
    raise DatasetError(f'{where}: images contain NaN or inf values')
  h, w = images.shape[1:3]
  k = split.intrinsics
  if (k.height, k.width) != (h, w):
    raise DatasetError(
        f'{where}: intrinsics are {k.width}x{k.height} but images are {w}x{h}')
  if not (np.isfinite(k.fx) and np.isfinite(k.fy) and k.fx > 0 and k.fy > 0):
    raise DatasetError(f'{where}: focal length must be positive, got '
                       f'fx={k.fx}, fy={k.fy}')
  if poses.shape[1] == 3:
    bottom = np.broadcast_to(np.array([0, 0, 0, 1], np.float32),
                             (poses.shape[0], 1, 4))
    poses = np.concatenate([poses, bottom], axis=1)
  split.images = images.astype(np.float32)
  split.poses = poses.astype(np.float32)
  split.indices = np.asarray(split.indices, np.int64)
  return split
