"""Tests of nerf_jax.models.pipeline.render_rays: sampler -> field -> compositor."""

from __future__ import annotations

import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from nerf_jax import models  # pylint: disable=g-import-not-at-top
from nerf_jax.models import pipeline
from nerf_jax.cameras.camera import Rays

OUTPUT_KEYS = {'rgb', 'depth', 'disparity', 'acc', 'weights', 't_edges',
               't_samples'}


class Ball(nn.Module):
  """A stand-in field: constant density inside a ball at the origin.

  Same call signature as NerfMLP. The one parameter scales the density so
  that gradients w.r.t. params are non-trivial.
  """
  radius: float = 1.0
  sigma: float = 1.0
  colour: tuple = (0.2, 0.5, 0.8)

  @nn.compact
  def __call__(self, points, viewdirs=None):
    scale = self.param('scale', nn.initializers.ones, ())
    inside = jnp.sum(points**2, axis=-1) <= self.radius**2
    density = jnp.where(inside, self.sigma * scale, 0.0)
    rgb = jnp.broadcast_to(jnp.asarray(self.colour, jnp.float32), points.shape)
    return rgb, density


# One compile per (field, options, shapes) instead of op-by-op dispatch; the
# eager path is compared against this in test_render_rays_jits.
_render = jax.jit(pipeline.render_rays, static_argnums=(0, 4))


def _rays(origins, directions, near, far) -> Rays:
  origins = jnp.asarray(origins, jnp.float32)
  directions = jnp.asarray(directions, jnp.float32)
  ones = jnp.ones(origins.shape[:-1] + (1,), jnp.float32)
  return Rays(origins=origins, directions=directions,
              viewdirs=directions / jnp.linalg.norm(directions, axis=-1,
                                                    keepdims=True),
              near=ones * near, far=ones * far)


def _random_rays(rng: np.random.Generator, shape: tuple) -> Rays:
  origins = rng.uniform(-0.3, 0.3, size=shape + (3,)) + np.array([0, 0, 3.0])
  directions = rng.normal(size=shape + (3,)) * 0.2 + np.array([0, 0, -1.0])
  return _rays(origins, directions, 1.5, 4.5)


def _ball_rays(offsets, scale=1.0) -> Rays:
  """Rays parallel to -z at x = offset, from z = 4; unit ball at the origin.

  With |d| = scale, the ball is entered at t = (4 - sqrt(1 - b^2)) / scale.
  """
  offsets = np.asarray(offsets, np.float64)
  origins = np.stack([offsets, np.zeros_like(offsets), np.full_like(offsets,
                                                                    4.0)], -1)
  directions = np.broadcast_to([0.0, 0.0, -scale], origins.shape)
  return _rays(origins, directions, 2.0 / scale, 6.0 / scale)


def _tiny_field(use_viewdirs=True):
  return models.NerfMLP(depth=2, width=16, skips=(1,), pos_freqs=3,
                        dir_freqs=2, use_viewdirs=use_viewdirs)


# ------------------------------------------------------------ keys and shapes


# The tests below share these settings so that _render compiles few times.
_SEP = pipeline.RenderOptions(num_coarse=8, num_fine=6, separate_fine=True)
_SHARED = pipeline.RenderOptions(num_coarse=8, num_fine=6, separate_fine=False)
_COARSE = pipeline.RenderOptions(num_coarse=8, num_fine=0)


@pytest.mark.parametrize('options,shape', [(_COARSE, (5,)), (_SEP, (2, 3)),
                                           (_SHARED, (5,))])
def test_outputs_keys_and_shapes(options, shape):
  rng = np.random.default_rng(len(shape) + options.num_fine)
  field = _tiny_field()
  num_fine, separate = options.num_fine, options.separate_fine
  params = pipeline.init_params(jax.random.PRNGKey(0), field, options)
  expected_levels = {'coarse', 'fine'} if num_fine and separate else {'coarse'}
  assert set(params) == expected_levels
  rays = _random_rays(rng, shape)
  out = _render(field, params, rays, jax.random.PRNGKey(1), options)
  assert set(out) == set(options.levels)
  assert set(out) == ({'coarse', 'fine'} if num_fine else {'coarse'})
  for level, n in (('coarse', 8), ('fine', 8 + num_fine)):
    if level not in out:
      continue
    o = out[level]
    assert set(o) == OUTPUT_KEYS
    assert o['rgb'].shape == shape + (3,)
    for key in ('depth', 'disparity', 'acc'):
      assert o[key].shape == shape
    assert o['weights'].shape == shape + (n,)
    assert o['t_samples'].shape == shape + (n,)
    assert o['t_edges'].shape == shape + (n + 1,)
    t = np.asarray(o['t_samples'])
    assert np.all(np.diff(t, axis=-1) >= 0)
    assert np.all(t >= 1.5 - 1e-5) and np.all(t <= 4.5 + 1e-5)
    assert np.all(np.asarray(o['acc']) <= 1.0 + 1e-6)
    for key in OUTPUT_KEYS:
      assert np.all(np.isfinite(o[key])), key
  if num_fine:  # the fine set is the union of the coarse and new samples
    coarse = np.asarray(out['coarse']['t_samples']).reshape(-1, 8)
    fine = np.asarray(out['fine']['t_samples']).reshape(-1, 8 + num_fine)
    for c, f in zip(coarse, fine):
      assert np.all(np.isin(c, f))


def test_separate_fine_params_differ_and_shared_reuses_coarse():
  rng = np.random.default_rng(4)
  field = _tiny_field()
  params = pipeline.init_params(jax.random.PRNGKey(0), field, _SEP)
  diff = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                params['coarse'], params['fine'])
  assert max(jax.tree_util.tree_leaves(diff)) > 1e-3
  rays = _random_rays(rng, (5,))
  key = jax.random.PRNGKey(7)
  a = _render(field, {'coarse': params['coarse']}, rays, key, _SHARED)
  b = _render(field, {'coarse': params['coarse'], 'fine': params['coarse']},
              rays, key, _SEP)
  np.testing.assert_allclose(a['fine']['rgb'], b['fine']['rgb'], atol=1e-6,
                             rtol=0)
  c = _render(field, params, rays, key, _SEP)
  assert np.max(np.abs(np.asarray(c['fine']['rgb']) -
                       np.asarray(b['fine']['rgb']))) > 1e-6


def test_no_key_is_deterministic_and_keys_jitter():
  rng = np.random.default_rng(5)
  field = _tiny_field()
  params = pipeline.init_params(jax.random.PRNGKey(0), field, _SEP)
  rays = _random_rays(rng, (5,))
  a = _render(field, params, rays, None, _SEP)
  b = _render(field, params, rays, None, _SEP)
  for level in ('coarse', 'fine'):
    for key in OUTPUT_KEYS:
      np.testing.assert_array_equal(a[level][key], b[level][key])
  # Deterministic coarse samples are the bin centres of [near, far].
  np.testing.assert_allclose(a['coarse']['t_samples'],
                             np.broadcast_to(1.5 + 3.0 * (np.arange(8) + 0.5) /
                                             8, (5, 8)), atol=1e-5, rtol=0)
  c = _render(field, params, rays, jax.random.PRNGKey(1), _SEP)
  d = _render(field, params, rays, jax.random.PRNGKey(2), _SEP)
  for level in ('coarse', 'fine'):
    assert np.max(np.abs(np.asarray(c[level]['t_samples']) -
                         np.asarray(d[level]['t_samples']))) > 1e-3


# ------------------------------------------------------ closed form: a ball


@pytest.mark.parametrize('scale', [1.0, 2.0])
@pytest.mark.parametrize('key', [None, 3])
def test_translucent_ball_acc_closed_form(scale, key):
  offsets = np.array([0.0, 0.3, 0.6, 0.9, 1.2])
  sigma, n = 1.0, 64
  field = Ball(sigma=sigma)
  options = pipeline.RenderOptions(num_coarse=n)
  params = pipeline.init_params(jax.random.PRNGKey(0), field, options)
  key = None if key is None else jax.random.PRNGKey(key)
  out = _render(field, params, _ball_rays(offsets, scale), key,
                             options)['coarse']
  chord = 2.0 * np.sqrt(np.clip(1.0 - offsets**2, 0.0, None))  # metric length
  expected = 1.0 - np.exp(-sigma * chord)
  # Each end of the chord is resolved to within one sample spacing (metric
  # 4 / n); the optical depth can be off by sigma times that.
  np.testing.assert_allclose(out['acc'], expected, atol=sigma * 2 * 4.0 / n,
                             rtol=0)
  np.testing.assert_allclose(out['acc'][-1], 0.0, atol=0, rtol=0)  # a miss
  np.testing.assert_allclose(out['depth'][-1], 6.0 / scale, atol=1e-6, rtol=0)
  np.testing.assert_allclose(out['rgb'][:, 0], 0.2 * np.asarray(out['acc']),
                             atol=1e-6, rtol=0)


@pytest.mark.parametrize('white', [False, True])
def test_opaque_ball_depth_is_entry_and_background(white):
  offsets = np.array([0.0, 0.5, 0.8, 1.5])
  n = 64
  field = Ball(sigma=1e4)
  options = pipeline.RenderOptions(num_coarse=n, background=float(white))
  params = pipeline.init_params(jax.random.PRNGKey(0), field, options)
  out = _render(field, params, _ball_rays(offsets), None,
                             options)['coarse']
  entry = 4.0 - np.sqrt(1.0 - offsets[:3]**2)
  spacing = 4.0 / n
  np.testing.assert_allclose(out['acc'][:3], 1.0, atol=1e-5, rtol=0)
  np.testing.assert_allclose(out['depth'][:3], entry, atol=spacing, rtol=0)
  np.testing.assert_allclose(out['disparity'][:3], 1.0 / np.asarray(
      out['depth'][:3]), atol=0, rtol=1e-6)
  np.testing.assert_allclose(out['rgb'][:3], np.broadcast_to([0.2, 0.5, 0.8],
                                                             (3, 3)),
                             atol=1e-5, rtol=0)
  # The miss shows the background.
  np.testing.assert_allclose(out['acc'][3], 0.0, atol=0, rtol=0)
  np.testing.assert_allclose(out['rgb'][3], [float(white)] * 3, atol=0, rtol=0)


@pytest.mark.parametrize('key', [None, 11])
def test_fine_samples_concentrate_at_surface(key):
  offsets = np.array([0.0, 0.4, 0.7])
  field = Ball(sigma=200.0)
  options = pipeline.RenderOptions(num_coarse=32, num_fine=32,
                                   separate_fine=False)
  params = pipeline.init_params(jax.random.PRNGKey(0), field, options)
  key = None if key is None else jax.random.PRNGKey(key)
  out = _render(field, params, _ball_rays(offsets), key, options)
  entry = 4.0 - np.sqrt(1.0 - offsets**2)
  spacing = 4.0 / 32
  coarse_t = np.asarray(out['coarse']['t_samples'])
  fine_t = np.asarray(out['fine']['t_samples'])
  # New samples only: the fine set minus the coarse one.
  new_t = np.stack([np.setdiff1d(f, c) for f, c in zip(fine_t, coarse_t)])
  assert new_t.shape == (3, 32)
  # The high-weight region: the coarse interval holding (nearly) all weight.
  weights = np.asarray(out['coarse']['weights'])
  k = np.argmax(weights, axis=-1)
  np.testing.assert_allclose(weights[np.arange(3), k], 1.0, atol=1e-6, rtol=0)
  edges = np.asarray(out['coarse']['t_edges'])
  lo = edges[np.arange(3), k][:, None]
  hi = edges[np.arange(3), k + 1][:, None]
  in_region = lambda t: (t >= lo - 1e-6) & (t <= hi + 1e-6)
  # Near the surface: the region starts less than a spacing before the entry.
  assert np.all(np.abs(lo[:, 0] - entry) <= spacing)
  frac_coarse = np.mean(in_region(coarse_t))
  frac_new = np.mean(in_region(new_t))
  assert frac_coarse <= 1.5 / 32
  assert frac_new > 0.99
  # The fine level resolves the surface better than the coarse one.
  err_coarse = np.abs(np.asarray(out['coarse']['depth']) - entry)
  err_fine = np.abs(np.asarray(out['fine']['depth']) - entry)
  assert np.all(err_coarse <= spacing)
  assert np.all(err_fine <= spacing / 4)
  np.testing.assert_allclose(out['fine']['acc'], 1.0, atol=1e-4, rtol=0)


# ------------------------------------------------------- gradients and jit


@pytest.mark.parametrize('separate', [True, False])
def test_gradients_wrt_params_are_finite(separate):
  rng = np.random.default_rng(6)
  field = _tiny_field()
  options = pipeline.RenderOptions(num_coarse=8, num_fine=4,
                                   separate_fine=separate)
  params = pipeline.init_params(jax.random.PRNGKey(0), field, options)
  rays = _random_rays(rng, (4,))

  def loss(p):
    out = _render(field, p, rays, jax.random.PRNGKey(3), options)
    return sum(jnp.sum(o['rgb']) + jnp.sum(o['depth']) + jnp.sum(o['acc'])
               for o in out.values())

  grads = jax.grad(loss)(params)
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert max(float(jnp.max(jnp.abs(g))) for g in leaves) > 0


def test_ball_gradient_closed_form():
  # d acc / d scale for a ray through the centre: acc = 1 - exp(-s sigma L),
  # so d acc / d s = sigma L exp(-s sigma L), with L the discrete chord.
  field = Ball(sigma=0.5)
  options = pipeline.RenderOptions(num_coarse=64)
  params = pipeline.init_params(jax.random.PRNGKey(0), field, options)
  rays = _ball_rays([0.0])
  grad = jax.grad(lambda p: _render(field, p, rays, None, options)
                  ['coarse']['acc'][0])(params)
  chord = 2.0  # 32 interior intervals of 1/16 each, exactly
  np.testing.assert_allclose(grad['coarse']['scale'],
                             0.5 * chord * np.exp(-0.5 * chord), atol=1e-5,
                             rtol=1e-4)


def test_render_rays_jits():
  rng = np.random.default_rng(7)
  field = Ball(sigma=3.0)  # cheap eagerly; NerfMLP runs under jit elsewhere
  options = pipeline.RenderOptions(num_coarse=8, num_fine=4)
  params = pipeline.init_params(jax.random.PRNGKey(0), field, options)
  traces = []

  @jax.jit
  def render(p, rays, key):
    traces.append(None)
    return pipeline.render_rays(field, p, rays, key, options)

  for seed in (1, 2):
    rays = _random_rays(rng, (4,))
    key = jax.random.PRNGKey(seed)
    got = render(params, rays, key)
    if seed == 1:  # the eager path is slow on CPU; compare it once
      want = pipeline.render_rays(field, params, rays, key, options)
      for level in ('coarse', 'fine'):
        for k in ('rgb', 'depth', 'acc', 't_samples'):
          np.testing.assert_allclose(got[level][k], want[level][k], atol=1e-5,
                                     rtol=1e-5)
  assert len(traces) == 1
