"""mip-NeRF 360's distortion loss: weights along a ray pulled together.

For a ray's intervals [s_i, s_{i+1}) in a normalised distance s in [0, 1]
with compositing weights w_i (Barron et al. 2022, eq. 15):

  L = sum_{i,j} w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i),

m_i the intervals' midpoints. It is small when a ray's weight sits in one
short stretch (a surface) and large when it is spread along the ray (fog,
floaters), which is what fills an occupancy grid. The double sum is
computed with prefix sums over each ray's sorted intervals:
sum_{i,j} w_i w_j |m_i - m_j| = 2 sum_i w_i (m_i W_i - S_i), W_i and S_i the
sums of w_j and w_j m_j over j < i. Packed samples (``sampling.Samples``)
take them with a segmented scan that restarts at each ray's first slot.

The normalised distance is t itself, scaled to [0, 1] over [near, far], in
a bounded scene, and disparity 1 / t so scaled in an unbounded one (as
mip-NeRF 360's s), so that the far background's long intervals do not
dominate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nerf_jax.render.sampling import Samples


def normalized_distance(t: jnp.ndarray, near: jnp.ndarray, far: jnp.ndarray,
                        unbounded: bool) -> jnp.ndarray:
  """s in [0, 1] of t in [near, far] (broadcasting): linear, or linear in
  disparity when ``unbounded``."""
  if unbounded:
    near = jnp.maximum(near, 1e-6)
    t = jnp.maximum(t, near)
    return (1.0 / near - 1.0 / t) / (1.0 / near - 1.0 / far)
  return (t - near) / (far - near)


def distortion_loss(samples: Samples, weights: jnp.ndarray,
                    near: jnp.ndarray, far: jnp.ndarray,
                    unbounded: bool) -> jnp.ndarray:
  """The distortion loss of each ray.

  Args:
    samples: dense (f32[..., n] intervals) or packed (f32[B] slots).
    weights: the intervals' compositing weights, shaped as samples.t (0 in
      unused packed slots).
    near, far: f32[..., 1] (dense) or f32[R, 1] (packed), each ray's
      interval.
    unbounded: whether s is normalised disparity (see the module).

  Returns:
    f32[...] (dense) or f32[R] (packed), one loss per ray.
  """
  if samples.packed:
    ids = samples.ray_ids
    near, far = near[ids, 0], far[ids, 0]
  s0 = normalized_distance(samples.t_starts, near, far, unbounded)
  s1 = normalized_distance(samples.t_ends, near, far, unbounded)
  mid, width = 0.5 * (s0 + s1), s1 - s0
  self_term = weights ** 2 * width / 3.0
  if not samples.packed:
    w_before = jnp.cumsum(weights, axis=-1) - weights
    s_before = jnp.cumsum(weights * mid, axis=-1) - weights * mid
    cross = 2.0 * weights * (mid * w_before - s_before)
    return jnp.sum(cross + self_term, axis=-1)
  num_rays = samples.ray_ok.shape[0]
  first = jnp.concatenate([jnp.ones((1,), bool), ids[1:] != ids[:-1]])
  w_before = _per_ray_exclusive(weights, first)
  s_before = _per_ray_exclusive(weights * mid, first)
  cross = 2.0 * weights * (mid * w_before - s_before)
  segments = jnp.where(samples.used, ids, num_rays)
  return jax.ops.segment_sum(cross + self_term, segments,
                             num_segments=num_rays + 1)[:num_rays]


def _per_ray_exclusive(values: jnp.ndarray, first: jnp.ndarray) -> jnp.ndarray:
  """f32[B] the sum of ``values`` over the earlier slots of each slot's own
  ray: a prefix sum that restarts at every ray's first slot (``first``),
  so no ray's sums carry the rounding of the others'."""
  def combine(a, b):
    (sum_a, start_a), (sum_b, start_b) = a, b
    return jnp.where(start_b, sum_b, sum_a + sum_b), start_a | start_b

  inclusive, _ = jax.lax.associative_scan(combine, (values, first))
  return inclusive - values
