"""Structure from motion: a folder of photos or a video to a NeRF scene.

``prepare_scene`` turns the capture into a scene folder in the instant-ngp /
nerfstudio ``transforms.json`` form::

  SCENE/transforms.json        intrinsics, distortion and a camera-to-world
                               matrix per registered image (OpenGL axes)
  SCENE/images/                the photos or video frames, downscaled
  SCENE/colmap/                COLMAP's database and sparse model (sparse/0)

It uses only pip-installable parts: imageio-ffmpeg decodes videos and pycolmap
(the COLMAP library, CPU wheel) extracts SIFT features, matches them and runs
incremental mapping. Written against pycolmap 4.2 (``extract_features``,
``match_exhaustive`` / ``match_sequential``, ``incremental_mapping``,
``Image.cam_from_world()`` as a method, poses held by frames and rigs).

Two guards against wrong poses: a camera whose fl_x and fl_y disagree is an
error (``check_cameras``), and a model that contradicts many of the verified
pairwise matches (``pair_agreement``) is mapped again with other seeds.
Images that did not register stay in images/ but are left out of frames.

The world of ``transforms.json`` follows instant-ngp's colmap2nerf: +z is the
mean of the cameras' up vectors, the origin is the point closest (least
squares) to all the cameras' optical axes, and the mean camera distance to it
is 4. Camera-to-world matrices use OpenGL axes (x right, y up, looking down
-z).

Every function here that fails on bad input raises ``SfmError`` with a
one-line message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from typing import Iterable, Optional, Sequence

import numpy as np

from nerf_jax import errors, resources
from nerf_jax.io import inputs, outputs
from nerf_jax.cameras import poses as poses_lib

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTENSIONS = ('.mp4', '.mov', '.m4v', '.avi', '.mkv', '.webm', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.3gp', '.mts', '.ts')
# Camera models whose parameters map onto transforms.json's fl_x, fl_y, cx, cy
# and OpenCV radial-tangential k1 k2 p1 p2.
CAMERA_MODELS = ('OPENCV', 'RADIAL', 'SIMPLE_RADIAL', 'PINHOLE',
                 'SIMPLE_PINHOLE')
MATCHERS = ('auto', 'exhaustive', 'sequential')
# Mapping is retried with other seeds while fewer of the verified matches
# than this agree with the model (see pair_agreement); measured on the fox:
# 0.93-0.95 for right models, 0.82-0.83 for two wrong ones.
MIN_AGREEMENT = 0.9
MAPPING_ATTEMPTS = 3
JPEG_QUALITY = 95
# The focal length SfM starts from, over the longest image side, for images
# whose EXIF gives none (all video frames): 0.8 is a phone's main camera
# (26 mm equivalent: 26 / 36 = 0.72, more with video stabilisation's crop).
# COLMAP's own default, 1.2, is a 43 mm lens; SfM refines either, but a poor
# start can send incremental mapping down a wrong initial pair (the fox at
# 1600 px does with 1.2 and not with 0.8).
DEFAULT_FOCAL_FACTOR = 0.8
TARGET_RADIUS = 4.0  # mean camera distance to the origin, as colmap2nerf
# instant-ngp maps a position x to x * 0.33 + 0.5: its unit cube spans
# [-1.5, 1.5] here, and aabb_scale multiplies that.
NGP_UNIT_HALF_WIDTH = 1.5


class SfmError(errors.UserError):
  """A capture or option that cannot make a scene (one-line message)."""


@dataclasses.dataclass
class Frame:
  """An image written for SfM: its file name, where it came from, sharpness."""
  name: str
  source: str
  sharpness: float


# ---------------------------------------------------------------------------
# Inputs: photos and video frames.


def natural_key(name: str):
  """Sort key that puts 'img2' before 'img10'."""
  return [int(p) if p.isdigit() else p.lower()
          for p in re.split(r'(\d+)', name)]


def is_image_file(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str) -> list:
  """The image files directly inside ``folder``, in natural name order."""
  if not os.path.isdir(folder):
    raise SfmError(f'{folder}: not a folder')
  names = [n for n in os.listdir(folder)
           if not n.startswith('.') and is_image_file(n)
           and os.path.isfile(os.path.join(folder, n))]
  if not names:
    raise SfmError(f'{folder}: no images (looked for '
                   f'{", ".join(IMAGE_EXTENSIONS)})')
  return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def sharpness(image) -> float:
  """Variance of the 4-neighbour Laplacian of the image's luma.

  ``image`` is HxW or HxWx3 (uint8 in [0, 255], or float on any scale: the
  score scales with its square). Only interior pixels are used (no padding),
  so a constant or linear image scores exactly 0. Higher means sharper; the
  score is only comparable between images of the same size and content type.
  """
  g = np.asarray(image, dtype=np.float64)
  if g.ndim == 3:
    g = g[..., :3] @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma
  if g.ndim != 2:
    raise ValueError(f'expected an HxW or HxWx3 image, got shape {g.shape}')
  if g.shape[0] < 3 or g.shape[1] < 3:
    return 0.0
  lap = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
         - 4.0 * g[1:-1, 1:-1])
  return float(lap.var())


def fit_size(width: int, height: int, max_size: int) -> tuple:
  """(width, height) scaled down so the longer side is at most ``max_size``
  (0: unchanged). Never upscales."""
  longest = max(width, height)
  if not max_size or longest <= max_size:
    return int(width), int(height)
  s = max_size / longest
  return max(1, round(width * s)), max(1, round(height * s))


def keep_sharp(scores: Sequence[float], keep_ratio: float) -> np.ndarray:
  """bool mask: False where a score is below ``keep_ratio`` x the median.

  ``keep_ratio`` 0 keeps everything.
  """
  scores = np.asarray(scores, dtype=np.float64)
  if keep_ratio <= 0 or scores.size == 0:
    return np.ones(scores.shape, bool)
  return scores >= keep_ratio * float(np.median(scores))


def _pil():
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top
  return Image, ImageOps


def prepare_photos(paths: Sequence[str], image_dir: str, max_size: int,
                   blur_keep: float = 0.0) -> tuple:
  """Writes the photos into ``image_dir`` (upright, downscaled to
  ``max_size``) and drops those much blurrier than the rest.

  Returns (kept frames, dropped frames). A photo that needs no change
  (no resize, no EXIF rotation, an RGB JPEG or PNG) is copied byte for byte;
  others are written as JPEG (PNG for PNG and lossless inputs), keeping their
  EXIF (with the orientation reset) so COLMAP can read the focal length.
  """
  Image, ImageOps = _pil()
  os.makedirs(image_dir, exist_ok=True)
  frames, used = [], set()
  for path in paths:
    inputs.check_input_file(path, 'an image file', inputs.MAX_IMAGE_BYTES,
                            SfmError)
    try:
      with warnings.catch_warnings():  # the memory is checked here instead
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        im = Image.open(path)  # reads the header only
        _check_decode_fits(path, *im.size, max_size)
        im.load()
    except (OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as e:
      raise SfmError(f'{path}: unreadable image ({e})') from None
    with im:
      rotated = im.getexif().get(0x0112, 1) not in (1, None)
      upright = ImageOps.exif_transpose(im) if rotated else im
      size = fit_size(*upright.size, max_size)
      rgb = upright.convert('RGB')
      if size != rgb.size:
        rgb = rgb.resize(size, Image.LANCZOS)
      ext = os.path.splitext(path)[1].lower()
      stem = os.path.splitext(os.path.basename(path))[0]
      out_ext = ext if ext in ('.jpg', '.jpeg', '.png') else '.png'
      name, k = stem + out_ext, 1
      while name.lower() in used:
        name, k = f'{stem}_{k}{out_ext}', k + 1
      used.add(name.lower())
      out = os.path.join(image_dir, name)
      if (size == im.size and not rotated and im.mode == 'RGB'
          and ext == out_ext):
        shutil.copyfile(path, out)
      elif out_ext == '.png':
        rgb.save(out)
      else:
        rgb.save(out, quality=JPEG_QUALITY,
                 exif=_exif_for_copy(im, resized=size != upright.size))
      frames.append(Frame(name, path, sharpness(np.asarray(rgb))))
  return _drop_blurry(frames, image_dir, blur_keep)


# Memory per pixel of a photo or frame as decoded (and turned upright, to
# RGB), and per pixel of its downscaled copy (which the sharpness is
# computed on in float64).
_DECODED_BYTES_PER_PIXEL = 16
_SCALED_BYTES_PER_PIXEL = 64


def _check_decode_fits(path: str, width: int, height: int,
                       max_size: int) -> None:
  """Refuses, from its declared size and before decoding, a photo or video
  whose pixels cannot fit in memory (a small file may declare a huge
  image): ``errors.UserError`` with one line naming it."""
  w, h = fit_size(width, height, max_size)
  resources.check_fits(
      _DECODED_BYTES_PER_PIXEL * width * height
      + _SCALED_BYTES_PER_PIXEL * w * h,
      f'decoding {path} ({width}x{height} pixels)',
      'use a smaller image' + ('' if max_size else ' or set --max_size'))


def _exif_for_copy(im, resized: bool) -> bytes:
  """The photo's EXIF for its upright, maybe downscaled copy: COLMAP takes
  its starting focal length from the 35 mm equivalent focal length there."""
  exif = im.getexif()
  if not exif:
    return b''
  sub = exif.get_ifd(0x8769)  # the Exif sub-IFD, loaded so that it is kept
  if 0x0112 in exif:
    exif[0x0112] = 1  # the pixels are upright now
  if resized:
    # Focal-plane resolution is in pixels of the original size: drop it so
    # the focal length cannot be derived at the wrong scale.
    for tag in (0xA002, 0xA003, 0xA20E, 0xA20F, 0xA210):
      sub.pop(tag, None)
  return exif.tobytes()


def _drop_blurry(frames: list, image_dir: str, blur_keep: float) -> tuple:
  mask = keep_sharp([f.sharpness for f in frames], blur_keep)
  kept = [f for f, k in zip(frames, mask) if k]
  dropped = [f for f, k in zip(frames, mask) if not k]
  for f in dropped:
    os.remove(os.path.join(image_dir, f.name))
  return kept, dropped


def _unreadable_video(path: str, error: Exception) -> 'SfmError':
  first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
  return SfmError(f'{path}: not a readable video ({first})')


def probe_video(path: str) -> dict:
  """imageio-ffmpeg's metadata of a video (size, fps, duration)."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  gen = imageio_ffmpeg.read_frames(path)
  try:
    return next(gen)
  except (OSError, RuntimeError, StopIteration) as e:
    raise _unreadable_video(path, e) from None
  finally:
    gen.close()


def iter_video_frames(path: str, fps: float = 0.0,
                      max_size: int = 0) -> Iterable:
  """Yields the video's frames as uint8 HxWx3 arrays (upright), optionally
  resampled by ffmpeg to ``fps`` frames per second (0: every frame). A
  frame size that cannot fit in memory (downscaled to ``max_size`` as
  ``extract_video_frames`` does) is refused before the first frame."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  output_params = ['-vf', f'fps={fps:g}'] if fps else None
  gen = imageio_ffmpeg.read_frames(path, output_params=output_params)
  try:
    meta = next(gen)
    width, height = meta['size']
    _check_decode_fits(path, width, height, max_size)
    for raw in gen:
      yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
  except (OSError, RuntimeError, StopIteration) as e:
    raise _unreadable_video(path, e) from None
  finally:
    gen.close()


def extract_video_frames(path: str, image_dir: str, max_frames: int = 150,
                         fps: float = 0.0, max_size: int = 0,
                         blur_keep: float = 0.0,
                         num_frames: Optional[int] = None) -> tuple:
  """Picks about ``max_frames`` sharp frames of a video into ``image_dir``.

  The decoded frames (every frame, or ``fps`` per second) are cut into
  windows of consecutive frames, as many windows as ``max_frames``, and the
  sharpest frame of each window is kept; then frames below ``blur_keep`` x
  the median sharpness of those kept are dropped. Frames are written as
  ``frame_NNNNNN.jpg``, NNNNNN being the frame's index among the decoded ones,
  after downscaling to ``max_size``. Frames stream through: memory holds one
  window's best frame, not the video.

  Args:
    num_frames: the number of decoded frames if known (default: estimated
      from the video's duration and frame rate).

  Returns (kept frames, dropped frames, number of frames decoded).
  """
  Image, _ = _pil()
  if max_frames < 1:
    raise SfmError('--max_frames must be at least 1')
  if num_frames is None:
    meta = probe_video(path)
    rate = fps or float(meta.get('fps') or 0)
    duration = float(meta.get('duration') or 0)
    if rate > 0 and 0 < duration < float('inf'):
      num_frames = max(1, round(rate * duration))
    else:
      import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
      num_frames, secs = imageio_ffmpeg.count_frames_and_secs(path)
      if fps:
        num_frames = max(1, round(secs * fps))
  window = max(1, math.ceil(num_frames / max_frames))
  os.makedirs(image_dir, exist_ok=True)
  frames, best, decoded = [], None, 0

  def flush():
    index, score, image = best
    name = f'frame_{index:06d}.jpg'
    Image.fromarray(image).save(os.path.join(image_dir, name),
                                quality=JPEG_QUALITY)
    frames.append(Frame(name, f'{path}#{index}', score))

  for index, frame in enumerate(iter_video_frames(path, fps, max_size)):
    decoded += 1
    size = fit_size(frame.shape[1], frame.shape[0], max_size)
    if size != (frame.shape[1], frame.shape[0]):
      frame = np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS))
    score = sharpness(frame)
    if best is not None and index // window != best[0] // window:
      flush()
      best = None
    if best is None or score > best[1]:
      best = (index, score, frame)
  if best is not None:
    flush()
  if not decoded:
    raise SfmError(f'{path}: the video has no frames')
  if len(frames) > max_frames:  # the frame count was underestimated
    keep = set(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
    for i, f in enumerate(frames):
      if i not in keep:
        os.remove(os.path.join(image_dir, f.name))
    frames = [f for i, f in enumerate(frames) if i in keep]
  kept, dropped = _drop_blurry(frames, image_dir, blur_keep)
  return kept, dropped, decoded


# ---------------------------------------------------------------------------
# COLMAP.


@dataclasses.dataclass
class SfmStats:
  num_images: int = 0
  num_keypoints: int = 0
  num_pairs: int = 0
  num_verified_pairs: int = 0
  num_registered: int = 0
  num_points: int = 0
  reprojection_error: float = float('nan')
  num_models: int = 0
  agreement: float = float('nan')  # see pair_agreement
  attempts: int = 0                # incremental mapping runs


class Stages:
  """Prints one line per stage ('name: what ... result (time)') and keeps
  each stage's wall time in ``times``."""

  def __init__(self, stream=None):
    self.stream = stream
    self.times = {}

  @contextlib.contextmanager
  def stage(self, name: str, what: str):
    out = self.stream
    if out is not None:
      out.write(f'{name}: {what} ...')
      out.flush()
    result = {}
    start = time.perf_counter()
    try:
      yield result
    except BaseException:
      if out is not None:
        out.write(' failed\n')
        out.flush()
      raise
    self.times[name] = time.perf_counter() - start
    if out is not None:
      out.write(f' {result.get("result", "done")} '
                f'({self.times[name]:.1f} s)\n')
      out.flush()

  def line(self, text: str):
    if self.stream is not None:
      self.stream.write(text + '\n')
      self.stream.flush()


def import_pycolmap():
  """pycolmap, with SIGTERM and SIGINT left to Python's handlers.

  Importing pycolmap installs glog's failure signal handler, which answers
  SIGTERM with a native stack dump (about 25 lines) and kills the process
  before Python can remove what it made (prepare_scene's temporary folder
  beside ``out``). Python's handlers are put back at once, so SIGTERM
  raises in Python as Ctrl-C does, once pycolmap returns or checks for
  signals (feature extraction and mapping do, matching does not: see
  ``run_colmap_apart``). The crash signals (SIGSEGV, SIGABRT, ...) keep
  glog's stack dump.

  Raises ImportError when pycolmap is not installed.
  """
  import signal  # pylint: disable=g-import-not-at-top
  import pycolmap  # pylint: disable=g-import-not-at-top
  for signum in (signal.SIGTERM, signal.SIGINT):
    handler = signal.getsignal(signum)  # Python's, whatever glog set since
    if handler is None:  # set outside Python: not ours to restore
      continue
    try:
      signal.signal(signum, handler)
    except ValueError:  # not the main thread: it cannot have handlers
      pass
  return pycolmap


@contextlib.contextmanager
def colmap_logging(verbose: bool):
  """Silences COLMAP's log (glog, on stderr) unless ``verbose``."""
  pycolmap = import_pycolmap()
  old = pycolmap.logging.minloglevel
  pycolmap.logging.minloglevel = 0 if verbose else 3
  try:
    yield
  finally:
    pycolmap.logging.minloglevel = old


def run_colmap(image_dir: str, work_dir: str, *, camera_model: str = 'OPENCV',
               single_camera: bool = True, matcher: str = 'exhaustive',
               focal_factor: float = DEFAULT_FOCAL_FACTOR,
               num_threads: int = -1, seed: int = 0, verbose: bool = False,
               stages: Optional[Stages] = None) -> tuple:
  """Features, matching and incremental mapping on every image in a folder.

  Writes ``work_dir/database.db`` and the largest reconstruction to
  ``work_dir/sparse/0``. Returns (pycolmap.Reconstruction or None, SfmStats).
  """
  try:
    pycolmap = import_pycolmap()
  except ImportError:
    raise SfmError('pycolmap is not installed (pip install -r '
                   'requirements.txt, or pip install pycolmap)') from None
  if camera_model not in CAMERA_MODELS:
    raise SfmError(f'camera model {camera_model!r} is not one of '
                   f'{", ".join(CAMERA_MODELS)}')
  if matcher not in ('exhaustive', 'sequential'):
    raise SfmError(f'matcher {matcher!r} is not exhaustive or sequential')
  stages = stages or Stages(None)
  names = sorted((n for n in os.listdir(image_dir) if is_image_file(n)),
                 key=natural_key)
  n = len(names)
  stats = SfmStats(num_images=n)
  os.makedirs(work_dir, exist_ok=True)
  database = os.path.join(work_dir, 'database.db')
  pycolmap.set_random_seed(seed)
  with colmap_logging(verbose):
    with stages.stage('features', f'SIFT on {n} images') as r:
      reader = pycolmap.ImageReaderOptions()
      reader.camera_model = camera_model
      reader.default_focal_length_factor = focal_factor
      extraction = pycolmap.FeatureExtractionOptions()
      extraction.num_threads = num_threads
      mode = (pycolmap.CameraMode.SINGLE if single_camera
              else pycolmap.CameraMode.PER_IMAGE)
      pycolmap.extract_features(database, image_dir, image_names=names,
                                camera_mode=mode, reader_options=reader,
                                extraction_options=extraction,
                                device=pycolmap.Device.auto)
      with pycolmap.Database.open(database) as db:
        stats.num_keypoints = int(db.num_keypoints())
        if db.num_images() != n:
          raise SfmError(f'COLMAP read {db.num_images()} of the {n} images '
                         f'in {image_dir}')
      r['result'] = f'{stats.num_keypoints} keypoints'

    stats.num_pairs = (n * (n - 1) // 2 if matcher == 'exhaustive' else -1)
    pairs = f'{stats.num_pairs} pairs' if stats.num_pairs >= 0 else 'neighbours'
    with stages.stage('matching', f'{matcher}, {pairs}') as r:
      matching = pycolmap.FeatureMatchingOptions()
      matching.num_threads = num_threads
      if matcher == 'exhaustive':
        pycolmap.match_exhaustive(database, matching_options=matching,
                                  device=pycolmap.Device.auto)
      else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.num_threads = num_threads
        pycolmap.match_sequential(database, matching_options=matching,
                                  pairing_options=pairing,
                                  device=pycolmap.Device.auto)
      with pycolmap.Database.open(database) as db:
        _, inliers = db.read_two_view_geometry_num_inliers()
        if stats.num_pairs < 0:
          stats.num_pairs = int(db.num_matched_image_pairs())
      # Pairs the mapper can use (its min_num_matches, 15 by default).
      min_inliers = pycolmap.IncrementalPipelineOptions().min_num_matches
      stats.num_verified_pairs = int(sum(k >= min_inliers for k in inliers))
      r['result'] = (f'{stats.num_verified_pairs} of {stats.num_pairs} pairs '
                     f'with {min_inliers}+ verified matches')

    with stages.stage('mapping', f'incremental, {n} images') as r:
      rec = None
      for attempt in range(MAPPING_ATTEMPTS):
        model, num_models = _map_once(pycolmap, database, image_dir, work_dir,
                                      num_threads, seed + attempt)
        stats.attempts = attempt + 1
        if model is None:
          break
        agreement = pair_agreement(database, model)
        if rec is None or agreement > stats.agreement:
          rec, stats.agreement, stats.num_models = model, agreement, num_models
        if agreement >= MIN_AGREEMENT:
          break
      if rec is not None:
        stats.num_registered = int(rec.num_reg_images())
        stats.num_points = int(rec.num_points3D())
        stats.reprojection_error = float(rec.compute_mean_reprojection_error())
        sparse = os.path.join(work_dir, 'sparse', '0')
        os.makedirs(sparse, exist_ok=True)
        rec.write(sparse)
      r['result'] = f'{stats.num_registered} of {n} images registered'
      if rec is not None:
        r['result'] += (f', {stats.num_points} points, reprojection error '
                        f'{stats.reprojection_error:.2f} px, '
                        f'{100 * stats.agreement:.0f} % of matches agree')
      if stats.num_models > 1:
        r['result'] += f', {stats.num_models} models (kept the largest)'
      if stats.attempts > 1:
        r['result'] += f', {stats.attempts} attempts'
    if rec is not None and stats.agreement < MIN_AGREEMENT:
      stages.line(
          f'warning: only {100 * stats.agreement:.0f} % of the verified '
          'matches agree with the best of '
          f'{stats.attempts} reconstructions; poses may be wrong (try more '
          'photos with more overlap, or another --seed)')
  return rec, stats


def _map_once(pycolmap, database, image_dir, work_dir, num_threads, seed):
  """One incremental mapping run: (largest model or None, number of models)."""
  options = pycolmap.IncrementalPipelineOptions()
  options.min_model_size = 3
  options.num_threads = num_threads
  options.random_seed = seed
  pycolmap.set_random_seed(seed)
  mapper_dir = os.path.join(work_dir, 'mapper')
  os.makedirs(mapper_dir, exist_ok=True)
  try:
    models = pycolmap.incremental_mapping(database, image_dir, mapper_dir,
                                          options)
  finally:
    shutil.rmtree(mapper_dir, ignore_errors=True)
  rec = max(models.values(), key=lambda m: m.num_reg_images(), default=None)
  return rec, len(models)


def run_colmap_apart(image_dir: str, work_dir: str, *,
                     stages: Optional[Stages] = None, **options) -> tuple:
  """``run_colmap`` in a child process, so that a signal stops it at once.

  pycolmap's matching looks at no signal for as long as it runs (minutes on
  a large capture), so Ctrl-C and SIGTERM would wait for it, and glog's
  handler (installed by importing pycolmap) turns SIGTERM into a native
  stack dump. The child (a fresh interpreter) starts with SIGINT and
  SIGTERM blocked, so neither reaches it, even sent to the whole process
  group; this process keeps its handlers and waits for the child's
  messages, so a signal raises here at once, the child is killed and the
  caller removes what it made. The child's progress lines are written to
  ``stages``' stream here.

  Args:
    image_dir, work_dir: as ``run_colmap``; options: its keyword arguments.
    stages: where the stages are shown and timed.

  Returns:
    What ``run_colmap`` returns, the model read back from
    ``work_dir/sparse/0``; raises what it raised (with the child's traceback
    as a note where it is a bug, for --verbose).
  """
  import pickle  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  from multiprocessing import connection  # pylint: disable=g-import-not-at-top
  stages = stages or Stages(None)
  out = stages.stream
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (root, os.environ.get('PYTHONPATH')) if p))
  read_fd, write_fd = os.pipe()
  receiver = connection.Connection(read_fd, writable=False)
  child = None
  line_open = False
  try:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK,
                                  {signal.SIGINT, signal.SIGTERM})
    try:  # the child inherits the mask: only this process sees the signals
      child = subprocess.Popen(
          [sys.executable, '-c', 'import sys; from nerf_jax.sfm import sfm; '
           'sfm._colmap_child(int(sys.argv[1]))', str(write_fd)],
          stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env)
    finally:
      signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # pending ones land
      os.close(write_fd)
    with child.stdin:
      child.stdin.write(pickle.dumps(
          (image_dir, work_dir, options, out is not None)))
    while True:
      try:
        kind, payload = receiver.recv()
      except EOFError:
        raise SfmError(f'COLMAP stopped unexpectedly ({_ended(child.wait())})'
                       '; run again with --verbose for its log') from None
      if kind == 'write':
        if out is not None:
          line_open = not payload.endswith('\n')  # before a signal can land
          out.write(payload)
          out.flush()
      elif kind == 'error':
        raise payload
      else:
        stats, times = payload
        break
  except BaseException:
    if line_open:
      out.write(' failed\n')
      out.flush()
    raise
  finally:
    if child is not None:
      child.kill()  # if it still runs
      child.wait()
    receiver.close()
  stages.times.update(times)
  sparse = os.path.join(work_dir, 'sparse', '0')
  rec = (import_pycolmap().Reconstruction(sparse) if os.path.isdir(sparse)
         else None)
  return rec, stats


def _ended(code: int) -> str:
  """A child's exit status in words, e.g. 'killed by SIGKILL, out of
  memory?'."""
  import signal  # pylint: disable=g-import-not-at-top
  if code >= 0:
    return f'exit code {code}'
  try:
    name = signal.Signals(-code).name
  except ValueError:
    name = f'signal {-code}'
  return f'killed by {name}' + (', out of memory?' if -code == signal.SIGKILL
                                else '')


class _PipeStream:
  """A text stream that sends what is written through a multiprocessing
  connection, as ('write', text) messages."""

  def __init__(self, connection):
    self.connection = connection

  def write(self, text: str) -> None:
    self.connection.send(('write', text))

  def flush(self) -> None:
    pass


def _colmap_child(fd: int) -> None:
  """The child of ``run_colmap_apart``: reads its arguments (pickled) from
  stdin, runs COLMAP and sends ('done', (stats, stage times)) or ('error',
  exception) through the connection on ``fd``."""
  import pickle  # pylint: disable=g-import-not-at-top
  import traceback  # pylint: disable=g-import-not-at-top
  from multiprocessing import connection  # pylint: disable=g-import-not-at-top
  sender = connection.Connection(fd, readable=False)
  image_dir, work_dir, options, show = pickle.load(sys.stdin.buffer)
  stages = Stages(_PipeStream(sender) if show else None)
  try:
    _, stats = run_colmap(image_dir, work_dir, stages=stages, **options)
    message = ('done', (stats, stages.times))
  except BaseException as e:  # pylint: disable=broad-except
    try:
      pickle.loads(pickle.dumps(e))
    except Exception:  # pylint: disable=broad-except
      e = RuntimeError(f'{type(e).__name__}: {errors.first_line(e)}')
    if not isinstance(e, errors.UserError) and hasattr(e, 'add_note'):
      e.add_note('in the COLMAP process:\n' + traceback.format_exc())
    message = ('error', e)
  sender.send(message)
  sender.close()


def pair_agreement(database: str, rec, max_error_px: float = 4.0,
                   min_inliers: int = 15) -> float:
  """Share of the verified matches that agree with the model's poses.

  For every pair of registered images with at least ``min_inliers`` verified
  matches (two-view geometry from matching, before mapping), the model's
  relative pose and intrinsics give an essential matrix; a match agrees when
  its Sampson error is below ``max_error_px`` pixels. A right model agrees
  with nearly all matches except those of wrongly verified pairs (repeated
  texture); a model that placed part of the images wrongly (a bad initial
  pair) contradicts whole groups of good pairs.

  Returns the share over all such matches (nan when there are none).
  """
  pycolmap = import_pycolmap()
  agree = total = 0
  with pycolmap.Database.open(database) as db:
    pair_ids, geometries = db.read_two_view_geometries()
    keypoints = {}
    for pair_id, geometry in zip(pair_ids, geometries):
      matches = np.asarray(geometry.inlier_matches)
      if len(matches) < min_inliers:
        continue
      ids = pycolmap.pair_id_to_image_pair(pair_id)
      if not all(rec.exists_image(i) and rec.image(i).has_pose for i in ids):
        continue
      for i in ids:
        if i not in keypoints:
          keypoints[i] = db.read_keypoints(i)[:, :2].astype(np.float64)
      im1, im2 = rec.image(ids[0]), rec.image(ids[1])
      x1 = im1.camera.cam_from_img(keypoints[ids[0]][matches[:, 0]])
      x2 = im2.camera.cam_from_img(keypoints[ids[1]][matches[:, 1]])
      cam2_from_cam1 = im2.cam_from_world() * im1.cam_from_world().inverse()
      error = np.asarray(pycolmap.compute_squared_sampson_error(
          x1, x2, pycolmap.essential_matrix_from_pose(cam2_from_cam1)))
      # Sampson error in normalised coordinates: pixels over the focal.
      focal = np.sqrt(im1.camera.mean_focal_length()
                      * im2.camera.mean_focal_length())
      agree += int(np.sum(error < (max_error_px / focal) ** 2))
      total += len(matches)
  return agree / total if total else float('nan')


def check_registration(num_registered: int, num_images: int,
                       min_images: int = 3, min_fraction: float = 0.5):
  """Raises SfmError when too few images registered to make a scene."""
  if num_registered < min_images or num_registered < min_fraction * num_images:
    raise SfmError(
        f'only {num_registered} of {num_images} images registered (need at '
        f'least {max(min_images, math.ceil(min_fraction * num_images))}); try '
        'photos with more overlap between neighbours, sharper photos, '
        '--matcher exhaustive, or more frames (--max_frames)')


def check_cameras(rec, max_aspect: float = 1.2):
  """Raises SfmError for a camera whose focal lengths disagree by more than
  ``max_aspect`` (pixels are square on real cameras) or whose lens
  distortion no real lens has (``camera.distortion_problem``):
  self-calibration fell into a degenerate solution, and the poses are
  unreliable too."""
  for camera_id in sorted({rec.image(i).camera_id
                           for i in rec.reg_image_ids()}):
    camera = rec.camera(camera_id)
    ratio = float(camera.focal_length_x / camera.focal_length_y)
    if not 1.0 / max_aspect <= ratio <= max_aspect:
      raise SfmError(
          f'SfM found an implausible camera (fl_x/fl_y = {ratio:.2f}, '
          'expected about 1), so its poses are unreliable; try more photos '
          'with more overlap, a larger --max_size, or --camera_model '
          'SIMPLE_RADIAL')
    k = camera_intrinsics(camera)
    from nerf_jax.cameras import camera as camera_lib  # pylint: disable=g-import-not-at-top
    problem = camera_lib.distortion_problem(
        [k['k1'], k['k2'], k['p1'], k['p2']], k['fl_x'], k['fl_y'], k['cx'],
        k['cy'], k['w'], k['h'])
    if problem:
      raise SfmError(
          f'SfM found an implausible lens ({problem}), so its poses are '
          'unreliable; try more photos with more overlap, or --camera_model '
          'SIMPLE_RADIAL or PINHOLE')


# ---------------------------------------------------------------------------
# Geometry: COLMAP poses to a transforms.json world.


def colmap_to_c2w(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
  """COLMAP's world-to-camera (OpenCV axes) R, t -> 4x4 camera-to-world with
  OpenGL axes (x right, y up, looking down -z)."""
  w2c = np.eye(4)
  w2c[:3, :3] = rotation
  w2c[:3, 3] = np.ravel(translation)
  c2w = np.linalg.inv(w2c)
  c2w[:3, 1:3] *= -1.0
  return c2w


def normalize_poses(c2w: np.ndarray, points: Optional[np.ndarray] = None,
                    radius: float = TARGET_RADIUS) -> tuple:
  """Re-expresses OpenGL camera-to-world matrices in colmap2nerf's world.

  +z becomes the mean of the cameras' up vectors; the origin the point
  closest to all optical axes (for nearly parallel axes, the median of
  ``points`` or else the cameras' mean); the mean camera distance ``radius``.

  Returns (new c2w [n, 4, 4], world_from_old 4x4 similarity).
  """
  c2w = np.asarray(c2w, np.float64)
  origins = c2w[:, :3, 3]
  try:
    centre = poses_lib.focus_point(c2w)
  except ValueError:
    centre = (np.median(points, axis=0) if points is not None and len(points)
              else origins.mean(0))
  dist = np.linalg.norm(origins - centre, axis=-1).mean()
  scale = radius / dist if dist > 0 else 1.0
  return poses_lib.orient_and_center(c2w, centre, scale=scale)


def umeyama(src, dst, with_scale: bool = True) -> tuple:
  """Similarity (s, R, t) minimising sum |dst - (s R src + t)|^2 (Umeyama
  1991). ``src`` and ``dst`` are [n, 3] corresponding points, n >= 3."""
  src = np.asarray(src, np.float64)
  dst = np.asarray(dst, np.float64)
  mu_s, mu_d = src.mean(0), dst.mean(0)
  xs, xd = src - mu_s, dst - mu_d
  cov = xd.T @ xs / len(src)
  u, sv, vt = np.linalg.svd(cov)
  sign = np.eye(3)
  if np.linalg.det(u) * np.linalg.det(vt) < 0:
    sign[2, 2] = -1.0
  rot = u @ sign @ vt
  var_s = (xs ** 2).sum() / len(src)
  scale = float(np.trace(np.diag(sv) @ sign) / var_s) if with_scale else 1.0
  return scale, rot, mu_d - scale * rot @ mu_s


def rotation_angle_deg(r1, r2) -> np.ndarray:
  """Angle in degrees of the rotation r1^T r2 (batched over leading axes)."""
  rel = np.swapaxes(np.asarray(r1), -1, -2) @ np.asarray(r2)
  cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def alignment_errors(ours_c2w, ref_c2w) -> dict:
  """Aligns our camera centres to reference ones with a similarity and
  measures what is left: centre RMS error (absolute and relative to the
  reference cameras' RMS spread about their mean) and rotation errors."""
  ours = np.asarray(ours_c2w, np.float64)
  ref = np.asarray(ref_c2w, np.float64)
  s, rot, t = umeyama(ours[:, :3, 3], ref[:, :3, 3])
  moved = s * ours[:, :3, 3] @ rot.T + t
  err = np.linalg.norm(moved - ref[:, :3, 3], axis=-1)
  spread = np.sqrt(((ref[:, :3, 3] - ref[:, :3, 3].mean(0)) ** 2)
                   .sum(-1).mean())
  angles = rotation_angle_deg(rot @ ours[:, :3, :3], ref[:, :3, :3])
  return dict(rms=float(np.sqrt((err ** 2).mean())), max=float(err.max()),
              spread=float(spread),
              rms_relative=float(np.sqrt((err ** 2).mean()) / spread),
              rot_mean_deg=float(angles.mean()),
              rot_max_deg=float(angles.max()), scale=s, rotation=rot,
              translation=t)


def auto_aabb_scale(c2w) -> int:
  """The smallest power of 2 (1..128) whose instant-ngp box, half-width
  1.5 * aabb_scale about the origin, holds every camera centre."""
  extent = float(np.abs(np.asarray(c2w)[:, :3, 3]).max())
  scale = 1
  while NGP_UNIT_HALF_WIDTH * scale < extent and scale < 128:
    scale *= 2
  return scale


def camera_intrinsics(camera) -> dict:
  """A pycolmap camera as transforms.json intrinsics (fl_x ... p2)."""
  names = [p.strip() for p in camera.params_info.split(',')]
  values = dict(zip(names, (float(v) for v in camera.params)))
  out = dict(fl_x=0.0, fl_y=0.0, cx=0.0, cy=0.0, w=int(camera.width),
             h=int(camera.height), k1=0.0, k2=0.0, p1=0.0, p2=0.0)
  for key, value in values.items():
    if key == 'f':
      out['fl_x'] = out['fl_y'] = value
    elif key in ('fx', 'fy'):
      out['fl_' + key[1]] = value
    elif key == 'k':
      out['k1'] = value
    elif key in ('cx', 'cy', 'k1', 'k2', 'p1', 'p2'):
      out[key] = value
    else:
      raise SfmError(f'camera model {camera.model_name} has parameter {key!r}, '
                     'which transforms.json cannot hold; use one of '
                     f'{", ".join(CAMERA_MODELS)}')
  out['camera_angle_x'] = 2.0 * math.atan(out['w'] / (2.0 * out['fl_x']))
  out['camera_angle_y'] = 2.0 * math.atan(out['h'] / (2.0 * out['fl_y']))
  return out


def reconstruction_to_transforms(rec, *, image_prefix: str = 'images',
                                 sharpness_by_name: Optional[dict] = None,
                                 aabb_scale: Optional[int] = 0) -> tuple:
  """A pycolmap.Reconstruction as a transforms.json dict.

  ``aabb_scale``: 0 picks it with ``auto_aabb_scale``; None leaves it out.

  Returns (transforms dict, world_from_colmap 4x4 similarity: a COLMAP world
  point x maps to world_from_colmap @ [x, 1]).
  """
  images = sorted((rec.image(i) for i in rec.reg_image_ids()),
                  key=lambda im: natural_key(im.name))
  if not images:
    raise SfmError('the reconstruction has no registered images')
  c2w = []
  for im in images:
    pose = im.cam_from_world()
    c2w.append(colmap_to_c2w(pose.rotation.matrix(), pose.translation))
  points = np.array([p.xyz for p in rec.points3D.values()]).reshape(-1, 3)
  c2w, world = normalize_poses(np.stack(c2w), points)
  camera_ids = sorted({im.camera_id for im in images})
  model = rec.camera(camera_ids[0]).model_name
  shared = len(camera_ids) == 1
  out = dict(camera_model=model)
  if shared:
    out.update(camera_intrinsics(rec.camera(camera_ids[0])))
  if aabb_scale is not None:
    out['aabb_scale'] = int(aabb_scale) or auto_aabb_scale(c2w)
  frames = []
  for im, m in zip(images, c2w):
    frame = dict(file_path=f'{image_prefix}/{im.name}')
    if not shared:
      frame.update(camera_intrinsics(rec.camera(im.camera_id)))
    if sharpness_by_name and im.name in sharpness_by_name:
      frame['sharpness'] = float(sharpness_by_name[im.name])
    frame['transform_matrix'] = m.tolist()
    frames.append(frame)
  out['frames'] = frames
  return out, world


# ---------------------------------------------------------------------------
# The whole pipeline.


@dataclasses.dataclass
class PrepareResult:
  out: str
  num_inputs: int          # photos found, or video frames decoded
  num_images: int          # images given to SfM (after blur dropping)
  num_dropped: int         # dropped as blurry
  num_registered: int
  stats: SfmStats
  times: dict              # stage -> seconds
  transforms: dict
  world_from_colmap: np.ndarray


TOOL = 'prepare.py'


def _check_out(out: str, source: str, overwrite: bool):
  """--out must be new, empty or (with --overwrite) a scene prepare.py
  wrote and nobody changed since (``outputs``), and must not hold the
  input."""
  outputs.check(out, TOOL, outputs.FOLDER, '--out', replace=overwrite)
  a_out, a_src = os.path.realpath(out), os.path.realpath(source)
  if a_src == a_out or a_src.startswith(a_out + os.sep):
    raise SfmError(f'--out {out} holds the input {source}; choose another '
                   '--out')


def _move_into_place(tmp: str, out: str, overwrite: bool):
  """Renames the finished ``tmp`` folder to ``out`` (``outputs.install``):
  an earlier scene is removed only once the new one is in place."""
  outputs.install(tmp, out, TOOL, outputs.FOLDER, '--out', replace=overwrite)


def prepare_scene(source: str, out: str, *, max_size: int = 1600,
                  max_frames: int = 150, fps: float = 0.0,
                  blur_keep: float = 0.3, matcher: str = 'auto',
                  camera_model: str = 'OPENCV', single_camera: bool = True,
                  focal_factor: float = DEFAULT_FOCAL_FACTOR,
                  aabb_scale: int = 0, overwrite: bool = False,
                  num_threads: int = -1, seed: int = 0,
                  verbose: bool = False, stream=sys.stdout) -> PrepareResult:
  """Photos folder or video -> scene folder with transforms.json.

  Everything is built in a hidden temporary folder beside ``out`` and renamed
  into place at the end; on any error nothing at ``out`` changes.

  Args:
    source: a folder of photos or a video file.
    out: the scene folder to write; an existing non-empty one needs
      ``overwrite``.
    max_size: longest image side after downscaling (0: keep).
    max_frames: for a video, about how many frames to keep.
    fps: for a video, decode this many frames per second (0: all).
    blur_keep: drop images below this fraction of the median sharpness.
    matcher: 'exhaustive', 'sequential', or 'auto' (sequential for videos).
    camera_model: a COLMAP camera model in CAMERA_MODELS.
    single_camera: one camera shared by all images.
    focal_factor: the starting focal length over the longest image side for
      images without an EXIF focal length.
    aabb_scale: transforms.json's aabb_scale, a power of 2 from 1 to 128;
      0 picks the smallest whose box holds all the cameras.
    stream: where progress lines go (None: quiet).
  """
  if not os.path.exists(source):
    raise SfmError(f'{source}: no such file or folder')
  if max_size < 0:
    raise SfmError(f'--max_size must be 0 (keep) or positive, got {max_size}')
  if max_frames < 1:
    raise SfmError(f'--max_frames must be at least 1, got {max_frames}')
  if fps < 0:
    raise SfmError(f'--fps must be 0 (all frames) or positive, got {fps}')
  if not 0 <= blur_keep < 1:
    raise SfmError(f'--blur_keep must be in [0, 1), got {blur_keep}')
  if not 0.1 <= focal_factor <= 10:
    raise SfmError(f'--focal_factor must be in [0.1, 10], got {focal_factor}')
  if matcher not in MATCHERS:
    raise SfmError(f'--matcher must be one of {", ".join(MATCHERS)}')
  if camera_model not in CAMERA_MODELS:
    raise SfmError(f'--camera_model must be one of {", ".join(CAMERA_MODELS)}')
  if aabb_scale < 0 or aabb_scale > 128 or aabb_scale & (aabb_scale - 1):
    raise SfmError(f'--aabb_scale must be 0 (auto) or a power of 2 from 1 to '
                   f'128, got {aabb_scale}')
  video = not os.path.isdir(source)
  if video:  # a pipe or a device is refused before anything opens it
    inputs.check_input_file(source, 'a video file or a folder of photos',
                            inputs.MAX_VIDEO_BYTES, SfmError)
  if video and is_image_file(source):
    raise SfmError(f'{source} is one image; pass the folder holding the '
                   'photos')
  if video and os.path.splitext(source)[1].lower() not in VIDEO_EXTENSIONS:
    raise SfmError(f'{source}: not a folder of photos or a video (known '
                   f'video types: {", ".join(VIDEO_EXTENSIONS)})')
  _check_out(out, source, overwrite)
  if matcher == 'auto':
    matcher = 'sequential' if video else 'exhaustive'

  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(os.path.abspath(out))}.',
                         suffix='.tmp', dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would stick to the scene
  stages = Stages(stream)
  try:
    image_dir = os.path.join(tmp, 'images')
    if video:
      with stages.stage('frames', f'reading {source}') as r:
        kept, dropped, num_inputs = extract_video_frames(
            source, image_dir, max_frames=max_frames, fps=fps,
            max_size=max_size, blur_keep=blur_keep)
        r['result'] = (f'kept {len(kept)} of {num_inputs} frames, '
                       f'{len(dropped)} dropped as blurry')
    else:
      paths = list_images(source)
      num_inputs = len(paths)
      with stages.stage('images', f'{num_inputs} photos from {source}') as r:
        kept, dropped = prepare_photos(paths, image_dir, max_size, blur_keep)
        r['result'] = f'kept {len(kept)}, {len(dropped)} dropped as blurry'
    if len(kept) < 3:
      raise SfmError(f'only {len(kept)} usable images (need at least 3); '
                     + ('try more frames (--max_frames, --fps) or a lower '
                        '--blur_keep' if video else 'add photos or lower '
                        '--blur_keep'))
    Image, _ = _pil()
    sizes = set()
    for f in kept:
      with Image.open(os.path.join(image_dir, f.name)) as im:
        sizes.add(im.size)
    if single_camera and len(sizes) > 1:
      a, b = sorted(sizes)[:2]
      raise SfmError(f'the images have {len(sizes)} different sizes (e.g. '
                     f'{a[0]}x{a[1]} and {b[0]}x{b[1]}); pass '
                     '--nosingle_camera to give each image its own camera')
    rec, stats = run_colmap_apart(image_dir, os.path.join(tmp, 'colmap'),
                                  camera_model=camera_model,
                                  single_camera=single_camera,
                                  matcher=matcher, focal_factor=focal_factor,
                                  num_threads=num_threads, seed=seed,
                                  verbose=verbose, stages=stages)
    check_registration(stats.num_registered, len(kept))
    check_cameras(rec)
    with stages.stage('writing', 'transforms.json') as r:
      transforms, world = reconstruction_to_transforms(
          rec, sharpness_by_name={f.name: f.sharpness for f in kept},
          aabb_scale=aabb_scale)
      with open(os.path.join(tmp, 'transforms.json'), 'w') as f:
        json.dump(transforms, f, indent=2)
      left_out = len(kept) - stats.num_registered
      r['result'] = (f'{len(transforms["frames"])} frames, aabb_scale '
                     f'{transforms["aabb_scale"]}'
                     + (f' ({left_out} unregistered images left out)'
                        if left_out else ''))
    _move_into_place(tmp, out, overwrite)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return PrepareResult(out=out, num_inputs=num_inputs, num_images=len(kept),
                       num_dropped=len(dropped),
                       num_registered=stats.num_registered, stats=stats,
                       times=dict(stages.times), transforms=transforms,
                       world_from_colmap=world)
