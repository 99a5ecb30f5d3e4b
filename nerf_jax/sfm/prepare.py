"""A capture to a NeRF scene: photos or a video in, a scene folder out.

``prepare_scene`` turns the capture into a scene folder in the instant-ngp /
nerfstudio ``transforms.json`` form::

  SCENE/transforms.json        intrinsics, distortion and a camera-to-world
                               matrix per registered image (OpenGL axes)
  SCENE/images/                the photos or video frames, downscaled
  SCENE/colmap/                COLMAP's database and sparse model (sparse/0)

It uses only pip-installable parts: imageio-ffmpeg decodes videos
(``video``) and pycolmap (the COLMAP library, CPU wheel, run in a child
process: ``child``) extracts SIFT features, matches them and runs
incremental mapping (``colmap``); ``transforms`` turns its model into the
scene's world. Images that did not register stay in images/ but are left
out of frames.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from typing import Optional

import numpy as np

from nerf_jax.io import inputs, outputs
from nerf_jax.sfm import checks
from nerf_jax.sfm import child
from nerf_jax.sfm import colmap
from nerf_jax.sfm import images
from nerf_jax.sfm import matching
from nerf_jax.sfm import report
from nerf_jax.sfm import transforms as transforms_lib
from nerf_jax.sfm import video as video_lib

MATCHERS = matching.MATCHERS
TOOL = 'prepare.py'


@dataclasses.dataclass
class PrepareResult:
  """What ``prepare_scene`` made, with its counts and stage times."""
  out: str
  num_inputs: int          # photos found, or video frames decoded
  num_images: int          # images given to SfM (after blur dropping)
  num_dropped: int         # dropped as blurry
  num_registered: int
  stats: colmap.SfmStats
  times: dict              # stage -> seconds
  transforms: dict
  world_from_colmap: np.ndarray


def _check_out(out: str, source: str, overwrite: bool):
  """--out must be new, empty or (with --overwrite) a scene prepare.py
  wrote and nobody changed since (``outputs``), and must not hold the
  input."""
  outputs.check(out, TOOL, outputs.FOLDER, '--out', replace=overwrite)
  a_out, a_src = os.path.realpath(out), os.path.realpath(source)
  if a_src == a_out or a_src.startswith(a_out + os.sep):
    raise report.SfmError(f'--out {out} holds the input {source}; choose '
                          'another --out')


def _move_into_place(tmp: str, out: str, overwrite: bool):
  """Renames the finished ``tmp`` folder to ``out`` (``outputs.install``):
  an earlier scene is removed only once the new one is in place."""
  outputs.install(tmp, out, TOOL, outputs.FOLDER, '--out', replace=overwrite)


def prepare_scene(source: str, out: str, *, max_size: int = 1600,
                  max_frames: int = 150, fps: float = 0.0,
                  blur_keep: float = 0.3, matcher: str = 'auto',
                  vocab_tree: Optional[str] = None,
                  camera_model: str = 'OPENCV', single_camera: bool = True,
                  focal_factor: float = colmap.DEFAULT_FOCAL_FACTOR,
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
    matcher: one of MATCHERS (``matching``; 'auto' picks by image count).
    vocab_tree: a COLMAP vocabulary tree file, for matcher 'vocab_tree'.
    camera_model: a COLMAP camera model in CAMERA_MODELS.
    single_camera: one camera shared by all images.
    focal_factor: the starting focal length over the longest image side for
      images without an EXIF focal length.
    aabb_scale: transforms.json's aabb_scale, a power of 2 from 1 to 128;
      0 picks the smallest whose box holds all the cameras.
    stream: where progress lines go (None: quiet).
  """
  _check_options(source, max_size, max_frames, fps, blur_keep, focal_factor,
                 camera_model, aabb_scale)
  matching.check_matcher(matcher, vocab_tree)
  video = not os.path.isdir(source)
  _check_source(source, video)
  _check_out(out, source, overwrite)

  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(os.path.abspath(out))}.',
                         suffix='.tmp', dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would stick to the scene
  stages = report.Stages(stream)
  try:
    image_dir = os.path.join(tmp, 'images')
    kept, dropped, num_inputs = _read_capture(
        source, video, image_dir, max_size, max_frames, fps, blur_keep,
        single_camera, stages)
    rec, stats = child.run_colmap_apart(
        image_dir, os.path.join(tmp, 'colmap'), camera_model=camera_model,
        single_camera=single_camera, matcher=matcher, vocab_tree=vocab_tree,
        focal_factor=focal_factor, num_threads=num_threads, seed=seed,
        verbose=verbose, stages=stages)
    checks.check_registration(stats.num_registered, len(kept))
    checks.check_cameras(rec)
    with stages.stage('writing', 'transforms.json') as r:
      transforms, world = transforms_lib.reconstruction_to_transforms(
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


def _check_options(source, max_size, max_frames, fps, blur_keep,
                   focal_factor, camera_model, aabb_scale):
  """Raises SfmError for a missing ``source`` or an option out of range."""
  if not os.path.exists(source):
    raise report.SfmError(f'{source}: no such file or folder')
  if max_size < 0:
    raise report.SfmError(
        f'--max_size must be 0 (keep) or positive, got {max_size}')
  if max_frames < 1:
    raise report.SfmError(
        f'--max_frames must be at least 1, got {max_frames}')
  if fps < 0:
    raise report.SfmError(
        f'--fps must be 0 (all frames) or positive, got {fps}')
  if not 0 <= blur_keep < 1:
    raise report.SfmError(f'--blur_keep must be in [0, 1), got {blur_keep}')
  if not 0.1 <= focal_factor <= 10:
    raise report.SfmError(
        f'--focal_factor must be in [0.1, 10], got {focal_factor}')
  if camera_model not in transforms_lib.CAMERA_MODELS:
    raise report.SfmError('--camera_model must be one of '
                          f'{", ".join(transforms_lib.CAMERA_MODELS)}')
  if aabb_scale < 0 or aabb_scale > 128 or aabb_scale & (aabb_scale - 1):
    raise report.SfmError(
        f'--aabb_scale must be 0 (auto) or a power of 2 from 1 to 128, got '
        f'{aabb_scale}')


def _check_source(source: str, video: bool):
  """Raises SfmError for a source that is neither a folder of photos nor a
  video file (a pipe or a device is refused before anything opens it)."""
  if video:
    inputs.check_input_file(source, 'a video file or a folder of photos',
                            inputs.MAX_VIDEO_BYTES, report.SfmError)
  if video and images.is_image_file(source):
    raise report.SfmError(f'{source} is one image; pass the folder holding '
                          'the photos')
  if (video and os.path.splitext(source)[1].lower()
      not in video_lib.VIDEO_EXTENSIONS):
    raise report.SfmError(
        f'{source}: not a folder of photos or a video (known video types: '
        f'{", ".join(video_lib.VIDEO_EXTENSIONS)})')


def _read_capture(source, video, image_dir, max_size, max_frames, fps,
                  blur_keep, single_camera, stages) -> tuple:
  """Writes the capture's photos or picked frames to ``image_dir`` and
  checks there are enough of one size: (kept frames, dropped frames,
  number of inputs)."""
  if video:
    with stages.stage('frames', f'reading {source}') as r:
      kept, dropped, num_inputs = video_lib.extract_video_frames(
          source, image_dir, max_frames=max_frames, fps=fps,
          max_size=max_size, blur_keep=blur_keep)
      r['result'] = (f'kept {len(kept)} of {num_inputs} frames, '
                     f'{len(dropped)} dropped as blurry')
  else:
    paths = images.list_images(source)
    num_inputs = len(paths)
    with stages.stage('images', f'{num_inputs} photos from {source}') as r:
      kept, dropped = images.prepare_photos(paths, image_dir, max_size,
                                            blur_keep)
      r['result'] = f'kept {len(kept)}, {len(dropped)} dropped as blurry'
  if len(kept) < 3:
    raise report.SfmError(
        f'only {len(kept)} usable images (need at least 3); '
        + ('try more frames (--max_frames, --fps) or a lower --blur_keep'
           if video else 'add photos or lower --blur_keep'))
  Image, _ = images.pil()
  sizes = set()
  for f in kept:
    with Image.open(os.path.join(image_dir, f.name)) as im:
      sizes.add(im.size)
  if single_camera and len(sizes) > 1:
    a, b = sorted(sizes)[:2]
    raise report.SfmError(
        f'the images have {len(sizes)} different sizes (e.g. {a[0]}x{a[1]} '
        f'and {b[0]}x{b[1]}); pass --nosingle_camera to give each image its '
        'own camera')
  return kept, dropped, num_inputs
