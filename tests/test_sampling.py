"""Tests of nerf_jax.render.sampling: stratified and importance samples along rays."""

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

from nerf_jax.render import sampling  # pylint: disable=g-import-not-at-top

ATOL = 1e-5
RTOL = 1e-5


def _near_far(rng: np.random.Generator, shape: tuple):
  near = rng.uniform(0.1, 2.0, size=shape + (1,))
  far = near + rng.uniform(0.5, 5.0, size=shape + (1,))
  return near.astype(np.float32), far.astype(np.float32)


def _random_edges(rng: np.random.Generator, num_rays: int, n: int):
  """Sorted, strictly increasing random edges f32[num_rays, n + 1]."""
  gaps = rng.uniform(0.05, 1.0, size=(num_rays, n))
  start = rng.uniform(0.0, 2.0, size=(num_rays, 1))
  edges = np.concatenate([start, start + np.cumsum(gaps, axis=-1)], axis=-1)
  return edges.astype(np.float32)


def _reference_inverse_cdf(edges, weights, u, eps):
  """Float64 inverse transform of the step pdf with mass weights + eps."""
  edges = np.asarray(edges, np.float64)
  mass = np.asarray(weights, np.float64) + eps
  cdf = np.concatenate([[0.0], np.cumsum(mass) / mass.sum()])
  out = np.empty_like(u, dtype=np.float64)
  for s, q in enumerate(u):
    k = min(np.searchsorted(cdf, q, side='right') - 1, len(mass) - 1)
    frac = (q - cdf[k]) / (cdf[k + 1] - cdf[k])
    out[s] = edges[k] + frac * (edges[k + 1] - edges[k])
  return out


# ---------------------------------------------------------------- stratified


@pytest.mark.parametrize('seed,shape,n', [(0, (5,), 8), (1, (2, 3), 16),
                                          (2, (7,), 1)])
def test_stratified_sample_i_in_bin_i(seed, shape, n):
  rng = np.random.default_rng(seed)
  near, far = _near_far(rng, shape)
  t = np.asarray(sampling.stratified_samples(jax.random.PRNGKey(seed), near,
                                             far, n), np.float64)
  assert t.shape == shape + (n,)
  width = (far - near).astype(np.float64) / n
  lo = near + np.arange(n) * width
  hi = near + (np.arange(n) + 1) * width
  tol = 1e-5 * np.maximum(1.0, np.abs(far))
  assert np.all(t >= lo - tol)
  assert np.all(t <= hi + tol)
  assert np.all(np.diff(t, axis=-1) >= 0)
  # Jitter really is random inside the bin, not always the centre.
  if n > 1:
    assert np.std((t - lo) / width) > 0.1


@pytest.mark.parametrize('seed', [3, 4])
def test_stratified_without_key_gives_bin_centres(seed):
  rng = np.random.default_rng(seed)
  near, far = _near_far(rng, (6,))
  n = 10
  t = sampling.stratified_samples(None, near, far, n)
  expected = near + (far - near) * (np.arange(n) + 0.5) / n
  np.testing.assert_allclose(t, expected, atol=ATOL, rtol=RTOL)


def test_stratified_different_keys_differ_same_key_repeats():
  rng = np.random.default_rng(5)
  near, far = _near_far(rng, (4,))
  a = sampling.stratified_samples(jax.random.PRNGKey(0), near, far, 8)
  b = sampling.stratified_samples(jax.random.PRNGKey(1), near, far, 8)
  c = sampling.stratified_samples(jax.random.PRNGKey(0), near, far, 8)
  assert np.max(np.abs(np.asarray(a) - np.asarray(b))) > 1e-3
  np.testing.assert_array_equal(a, c)


def test_stratified_broadcasts_scalar_like_near_far():
  near = np.full((3, 1), 2.0, np.float32)
  far = np.full((1,), 6.0, np.float32)
  t = sampling.stratified_samples(None, near, far, 4)
  np.testing.assert_allclose(t, np.broadcast_to([2.5, 3.5, 4.5, 5.5], (3, 4)),
                             atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------------- edges


@pytest.mark.parametrize('seed', [6, 7])
def test_edges_from_samples(seed):
  rng = np.random.default_rng(seed)
  near, far = _near_far(rng, (5,))
  n = 9
  t = np.sort(rng.uniform(near, far, size=(5, n)), axis=-1).astype(np.float32)
  edges = np.asarray(sampling.edges_from_samples(t, near, far))
  assert edges.shape == (5, n + 1)
  np.testing.assert_allclose(edges[:, 0], near[:, 0], atol=0, rtol=0)
  np.testing.assert_allclose(edges[:, -1], far[:, 0], atol=0, rtol=0)
  np.testing.assert_allclose(edges[:, 1:-1], 0.5 * (t[:, 1:] + t[:, :-1]),
                             atol=ATOL, rtol=RTOL)
  assert np.all(edges[:, :-1] <= t) and np.all(t <= edges[:, 1:])
  assert np.all(np.diff(edges, axis=-1) >= 0)


# ---------------------------------------------------------------- sample_pdf


@pytest.mark.parametrize('seed', [8, 9, 10])
def test_sample_pdf_in_range_and_sorted(seed):
  rng = np.random.default_rng(seed)
  edges = _random_edges(rng, 4, 12)
  weights = rng.uniform(0.0, 1.0, size=(4, 12)).astype(np.float32)
  weights[:, rng.integers(0, 12, size=3)] = 0.0
  for key in (jax.random.PRNGKey(seed), None):
    t = np.asarray(sampling.sample_pdf(key, edges, weights, 33))
    assert t.shape == (4, 33)
    assert np.all(t >= edges[:, :1] - 1e-5)
    assert np.all(t <= edges[:, -1:] + 1e-5)
    assert np.all(np.diff(t, axis=-1) >= 0)


def test_sample_pdf_deterministic_without_key_and_keys_differ():
  rng = np.random.default_rng(11)
  edges = _random_edges(rng, 3, 6)
  weights = rng.uniform(0.1, 1.0, size=(3, 6)).astype(np.float32)
  a = sampling.sample_pdf(None, edges, weights, 16)
  b = sampling.sample_pdf(None, edges, weights, 16)
  np.testing.assert_array_equal(a, b)
  c = sampling.sample_pdf(jax.random.PRNGKey(0), edges, weights, 16)
  d = sampling.sample_pdf(jax.random.PRNGKey(1), edges, weights, 16)
  assert np.max(np.abs(np.asarray(c) - np.asarray(d))) > 1e-4


@pytest.mark.parametrize('seed', [12, 13])
def test_sample_pdf_without_key_matches_reference_quantiles(seed):
  rng = np.random.default_rng(seed)
  edges = _random_edges(rng, 3, 7)
  weights = rng.uniform(0.0, 2.0, size=(3, 7)).astype(np.float32)
  n = 25
  u = (np.arange(n) + 0.5) / n
  t = sampling.sample_pdf(None, edges, weights, n)
  for r in range(3):
    expected = _reference_inverse_cdf(edges[r], weights[r], u, 1e-5)
    np.testing.assert_allclose(t[r], expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize('k', [0, 3, 7])
def test_sample_pdf_all_mass_in_one_interval(k):
  rng = np.random.default_rng(14 + k)
  edges = _random_edges(rng, 2, 8)
  weights = np.zeros((2, 8), np.float32)
  weights[:, k] = rng.uniform(0.5, 3.0)
  for key in (None, jax.random.PRNGKey(k)):
    t = np.asarray(sampling.sample_pdf(key, edges, weights, 64))
    # The other intervals carry eps / (w + 8 eps) < 1e-4 of the mass, below
    # the 1 / 64 spacing of the stratified variates, so none land there.
    assert np.all(t >= edges[:, k:k + 1] - 1e-5)
    assert np.all(t <= edges[:, k + 1:k + 2] + 1e-5)


@pytest.mark.parametrize('seed', [20, 21])
def test_sample_pdf_empirical_distribution_matches_pdf(seed):
  rng = np.random.default_rng(seed)
  n_int = 6
  edges = _random_edges(rng, 2, n_int)
  weights = rng.uniform(0.0, 1.0, size=(2, n_int)).astype(np.float32)
  weights[0, 2] = 0.0
  num = 20000
  t = np.asarray(sampling.sample_pdf(jax.random.PRNGKey(seed), edges, weights,
                                     num))
  for r in range(2):
    counts, _ = np.histogram(t[r], bins=edges[r].astype(np.float64))
    expected = (weights[r] + 1e-5) / np.sum(weights[r] + 1e-5)
    np.testing.assert_allclose(counts / num, expected, atol=2e-3, rtol=0)
    # Within an interval the density is flat: the mean sits at the midpoint.
    k = int(np.argmax(weights[r]))
    inside = t[r][(t[r] >= edges[r, k]) & (t[r] < edges[r, k + 1])]
    np.testing.assert_allclose(np.mean(inside),
                               0.5 * (edges[r, k] + edges[r, k + 1]),
                               atol=0.02 * (edges[r, k + 1] - edges[r, k]),
                               rtol=0)


@pytest.mark.parametrize('seed', [22, 23])
def test_sample_pdf_uniform_weights_give_linear_quantiles(seed):
  rng = np.random.default_rng(seed)
  near, far = _near_far(rng, (3,))
  m, n = 8, 20
  edges = near + (far - near) * np.linspace(0.0, 1.0, m + 1)
  edges = edges.astype(np.float32)
  for weights in (np.full((3, m), 0.3, np.float32), np.zeros((3, m),
                                                             np.float32)):
    t = np.asarray(sampling.sample_pdf(None, edges, weights, n))
    assert np.all(np.isfinite(t))
    expected = near + (far - near) * (np.arange(n) + 0.5) / n
    np.testing.assert_allclose(t, expected, atol=1e-4, rtol=1e-5)


def test_sample_pdf_gradients_are_stopped():
  rng = np.random.default_rng(24)
  edges = jnp.asarray(_random_edges(rng, 2, 5))
  weights = jnp.asarray(rng.uniform(0.1, 1.0, size=(2, 5)), jnp.float32)
  probe = jnp.asarray(rng.normal(size=(2, 11)), jnp.float32)

  def loss(w, e):
    return jnp.sum(probe * sampling.sample_pdf(jax.random.PRNGKey(0), e, w, 11))

  g_w, g_e = jax.grad(loss, argnums=(0, 1))(weights, edges)
  np.testing.assert_array_equal(g_w, np.zeros((2, 5)))
  np.testing.assert_array_equal(g_e, np.zeros((2, 6)))


def test_sample_pdf_jits_with_batch_shape():
  rng = np.random.default_rng(25)
  edges = _random_edges(rng, 6, 4).reshape(2, 3, 5)
  weights = rng.uniform(0.0, 1.0, size=(2, 3, 4)).astype(np.float32)
  f = jax.jit(lambda k, e, w: sampling.sample_pdf(k, e, w, 7))
  t = np.asarray(f(jax.random.PRNGKey(1), edges, weights))
  assert t.shape == (2, 3, 7)
  assert np.all(t >= edges[..., :1] - 1e-5)
  assert np.all(t <= edges[..., -1:] + 1e-5)


# ----------------------------------------------------------- merge / points


@pytest.mark.parametrize('seed', [26, 27])
def test_merge_samples_is_sorted_union(seed):
  rng = np.random.default_rng(seed)
  a = rng.uniform(0, 5, size=(3, 7)).astype(np.float32)
  b = rng.uniform(0, 5, size=(3, 4)).astype(np.float32)
  b[:, 0] = a[:, 2]  # duplicates are kept
  merged = np.asarray(sampling.merge_samples(a, b))
  assert merged.shape == (3, 11)
  assert np.all(np.diff(merged, axis=-1) >= 0)
  for r in range(3):
    np.testing.assert_array_equal(np.sort(merged[r]),
                                  np.sort(np.concatenate([a[r], b[r]])))


@pytest.mark.parametrize('seed,shape', [(28, (4,)), (29, (2, 3))])
def test_points_along_rays_closed_form(seed, shape):
  rng = np.random.default_rng(seed)
  o = rng.normal(size=shape + (3,)).astype(np.float32)
  d = rng.normal(size=shape + (3,)).astype(np.float32)
  t = rng.uniform(0, 4, size=shape + (5,)).astype(np.float32)
  pts = np.asarray(sampling.points_along_rays(o, d, t))
  assert pts.shape == shape + (5, 3)
  o64, d64, t64 = (x.astype(np.float64) for x in (o, d, t))
  for idx in np.ndindex(*shape):
    for s in range(5):
      np.testing.assert_allclose(pts[idx + (s,)],
                                 o64[idx] + t64[idx + (s,)] * d64[idx],
                                 atol=ATOL, rtol=RTOL)
