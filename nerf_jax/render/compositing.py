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

from nerf_jax.render.sampling import Samples

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
  alpha, trans = opacity_and_transmittance(density, t_edges, directions)
  return alpha * trans


def opacity_and_transmittance(density: jnp.ndarray, t_edges: jnp.ndarray,
                              directions: jnp.ndarray) -> tuple:
  """Each interval's opacity and the transmittance before it (arguments as
  ``compute_weights``): (alpha, trans), f32[..., n] each; the weights are
  their product, and the transmittance after interval i is
  trans_i * (1 - alpha_i)."""
  delta = (t_edges[..., 1:] - t_edges[..., :-1]) * jnp.linalg.norm(
      directions[..., None, :], axis=-1)
  # Clamp: see _MAX_OPTICAL_DEPTH. Negative inputs would mean negative mass.
  optical = jnp.clip(density * delta, 0.0, _MAX_OPTICAL_DEPTH)
  alpha = 1.0 - jnp.exp(-optical)
  # Exclusive cumulative sum: transmittance before each interval.
  trans = jnp.exp(-jnp.concatenate(
      [jnp.zeros_like(optical[..., :1]),
       jnp.cumsum(optical[..., :-1], axis=-1)], axis=-1))
  return alpha, trans


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
    The dict of ``finish``, the ray's interval being [t_edges[0],
    t_edges[-1]].
  """
  t_mid = 0.5 * (t_edges[..., 1:] + t_edges[..., :-1])
  return finish(jnp.sum(weights[..., None] * rgb, axis=-2),
                jnp.sum(weights * t_mid, axis=-1), jnp.sum(weights, axis=-1),
                t_edges[..., 0], t_edges[..., -1], background)


def finish(rgb_sum: jnp.ndarray, depth_sum: jnp.ndarray, acc: jnp.ndarray,
           near: jnp.ndarray, far: jnp.ndarray,
           background: float | jnp.ndarray = 0.0) -> dict:
  """A ray's outputs from its weighted sums: the end of every compositor
  (dense, packed, or accumulated front to back in rounds).

  Args:
    rgb_sum: f32[..., 3], sum_i w_i rgb_i.
    depth_sum: f32[..., ], sum_i w_i t_mid_i.
    acc: f32[...], sum_i w_i, the accumulated opacity.
    near, far: f32[...], the ray's sampled interval along t.
    background: float or f32[..., 3], colour behind the volume.

  Returns:
    dict with
      rgb: f32[..., 3], composited colour over the background;
      depth: f32[...], expected termination t of the opaque part,
        depth_sum / acc, clipped to [near, far]; rays with acc ~ 0 report
        the far bound;
      disparity: f32[...], 1 / depth;
      acc: f32[...], accumulated opacity.
  """
  color = rgb_sum + (1.0 - acc[..., None]) * background
  # Guard the division twice (the `where` inside keeps the unused branch's
  # gradient finite) so empty rays give finite values and gradients.
  has_mass = acc > 1e-6
  safe_acc = jnp.where(has_mass, acc, 1.0)
  depth = jnp.where(has_mass, depth_sum / safe_acc, far)
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


def composite_samples(samples: Samples, density: jnp.ndarray,
                      rgb: jnp.ndarray, directions: jnp.ndarray,
                      near: jnp.ndarray, far: jnp.ndarray,
                      background: float | jnp.ndarray = 0.0) -> dict:
  """The one compositor: dense or packed ``Samples`` into per-ray outputs.

  Args:
    samples: ``sampling.Samples`` of rays [R] (packed) or [...] (dense).
    density: f32[..., n] or f32[B], the field's density at the samples.
    rgb: f32[..., n, 3] or f32[B, 3], its colour there.
    directions: f32[R | ..., 3], the rays' directions (their norm turns
      intervals of t into lengths).
    near, far: f32[R | ..., 1], the rays' sampled intervals.
    background: float or f32[..., 3], colour behind the volume.

  Returns:
    The dict of ``finish`` per ray, plus ``weights`` (f32[..., n] or
    f32[B]; zero in padding slots).
  """
  if not samples.packed:
    t_edges = samples.t_edges()
    weights = compute_weights(density, t_edges, directions)
    out = composite(weights, rgb, t_edges, background)
  else:
    num_rays, ids = directions.shape[0], samples.ray_ids
    speed = jnp.linalg.norm(directions, axis=-1)[ids]
    density = jnp.where(samples.used, density, 0.0)
    ray_start = jnp.concatenate([jnp.ones((1,), bool), ids[1:] != ids[:-1]])
    weights = packed_weights(
        density, (samples.t_ends - samples.t_starts) * speed, ray_start)
    # Padding slots go to segment num_rays, which segment_sum drops.
    segments = jnp.where(samples.used, ids, num_rays)

    def per_ray(x):
      return jax.ops.segment_sum(x, segments, num_rays,
                                 indices_are_sorted=True)

    t_mid = 0.5 * (samples.t_starts + samples.t_ends)
    out = finish(per_ray(weights[:, None] * rgb), per_ray(weights * t_mid),
                 per_ray(weights), near[..., 0], far[..., 0], background)
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
