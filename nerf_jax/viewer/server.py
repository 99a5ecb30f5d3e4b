"""An interactive web viewer of a trained (or training) NeRF, on viser.

The browser's camera is rendered by the model and shown as the page's
background image, progressively (``frames``): a quarter-resolution frame
while the camera moves, the full-resolution frame once it has rested; a
newer camera supersedes the frame being rendered. One background thread
renders for every client (browser tab). ``Viewer`` serves the page, builds
its GUI panel (``gui.ViewerGui``) and only lets in the page opened with the
printed URL's token (``access``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import sys
import threading
import time
from typing import Callable, Optional

import numpy as np

from nerf_jax import datasets
from nerf_jax.cameras import camera, paths
from nerf_jax.runs import checkpoints
from nerf_jax.viewer import access
from nerf_jax.viewer import cameras
from nerf_jax.viewer import frames
from nerf_jax.viewer import gui


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
    self.renderer = frames.FrameRenderer(model, info, chunk)
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
    # Only the page opened with the printed URL's token may connect
    # (access: the token, the Origin check, and how they hook in).
    guard = access.Guard(self._host, access.new_token())
    with contextlib.redirect_stdout(io.StringIO()):  # viser's banner
      with access.guarding(guard):
        server = viser.ViserServer(host=self._host, port=self._port,
                                   label=self._title, verbose=False)
      access.require_hooked(guard, server.stop)
    self.server, self.guard = server, guard
    self.url = access.page_url(self._host, server.get_port(), guard.token)
    self._setup_scene()
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
    up = cameras.scene_up(poses)
    server.scene.set_up_direction(tuple(up))
    pose, fov = self.home_camera()
    server.initial_camera.position = tuple(pose[:3, 3])
    server.initial_camera.look_at = tuple(self._look_at(pose))
    server.initial_camera.up = tuple(up)
    server.initial_camera.fov = fov

  def home_camera(self) -> tuple:
    """(c2w f32[4, 4], vertical fov) of the first training camera, or a
    camera on the orbit of render.py's videos."""
    fov = cameras.vertical_fov(self.info.intrinsics)
    if len(self._train_poses):
      return self._train_poses[0], fov
    return paths.orbit_poses(1, 30.0, self.info.camera_radius)[0], fov

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
    checked = cameras.client_camera(cam)
    if checked is None:
      return
    c2w, fov_y, aspect = checked
    client_id = cam.client.client_id
    with self._cond:
      request = self._requests.get(client_id)
      if request is None:
        request = self._requests[client_id] = frames.ViewRequest(
            c2w=c2w, fov_y=fov_y, aspect=aspect)
      request.c2w, request.fov_y, request.aspect = c2w, fov_y, aspect
      request.version += 1
      request.changed_at = time.monotonic() if moving else -math.inf
      self._cond.notify_all()

  def move_camera(self, client, c2w: np.ndarray,
                  fov_y: Optional[float] = None) -> None:
    """Moves a client's camera to a pose (OpenGL axes)."""
    wxyz, position = cameras.opengl_to_opencv(c2w)
    with client.atomic():
      if fov_y is not None:
        client.camera.fov = float(fov_y)
      client.camera.position = position
      client.camera.wxyz = wxyz

  # -- rendering -------------------------------------------------------------

  def intrinsics_for(self, request: frames.ViewRequest,
                     level: str) -> camera.Intrinsics:
    """The camera a request is rendered with at 'preview' or 'full'."""
    resolution = cameras.clamp_int(
        self.settings.resolution, cameras.MIN_RESOLUTION,
        cameras.MAX_RESOLUTION, Settings.resolution)
    if level == 'preview':
      resolution = max(8, resolution // frames.PREVIEW_DIVISOR)
    if self.info.ndc:
      return cameras.training_intrinsics_view(self.info.intrinsics,
                                              resolution)
    return cameras.view_intrinsics(request.fov_y, request.aspect,
                                   resolution)

  def render_request(self, request: frames.ViewRequest, level: str,
                     cancelled: Optional[Callable[[], bool]] = None) -> tuple:
    """(u8[h, w, 3] image, raw outputs) of a request at a level."""
    intrinsics = self.intrinsics_for(request, level)
    chunk = self.renderer.chunks[0 if level == 'preview' else 1]
    out = self.renderer.render(self._variables, request.c2w, intrinsics,
                               chunk, cancelled)
    settings, info = self.settings, self.info
    depth_range = ((info.near, info.far) if settings.depth_range == 'near-far'
                   and not info.ndc else None)
    image = frames.colorize(out, settings.mode, info.background,
                            depth_range, info.extent == 'unbounded')
    return image, out

  def _next_job(self) -> tuple:
    """(client id, request copy, level) to render now, or (None, None,
    seconds to wait)."""
    now = time.monotonic()
    wait = math.inf
    if now < self._not_before:
      return None, None, self._not_before - now
    for client_id, request in self._requests.items():
      level, delay = frames.next_level(request, now)
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

  def _render_and_send(self, client_id, client,
                       request: frames.ViewRequest, level: str) -> None:
    def superseded():
      current = self._requests.get(client_id)
      return self._stopped or current is None or (
          current.version != request.version)

    start = time.perf_counter()
    try:
      image, _ = self.render_request(request, level,
                                     superseded if level == 'full' else None)
    except frames.Cancelled:
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
        steps = checkpoints.complete_steps(self.workdir)
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


def training_images(config) -> list:
  """The training split's images of a run (its config's data), in the
  order of the scene's training cameras: f32 [h, w, 3] each."""
  images = datasets.load_scene(config.data, splits=('train',)).split(
      'train').images
  return list(images)
