"""Tests of the web viewer: cameras, paths, the progressive schedule, the
live-training hook, and view.py in a real (headless) browser."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
import types

import imageio.v3 as iio
import jax
import numpy as np
import pytest
from scipy.spatial import transform as sp_transform

from configs import demo
from nerf_jax.cameras import paths
from nerf_jax.inference import chunked
from nerf_jax.runs import load
from nerf_jax.train import loop
from nerf_jax.viewer import cameras
from nerf_jax.viewer import frames
from nerf_jax.viewer import keyframes
from nerf_jax.viewer import live as live_lib
from nerf_jax.viewer import server

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'


def small_config(steps: int = 120):
  """The built-in scene, small enough to train in seconds."""
  config = demo.get_config()
  config.data.width, config.data.height = 24, 24
  config.data.num_train, config.data.num_val, config.data.num_test = 12, 2, 1
  config.model.preset, config.model.num_coarse = 'tiny', 16
  config.train.batch_rays, config.train.max_steps = 512, steps
  config.train.warmup_steps = 10
  config.eval.every, config.checkpoint.every = steps, steps
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run'))
  loop.train_and_evaluate(small_config(), workdir, progress=False)
  return workdir


@pytest.fixture(scope='module')
def loaded(trained):
  return load.load_trained(trained)


def random_poses(rng, n):
  rotations = sp_transform.Rotation.random(n, random_state=rng).as_matrix()
  poses = np.tile(np.eye(4), (n, 1, 1))
  poses[:, :3, :3] = rotations
  poses[:, :3, 3] = rng.normal(size=(n, 3)) * 3.0
  return poses


# ---------------------------------------------------------------------------
# Cameras.


def test_opencv_opengl_round_trip_and_axes():
  rng = np.random.default_rng(0)
  for pose in random_poses(rng, 20):
    wxyz, position = cameras.opengl_to_opencv(pose)
    np.testing.assert_allclose(np.linalg.norm(wxyz), 1.0, atol=1e-12)
    r_cv = sp_transform.Rotation.from_quat(np.roll(wxyz, -1)).as_matrix()
    # OpenCV looks down +z with y down; OpenGL looks down -z with y up.
    np.testing.assert_allclose(r_cv[:, 2], -pose[:3, 2], atol=1e-6)
    np.testing.assert_allclose(r_cv[:, 1], -pose[:3, 1], atol=1e-6)
    np.testing.assert_allclose(r_cv[:, 0], pose[:3, 0], atol=1e-6)
    np.testing.assert_allclose(position, pose[:3, 3], atol=1e-12)
    back = cameras.opencv_to_opengl(wxyz, position)
    np.testing.assert_allclose(back, pose, atol=1e-5)


def test_view_intrinsics_fov_and_longer_side():
  wide = cameras.view_intrinsics(np.pi / 3, 2.0, 256)
  assert (wide.width, wide.height) == (256, 128)
  np.testing.assert_allclose(cameras.vertical_fov(wide), np.pi / 3, rtol=1e-9)
  tall = cameras.view_intrinsics(np.pi / 3, 0.5, 256)
  assert (tall.width, tall.height) == (128, 256)
  assert (tall.cx, tall.cy) == (64.0, 128.0)


def test_view_at_a_training_camera_equals_render_view(loaded):
  """The viewer's frame for a browser camera placed at training camera i
  (through viser's OpenCV form) is chunked.render_view's render of that
  pose."""
  _, info, model, variables, step = loaded
  view = server.Viewer(model, info, variables, step, chunk=256,
                       resolution=max(info.intrinsics.width,
                                      info.intrinsics.height))
  pose = np.asarray(info.camera_poses[3], np.float32)
  wxyz, position = cameras.opengl_to_opencv(pose)
  k = info.intrinsics
  request = frames.ViewRequest(
      c2w=cameras.opencv_to_opengl(wxyz, position),
      fov_y=cameras.vertical_fov(k), aspect=k.width / k.height)
  _, out = view.render_request(request, 'full')
  expected = chunked.render_view(view.renderer.render_fn, variables, k,
                                 pose, info.near, info.far, 256)
  assert out['rgb'].shape == (k.height, k.width, 3)
  np.testing.assert_allclose(out['rgb'], expected['rgb'], atol=1e-4)
  np.testing.assert_allclose(out['acc'], expected['acc'], atol=1e-4)
  assert out['rgb'].std() > 0.02  # the scene, not a blank frame


def test_forward_facing_views_use_the_training_camera_through_ndc(loaded):
  """A forward-facing (NDC) run is shown through its training camera's
  field of view and aspect (NDC rays are only right for those), whatever
  the browser's: the frame at a training pose is chunked.render_view's NDC
  render."""
  _, info, model, variables, step = loaded
  info = dataclasses.replace(info, ndc=True, near=0.0, far=1.0)
  k = info.intrinsics
  view = server.Viewer(model, info, variables, step, chunk=256,
                       resolution=2 * max(k.width, k.height))
  pose = np.asarray(info.camera_poses[2], np.float32)
  request = frames.ViewRequest(c2w=pose, fov_y=1.2, aspect=2.5)
  _, out = view.render_request(request, 'full')
  expected = chunked.render_view(view.renderer.render_fn, variables,
                                 k.scaled(2.0), pose, 0.0, 1.0, 256,
                                 ndc=True)
  assert out['rgb'].shape == (2 * k.height, 2 * k.width, 3)
  np.testing.assert_allclose(out['rgb'], expected['rgb'], atol=1e-4)
  plain = chunked.render_view(view.renderer.render_fn, variables,
                              k.scaled(2.0), pose, 0.0, 1.0, 256)
  assert np.abs(plain['rgb'] - out['rgb']).max() > 1e-2  # NDC was used


def test_frames_of_any_size_compile_two_chunk_shapes(loaded):
  _, info, model, variables, step = loaded
  renderer = frames.FrameRenderer(model, info, chunk=512)
  renderer.compile(variables)
  compiled = renderer.render_fn._cache_size()  # pylint: disable=protected-access
  pose = np.asarray(info.camera_poses[0], np.float32)
  for aspect, resolution in ((1.0, 40), (1.7, 64), (0.6, 50), (2.3, 31)):
    intrinsics = cameras.view_intrinsics(0.8, aspect, resolution)
    for chunk in renderer.chunks:
      out = renderer.render(variables, pose, intrinsics, chunk)
      assert out['rgb'].shape == (intrinsics.height, intrinsics.width, 3)
  assert renderer.render_fn._cache_size() == compiled == 2  # pylint: disable=protected-access
  with pytest.raises(frames.Cancelled):
    renderer.render(variables, pose, intrinsics, 128, cancelled=lambda: True)


@pytest.mark.parametrize('mode', frames.MODES)
def test_colorize_modes_are_u8_images(mode):
  rng = np.random.default_rng(1)
  out = dict(rgb=rng.uniform(size=(5, 7, 3)).astype(np.float32),
             depth=rng.uniform(2, 6, size=(5, 7)).astype(np.float32),
             acc=rng.uniform(size=(5, 7)).astype(np.float32))
  for depth_range in (None, (2.0, 6.0)):
    image = frames.colorize(out, mode, 0.0, depth_range)
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8
  if mode == 'accumulation':
    np.testing.assert_allclose(image[..., 0] / 255.0, out['acc'], atol=3e-3)


# ---------------------------------------------------------------------------
# The progressive schedule.


def test_moving_camera_gets_previews_then_the_full_frame():
  request = frames.ViewRequest(c2w=np.eye(4), fov_y=1.0, aspect=1.0,
                               version=1, changed_at=10.0)
  assert frames.next_level(request, 10.05) == ('preview', 0.0)
  request.done = (1, 'preview')
  level, wait = frames.next_level(request, 10.05)
  assert level == '' and wait == pytest.approx(frames.SETTLE_S - 0.05)
  assert frames.next_level(request, 10.01 + frames.SETTLE_S)[0] == 'full'
  request.done = (1, 'full')
  assert frames.next_level(request, 11.0) == ('', np.inf)
  request.version, request.changed_at = 2, 11.0  # moved again
  assert frames.next_level(request, 11.01)[0] == 'preview'
  assert frames.next_level(request, 12.0)[0] == 'full'  # rested meanwhile


# ---------------------------------------------------------------------------
# Camera paths.


def test_keyframe_path_passes_through_keyframes_and_is_smooth():
  keys = random_poses(np.random.default_rng(2), 4)
  m = 30
  path = keyframes.interpolate_keyframes(keys, m * 3 + 1)
  np.testing.assert_allclose(path[::m], keys, atol=1e-5)
  positions = path[:, :3, 3].astype(np.float64)
  step = np.diff(positions, axis=0)
  # C1: the step between frames changes little from one frame to the next.
  assert np.abs(np.diff(step, axis=0)).max() < 0.1 * np.abs(step).max()
  rotations = sp_transform.Rotation.from_matrix(path[:, :3, :3])
  angles = (rotations[1:] * rotations[:-1].inv()).magnitude()
  assert np.abs(np.diff(angles)).max() < 0.1 * angles.max() + 1e-6
  np.testing.assert_allclose(
      np.einsum('nij,nkj->nik', path[:, :3, :3], path[:, :3, :3]),
      np.broadcast_to(np.eye(3), (len(path), 3, 3)), atol=1e-5)


def test_looped_path_closes_smoothly():
  keys = random_poses(np.random.default_rng(3), 3)
  path = keyframes.interpolate_keyframes(keys, 60, loop=True)
  np.testing.assert_allclose(path[::20], keys, atol=1e-5)
  positions = np.concatenate([path[:, :3, 3], path[:1, :3, 3]])
  step = np.linalg.norm(np.diff(positions, axis=0), axis=-1)
  assert step[-1] < 2.0 * np.median(step)  # no jump back to the start
  single = keyframes.interpolate_keyframes(keys[:1], 5)
  np.testing.assert_allclose(single, np.repeat(keys[:1], 5, axis=0),
                             atol=1e-6)


def test_saved_path_is_what_load_camera_path_reads(tmp_path):
  keys = random_poses(np.random.default_rng(4), 3)
  key = keyframes.Keyframe(c2w=keys[0], fov_y=0.9, aspect=1.5)
  intrinsics = keyframes.path_intrinsics(key, 40)
  poses = keyframes.interpolate_keyframes(keys, 9)
  path = str(tmp_path / 'paths' / 'p.json')
  paths.save_camera_path(path, poses, intrinsics)
  loaded_poses, loaded_intrinsics = paths.load_camera_path(path)
  np.testing.assert_allclose(loaded_poses, poses, atol=1e-6)
  assert loaded_intrinsics == intrinsics
  assert (intrinsics.width, intrinsics.height) == (60, 40)


# ---------------------------------------------------------------------------
# Serving the model being trained.


def fake_client(client_id, pose, fov):
  """A stand-in for a viser client: a camera at ``pose`` and a scene that
  keeps the frames it is sent."""
  wxyz, position = cameras.opengl_to_opencv(pose)
  client = types.SimpleNamespace(client_id=client_id, frames=[])
  client.camera = types.SimpleNamespace(
      wxyz=wxyz, position=position, fov=fov, aspect=1.0, client=client,
      on_update=lambda cb: None)
  client.scene = types.SimpleNamespace(
      set_background_image=lambda image, **_: client.frames.append(image))
  return client


class _WatchedTraining(live_lib.LiveTraining):
  """LiveTraining with a client watching from the first step."""

  def start(self, model, info, variables, step, workdir, images=None):
    super().start(model, info, variables, step, workdir, images)
    pose = np.asarray(info.camera_poses[0], np.float32)
    self.client = fake_client(7, pose, cameras.vertical_fov(info.intrinsics))
    self.viewer._on_connect(self.client)  # pylint: disable=protected-access


def test_training_with_the_viewer_serves_frames_and_trains_the_same(
    trained, loaded, tmp_path):
  live = _WatchedTraining(port=0, resolution=24, chunk=256, refresh_s=0.0,
                          max_busy=0.5)
  workdir = str(tmp_path / 'live')
  try:
    loop.train_and_evaluate(small_config(), workdir, progress=False,
                            live=live)
    shown = live.viewer.step
  finally:
    live.close()
  assert len(live.client.frames) >= 2
  assert live.client.frames[-1].shape == (24, 24, 3)
  assert shown > 0  # frames of the model being trained, not only step 0
  variables = load.load_trained(workdir)[3]
  jax.tree_util.tree_map(np.testing.assert_array_equal, variables,
                         loaded[3])


def test_viewer_follows_the_newer_checkpoints_of_a_training(trained, tmp_path):
  """A training in another process (here: in this one, after the viewer
  started) saves a newer checkpoint: the viewer loads and shows it, and
  renders the watching client's view again with it."""
  run = str(tmp_path / 'run')
  shutil.copytree(trained, run)
  _, info, model, variables, step = load.load_trained(run)
  view = server.Viewer(model, info, variables, step, port=0, chunk=256,
                       resolution=24, workdir=run)
  view.start()
  try:
    client = fake_client(3, np.asarray(info.camera_poses[0], np.float32),
                         cameras.vertical_fov(info.intrinsics))
    view._on_connect(client)  # pylint: disable=protected-access
    _wait(lambda: view.last_frame and view.last_frame['step'] == step, 60,
          'the first frame')
    view.follow_checkpoints(
        lambda s: load.load_trained(run, s, warn=False)[3],
        interval_s=0.1)
    loop.train_and_evaluate(small_config(step + 10), run,
                            progress=False)
    _wait(lambda: view.step == step + 10, 60, 'the newer checkpoint')
    _wait(lambda: view.last_frame['step'] == step + 10, 60,
          'a frame of the newer checkpoint')
    newer = load.load_trained(run)[3]
    jax.tree_util.tree_map(np.testing.assert_array_equal, view.variables,
                           newer)
  finally:
    view.close()


# ---------------------------------------------------------------------------
# view.py in a browser.


def _browser_missing() -> str:
  for path in (CHROMIUM, CHROMEDRIVER):
    if not os.path.exists(path):
      return (f'{path} is absent: install Debian\'s chromium and '
              'chromium-driver (make browser)')
  try:
    import selenium  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return 'selenium is not installed'
  return ''


def _start_browser(width=1000, height=640):
  os.environ['SE_OFFLINE'] = 'true'  # never let selenium download a driver
  from selenium import webdriver  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.options import Options  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  options = Options()
  options.binary_location = CHROMIUM
  profile = tempfile.mkdtemp(prefix='nerf_jax_chromium_')
  for arg in ('--headless=new', '--no-sandbox', '--disable-gpu',
              '--disable-dev-shm-usage', '--no-first-run',
              '--disable-background-networking', '--disable-component-update',
              '--disable-sync', '--disable-quic', '--mute-audio',
              # WebGL (three.js) without a GPU: SwiftShader.
              '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
              f'--window-size={width},{height}', f'--user-data-dir={profile}'):
    options.add_argument(arg)
  driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
  return driver, profile


def _wait(condition, timeout, what):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(0.1)
  raise AssertionError(f'timed out after {timeout} s waiting for {what}')


_STATUS = re.compile(r'frame (\d+) \((\w+)\) (\d+)x(\d+)')


def _status(driver):
  """(frames sent, level, width, height) the GUI shows, or None."""
  match = _STATUS.search(driver.find_element('tag name', 'body').text)
  return None if match is None else (int(match[1]), match[2], int(match[3]),
                                     int(match[4]))


def _canvas_shot(driver, panel_x):
  """The screenshot left of the GUI panel: u8[h, w, 3]."""
  shot = iio.imread(driver.get_screenshot_as_png())[..., :3]
  return shot[150:, :panel_x]


def _drag(driver, dx, dy):
  from selenium.webdriver.common.action_chains import ActionChains  # pylint: disable=g-import-not-at-top
  canvas = driver.find_element('tag name', 'canvas')
  chain = ActionChains(driver).move_to_element(canvas).click_and_hold()
  for _ in range(8):
    chain = chain.move_by_offset(dx // 8, dy // 8).pause(0.03)
  chain.release().perform()


def _click(driver, label):
  button = driver.find_element(
      'xpath', f'//button[normalize-space()="{label}"]')
  button.click()


def _set_input(driver, label, value):
  """Types ``value`` into the GUI input labelled ``label``."""
  from selenium.webdriver.common.keys import Keys  # pylint: disable=g-import-not-at-top
  field = driver.find_element(
      'xpath', f'//*[normalize-space(text())="{label}"]/following::input[1]')
  field.send_keys(Keys.CONTROL, 'a')
  field.send_keys(str(value), Keys.ENTER)


@pytest.mark.slow
@pytest.mark.skipif(bool(_browser_missing()), reason=_browser_missing())
def test_view_py_in_a_browser(trained, tmp_path):
  """view.py serves the scene to Chromium, re-renders a dragged camera, and
  saves a keyframe path that render.py renders."""
  proc = subprocess.Popen(
      [sys.executable, str(ROOT / 'view.py'), '--ckpt', trained, '--port',
       '0', '--resolution', '96', '--chunk', '1024'],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      stdin=subprocess.DEVNULL)
  driver = profile = None
  try:
    lines = []
    url = _wait(lambda: _ready_url(proc, lines), 120, 'view.py to serve')
    assert re.search(r'/\?token=[\w-]{40,}$', url), url  # see viewer_access
    driver, profile = _start_browser()
    driver.get(url)
    first = _wait(lambda: (s := _status(driver)) and s[1] == 'full' and s,
                  60, 'the first full frame')
    panel_x = driver.find_element(
        'xpath', '//*[normalize-space(text())="View"]').location['x'] - 20
    before = _canvas_shot(driver, panel_x)
    assert 'error' not in driver.title.lower()
    assert before.std() > 10, 'the page shows a blank canvas'
    assert len(np.unique(before.reshape(-1, 3), axis=0)) > 50
    iio.imwrite(tmp_path / 'viewer.png', before)
    _click(driver, 'Add keyframe')
    _drag(driver, 160, 40)
    moved = _wait(lambda: (s := _status(driver)) and s[0] > first[0] and
                  s[1] == 'full' and s, 60, 'a frame of the moved camera')
    after = _canvas_shot(driver, panel_x)
    assert np.abs(after.astype(int) - before).mean() > 2, 'same picture'
    _click(driver, 'Add keyframe')
    _drag(driver, -80, -60)
    _wait(lambda: (s := _status(driver)) and s[0] > moved[0], 60,
          'a third frame')
    _click(driver, 'Add keyframe')
    _set_input(driver, 'Frames', 7)
    path = os.path.join(trained, 'camera_path.json')
    _wait(lambda: '3 keyframe(s)' in driver.find_element(
        'tag name', 'body').text, 10, 'three keyframes')
    _click(driver, 'Save path')
    _wait(lambda: os.path.exists(path), 20, f'{path} to be saved')
    _wait(lambda: 'saved 7 frames to' in driver.find_element(
        'tag name', 'body').text, 10, 'the page to say where it saved')
    poses, intrinsics = paths.load_camera_path(path)
    assert len(poses) == 7 and intrinsics.height == 24
  finally:
    if driver is not None:
      driver.quit()
      shutil.rmtree(profile, ignore_errors=True)
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
  assert proc.returncode in (0, -15, 143), out
  render = subprocess.run(
      [sys.executable, str(ROOT / 'render.py'), '--ckpt', trained, '--path',
       path, '--format', 'png', '--layout', 'rgb', '--out',
       str(tmp_path / 'frames'), '--progress=false'], capture_output=True,
      text=True, timeout=300, stdin=subprocess.DEVNULL)
  assert render.returncode == 0, render.stderr
  frames = sorted((tmp_path / 'frames' / 'camera_path_rgb').glob('*.png'))
  assert len(frames) == 7
  assert iio.imread(frames[0]).shape[:2] == (24, intrinsics.width)


def _ready_url(proc, lines):
  """The URL view.py prints when it serves (reads its output line by
  line; fails if it exits)."""
  line = proc.stdout.readline()
  if not line and proc.poll() is not None:
    raise AssertionError('view.py exited: ' + ''.join(lines))
  lines.append(line)
  match = re.search(r'viewer ready at (http://\S+)', line)
  return match and match[1]


def test_view_py_refuses_bad_flags_in_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'view.py'), '--ckpt', str(tmp_path),
       '--resolution', '2'], capture_output=True, text=True, timeout=60,
      stdin=subprocess.DEVNULL)
  assert proc.returncode == 2
  assert proc.stderr.strip() == ('error: --resolution must be in [8, 2048], '
                                 'got 2')
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'view.py'), '--ckpt',
       str(tmp_path / 'nope')], capture_output=True, text=True, timeout=60,
      stdin=subprocess.DEVNULL)
  assert proc.returncode != 0 and 'Traceback' not in proc.stderr
  assert proc.stderr.strip().startswith('error: checkpoint directory')


@pytest.mark.slow
def test_train_py_viewer_serves_the_page_while_training(tmp_path):
  """train.py --viewer prints the viewer's URL before the first step and
  serves the page while it trains; its flags are checked in one line."""
  import urllib.request  # pylint: disable=g-import-not-at-top
  overrides = ['--config.data.width=24', '--config.data.height=24',
               '--config.data.num_train=12', '--config.data.num_val=2',
               '--config.data.num_test=1', '--config.model.preset=tiny',
               '--config.model.num_coarse=16', '--config.train.max_steps=120',
               '--config.train.batch_rays=512', '--config.eval.every=120',
               '--config.checkpoint.every=120']
  command = [sys.executable, str(ROOT / 'train.py'), '--config', 'demo.py',
             '--workdir', str(tmp_path / 'run'), '--noprogress', '--viewer',
             '--viewer_port', '0', *overrides]
  proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT,
                          stdin=subprocess.DEVNULL)
  try:
    url = None
    for line in proc.stdout:
      match = re.search(r'viewer: open (http://\S+)', line)
      if match:
        url = match[1]
        break
    assert url, proc.stderr.read()
    assert '/?token=' in url  # only the page opened with it may connect
    with urllib.request.urlopen(url, timeout=30) as page:
      assert page.status == 200
      assert b'<html' in page.read().lower()
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 0, err
  assert 'step 120: held-out PSNR' in out
  bad = subprocess.run(command[:-len(overrides)] + ['--viewer_share', '0'],
                       capture_output=True, text=True, cwd=ROOT, timeout=60,
                       stdin=subprocess.DEVNULL)
  assert bad.returncode == 2
  assert bad.stderr.strip() == ('error: --viewer_share must be in (0, 1], '
                                'got 0.0')


# ---------------------------------------------------------------------------
# Who may connect, and what a client may send: the server trusts no client.


def _fake_run(path):
  """A folder that looks like a training run to nerf_jax.io.outputs."""
  os.makedirs(path, exist_ok=True)
  for name in ('config.json', 'scene.json'):
    with open(os.path.join(path, name), 'w') as f:
      f.write('{}')
  return str(path)


@pytest.fixture(scope='module')
def served(loaded, tmp_path_factory):
  """A started viewer of a (fake) run folder; nothing is rendered, as no
  client sends a valid camera."""
  _, info, model, variables, step = loaded
  run = _fake_run(tmp_path_factory.mktemp('served') / 'run')
  view = server.Viewer(model, info, variables, step, port=0, chunk=256,
                       resolution=24, workdir=run)
  view.start()
  yield view
  view.close()


def _ws_connect(view, origin=None, token=None, cookie=None):
  """A raw websocket client of ``view``'s server (viser's subprotocol):
  the open connection, or the HTTP status it was refused with."""
  import viser  # pylint: disable=g-import-not-at-top
  from websockets import exceptions  # pylint: disable=g-import-not-at-top
  from websockets.sync import client  # pylint: disable=g-import-not-at-top
  port = view.server.get_port()
  uri = f'ws://127.0.0.1:{port}/' + (f'?token={token}' if token else '')
  headers = {'Cookie': f'nerf_jax_viewer_{port}={cookie}'} if cookie else {}
  try:
    return client.connect(uri, origin=origin, additional_headers=headers,
                          subprotocols=[f'viser-v{viser.__version__}'],
                          open_timeout=20)
  except exceptions.InvalidStatus as e:
    return e.response.status_code


def test_only_the_viewers_page_with_the_token_may_connect(served):
  """A raw websocket client: a foreign Origin, a missing Origin, a missing
  or wrong token are refused (403); the page's origin with the token (as a
  cookie, as the page sends it, or in the query) is accepted."""
  port, token = served.server.get_port(), served.guard.token
  assert served.url == f'http://127.0.0.1:{port}/?token={token}'
  assert len(token) >= 40
  own = f'http://127.0.0.1:{port}'
  for origin in ('http://evil.example', f'http://evil.example:{port}',
                 f'http://localhost:{port}', 'null', None):
    assert _ws_connect(served, origin, token=token) == 403, origin
    assert _ws_connect(served, origin, cookie=token) == 403, origin
  assert _ws_connect(served, own) == 403
  wrong = token[:-1] + ('y' if token.endswith('x') else 'x')
  assert _ws_connect(served, own, token=wrong) == 403
  assert _ws_connect(served, own, cookie='x' + token) == 403
  for kwargs in (dict(cookie=token), dict(token=token)):
    connection = _ws_connect(served, own, **kwargs)
    assert not isinstance(connection, int), (kwargs, connection)
    try:
      assert isinstance(connection.recv(timeout=20), bytes)  # viser's scene
    finally:
      connection.close()


def test_the_page_needs_the_token_and_sets_it_as_a_cookie(served):
  import urllib.error  # pylint: disable=g-import-not-at-top
  import urllib.request  # pylint: disable=g-import-not-at-top
  port = served.server.get_port()
  plain = f'http://127.0.0.1:{port}/'
  with pytest.raises(urllib.error.HTTPError) as refused:
    urllib.request.urlopen(plain, timeout=20)
  assert refused.value.code == 403
  assert b'token' in refused.value.read()
  with urllib.request.urlopen(served.url, timeout=20) as page:
    assert page.status == 200 and b'<html' in page.read().lower()
    cookie = page.headers['Set-Cookie']
  assert cookie.startswith(f'nerf_jax_viewer_{port}={served.guard.token};')
  assert 'HttpOnly' in cookie and 'SameSite=Strict' in cookie
  request = urllib.request.Request(plain,
                                   headers={'Cookie': cookie.split(';')[0]})
  with urllib.request.urlopen(request, timeout=20) as page:
    assert page.status == 200


def test_origin_rules_for_loopback_and_every_interface():
  """A DNS-rebinding page (its own name resolving to 127.0.0.1: Origin
  equal to Host) is refused by a loopback viewer; a viewer on every
  interface accepts the address it is reached at, with the token only."""
  from websockets.datastructures import Headers  # pylint: disable=g-import-not-at-top
  from websockets.http11 import Request  # pylint: disable=g-import-not-at-top
  from nerf_jax.viewer import access  # pylint: disable=g-import-not-at-top

  def request(host, origin, token='t0ken'):
    headers = Headers({'Host': host, 'Upgrade': 'websocket'})
    if origin:
      headers['Origin'] = origin
    return Request(f'/?token={token}' if token else '/', headers)

  local = access.Guard('127.0.0.1', 't0ken')
  assert local.refusal(request('127.0.0.1:8080', 'http://127.0.0.1:8080')) == ''
  assert local.refusal(request('localhost:9000', 'http://localhost:9000')) == ''
  assert local.refusal(request('[::1]:8080', 'http://[::1]:8080')) == ''
  assert 'not a loopback' in local.refusal(
      request('evil.example:8080', 'http://evil.example:8080'))
  wide = access.Guard('0.0.0.0', 't0ken')
  assert wide.refusal(request('192.168.1.7:8080',
                              'http://192.168.1.7:8080')) == ''
  assert 'token' in wide.refusal(request('192.168.1.7:8080',
                                         'http://192.168.1.7:8080', None))
  assert 'not the viewer' in wide.refusal(request('192.168.1.7:8080',
                                                  'http://evil.example'))
  # What does not parse is refused (403), and never echoed raw.
  connection = types.SimpleNamespace(
      local_address=('127.0.0.1', 8080),
      respond=lambda status, text: (int(status), text))
  guarded = local.wrap(None)
  for origin in ('http://[::1', 'http://\x9b31m:1'):
    status, text = guarded(connection, request('127.0.0.1:8080', origin))
    assert status == 403 and text.isascii() and '\x9b' not in text
  assert guarded(connection, request('127.0.0.1:8080',
                                     'http://127.0.0.1:8080')) is None
  assert access.page_url('0.0.0.0', 8080, 'T') == (
      'http://127.0.0.1:8080/?token=T')
  assert access.page_url('::1', 8080, 'T') == (
      'http://[::1]:8080/?token=T')


def test_a_viser_that_starts_its_server_otherwise_is_refused():
  """The hook point is checked: a server started without going through
  websockets' serve (a future viser) is stopped and the viewer refuses
  to serve in one line."""
  from websockets.asyncio import server as ws_server  # pylint: disable=g-import-not-at-top
  from nerf_jax.viewer import access  # pylint: disable=g-import-not-at-top
  original = ws_server.serve
  guard = access.Guard('127.0.0.1', access.new_token())
  with access.guarding(guard):
    assert ws_server.serve is not original
  assert ws_server.serve is original
  stopped = []
  with pytest.raises(access.AccessError,
                     match='cannot refuse other web pages') as refused:
    access.require_hooked(guard, lambda: stopped.append(True))
  assert stopped and '\n' not in str(refused.value)


def test_camera_path_names_are_plain_names_in_the_run_folder():
  name = keyframes.camera_path_name
  assert name(' orbit ') == 'orbit.json'
  assert name('my path_2.json') == 'my path_2.json'
  assert name('Café.JSON') == 'Café.JSON'
  for bad in ('../config.json', '/etc/passwd.json', 'a/b.json', 'a\\b.json',
              '~/x.json', '..json', 'a..b.json', '.hidden.json', '', '   ',
              'x' * 200, 'a\x00b.json', 'a\nb.json', '<img src=x>.json',
              '-flag.json', 'config.json', 'scene.json', 'environment.json',
              '.nerf_jax-outputs.json', None, 3, ['a']):
    with pytest.raises(ValueError) as refused:
      name(bad)
    message = str(refused.value)
    assert '\n' not in message
    if isinstance(bad, str) and len(bad) > 3 and bad not in (
        'config.json', 'scene.json', 'environment.json'):
      assert bad.strip() not in message  # a refused name is never echoed


def test_hostile_values_are_clamped_or_ignored():
  assert cameras.clamp_int(10 ** 30, 8, 2048, 256) == 2048
  assert cameras.clamp_int(-5, 8, 2048, 256) == 8
  assert cameras.clamp_int(1e300, 2, 10000, 120) == 10000
  assert cameras.clamp_int(37.6, 2, 10000, 120) == 38
  for bad in (float('nan'), float('inf'), '12abc', None, [3], True):
    assert cameras.clamp_int(bad, 2, 10000, 120) == 120
  assert cameras.choice('depth', frames.MODES, 'colour') == 'depth'
  assert cameras.choice('rm -rf', frames.MODES, 'colour') == 'colour'
  assert cameras.choice(['depth'], frames.MODES, 'colour') == 'colour'
  for fov in (0.0, -1.0, 1e308, float('nan'), 'x'):
    assert cameras.MIN_FOV <= cameras.clamp_fov(fov) <= cameras.MAX_FOV
  for aspect in (0.0, -2.0, 1e308, float('nan'), float('inf')):
    assert cameras.MIN_ASPECT <= cameras.clamp_aspect(aspect) <= (
        cameras.MAX_ASPECT)
  # Whatever the camera, a view is at most MAX_RESOLUTION on a side.
  for fov, aspect, resolution in ((0.0, 1e9, 10 ** 9), (1e308, 0.0, -3),
                                  (float('nan'), float('nan'), 2 ** 40)):
    k = cameras.view_intrinsics(fov, aspect, resolution)
    assert 1 <= k.width <= cameras.MAX_RESOLUTION
    assert 1 <= k.height <= cameras.MAX_RESOLUTION
    assert np.isfinite([k.fx, k.fy, k.cx, k.cy]).all()
  key = keyframes.Keyframe(c2w=np.eye(4), fov_y=float('nan'), aspect=1e9)
  k = keyframes.path_intrinsics(key, 10 ** 9)
  assert max(k.width, k.height) <= paths.MAX_RENDER_SIDE
  assert np.isfinite([k.fx, k.fy]).all()
  good = types.SimpleNamespace(wxyz=(2.0, 0, 0, 0), position=(0, 0, 1),
                               fov=1e9, aspect=0.0)
  c2w, fov, aspect = cameras.client_camera(good)
  np.testing.assert_allclose(c2w[:3, :3], np.diag([1.0, -1.0, -1.0]))
  assert fov == cameras.MAX_FOV and aspect == 1.0
  for changes in (dict(wxyz=(float('nan'), 0, 0, 0)), dict(wxyz=(0, 0, 0, 0)),
                  dict(wxyz='abcd'), dict(wxyz=(1, 0, 0)),
                  dict(position=(1e300, 0, 0)),
                  dict(position=(0, float('inf'), 0)),
                  dict(position=None), dict(fov=None)):
    hostile = types.SimpleNamespace(**{**vars(good), **changes})
    if 'fov' in changes:  # a missing fov is clamped, not refused
      assert cameras.client_camera(hostile)[1] == 1.0
    else:
      assert cameras.client_camera(hostile) is None, changes


def test_gui_handlers_clamp_what_a_client_sends(served):
  """The GUI's handlers, given values past every limit (as a client can
  send them over the websocket), use and show clamped values."""
  gui, settings = served.gui, served.settings
  gui.resolution.value = 10 ** 9
  assert settings.resolution == gui.resolution.value == cameras.MAX_RESOLUTION
  gui.resolution.value = -7
  assert settings.resolution == gui.resolution.value == cameras.MIN_RESOLUTION
  gui.mode.value = '<script>'
  assert settings.mode == gui.mode.value == 'colour'
  gui.depth_range.value = 'everything'
  assert settings.depth_range == gui.depth_range.value == 'percentiles'
  gui.frames.value = 300000
  assert gui.frames.value == keyframes.MAX_PATH_FRAMES
  gui.path_height.value = 10 ** 7
  assert gui.path_height.value == paths.MAX_RENDER_SIDE
  # A value that reached the input without its handler (viser keeps a
  # client's value when the client has not sent a camera yet).
  gui.frames._impl.value = 10 ** 12  # pylint: disable=protected-access
  assert gui.path_frames() == keyframes.MAX_PATH_FRAMES
  gui.frames.value = 7
  gui.path_height.value = 24


def _event(client=None):
  return types.SimpleNamespace(client=client, client_id=0, target=None)


def test_keyframes_are_capped_and_hostile_cameras_refused(served):
  gui = served.gui
  pose = np.asarray(served.info.camera_poses[0], np.float32)
  client = fake_client(11, pose, 0.8)
  served.keyframes.clear()
  client.camera.wxyz = (float('nan'), 0.0, 0.0, 0.0)
  gui._on_add_keyframe(_event(client))  # pylint: disable=protected-access
  assert not served.keyframes and 'not valid' in gui.path_status.content
  client.camera.wxyz = cameras.opengl_to_opencv(pose)[0]
  served.keyframes.extend(
      [keyframes.Keyframe(pose, 0.8, 1.0)] * (keyframes.MAX_KEYFRAMES - 1))
  gui._on_add_keyframe(_event(client))  # pylint: disable=protected-access
  gui._on_add_keyframe(_event(client))  # pylint: disable=protected-access
  assert len(served.keyframes) == keyframes.MAX_KEYFRAMES
  assert 'at most' in gui.path_status.content
  served.keyframes.clear()
  gui._draw_path()  # pylint: disable=protected-access


def test_saving_writes_only_a_name_inside_the_run(served, tmp_path):
  """'Save as' takes a file name: paths, '..', the run's own files and
  files the viewer did not write are refused in one line; a saved path
  names where it was written; a viewer without a run folder cannot
  save."""
  gui, run = served.gui, served.workdir
  gui.frames.value, gui.path_height.value = 7, 24
  poses = random_poses(np.random.default_rng(5), 2)
  served.keyframes[:] = [keyframes.Keyframe(p.astype(np.float32), 0.8, 1.5)
                         for p in poses]
  victim = tmp_path / 'victim.json'
  victim.write_text('{"mine": 1}')
  with open(os.path.join(run, 'notes.json'), 'w') as f:
    f.write('{"notes": 1}')
  before = {n: pathlib.Path(run, n).read_text() for n in os.listdir(run)}
  for name in (str(victim), '../victim.json', '../../x.json', 'config.json',
               'scene', 'notes.json', '.hidden', 'a/b', '~/x', 'x' * 300):
    message = gui.save_path(name)
    assert message.startswith('not saved: '), (name, message)
    assert '\n' not in message
  assert victim.read_text() == '{"mine": 1}'
  assert {n: pathlib.Path(run, n).read_text()
          for n in os.listdir(run)} == before
  message = gui.save_path('orbit')
  path = os.path.join(os.path.abspath(run), 'orbit.json')
  assert message.startswith(f'saved 7 frames to {path};'), message
  loaded_poses, intrinsics = paths.load_camera_path(path)
  assert len(loaded_poses) == 7 and intrinsics.height == 24
  assert gui.save_path('orbit.json').startswith('saved')  # its own: replaced
  workdir = served.workdir
  served.workdir = ''
  try:
    assert gui.save_path('other') == (
        'not saved: this viewer has no run folder to save in')
  finally:
    served.workdir = workdir
    served.keyframes.clear()


def test_a_hostile_client_over_the_websocket_cannot_crash_or_exceed(served):
  """A raw websocket client holding the token sends a camera of NaN and
  infinities and GUI values past their limits: the camera is ignored
  (nothing is rendered), the values are clamped, the server keeps
  serving."""
  import msgspec  # pylint: disable=g-import-not-at-top
  port, token = served.server.get_port(), served.guard.token
  connection = _ws_connect(served, f'http://127.0.0.1:{port}', token=token)
  assert not isinstance(connection, int), connection
  nan, inf = float('nan'), float('inf')
  try:
    connection.send(msgspec.msgpack.encode(dict(
        type='ViewerCameraMessage', wxyz=[nan, 0.0, 0.0, 0.0],
        position=[inf, 0.0, 0.0], fov=1e308, near=0.01, far=inf,
        image_height=0, image_width=10 ** 9, look_at=[0.0, 0.0, 0.0],
        up_direction=[0.0, 0.0, 1.0])))
    frames_id = served.gui.frames._impl.uuid  # pylint: disable=protected-access
    resolution_id = served.gui.resolution._impl.uuid  # pylint: disable=protected-access
    for uuid, value in ((frames_id, 300000), (resolution_id, 10 ** 9)):
      connection.send(msgspec.msgpack.encode(dict(
          type='GuiUpdateMessage', uuid=uuid, updates={'value': value})))
    _wait(lambda: served.gui.frames.value == keyframes.MAX_PATH_FRAMES, 20,
          'the frames to be clamped')
    _wait(lambda: served.gui.resolution.value == cameras.MAX_RESOLUTION, 20,
          'the resolution to be clamped')
    assert served.settings.resolution == cameras.MAX_RESOLUTION
    assert not served._requests and served.frames_sent == 0  # pylint: disable=protected-access
  finally:
    connection.close()
    served.gui.frames.value = 7
    served.gui.resolution.value = 24
  again = _ws_connect(served, f'http://127.0.0.1:{port}', token=token)
  assert not isinstance(again, int), again  # still serving
  again.close()
