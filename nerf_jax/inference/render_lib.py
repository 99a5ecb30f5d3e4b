"""Rendering whole images in fixed-size chunks of rays.

One jit-compiled function renders a chunk; the last chunk of an image is
padded to the same shape, so it compiles once per chunk size whatever the image
size, and peak memory is set by the chunk, not the image.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import imageio.v3 as iio
import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from nerf_jax.cameras import camera, poses
from nerf_jax import distributed, metrics, models
from nerf_jax.io import outputs, viz
from nerf_jax.io import inputs


def make_render_fn(model: models.Model) -> Callable:
  """A jitted ``fn(variables, rays) -> {key: array}`` of a model.

  ``variables`` is {'params': ..., 'state': ...} (``TrainState.variables``).
  The function is deterministic (no jitter) and returns ``OUTPUT_KEYS``.
  ``rays`` has batch shape [chunk]; the chunk is split over every device of
  every process (variables are replicated) and the outputs come back whole
  to every process, so chunk sizes must be multiples of
  ``jax.device_count()`` (``render_rays_chunked`` rounds them up).
  """

  def render_chunk(variables, rays: camera.Rays) -> dict:
    out = model.render(variables['params'], variables['state'], rays, None)
    return {k: out[k] for k in models.OUTPUT_KEYS}

  if jax.device_count() == 1:
    return jax.jit(render_chunk)
  mesh = distributed.make_mesh()
  if model.couples_rays:  # each device renders its rays on its own
    batch = P(distributed.AXIS)
    render_chunk = jax.shard_map(render_chunk, mesh=mesh,
                                 in_specs=(P(), batch), out_specs=batch,
                                 check_vma=False)
  return jax.jit(render_chunk,
                 in_shardings=(distributed.replicated(mesh),
                               distributed.batch_sharded(mesh)),
                 out_shardings=distributed.replicated(mesh))


def render_rays_chunked(render_fn: Callable, variables, rays: camera.Rays,
                        chunk: int) -> dict:
  """Renders rays of any batch shape in chunks of ``chunk`` rays.

  Every process calls it with the same rays (a collective when several
  processes take part) and gets every output.

  Args:
    render_fn: from ``make_render_fn``.
    variables: the model's {'params': ..., 'state': ...}.
    rays: ``Rays`` of batch shape [...].
    chunk: int, rays per call; the last chunk is padded to this size.

  Returns:
    dict of NumPy arrays: rgb f32[..., 3]; depth, disparity, acc f32[...].
  """
  batch_shape = rays.origins.shape[:-1]
  flat = jax.tree_util.tree_map(
      lambda x: np.asarray(x).reshape((-1, x.shape[-1])), rays)
  n = flat.origins.shape[0]
  chunk = max(1, min(int(chunk), n))
  devices = jax.device_count()
  chunk = -(-chunk // devices) * devices  # a multiple of the device count
  if jax.process_count() > 1:
    # Host arrays cannot feed devices of other processes: each process
    # places its own devices' rows of the (identical) chunk.
    sharding = distributed.batch_sharded(distributed.make_mesh())
    place = lambda part: jax.tree_util.tree_map(
        lambda x: distributed.global_array(x, sharding), part)
  else:
    place = lambda part: part
  pieces = []
  for start in range(0, n, chunk):
    part = jax.tree_util.tree_map(lambda x: x[start:start + chunk], flat)
    valid = part.origins.shape[0]
    if valid < chunk:
      # Pad by repeating the last ray so the compiled shape never changes.
      part = jax.tree_util.tree_map(
          lambda x: np.concatenate(
              [x, np.repeat(x[-1:], chunk - valid, axis=0)]), part)
    out = render_fn(variables, place(part))
    pieces.append({k: np.asarray(v)[:valid] for k, v in out.items()})
  return {
      k: np.concatenate([p[k] for p in pieces]).reshape(
          batch_shape + pieces[0][k].shape[1:]) for k in pieces[0]
  }


def render_view(render_fn: Callable, variables, intrinsics: camera.Intrinsics,
                c2w: np.ndarray, near: float, far: float, chunk: int,
                ndc: bool = False) -> dict:
  """Renders one pinhole camera view (``ndc``: rays through NDC, as the
  scene was trained).

  Args:
    render_fn: from ``make_render_fn``.
    variables: the model's {'params': ..., 'state': ...}.
    intrinsics: the camera (its width and height set the image size).
    c2w: f32[4, 4], camera-to-world pose.
    near, far: float, the sampled interval.
    chunk: int, rays per call.

  Returns:
    dict: rgb f32[h, w, 3]; depth, disparity, acc f32[h, w].
  """
  cameras = camera.Cameras.create(np.asarray(c2w, np.float32)[None],
                                  intrinsics, ndc=ndc)
  return render_camera(render_fn, variables, cameras, 0, near, far, chunk)


def render_camera(render_fn: Callable, variables, cameras: camera.Cameras,
                  view: int, near: float, far: float, chunk: int) -> dict:
  """Renders view ``view`` of ``cameras`` (its own size, lens distortion and
  NDC): dict of rgb f32[h, w, 3]; depth, disparity, acc f32[h, w]."""
  rays = image_rays(cameras, view, near, far)
  return render_rays_chunked(render_fn, variables, rays, chunk)


def image_rays(cameras: camera.Cameras, view: int, near: float,
               far: float) -> camera.Rays:
  """Every ray of one view, [height, width], by ``camera.cast_rays`` (the
  ray caster training uses), computed on the default device."""
  height, width = int(cameras.height[view]), int(cameras.width[view])
  rows, cols = np.meshgrid(np.arange(height, dtype=np.int32),
                           np.arange(width, dtype=np.int32), indexing='ij')
  rays = _cast_rays(cameras, np.full_like(rows, view), rows, cols,
                    np.float32(near), np.float32(far))
  return jax.tree_util.tree_map(np.asarray, rays)


_cast_rays = jax.jit(camera.cast_rays)


# ---------------------------------------------------------------------------
# Camera paths.


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


TRAJECTORIES = ('auto', 'orbit', 'spiral', 'smooth')


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
    return kind, poses.smooth_path(train, num_frames)
  focus = info.focus_depth or float(np.median(
      np.linalg.norm(train[:, :3, 3], axis=-1)))
  return kind, poses.spiral_poses(train, focus, num_frames)


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
_PATH_KEYS = ('poses', 'intrinsics')
_INTRINSICS_KEYS = ('fx', 'fy', 'cx', 'cy', 'width', 'height')


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
  origin (``camera.pose_problem``); width and height in [1,
  ``MAX_RENDER_SIDE``]; fx and fy from 0.01 to 1000 times the larger side
  and cx, cy at most one image size off the image
  (``camera.intrinsics_problem``). The file must be a regular file (not a
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
  problem = camera.pose_problem(poses)
  if problem:
    raise ValueError(f'{where}: {problem}')
  if poses.shape[1] == 3:
    bottom = np.tile(np.array([[[0, 0, 0, 1]]], np.float64), (len(poses), 1, 1))
    poses = np.concatenate([poses, bottom], axis=1)
  return poses.astype(np.float32), intrinsics


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
  problem = camera.intrinsics_problem(*(doc[k] for k in _INTRINSICS_KEYS))
  if problem:
    raise ValueError(f'{where}: {problem}')
  return camera.Intrinsics(
      fx=float(doc['fx']), fy=float(doc['fy']), cx=float(doc['cx']),
      cy=float(doc['cy']), width=int(doc['width']), height=int(doc['height']))


def render_size_problem(intrinsics: camera.Intrinsics) -> str:
  """'' or why frames of this camera are too large to render."""
  if max(intrinsics.width, intrinsics.height) > MAX_RENDER_SIDE:
    return (f'frames of {intrinsics.width}x{intrinsics.height} pixels are too '
            f'large (at most {MAX_RENDER_SIDE} a side)')
  return ''


# ---------------------------------------------------------------------------
# Writing videos.


def _even(frames: np.ndarray) -> np.ndarray:
  """Pads f[n, h, w, 3] to even h and w (H.264 with yuv420p needs them)."""
  h, w = frames.shape[1:3]
  return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='edge')


_VIDEO_EXTENSIONS = ('.mp4', '.gif')


def video_kind(path: str) -> str:
  """The kind of output ``write_video`` makes at ``path``: a file for .mp4
  and .gif, else a folder of PNG frames (``outputs.FILE``/``FOLDER``)."""
  ext = os.path.splitext(path)[1]
  return outputs.FILE if ext in _VIDEO_EXTENSIONS else outputs.FOLDER


class _EncoderUnavailable(Exception):
  """The MP4 encoder failed (not the file system)."""


def _write_mp4(path: str, frames: np.ndarray, fps: float,
               quality: float) -> None:
  try:
    import imageio.v2 as iio2  # pylint: disable=g-import-not-at-top
    with iio2.get_writer(path, format='FFMPEG', mode='I', fps=fps,
                         codec='libx264', quality=quality,
                         pixelformat='yuv420p', macro_block_size=1) as w:
      for frame in _even(frames):
        w.append_data(frame)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    raise _EncoderUnavailable(first) from e


def _write_pngs(folder: str, frames: np.ndarray) -> None:
  os.makedirs(folder)
  for i, frame in enumerate(frames):
    iio.imwrite(os.path.join(folder, f'{i:04d}.png'), frame)


def write_video(path: str, frames: np.ndarray, fps: float,
                quality: float = 8.0, tool: str = 'render.py') -> str:
  """Writes uint8[n, h, w, 3] frames; returns the path actually written.

  ``.mp4`` uses H.264 through imageio-ffmpeg; if that encoder is unavailable
  a one-line warning is printed and a GIF is written next to it instead.
  ``.gif`` writes a looping GIF; a path without an extension a folder of
  PNGs. The output is written as one output of ``tool``
  (``outputs.write``): complete or not at all, replacing only an earlier
  output of the same tool. ValueError for fps <= 0 or quality outside
  [0, 10]; outputs.OutputError for a path that is not ours to write.
  """
  if not (np.isfinite(fps) and fps > 0):
    raise ValueError(f'fps must be positive, got {fps}')
  if not 0 <= quality <= 10:
    raise ValueError(f'quality must be in [0, 10], got {quality}')
  outputs.check(path, tool, video_kind(path))
  base, ext = os.path.splitext(path)
  if ext == '.mp4':
    try:
      outputs.write(path, tool, lambda tmp: _write_mp4(tmp, frames, fps,
                                                        quality))
      return path
    except _EncoderUnavailable as e:
      print(f'warning: MP4 encoder unavailable ({e}); writing a GIF '
            'instead', file=sys.stderr)
      path, ext = base + '.gif', '.gif'
  if ext == '.gif':
    outputs.write(path, tool, lambda tmp: iio.imwrite(
        tmp, frames, duration=1000.0 / fps, loop=0))
  else:
    outputs.write(path, tool, lambda tmp: _write_pngs(tmp, frames),
                  kind=outputs.FOLDER)
  return path


# ---------------------------------------------------------------------------
# Evaluation and frame sequences.


def evaluate_split(render_fn: Callable, variables, split, near: float, far: float,
                   chunk: int, max_views: int = 0,
                   image_dir: str | None = None) -> dict:
  """Renders the views of a split with jitter off and scores them.

  Args:
    render_fn: from ``make_render_fn``.
    variables: the model's {'params': ..., 'state': ...}.
    split: a ``datasets.Split`` (each view's own camera is used).
    near, far: float, the sampled interval.
    chunk: int, rays per call.
    max_views: int, evaluate only the first N views (0 = all).
    image_dir: if given, each render is written there as ``<index>.png``.

  Returns:
    dict with psnr and ssim (means over views), views (a list of
    {index, psnr, ssim}) and first (the first view's renders plus
    ground_truth).
  """
  count = len(split) if max_views <= 0 else min(max_views, len(split))
  views, first = [], None
  for i in range(count):
    out = render_camera(render_fn, variables, split.cameras, i, near, far,
                        chunk)
    gt = split.images[i]
    index = int(split.indices[i])
    views.append(dict(index=index, psnr=metrics.psnr(out['rgb'], gt),
                      ssim=metrics.ssim(out['rgb'], gt)))
    if image_dir:
      iio.imwrite(os.path.join(image_dir, f'{index:04d}.png'),
                  viz.to_uint8(out['rgb']))
    if first is None:
      first = dict(out, ground_truth=gt)
  return dict(psnr=float(np.mean([v['psnr'] for v in views])),
              ssim=float(np.mean([v['ssim'] for v in views])),
              views=views, first=first)


def depth_to_rgb(depths: np.ndarray, accs: np.ndarray,
                 background: float) -> np.ndarray:
  """Colour-maps depth frames with one range for the whole sequence.

  The range is the 1st-99th percentile of depth where the ray is mostly
  opaque, so the colours do not flicker from frame to frame; empty space fades
  to the background colour.

  Args:
    depths: f32[n, h, w], expected termination t.
    accs: f32[n, h, w], accumulated opacity.
    background: float, grey level for empty space (0 black, 1 white).

  Returns:
    f32[n, h, w, 3] in [0, 1].
  """
  solid = depths[accs > 0.5]
  if solid.size:
    lo, hi = np.percentile(solid, [1, 99])
  else:
    lo, hi = float(depths.min()), float(depths.max())
  hi = max(hi, lo + 1e-6)
  return np.stack([viz.colorize_depth(d, a, lo, hi, background)
                   for d, a in zip(depths, accs)])


def render_sequence(render_fn: Callable, variables, poses: np.ndarray,
                    intrinsics: camera.Intrinsics, near: float, far: float,
                    chunk: int, progress: bool = True,
                    ndc: bool = False) -> dict:
  """Renders a camera path (pinhole cameras; ``ndc`` as the scene was
  trained).

  Returns:
    dict: rgb f32[n, h, w, 3], depth and acc f32[n, h, w].
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  rgbs, depths, accs = [], [], []
  for c2w in tqdm(poses, desc='frames', disable=not progress,
                  dynamic_ncols=True):
    out = render_view(render_fn, variables, intrinsics, c2w, near, far, chunk,
                      ndc=ndc)
    rgbs.append(out['rgb'])
    depths.append(out['depth'])
    accs.append(out['acc'])
  return dict(rgb=np.stack(rgbs), depth=np.stack(depths), acc=np.stack(accs))
