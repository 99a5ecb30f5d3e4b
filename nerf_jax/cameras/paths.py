"""Camera paths of videos: generated, read from a file, and written.

The paths render.py and export.py follow: an orbit around the origin
(``orbit_poses``), the NeRF paper's spiral for forward-facing captures
(``spiral_poses``) and a smooth path through the training cameras
(``smooth_path``), chosen by ``camera_path``; or a user's file, read by
``load_camera_path`` (.npy or JSON). The viewer saves its keyframed paths in
that JSON format (``save_camera_path``), so one module reads and writes it.

Poses are camera-to-world f32[n, 4, 4] in OpenGL axes (x right, y up, looking
down -z).
"""

from __future__ import annotations

import json
import os

import numpy as np

from nerf_jax.cameras import camera, checks
from nerf_jax.cameras import poses as poses_lib
from nerf_jax.io import inputs, outputs


# ---------------------------------------------------------------------------
# Generated paths.


def orbit_poses(num_frames: int, elevation_deg: float, radius: float,
                start_deg: float = 0.0) -> np.ndarray:
  """A seamless 360-degree orbit around the origin (world z up).

  Azimuths are evenly spaced with no repeated first/last frame, so the video
  loops without a stutter.

  Args:
    num_frames: int, number of poses.
    elevation_deg: float, camera elevation above the xy-plane in degrees.
    radius: float, distance of every camera from the origin.
    start_deg: float, azimuth of the first frame.

  Returns:
    f32[num_frames, 4, 4], camera-to-world poses looking at the origin.
  """
  thetas = start_deg + np.arange(num_frames) * 360.0 / num_frames
  return np.stack([camera.pose_spherical(t, -elevation_deg, radius)
                   for t in thetas])


def spiral_poses(poses: np.ndarray, focus_depth: float, num_frames: int,
                 rotations: float = 2.0, zrate: float = 0.5,
                 percentile: float = 90.0) -> np.ndarray:
  """The NeRF paper's spiral for forward-facing captures.

  The camera circles (``rotations`` times, moving in and out along its axis
  ``zrate`` times as fast) around the average training camera, with radii
  that cover the training cameras' spread (the ``percentile`` of their
  offsets, in the average camera's frame), always looking at the point
  ``focus_depth`` in front of the average camera.

  Args:
    poses: f32[n, 4, 4], the training cameras (recentred: the average one
      near the origin looking down -z).
    focus_depth: float > 0, the depth looked at.
    num_frames: int, poses to return.

  Returns:
    f32[num_frames, 4, 4].
  """
  poses = np.asarray(poses, np.float64)
  average = poses_lib.average_pose(poses)
  offsets = (np.linalg.inv(average) @ poses)[:, :3, 3]
  radii = np.percentile(np.abs(offsets), percentile, axis=0)
  up = average[:3, 1]
  target = average[:3, :] @ np.array([0.0, 0.0, -focus_depth, 1.0])
  out = []
  for theta in np.linspace(0.0, 2 * np.pi * rotations, num_frames,
                           endpoint=False):
    local = np.array([np.cos(theta), -np.sin(theta), -np.sin(theta * zrate),
                      1.0])
    local[:3] *= radii
    centre = average[:3, :] @ local
    out.append(poses_lib.view_matrix(centre - target, up, centre))
  return np.stack(out).astype(np.float32)


def smooth_path(poses: np.ndarray, num_frames: int) -> np.ndarray:
  """A smooth camera path through the training cameras, in their order.

  Positions, viewing axes and up vectors follow a uniform cubic B-spline
  whose control points are the cameras (the curve starts at the first
  camera and ends at the last, and smooths the jitter between); the axes are
  re-orthonormalised into camera-to-world matrices.

  Args:
    poses: f32[n, 4, 4], the cameras, in capture order (n >= 1).
    num_frames: int, poses to return.

  Returns:
    f32[num_frames, 4, 4].
  """
  poses = np.asarray(poses, np.float64)
  keys = np.concatenate([poses[:, :3, 3], poses[:, :3, 2], poses[:, :3, 1]],
                        axis=-1)  # [n, 9]: centre, back axis, up axis
  # Triple the end points so the clamped curve passes through them.
  keys = np.concatenate([keys[:1], keys[:1], keys, keys[-1:], keys[-1:]])
  segments = len(keys) - 3
  s = np.linspace(0.0, segments, num_frames, endpoint=True)
  s = np.minimum(s, segments - 1e-9)
  i = np.floor(s).astype(int)
  u = (s - i)[:, None]
  basis = [(1 - u) ** 3 / 6, (3 * u ** 3 - 6 * u ** 2 + 4) / 6,
           (-3 * u ** 3 + 3 * u ** 2 + 3 * u + 1) / 6, u ** 3 / 6]
  curve = sum(b * keys[i + k] for k, b in enumerate(basis))
  return np.stack([poses_lib.view_matrix(c[3:6], c[6:9], c[:3])
                   for c in curve]).astype(np.float32)


TRAJECTORIES = ('auto', 'orbit', 'spiral', 'smooth')

# The widest gap between the cameras' azimuths that still counts as
# surrounding the scene (degrees).
ORBIT_MAX_GAP_DEG = 90.0


def default_trajectory(poses: np.ndarray) -> str:
  """The video path of a capture around an object: 'orbit' when its
  cameras surround the origin (z up; their azimuths leave no gap wider than
  ``ORBIT_MAX_GAP_DEG``), else 'smooth' through them, since an orbit would
  spend its frames where no photo looked from (the beer, a walk over 155
  degrees: half of its orbit was fog).

  Args:
    poses: f[n, 4, 4] (or [n, 3, 4]) camera-to-world, the scene centred on
      the point the cameras look at, z up.
  """
  centres = np.asarray(poses, np.float64)[:, :3, 3]
  azimuth = np.sort(np.degrees(np.arctan2(centres[:, 1], centres[:, 0])))
  gaps = np.diff(np.concatenate([azimuth, azimuth[:1] + 360.0]))
  return 'orbit' if gaps.max() <= ORBIT_MAX_GAP_DEG else 'smooth'


def camera_path(info, trajectory: str, num_frames: int,
                elevation_deg: float | None = None,
                radius: float | None = None) -> tuple:
  """The poses of a video of a trained scene.

  Args:
    info: the run's ``SceneInfo``.
    trajectory: 'orbit' (a 360-degree orbit around the origin, z up: the
      object-centric scenes' centre), 'spiral' (the NeRF paper's path for
      forward-facing captures, around the average training camera),
      'smooth' (through the training cameras in their order) or 'auto' (the
      scene's own choice, ``info.trajectory``).
    num_frames: int >= 1.
    elevation_deg, radius: the orbit's (default: fit the training cameras;
      30 degrees and 4 for the classic tiny lego).

  Returns:
    (name of the trajectory, f32[num_frames, 4, 4]). ValueError for a path
    the run's scene.json cannot support.
  """
  if num_frames < 1:
    raise ValueError('--frames must be at least 1')
  kind = info.trajectory if trajectory == 'auto' else trajectory
  if kind not in TRAJECTORIES[1:]:
    raise ValueError(f'unknown trajectory {kind!r}; choose one of '
                     f'{", ".join(TRAJECTORIES)}')
  if kind == 'orbit':
    classic = info.name == 'tiny_npz'
    if elevation_deg is None:
      elevation_deg = 30.0 if classic else info.camera_elevation_deg
    if radius is None:
      radius = 4.0 if classic else info.camera_radius
    return kind, orbit_poses(num_frames, elevation_deg, radius)
  train = np.asarray(info.camera_poses, np.float32).reshape(-1, 4, 4)
  if not len(train):
    raise ValueError(f'--trajectory {kind} follows the training cameras, '
                     'which this run\'s scene.json predates; use orbit')
  if kind == 'smooth':
    return kind, smooth_path(train, num_frames)
  focus = info.focus_depth or float(np.median(
      np.linalg.norm(train[:, :3, 3], axis=-1)))
  return kind, spiral_poses(train, focus, num_frames)


# ---------------------------------------------------------------------------
# The cameras of a video.


def plan_cameras(info, path, trajectory: str, num_frames: int,
                 elevation_deg: float | None = None,
                 radius: float | None = None, scale: float = 1.0) -> tuple:
  """The cameras of a video (render.py) or of depth maps (export.py).

  Args:
    info: the run's ``SceneInfo``.
    path: ``load_camera_path``'s (poses, intrinsics or None), or None for
      ``camera_path(info, trajectory, num_frames, elevation_deg, radius)``.
    scale: resolution relative to the path's (else the training) camera.

  Returns:
    (trajectory name or None for a path, poses f32[n, 4, 4], intrinsics).
    ValueError (one line) for frames too large.
  """
  intrinsics = info.intrinsics
  if path is not None:
    kind, (poses, path_intrinsics) = None, path
    intrinsics = path_intrinsics or intrinsics
  else:
    kind, poses = camera_path(info, trajectory, num_frames, elevation_deg,
                              radius)
  return kind, poses, scaled_intrinsics(intrinsics, scale)


def scaled_intrinsics(intrinsics: camera.Intrinsics,
                      scale: float) -> camera.Intrinsics:
  """``intrinsics`` at ``scale`` (--scale); ValueError (one line) for
  frames too large to render."""
  if scale != 1.0:
    intrinsics = intrinsics.scaled(scale)
  problem = render_size_problem(intrinsics)
  if problem:
    raise ValueError(f'{problem}; lower --scale' if scale != 1.0 else problem)
  return intrinsics


# The largest frame side render.py makes: a frame's rays are cast at once
# (44 bytes each), so 8192 x 8192 already takes about 3 GB of memory.
MAX_RENDER_SIDE = 8192


def render_size_problem(intrinsics: camera.Intrinsics) -> str:
  """'' or why frames of this camera are too large to render."""
  if max(intrinsics.width, intrinsics.height) > MAX_RENDER_SIDE:
    return (f'frames of {intrinsics.width}x{intrinsics.height} pixels are too '
            f'large (at most {MAX_RENDER_SIDE} a side)')
  return ''


# ---------------------------------------------------------------------------
# Camera-path files: JSON (or .npy) read, JSON written.

_PATH_KEYS = ('poses', 'intrinsics')
_INTRINSICS_KEYS = ('fx', 'fy', 'cx', 'cy', 'width', 'height')
# The tool that camera paths are recorded as written by (nerf_jax.io.outputs):
# view.py's and train.py --viewer's viewer.
PATH_TOOL = 'view.py'


def load_camera_path(path: str) -> tuple:
  """Reads a user camera path: .npy f[n, 3|4, 4] or JSON.

  JSON is either a list of camera-to-world matrices (4x4 or 3x4, OpenGL axes:
  x right, y up, looking down -z), or an object with the key "poses" (that
  list) and optionally "intrinsics", an object with exactly the keys fx, fy,
  cx, cy (numbers, pixels) and width, height (whole numbers of pixels)::

    {"poses": [[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]], ...],
     "intrinsics": {"fx": 120, "fy": 120, "cx": 80, "cy": 60,
                    "width": 160, "height": 120}}

  Ranges: at least one pose; every pose rigid, within 1e6 units of the
  origin (``checks.pose_problem``); width and height in [1,
  ``MAX_RENDER_SIDE``]; fx and fy from 0.01 to 1000 times the larger side
  and cx, cy at most one image size off the image
  (``checks.intrinsics_problem``). The file must be a regular file (not a
  pipe or a device) of at most 64 MB (.npy) or 256 MB (JSON): ``inputs``.

  Returns:
    (poses f32[n, 4, 4], ``camera.Intrinsics`` or None). ValueError with one
    line naming the file and the key for anything else.
  """
  where = f'camera path {path}'
  if os.path.isdir(path):
    raise ValueError(f'{where} is a folder, not a .npy or .json file')
  # A pipe or a device (/dev/zero) is refused before it is opened.
  inputs.check_input_file(
      path, 'a .npy or .json file', inputs.MAX_POSES_NPY_BYTES if
      path.endswith('.npy') else inputs.MAX_JSON_BYTES, ValueError, where)
  intrinsics = None
  if path.endswith('.npy'):
    try:
      poses = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
      message = f'{e}'.strip().replace('\n', ' ') or type(e).__name__
      raise ValueError(f'cannot read {where}: {message}') from e
  else:
    doc = inputs.read_json(path, ValueError, where)
  if not path.endswith('.npy'):
    if isinstance(doc, dict):
      _check_keys(doc, _PATH_KEYS, ('poses',), where)
      if doc.get('intrinsics') is not None:
        intrinsics = _path_intrinsics(doc['intrinsics'], where)
      doc = doc['poses']
      where += ': "poses"'
    if not _all_numbers(doc):
      raise ValueError(f'{where}: expected a list of 4x4 or 3x4 matrices of '
                       'numbers')
    try:
      poses = np.asarray(doc, np.float64)
    except ValueError as e:  # rows of different lengths
      raise ValueError(f'{where}: expected a list of 4x4 or 3x4 matrices '
                       '(rows differ in length)') from e
  elif not isinstance(poses, np.ndarray):  # an .npz archive
    raise ValueError(f'{where}: expected one array, got an .npz archive')
  elif poses.dtype.kind not in 'fiu':
    raise ValueError(f'{where}: expected real numbers, got {poses.dtype}')
  if poses.ndim >= 1 and not len(poses):
    raise ValueError(f'{where}: no poses (the path is empty)')
  if poses.ndim != 3 or poses.shape[1:] not in ((4, 4), (3, 4)):
    raise ValueError(f'{where}: expected (n, 4, 4) or (n, 3, 4) matrices, '
                     f'got shape {poses.shape}')
  problem = checks.pose_problem(poses)
  if problem:
    raise ValueError(f'{where}: {problem}')
  return camera.to_4x4(poses).astype(np.float32), intrinsics


def _is_number(x) -> bool:
  """A json number (not a bool, not an integer too large for a float)."""
  if isinstance(x, bool):
    return False
  return isinstance(x, float) or (isinstance(x, int) and abs(x) < 1e300)


def _all_numbers(x) -> bool:
  """Whether a json value is a (nested) list of numbers only."""
  if isinstance(x, list):
    return all(_all_numbers(item) for item in x)
  return _is_number(x)


def _check_keys(doc: dict, known: tuple, required: tuple, where: str) -> None:
  unknown = sorted(str(k) for k in doc if k not in known)
  if unknown:
    raise ValueError(f'{where}: unknown key(s) {unknown} (known: '
                     f'{", ".join(known)})')
  missing = [k for k in required if k not in doc]
  if missing:
    raise ValueError(f'{where}: missing key(s) {missing}')


def _path_intrinsics(doc, where: str) -> camera.Intrinsics:
  """A camera path's "intrinsics" object as ``camera.Intrinsics``."""
  where += ': "intrinsics"'
  if not isinstance(doc, dict):
    raise ValueError(f'{where} must be an object with the keys '
                     f'{", ".join(_INTRINSICS_KEYS)}')
  _check_keys(doc, _INTRINSICS_KEYS, _INTRINSICS_KEYS, where)
  for key in _INTRINSICS_KEYS:
    if not _is_number(doc[key]):
      raise ValueError(f'{where}: {key} must be a number, got {doc[key]!r}')
  for key in ('width', 'height'):
    value = doc[key]
    if not float(value).is_integer() or not 1 <= value <= MAX_RENDER_SIDE:
      raise ValueError(f'{where}: {key}={value} must be a whole number of '
                       f'pixels in [1, {MAX_RENDER_SIDE}]')
  problem = checks.intrinsics_problem(*(doc[k] for k in _INTRINSICS_KEYS))
  if problem:
    raise ValueError(f'{where}: {problem}')
  return camera.Intrinsics(
      fx=float(doc['fx']), fy=float(doc['fy']), cx=float(doc['cx']),
      cy=float(doc['cy']), width=int(doc['width']), height=int(doc['height']))


def camera_path_document(poses: np.ndarray,
                         intrinsics: camera.Intrinsics) -> dict:
  """The JSON object ``load_camera_path`` reads: {"poses":
  [n][4][4], "intrinsics": {fx, fy, cx, cy, width, height}}."""
  return {'poses': np.asarray(poses, np.float64).round(7).tolist(),
          'intrinsics': intrinsics.to_dict()}


def save_camera_path(path: str, poses: np.ndarray,
                     intrinsics: camera.Intrinsics) -> None:
  """Writes ``camera_path_document`` to ``path`` through ``outputs.write``
  (as ``PATH_TOOL``): complete or not at all, replacing only a camera path
  the viewer saved there before and never a run's own files
  (``outputs.OutputError``, one line, otherwise)."""

  def write(tmp):
    with open(tmp, 'w') as f:
      json.dump(camera_path_document(poses, intrinsics), f)

  outputs.write(path, PATH_TOOL, write, kind=outputs.FILE, what='camera path')
