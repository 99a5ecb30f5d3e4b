"""LLFF captures: ``poses_bounds.npy`` plus ``images/`` or ``images_N/``.

``poses_bounds.npy`` holds f[n, 17]: per image a 3x5 matrix (flattened row by
row) whose columns 0..2 are the camera's axes in LLFF's [down, right, back]
order, column 3 its centre and column 4 (height, width, focal) of the
full-resolution photo, then the near and far depth bounds of the scene seen
by that camera. Images are in file-name order.

Following the NeRF paper: the scene is scaled so that the nearest bound is
1 / 0.75 (``_BOUND_MARGIN``), the average camera is moved to the origin
looking down -z, every 8th view is held out, and forward-facing captures use
NDC rays (the space from the plane z = -1 to infinity maps to t in [0, 1]).
360-degree captures (``ndc=False``) are instead centred on the point the
cameras look at, with +z up, and are unbounded (``extent``): the scene box
holds the object the cameras circle and the cameras themselves
(``extent.object_box``), and t runs from the near depth bound to
beyond the far one; with ``extent='bounded'`` the box reaches the far bound
from every camera instead. Their video is an orbit when the cameras
surround the object, else a smooth path through them
(``paths.default_trajectory``).
"""

from __future__ import annotations

import os
import re

import numpy as np

from nerf_jax.cameras import camera, checks, paths
from nerf_jax.io import inputs
from nerf_jax.cameras import poses as poses_lib
from nerf_jax.datasets import extent as extent_lib
from nerf_jax.datasets.base import DatasetError, Scene, Split, validate_split
from nerf_jax.datasets.images import IMAGE_EXTENSIONS, read_images

# The nearest bound is scaled to 1 / _BOUND_MARGIN (NeRF's bd_factor), so the
# NDC near plane z = -1 lies in front of everything the cameras see.
_BOUND_MARGIN = 0.75
# far of an unbounded 360-degree capture over its far depth bound: the
# bounds are percentiles of the depths of COLMAP's points (LLFF's
# imgs2poses), and what has no points (sky, plain walls) lies beyond; the
# background is sampled in disparity, so the margin costs few samples.
_FAR_MARGIN = 2.0


def llff_to_opengl(poses_llff: np.ndarray) -> np.ndarray:
  """LLFF's [down, right, back, centre] columns to ours [right, up, back,
  centre]; f[n, 3, >=4] -> f32[n, 4, 4]."""
  p = np.asarray(poses_llff, np.float64)
  c2w = np.concatenate([p[:, :, 1:2], -p[:, :, 0:1], p[:, :, 2:4]], axis=2)
  return camera.to_4x4(c2w).astype(np.float32)


def spiral_focus_depth(near: float, far: float) -> float:
  """The depth the NeRF paper's spiral video looks at: a weighted harmonic
  mean of the scene's closest (x0.9) and farthest (x5) depth bounds."""
  close, infinity, weight = 0.9 * near, 5.0 * far, 0.75
  return float(1.0 / ((1.0 - weight) / close + weight / infinity))


def _read_poses_bounds(path: str) -> np.ndarray:
  file = os.path.join(path, 'poses_bounds.npy')
  if not os.path.exists(file):
    raise DatasetError(f'{path}: no poses_bounds.npy, not an LLFF scene')
  inputs.check_input_file(file, 'an (n, 17) .npy array',
                          inputs.MAX_POSES_NPY_BYTES, DatasetError)
  try:
    data = np.load(file, allow_pickle=False)
  except (OSError, ValueError, EOFError) as e:
    message = f'{e}'.replace('\n', ' ') or type(e).__name__
    raise DatasetError(f'{file}: cannot read ({message})') from None
  if data.dtype.kind not in 'fiu':
    raise DatasetError(f'{file}: expected real numbers, got {data.dtype}')
  if data.ndim != 2 or data.shape[1] != 17 or not len(data):
    raise DatasetError(f'{file}: expected an (n, 17) array, got shape '
                       f'{data.shape}')
  if not np.all(np.isfinite(data)):
    bad = np.unique(np.nonzero(~np.isfinite(data))[0])
    raise DatasetError(f'{file}: row(s) {bad[:5].tolist()} contain NaN or '
                       'inf values')
  data = data.astype(np.float64)
  near, far = data[:, 15], data[:, 16]
  for what, bad in (('near depth bound <= 0', near <= 0),
                    ('near depth bound >= far', near >= far)):
    if bad.any():
      rows = np.nonzero(bad)[0]
      raise DatasetError(f'{file}: row(s) {rows[:5].tolist()}: {what} '
                         f'(near={near[rows[0]]:g}, far={far[rows[0]]:g})')
  llff = data[:, :15].reshape(-1, 3, 5)
  height, width, focal = llff[:, 0, 4], llff[:, 1, 4], llff[:, 2, 4]
  problem = checks.intrinsics_problem(
      focal, focal, width / 2.0, height / 2.0, width, height,
      names=('focal', 'focal', 'cx', 'cy', 'width', 'height'), what='row')
  if problem:
    raise DatasetError(f'{file}: {problem}')
  problem = checks.pose_problem(llff_to_opengl(llff), what='row')
  if problem:
    raise DatasetError(f'{file}: {problem}')
  return data


def _image_folder(path: str, downsample: int) -> tuple:
  """(folder, extra block-averaging factor): ``images_<downsample>`` if it
  exists, else the closest finer folder whose factor divides it."""
  candidates = []
  for name in os.listdir(path):
    match = re.fullmatch(r'images(?:_(\d+))?', name)
    if match and os.path.isdir(os.path.join(path, name)):
      candidates.append((int(match.group(1) or 1), name))
  usable = [(k, name) for k, name in candidates if downsample % k == 0]
  if not usable:
    have = ', '.join(name for _, name in sorted(candidates)) or 'none'
    raise DatasetError(
        f'{path}: no image folder for downsample={downsample} (need images/ '
        f'or images_k/ with k dividing {downsample}; found: {have})')
  k, name = max(usable)
  return os.path.join(path, name), downsample // k


def load_llff(path: str, *, downsample: int = 8, ndc: bool = True,
              holdout: int = 8, near: float = 0.0, far: float = 0.0,
              extent: str = 'auto') -> Scene:
  """Loads an LLFF scene folder.

  Args:
    path: str, the folder holding poses_bounds.npy and the image folders.
    downsample: int, images at 1/downsample of the photos' resolution, read
      from ``images_<downsample>/`` or block-averaged from a finer folder.
    ndc: bool, NDC rays (forward-facing captures); False for 360 degrees.
    holdout: int, every holdout-th view is held out ('val' and 'test');
      0 trains on all and holds out none.
    near, far: float, the sampled interval without NDC; 0 takes it from the
      depth bounds.
    extent: str, 'auto' (NDC: 'forward', else 'unbounded'), or 'bounded' for
      a 360-degree capture in one box (``extent.CHOICES``).

  Returns:
    ``Scene`` with intrinsics scaled to the images read.
  """
  if not path or not os.path.isdir(path):
    raise DatasetError(f'LLFF scene folder not found: {path!r} (pass '
                       '--config.data.path=DIR)')
  if int(downsample) != downsample or downsample < 1:
    raise DatasetError(f'{path}: downsample must be a positive integer, got '
                       f'{downsample}')
  if int(holdout) != holdout or holdout < 0:
    raise DatasetError(f'{path}: holdout must be 0 or a positive integer, '
                       f'got {holdout}')
  extent_lib.check_requested(extent, ndc, path)
  data = _read_poses_bounds(path)
  n = len(data)
  folder, extra = _image_folder(path, int(downsample))
  files = sorted(f for f in os.listdir(folder)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  if len(files) != n:
    raise DatasetError(f'{folder}: {len(files)} images but poses_bounds.npy '
                       f'has {n} rows')
  images = read_images([os.path.join(folder, f) for f in files], extra,
                       same_size=True)
  shapes = {im.shape for im in images}
  if len(shapes) != 1:
    raise DatasetError(f'{folder}: images differ in size: {sorted(shapes)}')
  height, width = images[0].shape[:2]

  llff = data[:, :15].reshape(n, 3, 5)
  intrinsics = _intrinsics(llff, height, width, folder)
  poses = llff_to_opengl(llff).astype(np.float64)
  bounds = data[:, 15:17].copy()
  scale = 1.0 / (bounds.min() * _BOUND_MARGIN)
  poses[:, :3, 3] *= scale
  bounds *= scale
  poses, scene_near, scene_far, aabb, extent = _framed(
      poses, bounds, ndc, near, far, extent)
  cameras = camera.Cameras.create(poses, intrinsics, ndc=ndc)

  held = np.arange(n)[::holdout] if holdout > 0 else np.zeros(0, int)
  train = np.setdiff1d(np.arange(n), held)
  if not len(train):
    raise DatasetError(f'{path}: holdout={holdout} leaves no training views')

  def split(idx):
    return validate_split(
        Split(images=np.stack([images[i] for i in idx]),
              cameras=cameras.take(idx), indices=idx), path)

  splits = {'train': split(train)}
  if len(held):
    splits['val'] = splits['test'] = split(held)
  return Scene(name=os.path.basename(os.path.normpath(path)), splits=splits,
               near=scene_near, far=scene_far, white_background=False,
               aabb=aabb, trajectory=('spiral' if ndc else
                                       paths.default_trajectory(poses)),
               focus_depth=spiral_focus_depth(float(bounds.min()),
                                              float(bounds.max())),
               extent=extent)


def _intrinsics(llff: np.ndarray, height: int, width: int,
                folder: str) -> list:
  """Each view's pinhole camera for images of ``height`` x ``width``: the
  focal length in poses_bounds.npy (f[n, 3, 5]'s last column: photo
  height, width, focal) scaled to the images read."""
  full_h, full_w, focal = llff[:, 0, 4], llff[:, 1, 4], llff[:, 2, 4]
  sx, sy = width / full_w, height / full_h
  if np.any(np.abs(sx / sy - 1.0) > 0.02):
    raise DatasetError(
        f'{folder}: images are {width}x{height}, which is not the aspect '
        f'ratio of the photos in poses_bounds.npy ({full_w[0]:g}x'
        f'{full_h[0]:g})')
  return [camera.Intrinsics(fx=float(focal[i] * sx[i]),
                            fy=float(focal[i] * sy[i]),
                            cx=width / 2.0, cy=height / 2.0,
                            width=width, height=height)
          for i in range(len(llff))]


def _framed(poses: np.ndarray, bounds: np.ndarray, ndc: bool, near: float,
            far: float, extent: str) -> tuple:
  """(poses, near, far, aabb, extent) of the scene: recentred for NDC (t in
  [0, 1], a box in NDC space), else centred on the focus point with near
  from the depth bounds (data near/far 0: derived) and, unbounded, the
  object box (``extent.object_box``) and far beyond the far bound, or,
  bounded, a box that reaches the far bound from every camera."""
  if ndc:
    poses, _ = poses_lib.recenter(poses)
    return (poses, 0.0, 1.0, ((-1.5, -1.5, -1.0), (1.5, 1.5, 1.0)),
            'forward')
  try:
    center = poses_lib.focus_point(poses)
  except ValueError:
    center = poses[:, :3, 3].mean(0)
  poses, _ = poses_lib.orient_and_center(poses, center)
  scene_near = near or float(bounds.min()) * 0.9
  if extent == 'bounded':
    scene_far = far or float(bounds.max())
    reach = float(np.linalg.norm(poses[:, :3, 3], axis=-1).max()) + scene_far
    return poses, scene_near, scene_far, ((-reach,) * 3, (reach,) * 3), extent
  scene_far = far or _FAR_MARGIN * float(bounds.max())
  return (poses, scene_near, scene_far, extent_lib.object_box(poses[:, :3, 3]),
          'unbounded')
