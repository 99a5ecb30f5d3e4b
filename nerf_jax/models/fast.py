"""A fast NeRF: hash-grid field, occupancy grid, packed samples, early ray
termination (``model.kind = 'fast'``; instant-ngp's recipe in pure JAX).

Assembled from the occupancy-grid marcher (``render.marcher``: packed
samples in a fixed budget for training, front-to-back rounds with early
termination for evaluation), the hash-grid field (``fields.networks``) and
the one compositor, joined by ``pipeline.render_levels``. Rays whose samples
do not all fit the budget are left out of that step's loss.

The occupancy grid is the model's non-trained state: every
``occupancy_every`` steps it is refreshed from the field's density with
decay, as in instant-ngp (``occupancy.update_grid``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nerf_jax import optim
from nerf_jax.cameras.camera import Rays
from nerf_jax.fields import encoding, networks
from nerf_jax.models import base, pipeline
from nerf_jax.models import views as views_lib
from nerf_jax.render import distortion, marcher, occupancy


class FastNerf(base.Model):
  """Hash-grid NeRF with empty-space skipping.

  ``params`` are the field's (and ``'views'``, see ``base.Model``);
  ``state`` = {'grid': {'density', 'mask'}}.
  """
  kind = 'fast'
  couples_rays = True  # samples of all rays share one packed budget

  # The marcher's and grid's fields -> (smallest, largest) accepted value.
  _RANGES = dict(num_steps=(2, 4096), outer_steps=(1, 4096),
                 budget_per_ray=(1, 4096), occupancy_resolution=(2, 512),
                 occupancy_every=(1, 10 ** 6), occupancy_warmup=(0, 10 ** 9),
                 occupancy_cells=(1, 2 ** 24), round_samples=(1, 4096),
                 eval_block=(1, 2 ** 24))

  @classmethod
  def check_config(cls, model_cfg) -> None:
    check_grid_field(model_cfg)
    cfg = model_cfg.fast
    for name, (lo, hi) in cls._RANGES.items():
      check_int(f'model.fast.{name}', cfg[name], lo, hi)
    if not 0.0 < cfg.occupancy_decay <= 1.0:
      raise ValueError('model.fast.occupancy_decay must be in (0, 1]')
    if not 0.0 < cfg.occupancy_alpha < 1.0:
      raise ValueError('model.fast.occupancy_alpha must be in (0, 1)')
    if not 0.0 <= cfg.min_transmittance < 1.0:
      raise ValueError('model.fast.min_transmittance must be in [0, 1)')
    if not 0.0 <= getattr(cfg, 'train_transmittance', 0.0) < 1.0:
      raise ValueError('model.fast.train_transmittance must be in [0, 1)')
    if not 0.0 <= getattr(cfg, 'train_alpha', 0.0) < 1.0:
      raise ValueError('model.fast.train_alpha must be in [0, 1)')
    if not 0.0 <= getattr(cfg, 'train_uniform', 0.0) < 1.0:
      raise ValueError('model.fast.train_uniform must be in [0, 1)')
    super().check_config(model_cfg)

  def __init__(self, model_cfg, scene):
    super().__init__(model_cfg, scene)
    cfg = model_cfg.fast
    self.cfg = cfg
    self.aabb = np.asarray(scene.aabb, np.float32)
    # An unbounded scene's grids span contracted space around its box.
    self.unbounded = scene.extent == 'unbounded'
    self.field = grid_field(model_cfg, scene, self.views.appearance_dim)
    self.coarse_to_fine = int(getattr(model_cfg, 'coarse_to_fine', 0))
    self.distortion = float(getattr(cfg, 'distortion', 0.0))
    self.num_steps = int(cfg.num_steps)
    # World-space step length and the density whose opacity per step is
    # occupancy_alpha (instant-ngp: 0.01 per step).
    step_len = float(np.linalg.norm(self.aabb[1] - self.aabb[0])) / (
        self.num_steps)
    self.threshold = float(-np.log1p(-cfg.occupancy_alpha) / step_len)
    self.sampler = marcher.OccupancyMarcher(
        aabb=tuple(map(tuple, scene.aabb)), num_steps=self.num_steps,
        budget_per_ray=int(cfg.budget_per_ray),
        round_samples=int(cfg.round_samples), eval_block=int(cfg.eval_block),
        min_transmittance=float(cfg.min_transmittance),
        outer_steps=int(cfg.outer_steps) if self.unbounded else 0,
        train_transmittance=float(getattr(cfg, 'train_transmittance', 0.0)),
        train_alpha=float(getattr(cfg, 'train_alpha', 0.0)),
        train_importance=bool(getattr(cfg, 'train_importance', False)),
        train_uniform=float(getattr(cfg, 'train_uniform', 0.0)))

  # -- parameters and state ------------------------------------------------

  def init(self, key: jax.Array) -> tuple:
    points = jnp.zeros((1, 3), jnp.float32)
    params = self.field.init(key, points, base.init_ray_inputs(
        self.views.appearance_dim))['params']
    grid = occupancy.init_grid(int(self.cfg.occupancy_resolution))
    return self.views.with_views(params), {'grid': grid}

  def field_optimizer(self, train_cfg) -> optax.GradientTransformation:
    """Adam; L2 weight decay on the MLPs only (``grid_optimizer``)."""
    return grid_optimizer(train_cfg, float(self.cfg.weight_decay))

  def update_state(self, params, state, step, key):
    cfg = self.cfg
    field_params = self.views.split(params)[0]

    def density_fn(points):
      return self.field.apply({'params': field_params}, points,
                              method=networks.GridField.density)

    def refresh(grid):
      return occupancy.update_grid(
          key, grid, density_fn, jnp.asarray(self.aabb), step,
          decay=float(cfg.occupancy_decay), threshold=self.threshold,
          warmup_steps=int(cfg.occupancy_warmup),
          max_cells=int(cfg.occupancy_cells), unbounded=self.unbounded)

    grid = jax.lax.cond(step % int(cfg.occupancy_every) == 0, refresh,
                        lambda g: g, state['grid'])
    return {'grid': grid}

  # -- the field -----------------------------------------------------------

  def query(self, params, state, points, viewdirs=None) -> tuple:
    """The hash-grid field; zero density outside the box and in cells the
    occupancy grid marks empty (the renderer skips them)."""
    if viewdirs is None:
      viewdirs = base.default_viewdirs(points)
    field_params, views = self.views.split(params)
    viewdirs = self.views.with_render_code(views, viewdirs)
    rgb, density = self.field.apply({'params': field_params}, points,
                                    viewdirs)
    return rgb, density * self._occupied(state, points)

  def density(self, params, state, points) -> jnp.ndarray:
    density = self.field.apply({'params': self.views.split(params)[0]},
                               points, method=networks.GridField.density)
    return density * self._occupied(state, points)

  def _occupied(self, state, points) -> jnp.ndarray:
    """f32[...] 1 where the renderer samples points (in the box, in an
    occupied cell), else 0."""
    mask = state['grid']['mask']
    index, inside = occupancy.cell_index(points, jnp.asarray(self.aabb),
                                         mask.shape[0], self.unbounded)
    return (inside & mask.reshape(-1)[index]).astype(jnp.float32)

  # -- rendering -----------------------------------------------------------

  def _field_fn(self, params, level_weights=None):
    """The hash-grid field as the samplers' join calls it (its per-ray
    input: the view direction, then any appearance code)."""
    variables = {'params': self.views.split(params)[0]}
    return lambda points, viewdirs: self.field.apply(
        variables, points, viewdirs, level_weights)

  def render(self, params, state, rays, key=None) -> dict:
    batch_shape = rays.origins.shape[:-1]
    flat = jax.tree_util.tree_map(lambda x: x.reshape((-1, x.shape[-1])),
                                  rays)
    views = self.views.split(params)[1]
    flat = self.views.condition(flat, self.views.render_code(views))
    if key is None:
      out = self._render_eval(params, state, flat)
    else:
      out = self._render_train(params, state, flat, key)[0]
    return {k: v.reshape(batch_shape + v.shape[1:]) for k, v in out.items()}

  def _render_train(self, params, state, rays: Rays, key,
                    level_weights=None) -> tuple:
    """Packed samples in a fixed budget (the marcher's; with
    ``model.fast.train_transmittance`` only those the field's own density
    leaves visible; with ``model.fast.train_importance`` drawn from the
    field's weights), through the join; returns (outputs per ray, samples,
    weights per packed slot). Rays whose samples did not all fit have
    ``samples.ray_ok`` False."""
    field = self._field_fn(params, level_weights)
    sampler = self.sampler
    if sampler.train_transmittance > 0 or sampler.train_importance:
      variables = {'params': self.views.split(params)[0]}
      sampler = sampler.with_density(lambda points: self.field.apply(
          variables, points, level_weights,
          method=networks.GridField.density))
    if sampler.train_importance:
      marched_field = field

      def field(points, viewdirs):
        # Drawn samples may fall in cells the grid marks empty, where the
        # renderer sees no density: training sees none there either.
        rgb, density = marched_field(points, viewdirs)
        return rgb, density * self._occupied(state, points)

    out = pipeline.render_levels(
        sampler, lambda level, *x: field(*x), rays, state, key,
        self.scene.background)['main']
    samples = out.pop('intervals')
    return out, samples, out.pop('weights')

  def _render_eval(self, params, state, rays: Rays) -> dict:
    """Front to back in rounds, with early ray termination (see
    ``marcher.OccupancyMarcher.front_to_back``)."""
    return self.sampler.front_to_back(self._field_fn(params), rays, state,
                                      self.scene.background)

  # -- loss ------------------------------------------------------------------

  def loss(self, params, state, batch, key, step) -> tuple:
    """MSE over the rays whose samples fit the budget.

    ``batch_rays`` rays are drawn but only those that fit are trained on, so
    the field always runs on a full budget (nerfacc's dynamic batch);
    ``rays_kept`` reports the fraction. Each ray reads its view's
    appearance code; with ``model.coarse_to_fine`` the finer hash levels
    fade in over that many steps (BARF). ``model.fast.distortion`` weighs
    mip-NeRF 360's distortion loss (``render.distortion``) of the kept
    rays, which clears fog and floaters (and so the occupancy grid).
    """
    codes = self.views.train_codes(self.views.split(params)[1], batch.view)
    rays = self.views.condition(batch.rays, codes)
    weights = None
    if self.coarse_to_fine:
      weights = encoding.coarse_to_fine(
          int(self.cfg.levels), step.astype(jnp.float32) / self.coarse_to_fine)
    out, samples, slot_weights = self._render_train(params, state, rays, key,
                                                    weights)
    ok = samples.ray_ok.astype(jnp.float32)
    kept = lambda per_ray: jnp.sum(per_ray * ok) / jnp.maximum(jnp.sum(ok),
                                                               1.0)
    mse = kept(jnp.mean((out['rgb'] - batch.rgb) ** 2, axis=-1))
    num_rays = rays.origins.shape[0]
    metrics = dict(
        mse=mse, rays_kept=jnp.mean(ok),
        samples_per_ray=samples.count.astype(jnp.float32) / num_rays,
        occupied=jnp.mean(state['grid']['mask'].astype(jnp.float32)))
    loss = mse
    if self.distortion:
      metrics['distortion'] = kept(distortion.distortion_loss(
          samples, slot_weights, rays.near, rays.far, self.unbounded))
      loss = loss + self.distortion * metrics['distortion']
    return loss, metrics


# model.fast's hash-grid field settings -> (smallest, largest) accepted value.
GRID_RANGES = dict(levels=(1, 32), features=(1, 8), log2_table=(8, 24),
                   base_resolution=(1, 4096), max_resolution=(1, 65536),
                   width=(1, 1024), geo_features=(1, 256))


def check_int(name: str, value, lo: int, hi: int) -> None:
  """ValueError (one line naming ``name``) unless ``value`` is an integer
  in [lo, hi]."""
  if not isinstance(value, int) or isinstance(value, bool) or not (
      lo <= value <= hi):
    raise ValueError(f'{name}={value!r} must be an integer in [{lo}, {hi}]')


def check_grid_field(model_cfg) -> None:
  """Checks what ``grid_field`` and its training read (``model.fast``'s
  hash grid and MLPs, weight decay and distortion weight, and
  ``model.coarse_to_fine``); ValueError (one line) naming the field."""
  cfg = model_cfg.fast
  for name, (lo, hi) in GRID_RANGES.items():
    check_int(f'model.fast.{name}', cfg[name], lo, hi)
  if cfg.max_resolution < cfg.base_resolution:
    raise ValueError('model.fast.max_resolution must be >= '
                     'model.fast.base_resolution')
  if cfg.weight_decay < 0:
    raise ValueError('model.fast.weight_decay must be >= 0')
  if getattr(cfg, 'distortion', 0.0) < 0:
    raise ValueError('model.fast.distortion must be >= 0')
  c2f = getattr(model_cfg, 'coarse_to_fine', 0)
  if not isinstance(c2f, int) or c2f < 0:
    raise ValueError(f'model.coarse_to_fine={c2f!r} must be an integer '
                     '>= 0 (steps)')


def grid_field(model_cfg, scene, appearance_dim: int) -> networks.GridField:
  """The hash-grid field of ``model.fast``'s settings over the scene's box
  (contracted beyond it in an unbounded scene); its colour reads the view
  direction (``model.use_viewdirs``) and an appearance code of
  ``appearance_dim`` numbers."""
  cfg = model_cfg.fast
  return networks.GridField(
      aabb=tuple(map(tuple, scene.aabb)), levels=int(cfg.levels),
      features=int(cfg.features), log2_table=int(cfg.log2_table),
      base_resolution=int(cfg.base_resolution),
      max_resolution=int(cfg.max_resolution), width=int(cfg.width),
      geo_features=int(cfg.geo_features),
      use_viewdirs=bool(model_cfg.use_viewdirs),
      dir_freqs=int(model_cfg.dir_freqs),
      density_bias=float(model_cfg.density_bias),
      dtype=networks.compute_dtype(model_cfg),
      unbounded=scene.extent == 'unbounded', appearance_dim=appearance_dim)


def grid_optimizer(train_cfg, decay: float) -> optax.GradientTransformation:
  """Adam with L2 weight decay ``decay`` on the MLPs only (not the hash
  tables, nor the per-view parameters)."""

  def mlp_mask(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(
            name in jax.tree_util.keystr(path)
            for name in ('hash_tables', views_lib.KEY)), params)

  return optim.make_optimizer(train_cfg, weight_decay=decay,
                              weight_decay_mask=mlp_mask)
