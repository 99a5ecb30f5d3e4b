"""Checks on what COLMAP made: enough registered images, and cameras a real
lens could have.

A camera whose fl_x and fl_y disagree, or whose distortion no real lens has,
is an error: self-calibration fell into a degenerate solution and the poses
are unreliable too. (Kept apart from ``colmap``, which the COLMAP child
process imports: the lens check brings JAX, which the child never needs.)
"""

from __future__ import annotations

import math

from nerf_jax.cameras import distortion
from nerf_jax.sfm import report
from nerf_jax.sfm import transforms


def check_registration(num_registered: int, num_images: int,
                       min_images: int = 3, min_fraction: float = 0.5):
  """Raises SfmError when too few images registered to make a scene."""
  if num_registered < min_images or num_registered < min_fraction * num_images:
    raise report.SfmError(
        f'only {num_registered} of {num_images} images registered (need at '
        f'least {max(min_images, math.ceil(min_fraction * num_images))}); try '
        'photos with more overlap between neighbours, sharper photos, '
        '--matcher exhaustive, or more frames (--max_frames)')


def check_cameras(rec, max_aspect: float = 1.2):
  """Raises SfmError for a camera whose focal lengths disagree by more than
  ``max_aspect`` (pixels are square on real cameras) or whose lens
  distortion no real lens has (``distortion.distortion_problem``):
  self-calibration fell into a degenerate solution, and the poses are
  unreliable too."""
  for camera_id in sorted({rec.image(i).camera_id
                           for i in rec.reg_image_ids()}):
    camera = rec.camera(camera_id)
    ratio = float(camera.focal_length_x / camera.focal_length_y)
    if not 1.0 / max_aspect <= ratio <= max_aspect:
      raise report.SfmError(
          f'SfM found an implausible camera (fl_x/fl_y = {ratio:.2f}, '
          'expected about 1), so its poses are unreliable; try more photos '
          'with more overlap, a larger --max_size, or --camera_model '
          'SIMPLE_RADIAL')
    k = transforms.camera_intrinsics(camera)
    problem = distortion.distortion_problem(
        [k['k1'], k['k2'], k['p1'], k['p2']], k['fl_x'], k['fl_y'], k['cx'],
        k['cy'], k['w'], k['h'])
    if problem:
      raise report.SfmError(
          f'SfM found an implausible lens ({problem}), so its poses are '
          'unreliable; try more photos with more overlap, or --camera_model '
          'SIMPLE_RADIAL or PINHOLE')

