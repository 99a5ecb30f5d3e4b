"""Tests of nerf_jax.encoding: the NeRF positional encoding."""

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

from nerf_jax import encoding  # pylint: disable=g-import-not-at-top


def _reference(x: np.ndarray, num_freqs: int, include_input: bool = True):
  """Float64 gamma(x) built feature by feature, in the documented layout.

  [x | sin(2^k x_c) for k in 0..L-1 for c in 0..d-1 | cos(...) likewise]:
  the coordinate index c runs fastest within each octave k.
  """
  x = np.asarray(x, np.float64)
  d = x.shape[-1]
  feats = [x[..., c] for c in range(d)] if include_input else []
  for fn in (np.sin, np.cos):
    for k in range(num_freqs):
      for c in range(d):
        feats.append(fn(2.0**k * x[..., c]))
  return np.stack(feats, axis=-1)


def _tolerance(x: np.ndarray, num_freqs: int) -> float:
  # cos is computed as sin(t + pi/2) in float32, so it may be off by half an
  # ulp of the largest argument t = 2^(L-1) |x|; sin itself is near-exact.
  largest = 2.0**max(num_freqs - 1, 0) * float(np.max(np.abs(x)))
  return 1e-6 + float(np.spacing(np.float32(largest)))


@pytest.mark.parametrize('seed,num_freqs,dims', [(0, 1, 3), (1, 4, 3),
                                                 (2, 10, 3), (3, 6, 2),
                                                 (4, 3, 5)])
def test_matches_reference_layout(seed, num_freqs, dims):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, size=(11, dims)).astype(np.float32)
  got = np.asarray(encoding.positional_encoding(jnp.asarray(x), num_freqs))
  expected = _reference(x, num_freqs)
  assert got.shape == (11, encoding.encoded_size(dims, num_freqs))
  assert got.shape == expected.shape == (11, dims * (2 * num_freqs + 1))
  np.testing.assert_allclose(got, expected, atol=_tolerance(x, num_freqs),
                             rtol=0)


def test_sine_block_is_tight_and_input_is_exact():
  rng = np.random.default_rng(5)
  x = rng.uniform(-1.0, 1.0, size=(50, 3)).astype(np.float32)
  num_freqs = 10
  got = np.asarray(encoding.positional_encoding(jnp.asarray(x), num_freqs))
  expected = _reference(x, num_freqs)
  np.testing.assert_array_equal(got[:, :3], x)
  sines = slice(3, 3 + 3 * num_freqs)
  np.testing.assert_allclose(got[:, sines], expected[:, sines], atol=1e-6,
                             rtol=0)


def test_known_values():
  # x = pi/2 on one axis: sin(pi/2)=1, sin(pi)=0, sin(2 pi)=0; cos 0, -1, 1.
  x = np.array([[np.pi / 2, 0.0]], np.float32)
  got = np.asarray(encoding.positional_encoding(jnp.asarray(x), 3))
  expected = [np.pi / 2, 0.0,  # x
              1.0, 0.0, 0.0, 0.0, 0.0, 0.0,  # sin: k=0 (c=0, 1), k=1, k=2
              0.0, 1.0, -1.0, 1.0, 1.0, 1.0]  # cos
  np.testing.assert_allclose(got[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize('dims', [1, 3])
def test_zero_freqs_returns_input(dims):
  rng = np.random.default_rng(6)
  x = rng.normal(size=(4, dims)).astype(np.float32)
  got = encoding.positional_encoding(jnp.asarray(x), 0)
  assert encoding.encoded_size(dims, 0) == dims
  np.testing.assert_array_equal(got, x)


@pytest.mark.parametrize('seed,num_freqs', [(7, 4), (8, 2)])
def test_without_input(seed, num_freqs):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1.0, 1.0, size=(9, 3)).astype(np.float32)
  got = np.asarray(
      encoding.positional_encoding(jnp.asarray(x), num_freqs,
                                   include_input=False))
  assert got.shape == (9, encoding.encoded_size(3, num_freqs, False))
  assert got.shape[-1] == 3 * 2 * num_freqs
  np.testing.assert_allclose(got, _reference(x, num_freqs, False),
                             atol=_tolerance(x, num_freqs), rtol=0)


def test_encoded_size_closed_form():
  for d in (1, 2, 3):
    for num_freqs in (0, 1, 4, 10):
      assert encoding.encoded_size(d, num_freqs) == d + 2 * d * num_freqs
      assert encoding.encoded_size(d, num_freqs, False) == 2 * d * num_freqs


@pytest.mark.parametrize('shape', [(3,), (2, 5, 3), (1, 2, 3, 3)])
def test_batch_shapes(shape):
  rng = np.random.default_rng(len(shape))
  x = rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)
  got = np.asarray(encoding.positional_encoding(jnp.asarray(x), 4))
  assert got.shape == shape[:-1] + (27,)
  flat = np.asarray(
      encoding.positional_encoding(jnp.asarray(x.reshape(-1, 3)), 4))
  np.testing.assert_allclose(got.reshape(-1, 27), flat, atol=0, rtol=0)
  np.testing.assert_allclose(got, _reference(x, 4), atol=_tolerance(x, 4),
                             rtol=0)


def test_jit():
  rng = np.random.default_rng(9)
  x = rng.uniform(-1.0, 1.0, size=(6, 3)).astype(np.float32)
  f = jax.jit(lambda v: encoding.positional_encoding(v, 5))
  np.testing.assert_allclose(f(jnp.asarray(x)), _reference(x, 5),
                             atol=_tolerance(x, 5), rtol=0)
