"""Tests of nerf_jax.render.compositing: alpha compositing (NeRF eq. 3)."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from nerf_jax.render import compositing, sampling  # pylint: disable=g-import-not-at-top

ATOL = 1e-5
RTOL = 1e-5


def _rays(rng: np.random.Generator, num_rays: int, n: int):
  """Random edges f32[R, n + 1] (strictly increasing) and directions."""
  gaps = rng.uniform(0.01, 0.3, size=(num_rays, n))
  near = rng.uniform(0.5, 2.0, size=(num_rays, 1))
  edges = np.concatenate([near, near + np.cumsum(gaps, axis=-1)], axis=-1)
  dirs = rng.normal(size=(num_rays, 3)) * rng.uniform(0.5, 2.0,
                                                      size=(num_rays, 1))
  return edges.astype(np.float32), dirs.astype(np.float32)


def _reference_weights(density, edges, dirs):
  """Float64 w_i = T_i (1 - exp(-sigma_i delta_i)), delta in metric units."""
  density = np.asarray(density, np.float64)
  edges = np.asarray(edges, np.float64)
  delta = np.diff(edges, axis=-1) * np.linalg.norm(
      np.asarray(dirs, np.float64), axis=-1, keepdims=True)
  tau = density * delta
  out = np.zeros_like(tau)
  for idx in np.ndindex(*tau.shape[:-1]):
    before = 0.0
    for i in range(tau.shape[-1]):
      out[idx + (i,)] = np.exp(-before) * (1.0 - np.exp(-tau[idx + (i,)]))
      before += tau[idx + (i,)]
  return out


@pytest.mark.parametrize('seed,scale', [(0, 1.0), (1, 10.0), (2, 0.1)])
def test_weights_match_reference(seed, scale):
  rng = np.random.default_rng(seed)
  edges, dirs = _rays(rng, 6, 12)
  density = (scale * rng.uniform(0.0, 5.0, size=(6, 12))).astype(np.float32)
  got = np.asarray(compositing.compute_weights(density, edges, dirs))
  np.testing.assert_allclose(got, _reference_weights(density, edges, dirs),
                             atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('seed', [3, 4, 5])
def test_weights_nonnegative_sum_at_most_one(seed):
  rng = np.random.default_rng(seed)
  edges, dirs = _rays(rng, 20, 16)
  density = 10.0**rng.uniform(-3, 3, size=(20, 16))
  density[rng.random(size=density.shape) < 0.3] = 0.0
  w = np.asarray(
      compositing.compute_weights(density.astype(np.float32), edges, dirs))
  assert np.all(w >= 0)
  assert np.all(np.sum(w, axis=-1) <= 1.0 + 1e-6)


@pytest.mark.parametrize('seed,sigma', [(6, 0.3), (7, 2.0), (8, 7.5)])
def test_acc_closed_form_for_constant_density(seed, sigma):
  rng = np.random.default_rng(seed)
  edges, dirs = _rays(rng, 5, 10)
  density = np.full((5, 10), sigma, np.float32)
  rgb = rng.uniform(size=(5, 10, 3)).astype(np.float32)
  out = compositing.volumetric_rendering(density, rgb, edges, dirs)
  length = (edges[:, -1] - edges[:, 0]) * np.linalg.norm(dirs, axis=-1)
  np.testing.assert_allclose(out['acc'], 1.0 - np.exp(-sigma * length),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out['acc'], np.sum(out['weights'], axis=-1),
                             atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('huge', [1e10, 1e30, np.inf])
@pytest.mark.parametrize('k', [0, 4, 9])
def test_one_huge_density_gives_one_hot_weight(huge, k):
  rng = np.random.default_rng(9 + k)
  edges, dirs = _rays(rng, 3, 10)
  density = rng.uniform(0.0, 3.0, size=(3, 10)).astype(np.float32)
  density[:, :k] = 0.0  # empty space in front
  density[:, k] = huge
  rgb = rng.uniform(size=(3, 10, 3)).astype(np.float32)
  out = compositing.volumetric_rendering(density, rgb, edges, dirs)
  expected = np.zeros((3, 10))
  expected[:, k] = 1.0
  np.testing.assert_allclose(out['weights'], expected, atol=1e-6, rtol=0)
  np.testing.assert_allclose(out['depth'], 0.5 * (edges[:, k] + edges[:, k + 1]),
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out['rgb'], rgb[:, k], atol=1e-6, rtol=0)
  np.testing.assert_allclose(out['acc'], 1.0, atol=1e-6, rtol=0)


@pytest.mark.parametrize('background', [0.0, 1.0])
def test_zero_density_shows_background(background):
  rng = np.random.default_rng(20)
  edges, dirs = _rays(rng, 4, 8)
  rgb = rng.uniform(size=(4, 8, 3)).astype(np.float32)
  out = compositing.volumetric_rendering(np.zeros((4, 8), np.float32), rgb,
                                       edges, dirs, background)
  np.testing.assert_array_equal(out['weights'], np.zeros((4, 8)))
  np.testing.assert_array_equal(out['acc'], np.zeros(4))
  np.testing.assert_allclose(out['rgb'], np.full((4, 3), background), atol=0,
                             rtol=0)
  np.testing.assert_allclose(out['depth'], edges[:, -1], atol=0, rtol=0)
  np.testing.assert_allclose(out['disparity'], 1.0 / edges[:, -1], atol=0,
                             rtol=1e-6)


@pytest.mark.parametrize('seed', [21, 22])
def test_uniform_colour_closed_form(seed):
  rng = np.random.default_rng(seed)
  edges, dirs = _rays(rng, 6, 9)
  density = rng.uniform(0.0, 3.0, size=(6, 9)).astype(np.float32)
  colour = rng.uniform(size=(6, 3)).astype(np.float32)
  rgb = np.broadcast_to(colour[:, None, :], (6, 9, 3))
  for background in (0.0, 1.0, rng.uniform(size=(6, 3)).astype(np.float32)):
    out = compositing.volumetric_rendering(density, rgb, edges, dirs, background)
    acc = np.asarray(out['acc'])[:, None]
    np.testing.assert_allclose(out['rgb'],
                               colour * acc + background * (1.0 - acc),
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize('seed', [23, 24])
def test_depth_and_disparity(seed):
  rng = np.random.default_rng(seed)
  edges, dirs = _rays(rng, 8, 12)
  density = rng.uniform(0.0, 3.0, size=(8, 12)).astype(np.float32)
  rgb = rng.uniform(size=(8, 12, 3)).astype(np.float32)
  out = compositing.volumetric_rendering(density, rgb, edges, dirs)
  w = _reference_weights(density, edges, dirs)
  mids = 0.5 * (edges[:, 1:] + edges[:, :-1]).astype(np.float64)
  np.testing.assert_allclose(out['depth'],
                             np.sum(w * mids, -1) / np.sum(w, -1), atol=1e-5,
                             rtol=1e-5)
  depth = np.asarray(out['depth'])
  assert np.all(depth >= edges[:, 0]) and np.all(depth <= edges[:, -1])
  np.testing.assert_allclose(out['disparity'], 1.0 / depth, atol=0, rtol=1e-6)
  for key in ('rgb', 'depth', 'disparity', 'acc'):
    assert out[key].shape == ((8, 3) if key == 'rgb' else (8,))


@pytest.mark.parametrize('value', [0.0, 1e-8, 1e30, np.inf])
def test_values_and_gradients_finite_at_extremes(value):
  rng = np.random.default_rng(25)
  edges, dirs = _rays(rng, 4, 7)
  rgb = jnp.asarray(rng.uniform(size=(4, 7, 3)), jnp.float32)
  constant = jnp.full((4, 7), value, jnp.float32)
  mixed = jnp.asarray(rng.uniform(0.0, 2.0, size=(4, 7)),
                      jnp.float32).at[:, 3].set(value)

  def loss(density, colours):
    out = compositing.volumetric_rendering(density, colours, edges, dirs, 1.0)
    return (jnp.sum(out['rgb']) + jnp.sum(out['depth']) +
            jnp.sum(out['acc']) + jnp.sum(out['disparity']))

  for density in (constant, mixed):
    out = compositing.volumetric_rendering(density, rgb, edges, dirs, 1.0)
    for key, v in out.items():
      assert np.all(np.isfinite(v)), key
    g_density, g_rgb = jax.grad(loss, argnums=(0, 1))(density, rgb)
    assert np.all(np.isfinite(g_density))
    assert np.all(np.isfinite(g_rgb))


def test_gradient_matches_finite_difference():
  rng = np.random.default_rng(26)
  edges, dirs = _rays(rng, 1, 5)
  edges64 = edges.astype(np.float64)
  rgb = rng.uniform(size=(1, 5, 3))
  density = rng.uniform(0.5, 3.0, size=(1, 5))

  def ref_loss(d):
    w = _reference_weights(d, edges64, dirs)
    return np.sum(w[..., None] * rgb)

  def loss(d):
    w = compositing.compute_weights(d, edges, dirs)
    return jnp.sum(w[..., None] * jnp.asarray(rgb, jnp.float32))

  grad = np.asarray(jax.grad(loss)(jnp.asarray(density, jnp.float32)))
  h = 1e-5
  for i in range(5):
    e = np.zeros_like(density)
    e[0, i] = h
    fd = (ref_loss(density + e) - ref_loss(density - e)) / (2 * h)
    np.testing.assert_allclose(grad[0, i], fd, atol=1e-4, rtol=1e-3)


def test_packed_weights_equal_per_ray_weights():
  # Rays of 0..9 samples packed one after another, as the fast model packs
  # them; each ray's weights must be its own compute_weights.
  rng = np.random.default_rng(4)
  lengths = rng.integers(0, 10, 40)
  density = rng.exponential(3.0, lengths.sum()).astype(np.float32)
  density[rng.random(density.shape) < 0.1] = 1e30  # opaque samples too
  delta = rng.uniform(0.0, 0.3, lengths.sum()).astype(np.float32)
  start = np.zeros(lengths.sum(), bool)
  start[np.cumsum(lengths)[:-1][lengths[1:] > 0]] = True
  start[0] = True
  w = np.asarray(compositing.packed_weights(density, delta, start))
  offset = 0
  for n in lengths:  # float64 NumPy: T_i (1 - exp(-sigma_i delta_i)) per ray
    o = np.minimum(density[offset:offset + n].astype(np.float64) *
                   delta[offset:offset + n], 80.0)
    before = np.concatenate([[0.0], np.cumsum(o)[:-1]]) if n else o
    np.testing.assert_allclose(w[offset:offset + n],
                               (1 - np.exp(-o)) * np.exp(-before),
                               rtol=1e-5, atol=1e-6)
    offset += n
  assert np.all(np.isfinite(w))


def test_the_compositor_gives_packed_samples_the_dense_outputs():
  # The same rays as dense samples and packed one after another into a
  # budget with padding slots (holding garbage the compositor must ignore):
  # one compositor, the same colour, depth, disparity and opacity.
  rng = np.random.default_rng(5)
  num_rays, n = 6, 9
  edges, dirs = _rays(rng, num_rays, n)
  density = rng.exponential(2.0, (num_rays, n)).astype(np.float32)
  rgb = rng.uniform(size=(num_rays, n, 3)).astype(np.float32)
  near, far = edges[:, :1], edges[:, -1:]
  t = 0.5 * (edges[:, 1:] + edges[:, :-1])
  dense = compositing.composite_samples(
      sampling.Samples(t=t, t_starts=edges[:, :-1], t_ends=edges[:, 1:]),
      density, rgb, dirs, near, far, background=0.3)
  budget = num_rays * n + 5
  pad = lambda x, value: np.concatenate(
      [x.reshape((num_rays * n,) + x.shape[2:]),
       np.full((5,) + x.shape[2:], value, x.dtype)])
  packed = compositing.composite_samples(
      sampling.Samples(
          t=pad(t, 9.0), t_starts=pad(edges[:, :-1], 9.0),
          t_ends=pad(edges[:, 1:], 9.5),
          ray_ids=pad(np.repeat(np.arange(num_rays), n), num_rays - 1),
          used=np.arange(budget) < num_rays * n),
      pad(density, 1e3), pad(rgb, 5.0), dirs, near, far, background=0.3)
  for key in ('rgb', 'depth', 'disparity', 'acc'):
    np.testing.assert_allclose(packed[key], dense[key], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(packed['weights'][:num_rays * n],
                             np.asarray(dense['weights']).reshape(-1),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(packed['weights'][num_rays * n:], 0.0)
  # And the dense outputs are the closed form of NeRF's eq. 3.
  w = _reference_weights(density, edges, dirs)
  np.testing.assert_allclose(
      dense['rgb'], np.sum(w[..., None] * rgb, 1) + 0.3 * (1 - w.sum(-1))[
          :, None], rtol=1e-5, atol=1e-6)
