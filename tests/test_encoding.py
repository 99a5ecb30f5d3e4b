"""Tests of nerf_jax.fields.encoding: the NeRF positional encoding."""

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

from nerf_jax.fields import encoding  # pylint: disable=g-import-not-at-top


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
  # Exact range reduction (see encoding.sin_cos_octaves): about 1.4e-7 at
  # every octave for arguments well below 2^24.
  del x, num_freqs
  return 3e-7


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


@pytest.mark.parametrize('scale', [1.0, 4.0])
def test_top_octaves_as_accurate_as_the_first(scale):
  # NeRF's 8x64 keras-style MLP uses L=16: arguments up to 2^15 * |x|.
  rng = np.random.default_rng(10)
  x = rng.uniform(-scale, scale, size=(20000, 3)).astype(np.float32)
  x[:4] = [[0.0, -0.0, np.pi / 2], [np.pi, -np.pi, 2 * np.pi],
           [1e-30, 1e-8, -1e-8], [scale, -scale, 0.5]]
  got = np.asarray(jax.jit(lambda v: encoding.positional_encoding(v, 16))(x))
  err = np.abs(got - _reference(x, 16))
  assert err.max() < 3e-7, err.max()
  np.testing.assert_array_equal(got[:, :3], x)


def test_parts_concatenate_to_the_encoding():
  rng = np.random.default_rng(11)
  x = jnp.asarray(rng.uniform(-2, 2, size=(7, 3)).astype(np.float32))
  for num_freqs, include_input, count in ((0, True, 1), (3, True, 3),
                                          (3, False, 2)):
    parts = encoding.positional_encoding_parts(x, num_freqs, include_input)
    assert len(parts) == count
    np.testing.assert_array_equal(
        np.concatenate(parts, -1),
        encoding.positional_encoding(x, num_freqs, include_input))


def test_gradient_is_the_closed_form():
  # d/dx sum_k [sin(2^k x) + cos(2^k x)] + x = 1 + sum_k 2^k (cos - sin).
  rng = np.random.default_rng(12)
  x = rng.uniform(-3, 3, size=(64, 3)).astype(np.float32)
  grad = jax.grad(lambda v: encoding.positional_encoding(v, 6).sum())(
      jnp.asarray(x))
  x64 = x.astype(np.float64)
  expected = 1.0 + sum(2.0**k * (np.cos(2.0**k * x64) - np.sin(2.0**k * x64))
                       for k in range(6))
  np.testing.assert_allclose(grad, expected, atol=2e-5, rtol=1e-6)
