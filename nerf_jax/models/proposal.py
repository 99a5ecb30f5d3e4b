"""A hash-grid NeRF sampled by proposal networks (``model.kind =
'proposal'``; mip-NeRF 360's and nerfacto's sampler, in pure JAX).

The field is the fast model's (``fast.grid_field``: ``model.fast``'s hash
grid and MLP settings, contracted beyond the box in an unbounded scene).
Where to sample it comes from ``model.proposal``: level 0 spaces
``samples[0]`` intervals per ray linearly through the box and in disparity
beyond, each proposal network (a small density-only hash grid) is evaluated
on its level's samples, and the next level draws its intervals from those
weights (``render.proposal``); the field is evaluated on the last
``field_samples``. Every ray gets the same samples (dense, no packing, no
occupancy grid), so every drawn ray trains and nothing is kept between
steps but the parameters.

The loss adds ``proposal.loss_weight`` times the interlevel loss (each
proposal's weights must bound the field's) and ``model.fast.distortion``
times mip-NeRF 360's distortion loss of the field's weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from nerf_jax.cameras.camera import Rays
from nerf_jax.fields import encoding, networks
from nerf_jax.models import base, fast, pipeline
from nerf_jax.render import distortion, proposal


class ProposalNerf(base.Model):
  """Hash-grid field, proposal-network sampler.

  ``params`` = {'field': the field's, 'proposal_0': ..., 'proposal_1': ...,
  and ``'views'`` (see ``base.Model``)}; no state.
  """
  kind = 'proposal'

  # model.proposal fields -> (smallest, largest) accepted value.
  _RANGES = dict(levels=(1, 32), features=(1, 8), log2_table=(8, 24),
                 base_resolution=(1, 4096), width=(1, 1024),
                 field_samples=(1, 4096))

  @classmethod
  def check_config(cls, model_cfg) -> None:
    fast.check_grid_field(model_cfg)
    p = model_cfg.proposal
    for name, (lo, hi) in cls._RANGES.items():
      fast.check_int(f'model.proposal.{name}', p[name], lo, hi)
    samples, res = tuple(p.samples), tuple(p.max_resolution)
    if not samples:
      raise ValueError('model.proposal.samples must name at least one '
                       'proposal level, e.g. (128, 64)')
    for value in samples:
      fast.check_int('model.proposal.samples', value, 2, 4096)
    if len(res) != len(samples):
      raise ValueError(f'model.proposal.max_resolution={res!r} must give one '
                       f'resolution per proposal level ({len(samples)})')
    for value in res:
      fast.check_int('model.proposal.max_resolution', value,
                     p.base_resolution, 65536)
    if not p.loss_weight > 0:
      raise ValueError('model.proposal.loss_weight must be > 0 (the '
                       'proposal networks learn from it alone)')
    if not 0.0 <= p.uniform < 1.0:
      raise ValueError('model.proposal.uniform must be in [0, 1)')
    super().check_config(model_cfg)

  def __init__(self, model_cfg, scene):
    super().__init__(model_cfg, scene)
    p = model_cfg.proposal
    self.unbounded = scene.extent == 'unbounded'
    self.field = fast.grid_field(model_cfg, scene, self.views.appearance_dim)
    self.proposals = tuple(
        networks.GridField(
            aabb=tuple(map(tuple, scene.aabb)), levels=int(p.levels),
            features=int(p.features), log2_table=int(p.log2_table),
            base_resolution=int(p.base_resolution),
            max_resolution=int(res), width=int(p.width), geo_features=0,
            use_viewdirs=False, density_bias=float(model_cfg.density_bias),
            unbounded=self.unbounded)
        for res in p.max_resolution)
    self.sampler = proposal.ProposalSampler(
        aabb=tuple(map(tuple, scene.aabb)),
        samples=tuple(int(n) for n in p.samples) + (int(p.field_samples),),
        unbounded=self.unbounded, uniform=float(p.uniform))
    self.loss_weight = float(p.loss_weight)
    self.distortion = float(getattr(model_cfg.fast, 'distortion', 0.0))
    self.weight_decay = float(model_cfg.fast.weight_decay)
    self.coarse_to_fine = int(getattr(model_cfg, 'coarse_to_fine', 0))
    self.levels = int(model_cfg.fast.levels)

  # -- parameters ------------------------------------------------------------

  def init(self, key: jax.Array) -> tuple:
    points = jnp.zeros((1, 3), jnp.float32)
    keys = jax.random.split(key, len(self.proposals) + 1)
    params = {'field': self.field.init(keys[0], points, base.init_ray_inputs(
        self.views.appearance_dim))['params']}
    for i, (net, k) in enumerate(zip(self.proposals, keys[1:])):
      params[f'proposal_{i}'] = net.init(
          k, points, method=networks.GridField.density)['params']
    return self.views.with_views(params), {}

  def field_optimizer(self, train_cfg) -> optax.GradientTransformation:
    """Adam; L2 weight decay on the MLPs only (``fast.grid_optimizer``),
    the proposal networks' included."""
    return fast.grid_optimizer(train_cfg, self.weight_decay)

  # -- the field -------------------------------------------------------------

  def query(self, params, state, points, viewdirs=None) -> tuple:
    """The hash-grid field (the proposal networks only steer sampling)."""
    del state
    if viewdirs is None:
      viewdirs = base.default_viewdirs(points)
    field_params, views = self.views.split(params)
    viewdirs = self.views.with_render_code(views, viewdirs)
    return self.field.apply({'params': field_params['field']}, points,
                            viewdirs)

  def density(self, params, state, points) -> jnp.ndarray:
    del state
    return self.field.apply({'params': self.views.split(params)[0]['field']},
                            points, method=networks.GridField.density)

  # -- rendering ---------------------------------------------------------------

  def render_levels(self, params, rays: Rays, key,
                    level_weights=None) -> dict:
    """Every level's outputs for rays [R] (``pipeline.render_levels``),
    proposal levels first, the field's ('main') last."""
    field_params = self.views.split(params)[0]
    last = len(self.proposals)

    def field_fn(level, points, viewdirs):
      if level < last:
        density = self.proposals[level].apply(
            {'params': field_params[f'proposal_{level}']}, points,
            method=networks.GridField.density)
        return jnp.zeros(density.shape + (3,), jnp.float32), density
      return self.field.apply({'params': field_params['field']}, points,
                              viewdirs, level_weights)

    return pipeline.render_levels(self.sampler, field_fn, rays, {}, key,
                                  self.scene.background)

  def render(self, params, state, rays, key=None) -> dict:
    del state
    batch_shape = rays.origins.shape[:-1]
    flat = jax.tree_util.tree_map(lambda x: x.reshape((-1, x.shape[-1])),
                                  rays)
    views = self.views.split(params)[1]
    flat = self.views.condition(flat, self.views.render_code(views))
    out = dict(self.render_levels(params, flat, key)['main'])
    out.pop('intervals')
    out.pop('weights')
    return {k: v.reshape(batch_shape + v.shape[1:]) for k, v in out.items()}

  # -- loss --------------------------------------------------------------------

  def loss(self, params, state, batch, key, step) -> tuple:
    """MSE of every drawn ray, plus ``proposal.loss_weight`` x the
    interlevel loss of each proposal level, plus ``fast.distortion`` x the
    distortion loss. Each ray reads its view's appearance code; with
    ``model.coarse_to_fine`` the field's finer hash levels fade in over
    that many steps (BARF)."""
    del state
    codes = self.views.train_codes(self.views.split(params)[1], batch.view)
    rays = self.views.condition(batch.rays, codes)
    level_weights = None
    if self.coarse_to_fine:
      level_weights = encoding.coarse_to_fine(
          self.levels, step.astype(jnp.float32) / self.coarse_to_fine)
    levels = self.render_levels(params, rays, key, level_weights)
    main = levels['main']
    mse = jnp.mean((main['rgb'] - batch.rgb) ** 2)
    edges, weights = main['intervals'].t_edges(), main['weights']
    interlevel = sum(
        jnp.mean(proposal.interlevel_loss(
            edges, weights, levels[name]['intervals'].t_edges(),
            levels[name]['weights']))
        for name in self.sampler.levels[:-1])
    metrics = dict(mse=mse, interlevel=interlevel)
    loss = mse + self.loss_weight * interlevel
    if self.distortion:
      metrics['distortion'] = jnp.mean(distortion.distortion_loss(
          main['intervals'], weights, rays.near, rays.far, self.unbounded))
      loss = loss + self.distortion * metrics['distortion']
    return loss, metrics

