"""Tests of nerf_jax.render.occupancy: occupancy grid, ray marching and compaction."""

from __future__ import annotations

import functools
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from nerf_jax.render import occupancy  # pylint: disable=g-import-not-at-top

UNIT_BOX = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], np.float32)
BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], np.float32)


def _rays(origins, directions, near=0.0, far=100.0):
  """f32 arrays (origins, directions, near, far) for a list of rays."""
  o = np.asarray(origins, np.float32).reshape(-1, 3)
  d = np.asarray(directions, np.float32).reshape(-1, 3)
  near = np.broadcast_to(np.asarray(near, np.float32), (len(o),))[:, None]
  far = np.broadcast_to(np.asarray(far, np.float32), (len(o),))[:, None]
  return o, d, near.copy(), far.copy()


def _ray_aabb_np(o, d, near, far, box=UNIT_BOX):
  t0, t1, hit = occupancy.ray_aabb(o, d, box, near, far)
  return np.asarray(t0), np.asarray(t1), np.asarray(hit)


def _random_rays(rng: np.random.Generator, num: int, box=BOX):
  """Rays from a shell around the box aimed near it, |d| in [0.3, 3]."""
  centre = box.mean(0)
  radius = 2.5 * np.abs(box[1] - box[0]).max()
  o = rng.normal(size=(num, 3))
  o = centre + radius * o / np.linalg.norm(o, axis=-1, keepdims=True)
  target = centre + rng.uniform(-0.8, 0.8, size=(num, 3)) * (box[1] - box[0])
  d = target - o
  d *= rng.uniform(0.3, 3.0, size=(num, 1)) / np.linalg.norm(
      d, axis=-1, keepdims=True)
  return _rays(o, d, near=0.05, far=50.0)


def _sphere_density(radius: float, value: float):
  """density_fn: ``value`` inside a centred sphere, 0 outside."""
  def fn(points):
    return jnp.where(jnp.linalg.norm(points, axis=-1) < radius, value, 0.0)
  return fn


# One compilation per call instead of eager op-by-op dispatch.
_UPDATE = jax.jit(occupancy.update_grid,
                  static_argnames=('density_fn', 'decay', 'threshold',
                                   'warmup_steps', 'max_cells'))


def _cell_centres(g: int, box=BOX) -> np.ndarray:
  """f64[g, g, g, 3] cell centres in (x, y, z) row-major order."""
  c = (np.arange(g) + 0.5) / g
  grid = np.stack(np.meshgrid(c, c, c, indexing='ij'), axis=-1)
  return box[0] + grid * (box[1] - box[0])


# ------------------------------------------------------------------ ray_aabb


def test_ray_aabb_axis_aligned_and_scaled_directions():
  o, d, near, far = _rays([[-5, 0.5, 0.5], [-5, 0.5, 0.5], [0.3, 4, 0.2]],
                          [[1, 0, 0], [2, 0, 0], [0, -0.5, 0]])
  t0, t1, hit = _ray_aabb_np(o, d, near, far)
  np.testing.assert_allclose(t0, [5.0, 2.5, 6.0], rtol=1e-6)
  np.testing.assert_allclose(t1, [6.0, 3.0, 8.0], rtol=1e-6)
  assert hit.all()


def test_ray_aabb_diagonal_rays():
  o, d, near, far = _rays([[-1, -1, -1], [2, 2, 2], [-1, 0.5, -1]],
                          [[1, 1, 1], [-0.5, -0.5, -0.5], [1, 0, 1]])
  t0, t1, hit = _ray_aabb_np(o, d, near, far)
  np.testing.assert_allclose(t0, [1.0, 2.0, 1.0], rtol=1e-6)
  np.testing.assert_allclose(t1, [2.0, 4.0, 2.0], rtol=1e-6)
  assert hit.all()


def test_ray_aabb_misses_report_far_and_no_hit():
  o, d, near, far = _rays(
      [[-5, 2, 0.5],     # parallel to x, outside the y slab
       [-5, 0.5, 0.5],   # pointing away from the box
       [-1, -1, 3],      # diagonal passing beside the box
       [2, 0.5, -2],     # touches the box only at the point (0, 0.5, 0)
       [3, 0.5, 0.5]],   # zero direction outside the box never enters it
      [[1, 0, 0], [-1, 0, 0], [1, 1, 0], [-1, 0, 1], [0, 0, 0]], far=7.0)
  t0, t1, hit = _ray_aabb_np(o, d, near, far)
  assert not hit.any()
  np.testing.assert_array_equal(t0, 7.0)
  np.testing.assert_array_equal(t1, 7.0)


def test_ray_aabb_origin_inside_and_zero_components():
  o, d, near, far = _rays(
      [[0.5, 0.5, 0.5], [0.25, 0.5, 0.75], [0, 0.5, -1], [1, 1, -1],
       [0.5, 0.5, 0.5]],
      [[0, 0, 1], [-0.0, 0, -2], [0, 0, 1], [0, -0.0, 0.5], [0, 0, 0]],
      near=0.0, far=9.0)
  t0, t1, hit = _ray_aabb_np(o, d, near, far)
  assert np.isfinite(t0).all() and np.isfinite(t1).all()
  # Inside: starts at near; origins on the faces of a parallel slab are in.
  np.testing.assert_allclose(t0, [0.0, 0.0, 1.0, 2.0, 0.0], rtol=1e-6)
  np.testing.assert_allclose(t1, [0.5, 0.375, 2.0, 4.0, 9.0], rtol=1e-6)
  assert hit.all()


def test_ray_aabb_near_far_clipping():
  o, d, near, far = _rays([[-5, 0.5, 0.5]] * 4, [[1, 0, 0]] * 4,
                          near=[5.2, 4.0, 7.0, 0.0], far=[5.7, 5.5, 9.0, 4.0])
  t0, t1, hit = _ray_aabb_np(o, d, near, far)
  np.testing.assert_allclose(t0[:2], [5.2, 5.0], rtol=1e-6)
  np.testing.assert_allclose(t1[:2], [5.7, 5.5], rtol=1e-6)
  np.testing.assert_array_equal(hit, [True, True, False, False])


def test_ray_aabb_random_rays_bracket_the_box():
  rng = np.random.default_rng(0)
  o, d, near, far = _random_rays(rng, 200)
  t0, t1, hit = _ray_aabb_np(o, d, near, far, BOX)
  assert hit.mean() > 0.5 and not hit.all()
  o, d = o.astype(np.float64), d.astype(np.float64)

  def inside(t):
    p = o + t[:, None] * d
    return np.all(np.abs(p) <= 1.0 + 1e-9, axis=-1)

  h = hit
  span = t1 - t0
  assert inside(0.5 * (t0 + t1))[h].all()
  # Just past either end the point leaves the box or [near, far].
  eps = 1e-3 * np.maximum(span, 1e-3)
  assert not (inside(t0 - eps) & (t0 - eps >= near[:, 0]))[h].any()
  assert not (inside(t1 + eps) & (t1 + eps <= far[:, 0]))[h].any()
  # Missed rays: no point of a dense sweep along [near, far] is in the box.
  ts = np.linspace(near[:, 0], far[:, 0], 4001)
  pts = o[None] + ts[..., None] * d[None]
  assert not np.all(np.abs(pts) <= 1.0, axis=-1)[:, ~h].any()


# ---------------------------------------------------------------- cell_index


@pytest.mark.parametrize('g', [1, 4, 7])
def test_cell_index_matches_numpy_reference(g):
  rng = np.random.default_rng(g)
  box = np.array([[-1.0, 0.0, 2.0], [3.0, 0.5, 2.2]], np.float32)
  pts = box[0] + rng.uniform(-0.2, 1.2, size=(500, 3)) * (box[1] - box[0])
  pts = np.concatenate([pts, box, box.mean(0, keepdims=True)]).astype(
      np.float32)
  index, inside = occupancy.cell_index(pts, box, g)
  p = pts.astype(np.float64)
  ijk = np.clip(np.floor((p - box[0]) / (box[1] - box[0]) * g), 0, g - 1)
  ijk = ijk.astype(np.int64)
  expected = ijk[:, 0] * g * g + ijk[:, 1] * g + ijk[:, 2]
  exp_inside = np.all((p >= box[0]) & (p <= box[1]), axis=-1)
  index = np.asarray(index)
  # Float32 rounding may move points that sit on a cell face by one cell.
  frac = (p - box[0]) / (box[1] - box[0]) * g
  on_face = np.any(np.abs(frac - np.round(frac)) < 1e-4, axis=-1)
  assert index.dtype == np.int32
  np.testing.assert_array_equal(index[~on_face], expected[~on_face])
  np.testing.assert_array_equal(np.asarray(inside), exp_inside)
  assert index[-3] == 0 and index[-2] == g ** 3 - 1  # min and max corners
  assert (index >= 0).all() and (index < g ** 3).all()


# ---------------------------------------------------------------- update_grid


def test_init_grid():
  grid = occupancy.init_grid(5)
  assert grid['density'].shape == (5, 5, 5)
  assert grid['density'].dtype == jnp.float32
  assert not np.asarray(grid['density']).any()
  assert grid['mask'].dtype == jnp.bool_ and np.asarray(grid['mask']).all()


def test_update_grid_warmup_marks_sphere_cells_exactly():
  g = 16
  grid = _UPDATE(None, occupancy.init_grid(g),
                               _sphere_density(0.5, 100.0), BOX, 0,
                               threshold=0.01, max_cells=1000)
  expected = np.linalg.norm(_cell_centres(g), axis=-1) < 0.5
  np.testing.assert_array_equal(np.asarray(grid['mask']), expected)
  np.testing.assert_allclose(np.asarray(grid['density']), 100.0 * expected)


def test_update_grid_after_warmup_finds_solid_and_clears_empty_space():
  g = 16
  # 4096 cells > max_cells, so every update after warm-up samples cells.
  update = jax.jit(functools.partial(
      occupancy.update_grid, density_fn=_sphere_density(0.5, 100.0), aabb=BOX,
      decay=0.5, threshold=0.01, warmup_steps=4, max_cells=2048))
  # Start from a stale grid that believes everything is dense. Stale cells
  # fall under the threshold within 14 halvings; sphere cells dropped by
  # chance meanwhile are found again by the uniform draws, so after 60
  # updates the grid is settled.
  grid = dict(density=jnp.full((g,) * 3, 100.0), mask=jnp.ones((g,) * 3, bool))
  key = jax.random.PRNGKey(0)
  for step in range(10, 70):
    key, sub = jax.random.split(key)
    grid = update(sub, grid, step=step)
  mask = np.asarray(grid['mask'])
  r = np.linalg.norm(_cell_centres(g), axis=-1)
  half_diag = np.sqrt(3) / g  # half the diagonal of a cell of side 2 / g
  assert mask[r + half_diag < 0.5].all()  # cells entirely inside the sphere
  assert not mask[r - half_diag > 0.5].any()  # cells entirely outside


def test_update_grid_decay_and_max():
  g = 4
  old = np.zeros((g,) * 3, np.float32)
  old[0, 0, 0], old[1, 2, 3], old[3, 3, 3] = 1.0, 0.1, 0.5
  grid = dict(density=jnp.asarray(old), mask=jnp.ones((g,) * 3, bool))
  const = lambda v: (lambda p: jnp.full(p.shape[:1], v, jnp.float32))
  zero = _UPDATE(jax.random.PRNGKey(0), grid, const(0.0), BOX, 0,
                               decay=0.9, threshold=0.01)
  np.testing.assert_allclose(np.asarray(zero['density']), 0.9 * old,
                             rtol=1e-6)
  half = _UPDATE(None, grid, const(0.5), BOX, 0, decay=0.9,
                               threshold=0.01)
  np.testing.assert_allclose(np.asarray(half['density']),
                             np.maximum(0.9 * old, 0.5), rtol=1e-6)


def test_update_grid_sampled_path_only_decays_unevaluated_cells():
  g = 16
  rng = np.random.default_rng(1)
  old = rng.uniform(0.0, 1.0, size=(g,) * 3).astype(np.float32)
  grid = dict(density=jnp.asarray(old), mask=jnp.asarray(old > 0.5))
  zero = lambda p: jnp.zeros(p.shape[:1])
  out = _UPDATE(jax.random.PRNGKey(3), grid, zero, BOX, 1000,
                              decay=0.8, threshold=0.3, max_cells=256)
  np.testing.assert_allclose(np.asarray(out['density']), 0.8 * old, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(out['mask']), 0.8 * old > 0.3)


def test_update_grid_sampled_path_always_revisits_occupied_cells():
  g = 32  # 32768 cells, only 32 uniform + 32 occupied draws per update
  mask = np.zeros((g,) * 3, bool)
  mask[5, 17, 30] = True
  grid = dict(density=jnp.zeros((g,) * 3), mask=jnp.asarray(mask))
  five = lambda p: jnp.full(p.shape[:1], 5.0)
  for key in (None, jax.random.PRNGKey(4)):
    out = np.asarray(_UPDATE(key, grid, five, BOX, 500,
                                           threshold=1.0,
                                           max_cells=64)['density'])
    assert out[5, 17, 30] == 5.0
    assert 1 <= np.count_nonzero(out) <= 33


def test_update_grid_mean_guard_keeps_faint_density():
  g = 12
  grid = _UPDATE(None, occupancy.init_grid(g),
                               _sphere_density(0.6, 1e-4), BOX, 0,
                               threshold=0.01)
  # Every density is below the threshold; the mean guard keeps the sphere.
  expected = np.linalg.norm(_cell_centres(g), axis=-1) < 0.6
  assert expected.any()
  np.testing.assert_array_equal(np.asarray(grid['mask']), expected)
  # An empty field empties the grid (ema = 0 is not > min(thr, 0)).
  empty = _UPDATE(None, occupancy.init_grid(g),
                                lambda p: jnp.zeros(p.shape[:1]), BOX, 0,
                                threshold=0.01)
  assert not np.asarray(empty['mask']).any()


def test_update_grid_jit_compiles_once_across_steps():
  traces = []

  def density_fn(points):
    traces.append(points.shape)
    return _sphere_density(0.5, 10.0)(points)

  def update(key, grid, step):
    return occupancy.update_grid(key, grid, density_fn, BOX, step,
                                 threshold=0.01, warmup_steps=5,
                                 max_cells=1024)

  jitted = jax.jit(update)
  g = 16
  sphere = np.linalg.norm(_cell_centres(g), axis=-1) < 0.5
  grid = occupancy.init_grid(g)
  key = jax.random.PRNGKey(5)
  for step in (0, 3, 5, 100):
    key, sub = jax.random.split(key)
    before = np.asarray(grid['density'])
    grid = jitted(sub if step else None, grid, jnp.int32(step))
    after = np.asarray(grid['density'])
    if step == 0:  # warm-up, cell centres: exactly the sphere
      np.testing.assert_array_equal(np.asarray(grid['mask']), sphere)
    elif step >= 5:  # sampled: at most max_cells cells rose above the decay
      assert np.count_nonzero(after > 0.95 * before + 1e-6) <= 1024
  # One trace for the key=None call, one for keyed calls, whatever the step.
  assert jitted._cache_size() == 2  # pylint: disable=protected-access
  # Batches never exceed max_cells points.
  assert max(s[0] for s in traces) <= 1024


# ---------------------------------------------------------------------- march


# Jitted once per shape: eager dispatch of every op would dominate run time.
_MARCH = jax.jit(occupancy.march, static_argnums=7)


def _march(key, rays, mask, num_steps, box=BOX):
  o, d, near, far = rays
  out = _MARCH(key, o, d, near, far, mask, box, num_steps)
  return {k: np.asarray(v) for k, v in out.items()}


def test_march_all_occupied_without_key_is_uniform_grid_from_entry():
  rng = np.random.default_rng(6)
  rays = _random_rays(rng, 64)
  n = 48
  out = _march(None, rays, jnp.ones((8, 8, 8), bool), n)
  o, d, near, far = rays
  t0, t1, hit = _ray_aabb_np(o, d, near, far, BOX)
  dt = np.linalg.norm(BOX[1] - BOX[0]) / n / np.linalg.norm(d, axis=-1)
  i = np.arange(n)
  full = t0[:, None] + (i + 1) * dt[:, None] <= t1[:, None]
  expected = t0[:, None] + (i + 0.5) * dt[:, None]
  tol = 1e-5 * np.maximum(1.0, np.abs(t1))[:, None]
  assert (np.abs(out['t_samples'] - expected) <= tol)[full].all()
  edges = np.minimum(t0[:, None] + np.arange(n + 1) * dt[:, None], t1[:, None])
  np.testing.assert_allclose(out['t_edges'], edges, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out['t_edges'][:, 0], t0, rtol=1e-6)
  np.testing.assert_allclose(out['t_edges'][:, -1], t1, rtol=1e-6)
  # Valid exactly where the step is non-empty: ceil((t1 - t0) / dt) per ray.
  steps = np.where(hit, np.ceil((t1 - t0) / dt - 1e-4), 0)
  np.testing.assert_array_equal(out['valid'].sum(-1), steps)
  assert (out['valid'].sum(-1) <= n).all() and hit.any() and not hit.all()


def test_march_valid_samples_in_box_and_occupied_cells():
  rng = np.random.default_rng(7)
  g, n = 8, 64
  mask = rng.uniform(size=(g,) * 3) < 0.4
  rays = _random_rays(rng, 128)
  for key in (None, jax.random.PRNGKey(7)):
    out = _march(key, rays, jnp.asarray(mask), n)
    o, d, near, far = (x.astype(np.float64) for x in rays)
    pts = o[:, None] + out['t_samples'][..., None] * d[:, None]
    frac = (pts - BOX[0]) / (BOX[1] - BOX[0]) * g
    assert (np.abs(pts[out['valid']]) <= 1.0 + 1e-5).all()
    ijk = np.clip(np.floor(frac), 0, g - 1).astype(int)
    occupied = mask[ijk[..., 0], ijk[..., 1], ijk[..., 2]]
    # Away from cell faces (float rounding), valid == non-empty & occupied.
    on_face = np.any(np.abs(frac - np.round(frac)) < 1e-3, axis=-1)
    nonempty = out['t_edges'][:, 1:] > out['t_edges'][:, :-1]
    np.testing.assert_array_equal(out['valid'][~on_face],
                                  (nonempty & occupied)[~on_face])
    assert out['valid'].any() and not out['valid'].all()


def test_march_jitter_stays_inside_each_step():
  rng = np.random.default_rng(8)
  rays = _random_rays(rng, 100)
  n = 32
  out = _march(jax.random.PRNGKey(8), rays, jnp.ones((4, 4, 4), bool), n)
  lo, hi = out['t_edges'][:, :-1], out['t_edges'][:, 1:]
  t = out['t_samples']
  assert (lo <= t).all() and (t <= hi).all()
  assert (np.diff(out['t_edges'], axis=-1) >= 0).all()
  # One jitter per ray: fractions agree along a ray, differ between rays.
  u = (t[:, 0] - lo[:, 0]) / np.maximum(hi[:, 0] - lo[:, 0], 1e-12)
  hit = hi[:, 0] > lo[:, 0]
  assert np.std(u[hit]) > 0.15
  full = (hi - lo) >= 0.999 * (hi[:, :1] - lo[:, :1])
  frac = (t - lo) / np.maximum(hi - lo, 1e-12)
  assert (np.abs(frac - u[:, None]) < 1e-3)[full & hit[:, None]].all()


def test_march_missed_rays_are_empty_and_keys_repeat():
  o, d, near, far = _rays([[-5, 3, 0], [0, 0, -5]], [[1, 0, 0], [0, 0, 2]],
                          near=0.5, far=6.0)
  out = _march(None, (o, d, near, far), jnp.ones((4, 4, 4), bool), 8)
  # Ray 1 crosses 2 of the 2 sqrt(3) diagonal: ceil(8 / sqrt(3)) = 5 steps.
  np.testing.assert_array_equal(out['valid'][0], False)
  np.testing.assert_array_equal(out['valid'][1], [True] * 5 + [False] * 3)
  np.testing.assert_array_equal(out['t_edges'][0], 6.0)
  # Same key, same samples; another key moves them.
  key = jax.random.PRNGKey(9)
  a = _march(key, (o, d, near, far), jnp.ones((4, 4, 4), bool), 8)
  b = _march(key, (o, d, near, far), jnp.ones((4, 4, 4), bool), 8)
  c = _march(jax.random.PRNGKey(10), (o, d, near, far),
             jnp.ones((4, 4, 4), bool), 8)
  np.testing.assert_array_equal(a['t_samples'], b['t_samples'])
  assert np.abs(a['t_samples'][1] - c['t_samples'][1]).max() > 1e-4


# ------------------------------------------------------- compact and scatter


def _ray_ok_reference(valid: np.ndarray, budget: int) -> np.ndarray:
  """A ray is ok when the position of its last valid sample is < budget."""
  order = np.cumsum(valid.reshape(-1)).reshape(valid.shape)
  last = np.where(valid.any(-1), order.max(-1), 0)
  return last <= budget


@pytest.mark.parametrize('budget_factor', [2.0, 1.0, 0.5, 0.05])
def test_compact_matches_flatnonzero(budget_factor):
  rng = np.random.default_rng(10)
  valid = rng.uniform(size=(37, 23)) < 0.3
  valid[5] = False
  valid[-1] = False  # trailing empty ray after an overflow is still ok
  total = int(valid.sum())
  budget = max(1, int(budget_factor * total))
  for fn in (occupancy.compact, jax.jit(occupancy.compact, static_argnums=1)):
    indices, count, ray_ok = fn(jnp.asarray(valid), budget)
    indices = np.asarray(indices)
    expected = np.flatnonzero(valid)[:budget]
    assert indices.shape == (budget,) and indices.dtype == np.int32
    np.testing.assert_array_equal(indices[:len(expected)], expected)
    np.testing.assert_array_equal(indices[len(expected):], valid.size - 1)
    assert int(count) == total
    np.testing.assert_array_equal(np.asarray(ray_ok),
                                  _ray_ok_reference(valid, budget))
  if budget < total:
    assert not np.asarray(ray_ok).all()


@pytest.mark.parametrize('budget', [500, 60])
def test_scatter_dense_inverts_compact(budget):
  rng = np.random.default_rng(11)
  shape = (20, 16)
  valid = rng.uniform(size=shape) < 0.4
  dense = rng.normal(size=shape + (3,)).astype(np.float32)
  indices, count, _ = occupancy.compact(jnp.asarray(valid), budget)
  count_mask = jnp.arange(budget) < count
  packed = dense.reshape(-1, 3)[np.asarray(indices)]
  packed[~np.asarray(count_mask)] = np.nan  # masked slots must not leak
  out = jax.jit(occupancy.scatter_dense, static_argnums=3)(
      jnp.asarray(packed), indices, count_mask, shape)
  keep = np.zeros(valid.size, bool)
  keep[np.flatnonzero(valid)[:budget]] = True
  expected = np.where(keep.reshape(shape)[..., None], dense, 0.0)
  np.testing.assert_array_equal(np.asarray(out), expected)


def test_scatter_dense_gradient_is_masked_gather():
  rng = np.random.default_rng(12)
  shape = (6, 5)
  valid = rng.uniform(size=shape) < 0.5
  budget = int(valid.sum()) + 4
  indices, count, _ = occupancy.compact(jnp.asarray(valid), budget)
  count_mask = jnp.arange(budget) < count
  w = rng.normal(size=shape).astype(np.float32)
  loss = lambda v: jnp.sum(
      occupancy.scatter_dense(v, indices, count_mask, shape) * w)
  grad = np.asarray(jax.jit(jax.grad(loss))(jnp.ones(budget)))
  expected = np.where(np.asarray(count_mask),
                      w.reshape(-1)[np.asarray(indices)], 0.0)
  np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_unbounded_threshold_falls_with_the_contracted_cells_world_size():
  """In an unbounded grid a cell at |y|_inf = m in contracted space spans
  1 / (2 - m)^2 box cells of world distance, so its threshold is the box's
  times (2 - m)^2; the box (the grid's central half) keeps the box's."""
  g = 16
  scale = np.asarray(occupancy.threshold_scale(g)).reshape(g, g, g)
  centres = (np.arange(g) + 0.5) / g * 4.0 - 2.0
  y = np.stack(np.meshgrid(centres, centres, centres, indexing='ij'), -1)
  m = np.abs(y).max(-1)
  np.testing.assert_allclose(scale[m <= 1], 1.0)
  np.testing.assert_allclose(scale[m > 1], (2.0 - m[m > 1]) ** 2, rtol=1e-6)
  # The same density: empty in the box, occupied in the far shell.
  grid = occupancy.update_grid(
      None, occupancy.init_grid(g), lambda p: jnp.full(p.shape[:-1], 0.5),
      jnp.asarray(BOX), 10_000, decay=0.0, threshold=1.0, warmup_steps=0,
      max_cells=g ** 3, unbounded=True)
  mask = np.asarray(grid['mask'])
  assert not mask[m <= 1].any() and mask[m > 1.5].all()
