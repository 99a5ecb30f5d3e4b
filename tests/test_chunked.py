"""Tests of the one host-side chunked evaluator, inference.chunked.map_chunked
(used by image rendering, the viewer's frames and the export tools)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_jax.inference import chunked


def _traced_fn():
  """A jitted fn(x f32[n, 3], y i32[n]) -> {'s': f32[n], 'xy': f32[n, 3]},
  and the list of chunk sizes it was traced for."""
  traces = []

  @jax.jit
  def fn(x, y):
    traces.append(x.shape[0])
    return {'s': jnp.sum(x, axis=-1) * y, 'xy': x + y[:, None]}

  return fn, traces


def _reference(x, y):
  return {'s': x.sum(axis=-1) * y, 'xy': x + y[:, None]}


@pytest.mark.parametrize('chunk', [1, 4, 7])
def test_equals_the_unchunked_function_and_compiles_once(chunk):
  fn, traces = _traced_fn()
  rng = np.random.default_rng(chunk)
  for n in (1, 3, 4, 9, 13):  # n < chunk, n == chunk, n not divisible
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = rng.integers(-5, 5, size=n).astype(np.int32)
    out = chunked.map_chunked(fn, x, y, chunk=chunk)
    expected = _reference(x, y)
    assert set(out) == {'s', 'xy'}
    for key, value in out.items():
      assert isinstance(value, np.ndarray) and value.dtype == np.float32
      np.testing.assert_allclose(value, expected[key], rtol=1e-6, atol=1e-6)
  assert traces == [chunk]  # the padded last chunk never recompiles


def test_pytree_inputs_and_no_rows():
  fn, _ = _traced_fn()
  inputs = {'x': np.ones((0, 3), np.float32), 'y': np.zeros(0, np.int32)}
  out = chunked.map_chunked(lambda t: fn(t['x'], t['y']), inputs, chunk=8)
  assert out['s'].shape == (0,) and out['xy'].shape == (0, 3)
  assert out['xy'].dtype == np.float32
  with pytest.raises(ValueError, match='leading sizes'):
    chunked.map_chunked(fn, np.ones((3, 3)), np.ones(4), chunk=2)


def test_index_chunks_repeat_the_last_index_and_round_to_devices():
  seen = []

  def fn(index):
    seen.append(index.copy())
    return index * 2

  out = chunked.map_chunked(fn, chunk=4, size=7, devices=3)
  np.testing.assert_array_equal(out, 2 * np.arange(7))
  assert [s.dtype for s in seen] == [np.int32, np.int32]
  np.testing.assert_array_equal(seen[0], np.arange(6))  # 4 rounded up to 6
  np.testing.assert_array_equal(seen[1], [6, 6, 6, 6, 6, 6])


def test_place_sees_every_padded_leaf():
  placed = []
  x = np.arange(10, dtype=np.float32)[:, None]
  out = chunked.map_chunked(lambda a: a + 1, x, chunk=4,
                            place=lambda v: placed.append(v.shape) or v)
  np.testing.assert_array_equal(out, x + 1)
  assert placed == [(4, 1)] * 3


def test_cancelled_stops_between_chunks():
  calls = []
  with pytest.raises(chunked.Cancelled):
    chunked.map_chunked(lambda a: calls.append(1) or a, np.zeros((10, 2)),
                        chunk=3, cancelled=lambda: len(calls) == 2)
  assert len(calls) == 2  # checked before each chunk: the third never ran
