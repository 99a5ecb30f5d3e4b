"""The in-memory form every dataset loader returns."""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np

from nerf_jax.cameras import checks
from nerf_jax import errors
from nerf_jax.datasets import scene as scene_lib
from nerf_jax.cameras.camera import Cameras, Intrinsics


class DatasetError(errors.UserError):
  """A dataset that is missing, unreadable or malformed (one-line message)."""


@dataclasses.dataclass
class Split:
  """The views of one split, each with its own camera.

  Attributes:
    images: f32[n, height, width, 3] when all views share one size, else a
      list of n f32[height_i, width_i, 3]; linear RGB in [0, 1], already
      composited onto the scene's background colour.
    cameras: ``camera.Cameras`` of the n views (NumPy): pose, intrinsics,
      size, distortion, NDC.
    indices: int[n], the view numbers in the source data.
    depths: optional f32[n, height, width], ground-truth t along the rays
      (camera-axis depth), ``inf`` where the ray hits nothing.
    alphas: optional f32[n, height, width], ground-truth coverage in [0, 1].
    names: optional list of n image file names.
    masks: optional bool[n, height, width] (a list of n bool[height_i,
      width_i] where ``images`` is a list), True where a pixel is used;
      training and evaluation skip the others (a capture's per-frame
      masks). u8 is accepted (nonzero = used) and becomes bool.
  """
  images: Union[np.ndarray, list]
  cameras: Cameras
  indices: np.ndarray
  depths: Optional[np.ndarray] = None
  alphas: Optional[np.ndarray] = None
  names: Optional[list] = None
  masks: Optional[Union[np.ndarray, list]] = None

  def __len__(self) -> int:
    return len(self.cameras)

  @property
  def poses(self) -> np.ndarray:
    """f32[n, 4, 4], camera-to-world matrices (OpenGL convention)."""
    return np.asarray(self.cameras.poses)

  @property
  def intrinsics(self) -> Intrinsics:
    """The first view's pinhole camera (every view's, for synthetic data)."""
    return self.cameras.intrinsics(0)

  @property
  def same_size(self) -> bool:
    return isinstance(self.images, np.ndarray)


def pinhole_split(images, poses, intrinsics: Intrinsics, indices,
                  where: str, depths=None, alphas=None) -> Split:
  """A split of same-size images seen by one pinhole camera (synthetic
  data); checks the arrays and raises ``DatasetError`` with one clear line."""
  images = np.asarray(images)
  poses = np.asarray(poses)
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
  _check_dtype(images, where)  # before the cast below hides a bad dtype
  h, w = images.shape[1:3]
  if min(h, w) < 1:
    raise DatasetError(f'{where}: images are {w}x{h} pixels (empty)')
  if (intrinsics.height, intrinsics.width) != (h, w):
    raise DatasetError(f'{where}: intrinsics are {intrinsics.width}x'
                       f'{intrinsics.height} but images are {w}x{h}')
  split = Split(images=images.astype(np.float32),
                cameras=Cameras.create(poses, intrinsics),
                indices=np.asarray(indices, np.int64), depths=depths,
                alphas=alphas)
  return validate_split(split, where)


def _check_poses(poses: np.ndarray, where: str) -> None:
  problem = checks.pose_problem(poses)
  if problem:
    raise DatasetError(f'{where}: {problem}')


def _check_dtype(images, where: str) -> None:
  """Refuses images that are not real numbers (complex, bool, strings)."""
  kinds = {np.asarray(image).dtype for image in images} if isinstance(
      images, list) else {images.dtype}
  for dtype in kinds:
    if dtype.kind not in 'fiu':
      raise DatasetError(f'{where}: images must be real numbers (floats in '
                         f'[0, 1] or uint8), got {dtype}')


# Images are linear RGB in [0, 1]; float error of a resampling may stray
# this far outside.
_PIXEL_SLACK = 1e-3


def _check_pixels(image: np.ndarray, where: str) -> None:
  if not np.all(np.isfinite(image)):
    raise DatasetError(f'{where}: images contain NaN or inf values')
  lo, hi = float(image.min()), float(image.max())
  if hi > 1.0 + _PIXEL_SLACK:
    raise DatasetError(f'{where}: images are floats up to {round(hi, 3)}; '
                       'expected values in [0, 1] or uint8')
  if lo < -_PIXEL_SLACK:
    raise DatasetError(f'{where}: images have values down to '
                       f'{round(lo, 3)}; expected values in [0, 1] or uint8')


def validate_split(split: Split, where: str) -> Split:
  """Checks images against their cameras; raises ``DatasetError`` with one
  clear line. Same-size images become one f32 array."""
  cams = split.cameras
  n = len(cams)
  if n == 0:
    raise DatasetError(f'{where}: no views')
  images = split.images
  if isinstance(images, np.ndarray):
    if images.ndim != 4 or images.shape[-1] != 3:
      raise DatasetError(f'{where}: images must have shape (n, height, '
                         f'width, 3), got {images.shape}')
  if len(images) != n:
    raise DatasetError(f'{where}: {len(images)} images but {n} cameras')
  _check_poses(np.asarray(cams.poses), where)
  problem = checks.intrinsics_problem(cams.fx, cams.fy, cams.cx, cams.cy,
                                      cams.width, cams.height)
  if problem:
    raise DatasetError(f'{where}: {problem}')
  _check_dtype(images, where)
  for i, image in enumerate(images):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
      raise DatasetError(f'{where}: image {i} must have shape (height, '
                         f'width, 3), got {image.shape}')
    size = (int(cams.height[i]), int(cams.width[i]))
    if image.shape[:2] != size:
      raise DatasetError(
          f'{where}: view {i}: camera is {size[1]}x{size[0]} but the image '
          f'is {image.shape[1]}x{image.shape[0]}')
    _check_pixels(image, where)
  if len({np.asarray(image).shape for image in images}) == 1:
    split.images = np.asarray(np.stack(images) if isinstance(images, list)
                              else images, np.float32)
  else:
    split.images = [np.asarray(image, np.float32) for image in images]
  split.indices = np.asarray(split.indices, np.int64)
  if split.masks is not None:
    split.masks = _checked_masks(split.masks, split.images, where)
  return split


def _checked_masks(masks, images, where: str):
  """The masks of a split as bool, shaped as its images (stacked when
  ``images`` is one array); DatasetError with one line if they do not
  fit."""
  if len(masks) != len(images):
    raise DatasetError(f'{where}: {len(masks)} masks but {len(images)} '
                       'images')
  checked = []
  for i, (mask, image) in enumerate(zip(masks, images)):
    mask = np.asarray(mask)
    if mask.dtype != bool and mask.dtype.kind not in 'iu':
      raise DatasetError(f'{where}: masks must be bool or integers (nonzero '
                         f'= used), got {mask.dtype}')
    if mask.shape != np.shape(image)[:2]:
      raise DatasetError(f'{where}: view {i}: the mask is {mask.shape} but '
                         f'the image is {np.shape(image)[:2]}')
    checked.append(mask != 0)
  return np.stack(checked) if isinstance(images, np.ndarray) else checked


@dataclasses.dataclass
class Scene:
  """A loaded dataset: its splits and the scene-wide rendering settings.

  Attributes:
    name: str, a short name for logs.
    splits: dict from split name ('train', 'val', 'test') to ``Split``.
    near, far: float, the sampled interval along t ([0, 1] with NDC).
    white_background: bool, whether images were composited onto white.
    aabb: ((x, y, z), (x, y, z)), min and max corner of the box holding the
      scene's content (the fast model's grids span it).
    trajectory: str, the default video path: 'orbit' (around the origin, z
      up), 'spiral' (forward-facing, around the average camera) or 'smooth'
      (through the training cameras).
    focus_depth: float, the depth a spiral path looks at (0 = none).
    extent: str, how far the content reaches (``scene.EXTENTS``): 'bounded'
      (all inside ``aabb``), 'forward' (forward-facing, NDC) or 'unbounded'
      (``aabb`` holds the object, the background reaches to the horizon).
  """
  name: str
  splits: dict
  near: float
  far: float
  white_background: bool = False
  aabb: tuple = scene_lib.DEFAULT_AABB
  trajectory: str = 'orbit'
  focus_depth: float = 0.0
  extent: str = 'bounded'

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise DatasetError(
          f'dataset {self.name!r} has no {name!r} split '
          f'(it has: {", ".join(sorted(self.splits))})')
    return self.splits[name]

  def legacy_fingerprint(self) -> str:
    """The fingerprint runs saved before 'v2:' fingerprints (to compare)."""
    train = self.split('train')
    poses = [self.splits[k].poses for k in sorted(self.splits)]
    return scene_lib.fingerprint(train.images, poses, train.cameras,
                                 legacy=True)

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
        fingerprint=scene_lib.fingerprint(train.images, poses, train.cameras),
        path=path, ndc=bool(train.cameras.ndc), trajectory=self.trajectory,
        focus_depth=float(self.focus_depth),
        camera_poses=scene_lib.as_pose_list(train.poses),
        extent=scene_lib.as_extent(
            'forward' if train.cameras.ndc else self.extent))
