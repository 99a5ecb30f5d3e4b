"""``Model.query`` / ``Model.density``: the field an image shows, at any point.

Compositing ``query`` along a model's own samples must reproduce the model's
render, for the vanilla NeRF (its finest level) and the fast model (whose
query is zero wherever the occupancy grid makes the renderer skip space).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from nerf_jax.cameras import camera
from nerf_jax import datasets, models
from nerf_jax.fields import networks
from nerf_jax.render import compositing
from tests.test_fast import _dense_reference, _model, _rays


def _vanilla(num_fine: int, separate_fine: bool = True):
  config = demo.get_config()
  config.data.width = config.data.height = 16
  config.data.num_train, config.data.num_val, config.data.num_test = 4, 1, 0
  config.model.use_viewdirs = True
  config.model.num_coarse = 16
  config.model.num_fine = num_fine
  config.model.separate_fine = separate_fine
  scene = datasets.load_scene(config.data)
  model = models.make_model(config.model, scene.info())
  params, state = model.init(jax.random.PRNGKey(3))
  split = scene.split('val')
  intr = split.intrinsics.scaled(8 / split.intrinsics.width)
  rays = camera.generate_rays(intr, split.poses[0], scene.near, scene.far)
  rays = jax.tree_util.tree_map(lambda x: x.reshape(-1, x.shape[-1]), rays)
  return model, params, state, rays


@functools.partial(jax.jit, static_argnums=0)
def _composite(model, params, state, rays, t_samples, t_edges):
  points = rays.origins[:, None] + t_samples[..., None] * rays.directions[:, None]
  viewdirs = jnp.broadcast_to(rays.viewdirs[:, None], points.shape)
  rgb, density = model.query(params, state, points, viewdirs)
  return compositing.volumetric_rendering(density, rgb, t_edges,
                                        rays.directions,
                                        model.scene.background)


@pytest.mark.parametrize('num_fine,separate', [(0, True), (8, True),
                                               (8, False)])
def test_vanilla_query_composites_to_the_render(num_fine, separate):
  model, params, state, rays = _vanilla(num_fine, separate)
  levels = jax.jit(lambda p, r: model.render_levels(p, r, None))(params,
                                                                 rays)
  last = levels[model.options.levels[-1]]
  out = _composite(model, params, state, rays, last['t_samples'],
                   last['t_edges'])
  np.testing.assert_allclose(out['rgb'], last['rgb'], atol=1e-5)
  np.testing.assert_allclose(out['depth'], last['depth'], rtol=1e-5)
  if num_fine and separate:  # the fine MLP, not the coarse one
    wrong = _composite(model, {'coarse': params['coarse']}, state, rays,
                       last['t_samples'], last['t_edges'])
    assert np.abs(np.asarray(wrong['rgb'] - last['rgb'])).max() > 1e-3


def test_vanilla_density_is_the_querys_and_ignores_view_direction():
  model, params, state, _ = _vanilla(8)
  points = jax.random.uniform(jax.random.PRNGKey(0), (50, 3), minval=-1.5,
                              maxval=1.5)
  dirs = jax.random.normal(jax.random.PRNGKey(1), (50, 3))
  dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
  rgb_a, dens_a = model.query(params, state, points, dirs)
  rgb_b, dens_b = model.query(params, state, points)
  np.testing.assert_allclose(dens_a, dens_b, rtol=1e-6)
  np.testing.assert_allclose(model.density(params, state, points), dens_a,
                             rtol=1e-6)
  assert np.abs(np.asarray(rgb_a - rgb_b)).max() > 1e-4  # view dependent


@pytest.mark.parametrize('masked', [False, True])
def test_fast_query_composites_to_the_render_and_respects_the_grid(masked):
  model, params, state, scene = _model()
  rays = _rays(scene)
  grid = state['grid']
  if masked:  # the renderer skips half of the box
    g = grid['mask'].shape[0]
    state = {'grid': dict(grid, mask=grid['mask'].at[: g // 2].set(False))}
  model.sampler = dataclasses.replace(model.sampler, min_transmittance=0.0)
  out = jax.jit(model._render_eval)(params, state, rays)  # pylint: disable=protected-access
  # Every marched step of the unmasked grid, composited with query: where
  # the grid is empty query is zero, so those steps add nothing.
  ref = _dense_reference(model, params, rays, None)
  assert float(jnp.mean(ref['acc'] > 1e-3)) > 0.3
  marched = model.sampler.march(None, rays, {'grid': grid})
  mine = _composite(model, params, state, rays, marched['t_samples'],
                    marched['t_edges'])
  np.testing.assert_allclose(mine['rgb'], out['rgb'], atol=2e-5)
  np.testing.assert_allclose(mine['acc'], out['acc'], atol=2e-5)
  if masked:
    assert np.abs(np.asarray(ref['acc'] - out['acc'])).max() > 1e-2


def test_fast_density_is_zero_outside_the_box_and_in_empty_cells():
  model, params, state, _ = _model()
  lo, hi = np.asarray(model.aabb)
  inside = jax.random.uniform(jax.random.PRNGKey(0), (200, 3), minval=lo,
                              maxval=hi)
  raw = model.field.apply({'params': params}, inside,
                          method=networks.GridField.density)
  np.testing.assert_allclose(model.density(params, state, inside), raw,
                             rtol=1e-6)
  outside = inside + (hi - lo) * 1.01
  assert not np.any(np.asarray(model.density(params, state, outside)))
  empty = {'grid': dict(state['grid'],
                        mask=jnp.zeros_like(state['grid']['mask']))}
  assert not np.any(np.asarray(model.density(params, empty, inside)))
  np.testing.assert_allclose(model.query(params, state, inside)[1], raw,
                             rtol=1e-6)


def test_proposal_query_composites_to_the_render():
  from tests.test_proposal import proposal_config  # pylint: disable=g-import-not-at-top
  config = proposal_config()
  scene = datasets.load_scene(config.data)
  model = models.make_model(config.model, scene.info())
  params, state = model.init(jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map(
      lambda x: x + 0.5 * jax.random.normal(jax.random.PRNGKey(1), x.shape),
      params)
  rays = _rays(scene)
  levels = jax.jit(lambda p, r: model.render_levels(p, r, None))(params,
                                                                 rays)
  main = levels['main']
  assert float(jnp.mean(main['acc'] > 1e-3)) > 0.3
  out = _composite(model, params, state, rays, main['intervals'].t,
                   main['intervals'].t_edges())
  np.testing.assert_allclose(out['rgb'], main['rgb'], atol=1e-5)
  np.testing.assert_allclose(out['acc'], main['acc'], atol=1e-5)
  render = jax.jit(model.render)(params, state, rays)
  np.testing.assert_allclose(render['rgb'], main['rgb'], atol=1e-4)
  points = jax.random.uniform(jax.random.PRNGKey(2), (50, 3), minval=-1.5,
                              maxval=1.5)
  np.testing.assert_allclose(model.density(params, state, points),
                             model.query(params, state, points)[1],
                             rtol=1e-6)
