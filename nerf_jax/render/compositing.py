"""Alpha compositing of samples along rays (NeRF paper, eq. 3).

Symbols (``...`` is the batch of rays, n the samples per ray):
  t_edges: f32[..., n + 1], interval edges along t (sampling.py);
  density: f32[..., n], volume density sigma >= 0 of each interval;
  rgb:     f32[..., n, 3], colour of each interval;
  weights: f32[..., n], w_i = T_i (1 - exp(-sigma_i delta_i)),
           T_i = exp(-sum_{j<i} sigma_j delta_j);
  acc:     f32[...], accumulated opacity sum_i w_i in [0, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# sigma * delta above this is opaque to float32 precision (exp(-80) ~ 1e-35);
# clamping keeps cumsum, exp and their gradients finite for huge densities.
_MAX_OPTICAL_DEPTH = 80.0


def compute_weights(density: jnp.ndarray, t_edges: jnp.ndarray,
                    directions: jnp.ndarray) -> jnp.ndarray:
  """Compositing weights of the intervals.

  Args:
    density: f32[..., n], non-negative density of each interval.
    t_edges: f32[..., n + 1], interval edges along t.
    directions: f32[..., 3], ray directions; their norm converts intervals of
      t into metric lengths.

  Returns:
    f32[..., n], weights w_i >= 0 with sum_i w_i <= 1.
  """
  delta = (t_edges[..., 1:] - t_edges[..., :-1]) * jnp.linalg.norm(
      directions[..., None, :], axis=-1)
  # Clamp: see _MAX_OPTICAL_DEPTH. Negative inputs would mean negative mass.
  optical = jnp.clip(density * delta, 0.0, _MAX_OPTICAL_DEPTH)
  alpha = 1.0 - jnp.exp(-optical)
  # Exclusive cumulative sum: transmittance before each interval.
  trans = jnp.exp(-jnp.concatenate(
      [jnp.zeros_like(optical[..., :1]),
       jnp.cumsum(optical[..., :-1], axis=-1)], axis=-1))
  return alpha * trans


def composite(weights: jnp.ndarray, rgb: jnp.ndarray, t_edges: jnp.ndarray,
              background: float | jnp.ndarray = 0.0) -> dict:
  """Composites per-interval colours into pixels.

  Args:
    weights: f32[..., n], from ``compute_weights``.
    rgb: f32[..., n, 3], colour of each interval.
    t_edges: f32[..., n + 1], interval edges along t.
    background: float or f32[..., 3], colour behind the volume (0 black,
      1 white).

  Returns:
    dict with
      rgb: f32[..., 3], composited colour over the background;
      depth: f32[...], expected termination t of the opaque part,
        sum_i w_i t_mid_i / acc, clipped to [t_edges[0], t_edges[-1]]; rays with
        acc ~ 0 report the far bound;
      disparity: f32[...], 1 / depth;
      acc: f32[...], accumulated opacity.
  """
  acc = jnp.sum(weights, axis=-1)
  color = jnp.sum(weights[..., None] * rgb, axis=-2)
  color = color + (1.0 - acc[..., None]) * background
  t_mid = 0.5 * (t_edges[..., 1:] + t_edges[..., :-1])
  near, far = t_edges[..., 0], t_edges[..., -1]
  # Guard the division twice (the `where` inside keeps the unused branch's
  # gradient finite) so empty rays give finite values and gradients.
  has_mass = acc > 1e-6
  safe_acc = jnp.where(has_mass, acc, 1.0)
  depth = jnp.where(has_mass, jnp.sum(weights * t_mid, axis=-1) / safe_acc, far)
  depth = jnp.clip(depth, near, far)
  disparity = 1.0 / jnp.maximum(depth, 1e-6)
  return dict(rgb=color, depth=depth, disparity=disparity, acc=acc)


def volumetric_rendering(density: jnp.ndarray, rgb: jnp.ndarray,
                         t_edges: jnp.ndarray, directions: jnp.ndarray,
                         background: float | jnp.ndarray = 0.0) -> dict:
  """Weights and composited outputs in one call.

  Args:
    density: f32[..., n], non-negative densities.
    rgb: f32[..., n, 3], colours.
    t_edges: f32[..., n + 1], interval edges along t.
    directions: f32[..., 3], ray directions.
    background: float or f32[..., 3], background colour.

  Returns:
    The dict of ``composite`` plus ``weights``: f32[..., n].
  """
  weights = compute_weights(density, t_edges, directions)
  out = composite(weights, rgb, t_edges, background)
  out['weights'] = weights
  return out


def packed_weights(density: jnp.ndarray, delta: jnp.ndarray,
                   ray_start: jnp.ndarray) -> jnp.ndarray:
  """Compositing weights of samples packed one ray after another.

  The packed form of ``compute_weights`` (nerfacc's packed samples): the
  samples of a ray are contiguous and in order along it, and the
  transmittance before each one is the exponential of a segmented (per-ray)
  exclusive sum, so the cost is O(samples) instead of O(rays x max samples).

  Args:
    density: f32[b], non-negative density of each packed sample (0 for
      padding).
    delta: f32[b], metric length of each sample's interval.
    ray_start: bool[b], True at the first sample of each ray.

  Returns:
    f32[b], weights; per ray they equal ``compute_weights`` of its samples.
  """
  # Clamp: see _MAX_OPTICAL_DEPTH.
  optical = jnp.clip(density * delta, 0.0, _MAX_OPTICAL_DEPTH)
  # Summing within rays only (never across the whole pack) keeps float32
  # precise however many rays precede this one.
  before = _segmented_cumsum(optical, ray_start) - optical
  return (1.0 - jnp.exp(-optical)) * jnp.exp(-before)


def _segmented_cumsum(x: jnp.ndarray, start: jnp.ndarray) -> jnp.ndarray:
  """Inclusive cumulative sum of ``x`` restarting where ``start`` is True."""

  def combine(a, b):
    (start_a, sum_a), (start_b, sum_b) = a, b
    return start_a | start_b, jnp.where(start_b, sum_b, sum_a + sum_b)

  return jax.lax.associative_scan(combine, (start, x))[1]
