"""Sane ranges of cameras read from files and flags.

Wide enough for any real camera, narrow enough to catch a unit or
convention mistake (millimetres for pixels, a scaled or transposed matrix)
where the value enters, instead of as a black render hours later. Lens
distortion has its own checks (``distortion.distortion_problem``).
"""

from __future__ import annotations

import numpy as np

MAX_CAMERA_DISTANCE = 1e6  # world units between a camera and the origin
ROTATION_TOLERANCE = 1e-2  # largest entry of |R^T R - I| of a pose's rotation
# Focal length over the image's larger side: fields of view from 177.7 down
# to 0.06 degrees.
FOCAL_RATIO_RANGE = (1e-2, 1e3)
# The principal point may lie off the image (a shifted lens) by at most this
# many image sizes on each side.
PRINCIPAL_POINT_MARGIN = 1.0


def pose_problem(poses, what: str = 'pose', labels=None) -> str:
  """Why camera-to-world matrices are not rigid poses in range, or ''.

  A pose must be finite, its rotation orthonormal (``ROTATION_TOLERANCE``)
  and right-handed, a 4x4 pose's bottom row (0, 0, 0, 1), and the camera
  within ``MAX_CAMERA_DISTANCE`` of the origin.

  Args:
    poses: f[n, 3|4, 4] (any real dtype).
    what: str, the name of one matrix in the message ('pose', 'row', ...).
    labels: optional list of n names used instead of '<what> <i>' (e.g. the
      image file of each pose).

  Returns:
    '' if every pose is fine, else one line naming the first bad one(s),
    e.g. 'pose 3: rotation is not orthonormal (|R^T R - I| up to 0.5)'.
  """
  poses = np.asarray(poses, np.float64)
  bad = np.nonzero(~np.isfinite(poses).all(axis=(1, 2)))[0]
  if bad.size:
    if labels is not None:
      return f'{", ".join(labels[i] for i in bad[:3])}: NaN or inf values'
    return f'{what}(s) {bad[:5].tolist()} contain NaN or inf values'
  rotation = poses[:, :3, :3]
  error = np.abs(np.einsum('nji,njk->nik', rotation, rotation)
                 - np.eye(3)).max(axis=(1, 2))
  distance = np.linalg.norm(poses[:, :3, 3], axis=-1)
  checks = [
      (error > ROTATION_TOLERANCE, lambda i: (
          f'rotation is not orthonormal (|R^T R - I| up to {error[i]:.3g}, '
          f'tolerance {ROTATION_TOLERANCE:g}): not a rigid camera pose')),
      (np.linalg.det(rotation) < 0, lambda i: (
          'rotation is a reflection (determinant -1): the axes are not '
          'right-handed')),
      (distance > MAX_CAMERA_DISTANCE, lambda i: (
          f'camera is {distance[i]:.3g} units from the origin (at most '
          f'{MAX_CAMERA_DISTANCE:g})')),
  ]
  if poses.shape[1] == 4:
    bottom = np.abs(poses[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=-1)
    checks.append((bottom > 1e-4, lambda i: (
        f'bottom row is {poses[i, 3].tolist()}, not [0, 0, 0, 1]')))
  for failed, message in checks:
    if failed.any():
      i = int(np.argmax(failed))
      label = f'{what} {i}' if labels is None else labels[i]
      return f'{label}: {message(i)}'
  return ''


def intrinsics_problem(fx, fy, cx, cy, width, height,
                       names=('fx', 'fy', 'cx', 'cy', 'width', 'height'),
                       what: str = 'view') -> str:
  """Why pinhole intrinsics are out of range, or ''.

  Sizes must be positive, focal lengths positive and within
  ``FOCAL_RATIO_RANGE`` times the larger image side, and the principal point
  within ``PRINCIPAL_POINT_MARGIN`` image sizes of the image.

  Args:
    fx, fy, cx, cy: float or f[n], in pixels.
    width, height: number or [n], the image size in pixels.
    names: the six values' names in the message (a file's own keys).
    what: str, the name of one camera in the message.

  Returns:
    '' or one line naming the first bad value, prefixed by '<what> i: ' when
    arrays of several cameras are given.
  """
  values = np.broadcast_arrays(*[np.asarray(v, np.float64).reshape(-1)
                                 for v in (fx, fy, cx, cy, width, height)])
  width, height = values[4:]
  side = np.maximum(width, height)
  lo, hi = FOCAL_RATIO_RANGE
  margin = PRINCIPAL_POINT_MARGIN
  for k in (4, 5, 0, 1, 2, 3):  # sizes first: the other ranges use them
    value = values[k]
    size = (width, height)[k % 2] if k < 4 else value
    with np.errstate(invalid='ignore'):
      if k >= 4:
        ok = value >= 1
      elif k < 2:
        ok = (value >= lo * side) & (value <= hi * side)
      else:
        ok = (value >= -margin * size) & (value <= (1 + margin) * size)
    failed = ~(np.isfinite(value) & ok)
    if not failed.any():
      continue
    i = int(np.argmax(failed))
    image = f'{width[i]:g}x{height[i]:g} image'
    if k >= 4 or (k < 2 and not value[i] > 0):  # NaN too
      reason = 'must be a positive number' + (' of pixels' if k >= 4 else '')
    elif k < 2:
      reason = (f'is absurd for a {image} (expected {lo:g} to {hi:g} times '
                f'its larger side: {lo * side[i]:g} to {hi * side[i]:g})')
    else:
      reason = (f'is far outside the {image} (expected {-margin * size[i]:g} '
                f'to {(1 + margin) * size[i]:g})')
    prefix = f'{what} {i}: ' if len(value) > 1 else ''
    return f'{prefix}{names[k]}={value[i]:g} {reason}'
  return ''
