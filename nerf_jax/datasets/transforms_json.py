"""Real captures in the ``transforms.json`` form of instant-ngp and nerfstudio.

The json holds the camera globally or per frame: ``fl_x fl_y cx cy w h`` in
pixels (``camera_angle_x`` / ``camera_angle_y`` as a fallback for the focal
lengths), OpenCV distortion ``k1 k2 p1 p2``, and ``frames``, each with a
``file_path`` (relative to the json) and a 4x4 camera-to-world
``transform_matrix`` in OpenGL axes (x right, y up, looking down -z), the
convention of both tools and of nerf_jax. instant-ngp's ``aabb_scale`` sets
its scene box: its unit cube spans [-1.5, 1.5] around the origin (instant-ngp
maps positions by x * 0.33 + 0.5), so the box is 1.5 * aabb_scale wide on
each side.

Normalisation: the world is turned so that the cameras' mean up direction is
+z (orbit videos circle the capture). Files from instant-ngp's tools are
already centred on what the cameras look at and scaled to its units, so
they keep their origin and scale; files without ``aabb_scale`` (nerfstudio)
are centred on the point nearest all optical axes and scaled so that the
cameras' mean distance from it is 4, instant-ngp's convention.

Extent (``extent.py``): a json with ``aabb_scale`` 1 (or less) says all is
in that box: bounded. One with ``aabb_scale`` > 1 has, in instant-ngp's
words, "a background visible outside the unit cube": unbounded, with the
``aabb_scale`` box (where instant-ngp's grids reach) as the box the grids
hold at full resolution, and whatever lies beyond it contracted. (The unit
cube as that box put the fox's wall, a unit behind it, into contracted
space: 15.6 dB held out after 2 minutes, against 23.6 with the
``aabb_scale`` box; BENCHMARKS.md.) A json without one (nerfstudio's) is
cameras around an object: unbounded, with the cube about the point they
look at that holds the cameras (``extent.object_box``). far is
``extent.background_far``, or the far side of the ``aabb_scale`` box where
that is farther. ``extent='bounded'`` gives the boxes of before: the
``aabb_scale`` box, or one holding the cameras, with nothing beyond.

The default video is an orbit when the cameras surround the centre, else a
smooth path through them (in file-name order, usually the capture's).

Frames whose image file is missing are skipped with one warning line (the
published fox capture lists 67 frames and ships 50 images).

Masks (``masks.py``): a frame's nerfstudio ``mask_path`` (0 = ignored) and
instant-ngp's ``dynamic_mask_<stem>.png`` beside its image (nonzero =
ignored) give the split's ``masks``; frames without one use every pixel.

Everything is checked before a pixel is decoded: the json's cameras, the
images' headers against them (``images.image_sizes``), the masks' headers
against their images (``masks.check_mask_sizes``) and the lens
distortion, which must be one a real lens can have over the image
(``distortion.distortion_problem``: invertible, converging undistortion).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from nerf_jax.cameras import camera
from nerf_jax.io import inputs
from nerf_jax.cameras import poses as poses_lib
from nerf_jax.cameras import checks, distortion as distortion_lib, paths
from nerf_jax.datasets import extent as extent_lib
from nerf_jax.datasets import masks as masks_lib
from nerf_jax.datasets.base import DatasetError, Scene, Split, validate_split
from nerf_jax.datasets.images import image_sizes, read_images

# instant-ngp's unit cube is [0, 1] after x * 0.33 + 0.5: [-1.5, 1.5] here.
_NGP_UNIT_HALF_WIDTH = 1.5
# colmap2nerf (and so instant-ngp data) puts the cameras about this far from
# the centre; files without aabb_scale are scaled to match.
_CAMERA_DISTANCE = 4.0
_DISTORTION_KEYS = ('k1', 'k2', 'p1', 'p2')
_UNSUPPORTED_MODELS = ('OPENCV_FISHEYE', 'FISHEYE', 'EQUIRECTANGULAR')
# instant-ngp allows powers of 2 up to 128; larger boxes are still readable.
_MAX_AABB_SCALE = 1e4


def _json_path(path: str) -> str:
  if os.path.isdir(path):
    path = os.path.join(path, 'transforms.json')
  if not os.path.exists(path):
    raise DatasetError(f'{path}: no such file (pass --config.data.path= a '
                       'folder with transforms.json, or the json itself)')
  inputs.check_input_file(path, 'a transforms.json file',
                          inputs.MAX_JSON_BYTES, DatasetError)
  return path


def _json_size(frame: dict, meta: dict):
  """The (w, h) a frame's camera declares, or None where it does not say
  (or says something ``_camera`` refuses later)."""
  size = [frame.get(key, meta.get(key)) for key in ('w', 'h')]
  if all(isinstance(v, (int, float)) and not isinstance(v, bool)
         and np.isfinite(v) and v >= 1 for v in size):
    return tuple(float(v) for v in size)
  return None


def _check_distortion(cams: list, labels: list) -> None:
  """Refuses implausible lens distortion (``distortion.distortion_problem``),
  once per distinct camera."""
  seen = set()
  for (k, distortion), label in zip(cams, labels):
    key = (k.fx, k.fy, k.cx, k.cy, k.width, k.height,
           tuple(distortion.tolist()))
    if key in seen or not distortion.any():
      continue
    seen.add(key)
    problem = distortion_lib.distortion_problem(
        distortion, k.fx, k.fy, k.cx, k.cy, k.width, k.height,
        names=_DISTORTION_KEYS)
    if problem:
      raise DatasetError(f'{label}: {problem}')


def _number(value, key: str, where: str) -> float:
  """A json value as a finite float; DatasetError naming the key if not."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise DatasetError(f'{where}: {key} must be a number, got {value!r}')
  if not np.isfinite(value):
    raise DatasetError(f'{where}: {key} must be finite, got {value}')
  return float(value)


def _camera(frame: dict, meta: dict, image_size: tuple, where: str) -> tuple:
  """(Intrinsics at the image's actual size, distortion f32[4])."""
  raw = lambda key: frame.get(key, meta.get(key))

  def get(key, default=None):
    value = raw(key)
    return default if value is None else _number(value, key, where)

  model = str(raw('camera_model') or 'OPENCV').upper()
  if model in _UNSUPPORTED_MODELS:
    raise DatasetError(f'{where}: camera_model {model} is not supported '
                       '(pinhole cameras with k1 k2 p1 p2 distortion are)')
  for key in ('k3', 'k4'):
    if get(key, 0.0) != 0.0:
      raise DatasetError(f'{where}: {key} distortion is not supported '
                         '(k1 k2 p1 p2 are)')
  height, width = image_size
  w, h = get('w', float(width)), get('h', float(height))
  for key, size in (('w', w), ('h', h)):
    if size < 1:
      raise DatasetError(f'{where}: {key}={size:g} must be a positive number '
                         'of pixels')
  fx, fy = get('fl_x'), get('fl_y')
  for key in ('camera_angle_x', 'camera_angle_y'):
    angle = get(key)
    if angle is not None and not 0 < angle < np.pi:
      raise DatasetError(f'{where}: {key}={angle:g} must be in (0, pi) '
                         'radians')
  if fx is None:
    if get('camera_angle_x') is None:
      raise DatasetError(f'{where}: no focal length (fl_x or camera_angle_x)')
    fx = 0.5 * w / np.tan(0.5 * get('camera_angle_x'))
  if fy is None:
    angle_y = get('camera_angle_y')
    fy = fx if angle_y is None else 0.5 * h / np.tan(0.5 * angle_y)
  cx, cy = get('cx', w / 2.0), get('cy', h / 2.0)
  problem = checks.intrinsics_problem(fx, fy, cx, cy, w, h,
                                      names=('fl_x', 'fl_y', 'cx', 'cy', 'w', 'h'))
  if problem:
    raise DatasetError(f'{where}: {problem}')
  # The images read may be smaller than the camera the json describes
  # (data.downsample, or a downscaled copy): scale to what is used.
  sx, sy = width / w, height / h
  if abs(sx / sy - 1.0) > 0.02:
    raise DatasetError(f'{where}: image is {width}x{height} but the json '
                       f'says w={w:g}, h={h:g} (another aspect ratio)')
  intrinsics = camera.Intrinsics(fx=fx * sx, fy=fy * sy, cx=cx * sx,
                                 cy=cy * sy, width=width, height=height)
  distortion = np.array([get(k, 0.0) for k in _DISTORTION_KEYS], np.float32)
  return intrinsics, distortion


def _read_meta(json_path: str) -> dict:
  meta = inputs.read_json(json_path, DatasetError)
  if not isinstance(meta, dict) or not isinstance(meta.get('frames'), list):
    raise DatasetError(f'{json_path}: no "frames" list')
  if not meta['frames']:
    raise DatasetError(f'{json_path}: no frames')
  return meta


def load_transforms(path: str, *, downsample: int = 1, holdout: int = 8,
                    near: float = 0.0, far: float = 0.0,
                    aabb_scale: float = 0.0,
                    white_background: bool = False,
                    extent: str = 'auto') -> Scene:
  """Loads a transforms.json capture.

  Args:
    path: str, the json file or the folder holding transforms.json.
    downsample: int >= 1, area downsampling of the images (intrinsics follow).
    holdout: int, every holdout-th frame (in file-name order) is held out as
      'val' and 'test'; 0 trains on all.
    near, far: float, the sampled interval along t; 0 derives it from the
      box and the cameras.
    aabb_scale: float, overrides the json's aabb_scale (0 = the json's).
    white_background: bool, images with alpha are composited onto white.
    extent: str, 'auto' (from aabb_scale, see the module), 'bounded' or
      'unbounded' (``extent.CHOICES``; 'forward' is refused: no NDC here).

  Returns:
    ``Scene`` (views may differ in size and camera).
  """
  if int(downsample) != downsample or downsample < 1:
    raise DatasetError(f'{path}: downsample must be a positive integer, got '
                       f'{downsample}')
  if int(holdout) != holdout or holdout < 0:
    raise DatasetError(f'{path}: holdout must be 0 or a positive integer, '
                       f'got {holdout}')
  extent_lib.check_requested(extent, False, path)
  json_path = _json_path(path)
  root = os.path.dirname(os.path.abspath(json_path))
  meta = _read_meta(json_path)
  frames = _existing_frames(meta, json_path, root)
  files = [file for file, _ in frames]
  poses = _frame_poses(frames, json_path, root)
  box_scale = _aabb_scale(aabb_scale, meta, json_path)
  cams, images, masks = _read_frames(frames, meta, int(downsample),
                                     white_background, json_path, root)

  poses, aabb, scene_near, scene_far, extent = _normalised(
      poses, meta, box_scale, near, far, extent)
  cameras = camera.Cameras.create(
      poses, [k for k, _ in cams], distortion=np.stack([d for _, d in cams]))
  n = len(files)
  held = np.arange(n)[::holdout] if holdout > 0 else np.zeros(0, int)
  if len(held) == n:
    raise DatasetError(f'{json_path}: holdout={holdout} leaves no training '
                       'views')
  train = np.setdiff1d(np.arange(n), held)

  def split(idx):
    return validate_split(Split(
        images=[images[i] for i in idx], cameras=cameras.take(idx),
        indices=idx, names=[files[i] for i in idx],
        masks=None if masks is None else [masks[i] for i in idx]), json_path)

  splits = {'train': split(train)}
  if len(held):
    splits['val'] = splits['test'] = split(held)
  name = os.path.basename(root)
  return Scene(name=name, splits=splits, near=scene_near, far=scene_far,
               white_background=bool(white_background), aabb=aabb,
               trajectory=paths.default_trajectory(poses), extent=extent)


def _read_frames(frames: list, meta: dict, f: int, white_background: bool,
                 json_path: str, root: str) -> tuple:
  """(cameras [(Intrinsics, distortion)], images [f32[h, w, 3]], masks
  (``masks.read_masks``: a bool[h, w] per frame, or None)) of the frames,
  downsampled by ``f``. The cameras from the json, the images' and masks'
  headers: everything is checked before a pixel is decoded."""
  files = [file for file, _ in frames]
  sizes = image_sizes(files, expected=[_json_size(frame, meta)
                                       for _, frame in frames])
  for file, (height, width) in zip(files, sizes):
    if min(height // f, width // f) < 1:
      raise DatasetError(f'{file}: downsampling {width}x{height} by {f} '
                         'leaves no pixels')
  labels = [f'{json_path} ({file})' for file in files]
  cams = [_camera(frame, meta, (height // f, width // f), label)
          for (_, frame), (height, width), label in zip(frames, sizes, labels)]
  _check_distortion(cams, labels)
  mask_files = [masks_lib.frame_mask_files(frame, file, root, json_path)
                for file, frame in frames]
  masks_lib.check_mask_sizes(mask_files, sizes, f)
  images = read_images(files, f, sizes=sizes,
                       background=1.0 if white_background else 0.0)
  return cams, images, masks_lib.read_masks(mask_files, sizes, f)


def _existing_frames(meta: dict, json_path: str, root: str) -> list:
  """[(image file, frame dict)] of the frames whose image exists, sorted by
  file name; a warning names missing ones, DatasetError if none exist."""
  frames, missing = [], []
  for i, frame in enumerate(meta['frames']):
    if not isinstance(frame, dict) or 'file_path' not in frame or (
        'transform_matrix' not in frame):
      raise DatasetError(f'{json_path}: frame {i} lacks file_path or '
                         'transform_matrix')
    file = os.path.normpath(os.path.join(root, str(frame['file_path'])))
    if not os.path.splitext(file)[1] and os.path.isfile(file + '.png'):
      file += '.png'
    # What exists but is no image file (a folder, a pipe) is refused later.
    (frames if os.path.exists(file) else missing).append((file, frame))
  if not frames:
    raise DatasetError(f'{json_path}: none of its {len(missing)} images '
                       f'exist (first: {missing[0][0]})')
  if missing:
    print(f'warning: {json_path} lists {len(meta["frames"])} frames but '
          f'{len(missing)} of their images are missing (first: '
          f'{os.path.relpath(missing[0][0], root)}); using the '
          f'{len(frames)} that exist', file=sys.stderr, flush=True)
  frames.sort(key=lambda item: item[0])
  return frames


def _frame_poses(frames: list, json_path: str, root: str) -> np.ndarray:
  """f64[n, 4, 4], the frames' transform_matrix, checked to be rigid
  camera poses before any image is read."""
  try:
    poses = np.array([frame['transform_matrix'] for _, frame in frames],
                     np.float64)
  except (TypeError, ValueError) as e:
    raise DatasetError(f'{json_path}: malformed transform_matrix ({e})') from None
  if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
    raise DatasetError(f'{json_path}: transform_matrix must be 4x4, got '
                       f'{poses.shape[1:]}')
  problem = checks.pose_problem(poses, labels=[
      f'transform_matrix of {os.path.relpath(file, root)}'
      for file, _ in frames])
  if problem:
    raise DatasetError(f'{json_path}: {problem}')
  return camera.to_4x4(poses)


def _normalised(poses: np.ndarray, meta: dict, box_scale: float,
                near: float, far: float, extent: str) -> tuple:
  """(poses, aabb, near, far, extent) in the scene's frame: instant-ngp's
  frame when the json has an aabb_scale, else centred on the focus point
  with the cameras _CAMERA_DISTANCE away; the box and far from ``_boxed``;
  near/far given (0: derived)."""
  if meta.get('aabb_scale') is not None:
    center, scale = np.zeros(3), 1.0  # instant-ngp's frame: keep it
  else:
    try:
      center = poses_lib.focus_point(poses)
    except ValueError:
      center = poses[:, :3, 3].mean(0)
    distance = np.linalg.norm(poses[:, :3, 3] - center, axis=-1).mean()
    scale = _CAMERA_DISTANCE / max(float(distance), 1e-9)
  poses, _ = poses_lib.orient_and_center(poses, center, scale=scale)
  centres = poses[:, :3, 3].astype(np.float64)
  if box_scale > 0:
    half = _NGP_UNIT_HALF_WIDTH * box_scale
  else:
    half = float(np.abs(centres).max()) * 1.1
  if extent == 'auto':
    extent = 'bounded' if 0 < box_scale <= 1 else 'unbounded'
  aabb, derived_far = _boxed(centres, half, box_scale, extent)
  scene_near = near or 0.05 * float(np.linalg.norm(centres, axis=-1).min()
                                    or half)
  return poses, aabb, scene_near, far or derived_far, extent


def _boxed(centres: np.ndarray, half: float, box_scale: float,
           extent: str) -> tuple:
  """(aabb, far) for cameras at f64[n, 3] ``centres`` around the origin.

  Bounded: the cube of half size ``half`` (from aabb_scale, or holding the
  cameras), far reaching its far side. Unbounded: the same cube when the
  json has an aabb_scale, else the cube about the focus point that holds
  the cameras (``extent.object_box``), and far ``extent.background_far``, or the far
  side of the box where that is farther.
  """
  # t runs from close to the camera to the far side of the box.
  corners = np.array(np.meshgrid(*[[-half, half]] * 3)).reshape(3, -1).T
  reach = float(np.linalg.norm(centres[:, None] - corners[None],
                               axis=-1).max())
  if extent == 'bounded':
    return ((-half,) * 3, (half,) * 3), reach
  far = max(reach, extent_lib.background_far(centres))
  if box_scale <= 0:  # nerfstudio's: the cube holding the cameras
    return extent_lib.object_box(centres), far
  return ((-half,) * 3, (half,) * 3), far


def _aabb_scale(override: float, meta: dict, json_path: str) -> float:
  """The box's scale: ``override`` if set, else the json's (0 = none)."""
  if override:
    value, key = override, 'data.aabb_scale'
  elif meta.get('aabb_scale') is not None:
    value = _number(meta['aabb_scale'], 'aabb_scale', json_path)
    key = 'aabb_scale'
  else:
    return 0.0
  if not 0 < value <= _MAX_AABB_SCALE:
    raise DatasetError(f'{json_path}: {key}={value:g} must be in (0, '
                       f'{_MAX_AABB_SCALE:g}]')
  return float(value)
