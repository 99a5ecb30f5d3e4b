"""mip-NeRF 360's distortion loss against its double sum in NumPy, dense and
packed alike."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from nerf_jax.render import distortion, sampling


def _reference(edges: np.ndarray, weights: np.ndarray) -> float:
  """The loss's definition (eq. 15), the double sum written out."""
  mid = 0.5 * (edges[1:] + edges[:-1])
  total = 0.0
  for i in range(len(weights)):
    for j in range(len(weights)):
      total += weights[i] * weights[j] * abs(mid[i] - mid[j])
  return total + np.sum(weights ** 2 * np.diff(edges)) / 3.0


def _rays(rng, num_rays=5, n=7):
  edges = np.sort(rng.uniform(2.0, 6.0, size=(num_rays, n + 1)), axis=-1)
  edges[:, 0], edges[:, -1] = 2.0, 6.0
  weights = rng.uniform(size=(num_rays, n)) / n
  return edges.astype(np.float32), weights.astype(np.float32)


def test_dense_loss_is_the_double_sum():
  edges, weights = _rays(np.random.default_rng(0))
  near, far = np.full((5, 1), 2.0, np.float32), np.full((5, 1), 6.0,
                                                         np.float32)
  samples = sampling.Samples(t=0.5 * (edges[:, 1:] + edges[:, :-1]),
                             t_starts=edges[:, :-1], t_ends=edges[:, 1:])
  for unbounded in (False, True):
    got = distortion.distortion_loss(samples, jnp.asarray(weights), near,
                                     far, unbounded)
    s = np.asarray(distortion.normalized_distance(edges, 2.0, 6.0,
                                                  unbounded))
    expected = [_reference(s[r], weights[r]) for r in range(5)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
  # One short interval holding all the weight costs less than spread weight.
  assert _reference(np.linspace(0, 1, 8), np.eye(7)[3]) < _reference(
      np.linspace(0, 1, 8), np.full(7, 1 / 7))


def test_packed_loss_equals_dense_with_padding_slots():
  rng = np.random.default_rng(1)
  edges, weights = _rays(rng)
  counts = [7, 3, 0, 5, 7]  # each ray keeps its first intervals
  ids, t0, t1, w = [], [], [], []
  for r, c in enumerate(counts):
    ids += [r] * c
    t0 += list(edges[r, :c])
    t1 += list(edges[r, 1:c + 1])
    w += list(weights[r, :c])
  pad = 6
  used = np.r_[np.ones(len(ids), bool), np.zeros(pad, bool)]
  garbage = rng.uniform(2, 6, pad).astype(np.float32)
  samples = sampling.Samples(
      t=jnp.asarray(np.r_[t0, garbage]), t_starts=jnp.asarray(np.r_[t0,
                                                                    garbage]),
      t_ends=jnp.asarray(np.r_[t1, garbage]),
      ray_ids=jnp.asarray(np.r_[ids, np.full(pad, 4)], jnp.int32),
      used=jnp.asarray(used), ray_ok=jnp.ones(5, bool),
      count=jnp.int32(len(ids)))
  weights_packed = jnp.asarray(np.r_[w, np.zeros(pad)], jnp.float32)
  near, far = np.full((5, 1), 2.0, np.float32), np.full((5, 1), 6.0,
                                                         np.float32)
  got = distortion.distortion_loss(samples, weights_packed, near, far, True)
  s = np.asarray(distortion.normalized_distance(edges, 2.0, 6.0, True))
  expected = [_reference(s[r, :c + 1], weights[r, :c]) if c else 0.0
              for r, c in enumerate(counts)]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
