"""The viewer's GUI panel and 3D overlays: view settings, the training
cameras as frustums with their images, keyframes and camera paths.

``server.Viewer`` builds it and hands itself over: the GUI drives the
viewer through its public methods and attributes and never imports
``server`` (the cameras, keyframes and frames modules give it the rest).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Optional

import numpy as np

from nerf_jax.cameras import paths
from nerf_jax.io import images as images_lib
from nerf_jax.io import outputs
from nerf_jax.viewer import cameras
from nerf_jax.viewer import frames
from nerf_jax.viewer import keyframes

# Pixels along the longer side of the frustums' thumbnails.
THUMBNAIL_SIDE = 96
# Frames per second of the path preview in the browser.
PREVIEW_FPS = 10.0


def thumbnail(image: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
  """u8[h', w', 3]: ``image`` (f32 in [0, 1] or u8 [h, w, 3]) shrunk by an
  integer stride so its longer side is at most ``side``."""
  image = np.asarray(image)
  stride = max(1, -(-max(image.shape[:2]) // side))
  small = image[::stride, ::stride, :3]
  if small.dtype != np.uint8:
    small = images_lib.to_uint8(small)
  return np.ascontiguousarray(small)


class ViewerGui:
  """The GUI of a ``server.Viewer`` (shared by every client).

  A client can send any value for any input, whatever its limits in the
  page: every handler reads the inputs through ``cameras.clamp_int`` and
  ``cameras.choice`` (and the client's camera through
  ``cameras.client_camera``), and shows the value it used in the page.
  """

  def __init__(self, viewer):
    self.viewer = viewer
    self.server = viewer.server
    self._frustums: list = []
    self._keyframe_nodes: list = []
    self._lock = threading.Lock()
    self._previewing = threading.Lock()
    self._last_status = 0.0
    self._add_view_controls()
    self._add_path_controls()
    self._add_training_cameras()

  # -- view ------------------------------------------------------------------

  def _add_view_controls(self) -> None:
    gui, viewer = self.server.gui, self.viewer
    with gui.add_folder('View'):
      self.status = gui.add_markdown('compiling...')
      self.resolution = gui.add_slider(
          'Resolution', min=cameras.MIN_RESOLUTION,
          max=cameras.MAX_RESOLUTION, step=cameras.MIN_RESOLUTION,
          initial_value=int(viewer.settings.resolution),
          hint='Pixels along the longer side of the still frame (a quarter '
          'while the camera moves).')
      self.mode = gui.add_dropdown('Show', frames.MODES,
                                   initial_value=viewer.settings.mode)
      self.depth_range = gui.add_dropdown(
          'Depth range', frames.DEPTH_RANGES,
          initial_value=viewer.settings.depth_range,
          hint='percentiles: each frame\'s 1st-99th percentile of solid '
          'depth; near-far: the scene\'s sampled interval.')
      self.show_cameras = gui.add_checkbox('Training cameras', True)
      self.follow = gui.add_checkbox(
          'Load newer checkpoints', True,
          hint='A training writing to this run: show its newer checkpoints '
          'as they are saved.', visible=False)
      self.home = gui.add_button('Go to training camera 0')
    self.resolution.on_update(self._on_settings)
    self.mode.on_update(self._on_settings)
    self.depth_range.on_update(self._on_settings)
    self.show_cameras.on_update(self._on_show_cameras)
    self.home.on_click(self._on_home)

  def _on_settings(self, _) -> None:
    settings = self.viewer.settings
    settings.resolution = cameras.clamp_int(
        self.resolution.value, cameras.MIN_RESOLUTION,
        cameras.MAX_RESOLUTION, settings.resolution)
    settings.mode = cameras.choice(self.mode.value, frames.MODES,
                                   settings.mode)
    settings.depth_range = cameras.choice(
        self.depth_range.value, frames.DEPTH_RANGES, settings.depth_range)
    _show(self.resolution, settings.resolution)
    _show(self.mode, settings.mode)
    _show(self.depth_range, settings.depth_range)
    self.viewer.refresh()

  def _on_show_cameras(self, _) -> None:
    for frustum in self._frustums:
      frustum.visible = bool(self.show_cameras.value)

  def _on_home(self, event) -> None:
    if event.client is not None:
      pose, fov = self.viewer.home_camera()
      self.viewer.move_camera(event.client, pose, fov)

  def frame_rendered(self, level: str, image, seconds: float) -> None:
    """Shows the latest frame's size, time and step (at most 5 times a
    second, and always for full frames)."""
    now = time.monotonic()
    if level == 'preview' and now - self._last_status < 0.2:
      return
    self._last_status = now
    viewer = self.viewer
    size = 'failed' if image is None else (
        f'{image.shape[1]}x{image.shape[0]}')
    self.status.content = (f'frame {viewer.frames_sent} ({level}) {size} in '
                           f'{seconds * 1000:.0f} ms, step {viewer.step}')

  def follow_checkpoints(self, step: int) -> bool:
    """Shows the 'Load newer checkpoints' box and whether it is ticked
    (else says that checkpoint ``step`` can be loaded)."""
    self.follow.visible = True
    if not self.follow.value:
      self.status.content = (f'checkpoint {step} is newer than the step '
                             f'shown ({self.viewer.step}): tick '
                             '"Load newer checkpoints"')
    return bool(self.follow.value)

  # -- training cameras ------------------------------------------------------

  def _add_training_cameras(self) -> None:
    """Frustums at the training cameras now; their images when loaded."""
    viewer = self.viewer
    poses = viewer._train_poses  # pylint: disable=protected-access
    info = viewer.info
    fov = cameras.vertical_fov(info.intrinsics)
    aspect = info.intrinsics.width / info.intrinsics.height
    self.frustum_scale = 0.03 * max(float(np.median(np.linalg.norm(
        poses[:, :3, 3], axis=-1))) if len(poses) else 1.0, 1e-3)
    for i, pose in enumerate(poses):
      wxyz, position = cameras.opengl_to_opencv(pose)
      frustum = self.server.scene.add_camera_frustum(
          f'/training/{i:04d}', fov=fov, aspect=aspect,
          scale=self.frustum_scale, wxyz=wxyz, position=position,
          color=(60, 60, 60), thickness=0.05 * self.frustum_scale)
      frustum.on_click(self._go_to_training(i))
      self._frustums.append(frustum)

  def _go_to_training(self, i: int) -> Callable:
    def go(event) -> None:
      pose = self.viewer._train_poses[i]  # pylint: disable=protected-access
      fov = cameras.vertical_fov(self.viewer.info.intrinsics)
      self.viewer.move_camera(event.client, pose, fov)
    return go

  def set_training_images(self, images) -> None:
    """Puts thumbnails of the training images (in the order of the
    cameras) on the frustums; ignored when the counts differ."""
    if images is None or len(images) != len(self._frustums):
      return
    for frustum, image in zip(self._frustums, images):
      frustum.image = thumbnail(image)

  def load_training_images(self, load: Callable[[], Optional[list]]) -> None:
    """Calls ``load`` in a background thread and shows its images; a
    failure leaves the frustums without images (one line on stderr)."""
    def run():
      try:
        self.set_training_images(load())
      except Exception as e:  # pylint: disable=broad-except
        import sys  # pylint: disable=g-import-not-at-top
        print(f'viewer: training images not shown: {type(e).__name__}: '
              f'{e}'.splitlines()[0], file=sys.stderr, flush=True)

    threading.Thread(target=run, name='viewer-images', daemon=True).start()

  # -- camera paths ----------------------------------------------------------

  def _add_path_controls(self) -> None:
    gui, viewer = self.server.gui, self.viewer
    self._default_height = cameras.clamp_int(
        viewer.info.intrinsics.height, 8, paths.MAX_RENDER_SIDE, 256)
    with gui.add_folder('Camera path'):
      self.path_status = gui.add_markdown('no keyframes')
      self.add_keyframe = gui.add_button('Add keyframe')
      self.remove_keyframe = gui.add_button('Remove last keyframe')
      self.frames = gui.add_number(
          'Frames', 120, min=keyframes.MIN_PATH_FRAMES,
          max=keyframes.MAX_PATH_FRAMES, step=1)
      self.loop = gui.add_checkbox('Loop', False)
      self.path_height = gui.add_number(
          'Height (px)', self._default_height, min=8,
          max=paths.MAX_RENDER_SIDE, step=1)
      self.preview = gui.add_button('Preview path')
      self.path_file = gui.add_text(
          'Save as', 'camera_path.json',
          hint='A file name (not a path): the camera path is saved in the '
          'run folder.')
      self.save = gui.add_button('Save path')
    self.add_keyframe.on_click(self._on_add_keyframe)
    self.remove_keyframe.on_click(self._on_remove_keyframe)
    self.loop.on_update(lambda _: self._draw_path())
    self.frames.on_update(self._on_frames)
    self.path_height.on_update(
        lambda _: _show(self.path_height, self.path_height_px()))
    self.preview.on_click(self._on_preview)
    self.save.on_click(self._on_save)

  def path_frames(self) -> int:
    """The "Frames" input, clamped to [MIN_PATH_FRAMES, MAX_PATH_FRAMES]."""
    return cameras.clamp_int(self.frames.value, keyframes.MIN_PATH_FRAMES,
                             keyframes.MAX_PATH_FRAMES, 120)

  def path_height_px(self) -> int:
    """The "Height (px)" input, clamped to [8, MAX_RENDER_SIDE]."""
    return cameras.clamp_int(self.path_height.value, 8,
                             paths.MAX_RENDER_SIDE, self._default_height)

  def _on_frames(self, _) -> None:
    _show(self.frames, self.path_frames())
    self._draw_path()

  def _on_add_keyframe(self, event) -> None:
    client = event.client
    if client is None:
      return
    checked = cameras.client_camera(client.camera)
    if checked is None:
      self.path_status.content = 'not added: the page\'s camera is not valid'
      return
    c2w, fov_y, aspect = checked
    with self._lock:
      full = len(self.viewer.keyframes) >= keyframes.MAX_KEYFRAMES
      if not full:
        self.viewer.keyframes.append(
            keyframes.Keyframe(c2w=c2w, fov_y=fov_y, aspect=aspect))
    if full:
      self.path_status.content = (
          f'not added: a path has at most {keyframes.MAX_KEYFRAMES} '
          'keyframes')
      return
    self._draw_path()

  def _on_remove_keyframe(self, _) -> None:
    with self._lock:
      if self.viewer.keyframes:
        self.viewer.keyframes.pop()
    self._draw_path()

  def path_poses(self) -> np.ndarray:
    """f32[frames, 4, 4], the interpolated path of the keyframes."""
    poses = [k.c2w for k in list(self.viewer.keyframes)]
    return keyframes.interpolate_keyframes(
        np.stack(poses), self.path_frames(), bool(self.loop.value))

  def _draw_path(self) -> None:
    """Keyframe frustums and the interpolated path's line."""
    with self._lock:
      for node in self._keyframe_nodes:
        node.remove()
      self._keyframe_nodes = []
      keyframes = list(self.viewer.keyframes)
      scene, scale = self.server.scene, self.frustum_scale
      for i, key in enumerate(keyframes):
        wxyz, position = cameras.opengl_to_opencv(key.c2w)
        self._keyframe_nodes.append(scene.add_camera_frustum(
            f'/keyframes/{i:04d}', fov=key.fov_y, aspect=key.aspect,
            scale=1.5 * scale, wxyz=wxyz, position=position,
            color=(240, 120, 20), thickness=0.08 * scale))
      if len(keyframes) >= 2:
        centres = self.path_poses()[:, :3, 3]
        segments = np.stack([centres[:-1], centres[1:]], axis=1)
        self._keyframe_nodes.append(scene.add_line_segments(
            '/keyframes/path', segments, colors=(240, 120, 20),
            thickness=0.05 * scale))
    self.path_status.content = f'{len(keyframes)} keyframe(s)'

  def _on_preview(self, event) -> None:
    """Moves the clicking client's camera along the path."""
    client = event.client
    if client is None or not self.viewer.keyframes:
      return
    if not self._previewing.acquire(blocking=False):
      return  # one preview at a time
    try:
      fov = self.viewer.keyframes[0].fov_y
      frames = self.path_poses()
      stride = max(1, len(frames) // 60)  # previews take at most ~6 s
      for pose in frames[::stride]:
        self.viewer.move_camera(client, pose, fov)
        time.sleep(1.0 / PREVIEW_FPS)
    finally:
      self._previewing.release()

  def _on_save(self, event) -> None:
    message = self.save_path(self.path_file.value)
    self.path_status.content = message
    if event.client is not None:
      event.client.add_notification('Camera path', message,
                                    auto_close_seconds=8.0)

  def save_path(self, name) -> str:
    """Saves the keyframes' path as ``name`` (a file name,
    ``keyframes.camera_path_name``) in the run folder; returns what
    happened, naming the file written."""
    workdir = self.viewer.workdir
    if not workdir:
      return 'not saved: this viewer has no run folder to save in'
    if not os.path.isdir(workdir):
      return f'not saved: the run folder {workdir} is gone'
    placed = list(self.viewer.keyframes)
    if not placed:
      return 'add a keyframe first'
    try:
      name = keyframes.camera_path_name(name)
    except ValueError as e:
      return f'not saved: {e}'
    path = os.path.join(os.path.abspath(workdir), name)
    intrinsics = keyframes.path_intrinsics(placed[0], self.path_height_px())
    poses = self.path_poses()
    try:
      paths.save_camera_path(path, poses, intrinsics)
    except outputs.OutputError as e:
      return f'not saved: {e}'
    except OSError as e:
      return f'not saved: {path}: {e.strerror or e}'
    self.viewer.saved_paths.append(path)
    return (f'saved {len(poses)} frames to {path}; render them with '
            f'python render.py --ckpt {workdir} --path {path}')


def _show(handle, value) -> None:
  """Shows ``value`` (the value a handler used) in a GUI input, if the
  client sent another."""
  if handle.value != value:
    handle.value = value
