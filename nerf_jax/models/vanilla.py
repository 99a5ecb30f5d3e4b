"""The NeRF of Mildenhall et al.: an MLP field sampled at stratified points,
optionally followed by importance samples for a fine level (``model.kind =
'mlp'``): the hierarchical sampler, one MLP per level and the compositor,
joined by ``pipeline.render_rays``.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from nerf_jax.models import pipeline
from nerf_jax.cameras.camera import Rays
from nerf_jax.models import base
from nerf_jax.fields import networks


class VanillaNerf(base.Model):
  """Coarse (+ fine) NeRF; ``params`` = {'coarse': ..., 'fine': ...}, no state.

  Every level is supervised; the loss is the sum of the levels' MSEs.
  """
  kind = 'mlp'

  @classmethod
  def check_config(cls, model_cfg) -> None:
    super().check_config(model_cfg)
    if getattr(model_cfg, 'coarse_to_fine', 0):
      raise ValueError('model.coarse_to_fine applies to kind=\'fast\' only '
                       '(the hash grid\'s levels)')
    if model_cfg.preset:
      return  # presets are checked by name
    for name in ('depth', 'width'):
      value = model_cfg[name]
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'model.{name}={value!r} must be a positive int')
    skips = tuple(model_cfg.skips)
    if any(not isinstance(i, int) or not 0 < i < model_cfg.depth
           for i in skips):
      raise ValueError(f'model.skips={skips!r} must be layer indices in '
                       f'[1, {model_cfg.depth - 1}] (model.depth='
                       f'{model_cfg.depth})')

  def __init__(self, model_cfg, scene):
    super().__init__(model_cfg, scene)
    self.field = networks.make_field(model_cfg)
    self.options = pipeline.RenderOptions(
        num_coarse=int(model_cfg.num_coarse),
        num_fine=int(model_cfg.num_fine),
        background=float(scene.background),
        separate_fine=bool(model_cfg.separate_fine))

  def init(self, key: jax.Array) -> tuple:
    params = pipeline.init_params(key, self.field, self.options,
                                  self.views.appearance_dim)
    return self.views.with_views(params), {}

  def render_levels(self, params: Any, rays: Rays,
                    key: Optional[jax.Array],
                    codes: Optional[jnp.ndarray] = None) -> dict:
    """Every level's outputs (see ``pipeline.render_rays``); the rays read
    ``codes`` f32[..., d] (default: the rendering code, see
    ``views.PerView``)."""
    field_params, views = self.views.split(params)
    if codes is None:
      codes = self.views.render_code(views)
    rays = self.views.condition(rays, codes)
    return pipeline.render_rays(self.field, field_params, rays, key,
                                self.options)

  def query(self, params, state, points, viewdirs=None) -> tuple:
    """The finest level's field (the fine MLP when it has its own)."""
    del state
    field_params, views = self.views.split(params)
    level = 'fine' if 'fine' in field_params else 'coarse'
    if viewdirs is None:
      viewdirs = base.default_viewdirs(points)
    viewdirs = self.views.with_render_code(views, viewdirs)
    return self.field.apply({'params': field_params[level]}, points,
                            viewdirs)

  def render(self, params, state, rays, key=None) -> dict:
    del state
    levels = self.render_levels(params, rays, key)
    return dict(levels[self.options.levels[-1]])

  def loss(self, params, state, batch, key, step) -> tuple:
    del state, step
    codes = self.views.train_codes(self.views.split(params)[1], batch.view)
    levels = self.render_levels(params, batch.rays, key, codes)
    metrics = {f'mse_{name}': jnp.mean((levels[name]['rgb'] - batch.rgb) ** 2)
               for name in self.options.levels}
    metrics['mse'] = metrics[f'mse_{self.options.levels[-1]}']
    loss = sum(metrics[f'mse_{name}'] for name in self.options.levels)
    return loss, metrics
