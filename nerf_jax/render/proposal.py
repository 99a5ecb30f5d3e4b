"""Proposal sampling (mip-NeRF 360, nerfacto's default), behind the samplers'
protocol (``samplers.Sampler``).

Each ray is sampled in levels. Level 0 spaces ``samples[0]`` intervals
linearly through the object's box and, in an unbounded scene, equally in
disparity from where the ray leaves it out to far (the steps of the
occupancy marcher, ``occupancy.unbounded_edges``; jittered in training).
Every later level draws its interval edges from the previous level's
compositing weights (``sampling.sample_pdf``), so samples gather where the
previous level saw mass. All but the last level are evaluated by small
density-only fields, the proposal networks; the last by the model's own
field. No state: unlike an occupancy grid, nothing fills with early fog,
and every ray gets the same number of samples (dense, per ray).

The proposal networks learn only from ``interlevel_loss``: each one's
weights must bound, interval by interval, the weights of the final level
(held fixed), so that wherever the field has mass, its proposal does too.

Symbols: R rays; e edges f32[R, n + 1] of n intervals; w weights f32[R, n].
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from nerf_jax.cameras.camera import Rays
from nerf_jax.render import occupancy, sampling
from nerf_jax.render.sampling import Samples


@dataclasses.dataclass(frozen=True)
class ProposalSampler:
  """Proposal levels, then the field's level (see the module docstring).

  Attributes:
    aabb: ((x, y, z), (x, y, z)), the object's box.
    samples: tuple of ints, the intervals per ray of each level, the
      proposal levels first and the field's last (e.g. (128, 64, 48)).
    unbounded: bool, level 0 reaches out to far in disparity beyond the box
      (half its intervals), else it covers only the ray's part of the box.
    uniform: float in [0, 1), the share of each resampled level's mass
      spread evenly over the previous level's intervals, so no part of a
      ray is left unsampled once a proposal has put its mass elsewhere
      (mip-NeRF 360's resampling padding plays this part).
  """
  aabb: tuple
  samples: tuple = (128, 64, 48)
  unbounded: bool = False
  uniform: float = 0.0

  @property
  def levels(self) -> tuple:
    return tuple(f'proposal_{i}' for i in range(len(self.samples) - 1)) + (
        'main',)

  def sample(self, key: Optional[jax.Array], rays: Rays, state, level: int,
             previous: Optional[tuple]) -> Samples:
    """Dense ``Samples`` [R, samples[level]] of rays [R] (see the module
    docstring); ``previous`` is the previous level's (samples, weights)."""
    del state
    key = None if key is None else jax.random.fold_in(key, level)
    n = int(self.samples[level])
    if level == 0:
      return self._first(key, rays, n)
    prev, weights = previous
    weights = jax.lax.stop_gradient(weights)
    prev_edges = prev.t_edges()
    if self.uniform > 0:
      weights = sampling.mix_with_uniform(
          weights, prev_edges[..., 1:] > prev_edges[..., :-1], self.uniform)
    edges = sampling.sample_pdf(key, prev_edges, weights, n + 1)
    return Samples(t=0.5 * (edges[..., :-1] + edges[..., 1:]),
                   t_starts=edges[..., :-1], t_ends=edges[..., 1:],
                   edges=edges)

  def _first(self, key, rays: Rays, n: int) -> Samples:
    edges = first_edges(rays, jnp.asarray(self.aabb, jnp.float32), n,
                        self.unbounded)
    lo, hi = edges[..., :-1], edges[..., 1:]
    if key is None:
      u = jnp.full(lo.shape, 0.5, jnp.float32)
    else:
      u = jax.random.uniform(key, lo.shape, jnp.float32)
    return Samples(t=lo + u * (hi - lo), t_starts=lo, t_ends=hi, edges=edges)


def first_edges(rays: Rays, aabb: jnp.ndarray, n: int,
                unbounded: bool) -> jnp.ndarray:
  """Level 0's edges f32[R, n + 1] of rays [R], from near to far, gradients
  stopped: n equal steps through the box (a ray that misses it gets empty
  intervals at far), or, unbounded, n // 2 equal steps from near to where
  the ray leaves the box and the rest equal in disparity out to far."""
  origins, directions, near, far = jax.lax.stop_gradient(
      (rays.origins, rays.directions, rays.near, rays.far))
  if unbounded:
    return occupancy.unbounded_edges(origins, directions, near, far, aabb,
                                     n // 2, n - n // 2)
  t_start, t_end, _ = occupancy.ray_aabb(origins, directions, aabb, near, far)
  s = jnp.arange(n + 1, dtype=jnp.float32) / n
  return t_start[:, None] + s * (t_end - t_start)[:, None]


def outer_mass(edges: jnp.ndarray, other_edges: jnp.ndarray,
               other_weights: jnp.ndarray) -> jnp.ndarray:
  """For each interval of ``edges`` f32[..., n + 1], the summed
  ``other_weights`` f32[..., m] of the intervals of ``other_edges``
  f32[..., m + 1] that overlap it (share more than a point): f32[..., n].

  That sum bounds from above the mass any refinement of the other
  histogram could put in the interval (mip-NeRF 360, eq. 12).
  """
  cum = jnp.concatenate([jnp.zeros_like(other_weights[..., :1]),
                         jnp.cumsum(other_weights, axis=-1)], axis=-1)
  starts, ends = edges[..., :-1], edges[..., 1:]

  def search(sorted_values, values, side):
    return jnp.vectorize(
        lambda a, v: jnp.searchsorted(a, v, side=side),
        signature='(m),(n)->(n)')(sorted_values, values)

  # First other interval that ends after the start: ends <= start before it.
  first = search(other_edges[..., 1:], starts, 'right')
  # One past the last that starts before the end.
  last = search(other_edges[..., :-1], ends, 'left')
  last = jnp.maximum(last, first)
  take = lambda i: jnp.take_along_axis(cum, i, axis=-1)
  return take(last) - take(first)


def interlevel_loss(edges: jnp.ndarray, weights: jnp.ndarray,
                    proposal_edges: jnp.ndarray,
                    proposal_weights: jnp.ndarray,
                    eps: float = 1e-7) -> jnp.ndarray:
  """mip-NeRF 360's proposal loss of each ray, f32[...]: the final
  level's weights w (held fixed) above the proposal's bound on each of its
  intervals, sum((w - bound)_+^2 / (w + eps)). Zero when the proposal's
  histogram covers the final one; gradients reach the proposal only."""
  weights = jax.lax.stop_gradient(weights)
  edges = jax.lax.stop_gradient(edges)
  bound = outer_mass(edges, jax.lax.stop_gradient(proposal_edges),
                     proposal_weights)
  excess = jnp.maximum(weights - bound, 0.0)
  return jnp.sum(excess ** 2 / (weights + eps), axis=-1)
