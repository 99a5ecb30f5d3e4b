"""Positional encoding (NeRF paper, eq. 4)."""

from __future__ import annotations

import jax.numpy as jnp


def encoded_size(in_dims: int, num_freqs: int, include_input: bool = True) -> int:
  """Size of the last axis of ``positional_encoding``'s output."""
  return in_dims * (2 * num_freqs + (1 if include_input else 0))


def positional_encoding(x: jnp.ndarray, num_freqs: int,
                        include_input: bool = True) -> jnp.ndarray:
  """gamma(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

  Frequencies are 2^k (not 2^k * pi), as in the reference implementation, for
  inputs of roughly unit scale. Features are grouped by function then
  frequency: ``[x | sin(x * 2^0..L-1) | cos(x * 2^0..L-1)]`` with the
  coordinate index fastest, i.e. ``sin(2^k x_c)`` sits at
  ``in_dims * k + c`` of the sine block.

  Args:
    x: f32[..., d], coordinates.
    num_freqs: int, L, the number of octaves (0 returns x alone).
    include_input: bool, whether to prepend x itself.

  Returns:
    f32[..., encoded_size(d, L, include_input)].
  """
  parts = [x] if include_input else []
  if num_freqs > 0:
    scales = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
    xb = (x[..., None, :] * scales[:, None]).reshape(
        x.shape[:-1] + (num_freqs * x.shape[-1],))
    # cos(t) = sin(t + pi/2): one sine over both halves is a single fused op.
    both = jnp.sin(jnp.concatenate([xb, xb + 0.5 * jnp.pi], axis=-1))
    parts.append(both)
  return jnp.concatenate(parts, axis=-1)
