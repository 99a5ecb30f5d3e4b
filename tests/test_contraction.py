"""Unbounded scenes: the contraction, its inverse, and marching from near to
far linearly near the box and in disparity beyond it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_jax.render import contraction, occupancy

AABB = np.array([[-1.0, -2.0, 0.0], [3.0, 2.0, 2.0]], np.float32)


def _reference_contract(u):
  """NumPy, float64, point by point: nerfacto's L-inf contraction."""
  out = []
  for p in np.asarray(u, np.float64).reshape(-1, 3):
    n = np.max(np.abs(p))
    out.append(p if n <= 1 else (2 - 1 / n) * p / n)
  return np.array(out).reshape(np.shape(u))


def test_contraction_is_the_identity_in_the_box_and_bounded_outside():
  rng = np.random.default_rng(0)
  u = rng.normal(size=(2000, 3)) * rng.choice([0.3, 3.0, 1e4], (2000, 1))
  y = np.asarray(contraction.contract(jnp.asarray(u, jnp.float32)))
  np.testing.assert_allclose(y, _reference_contract(u), rtol=1e-5, atol=1e-6)
  inside = np.max(np.abs(u), axis=-1) <= 1
  np.testing.assert_allclose(y[inside], u[inside], rtol=1e-6)
  assert np.all(np.abs(y) <= 2.0) and np.all(np.abs(y[~inside]).max(-1) > 1)
  back = np.asarray(contraction.uncontract(jnp.asarray(y)))
  near = np.max(np.abs(u), axis=-1) < 100  # far points lose float precision
  np.testing.assert_allclose(back[near], u[near], rtol=1e-4, atol=1e-5)


def test_to_unit_maps_the_box_to_the_central_half_and_space_into_the_cube():
  rng = np.random.default_rng(1)
  points = rng.uniform(AABB[0], AABB[1], (500, 3)).astype(np.float32)
  unit = np.asarray(contraction.to_unit(points, AABB, unbounded=True))
  assert np.all((unit >= 0.25 - 1e-6) & (unit <= 0.75 + 1e-6))
  bounded = np.asarray(contraction.to_unit(points, AABB))
  np.testing.assert_allclose(unit, 0.25 + 0.5 * bounded, atol=1e-6)
  far = rng.normal(size=(500, 3)).astype(np.float32) * 1e6
  unit = np.asarray(contraction.to_unit(far, AABB, unbounded=True))
  assert np.all((unit >= 0) & (unit <= 1))
  # Back and forth: world -> unit -> world.
  mid = rng.normal(size=(500, 3)).astype(np.float32) * 5
  for unbounded in (False, True):
    unit = contraction.to_unit(mid, AABB, unbounded)
    np.testing.assert_allclose(contraction.from_unit(unit, AABB, unbounded),
                               mid, rtol=1e-4, atol=1e-4)


def test_unbounded_edges_are_linear_to_the_box_then_equal_in_disparity():
  origins = np.array([[1.0, 0.0, -6.0], [1.0, 0.0, -6.0], [10.0, 10.0, 10.0]],
                     np.float32)
  directions = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]],
                        np.float32)
  near = np.full((3, 1), 0.5, np.float32)
  far = np.full((3, 1), 1000.0, np.float32)
  edges = np.asarray(occupancy.unbounded_edges(
      origins, directions, near, far, jnp.asarray(AABB), 8, 16))
  assert edges.shape == (3, 25)
  np.testing.assert_allclose(edges[:, 0], 0.5)
  np.testing.assert_allclose(edges[:, -1], 1000.0, rtol=1e-4)
  assert np.all(np.diff(edges, axis=-1) >= 0)
  assert np.all(np.diff(edges[:2], axis=-1) > 0)
  # Ray 0 leaves the box (z = 2) at t = 8, ray 1 (twice as fast) at t = 4.
  np.testing.assert_allclose(edges[0, 8], 8.0, rtol=1e-6)
  np.testing.assert_allclose(edges[1, 8], 4.0, rtol=1e-6)
  np.testing.assert_allclose(np.diff(edges[0, :9]), 7.5 / 8, rtol=1e-5)
  np.testing.assert_allclose(np.diff(1.0 / edges[0, 8:]),
                             (1 / 1000 - 1 / 8) / 16, rtol=1e-4)
  # Ray 2 misses the box: all its steps are equal in disparity from near.
  np.testing.assert_allclose(edges[2, :9], 0.5, rtol=1e-6)
  np.testing.assert_allclose(np.diff(1.0 / edges[2, 8:]),
                             (1 / 1000 - 1 / 0.5) / 16, rtol=1e-4)


@pytest.mark.parametrize('key', [None, 3])
def test_marching_an_unbounded_scene_reaches_far_through_occupied_cells(key):
  rng = np.random.default_rng(2)
  origins = rng.normal(size=(64, 3)).astype(np.float32) * 6
  # Half the rays aim at points of the box, half anywhere.
  targets = rng.uniform(AABB[0], AABB[1], (64, 3)).astype(np.float32)
  directions = np.where(np.arange(64)[:, None] < 32, targets - origins,
                        rng.normal(size=(64, 3))).astype(np.float32)
  near, far = np.full((64, 1), 0.1, np.float32), np.full((64, 1), 500.0,
                                                          np.float32)
  key = None if key is None else jax.random.PRNGKey(key)
  g = 16
  full = occupancy.march(key, origins, directions, near, far,
                         jnp.ones((g,) * 3, bool), jnp.asarray(AABB), 8, 24)
  assert full['t_samples'].shape == (64, 32)
  # Every non-empty step is somewhere in space, so an all-occupied grid
  # keeps it; the outer steps always reach far.
  nonempty = np.diff(np.asarray(full['t_edges']), axis=-1) > 0
  np.testing.assert_array_equal(full['valid'], nonempty)
  assert nonempty[:, 8:].all()
  np.testing.assert_allclose(full['t_edges'][:, -1], 500.0, rtol=1e-4)
  # A grid with only its outer shell occupied keeps the far samples and
  # drops those in the box's cells.
  shell = np.ones((g,) * 3, bool)
  shell[4:12, 4:12, 4:12] = False  # the box: the central half
  part = occupancy.march(key, origins, directions, near, far,
                         jnp.asarray(shell), jnp.asarray(AABB), 8, 24)
  points = origins[:, None] + np.asarray(part['t_samples'])[..., None] * (
      directions[:, None])
  in_box = np.all((points > AABB[0] + 1e-4) & (points < AABB[1] - 1e-4), -1)
  assert in_box.any() and not np.asarray(part['valid'])[in_box].any()
  assert np.asarray(part['valid'])[~in_box & nonempty].mean() > 0.99

