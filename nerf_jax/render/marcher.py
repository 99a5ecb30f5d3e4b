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

Training may prune with the field itself (nerfacc's visibility test): given
a density function (``with_density``), ``sample`` first runs it, without
gradients, over the occupied samples front to back in the same rounds, and
packs only the samples a ray still sees (transmittance before the sample
above ``train_transmittance``) and that hold some mass (opacity above
``train_alpha``). The grid says where density may be; the field says where
a ray already ended. On real captures, whose grid fills with the early fog,
this is what keeps a ray's samples within its budget.

Or training draws a fixed number of samples per ray from the field's own
weights over the march (``train_importance``, mip-NeRF 360's resampling
with the field as its own proposal): every drawn ray is trained, however
much fog the grid holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from nerf_jax.cameras.camera import Rays
from nerf_jax.render import compositing, occupancy, sampling
from nerf_jax.render.sampling import Samples

# field_fn(points f32[b, 3], viewdirs f32[b, 3]) -> (rgb f32[b, 3],
# density f32[b]).
FieldFn = Callable[[jnp.ndarray, jnp.ndarray], tuple]
# density_fn(points f32[b, 3]) -> density f32[b].
DensityFn = Callable[[jnp.ndarray], jnp.ndarray]


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
    train_transmittance: float, 0 to pack every occupied sample in
      training; else, with a density function bound (``with_density``),
      samples behind which a ray's transmittance has fallen below it are
      left out (``visible``).
    train_alpha: float, with pruning on, samples of opacity at most this
      are left out too (nerfacc's alpha threshold; 0 keeps them).
    train_importance: bool, with a density function bound, training draws
      ``budget_per_ray`` samples per ray from the field's weights over the
      march instead (``importance``); every ray is kept.
    train_uniform: float in [0, 1), with ``train_importance``: the share of
      each ray's sampling mass spread evenly over its occupied march steps
      (linear near, disparity far) instead of following the weights, so
      that every part of the ray keeps being trained and a field that
      has put early density in front of the cameras can move it.
    density_fn: the field's density for pruning or importance sampling
      (``with_density``), or None.
  """
  aabb: tuple
  num_steps: int
  budget_per_ray: int = 64
  round_samples: int = 16
  eval_block: int = 1 << 16
  min_transmittance: float = 1e-4
  outer_steps: int = 0
  train_transmittance: float = 0.0
  train_alpha: float = 0.0
  train_importance: bool = False
  train_uniform: float = 0.0
  density_fn: Optional[DensityFn] = dataclasses.field(default=None,
                                                      compare=False)

  levels = ('main',)

  def with_density(self, density_fn: DensityFn) -> 'OccupancyMarcher':
    """This marcher, pruning (``train_transmittance`` > 0) or drawing
    (``train_importance``) training samples with ``density_fn``, called
    under ``stop_gradient``."""
    return dataclasses.replace(self, density_fn=density_fn)

  @property
  def prunes(self) -> bool:
    """Training packs only the samples ``visible`` keeps."""
    return self.density_fn is not None and self.train_transmittance > 0

  @property
  def draws(self) -> bool:
    """Training draws its samples with ``importance``."""
    return self.density_fn is not None and self.train_importance

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
    slots (in ray order); pruned by ``visible`` (``prunes``), or drawn by
    ``importance`` instead (``draws``)."""
    del level, previous
    num_rays, n = rays.origins.shape[0], self.steps
    budget = num_rays * int(self.budget_per_ray)
    marched = self.march(key, rays, state)
    if self.draws:
      key = None if key is None else jax.random.fold_in(key, 1)
      return self.importance(key, self.density_fn, rays, marched)
    valid = marched['valid']
    if self.prunes:
      valid = self.visible(self.density_fn, rays, marched)
    indices, count, ray_ok = occupancy.compact(valid, budget)
    edges = marched['t_edges']
    return Samples(
        t=marched['t_samples'].reshape(-1)[indices],
        t_starts=edges[:, :-1].reshape(-1)[indices],
        t_ends=edges[:, 1:].reshape(-1)[indices], ray_ids=indices // n,
        used=jnp.arange(budget) < count, ray_ok=ray_ok, count=count)

  def visible(self, density_fn: DensityFn, rays: Rays,
              marched: dict) -> jnp.ndarray:
    """Which marched samples a ray still sees: bool[R, n].

    A sample is kept if it is occupied, the transmittance before it (the
    field's, ``transmittance``) is above ``train_transmittance`` and its
    opacity above ``train_alpha``.
    """
    before, alpha = self.transmittance(density_fn, rays, marched)
    return (before > self.train_transmittance) & (alpha > self.train_alpha)

  def importance(self, key: Optional[jax.Array], density_fn: DensityFn,
                 rays: Rays, marched: dict) -> Samples:
    """``budget_per_ray`` samples per ray drawn where the field's own
    weights over the march lie (mip-NeRF 360's resampling, with the field,
    gradients stopped, as its own proposal): packed, every slot used, every
    ray kept.

    ``budget_per_ray`` + 1 edges are drawn by inverse transform sampling
    of the march's weights (stratified with a key); the samples are the
    midpoints of the intervals between them, which tile the weighted part
    of the ray. With ``train_uniform``, that share of the mass is spread
    evenly over the ray's occupied, non-empty steps.
    """
    num_rays = rays.origins.shape[0]
    k = int(self.budget_per_ray)
    before, alpha = self.transmittance(density_fn, rays, marched)
    weights, t_edges = before * alpha, marched['t_edges']
    if self.train_uniform > 0:
      weights = sampling.mix_with_uniform(
          weights, marched['valid'] & (t_edges[:, 1:] > t_edges[:, :-1]),
          self.train_uniform)
    edges = sampling.sample_pdf(key, t_edges, weights, k + 1)
    lo, hi = edges[:, :-1].reshape(-1), edges[:, 1:].reshape(-1)
    budget = num_rays * k
    return Samples(
        t=0.5 * (lo + hi), t_starts=lo, t_ends=hi,
        ray_ids=jnp.arange(budget, dtype=jnp.int32) // k,
        used=jnp.ones((budget,), bool), ray_ok=jnp.ones((num_rays,), bool),
        count=jnp.asarray(budget, jnp.int32))

  def transmittance(self, density_fn: DensityFn, rays: Rays,
                    marched: dict) -> tuple:
    """The field's transmittance before, and opacity of, each marched
    sample: (before, alpha), f32[R, n] each, gradients stopped.

    The density is evaluated front to back in rounds of ``round_samples``
    occupied samples per ray, and only on rays whose transmittance is still
    above ``train_transmittance`` (``min_transmittance`` if 0, as
    ``front_to_back``); samples not evaluated (unoccupied, or behind) have
    both 0.
    """
    num_rays, n = marched['valid'].shape
    rounds, k, order, remaining, edges, t_all = _rounds(
        marched, self.round_samples)
    block = max(1, min(int(self.eval_block), num_rays * k))
    eps = float(self.train_transmittance or self.min_transmittance)
    rows = jnp.arange(num_rays)[:, None]
    fn = lambda points, _: (jax.lax.stop_gradient(density_fn(points)),)

    def one_round(carry):
      r, trans, before_all, alpha_all = carry
      steps = jax.lax.dynamic_slice_in_dim(order, r * k, k, axis=1)
      live = (steps < n) & (trans > eps)[:, None]
      lo = jnp.take_along_axis(edges, steps, axis=1)
      hi = jnp.take_along_axis(edges, steps + 1, axis=1)
      t = jnp.take_along_axis(t_all, steps, axis=1)
      density, = _eval_where(fn, rays, live, t, block)
      # The round's samples as contiguous intervals, as in front_to_back.
      local = jnp.concatenate([jnp.zeros((num_rays, 1)),
                               jnp.cumsum(hi - lo, axis=1)], axis=1)
      alpha, before = compositing.opacity_and_transmittance(
          density, local, rays.directions)
      before = before * trans[:, None]
      # Padding steps (n) fall outside [R, n] and are dropped.
      before_all = before_all.at[rows, steps].set(
          jnp.where(live, before, 0.0), mode='drop')
      alpha_all = alpha_all.at[rows, steps].set(
          jnp.where(live, alpha, 0.0), mode='drop')
      return (r + 1, before[:, -1] * (1.0 - alpha[:, -1]), before_all,
              alpha_all)

    def more(carry):
      r, trans = carry[0], carry[1]
      return (r < rounds) & jnp.any((trans > eps) & (remaining > r * k))

    zeros = jnp.zeros((num_rays, n), jnp.float32)
    init = (jnp.zeros((), jnp.int32), jnp.ones((num_rays,), jnp.float32),
            zeros, zeros)
    return jax.lax.while_loop(more, one_round, init)[2:]

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
    rounds, k, order, remaining, edges, t_all = _rounds(
        marched, self.round_samples)
    block = max(1, min(int(self.eval_block), num_rays * k))
    eps = float(self.min_transmittance)

    def one_round(carry):
      r, trans, rgb_sum, depth_sum, samples = carry
      steps = jax.lax.dynamic_slice_in_dim(order, r * k, k, axis=1)
      live = (steps < n) & (trans > eps)[:, None]
      lo = jnp.take_along_axis(edges, steps, axis=1)
      hi = jnp.take_along_axis(edges, steps + 1, axis=1)
      t = jnp.take_along_axis(t_all, steps, axis=1)
      rgb, density = _eval_where(field_fn, rays, live, t, block)
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


def _rounds(marched: dict, round_samples: int) -> tuple:
  """What the front-to-back rounds over a march share: (rounds, k, order,
  remaining, edges, t_all), k occupied samples per ray a round, ``order``
  and ``remaining`` from ``_occupied_order``, and the edges and samples with
  a zero-length step n appended at the end for padding to read."""
  n = marched['valid'].shape[1]
  k = min(int(round_samples), n)
  rounds = -(-n // k)
  order, remaining = _occupied_order(marched['valid'], rounds * k)
  end = marched['t_edges'][:, -1:]
  edges = jnp.concatenate([marched['t_edges'], end], axis=1)
  t_all = jnp.concatenate([marched['t_samples'], end], axis=1)
  return rounds, k, order, remaining, edges, t_all


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


def _eval_where(fn: Callable, rays: Rays, valid: jnp.ndarray,
                t_samples: jnp.ndarray, block: int) -> tuple:
  """``fn(points, viewdirs)`` (a tuple of arrays [b, ...], such as a
  ``FieldFn``'s (rgb, density)) on the valid samples of [R, s] only,
  ``block`` at a time.

  Returns the outputs dense, [R, s, ...] each (zero where not valid); the
  loop runs ceil(count / block) times.
  """
  num_rays, s = valid.shape
  total = num_rays * s
  indices, count, _ = occupancy.compact(valid, total)
  padded = -(-total // block) * block
  indices = jnp.pad(indices, (0, padded - total), constant_values=total - 1)
  t_flat = t_samples.reshape(-1)
  shapes = jax.eval_shape(fn, jax.ShapeDtypeStruct((block, 3), jnp.float32),
                          jax.ShapeDtypeStruct((block,) +
                                               rays.viewdirs.shape[1:],
                                               jnp.float32))

  def body(carry):
    b, outs = carry
    idx = jax.lax.dynamic_slice_in_dim(indices, b * block, block)
    used = b * block + jnp.arange(block) < count
    ids = idx // s
    points = rays.origins[ids] + t_flat[idx][:, None] * rays.directions[ids]
    values = fn(points, rays.viewdirs[ids])
    target = jnp.where(used, idx, total)
    outs = tuple(o.at[target].set(v.astype(jnp.float32), mode='drop')
                 for o, v in zip(outs, values))
    return b + 1, outs

  init = (jnp.zeros((), jnp.int32),
          tuple(jnp.zeros((total,) + x.shape[1:], jnp.float32)
                for x in shapes))
  _, outs = jax.lax.while_loop(lambda c: c[0] * block < count, body, init)
  return tuple(o.reshape((num_rays, s) + o.shape[1:]) for o in outs)
