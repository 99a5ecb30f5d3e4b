"""The occupancy-grid marcher: instant-ngp's sampler, behind the samplers'
protocol (``samplers.Sampler``).

Every ray is marched through the scene box with a constant step; samples in
cells the occupancy grid (the model's state ``{'grid': {'mask', ...}}``)
marks empty are dropped. In training the survivors of all rays are packed
into a fixed budget (``budget_per_ray`` x rays, a static shape); rays whose
samples do not all fit are flagged (``Samples.ray_ok``). For evaluation,
``front_to_back`` renders in rounds of ``round_samples`` occupied samples
per ray and stops a ray once its transmittance falls below
``min_transmittance``; each round evaluates the field only on the occupied
samples of live rays, ``eval_block`` at a time, inside a
``jax.lax.while_loop``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from nerf_jax.cameras.camera import Rays
from nerf_jax.render import compositing, occupancy
from nerf_jax.render.sampling import Samples

# field_fn(points f32[b, 3], viewdirs f32[b, 3]) -> (rgb f32[b, 3],
# density f32[b]).
FieldFn = Callable[[jnp.ndarray, jnp.ndarray], tuple]


@dataclasses.dataclass(frozen=True)
class OccupancyMarcher:
  """Constant-step marching through ``aabb``, skipping empty grid cells.

  Attributes:
    aabb: ((x, y, z), (x, y, z)), the scene box the grid covers.
    num_steps: int, steps across the box's diagonal.
    budget_per_ray: int, packed training samples per ray of a batch.
    round_samples: int, occupied samples per ray per evaluation round.
    eval_block: int, field evaluations per call inside a round.
    min_transmittance: float, evaluation stops a ray below it.
    outer_steps: int, 0 for a bounded scene; else the scene is unbounded
      (the grid covers contracted space) and rays take ``num_steps`` steps
      up to where they leave the box and ``outer_steps`` steps equal in
      disparity from there to far (``occupancy.unbounded_edges``).
  """
  aabb: tuple
  num_steps: int
  budget_per_ray: int = 64
  round_samples: int = 16
  eval_block: int = 1 << 16
  min_transmittance: float = 1e-4
  outer_steps: int = 0

  levels = ('main',)

  @property
  def steps(self) -> int:
    """Marching steps per ray (the static width of a marched batch)."""
    return self.num_steps + self.outer_steps

  def march(self, key: Optional[jax.Array], rays: Rays, state: Any) -> dict:
    """``occupancy.march`` of rays [R] through the state's grid.

    The sample positions along t are where to look, not functions to
    differentiate (as ``sampling.sample_pdf``'s): their gradients are
    stopped, so gradients with respect to the rays (a camera's pose) flow
    through the points o + t d at fixed t only.
    """
    origins, directions, near, far = jax.lax.stop_gradient(
        (rays.origins, rays.directions, rays.near, rays.far))
    return occupancy.march(key, origins, directions, near, far,
                           state['grid']['mask'], jnp.asarray(self.aabb),
                           self.num_steps, self.outer_steps)

  def sample(self, key, rays: Rays, state, level: int = 0,
             previous=None) -> Samples:
    """The occupied samples of rays [R], packed into R x budget_per_ray
    slots (in ray order)."""
    del level, previous
    num_rays, n = rays.origins.shape[0], self.steps
    budget = num_rays * int(self.budget_per_ray)
    marched = self.march(key, rays, state)
    indices, count, ray_ok = occupancy.compact(marched['valid'], budget)
    edges = marched['t_edges']
    return Samples(
        t=marched['t_samples'].reshape(-1)[indices],
        t_starts=edges[:, :-1].reshape(-1)[indices],
        t_ends=edges[:, 1:].reshape(-1)[indices], ray_ids=indices // n,
        used=jnp.arange(budget) < count, ray_ok=ray_ok, count=count)

  def front_to_back(self, field_fn: FieldFn, rays: Rays, state: Any,
                    background) -> dict:
    """Renders rays [R] in rounds, with early ray termination.

    Round r takes the r-th ``round_samples`` occupied samples of every ray
    still alive (transmittance above ``min_transmittance``), so the field
    runs only on occupied samples of live rays, and a round costs O(rays x
    round_samples) besides them.

    Returns:
      The dict of ``compositing.finish`` plus ``samples`` i32[R], the field
      evaluations spent on each ray.
    """
    num_rays, n = rays.origins.shape[0], self.steps
    marched = self.march(None, rays, state)
    k = min(int(self.round_samples), n)
    rounds = -(-n // k)
    order, remaining = _occupied_order(marched['valid'], rounds * k)
    # Step n is a zero-length interval at the end: padding reads it.
    edges = jnp.concatenate([marched['t_edges'],
                             marched['t_edges'][:, -1:]], axis=1)
    t_all = jnp.concatenate([marched['t_samples'],
                             marched['t_edges'][:, -1:]], axis=1)
    block = max(1, min(int(self.eval_block), num_rays * k))
    eps = float(self.min_transmittance)

    def one_round(carry):
      r, trans, rgb_sum, depth_sum, samples = carry
      steps = jax.lax.dynamic_slice_in_dim(order, r * k, k, axis=1)
      live = (steps < n) & (trans > eps)[:, None]
      lo = jnp.take_along_axis(edges, steps, axis=1)
      hi = jnp.take_along_axis(edges, steps + 1, axis=1)
      t = jnp.take_along_axis(t_all, steps, axis=1)
      density, rgb = _eval_where(field_fn, rays, live, t, block)
      # The round's samples as contiguous intervals (the empty space
      # between them holds no density, so it changes no weight).
      local = jnp.concatenate([jnp.zeros((num_rays, 1)),
                               jnp.cumsum(hi - lo, axis=1)], axis=1)
      w = compositing.compute_weights(density, local, rays.directions)
      w = w * trans[:, None]
      rgb_sum = rgb_sum + jnp.sum(w[..., None] * rgb, axis=-2)
      depth_sum = depth_sum + jnp.sum(w * 0.5 * (lo + hi), axis=-1)
      samples = samples + jnp.sum(live, axis=-1, dtype=jnp.int32)
      return (r + 1, trans - jnp.sum(w, axis=-1), rgb_sum, depth_sum,
              samples)

    def more(carry):
      r, trans = carry[0], carry[1]
      return (r < rounds) & jnp.any((trans > eps) & (remaining > r * k))

    init = (jnp.zeros((), jnp.int32), jnp.ones((num_rays,), jnp.float32),
            jnp.zeros((num_rays, 3), jnp.float32),
            jnp.zeros((num_rays,), jnp.float32),
            jnp.zeros((num_rays,), jnp.int32))
    _, trans, rgb_sum, depth_sum, samples = jax.lax.while_loop(
        more, one_round, init)
    out = compositing.finish(rgb_sum, depth_sum, 1.0 - trans,
                             rays.near[..., 0], rays.far[..., 0], background)
    out['samples'] = samples
    return out


def _occupied_order(valid: jnp.ndarray, width: int) -> tuple:
  """For valid bool[R, n]: order i32[R, width], the step of each ray's j-th
  occupied sample (n: none), and i32[R], each ray's occupied samples."""
  num_rays, n = valid.shape
  rank = jnp.cumsum(valid, axis=1, dtype=jnp.int32) - 1
  rows = jnp.broadcast_to(jnp.arange(num_rays)[:, None], valid.shape)
  cols = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), valid.shape)
  order = jnp.full((num_rays, width), n, jnp.int32).at[
      rows, jnp.where(valid, rank, width)].set(cols, mode='drop')
  return order, rank[:, -1] + 1


def _eval_where(field_fn: FieldFn, rays: Rays, valid: jnp.ndarray,
                t_samples: jnp.ndarray, block: int) -> tuple:
  """The field on the valid samples of [R, s] only, ``block`` at a time.

  Returns dense density f32[R, s] and rgb f32[R, s, 3] (zero where not
  valid); the loop runs ceil(count / block) times.
  """
  num_rays, s = valid.shape
  total = num_rays * s
  indices, count, _ = occupancy.compact(valid, total)
  padded = -(-total // block) * block
  indices = jnp.pad(indices, (0, padded - total), constant_values=total - 1)
  t_flat = t_samples.reshape(-1)

  def body(carry):
    b, density, rgb = carry
    idx = jax.lax.dynamic_slice_in_dim(indices, b * block, block)
    used = b * block + jnp.arange(block) < count
    ids = idx // s
    points = rays.origins[ids] + t_flat[idx][:, None] * rays.directions[ids]
    c, d = field_fn(points, rays.viewdirs[ids])
    target = jnp.where(used, idx, total)
    density = density.at[target].set(d, mode='drop')
    rgb = rgb.at[target].set(c, mode='drop')
    return b + 1, density, rgb

  init = (jnp.zeros((), jnp.int32), jnp.zeros((total,), jnp.float32),
          jnp.zeros((total, 3), jnp.float32))
  _, density, rgb = jax.lax.while_loop(
      lambda c: c[0] * block < count, body, init)
  return density.reshape(num_rays, s), rgb.reshape(num_rays, s, 3)
