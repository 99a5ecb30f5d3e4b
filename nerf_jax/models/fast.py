"""A fast NeRF: hash-grid field, occupancy grid, packed samples, early ray
termination (``model.kind = 'fast'``; instant-ngp's recipe in pure JAX).

Training marches every ray through the scene box with a constant step, drops
the samples in empty cells of the occupancy grid, and evaluates the field on
the survivors packed into a fixed budget (``budget_per_ray`` x rays, a static
shape). Rays whose samples do not all fit are left out of that step's loss.
Rendering goes front to back in rounds of ``round_samples`` occupied samples
per ray and stops a ray once its transmittance falls below
``min_transmittance``; every round evaluates the field only on the occupied
samples of live rays, in blocks, inside a ``jax.lax.while_loop``.

The occupancy grid is the model's non-trained state: every
``occupancy_every`` steps it is refreshed from the field's density with
decay, as in instant-ngp (``occupancy.update_grid``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nerf_jax.render import occupancy, compositing
from nerf_jax import optim
from nerf_jax.cameras.camera import Rays
from nerf_jax.models import base
from nerf_jax.fields import networks


class FastNerf(base.Model):
  """Hash-grid NeRF with empty-space skipping.

  ``params`` are the field's; ``state`` = {'grid': {'density', 'mask'}}.
  """
  kind = 'fast'
  couples_rays = True  # samples of all rays share one packed budget

  # field -> (smallest, largest) accepted value.
  _RANGES = dict(levels=(1, 32), features=(1, 8), log2_table=(8, 24),
                 base_resolution=(1, 4096), max_resolution=(1, 65536),
                 width=(1, 1024), geo_features=(1, 256), num_steps=(2, 4096),
                 budget_per_ray=(1, 4096), occupancy_resolution=(2, 512),
                 occupancy_every=(1, 10 ** 6), occupancy_warmup=(0, 10 ** 9),
                 occupancy_cells=(1, 2 ** 24), round_samples=(1, 4096),
                 eval_block=(1, 2 ** 24))

  @classmethod
  def check_config(cls, model_cfg) -> None:
    cfg = model_cfg.fast
    for name, (lo, hi) in cls._RANGES.items():
      value = cfg[name]
      if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f'model.fast.{name}={value!r} must be an integer in '
                         f'[{lo}, {hi}]')
    if cfg.max_resolution < cfg.base_resolution:
      raise ValueError('model.fast.max_resolution must be >= '
                       'model.fast.base_resolution')
    if not 0.0 < cfg.occupancy_decay <= 1.0:
      raise ValueError('model.fast.occupancy_decay must be in (0, 1]')
    if not 0.0 < cfg.occupancy_alpha < 1.0:
      raise ValueError('model.fast.occupancy_alpha must be in (0, 1)')
    if not 0.0 <= cfg.min_transmittance < 1.0:
      raise ValueError('model.fast.min_transmittance must be in [0, 1)')
    if cfg.weight_decay < 0:
      raise ValueError('model.fast.weight_decay must be >= 0')

  def __init__(self, model_cfg, scene):
    super().__init__(model_cfg, scene)
    cfg = model_cfg.fast
    self.cfg = cfg
    self.aabb = np.asarray(scene.aabb, np.float32)
    self.field = networks.GridField(
        aabb=tuple(map(tuple, scene.aabb)), levels=int(cfg.levels),
        features=int(cfg.features), log2_table=int(cfg.log2_table),
        base_resolution=int(cfg.base_resolution),
        max_resolution=int(cfg.max_resolution), width=int(cfg.width),
        geo_features=int(cfg.geo_features),
        use_viewdirs=bool(model_cfg.use_viewdirs),
        dir_freqs=int(model_cfg.dir_freqs),
        density_bias=float(model_cfg.density_bias),
        dtype=networks.compute_dtype(model_cfg))
    self.num_steps = int(cfg.num_steps)
    # World-space step length and the density whose opacity per step is
    # occupancy_alpha (instant-ngp: 0.01 per step).
    step_len = float(np.linalg.norm(self.aabb[1] - self.aabb[0])) / (
        self.num_steps)
    self.threshold = float(-np.log1p(-cfg.occupancy_alpha) / step_len)

  # -- parameters and state ------------------------------------------------

  def init(self, key: jax.Array) -> tuple:
    points = jnp.zeros((1, 3), jnp.float32)
    viewdirs = jnp.zeros((1, 3), jnp.float32).at[:, 2].set(1.0)
    params = self.field.init(key, points, viewdirs)['params']
    grid = occupancy.init_grid(int(self.cfg.occupancy_resolution))
    return params, {'grid': grid}

  def optimizer(self, train_cfg) -> optax.GradientTransformation:
    """Adam; L2 weight decay on the MLPs only (not the hash tables)."""
    decay = float(self.cfg.weight_decay)

    def mlp_mask(params):
      return jax.tree_util.tree_map_with_path(
          lambda path, _: 'hash_tables' not in jax.tree_util.keystr(path),
          params)

    return optim.make_optimizer(train_cfg, weight_decay=decay,
                                weight_decay_mask=mlp_mask)

  def update_state(self, params, state, step, key):
    cfg = self.cfg

    def density_fn(points):
      return self.field.apply({'params': params}, points,
                              method=networks.GridField.density)

    def refresh(grid):
      return occupancy.update_grid(
          key, grid, density_fn, jnp.asarray(self.aabb), step,
          decay=float(cfg.occupancy_decay), threshold=self.threshold,
          warmup_steps=int(cfg.occupancy_warmup),
          max_cells=int(cfg.occupancy_cells))

    grid = jax.lax.cond(step % int(cfg.occupancy_every) == 0, refresh,
                        lambda g: g, state['grid'])
    return {'grid': grid}

  # -- the field -----------------------------------------------------------

  def query(self, params, state, points, viewdirs=None) -> tuple:
    """The hash-grid field; zero density outside the box and in cells the
    occupancy grid marks empty (the renderer skips them)."""
    if viewdirs is None:
      viewdirs = base.default_viewdirs(points)
    rgb, density = self.field.apply({'params': params}, points, viewdirs)
    return rgb, density * self._occupied(state, points)

  def density(self, params, state, points) -> jnp.ndarray:
    density = self.field.apply({'params': params}, points,
                               method=networks.GridField.density)
    return density * self._occupied(state, points)

  def _occupied(self, state, points) -> jnp.ndarray:
    """f32[...] 1 where the renderer samples points (in the box, in an
    occupied cell), else 0."""
    mask = state['grid']['mask']
    index, inside = occupancy.cell_index(points, jnp.asarray(self.aabb),
                                         mask.shape[0])
    return (inside & mask.reshape(-1)[index]).astype(jnp.float32)

  # -- rendering -----------------------------------------------------------

  def _march(self, key, rays: Rays, state) -> dict:
    return occupancy.march(key, rays.origins, rays.directions, rays.near,
                           rays.far, state['grid']['mask'],
                           jnp.asarray(self.aabb), self.num_steps)

  def _field_at(self, params, rays: Rays, t: jnp.ndarray,
                ray_ids: jnp.ndarray) -> tuple:
    """The field at packed samples: t f32[B] along rays ray_ids int32[B]."""
    points = rays.origins[ray_ids] + t[:, None] * rays.directions[ray_ids]
    return self.field.apply({'params': params}, points,
                            rays.viewdirs[ray_ids])

  def _finish(self, rgb_sum, depth_sum, acc, rays: Rays) -> dict:
    """Final per-ray outputs from accumulated weighted sums."""
    rgb = rgb_sum + (1.0 - acc[..., None]) * self.scene.background
    far = rays.far[..., 0]
    has_mass = acc > 1e-6
    depth = jnp.where(has_mass, depth_sum / jnp.where(has_mass, acc, 1.0),
                      far)
    depth = jnp.clip(depth, rays.near[..., 0], far)
    return dict(rgb=rgb, depth=depth, disparity=1.0 / jnp.maximum(depth, 1e-6),
                acc=acc)

  def render(self, params, state, rays, key=None) -> dict:
    batch_shape = rays.origins.shape[:-1]
    flat = jax.tree_util.tree_map(lambda x: x.reshape((-1, x.shape[-1])),
                                  rays)
    if key is None:
      out = self._render_eval(params, state, flat)
    else:
      out = self._render_train(params, state, flat, key)[0]
    return {k: v.reshape(batch_shape + v.shape[1:]) for k, v in out.items()}

  def _render_train(self, params, state, rays: Rays, key) -> tuple:
    """Packed samples in a fixed budget; returns (outputs, ray_ok, count).

    The occupied samples of all rays, in ray order, fill ``budget`` slots;
    the field runs on exactly those slots and compositing stays packed.
    Rays whose samples did not all fit have ray_ok False.
    """
    num_rays, n = rays.origins.shape[0], self.num_steps
    budget = num_rays * int(self.cfg.budget_per_ray)
    marched = self._march(key, rays, state)
    indices, count, ray_ok = occupancy.compact(marched['valid'], budget)
    used = jnp.arange(budget) < count
    ray_ids = indices // n
    edges = marched['t_edges']
    lo = edges[:, :-1].reshape(-1)[indices]
    hi = edges[:, 1:].reshape(-1)[indices]
    t = marched['t_samples'].reshape(-1)[indices]
    rgb, density = self._field_at(params, rays, t, ray_ids)
    speed = jnp.linalg.norm(rays.directions, axis=-1)[ray_ids]
    density = jnp.where(used, density, 0.0)
    ray_start = jnp.concatenate([jnp.ones((1,), bool),
                                 ray_ids[1:] != ray_ids[:-1]])
    w = compositing.packed_weights(density, (hi - lo) * speed, ray_start)
    # Padding slots go to segment num_rays, which segment_sum drops.
    seg = jnp.where(used, ray_ids, num_rays)

    def per_ray(x):
      return jax.ops.segment_sum(x, seg, num_rays, indices_are_sorted=True)

    out = self._finish(per_ray(w[:, None] * rgb),
                       per_ray(w * 0.5 * (lo + hi)), per_ray(w), rays)
    return out, ray_ok, count

  def _render_eval(self, params, state, rays: Rays) -> dict:
    """Front to back in rounds, with early ray termination.

    Round r takes the r-th ``round_samples`` occupied samples of every ray
    still alive (transmittance above ``min_transmittance``), so the field
    runs only on occupied samples of live rays, and a round costs O(rays x
    round_samples) besides them.
    """
    num_rays, n = rays.origins.shape[0], self.num_steps
    marched = self._march(None, rays, state)
    valid = marched['valid']
    k = min(int(self.cfg.round_samples), n)
    rounds = -(-n // k)
    # order[i, j]: the step of ray i's j-th occupied sample (n: none).
    rank = jnp.cumsum(valid, axis=1, dtype=jnp.int32) - 1
    rows = jnp.broadcast_to(jnp.arange(num_rays)[:, None], valid.shape)
    cols = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), valid.shape)
    order = jnp.full((num_rays, rounds * k), n, jnp.int32).at[
        rows, jnp.where(valid, rank, rounds * k)].set(cols, mode='drop')
    remaining = rank[:, -1] + 1  # occupied samples of each ray
    # Step n is a zero-length interval at the end: padding reads it.
    edges = jnp.concatenate([marched['t_edges'],
                             marched['t_edges'][:, -1:]], axis=1)
    t_all = jnp.concatenate([marched['t_samples'],
                             marched['t_edges'][:, -1:]], axis=1)
    block = max(1, min(int(self.cfg.eval_block), num_rays * k))
    eps = float(self.cfg.min_transmittance)

    def one_round(carry):
      r, trans, rgb_sum, depth_sum, samples = carry
      steps = jax.lax.dynamic_slice_in_dim(order, r * k, k, axis=1)
      live = (steps < n) & (trans > eps)[:, None]
      lo = jnp.take_along_axis(edges, steps, axis=1)
      hi = jnp.take_along_axis(edges, steps + 1, axis=1)
      t = jnp.take_along_axis(t_all, steps, axis=1)
      density, rgb = self._eval_packed(params, rays, live, t, block)
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
    out = self._finish(rgb_sum, depth_sum, 1.0 - trans, rays)
    out['samples'] = samples  # field evaluations spent on each ray
    return out

  def _eval_packed(self, params, rays: Rays, valid, t_samples, block: int):
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
      c, d = self._field_at(params, rays, t_flat[idx], idx // s)
      target = jnp.where(used, idx, total)
      density = density.at[target].set(d, mode='drop')
      rgb = rgb.at[target].set(c, mode='drop')
      return b + 1, density, rgb

    init = (jnp.zeros((), jnp.int32), jnp.zeros((total,), jnp.float32),
            jnp.zeros((total, 3), jnp.float32))
    _, density, rgb = jax.lax.while_loop(
        lambda c: c[0] * block < count, body, init)
    return density.reshape(num_rays, s), rgb.reshape(num_rays, s, 3)

  # -- loss ------------------------------------------------------------------

  def loss(self, params, state, rays, target, key, step) -> tuple:
    """MSE over the rays whose samples fit the budget.

    ``batch_rays`` rays are drawn but only those that fit are trained on, so
    the field always runs on a full budget (nerfacc's dynamic batch);
    ``rays_kept`` reports the fraction.
    """
    del step
    out, ray_ok, count = self._render_train(params, state, rays, key)
    ok = ray_ok.astype(jnp.float32)
    per_ray = jnp.mean((out['rgb'] - target) ** 2, axis=-1)
    mse = jnp.sum(per_ray * ok) / jnp.maximum(jnp.sum(ok), 1.0)
    num_rays = rays.origins.shape[0]
    metrics = dict(
        mse=mse, rays_kept=jnp.mean(ok),
        samples_per_ray=count.astype(jnp.float32) / num_rays,
        occupied=jnp.mean(state['grid']['mask'].astype(jnp.float32)))
    return mse, metrics
