"""render_rays: sampling -> field -> compositing, coarse and (optionally) fine.

This is the one place where the sampler (render.sampling), the field
(fields.networks) and the compositor (render.compositing) meet: the vanilla
model's assembly, so it lives with the models.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from nerf_jax.cameras.camera import Rays
from nerf_jax.fields.networks import NerfMLP
from nerf_jax.render import compositing, sampling


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  """Static settings of ``render_rays`` (hashable, so jit can close over it).

  Attributes:
    num_coarse: int, stratified samples per ray.
    num_fine: int, extra importance samples per ray; 0 disables the fine pass.
    white_background: bool, composite onto white instead of black.
    separate_fine: bool, the fine pass uses its own MLP (as in the NeRF paper)
      rather than re-using the coarse one.
  """
  num_coarse: int = 64
  num_fine: int = 0
  white_background: bool = False
  separate_fine: bool = True

  @property
  def levels(self) -> tuple:
    return ('coarse', 'fine') if self.num_fine > 0 else ('coarse',)


def init_params(key: jax.Array, field: NerfMLP,
                options: RenderOptions) -> dict:
  """Initial parameters: {'coarse': ..., 'fine': ...} (fine only if used)."""
  points = jnp.zeros((1, 3), jnp.float32)
  viewdirs = jnp.zeros((1, 3), jnp.float32).at[:, 2].set(1.0)
  params = {}
  for level, k in zip(('coarse', 'fine'), jax.random.split(key)):
    if level == 'coarse' or (options.num_fine > 0 and options.separate_fine):
      params[level] = field.init(k, points, viewdirs)['params']
  return params


def _evaluate(field, params, rays: Rays, t_samples: jnp.ndarray,
              background: float) -> dict:
  """Runs the field at the samples and composites one level."""
  t_edges = sampling.edges_from_samples(t_samples, rays.near, rays.far)
  points = sampling.points_along_rays(rays.origins, rays.directions, t_samples)
  viewdirs = rays.viewdirs[..., None, :]
  rgb, density = field.apply({'params': params}, points, viewdirs)
  out = compositing.volumetric_rendering(density, rgb, t_edges, rays.directions,
                                       background)
  out['t_edges'] = t_edges
  out['t_samples'] = t_samples
  return out


def render_rays(field: NerfMLP, params: dict, rays: Rays,
                key: Optional[jax.Array], options: RenderOptions) -> dict:
  """Renders a batch of rays.

  Args:
    field: the MLP (a Flax module definition; parameters come separately).
    params: {'coarse': ..., 'fine': ...} as from ``init_params``.
    rays: ``Rays`` of batch shape [...].
    key: PRNG key for stratified and importance jitter, or None for the
      deterministic evaluation path.
    options: static sampling settings.

  Returns:
    dict from level ('coarse', and 'fine' when num_fine > 0) to the outputs of
    ``compositing.volumetric_rendering`` (rgb f32[..., 3], depth, disparity and
    acc f32[...], weights f32[..., n]) plus t_edges and t_samples.
  """
  background = 1.0 if options.white_background else 0.0
  k_coarse, k_fine = (None, None) if key is None else jax.random.split(key)
  t_coarse = sampling.stratified_samples(k_coarse, rays.near, rays.far,
                                         options.num_coarse)
  coarse = _evaluate(field, params['coarse'], rays, t_coarse, background)
  outputs = {'coarse': coarse}
  if options.num_fine > 0:
    t_new = sampling.sample_pdf(k_fine, coarse['t_edges'], coarse['weights'],
                                options.num_fine)
    t_fine = sampling.merge_samples(jax.lax.stop_gradient(t_coarse), t_new)
    fine_params = params['fine'] if options.separate_fine else params['coarse']
    outputs['fine'] = _evaluate(field, fine_params, rays, t_fine, background)
  return outputs
