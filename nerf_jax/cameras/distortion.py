"""Lens distortion: OpenCV's radial-tangential model and its plausibility.

Coordinates are normalised image coordinates (x right, y down, as OpenCV):
``((col + 0.5 - cx) / fx, (row + 0.5 - cy) / fy)``. The coefficients are
k1, k2 (radial) and p1, p2 (tangential); zeros mean a pinhole.
``distort`` maps where a point is imaged, ``undistort`` inverts it (Newton's
method, as ray casting does), and ``distortion_problem`` refuses lenses that
no real camera has.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def distort(xy, coeffs, xnp=jnp):
  """OpenCV's radial-tangential distortion of normalised coordinates.

  Args:
    xy: f32[..., 2], undistorted normalised coordinates (x right, y down).
    coeffs: f32[..., 4], k1, k2, p1, p2 (broadcast against ``xy``).
    xnp: ``jnp`` or ``np``.

  Returns:
    f32[..., 2], where the lens images them.
  """
  x, y = xy[..., 0], xy[..., 1]
  k1, k2, p1, p2 = (coeffs[..., i] for i in range(4))
  r2 = x * x + y * y
  radial = 1.0 + r2 * (k1 + r2 * k2)
  xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
  yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
  return xnp.stack([xd, yd], axis=-1)


def undistort(xy_distorted, coeffs, iterations: int = 10, xnp=jnp):
  """Inverts ``distort`` by Newton's method (from the distorted point).

  Args:
    xy_distorted: f32[..., 2], distorted normalised coordinates.
    coeffs: f32[..., 4], k1, k2, p1, p2.
    iterations: int, Newton steps (10 reach float32 precision for the
      distortions of real lenses).
    xnp: ``jnp`` or ``np``.

  Returns:
    f32[..., 2], the undistorted coordinates.
  """
  k1, k2, p1, p2 = (coeffs[..., i] for i in range(4))
  xd, yd = xy_distorted[..., 0], xy_distorted[..., 1]

  def newton_step(xy):
    x, y = xy[..., 0], xy[..., 1]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * k2)
    d_radial = k1 + 2.0 * k2 * r2  # d radial / d r2
    fx = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
    fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
    # Jacobian of the residual.
    a = radial + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
    b = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
    c = 2.0 * x * y * d_radial + 2.0 * p2 * y + 2.0 * p1 * x
    d = radial + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
    det = a * d - b * c
    det = xnp.where(xnp.abs(det) < 1e-12, 1e-12, det)
    return xnp.stack([x - (d * fx - b * fy) / det,
                      y - (a * fy - c * fx) / det], axis=-1)

  if xnp is np:
    xy = xy_distorted
    for _ in range(iterations):
      xy = newton_step(xy)
    return xy
  # A loop that stays a loop: the unrolled steps, fused by XLA:CPU 0.10.2
  # into one kernel, hung at run time on image-sized batches (24 x 24).
  return jax.lax.fori_loop(0, iterations, lambda _, xy: newton_step(xy),
                           jnp.asarray(xy_distorted))


# Lens distortion (OpenCV's k1 k2 p1 p2 on normalised coordinates, as
# ``distort``) that a real lens can have. The bounds on the coefficients are
# loose (a narrow lens sees so little of the polynomial that COLMAP's k1 and
# k2 are poorly pinned down); what decides is what the lens does within the
# image: ``distortion_problem``.
MAX_DISTORTION = (100.0, 1e4, 0.1, 0.1)  # |k1|, |k2|, |p1|, |p2|
# Within the image the lens may change a point's distance from the
# principal point by at most this factor either way (a wide-angle lens
# fitted with this model: about 1.5).
MAX_RADIAL_SCALE = 4.0
# ``undistort`` (float32, its default Newton steps) must bring every pixel
# of the image back within this many pixels of itself through ``distort``.
UNDISTORT_TOLERANCE_PX = 0.01
_GRID = 65  # pixels sampled along each side of the image (edges included)


def _pixel_grid(fx, fy, cx, cy, width, height) -> np.ndarray:
  """f32[k, 2], distorted normalised coordinates (x right, y down) of a
  grid of pixel centres spanning the image, its border pixels included."""
  cols = np.unique(np.linspace(0, int(width) - 1, min(int(width), _GRID)))
  rows = np.unique(np.linspace(0, int(height) - 1, min(int(height), _GRID)))
  x = (cols + 0.5 - cx) / fx
  y = (rows + 0.5 - cy) / fy
  return np.stack(np.meshgrid(x, y), -1).reshape(-1, 2).astype(np.float32)


def _undistort_grid(coeffs, fx, fy, cx, cy, width, height) -> tuple:
  """(undistorted f32[k, 2], error in pixels f64[k]) of ``_pixel_grid``."""
  coeffs = np.asarray(coeffs, np.float32)
  xy = _pixel_grid(fx, fy, cx, cy, width, height)
  with np.errstate(all='ignore'):
    und = undistort(xy, coeffs, xnp=np)
    back = distort(und, coeffs, xnp=np)
    error = (np.abs(back.astype(np.float64) - xy) * np.array([fx, fy])).max(-1)
  return und, np.where(np.isfinite(error), error, np.inf)


def undistort_error_px(coeffs, fx, fy, cx, cy, width, height) -> float:
  """How far, in pixels, ``distort(undistort(x))`` lands from ``x`` at worst
  over the image's pixels: what ray casting's Newton steps leave (float32,
  NumPy, as ``cast_rays``); inf where they diverge."""
  _, error = _undistort_grid(coeffs, fx, fy, cx, cy, width, height)
  return float(error.max()) if error.size else 0.0


def distortion_problem(coeffs, fx, fy, cx, cy, width, height,
                       names=('k1', 'k2', 'p1', 'p2')) -> str:
  """Why a camera's lens distortion is implausible, or ''.

  Refused: coefficients beyond ``MAX_DISTORTION``; a radial profile
  ``r (1 + k1 r^2 + k2 r^4)`` that stops growing (folds the image over, so
  that some pixels' rays would point the wrong way) or scales a distance
  from the principal point by more than ``MAX_RADIAL_SCALE`` before
  reaching the image's farthest pixel; a mapping whose Jacobian is not
  positive at every pixel; and undistortion that does not converge to
  ``UNDISTORT_TOLERANCE_PX`` (``undistort_error_px``).

  Args:
    coeffs: f[4], k1, k2, p1, p2.
    fx, fy, cx, cy, width, height: the pinhole part (pixels), already
      checked by ``checks.intrinsics_problem``.
    names: the four coefficients' names in the message (a file's own keys).

  Returns:
    '' or one line naming the coefficients.
  """
  coeffs = np.asarray(coeffs, np.float64).reshape(4)
  for name, value, limit in zip(names, coeffs, MAX_DISTORTION):
    if not np.isfinite(value):
      return f'{name}={value:g} must be finite'
    if abs(value) > limit:
      return (f'{name}={value:g} is implausible for a real lens (at most '
              f'{limit:g} in magnitude)')
  if not coeffs.any():
    return ''
  k1, k2, p1, p2 = coeffs
  radial = ', '.join(f'{n}={v:g}' for n, v in zip(names[:2], coeffs[:2]))
  lens = ', '.join(f'{n}={v:g}' for n, v in zip(names, coeffs) if v)
  xy = _pixel_grid(fx, fy, cx, cy, width, height).astype(np.float64)
  reach = float(np.sqrt((xy ** 2).sum(-1)).max())  # farthest pixel
  if reach > 0 and (k1 or k2):
    r = np.linspace(0.0, MAX_RADIAL_SCALE * reach, 4001)[1:]
    scale = 1.0 + r * r * (k1 + r * r * k2)
    growth = 1.0 + r * r * (3.0 * k1 + 5.0 * r * r * k2)  # d(r scale)/dr
    inside = np.nonzero(r * scale >= reach)[0]
    end = int(inside[0]) + 1 if inside.size else len(r)
    folds = np.nonzero(growth[:end] <= 0.0)[0]
    if folds.size:
      return (f'{radial}: the lens folds the image over at radius '
              f'{r[folds[0]]:.3g} (normalised), inside the image (its '
              f'farthest pixel is at {reach:.3g}), so some rays would point '
              'the wrong way; not a real lens')
    bad = np.nonzero((scale[:end] > MAX_RADIAL_SCALE)
                     | (scale[:end] < 1.0 / MAX_RADIAL_SCALE))[0]
    if bad.size or not inside.size:
      worst = scale[bad[0]] if bad.size else scale[-1]
      return (f'{radial}: the lens would scale distances from the '
              f'principal point by {worst:.3g} inside the image (at most '
              f'{MAX_RADIAL_SCALE:g} either way); not a real lens')
  und, error = _undistort_grid(coeffs, fx, fy, cx, cy, width, height)
  error = float(error.max()) if error.size else 0.0
  if not error <= UNDISTORT_TOLERANCE_PX:
    return (f'{lens}: undistorting the image\'s pixels does not converge '
            f'(off by up to {error:.3g} pixels, at most '
            f'{UNDISTORT_TOLERANCE_PX:g}); not a real lens')
  with np.errstate(all='ignore'):
    x, y = und[..., 0].astype(np.float64), und[..., 1].astype(np.float64)
    r2 = x * x + y * y
    radial_scale = 1.0 + r2 * (k1 + r2 * k2)
    d_radial = k1 + 2.0 * k2 * r2
    a = radial_scale + 2.0 * x * x * d_radial + 2.0 * p1 * y + 6.0 * p2 * x
    b = 2.0 * x * y * d_radial + 2.0 * p1 * x + 2.0 * p2 * y
    d = radial_scale + 2.0 * y * y * d_radial + 6.0 * p1 * y + 2.0 * p2 * x
    jacobian = a * d - b * b
  if not np.all(jacobian > 0.0):
    return (f'{lens}: the lens folds the image over (its Jacobian is not '
            'positive at every pixel), so some rays would point the wrong '
            'way; not a real lens')
  return ''
