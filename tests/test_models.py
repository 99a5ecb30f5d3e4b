"""Tests of nerf_jax.models: the NeRF MLP field and its presets."""

from __future__ import annotations

import pathlib
import sys
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from nerf_jax import models  # pylint: disable=g-import-not-at-top
from nerf_jax.fields import networks  # pylint: disable=g-import-not-at-top


def _dense(n_in: int, n_out: int) -> int:
  return n_in * n_out + n_out


def _expected_param_count(depth, width, skips, pos_freqs, dir_freqs,
                          use_viewdirs) -> int:
  """Closed-form parameter count of NerfMLP, independent of its code."""
  enc_pos = 3 * (2 * pos_freqs + 1)
  enc_dir = 3 * (2 * dir_freqs + 1)
  total = 0
  for i in range(depth):
    n_in = enc_pos if i == 0 else width
    if i in skips:
      n_in += enc_pos
    total += _dense(n_in, width)
  total += _dense(width, 1)  # density head
  if use_viewdirs:
    total += _dense(width, width)  # bottleneck
    total += _dense(width + enc_dir, width // 2)  # view layer
    total += _dense(width // 2, 3)  # rgb head
  else:
    total += _dense(width, 3)
  return total


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


def _unit(rng, shape):
  v = rng.normal(size=shape)
  return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _small_field(**kwargs):
  defaults = dict(depth=3, width=32, skips=(1,), pos_freqs=4, dir_freqs=2)
  defaults.update(kwargs)
  return models.NerfMLP(**defaults)


@pytest.mark.parametrize('name', sorted(models.PRESETS))
@pytest.mark.parametrize('use_viewdirs', [False, True])
def test_preset_param_counts(name, use_viewdirs):
  depth, width, skips = models.preset(name)
  field = models.NerfMLP(depth=depth, width=width, skips=skips, pos_freqs=10,
                         dir_freqs=4, use_viewdirs=use_viewdirs)
  pts = jnp.zeros((1, 3), jnp.float32)
  # eval_shape: shapes only, no compute.
  variables = jax.eval_shape(field.init, jax.random.PRNGKey(0), pts, pts)
  assert _count(variables['params']) == _expected_param_count(
      depth, width, skips, 10, 4, use_viewdirs)


def test_known_nerf_paper_count():
  # The NeRF paper's MLP (8 x 256, skip before layer 5, view branch of 128,
  # L = 10 / 4), counted by hand:
  #   63*256+256 + 4*(256*256+256) + (319*256+256) + 2*(256*256+256)
  #   + (256+1) + (256*256+256) + (283*128+128) + (128*3+3) = 595,844.
  assert _expected_param_count(8, 256, (5,), 10, 4, True) == 595844
  field = models.NerfMLP(depth=8, width=256, skips=(5,), pos_freqs=10,
                         dir_freqs=4, use_viewdirs=True)
  pts = jnp.zeros((1, 3), jnp.float32)
  variables = jax.eval_shape(field.init, jax.random.PRNGKey(0), pts, pts)
  assert _count(variables['params']) == 595844


@pytest.mark.parametrize('shape', [(7, 3), (2, 5, 3)])
@pytest.mark.parametrize('use_viewdirs', [False, True])
def test_output_shapes_and_ranges(shape, use_viewdirs):
  rng = np.random.default_rng(len(shape))
  field = _small_field(use_viewdirs=use_viewdirs)
  pts = jnp.asarray(rng.uniform(-2, 2, size=shape), jnp.float32)
  dirs = jnp.asarray(_unit(rng, shape))
  params = field.init(jax.random.PRNGKey(1), pts, dirs)['params']
  rgb, density = field.apply({'params': params}, pts, dirs)
  assert rgb.shape == shape
  assert density.shape == shape[:-1]
  assert np.all(np.asarray(rgb) > 0) and np.all(np.asarray(rgb) < 1)
  assert np.all(np.asarray(density) >= 0)
  assert np.all(np.isfinite(density))


def test_viewdirs_broadcast_per_ray():
  # The pipeline passes viewdirs f32[R, 1, 3] for points f32[R, S, 3].
  rng = np.random.default_rng(2)
  field = _small_field(use_viewdirs=True)
  pts = jnp.asarray(rng.uniform(-1, 1, size=(4, 6, 3)), jnp.float32)
  dirs = _unit(rng, (4, 1, 3))
  params = field.init(jax.random.PRNGKey(0), pts, jnp.asarray(dirs))['params']
  rgb_a, _ = field.apply({'params': params}, pts, jnp.asarray(dirs))
  rgb_b, _ = field.apply({'params': params}, pts,
                         jnp.asarray(np.broadcast_to(dirs, (4, 6, 3))))
  np.testing.assert_allclose(rgb_a, rgb_b, atol=1e-6, rtol=0)


def test_without_viewdirs_output_ignores_them():
  rng = np.random.default_rng(3)
  field = _small_field(use_viewdirs=False)
  pts = jnp.asarray(rng.uniform(-1, 1, size=(9, 3)), jnp.float32)
  params = field.init(jax.random.PRNGKey(0), pts, pts)['params']
  rgb_a, dens_a = field.apply({'params': params}, pts,
                              jnp.asarray(_unit(rng, (9, 3))))
  rgb_b, dens_b = field.apply({'params': params}, pts,
                              jnp.asarray(_unit(rng, (9, 3))))
  rgb_c, dens_c = field.apply({'params': params}, pts)
  np.testing.assert_array_equal(rgb_a, rgb_b)
  np.testing.assert_array_equal(rgb_a, rgb_c)
  np.testing.assert_array_equal(dens_a, dens_b)
  np.testing.assert_array_equal(dens_a, dens_c)


def test_with_viewdirs_colour_depends_on_them_density_does_not():
  rng = np.random.default_rng(4)
  field = _small_field(use_viewdirs=True)
  pts = jnp.asarray(rng.uniform(-1, 1, size=(9, 3)), jnp.float32)
  d1, d2 = jnp.asarray(_unit(rng, (9, 3))), jnp.asarray(_unit(rng, (9, 3)))
  params = field.init(jax.random.PRNGKey(0), pts, d1)['params']
  rgb_a, dens_a = field.apply({'params': params}, pts, d1)
  rgb_b, dens_b = field.apply({'params': params}, pts, d2)
  assert np.max(np.abs(np.asarray(rgb_a) - np.asarray(rgb_b))) > 1e-4
  np.testing.assert_array_equal(dens_a, dens_b)
  # And the density gradient w.r.t. the direction is exactly zero.
  g = jax.grad(lambda d: jnp.sum(field.apply({'params': params}, pts, d)[1]))(d1)
  np.testing.assert_array_equal(g, np.zeros((9, 3)))
  with pytest.raises(ValueError):
    field.apply({'params': params}, pts)


def test_density_bias_shifts_softplus():
  rng = np.random.default_rng(5)
  pts = jnp.asarray(rng.uniform(-1, 1, size=(5, 3)), jnp.float32)
  a = _small_field(density_bias=0.0)
  b = _small_field(density_bias=-3.0)
  params = a.init(jax.random.PRNGKey(0), pts)['params']
  _, dens_a = a.apply({'params': params}, pts)
  _, dens_b = b.apply({'params': params}, pts)
  raw = np.log(np.expm1(np.asarray(dens_a, np.float64)))  # softplus^-1
  np.testing.assert_allclose(dens_b, np.log1p(np.exp(raw - 3.0)), atol=1e-5,
                             rtol=1e-4)


def _model_cfg(kind, preset, **overrides):
  values = dict(preset=preset, depth=3, width=48, skips=(2,), pos_freqs=5,
                dir_freqs=3, use_viewdirs=True, density_bias=-0.5)
  values.update(overrides)
  if kind == 'configdict':
    return ml_collections.ConfigDict(values)
  return types.SimpleNamespace(**values)


@pytest.mark.parametrize('kind', ['configdict', 'namespace'])
@pytest.mark.parametrize('name', sorted(models.PRESETS))
def test_make_field_with_preset(kind, name):
  field = models.make_field(_model_cfg(kind, name))
  depth, width, skips = models.PRESETS[name]
  assert (field.depth, field.width, tuple(field.skips)) == (depth, width,
                                                            tuple(skips))
  assert (field.pos_freqs, field.dir_freqs) == (5, 3)
  assert field.use_viewdirs is True
  assert field.density_bias == -0.5


@pytest.mark.parametrize('kind', ['configdict', 'namespace'])
def test_make_field_without_preset_uses_config(kind):
  cfg = _model_cfg(kind, '', use_viewdirs=False, skips=[1, 2])
  field = models.make_field(cfg)
  assert (field.depth, field.width, tuple(field.skips)) == (3, 48, (1, 2))
  pts = jnp.zeros((2, 3), jnp.float32)
  variables = jax.eval_shape(field.init, jax.random.PRNGKey(0), pts, pts)
  assert _count(variables['params']) == _expected_param_count(
      3, 48, (1, 2), 5, 3, False)


@pytest.mark.parametrize('name', ['huge', 'Tiny', 'nerf '])
def test_unknown_preset_raises(name):
  with pytest.raises(ValueError, match='preset'):
    models.preset(name)
  with pytest.raises(ValueError):
    models.make_field(_model_cfg('namespace', name))


def test_concat_dense_equals_dense_on_the_concatenation():
  rng = np.random.default_rng(20)
  a = jnp.asarray(rng.normal(size=(4, 5, 3)).astype(np.float32))
  b = jnp.asarray(rng.normal(size=(4, 5, 7)).astype(np.float32))
  per_ray = jnp.asarray(rng.normal(size=(4, 1, 2)).astype(np.float32))
  layer = networks.ConcatDense(6)
  params = layer.init(jax.random.key(0), [a, b, per_ray])
  dense = nn.Dense(6)
  # Same parameter tree (names, shapes) and initial values as nn.Dense.
  reference = dense.init(jax.random.key(0), jnp.zeros((1, 12)))
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, reference)
  np.testing.assert_array_equal(params['params']['kernel'],
                                reference['params']['kernel'])
  joined = jnp.concatenate([a, b, jnp.broadcast_to(per_ray, (4, 5, 2))], -1)
  np.testing.assert_allclose(layer.apply(params, [a, b, per_ray]),
                             dense.apply(params, joined), atol=1e-5)


@pytest.mark.parametrize('override,message', [
    (dict(depth=0), 'model.depth'), (dict(width=-3), 'model.width'),
    (dict(skips=(0,)), 'model.skips'), (dict(skips=(4,)), 'model.skips')])
def test_vanilla_config_checks(override, message):
  cfg = ml_collections.ConfigDict(dict(preset='', depth=4, width=32,
                                       skips=(2,)))
  models.KINDS['mlp'].check_config(cfg)
  cfg.update(override)
  with pytest.raises(ValueError, match=message):
    models.KINDS['mlp'].check_config(cfg)


@pytest.mark.parametrize('use_viewdirs', [False, True])
def test_bfloat16_compute_keeps_float32_params_and_outputs(use_viewdirs):
  """Mixed precision: bf16 matmuls, float32 parameters, gradients and
  outputs, and results within bf16's resolution of float32's."""
  pts = jax.random.uniform(jax.random.PRNGKey(1), (64, 8, 3), minval=-1.0)
  dirs = jax.random.normal(jax.random.PRNGKey(2), (64, 1, 3))
  dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
  cfg = _model_cfg('configdict', 'small', use_viewdirs=use_viewdirs)
  full = models.make_field(cfg)
  cfg.compute_dtype = 'bfloat16'
  mixed = models.make_field(cfg)
  assert mixed.dtype == jnp.bfloat16
  params = full.init(jax.random.PRNGKey(0), pts, dirs)
  assert jax.tree.map(jnp.shape, mixed.init(jax.random.PRNGKey(0), pts, dirs)) == (
      jax.tree.map(jnp.shape, params))
  jaxpr = str(jax.make_jaxpr(lambda p: mixed.apply(p, pts, dirs))(params))
  assert 'bf16' in jaxpr
  (rgb_a, dens_a), (rgb_b, dens_b) = (f.apply(params, pts, dirs)
                                      for f in (full, mixed))
  assert rgb_b.dtype == dens_b.dtype == jnp.float32
  np.testing.assert_allclose(rgb_b, rgb_a, atol=2e-2)
  np.testing.assert_allclose(dens_b, dens_a, rtol=5e-2, atol=2e-2)
  assert not np.array_equal(rgb_a, rgb_b)  # it did compute in bf16
  grads = jax.grad(lambda p: mixed.apply(p, pts, dirs)[0].sum())(params)
  assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype('float32')}


def test_unknown_compute_dtype_is_refused():
  cfg = _model_cfg('configdict', 'small', compute_dtype='float16')
  with pytest.raises(ValueError, match="model.compute_dtype='float16'"):
    models.make_field(cfg)
