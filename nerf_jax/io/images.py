"""Images for people: 8-bit quantisation and depth colour maps.

``to_uint8`` is the one float -> 8-bit quantiser of nerf_jax (PNGs, videos,
the viewer's frames, the training pixel table, exported colours, the scene
fingerprint): values are clipped to [0, 1] and rounded to the nearest level,
ties to even.
"""

from __future__ import annotations

import numpy as np


def to_uint8(image) -> np.ndarray:
  """Quantises f[...] in [0, 1] to u8[...]: clipped to [0, 1] (NaN as 0),
  then ``np.round(255 x)``.

  Ties go to the even level (``np.round``), not up: images stored as floats
  (the tiny lego's) hold exact ties, and this is the rounding that the
  training pixel table and the data fingerprints of saved runs were made
  with, so those runs still match their data.
  """
  image = np.clip(np.nan_to_num(np.asarray(image)), 0.0, 1.0)
  return np.round(image * 255.0).astype(np.uint8)


def colorize_depth(depth: np.ndarray, acc: np.ndarray, near: float, far: float,
                   background: float = 0.0,
                   disparity: bool = False) -> np.ndarray:
  """Colour-maps depth (near = warm, far = cool) for display.

  Args:
    depth: f32[h, w], expected ray termination t.
    acc: f32[h, w], accumulated opacity: where it is low the ray hit nothing,
      so the colour fades to the background.
    near, far: float, the depth range mapped onto the colour map.
    background: float, grey level of empty space.
    disparity: map 1 / depth linearly instead of depth (unbounded scenes,
      whose far background would otherwise squeeze everything near into
      the warmest colour); near is then taken as at least far / 1e4.

  Returns:
    f32[h, w, 3] in [0, 1].
  """
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  if disparity:
    near = max(near, far * 1e-4, 1e-9)
    far = max(far, near * (1 + 1e-6))
    depth = np.maximum(depth, near)
    x = np.clip((1.0 / near - 1.0 / depth) / (1.0 / near - 1.0 / far), 0.0,
                1.0)
  else:
    x = np.clip((depth - near) / max(far - near, 1e-6), 0.0, 1.0)
  rgb = colormaps['turbo'](1.0 - x)[..., :3]
  a = np.clip(acc, 0.0, 1.0)[..., None]
  return rgb * a + background * (1.0 - a)


def depth_to_rgb(depths: np.ndarray, accs: np.ndarray,
                 background: float, disparity: bool = False) -> np.ndarray:
  """Colour-maps depth frames with one range for the whole sequence.

  The range is the 1st-99th percentile of depth where the ray is mostly
  opaque, so the colours do not flicker from frame to frame; empty space fades
  to the background colour.

  Args:
    depths: f32[n, h, w], expected termination t.
    accs: f32[n, h, w], accumulated opacity.
    background: float, grey level for empty space (0 black, 1 white).
    disparity: map 1 / depth between the percentiles (``colorize_depth``).

  Returns:
    f32[n, h, w, 3] in [0, 1].
  """
  solid = depths[accs > 0.5]
  if solid.size:
    lo, hi = np.percentile(solid, [1, 99])
  else:
    lo, hi = float(depths.min()), float(depths.max())
  hi = max(hi, lo + 1e-6)
  return np.stack([colorize_depth(d, a, lo, hi, background, disparity)
                   for d, a in zip(depths, accs)])
