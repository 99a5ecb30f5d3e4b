"""Tests of nerf_jax.fields.encoding's grid encodings (hash grid, dense grid)."""

from __future__ import annotations

import itertools
import math
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from nerf_jax.fields import encoding  # pylint: disable=g-import-not-at-top

# T = 1024 rows: levels up to 9 cells per axis ((9 + 1)^3 <= 1024) are indexed
# one-to-one, finer ones are hashed. Few levels keep compilation quick.
TABLE_SIZE = 1024
RESOLUTIONS = (4, 9, 21, 64)


# --- float64 reference, one point, level and corner at a time ----------------


def _ref_row(vertex, resolution: int, table_size: int) -> int:
  side = resolution + 1
  if side**3 <= table_size:
    return vertex[0] + vertex[1] * side + vertex[2] * side * side
  # (i * 1 xor j * 2654435761 xor k * 805459861) in 32-bit arithmetic.
  h = ((vertex[0] * 1) % 2**32) ^ ((vertex[1] * 2654435761) % 2**32) \
      ^ ((vertex[2] * 805459861) % 2**32)
  return h % table_size


def _ref_corners(point, resolution: int):
  """[(vertex, weight)] of the 8 corners of the cell around one point."""
  p = np.clip(np.asarray(point, np.float64), 0.0, 1.0) * resolution
  lower = [min(int(math.floor(p[a])), resolution - 1) for a in range(3)]
  frac = [p[a] - lower[a] for a in range(3)]
  out = []
  for offset in itertools.product((0, 1), repeat=3):
    weight = 1.0
    for a in range(3):
      weight *= frac[a] if offset[a] else 1.0 - frac[a]
    out.append(([lower[a] + offset[a] for a in range(3)], weight))
  return out


def _ref_hash_encode(x, tables, resolutions):
  """Returns (f64[M, L*F] features, [(point, level, row, weight)])."""
  x = np.asarray(x, np.float64).reshape(-1, 3)
  tables = np.asarray(tables, np.float64)
  num_levels, table_size, features = tables.shape
  out = np.zeros((x.shape[0], num_levels * features))
  touches = []
  for m in range(x.shape[0]):
    for level, n in enumerate(resolutions):
      for vertex, weight in _ref_corners(x[m], n):
        row = _ref_row(vertex, n, table_size)
        out[m, level * features:(level + 1) * features] += (
            weight * tables[level, row])
        touches.append((m, level, row, weight))
  return out, touches


def _ref_dense_encode(x, grid):
  x = np.asarray(x, np.float64).reshape(-1, 3)
  grid = np.asarray(grid, np.float64)
  out = np.zeros((x.shape[0], grid.shape[-1]))
  for m in range(x.shape[0]):
    for vertex, weight in _ref_corners(x[m], grid.shape[0] - 1):
      out[m] += weight * grid[vertex[0], vertex[1], vertex[2]]
  return out


# Jitted once per shape: op-by-op dispatch of the unrolled levels and corners
# would dominate the run time.
_encode = jax.jit(encoding.hash_grid_encode, static_argnums=2)
_dense = jax.jit(encoding.dense_grid_encode)


@jax.jit
def _table_grad(x, tables, cotangent):
  """d sum(out * cotangent) / d tables."""
  return jax.grad(lambda t: jnp.sum(_encode(x, t, RESOLUTIONS)
                                    * cotangent))(tables)


@jax.jit
def _point_grad(x, tables, cotangent):
  return jax.grad(lambda y: jnp.sum(_encode(y, tables, RESOLUTIONS)
                                    * cotangent))(x)


def _random_tables(seed, num_levels, table_size, features):
  rng = np.random.default_rng(seed)
  return rng.uniform(-1.0, 1.0, (num_levels, table_size, features)).astype(
      np.float32)


def _points(seed, n, low=0.0, high=1.0):
  rng = np.random.default_rng(seed)
  return rng.uniform(low, high, (n, 3)).astype(np.float32)


# --- resolutions -------------------------------------------------------------


def test_resolutions_formula():
  res = encoding.hash_grid_resolutions(16, 16, 2048)
  assert len(res) == 16 and res[0] == 16 and res[-1] == 2048
  b = math.exp((math.log(2048) - math.log(16)) / 15)
  assert res == tuple(math.floor(16 * b**l + 1e-9) for l in range(16))
  assert all(a <= c for a, c in zip(res, res[1:]))
  # b = 2^(1/3): every third level is exactly a power of two.
  assert encoding.hash_grid_resolutions(16, 16, 512)[::3] == (16, 32, 64,
                                                              128, 256, 512)
  assert encoding.hash_grid_resolutions(1, 16, 2048) == (16,)
  assert encoding.hash_grid_resolutions(2, 5, 5) == (5, 5)
  with pytest.raises(ValueError):
    encoding.hash_grid_resolutions(0, 16, 512)
  with pytest.raises(ValueError):
    encoding.hash_grid_resolutions(4, 16, 8)


def test_init():
  tables = encoding.hash_grid_init(jax.random.PRNGKey(0), 3, 64, 2, 1e-2)
  assert tables.shape == (3, 64, 2) and tables.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(tables))) <= 1e-2
  assert float(jnp.std(tables)) > 1e-3


# --- hash grid values --------------------------------------------------------


@pytest.mark.parametrize('table_size,features', [(TABLE_SIZE, 2),
                                                 (1000, 3)])
def test_hash_matches_reference(table_size, features):
  # Both kinds of level are present.
  kinds = [(n + 1)**3 <= table_size for n in RESOLUTIONS]
  assert any(kinds) and not all(kinds)
  tables = _random_tables(0, len(RESOLUTIONS), table_size, features)
  x = np.concatenate([
      _points(1, 150),
      _points(2, 30, -0.2, 1.2),  # clipped to the cube
      np.array([[0, 0, 0], [1, 1, 1], [1, 0, 0.5], [0.5, 0.5, 0.5]],
               np.float32)])
  got = np.asarray(_encode(jnp.asarray(x), jnp.asarray(tables),
                           RESOLUTIONS))
  expected, _ = _ref_hash_encode(x, tables, RESOLUTIONS)
  assert got.shape == (x.shape[0], len(RESOLUTIONS) * features)
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_hash_vertices_are_table_rows():
  # Power-of-two resolutions: x = v / N is exact in float32, so the fraction
  # is exactly 0 (or 1 at x = 1) and the value exactly the row.
  resolutions = (4, 8, 16, 32)  # one-to-one, one-to-one, hashed, hashed
  tables = _random_tables(3, 4, TABLE_SIZE, 2)
  rng = np.random.default_rng(4)
  for level, n in enumerate(resolutions):
    vertices = rng.integers(0, n + 1, (40, 3))
    vertices[:4] = [[0, 0, 0], [n, n, n], [n, 0, n], [0, n, 1]]
    x = (vertices / n).astype(np.float32)
    got = np.asarray(_encode(jnp.asarray(x), jnp.asarray(tables),
                             resolutions))
    rows = [_ref_row(list(v), n, TABLE_SIZE) for v in vertices]
    np.testing.assert_array_equal(got[:, 2 * level:2 * level + 2],
                                  tables[level, rows])


def test_hash_indices_in_range():
  rng = np.random.default_rng(5)
  x = jnp.asarray(np.concatenate([rng.uniform(0, 1, (500, 3)),
                                  [[1, 1, 1], [0, 0, 0]]]).astype(np.float32))
  for table_size in (2**14, 3000):
    for n in (9, 100, 2048, 100000):
      # pylint: disable=protected-access
      spec = encoding._hash_level_spec(n, table_size)
      corners = encoding._corners(x, spec, table_size)
      # pylint: enable=protected-access
      for index, weight in corners:
        index = np.asarray(index)
        assert index.min() >= 0 and index.max() < table_size
        assert np.all(np.asarray(weight) >= 0)
      for m in (0, 7, 500, 501):  # same rows as the reference
        ref = [_ref_row(v, n, table_size) for v, _ in
               _ref_corners(np.asarray(x[m]), n)]
        got = [int(index[m]) for index, _ in corners]
        assert sorted(got) == sorted(ref)
      np.testing.assert_allclose(sum(np.asarray(w) for _, w in corners), 1.0,
                                 atol=1e-6)


def test_hash_continuous_across_cell_boundaries():
  tables = _random_tables(6, len(RESOLUTIONS), TABLE_SIZE, 2)
  rng = np.random.default_rng(7)
  base = rng.uniform(0.1, 0.9, (60, 3))
  finest = RESOLUTIONS[-1]
  # Put one coordinate of each point on a cell boundary of the finest level
  # (x = 0.5 is one of most levels as well).
  axis = rng.integers(0, 3, 60)
  base[np.arange(60), axis] = rng.integers(1, finest, 60) / finest
  base[:3] = 0.5
  delta = np.zeros_like(base)
  delta[np.arange(60), axis] = 1e-6
  f = lambda x: _encode(x, jnp.asarray(tables), RESOLUTIONS)
  below = np.asarray(f(jnp.asarray((base - delta).astype(np.float32))))
  above = np.asarray(f(jnp.asarray((base + delta).astype(np.float32))))
  # Slopes are at most N * 2 = 128 per unit: ~3e-4 over 2e-6 (plus float32
  # rounding of x); a wrong corner would jump by O(1).
  np.testing.assert_allclose(below, above, atol=1e-3, rtol=0)


@pytest.mark.parametrize('shape', [(3,), (2, 5, 3), (0, 3)])
def test_hash_batch_shapes_and_jit(shape):
  tables = jnp.asarray(_random_tables(8, len(RESOLUTIONS), TABLE_SIZE, 2))
  rng = np.random.default_rng(len(shape))
  x = rng.uniform(0, 1, shape).astype(np.float32)
  got = np.asarray(_encode(jnp.asarray(x), tables, RESOLUTIONS))
  assert got.shape == shape[:-1] + (2 * len(RESOLUTIONS),)
  flat = np.asarray(_encode(jnp.asarray(x.reshape(-1, 3)), tables,
                            RESOLUTIONS))
  np.testing.assert_array_equal(got.reshape(flat.shape), flat)
  if len(shape) == 3:  # once without jit (op by op is slow)
    eager = encoding.hash_grid_encode(jnp.asarray(x), tables, RESOLUTIONS)
    np.testing.assert_allclose(eager, got, atol=1e-6, rtol=0)
  if x.size:
    expected, _ = _ref_hash_encode(x, tables, RESOLUTIONS)
    np.testing.assert_allclose(flat, expected, atol=1e-5, rtol=0)


def test_hash_bf16_tables():
  tables = _random_tables(9, len(RESOLUTIONS), TABLE_SIZE, 2)
  x = jnp.asarray(_points(10, 50))
  got = _encode(x, jnp.asarray(tables, jnp.bfloat16), RESOLUTIONS)
  assert got.dtype == jnp.float32
  expected = _encode(x, jnp.asarray(tables), RESOLUTIONS)
  np.testing.assert_allclose(got, expected, atol=1e-2, rtol=0)


def test_hash_rejects_bad_arguments():
  tables = jnp.zeros((2, 64, 2))
  with pytest.raises(ValueError):
    encoding.hash_grid_encode(jnp.zeros((4, 3)), tables, (4,))
  with pytest.raises(ValueError):
    encoding.hash_grid_encode(jnp.zeros((4, 2)), tables, (4, 8))


# --- hash grid gradients -----------------------------------------------------


def _ref_table_grad(touches, cotangent, shape):
  """sum over points and corners of weight * cotangent, per table entry."""
  _, _, features = shape
  grad = np.zeros(shape)
  for m, level, row, weight in touches:
    grad[level, row] += weight * cotangent[m, level * features:
                                           (level + 1) * features]
  return grad


def test_hash_gradient_is_sum_of_weights():
  tables = _random_tables(11, len(RESOLUTIONS), TABLE_SIZE, 2)
  x = _points(12, 64)
  _, touches = _ref_hash_encode(x, tables, RESOLUTIONS)
  for level, feature in [(0, 0), (1, 1), (2, 1), (3, 0)]:  # dense and hashed
    cotangent = np.zeros((x.shape[0], 2 * len(RESOLUTIONS)))
    cotangent[:, 2 * level + feature] = 1.0
    # cotangent selects out[:, feature of level]: d sum(that) / d tables.
    got = np.asarray(_table_grad(jnp.asarray(x), jnp.asarray(tables),
                                 jnp.asarray(cotangent, jnp.float32)))
    expected = _ref_table_grad(touches, cotangent, tables.shape)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    untouched = expected == 0
    assert untouched.sum() > 0 and np.all(got[untouched] == 0)
    # Every point puts total weight 1 on its level.
    np.testing.assert_allclose(got.sum(), x.shape[0], rtol=1e-5)


def test_hash_vjp_matches_reference():
  tables = _random_tables(13, len(RESOLUTIONS), 1000, 3)
  x = _points(14, 48, -0.1, 1.1)
  rng = np.random.default_rng(15)
  cotangent = rng.normal(size=(48, 3 * len(RESOLUTIONS))).astype(np.float32)
  got = _table_grad(jnp.asarray(x), jnp.asarray(tables),
                    jnp.asarray(cotangent))
  _, touches = _ref_hash_encode(x, tables, RESOLUTIONS)
  np.testing.assert_allclose(got, _ref_table_grad(touches, cotangent,
                                                  tables.shape),
                             atol=1e-5, rtol=0)


def test_hash_gradient_wrt_points():
  tables = _random_tables(16, len(RESOLUTIONS), TABLE_SIZE, 2)
  x = _points(17, 20, 0.05, 0.95)
  rng = np.random.default_rng(18)
  cotangent = rng.normal(size=(20, 2 * len(RESOLUTIONS)))
  got = np.asarray(_point_grad(jnp.asarray(x), jnp.asarray(tables),
                               jnp.asarray(cotangent, jnp.float32)))
  # Central differences of the float64 reference (h far below a cell).
  h = 1e-7
  expected = np.zeros((20, 3))
  for a in range(3):
    step = np.zeros(3)
    step[a] = h
    up, _ = _ref_hash_encode(x.astype(np.float64) + step, tables, RESOLUTIONS)
    down, _ = _ref_hash_encode(x.astype(np.float64) - step, tables,
                               RESOLUTIONS)
    expected[:, a] = np.sum((up - down) * cotangent, axis=1) / (2 * h)
  np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-2)
  # Clipped coordinates get no gradient.
  outside = jnp.asarray([[1.5, 0.5, -0.5]], jnp.float32)
  g = _point_grad(outside, jnp.asarray(tables),
                  jnp.ones((1, 2 * len(RESOLUTIONS))))
  assert float(g[0, 0]) == 0.0 and float(g[0, 2]) == 0.0


# --- dense grid --------------------------------------------------------------


def test_dense_reproduces_affine_functions():
  rng = np.random.default_rng(19)
  size, channels = 6, 4
  a = rng.normal(size=(3, channels))
  b = rng.normal(size=channels)
  coords = np.stack(np.meshgrid(*[np.arange(size) / (size - 1)] * 3,
                                indexing='ij'), axis=-1)  # [R, R, R, 3]
  grid = (coords @ a + b).astype(np.float32)
  x = np.concatenate([_points(20, 100), [[0, 0, 0], [1, 1, 1], [1, 0, 1]]])
  got = np.asarray(_dense(jnp.asarray(x.astype(np.float32)),
                          jnp.asarray(grid)))
  np.testing.assert_allclose(got, x @ a + b, atol=2e-5, rtol=0)


def test_dense_matches_reference_and_vertices():
  rng = np.random.default_rng(21)
  grid = rng.uniform(-1, 1, (9, 9, 9, 5)).astype(np.float32)
  x = np.concatenate([_points(22, 80), _points(23, 20, -0.3, 1.3)])
  f = _dense
  np.testing.assert_allclose(f(jnp.asarray(x), jnp.asarray(grid)),
                             _ref_dense_encode(x, grid), atol=1e-5, rtol=0)
  vertices = rng.integers(0, 9, (30, 3))
  vertices[0] = [8, 8, 8]
  got = np.asarray(f(jnp.asarray((vertices / 8).astype(np.float32)),
                     jnp.asarray(grid)))
  np.testing.assert_array_equal(got, grid[tuple(vertices.T)])
  # Batch shapes.
  xb = _points(24, 12).reshape(2, 2, 3, 3)
  out = f(jnp.asarray(xb), jnp.asarray(grid))
  assert out.shape == (2, 2, 3, 5)
  np.testing.assert_allclose(np.asarray(out).reshape(-1, 5),
                             _ref_dense_encode(xb, grid), atol=1e-5, rtol=0)


def test_dense_gradients():
  rng = np.random.default_rng(25)
  grid = rng.uniform(-1, 1, (5, 5, 5, 3)).astype(np.float32)
  x = _points(26, 40)
  cotangent = rng.normal(size=(40, 3)).astype(np.float32)
  got = np.asarray(jax.jit(jax.grad(lambda g: jnp.sum(_dense(
      jnp.asarray(x), g) * cotangent)))(jnp.asarray(grid)))
  expected = np.zeros(grid.shape)
  for m in range(40):
    for vertex, weight in _ref_corners(x[m], 4):
      expected[tuple(vertex)] += weight * cotangent[m]
  np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
  # w.r.t. x: the gradient of an affine grid is its slope.
  a = rng.normal(size=(3, 3))
  coords = np.stack(np.meshgrid(*[np.arange(5) / 4] * 3, indexing='ij'), -1)
  affine = jnp.asarray((coords @ a).astype(np.float32))
  gx = jax.jit(jax.grad(lambda y: jnp.sum(_dense(y, affine)[:, 1])))(
      jnp.asarray(x))
  np.testing.assert_allclose(gx, np.broadcast_to(a[:, 1], (40, 3)), atol=1e-4)


def test_dense_rejects_bad_grids():
  with pytest.raises(ValueError):
    encoding.dense_grid_encode(jnp.zeros((2, 3)), jnp.zeros((4, 4, 3, 2)))
  with pytest.raises(ValueError):
    encoding.dense_grid_encode(jnp.zeros((2, 3)), jnp.zeros((1, 1, 1, 2)))
