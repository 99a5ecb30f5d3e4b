"""The join of a sampler, fields and the compositor: ``render_levels``.

This is the one place where a sampler (render.samplers: the hierarchical
sampler, the occupancy marcher), a model's fields (fields.networks) and the
compositor (render.compositing) meet; every model renders through it.
``render_rays`` is the vanilla NeRF's assembly (hierarchical sampler, one
MLP per level).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from nerf_jax.cameras.camera import Rays
from nerf_jax.fields.networks import NerfMLP
from nerf_jax.render import compositing, samplers

# field_fn(level: int, points f32[..., 3], viewdirs f32[..., 3 + c]) ->
# (rgb f32[..., 3], density f32[...]): a model's field for each level.
# ``viewdirs`` is the rays' per-ray input to the field, gathered for each
# sample: the unit view direction, then whatever a model appended per ray
# (c numbers: an appearance code, see models.views).
FieldFn = Callable[[int, jnp.ndarray, jnp.ndarray], tuple]


def render_levels(sampler: samplers.Sampler, field_fn: FieldFn, rays: Rays,
                  state: Any, key: Optional[jax.Array],
                  background) -> dict:
  """Renders rays level by level: sample, evaluate the field, composite.

  Args:
    sampler: where to sample (``samplers.Sampler``).
    field_fn: the model's field at each level (see ``FieldFn``).
    rays: ``Rays`` of batch shape [...] (packing samplers: [R]).
    state: the model's non-trained state (the sampler may read it).
    key: PRNG key, or None for the deterministic evaluation path.
    background: float or f32[3], the colour behind the volume.

  Returns:
    dict from level name to ``compositing.composite_samples``'s outputs
    plus ``intervals``: the level's ``sampling.Samples``.
  """
  outputs, previous = {}, None
  for level, name in enumerate(sampler.levels):
    samples = sampler.sample(key, rays, state, level, previous)
    points, viewdirs = samples.points(rays.origins, rays.directions,
                                      rays.viewdirs)
    rgb, density = field_fn(level, points, viewdirs)
    out = compositing.composite_samples(samples, density, rgb,
                                        rays.directions, rays.near, rays.far,
                                        background)
    out['intervals'] = samples
    outputs[name] = out
    previous = (samples, out['weights'])
  return outputs


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  """Static settings of ``render_rays`` (hashable, so jit can close over it).

  Attributes:
    num_coarse: int, stratified samples per ray.
    num_fine: int, extra importance samples per ray; 0 disables the fine pass.
    background: float, the grey level behind the volume (the scene's
      ``SceneInfo.background``: 0 black, 1 white).
    separate_fine: bool, the fine pass uses its own MLP (as in the NeRF paper)
      rather than re-using the coarse one.
  """
  num_coarse: int = 64
  num_fine: int = 0
  background: float = 0.0
  separate_fine: bool = True

  @property
  def levels(self) -> tuple:
    return ('coarse', 'fine') if self.num_fine > 0 else ('coarse',)


def init_params(key: jax.Array, field: NerfMLP, options: RenderOptions,
                appearance_dim: int = 0) -> dict:
  """Initial parameters: {'coarse': ..., 'fine': ...} (fine only if used);
  the field reads an appearance code of ``appearance_dim`` numbers."""
  points = jnp.zeros((1, 3), jnp.float32)
  viewdirs = jnp.zeros((1, 3 + appearance_dim),
                       jnp.float32).at[:, 2].set(1.0)
  params = {}
  for level, k in zip(('coarse', 'fine'), jax.random.split(key)):
    if level == 'coarse' or (options.num_fine > 0 and options.separate_fine):
      params[level] = field.init(k, points, viewdirs)['params']
  return params


def render_rays(field: NerfMLP, params: dict, rays: Rays,
                key: Optional[jax.Array], options: RenderOptions) -> dict:
  """Renders a batch of rays with the vanilla NeRF's assembly.

  Args:
    field: the MLP (a Flax module definition; parameters come separately).
    params: {'coarse': ..., 'fine': ...} as from ``init_params``.
    rays: ``Rays`` of batch shape [...].
    key: PRNG key for stratified and importance jitter, or None for the
      deterministic evaluation path.
    options: static sampling settings.

  Returns:
    dict from level ('coarse', and 'fine' when num_fine > 0) to the outputs of
    ``compositing.composite_samples`` (rgb f32[..., 3], depth, disparity and
    acc f32[...], weights f32[..., n]) plus t_edges and t_samples.
  """
  sampler = samplers.Hierarchical(options.num_coarse, options.num_fine)

  def field_fn(level, points, viewdirs):
    name = 'coarse' if level == 0 or not options.separate_fine else 'fine'
    return field.apply({'params': params[name]}, points, viewdirs)

  levels = render_levels(sampler, field_fn, rays, {}, key,
                         options.background)
  for out in levels.values():
    samples = out.pop('intervals')
    out['t_edges'], out['t_samples'] = samples.t_edges(), samples.t
  return levels
