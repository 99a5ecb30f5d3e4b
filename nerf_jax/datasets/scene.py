"""What a trained model needs to know of its scene, and nothing more.

``SceneInfo`` is the single source of truth for the sampled interval
(near / far), the background colour and the scene box (an axis-aligned box
that holds everything worth modelling). Training builds it from the loaded
dataset, saves it as ``scene.json`` beside the checkpoints, and everything
that renders afterwards (evaluation, videos, ``render.py``) reads it from
there, never from a second copy in the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Sequence

import numpy as np

from nerf_jax.cameras.camera import Cameras, Intrinsics
from nerf_jax.io import images as images_lib


@dataclasses.dataclass(frozen=True)
class SceneInfo:
  """The scene-wide facts a model is trained and rendered with.

  Attributes:
    name: str, the dataset's short name ('procedural', 'tiny_npz', 'lego').
    near, far: float, the sampled interval along the ray parameter t.
    white_background: bool, images are composited onto white (else black).
    aabb: ((x, y, z), (x, y, z)), min and max corner of the scene box.
    intrinsics: the training camera (render.py's default resolution).
    camera_radius: float, median distance of the training cameras from the
      origin (orbit videos).
    camera_elevation_deg: float, their median elevation above the xy-plane.
    fingerprint: str, a hash of the training data (cameras and every pixel,
      'v2:...'; older runs hashed a subsample of the pixels); '' when unknown
      (runs saved before it existed).
    path: str, the dataset file or folder ('' for the built-in scene).
    ndc: bool, rays are cast in normalised device coordinates (forward-facing
      captures); near and far are then 0 and 1.
    trajectory: str, the default video path of render.py: 'orbit', 'spiral'
      or 'smooth' (see ``cameras.paths.camera_path``).
    focus_depth: float, the depth a spiral path looks at (0 = none).
    camera_poses: the training cameras' camera-to-world matrices, as nested
      lists [n][4][4] (spiral and smooth paths follow them).
    extent: str, one of ``EXTENTS``: 'bounded' (everything inside ``aabb``),
      'forward' (a forward-facing capture in NDC) or 'unbounded' (``aabb``
      holds the object; the background reaches to the horizon and is
      modelled in contracted space).
  """
  name: str
  near: float
  far: float
  white_background: bool
  aabb: tuple
  intrinsics: Intrinsics
  camera_radius: float = 4.0
  camera_elevation_deg: float = 30.0
  fingerprint: str = ''
  path: str = ''
  ndc: bool = False
  trajectory: str = 'orbit'
  focus_depth: float = 0.0
  camera_poses: tuple = ()
  extent: str = 'bounded'

  @property
  def background(self) -> float:
    """The grey level behind the volume: 1.0 for white, 0.0 for black."""
    return 1.0 if self.white_background else 0.0

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['intrinsics'] = self.intrinsics.to_dict()
    d['aabb'] = [list(map(float, corner)) for corner in self.aabb]
    d['camera_poses'] = [[list(row) for row in pose]
                         for pose in self.camera_poses]
    return d

  @classmethod
  def from_dict(cls, d: dict) -> 'SceneInfo':
    """Reads ``to_dict`` output; older scene.json files lack some fields."""
    d = dict(d)
    d['intrinsics'] = Intrinsics(**d['intrinsics'])
    d['aabb'] = as_aabb(d.get('aabb', DEFAULT_AABB))
    d['camera_poses'] = as_pose_list(d.get('camera_poses', ()))
    # Runs saved before extents existed: NDC captures were forward-facing,
    # everything else was modelled inside its box.
    d['extent'] = as_extent(d.get('extent', 'forward' if d.get('ndc') else
                                  'bounded'))
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


# How far a scene's content reaches (SceneInfo.extent).
EXTENTS = ('bounded', 'forward', 'unbounded')


def as_extent(value) -> str:
  """``value`` if it is one of ``EXTENTS``, else ValueError (one line)."""
  if value not in EXTENTS:
    raise ValueError(f'scene extent must be one of {", ".join(EXTENTS)}, '
                     f'got {value!r}')
  return str(value)


# The box of the NeRF synthetic scenes (objects within about 1.5 of the
# origin), also used when a dataset states nothing better.
DEFAULT_AABB = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))


def as_aabb(value) -> tuple:
  box = np.asarray(value, np.float64)
  if box.shape != (2, 3) or not np.all(np.isfinite(box)) or not np.all(
      box[0] < box[1]):
    raise ValueError(f'scene box must be [[min x, y, z], [max x, y, z]] with '
                     f'min < max, got {np.asarray(value).tolist()}')
  return tuple(tuple(float(v) for v in corner) for corner in box)


def as_pose_list(poses) -> tuple:
  """Camera-to-world matrices f[n, 4, 4] as nested tuples of floats (hashable,
  JSON-ready); () for none."""
  poses = np.asarray(poses, np.float64).reshape(-1, 4, 4)
  return tuple(tuple(tuple(round(float(v), 7) for v in row) for row in pose)
               for pose in poses)


def camera_orbit_stats(poses: np.ndarray) -> tuple:
  """(median radius, median elevation in degrees) of camera centres.

  Args:
    poses: f32[n, 4, 4], camera-to-world matrices.
  """
  centres = np.asarray(poses)[:, :3, 3].astype(np.float64)
  radii = np.linalg.norm(centres, axis=-1)
  elevations = np.degrees(np.arcsin(np.clip(
      centres[:, 2] / np.maximum(radii, 1e-9), -1.0, 1.0)))
  return float(np.median(radii)), float(np.median(elevations))


def fingerprint(images, poses: Sequence[np.ndarray], cameras,
                legacy: bool = False) -> str:
  """A short hash identifying a training set (to refuse resuming on another).

  Hashes every pose, the cameras and every pixel (as 8-bit values) of the
  training images, prefixed 'v2:'. ``legacy=True`` gives the hash older
  runs saved, of every 4th pixel of every 4th row and without the prefix,
  to compare such a run's data. A split of same-size views through one
  pinhole camera hashes as it did before per-view cameras existed.

  Args:
    images: f32[n, h, w, 3] or uint8, or a list of [h_i, w_i, 3], the
      training images.
    poses: f32 arrays of camera-to-world matrices (e.g. of every split).
    cameras: the training ``Cameras``, or one ``Intrinsics`` for all views.
  """
  sha = hashlib.sha1()
  if isinstance(cameras, Cameras):
    shared = cameras.intrinsics(0)
    simple = (not cameras.ndc and not np.any(cameras.distortion)
              and isinstance(images, np.ndarray) and all(
                  cameras.intrinsics(i) == shared for i in range(len(cameras))))
    if simple:
      cameras = shared
    else:
      for field in ('fx', 'fy', 'cx', 'cy', 'width', 'height', 'distortion'):
        sha.update(np.ascontiguousarray(getattr(cameras, field),
                                        np.float64).tobytes())
      sha.update(f'ndc={cameras.ndc}'.encode())
  if isinstance(cameras, Intrinsics):
    sha.update(repr(sorted(cameras.to_dict().items())).encode())
  arrays = images if isinstance(images, list) else [np.asarray(images)]
  for array in arrays:
    sha.update(repr(np.asarray(array).shape).encode())
  for p in poses:
    sha.update(np.ascontiguousarray(p, np.float32).tobytes())
  stride = 4 if legacy else 1
  for array in arrays:
    sub = np.asarray(array)[..., ::stride, ::stride, :]
    if sub.dtype != np.uint8:  # float images: hash them as 8-bit values
      sub = images_lib.to_uint8(sub)
    sha.update(np.ascontiguousarray(sub).tobytes())
  return sha.hexdigest()[:16] if legacy else 'v2:' + sha.hexdigest()[:16]
