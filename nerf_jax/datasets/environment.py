"""The distant textured environment of the built-in unbounded scene.

The procedural objects (``procedural.SHAPES``, inside [-1.2, 1.2]^3) stand on
a ground plane at the plinth's bottom, ``z = GROUND_Z``, that reaches out to
a dome: the sphere of radius ``DOME_RADIUS`` around the origin, seen from
inside. Both are emissive (unlit) and view-independent, with colours in
[0.1, 0.9] that depend only on the surface point:

  dome: colour bands by longitude, fading to a pale sky with latitude, times
    smooth checkers of two scales in (longitude, latitude);
  ground: slow colour rings in ``log(1 + r)`` (r the distance from the z
    axis), with smooth tiles in (azimuth, log(1 + r)) whose finer scale fades
    out by ``r = GROUND_FINE_FADE``, so the floor stays free of aliasing
    near the horizon.

The tiles grow with the distance, so a picture of the floor has detail at
every depth, and the dome's pattern (about 10 degrees per tile) spans many
pixels from every camera.

Symbols as in ``procedural``: o: f[..., 3], ray origins; d: f[..., 3], ray
directions (any length); t: f[...], the ray parameter, ``inf`` on a miss.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

DOME_RADIUS = 40.0  # radius of the dome around the origin (scene units)
GROUND_Z = -1.0  # height of the ground plane: the plinth's bottom face
GROUND_FINE_FADE = 15.0  # the ground's fine tiles fade out by this radius
SKY = np.array([0.5, 0.62, 0.75])  # the dome's colour overhead
_PHASES = np.array([0.0, 2.0, 4.0]) * np.pi / 3  # per channel: R, G, B hues
_EPS = 1e-9  # smallest accepted hit distance


def dome_hit(o: np.ndarray, d: np.ndarray) -> np.ndarray:
  """The first positive root of |o + t d|^2 = DOME_RADIUS^2: f64[...]."""
  a = np.sum(d * d, axis=-1)
  b = np.sum(d * o, axis=-1)
  c = np.sum(o * o, axis=-1) - DOME_RADIUS ** 2
  disc = b * b - a * c
  root = np.sqrt(np.maximum(disc, 0.0))
  # From inside (c < 0) the near root is negative: the far one is the hit.
  t_near, t_far = (-b - root) / a, (-b + root) / a
  t = np.where(t_near > _EPS, t_near, t_far)
  return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def ground_hit(o: np.ndarray, d: np.ndarray) -> np.ndarray:
  """Where rays cross z = GROUND_Z inside the dome's footprint: f64[...]."""
  with np.errstate(divide='ignore', invalid='ignore'):
    t = (GROUND_Z - o[..., 2]) / d[..., 2]
  t = np.where(np.isfinite(t) & (t > _EPS), t, np.inf)
  t_finite = np.where(np.isfinite(t), t, 0.0)
  xy = o[..., :2] + t_finite[..., None] * d[..., :2]
  inside = np.sum(xy * xy, axis=-1) <= DOME_RADIUS ** 2 - GROUND_Z ** 2
  return np.where(inside, t, np.inf)


def dome_colour(p: np.ndarray) -> np.ndarray:
  """Emitted colour of dome points p: f[..., 3] -> f64[..., 3] in [0.1, 0.9].

  Longitude picks the hue (three phase-shifted cosines), latitude blends it
  into ``SKY`` over the first 20 degrees, and two smooth checkers (tiles of
  about 22 x 9 and 5 x 3 degrees) add detail.
  """
  lon = np.arctan2(p[..., 1], p[..., 0])
  # Clip: rounding can put |z| a hair above the radius.
  lat = np.arcsin(np.clip(p[..., 2] / DOME_RADIUS, -1.0, 1.0))
  bands = 0.5 + 0.18 * np.cos(lon[..., None] - _PHASES)
  sky = np.clip(lat / np.deg2rad(20.0), 0.0, 1.0)[..., None]
  pattern = (0.1 * np.sin(8 * lon) * np.sin(20 * lat)
             + 0.05 * np.sin(36 * lon) * np.sin(60 * lat))
  return np.clip((1 - sky) * bands + sky * SKY + pattern[..., None], 0.1, 0.9)


def ground_colour(p: np.ndarray) -> np.ndarray:
  """Emitted colour of ground points p: f[..., 3] -> f64[..., 3] in [0.1, 0.9].

  Rings of slowly changing hue in s = log(1 + r), times two smooth checkers
  in (azimuth, s): 12 and 40 periods around the axis, periods of 2 pi / 8 and
  2 pi / 24 in s; the finer one fades out with r.
  """
  r = np.hypot(p[..., 0], p[..., 1])
  azimuth = np.arctan2(p[..., 1], p[..., 0])
  s = np.log1p(r)
  rings = 0.45 + 0.12 * np.cos(2.0 * s[..., None] + _PHASES + 1.0)
  fade = np.clip(1.0 - r / GROUND_FINE_FADE, 0.0, 1.0)
  pattern = (0.15 * np.sin(12 * azimuth) * np.sin(8 * s)
             + 0.08 * fade * np.sin(40 * azimuth) * np.sin(24 * s))
  return np.clip(rings + pattern[..., None], 0.1, 0.9)


def hit(o: np.ndarray, d: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """The nearest environment surface along each ray, and its colour.

  Args:
    o: f64[..., 3], ray origins (inside the dome and above the ground for
      the scene's cameras: then every ray hits).
    d: f64[..., 3], ray directions.

  Returns:
    (t f64[...], inf where a ray misses both; rgb f64[..., 3], the emitted
    colour, meaningless on a miss).
  """
  t_dome, t_ground = dome_hit(o, d), ground_hit(o, d)
  on_ground = t_ground < t_dome
  t = np.where(on_ground, t_ground, t_dome)
  p = o + np.where(np.isfinite(t), t, 0.0)[..., None] * d
  rgb = np.where(on_ground[..., None], ground_colour(p), dome_colour(p))
  return t, rgb
