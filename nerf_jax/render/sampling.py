"""Where to evaluate the field along each ray.

Symbols shared by this module (``...`` is the batch of rays):
  t_samples: f32[..., n], sorted sample positions along the ray parameter t;
  t_edges:   f32[..., n + 1], the edges of the interval each sample stands
             for: ``near``, the midpoints between neighbouring samples, ``far``;
  weights:   f32[..., n], compositing weights of the intervals (rendering.py).

Every random function takes its PRNG key first and accepts ``None`` for the
deterministic evaluation path.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp


class Samples(NamedTuple):
  """Where a model evaluates its field: intervals along rays, dense or packed.

  Dense (``ray_ids`` None): every ray of the batch [...] has n intervals,
  contiguous and sorted: t, t_starts, t_ends are f32[..., n] and
  ``t_ends[..., i] == t_starts[..., i + 1]``.
  Packed: the intervals of all rays one after another in a fixed budget of B
  slots (nerfacc's packed samples): t, t_starts, t_ends f32[B], ``ray_ids``
  i32[B] the ray of each slot (rays in order, each ray's intervals
  contiguous and sorted), ``used`` bool[B] False for padding slots,
  ``ray_ok`` bool[R] whether all of a ray's samples fit the budget, and
  ``count`` i32[] the slots used.

  Attributes:
    t: positions along t where the field is evaluated (inside the interval).
    t_starts, t_ends: the interval each sample stands for.
    edges: dense samples only, optional: f32[..., n + 1], the edges the
      intervals were sliced from (kept so that ``t_edges`` hands back the
      very array rather than a copy joined from the slices).
  """
  t: jnp.ndarray
  t_starts: jnp.ndarray
  t_ends: jnp.ndarray
  ray_ids: Optional[jnp.ndarray] = None
  used: Optional[jnp.ndarray] = None
  ray_ok: Optional[jnp.ndarray] = None
  count: Optional[jnp.ndarray] = None
  edges: Optional[jnp.ndarray] = None

  @property
  def packed(self) -> bool:
    return self.ray_ids is not None

  def t_edges(self) -> jnp.ndarray:
    """f32[..., n + 1], the edges of dense samples' intervals."""
    if self.edges is not None:
      return self.edges
    return jnp.concatenate([self.t_starts, self.t_ends[..., -1:]], axis=-1)

  def points(self, origins: jnp.ndarray, directions: jnp.ndarray,
             viewdirs: jnp.ndarray) -> tuple:
    """The sample points o + t d and the directions they are seen along,
    for rays of origins, directions and viewdirs f32[R | ..., 3].

    Returns:
      (points, viewdirs): f32[..., n, 3] and f32[..., 1, 3] (dense; one
      direction per ray, broadcast over its samples) or f32[B, 3] twice
      (packed).
    """
    if self.packed:
      ids = self.ray_ids
      return origins[ids] + self.t[:, None] * directions[ids], viewdirs[ids]
    return (points_along_rays(origins, directions, self.t),
            viewdirs[..., None, :])


def dense_samples(t_samples: jnp.ndarray, near: jnp.ndarray,
                  far: jnp.ndarray) -> Samples:
  """``Samples`` at sorted positions f32[..., n], each standing for the
  interval between its neighbours' midpoints (``edges_from_samples``)."""
  edges = edges_from_samples(t_samples, near, far)
  return Samples(t=t_samples, t_starts=edges[..., :-1], t_ends=edges[..., 1:],
                 edges=edges)


def edges_from_samples(t_samples: jnp.ndarray, near: jnp.ndarray,
                       far: jnp.ndarray) -> jnp.ndarray:
  """Interval edges around sorted samples: near, midpoints, far.

  Args:
    t_samples: f32[..., n], sorted samples inside [near, far].
    near: f32[..., 1], start of each ray's interval.
    far: f32[..., 1], end of each ray's interval.

  Returns:
    f32[..., n + 1], non-decreasing edges with each sample inside its interval.
  """
  mids = 0.5 * (t_samples[..., 1:] + t_samples[..., :-1])
  return jnp.concatenate([near, mids, far], axis=-1)


def stratified_samples(key: Optional[jax.Array], near: jnp.ndarray,
                       far: jnp.ndarray, num_samples: int) -> jnp.ndarray:
  """Stratified samples: one per equal-width bin of [near, far].

  With a key, sample i is uniform inside bin i (the NeRF paper, eq. 2); with
  ``None`` it is the bin's centre.

  Args:
    key: PRNG key, or None for the deterministic bin centres.
    near: f32[..., 1], start of each ray's interval.
    far: f32[..., 1], end of each ray's interval.
    num_samples: int, number of bins (and samples) per ray.

  Returns:
    f32[..., num_samples], sorted samples, sample i in
    [near + i * (far - near) / n, near + (i + 1) * (far - near) / n).
  """
  shape = jnp.broadcast_shapes(near.shape, far.shape)[:-1] + (num_samples,)
  if key is None:
    u = jnp.full(shape, 0.5, jnp.float32)
  else:
    u = jax.random.uniform(key, shape, jnp.float32)
  s = (jnp.arange(num_samples, dtype=jnp.float32) + u) / num_samples
  return near + (far - near) * s


def sample_pdf(key: Optional[jax.Array], t_edges: jnp.ndarray,
               weights: jnp.ndarray, num_samples: int,
               eps: float = 1e-5) -> jnp.ndarray:
  """Draws samples from the piecewise-constant density given by ``weights``.

  Inverse transform sampling of the step function whose mass in interval
  [t_edges[i], t_edges[i+1]) is proportional to ``weights[i] + eps``. The
  small ``eps`` keeps the CDF strictly increasing, so empty rays fall back to
  uniform sampling instead of dividing by zero. With a key the uniform
  variates are stratified (one per 1/num_samples bin); with ``None`` they are
  the bin centres, so evaluation is deterministic.

  Args:
    key: PRNG key, or None for deterministic samples.
    t_edges: f32[..., n + 1], non-decreasing interval edges.
    weights: f32[..., n], non-negative interval masses (need not sum to 1).
    num_samples: int, number of samples to draw per ray.
    eps: float, mass added to every interval.

  Returns:
    f32[..., num_samples], sorted samples in [t_edges[0], t_edges[-1]], with
    gradients stopped (samples are positions, not functions of the weights).
  """
  weights = jax.lax.stop_gradient(weights)
  t_edges = jax.lax.stop_gradient(t_edges)
  pdf = weights + eps
  pdf = pdf / jnp.sum(pdf, axis=-1, keepdims=True)
  cdf = jnp.concatenate(
      [jnp.zeros_like(pdf[..., :1]),
       jnp.minimum(1.0, jnp.cumsum(pdf[..., :-1], axis=-1)),
       jnp.ones_like(pdf[..., :1])], axis=-1)
  shape = weights.shape[:-1] + (num_samples,)
  if key is None:
    u = jnp.broadcast_to(
        (jnp.arange(num_samples, dtype=jnp.float32) + 0.5) / num_samples,
        shape)
  else:
    u = (jnp.arange(num_samples, dtype=jnp.float32) +
         jax.random.uniform(key, shape, jnp.float32)) / num_samples
  return _invert_cdf(u, cdf, t_edges)


def mix_with_uniform(weights: jnp.ndarray, valid: jnp.ndarray,
                     share: float) -> jnp.ndarray:
  """f32[..., n] sampling masses for ``sample_pdf``: ``1 - share`` of each
  ray's mass as its normalised ``weights``, ``share`` spread evenly over
  its ``valid`` intervals (bool[..., n]); a ray with no weight takes all
  its mass from them. Keeps every valid part of a ray sampled however the
  weights have concentrated (mip-NeRF 360's resampling padding plays this
  part)."""
  total = jnp.sum(weights, axis=-1, keepdims=True)
  steps = valid.astype(weights.dtype)
  prior = steps / jnp.maximum(jnp.sum(steps, axis=-1, keepdims=True), 1.0)
  share = jnp.where(total > 0, share, 1.0)
  return (1.0 - share) * weights / jnp.maximum(total, 1e-12) + share * prior


def _invert_cdf(u: jnp.ndarray, cdf: jnp.ndarray,
                t_edges: jnp.ndarray) -> jnp.ndarray:
  """Piecewise-linear inverse of ``cdf`` (defined at ``t_edges``) at ``u``."""
  n = cdf.shape[-1]
  # Index of the interval containing u: last edge whose cdf is <= u.
  idx = jnp.sum(u[..., :, None] >= cdf[..., None, :], axis=-1) - 1
  idx = jnp.clip(idx, 0, n - 2)
  cdf0 = jnp.take_along_axis(cdf, idx, axis=-1)
  cdf1 = jnp.take_along_axis(cdf, idx + 1, axis=-1)
  t0 = jnp.take_along_axis(t_edges, idx, axis=-1)
  t1 = jnp.take_along_axis(t_edges, idx + 1, axis=-1)
  # The denominator is >= eps / n > 0 because every interval has mass eps.
  frac = jnp.clip((u - cdf0) / jnp.maximum(cdf1 - cdf0, 1e-12), 0.0, 1.0)
  return t0 + frac * (t1 - t0)


def merge_samples(t_a: jnp.ndarray, t_b: jnp.ndarray) -> jnp.ndarray:
  """Sorted union of two sample sets along the last axis.

  Args:
    t_a: f32[..., n], samples.
    t_b: f32[..., m], samples.

  Returns:
    f32[..., n + m], sorted samples.
  """
  return jnp.sort(jnp.concatenate([t_a, t_b], axis=-1), axis=-1)


def points_along_rays(origins: jnp.ndarray, directions: jnp.ndarray,
                      t_samples: jnp.ndarray) -> jnp.ndarray:
  """3D points ``o + t d``.

  Args:
    origins: f32[..., 3].
    directions: f32[..., 3].
    t_samples: f32[..., n].

  Returns:
    f32[..., n, 3].
  """
  return origins[..., None, :] + t_samples[..., :, None] * directions[..., None, :]
