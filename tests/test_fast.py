"""The fast model: packed samples equal the dense path, early termination,
the occupancy grid in the train state, compile-once, and it learns."""

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
from nerf_jax.render import occupancy, compositing
from nerf_jax.runs import load, validation
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.train import train_state, train_step


def fast_config(**overrides):
  config = demo.get_config()
  config.data.width = config.data.height = 16
  config.data.num_train, config.data.num_val, config.data.num_test = 12, 2, 1
  config.model.kind = 'fast'
  config.model.use_viewdirs = True
  f = config.model.fast
  f.levels, f.log2_table, f.base_resolution, f.max_resolution = 6, 12, 4, 64
  f.width, f.geo_features, f.num_steps = 32, 7, 64
  f.occupancy_resolution, f.occupancy_every, f.occupancy_warmup = 16, 4, 8
  f.budget_per_ray, f.round_samples, f.eval_block = 64, 4, 512
  config.train.batch_rays, config.train.max_steps = 256, 20
  config.train.lr_init, config.train.lr_final = 1e-2, 1e-3
  config.train.warmup_steps = 0
  config.eval.every, config.checkpoint.every = 20, 20
  config.eval.chunk = 256
  for key, value in overrides.items():
    *path, field = key.split('__')
    node = config
    for p in path:
      node = node[p]
    node[field] = value
  return config


def _model(config=None, seed=0):
  config = config or fast_config()
  scene = datasets.load_scene(config.data)
  model = models.make_model(config.model, scene.info())
  params, state = model.init(jax.random.PRNGKey(seed))
  # Make the untrained field non-trivial: random tables of a useful size.
  tables = params['hash_tables']
  params = dict(params, hash_tables=jax.random.normal(
      jax.random.PRNGKey(seed + 1), tables.shape) * 2.0)
  return model, params, state, scene


def _rays(scene, n_side=8):
  split = scene.split('val')
  intr = split.intrinsics.scaled(n_side / split.intrinsics.width)
  rays = camera.generate_rays(intr, split.poses[0], scene.near, scene.far)
  return jax.tree_util.tree_map(lambda x: x.reshape(-1, x.shape[-1]), rays)


def _dense_reference(model, params, rays, key):
  """Every marched sample through the field, composited the plain way."""
  marched = model.sampler.march(key, rays, {'grid': occupancy.init_grid(
      int(model.cfg.occupancy_resolution))})
  t = marched['t_samples']
  points = rays.origins[:, None] + t[..., None] * rays.directions[:, None]
  rgb, density = model.field.apply({'params': params}, points,
                                   rays.viewdirs[:, None])
  inside = marched['t_edges'][:, 1:] > marched['t_edges'][:, :-1]
  density = jnp.where(inside, density, 0.0)
  out = compositing.volumetric_rendering(density, rgb, marched['t_edges'],
                                       rays.directions,
                                       model.scene.background)
  return out


@pytest.mark.parametrize('key', [None, 0])
def test_packed_paths_equal_the_dense_path_when_all_is_occupied(key):
  model, params, state, scene = _model()
  rays = _rays(scene)
  key = None if key is None else jax.random.PRNGKey(key)
  ref = jax.jit(functools.partial(_dense_reference, model))(params, rays, key)
  if key is None:
    # No termination: exactly the same sum.
    model.sampler = dataclasses.replace(model.sampler, min_transmittance=0.0)
    out = jax.jit(model._render_eval)(params, state, rays)  # pylint: disable=protected-access
  else:
    out, samples, _ = jax.jit(model._render_train)(params, state, rays, key)  # pylint: disable=protected-access
    assert bool(jnp.all(samples.ray_ok))
  hit = ref['acc'] > 1e-3
  assert hit.mean() > 0.3  # the check covers rays that see something
  np.testing.assert_allclose(out['rgb'], ref['rgb'], atol=2e-5)
  np.testing.assert_allclose(out['acc'], ref['acc'], atol=2e-5)
  # Depth is the expected t of the opaque part (the far bound when empty).
  np.testing.assert_allclose(np.where(hit, out['depth'], 0),
                             np.where(hit, ref['depth'], 0), atol=1e-3)


def test_budget_overflow_drops_whole_rays_from_the_loss():
  model, params, state, scene = _model(fast_config(model__fast__budget_per_ray=4))
  rays = _rays(scene)
  _, samples, _ = jax.jit(model._render_train)(  # pylint: disable=protected-access
      params, state, rays, jax.random.PRNGKey(0))
  ray_ok, count = samples.ray_ok, samples.count
  assert int(count) > 4 * rays.origins.shape[0]
  assert 0 < float(jnp.mean(ray_ok)) < 1
  # The kept rays are a prefix: packing is ray-major.
  ok = np.asarray(ray_ok)
  first_bad = np.argmin(ok)
  assert ok[:first_bad].all()


def test_early_termination_saves_evaluations_and_keeps_the_image():
  # A dense field: rays become opaque within a few steps of entering it.
  model, params, state, scene = _model(fast_config(
      model__density_bias=3.0, model__fast__round_samples=2))
  rays = _rays(scene)
  model.sampler = dataclasses.replace(model.sampler, min_transmittance=0.0)
  full = model._render_eval(params, state, rays)  # pylint: disable=protected-access
  model.sampler = dataclasses.replace(model.sampler, min_transmittance=1e-3)
  early = model._render_eval(params, state, rays)  # pylint: disable=protected-access
  assert float(jnp.sum(early['samples'])) < 0.5 * float(jnp.sum(full['samples']))
  np.testing.assert_allclose(early['rgb'], full['rgb'], atol=2e-3)


def test_empty_grid_cells_are_never_evaluated():
  model, params, state, scene = _model()
  rays = _rays(scene)
  grid = state['grid']
  half = grid['mask'].at[: grid['mask'].shape[0] // 2].set(False)
  state = {'grid': dict(grid, mask=half)}
  model.sampler = dataclasses.replace(model.sampler, min_transmittance=0.0)
  out = model._render_eval(params, state, rays)  # pylint: disable=protected-access
  marched = model.sampler.march(None, rays, state)
  np.testing.assert_array_equal(out['samples'],
                                np.sum(marched['valid'], axis=-1))
  all_valid = model.sampler.march(None, rays, {'grid': grid})['valid']
  assert np.sum(marched['valid']) < 0.8 * np.sum(all_valid)


def test_gradients_reach_the_hash_tables_and_mlps():
  model, params, state, scene = _model()
  rays = _rays(scene)
  target = jnp.full((rays.origins.shape[0], 3), 0.5)
  batch = batch_lib.RayBatch.of_rays(rays, target)
  grads = jax.jit(jax.grad(lambda p: model.loss(
      p, state, batch, jax.random.PRNGKey(0), 0)[0]))(params)
  for name, g in jax.tree_util.tree_leaves_with_path(grads):
    assert np.all(np.isfinite(g)), name
  assert float(jnp.abs(grads['hash_tables']).max()) > 0
  touched = np.mean(np.abs(np.asarray(grads['hash_tables'])) > 0)
  assert 0 < touched < 1  # sparse: only the rows the samples landed on
  assert float(jnp.abs(grads['color_out']['kernel']).max()) > 0


def test_step_compiles_once_across_occupancy_updates_and_refreshes_the_grid():
  config = fast_config()
  scene = datasets.load_scene(config.data)
  model = models.make_model(config.model, scene.info())
  tx = model.optimizer(config.train)
  state = train_state.create_train_state(jax.random.PRNGKey(0), model, tx)
  split = scene.split('train')
  data = batch_lib.PixelTable.create(
      jnp.asarray(split.images), jnp.asarray(split.poses), split.intrinsics)
  traces = []
  step = train_step.make_train_step(model, tx, 256, scene.near, scene.far)

  def counted(*args):
    traces.append(1)
    return step(*args)

  jitted = jax.jit(counted, donate_argnums=(0,))
  ema = []
  for _ in range(10):  # occupancy_every=4: updates after steps 4 and 8
    state, metrics = jitted(state, data, jax.random.PRNGKey(1))
    ema.append(np.asarray(state.model_state['grid']['density']))
  assert len(traces) == 1
  changed = [i + 1 for i in range(1, 10) if not np.array_equal(ema[i],
                                                               ema[i - 1])]
  assert changed == [4, 8]
  assert not ema[2].any() and ema[3].min() > 0  # every cell in warm-up
  assert {'samples_per_ray', 'rays_kept', 'occupied'} <= set(metrics)


def learning_config():
  """The fast model on the built-in scene: 250 steps at 32x32 (about 40 s
  on 2 cores; conftest's ``builtin_fast_run`` trains it once per session).

  The built-in scene is Lambertian and seen from 60 views: without view
  directions and with a coarser finest level the grid generalises best."""
  config = fast_config(data__width=32, data__height=32, data__num_train=60,
                       data__num_val=4, train__batch_rays=1024,
                       train__max_steps=250, eval__every=0,
                       model__use_viewdirs=False,
                       eval__chunk=1024, checkpoint__every=1000,
                       model__fast__occupancy_every=16,
                       model__fast__occupancy_warmup=64,
                       model__fast__budget_per_ray=32,
                       model__fast__num_steps=128)
  f = config.model.fast
  f.levels, f.log2_table, f.max_resolution, f.width = 12, 14, 64, 64
  return config


@pytest.mark.slow
def test_fast_model_learns_the_builtin_scene_and_checkpoints_its_grid(
    builtin_fast_run):
  """250 steps at 32x32 must beat 22 dB on held-out views; the occupancy
  grid must find the objects and clear the empty top of the box."""
  workdir, record = builtin_fast_run
  assert record['psnr'] > 22.0, record
  _, info, model, variables, _ = load.load_trained(workdir)
  mask = np.asarray(variables['state']['grid']['mask'])
  assert 0.02 < mask.mean() < 0.6
  g = mask.shape[0]
  centres = (np.indices((g, g, g)).reshape(3, -1).T + 0.5) / g
  lo, hi = np.asarray(info.aabb)
  world = lo + centres * (hi - lo)
  # The visible upper surface of the red sphere (centre (0.35, 0.3, -0.35),
  # radius 0.5) must be occupied.
  r = np.linalg.norm(world - [0.35, 0.3, -0.35], axis=-1)
  inner = (np.abs(r - 0.5) < 0.1) & (world[:, 2] > -0.2)
  # The top layer of the box, above every object: empty.
  top = world[:, 2] > 0.95
  flat = mask.reshape(-1)
  assert flat[top].mean() < 0.1, flat[top].mean()
  assert flat[inner].mean() > 0.5, flat[inner].mean()


@pytest.mark.parametrize('field, value', [
    ('levels', 0), ('log2_table', 30), ('num_steps', 1), ('budget_per_ray', 0),
    ('occupancy_alpha', 1.5), ('max_resolution', 2)])
def test_invalid_fast_settings_are_refused_with_the_field_named(field, value):
  with pytest.raises(validation.ConfigError, match=f'model.fast.{field}'):
    validation.validate_config(fast_config(**{f'model__fast__{field}': value}))
