"""An interactive web viewer of a trained (or training) NeRF, on viser.

The browser's camera is rendered by the model and shown as the page's
background image, progressively: a quarter-resolution frame while the camera
moves, the full-resolution frame once it has rested for ``SETTLE_S``; a newer
camera supersedes the frame being rendered (checked between chunks of rays).
One background thread renders for every client (browser tab).

Cameras: viser reports a camera as the rotation ``wxyz`` and ``position`` of
an OpenCV camera (x right, y down, looking down +z) in the world; nerf_jax
poses are OpenGL camera-to-world matrices (x right, y up, looking down -z).
The two differ by a half-turn about the camera's x axis:
``R_gl = R_cv @ diag(1, -1, -1)`` (``opencv_to_opengl``).

Camera paths: keyframes placed in the viewer are interpolated
(``interpolate_keyframes``) and saved in the JSON format that
``render_lib.load_camera_path`` reads and ``render.py --path`` renders.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import threading
import time
from typing import Callable, Optional

import jax
import numpy as np
from scipy import interpolate as sp_interpolate
from scipy.spatial import transform as sp_transform

from nerf_jax.cameras import camera
from nerf_jax.io import outputs, viz
from nerf_jax.inference import render_lib
from nerf_jax.runs import rundir

# Seconds the camera must rest before the full-resolution frame is rendered.
SETTLE_S = 0.2
# Full resolution divided by this while the camera moves.
PREVIEW_DIVISOR = 4
# The range of full frames' longer side, in pixels.
MIN_RESOLUTION, MAX_RESOLUTION = 8, 2048
MODES = ('colour', 'depth', 'accumulation')
DEPTH_RANGES = ('percentiles', 'near-far')
# A browser camera's vertical field of view (radians) and aspect are
# clamped to these.
MIN_FOV, MAX_FOV = math.radians(1.0), math.radians(170.0)
MIN_ASPECT, MAX_ASPECT = 1e-2, 1e2
# Camera paths made in the viewer: keyframes, frames, and the length of the
# file name they are saved under (in the run directory).
MAX_KEYFRAMES = 100
MIN_PATH_FRAMES, MAX_PATH_FRAMES = 2, 10000
MAX_PATH_NAME = 100
# The tool that camera paths are recorded as written by (nerf_jax.io.outputs):
# view.py's and train.py --viewer's viewer.
PATH_TOOL = 'view.py'
# Half-turn about the camera's x axis: OpenCV <-> OpenGL camera axes.
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


# ---------------------------------------------------------------------------
# Cameras.


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


# ---------------------------------------------------------------------------
# Values from clients. A client (any program that holds the page's token) can
# send any value for a GUI input or a camera, whatever the slider's limits:
# every value is checked here before it is used.


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
  zero quaternion, or a centre farther than ``camera.MAX_CAMERA_DISTANCE``
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
  far = camera.MAX_CAMERA_DISTANCE
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


# ---------------------------------------------------------------------------
# Camera paths.


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
  ``height`` pixels (both sides at most ``render_lib.MAX_RENDER_SIDE``)."""
  side = render_lib.MAX_RENDER_SIDE
  aspect = clamp_aspect(keyframe.aspect)
  height = clamp_int(height, 1, side, min(side, 256))
  width = max(1, round(height * aspect))
  if width > side:
    width, height = side, max(1, round(side / aspect))
  return fov_intrinsics(clamp_fov(keyframe.fov_y), width, height)


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


def camera_path_document(poses: np.ndarray,
                         intrinsics: camera.Intrinsics) -> dict:
  """The JSON object ``render_lib.load_camera_path`` reads: {"poses":
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


def training_images(config) -> list:
  """The training split's images of a run (its config's data), in the
  order of the scene's training cameras: f32 [h, w, 3] each."""
  from nerf_jax import datasets  # pylint: disable=g-import-not-at-top
  images = datasets.load_scene(config.data, splits=('train',)).split(
      'train').images
  return list(images)


# ---------------------------------------------------------------------------
# Rendering frames.


def colorize(out: dict, mode: str, background: float,
             depth_range: Optional[tuple] = None) -> np.ndarray:
  """A rendered frame as the image to show.

  Args:
    out: dict with rgb f32[h, w, 3]; depth, acc f32[h, w].
    mode: one of ``MODES``.
    background: float, grey level of empty space.
    depth_range: (near, far) mapped onto the depth colours, or None for the
      frame's own 1st-99th percentiles of opaque depth.

  Returns:
    u8[h, w, 3].
  """
  if mode == 'colour':
    image = out['rgb']
  elif mode == 'depth':
    if depth_range is None:
      image = render_lib.depth_to_rgb(out['depth'][None], out['acc'][None],
                                      background)[0]
    else:
      image = viz.colorize_depth(out['depth'], out['acc'], *depth_range,
                                 background)
  elif mode == 'accumulation':
    image = np.repeat(out['acc'][..., None], 3, axis=-1)
  else:
    raise ValueError(f'unknown mode {mode!r}; choose one of {MODES}')
  return viz.to_uint8(image)


class Cancelled(Exception):
  """A frame was superseded before it was finished."""


class FrameRenderer:
  """Renders pinhole views in chunks of a fixed set of sizes.

  Each chunk's rays are cast (``camera.cast_rays``, the one ray caster)
  and rendered by jitted functions of fixed shapes: ``chunk`` rays for
  full frames and ``chunk // PREVIEW_DIVISOR`` for preview frames, so
  nothing compiles again whatever the window's size. (``render_lib.
  render_rays_chunked`` shrinks its chunk to a small image, a compilation
  per size, and cannot stop half-way for a newer camera.)
  """

  def __init__(self, model, info, chunk: int):
    self.info = info
    self.render_fn = render_lib.make_render_fn(model)
    self.chunks = (max(1, chunk // PREVIEW_DIVISOR), max(1, chunk))
    self._cast = jax.jit(camera.cast_rays)

  def compile(self, variables) -> None:
    """Renders one chunk of each size, so the first frames are fast."""
    pose = np.eye(4, dtype=np.float32)
    pose[2, 3] = self.info.far
    for chunk in self.chunks:
      intrinsics = camera.Intrinsics.from_focal(8.0, chunk, 1)
      self.render(variables, pose, intrinsics, chunk)

  def render(self, variables, c2w: np.ndarray,
             intrinsics: camera.Intrinsics, chunk: int,
             cancelled: Optional[Callable[[], bool]] = None) -> dict:
    """Renders one view.

    Args:
      variables: the model's {'params': ..., 'state': ...}.
      c2w: f32[4, 4], camera-to-world pose (OpenGL axes).
      intrinsics: the camera; its width and height set the frame's size.
      chunk: int, one of ``self.chunks``: rays per jitted call.
      cancelled: called between chunks; True raises ``Cancelled``.

    Returns:
      dict of rgb f32[h, w, 3]; depth, acc f32[h, w].
    """
    info = self.info
    cameras = camera.Cameras.create(np.asarray(c2w, np.float32)[None],
                                    intrinsics, ndc=info.ndc)
    width, n = intrinsics.width, intrinsics.width * intrinsics.height
    pieces = {'rgb': [], 'depth': [], 'acc': []}
    for start in range(0, n, chunk):
      if cancelled is not None and cancelled():
        raise Cancelled()
      index = np.minimum(np.arange(start, start + chunk), n - 1)
      index = index.astype(np.int32)
      rays = self._cast(cameras, np.zeros_like(index), index // width,
                        index % width, np.float32(info.near),
                        np.float32(info.far))
      out = self.render_fn(variables, rays)
      valid = min(chunk, n - start)
      for key in pieces:
        pieces[key].append(np.asarray(out[key])[:valid])
    shape = (intrinsics.height, width)
    return {k: np.concatenate(v).reshape(shape + v[0].shape[1:])
            for k, v in pieces.items()}


# ---------------------------------------------------------------------------
# The progressive schedule.


@dataclasses.dataclass
class ViewRequest:
  """A client's latest camera and what was rendered of it.

  Attributes:
    c2w: f32[4, 4], the camera (OpenGL axes).
    fov_y: float, vertical field of view in radians.
    aspect: float, width / height of the canvas.
    version: int, bumped at every camera (or setting) change.
    changed_at: float, ``time.monotonic()`` of the last camera change.
    done: (version, 'preview' | 'full') of the last frame sent.
  """
  c2w: np.ndarray
  fov_y: float
  aspect: float
  version: int = 0
  changed_at: float = 0.0
  done: tuple = (-1, '')


def next_level(request: ViewRequest, now: float,
               settle_s: float = SETTLE_S) -> tuple:
  """What to render for a request: ('preview' | 'full' | '', seconds to
  wait before asking again (inf: nothing until the next change)).

  A new camera is rendered at preview resolution while it moved less than
  ``settle_s`` ago, at full resolution once it has rested; a preview is
  followed by the full frame when the camera rests.
  """
  resting = now - request.changed_at >= settle_s
  version, level = request.done
  if version != request.version:
    return ('full' if resting else 'preview'), 0.0
  if level == 'preview':
    if resting:
      return 'full', 0.0
    return '', request.changed_at + settle_s - now
  return '', math.inf


# ---------------------------------------------------------------------------
# The viewer.


@dataclasses.dataclass
class Settings:
  """What the GUI controls (shared by every client)."""
  resolution: int = 256
  mode: str = 'colour'
  depth_range: str = 'percentiles'


class Viewer:
  """Serves a model on viser: renders each client's camera in a thread.

  Args:
    model: the ``models.Model`` to render.
    info: the run's ``SceneInfo``.
    variables: {'params': ..., 'state': ...} (``set_variables`` swaps them).
    step: int, the training step of ``variables``.
    host, port: where to listen (port 0: any free port; a port in use: the
      next free one, as viser does).
    chunk: int, rays per jitted call of full frames.
    resolution: int, pixels along the longer side of full frames.
    workdir: the run directory: camera paths are saved in it, by file name
      only ('': the viewer cannot save).
    max_busy: float in (0, 1], the largest fraction of wall time the
      render thread may spend rendering (lower while training shares the
      CPU).
    title: str, the GUI panel's label.
  """

  def __init__(self, model, info, variables, step: int, *,
               host: str = '127.0.0.1', port: int = 8080, chunk: int = 4096,
               resolution: int = 256, workdir: str = '',
               max_busy: float = 1.0, title: str = 'nerf_jax'):
    self.info, self.workdir = info, workdir
    self.renderer = FrameRenderer(model, info, chunk)
    self.settings = Settings(resolution=int(resolution))
    self.max_busy = float(max_busy)
    self.frames_sent, self.last_frame = 0, None
    self.keyframes: list = []
    self.saved_paths: list = []
    self.gui = None
    self._variables, self.step = variables, int(step)
    self._requests: dict = {}
    self._clients: dict = {}
    self._cond = threading.Condition()
    self._stopped = False
    self._not_before = 0.0
    self._train_poses = np.asarray(info.camera_poses,
                                   np.float32).reshape(-1, 4, 4)
    self.server = None
    self.guard = None  # access.Guard, once started
    self.url = ''  # the page's URL, with its token
    self._host, self._port, self._title = host, int(port), title
    self._thread = threading.Thread(target=self._loop, name='viewer-render',
                                    daemon=True)

  # -- life cycle ------------------------------------------------------------

  def compile(self) -> None:
    """Compiles the renderer (both chunk sizes)."""
    self.renderer.compile(self._variables)

  def start(self) -> str:
    """Starts the server and the render thread; returns the page's URL."""
    import viser  # pylint: disable=g-import-not-at-top
    from nerf_jax.viewer import access  # pylint: disable=g-import-not-at-top
    # Only the page opened with the printed URL's token may connect
    # (viewer_access: the token, the Origin check, and how they hook in).
    guard = access.Guard(self._host, access.new_token())
    with contextlib.redirect_stdout(io.StringIO()):  # viser's banner
      with access.guarding(guard):
        server = viser.ViserServer(host=self._host, port=self._port,
                                   label=self._title, verbose=False)
      access.require_hooked(guard, server.stop)
    self.server, self.guard = server, guard
    self.url = access.page_url(self._host, server.get_port(),
                                      guard.token)
    self._setup_scene()
    from nerf_jax.viewer import gui  # pylint: disable=g-import-not-at-top
    self.gui = gui.ViewerGui(self)
    self.server.on_client_connect(self._on_connect)
    self.server.on_client_disconnect(self._on_disconnect)
    self._thread.start()
    return self.url

  def close(self) -> None:
    """Stops the render thread and the server."""
    with self._cond:
      self._stopped = True
      self._cond.notify_all()
    if self._thread.is_alive():
      self._thread.join(timeout=30)
    if self.server is not None:
      with contextlib.redirect_stdout(io.StringIO()):
        self.server.stop()

  # -- the model -------------------------------------------------------------

  @property
  def variables(self):
    return self._variables

  def set_variables(self, variables, step: int) -> None:
    """Shows newer variables (a newer checkpoint, the live training)."""
    with self._cond:
      self._variables, self.step = variables, int(step)
    self.refresh()

  def refresh(self) -> None:
    """Renders every client's view again at full resolution (a setting or
    the model changed)."""
    with self._cond:
      for request in self._requests.values():
        request.version += 1
        request.changed_at = -math.inf
      self._cond.notify_all()

  def watched(self) -> bool:
    """Whether a client (browser tab) is connected."""
    return bool(self._requests)

  # -- clients ---------------------------------------------------------------

  def _setup_scene(self) -> None:
    server, poses = self.server, self._train_poses
    up = scene_up(poses)
    server.scene.set_up_direction(tuple(up))
    pose, fov = self.home_camera()
    server.initial_camera.position = tuple(pose[:3, 3])
    server.initial_camera.look_at = tuple(self._look_at(pose))
    server.initial_camera.up = tuple(up)
    server.initial_camera.fov = fov

  def home_camera(self) -> tuple:
    """(c2w f32[4, 4], vertical fov) of the first training camera, or a
    camera on the orbit of render.py's videos."""
    fov = vertical_fov(self.info.intrinsics)
    if len(self._train_poses):
      return self._train_poses[0], fov
    return render_lib.orbit_poses(1, 30.0, self.info.camera_radius)[0], fov

  def _look_at(self, pose: np.ndarray) -> np.ndarray:
    """The point a pose looks at: the point on its axis nearest the scene
    centre (the box centre)."""
    centre = np.mean(np.asarray(self.info.aabb, np.float64), axis=0)
    forward = -pose[:3, 2]
    distance = max(float(np.dot(centre - pose[:3, 3], forward)), 1e-2)
    return pose[:3, 3] + distance * forward

  def _on_connect(self, client) -> None:
    with self._cond:
      self._clients[client.client_id] = client
    client.camera.on_update(self._on_camera)
    self._on_camera(client.camera, moving=False)

  def _on_disconnect(self, client) -> None:
    with self._cond:
      self._clients.pop(client.client_id, None)
      self._requests.pop(client.client_id, None)

  def _on_camera(self, cam, moving: bool = True) -> None:
    """Records a client's new camera for the render thread (a camera that
    is not one, ``client_camera``, is ignored: the last one stays)."""
    checked = client_camera(cam)
    if checked is None:
      return
    c2w, fov_y, aspect = checked
    client_id = cam.client.client_id
    with self._cond:
      request = self._requests.get(client_id)
      if request is None:
        request = self._requests[client_id] = ViewRequest(
            c2w=c2w, fov_y=fov_y, aspect=aspect)
      request.c2w, request.fov_y, request.aspect = c2w, fov_y, aspect
      request.version += 1
      request.changed_at = time.monotonic() if moving else -math.inf
      self._cond.notify_all()

  def move_camera(self, client, c2w: np.ndarray,
                  fov_y: Optional[float] = None) -> None:
    """Moves a client's camera to a pose (OpenGL axes)."""
    wxyz, position = opengl_to_opencv(c2w)
    with client.atomic():
      if fov_y is not None:
        client.camera.fov = float(fov_y)
      client.camera.position = position
      client.camera.wxyz = wxyz

  # -- rendering -------------------------------------------------------------

  def intrinsics_for(self, request: ViewRequest,
                     level: str) -> camera.Intrinsics:
    """The camera a request is rendered with at 'preview' or 'full'."""
    resolution = clamp_int(self.settings.resolution, MIN_RESOLUTION,
                           MAX_RESOLUTION, Settings.resolution)
    if level == 'preview':
      resolution = max(8, resolution // PREVIEW_DIVISOR)
    if self.info.ndc:
      return training_intrinsics_view(self.info.intrinsics, resolution)
    return view_intrinsics(request.fov_y, request.aspect, resolution)

  def render_request(self, request: ViewRequest, level: str,
                     cancelled: Optional[Callable[[], bool]] = None) -> tuple:
    """(u8[h, w, 3] image, raw outputs) of a request at a level."""
    intrinsics = self.intrinsics_for(request, level)
    chunk = self.renderer.chunks[0 if level == 'preview' else 1]
    out = self.renderer.render(self._variables, request.c2w, intrinsics,
                               chunk, cancelled)
    settings, info = self.settings, self.info
    depth_range = ((info.near, info.far) if settings.depth_range == 'near-far'
                   and not info.ndc else None)
    image = colorize(out, settings.mode, info.background, depth_range)
    return image, out

  def _next_job(self) -> tuple:
    """(client id, request copy, level) to render now, or (None, None,
    seconds to wait)."""
    now = time.monotonic()
    wait = math.inf
    if now < self._not_before:
      return None, None, self._not_before - now
    for client_id, request in self._requests.items():
      level, delay = next_level(request, now)
      if level:
        return client_id, dataclasses.replace(request), level
      wait = min(wait, delay)
    return None, None, wait

  def _loop(self) -> None:
    while True:
      with self._cond:
        while not self._stopped:
          client_id, request, level = self._next_job()
          if client_id is not None:
            break
          wait = level  # no job: seconds until one may be due
          self._cond.wait(timeout=None if math.isinf(wait) else wait)
        if self._stopped:
          return
        client = self._clients.get(client_id)
      if client is None:
        continue
      self._render_and_send(client_id, client, request, level)

  def _render_and_send(self, client_id, client, request: ViewRequest,
                       level: str) -> None:
    def superseded():
      current = self._requests.get(client_id)
      return self._stopped or current is None or (
          current.version != request.version)

    start = time.perf_counter()
    try:
      image, _ = self.render_request(request, level,
                                     superseded if level == 'full' else None)
    except Cancelled:
      return
    except Exception as e:  # pylint: disable=broad-except
      # The viewer keeps serving: one line, then this view is marked done.
      print(f'viewer: rendering failed: {type(e).__name__}: {e}'.splitlines()
            [0], file=sys.stderr, flush=True)
      image = None
    seconds = time.perf_counter() - start
    if image is not None:
      try:
        client.scene.set_background_image(image, format='jpeg',
                                          jpeg_quality=90)
      except Exception:  # pylint: disable=broad-except
        return  # the client went away
    with self._cond:
      current = self._requests.get(client_id)
      if current is not None and current.version == request.version:
        current.done = (request.version, level)
      if image is not None:
        self.frames_sent += 1
        self.last_frame = dict(level=level, shape=image.shape[:2],
                               seconds=seconds, c2w=request.c2w,
                               step=self.step)
      # Rate limit: rendering takes at most max_busy of the wall time.
      self._not_before = time.monotonic() + seconds * (
          1.0 / self.max_busy - 1.0)
    if self.gui is not None:
      self.gui.frame_rendered(level, image, seconds)

  # -- newer checkpoints -----------------------------------------------------

  def follow_checkpoints(self, load: Callable[[int], object],
                         interval_s: float = 2.0) -> None:
    """Polls the run's checkpoints in a thread; a newer one (a training
    in another process) is loaded (``load(step)`` -> variables) while the
    GUI's 'Load newer checkpoints' is ticked, else offered."""
    def run():
      while not self._stopped:
        time.sleep(interval_s)
        steps = rundir.complete_steps(self.workdir)
        if not steps or steps[-1] <= self.step or self.gui is None:
          continue
        if not self.gui.follow_checkpoints(steps[-1]):
          continue
        try:
          self.set_variables(load(steps[-1]), steps[-1])
        except Exception as e:  # pylint: disable=broad-except
          print(f'viewer: checkpoint {steps[-1]} not loaded: '
                f'{type(e).__name__}: {e}'.splitlines()[0], file=sys.stderr,
                flush=True)
          time.sleep(interval_s)

    threading.Thread(target=run, name='viewer-checkpoints',
                     daemon=True).start()


# ---------------------------------------------------------------------------
# Serving the model being trained.


class LiveTraining:
  """The hook ``train_lib.train_and_evaluate(live=...)`` calls: serves the
  model being trained.

  The training loop asks ``wants(step)`` after every step (a comparison),
  and when it answers True hands over a copy of the variables
  (``publish``); rendering happens in the viewer's thread, at most
  ``max_busy`` of the wall time, so training keeps most of the CPU.
  """

  def __init__(self, host: str = '127.0.0.1', port: int = 8080,
               resolution: int = 256, chunk: int = 4096,
               refresh_s: float = 2.0, max_busy: float = 0.25):
    self.host, self.port = host, port
    self.resolution, self.chunk = resolution, chunk
    self.refresh_s, self.max_busy = refresh_s, max_busy
    self.viewer: Optional[Viewer] = None
    self._published = -math.inf

  def start(self, model, info, variables, step: int, workdir: str,
            images=None) -> None:
    """Compiles the renderer and starts serving (before the first step);
    ``images``: the training images, in the order of ``info``'s cameras."""
    self.viewer = Viewer(model, info, variables, step, host=self.host,
                         port=self.port, chunk=self.chunk,
                         resolution=self.resolution, workdir=workdir,
                         max_busy=self.max_busy, title='nerf_jax (training)')
    print('viewer: compiling the renderer', flush=True)
    self.viewer.compile()
    url = self.viewer.start()
    if images is not None:
      self.viewer.gui.load_training_images(lambda: images)
    print(f'viewer: open {url} (it shows the model as it trains)',
          flush=True)
    self._published = time.monotonic()

  def wants(self, step: int) -> bool:
    """Whether to publish the variables after ``step``: at most every
    ``refresh_s`` seconds, and only while someone is watching."""
    del step
    viewer = self.viewer
    return (viewer is not None and viewer.watched()
            and time.monotonic() - self._published >= self.refresh_s)

  def publish(self, variables, step: int) -> None:
    """Shows ``variables`` (a copy the training step does not donate)."""
    self._published = time.monotonic()
    self.viewer.set_variables(variables, step)

  def close(self) -> None:
    if self.viewer is not None:
      self.viewer.close()

