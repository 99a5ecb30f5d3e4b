"""Input encodings: NeRF's positional encoding (NeRF paper, eq. 4) and the
grid encodings of instant-ngp (a multiresolution hash grid, a dense grid)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def encoded_size(in_dims: int, num_freqs: int, include_input: bool = True) -> int:
  """Size of the last axis of ``positional_encoding``'s output."""
  return in_dims * (2 * num_freqs + (1 if include_input else 0))


def _split_constant(value: float) -> tuple:
  """``value`` as three float32 terms; the first two have at most 12
  significant bits, so their products with a 12-bit number are exact."""
  def top12(v):
    mantissa, exponent = np.frexp(v)
    return np.float32(np.ldexp(np.round(mantissa * 4096.0) / 4096.0, exponent))
  first = top12(np.float64(value))
  second = top12(np.float64(value) - np.float64(first))
  third = np.float32(np.float64(value) - np.float64(first) - np.float64(second))
  return first, second, third


# 2/pi (quarter turns per radian) in three parts, for exact range reduction.
_QUARTER_TURNS = _split_constant(2.0 / np.pi)
# Cephes' single-precision minimax polynomials for sin and cos on
# [-pi/4, pi/4] (absolute error ~1e-7).
_SIN_COEFFS = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS_COEFFS = (2.443315711809948e-5, -1.388731625493765e-3,
               4.166664568298827e-2)


def _high_bits(x: jnp.ndarray) -> jnp.ndarray:
  """x with the low 12 bits of its mantissa cleared (x - that is exact)."""
  bits = jax.lax.bitcast_convert_type(x, jnp.uint32) & jnp.uint32(0xFFFFF000)
  return jax.lax.bitcast_convert_type(bits, jnp.float32)


def sin_cos_octaves(x: jnp.ndarray, num_freqs: int) -> tuple:
  """sin(2^k x) and cos(2^k x) for k < num_freqs, each f32[..., L * d].

  Laid out octave-major (``2^k x_c`` at ``d * k + c``), as in
  ``positional_encoding``. XLA's ``sin`` costs several nanoseconds an
  element on a CPU, more for the large arguments of the top octaves, and was
  a third of the vanilla training step. Here the range reduction uses the
  octave structure instead: x * 2/pi is split once per coordinate into
  three float32 terms (the first two exact products of 12-bit halves), and
  scaling a term by 2^k is exact, so each octave's argument is reduced to a
  quarter turn in [-1/2, 1/2] and a quadrant with a handful of exact
  operations; one short polynomial pair then gives both sin and cos. The
  error is ~1.4e-7 at every octave for |x| < 4 (float64 reference), where
  ``jnp.sin(t + pi/2)`` for the cosine was off by up to 5e-3 at 2^15; it
  grows once 2^(L-1) |x| approaches 2^24 (~1e3 for L=16), like any float32
  evaluation. Differentiable: the rounded parts carry no gradient, the rest
  carries d/dx exactly.

  Args:
    x: f32[..., d], coordinates.
    num_freqs: int, L >= 1.

  Returns:
    (sin, cos), each f32[..., L * d].
  """
  x = x.astype(jnp.float32)
  c1, c2, c3 = _QUARTER_TURNS
  x_high = _high_bits(x)
  x_low = x - x_high
  # x * 2/pi = big + mid + small; big and the two halves of mid are exact.
  big = x_high * c1
  mid = x_high * c2 + x_low * c1
  small = x_low * c2 + x * c3
  scales = jnp.asarray(2.0**np.arange(num_freqs), jnp.float32)[:, None]
  shape = x.shape[:-1] + (num_freqs * x.shape[-1],)

  def octaves(term):  # [..., d] -> [..., L * d], term * 2^k (exact)
    return (term[..., None, :] * scales).reshape(shape)

  big, mid, small = octaves(big), octaves(mid), octaves(small)
  turns_big = jnp.round(big)
  turns_mid = jnp.round(mid)
  frac = (big - turns_big) + (mid - turns_mid) + small
  turns_frac = jnp.round(frac)
  frac = frac - turns_frac
  quarter = turns_big + turns_mid + turns_frac  # integer-valued
  quadrant = quarter - 4.0 * jnp.floor(quarter * 0.25)  # 0, 1, 2 or 3
  r = frac * np.float32(np.pi / 2)  # in [-pi/4, pi/4]
  r2 = r * r
  s3, s5, s7 = _SIN_COEFFS
  c8, c6, c4 = _COS_COEFFS
  sin_r = r + r * r2 * (s7 + r2 * (s5 + r2 * s3))
  cos_r = 1.0 - 0.5 * r2 + r2 * r2 * (c4 + r2 * (c6 + r2 * c8))
  odd = (quadrant == 1.0) | (quadrant == 3.0)
  sin = jnp.where(odd, cos_r, sin_r)
  cos = jnp.where(odd, sin_r, cos_r)
  sin = jnp.where(quadrant >= 2.0, -sin, sin)
  cos = jnp.where((quadrant == 1.0) | (quadrant == 2.0), -cos, cos)
  return sin, cos


def positional_encoding_parts(x: jnp.ndarray, num_freqs: int,
                              include_input: bool = True) -> list:
  """``positional_encoding`` as the list of arrays it concatenates:
  ``[x, sin, cos]`` (fewer when L == 0 or without the input). A layer that
  multiplies the encoding by a kernel can multiply each part by a slice of
  it instead, without materialising the concatenation."""
  parts = [x] if include_input else []
  if num_freqs > 0:
    parts.extend(sin_cos_octaves(x, num_freqs))
  return parts


def positional_encoding(x: jnp.ndarray, num_freqs: int,
                        include_input: bool = True) -> jnp.ndarray:
  """gamma(x) = [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

  Frequencies are 2^k (not 2^k * pi), as in the reference implementation, for
  inputs of roughly unit scale. Features are grouped by function then
  frequency: ``[x | sin(x * 2^0..L-1) | cos(x * 2^0..L-1)]`` with the
  coordinate index fastest, i.e. ``sin(2^k x_c)`` sits at
  ``in_dims * k + c`` of the sine block. See ``sin_cos_octaves`` for how
  the sines are computed.

  Args:
    x: f32[..., d], coordinates.
    num_freqs: int, L, the number of octaves (0 returns x alone).
    include_input: bool, whether to prepend x itself.

  Returns:
    f32[..., encoded_size(d, L, include_input)].
  """
  parts = positional_encoding_parts(x, num_freqs, include_input)
  return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)


# ---------------------------------------------------------------------------
# Grid encodings (instant-ngp, Mueller et al. 2022): a point's features are
# trilinearly interpolated from the 8 vertices of the grid cell around it, at
# one or several resolutions. The parameter arrays are explicit arguments.
#
# Speed on the XLA CPU backend (benchmarks/encoding_speed.py --ablation; the
# costs are random memory accesses, and a serial scatter in the backward):
# - levels are a Python loop, specialised per level (one-to-one or hashed
#   index, resolution as a constant), with the 8 corners unrolled: each level
#   is one fused index-gather-multiply-add. One vectorised gather of all
#   levels' corners from the flattened [L*T, F] table was several times
#   slower (it computes both kinds of index for every level and materialises
#   the [L, N, 8, F] gather before the weighted sum).
# - the backward is hand-written (jax.custom_vjp): it recomputes the rows and
#   weights from x (no [N, L, 8] residuals are kept) and does one scatter-add
#   per level of all 8 corners, about 1.4-1.8x faster than JAX's transpose of the
#   gathers. Windowed gathers/scatters of whole [2, 2, 2, F] cells for the
#   one-to-one levels, chunking the scatter over points, packing F = 2 into
#   one 32/64-bit element and 'promise_in_bounds' indexing did not help.
# - bfloat16 tables (accepted; features are interpolated in float32) halve
#   the memory traffic of the forward, which was up to ~1.5x faster in noisy
#   measurements, while the training step (f32 master copy cast per call) was
#   no faster; float32 is the default.

# One prime per axis (instant-ngp, eq. 4); the first is 1 so that neighbours
# along x stay close together in the table.
_HASH_PRIMES = (1, 2654435761, 805459861)


def hash_grid_resolutions(num_levels: int, base_resolution: int,
                          max_resolution: int) -> tuple[int, ...]:
  """Cells per axis of each level: instant-ngp's N_l = floor(N_min * b^l).

  b = exp((ln N_max - ln N_min) / (L - 1)), so the resolutions grow
  geometrically from N_min (level 0) to N_max (level L - 1).

  Args:
    num_levels: int, L >= 1.
    base_resolution: int, N_min >= 1.
    max_resolution: int, N_max >= N_min.

  Returns:
    tuple of L ints, non-decreasing; (N_min,) when L = 1.
  """
  if num_levels < 1:
    raise ValueError(f'num_levels must be >= 1, got {num_levels}')
  if base_resolution < 1 or max_resolution < base_resolution:
    raise ValueError('need 1 <= base_resolution <= max_resolution, got '
                     f'{base_resolution} and {max_resolution}')
  if num_levels == 1:
    return (int(base_resolution),)
  growth = np.exp((np.log(max_resolution) - np.log(base_resolution))
                  / (num_levels - 1))
  # N_min * b^l is an integer at the last level (N_max) and may be one at
  # others; float64 can land a few ulps below it, which floor would turn into
  # N - 1. A relative nudge far below the gap between integers prevents that.
  return tuple(
      int(np.floor(base_resolution * growth**level * (1.0 + 1e-12)))
      for level in range(num_levels))


def hash_grid_init(key: jax.Array, num_levels: int, table_size: int,
                   features: int, scale: float = 1e-4) -> jnp.ndarray:
  """Initial hash tables, uniform in [-scale, scale] as in instant-ngp.

  Args:
    key: PRNG key.
    num_levels: int, L.
    table_size: int, T, rows per level.
    features: int, F, features per row.
    scale: float, half-width of the uniform distribution.

  Returns:
    f32[L, T, F].
  """
  return jax.random.uniform(key, (num_levels, table_size, features),
                            jnp.float32, -scale, scale)


def _hash_level_spec(resolution: int, table_size: int) -> tuple:
  """(resolution, strides): strides of a one-to-one index, or None to hash."""
  side = resolution + 1
  if side**3 <= table_size:  # every vertex gets its own row
    return (resolution, (1, side, side * side))
  return (resolution, None)


def _corners(x: jnp.ndarray, spec: tuple, table_size: int) -> list:
  """Table rows and trilinear weights of the 8 vertices around each point.

  Args:
    x: f32[M, 3], points in [0, 1]^3.
    spec: (resolution, strides), cells per axis and the vertex index: a
      one-to-one index sum_a v_a * strides[a], or the spatial hash mod
      table_size when strides is None.
    table_size: int, T, rows of the table.

  Returns:
    list of 8 (u32[M] row in [0, T), f32[M] weight) pairs; corner c is offset
    by bit a of c along axis a. The weights of a point sum to 1.
  """
  resolution, strides = spec
  pos = x * np.float32(resolution)
  # x = 1 gives pos = resolution, the far vertex: keep it in the last cell
  # (with fraction 1) so that the upper corner is still a vertex.
  lower = jnp.minimum(jnp.floor(pos), np.float32(resolution - 1))
  frac = pos - lower
  lower = lower.astype(jnp.uint32)  # x was clipped to [0, 1]: lower >= 0
  power_of_two = table_size & (table_size - 1) == 0
  corners = []
  for corner in range(8):
    bits = [(corner >> axis) & 1 for axis in range(3)]
    vertex = [lower[:, axis] + np.uint32(bits[axis]) for axis in range(3)]
    weight = None
    for axis in range(3):
      w = frac[:, axis] if bits[axis] else 1.0 - frac[:, axis]
      weight = w if weight is None else weight * w
    if strides is not None:
      index = (vertex[0] * np.uint32(strides[0])
               + vertex[1] * np.uint32(strides[1])
               + vertex[2] * np.uint32(strides[2]))
    else:
      # uint32 products wrap around, as the hash intends.
      index = (vertex[0] ^ (vertex[1] * np.uint32(_HASH_PRIMES[1]))
               ^ (vertex[2] * np.uint32(_HASH_PRIMES[2])))
      if power_of_two:
        index = index & np.uint32(table_size - 1)
      else:
        index = index % np.uint32(table_size)
    corners.append((index, weight))
  return corners


def _lookup_forward(x: jnp.ndarray, tables: jnp.ndarray,
                    specs: tuple) -> jnp.ndarray:
  """Interpolated features of every level, concatenated (level-major).

  Args:
    x: f32[M, 3], points in [0, 1]^3.
    tables: f[L, T, F], one table per level.
    specs: L (resolution, strides) pairs, see _corners.

  Returns:
    f32[M, L * F].
  """
  table_size = tables.shape[1]
  dtype = jnp.result_type(x.dtype, tables.dtype)
  levels = []
  for level, spec in enumerate(specs):
    table = tables[level]
    acc = None
    for index, weight in _corners(x, spec, table_size):
      # Rows are in range by construction; 'clip' is XLA's native gather
      # semantics, so it costs nothing and needs no masking.
      rows = table.at[index].get(mode='clip').astype(dtype)
      term = rows * weight[:, None].astype(dtype)
      acc = term if acc is None else acc + term
    levels.append(acc)
  return jnp.concatenate(levels, axis=-1)


def _lookup_fwd(x, tables, specs):
  return _lookup_forward(x, tables, specs), (x, tables)


def _lookup_bwd(specs, residuals, cotangent):
  """Table gradient: one scatter-add per level of all 8 corners' w * g."""
  x, tables = residuals
  num_levels, table_size, features = tables.shape
  acc_dtype = jnp.promote_types(tables.dtype, jnp.float32)
  grad = jnp.zeros((num_levels * table_size, features), acc_dtype)
  for level, spec in enumerate(specs):
    corners = _corners(x, spec, table_size)
    rows = jnp.stack([index for index, _ in corners], axis=-1)
    rows = rows.astype(jnp.int32) + level * table_size  # [M, 8]
    weights = jnp.stack([weight for _, weight in corners], axis=-1)
    g = cotangent[:, level * features:(level + 1) * features]
    updates = weights[..., None] * g[:, None, :].astype(acc_dtype)
    grad = grad.at[rows].add(updates)
  grad = grad.reshape(tables.shape).astype(tables.dtype)
  # The gradient w.r.t. x flows through the weights only; differentiating
  # the forward with the tables held fixed needs no scatter. XLA drops this
  # when the caller does not use it.
  _, x_vjp = jax.vjp(lambda y: _lookup_forward(y, tables, specs), x)
  (grad_x,) = x_vjp(cotangent)
  return grad_x, grad


_lookup = jax.custom_vjp(_lookup_forward, nondiff_argnums=(2,))
_lookup.defvjp(_lookup_fwd, _lookup_bwd)


def _check_points(x: jnp.ndarray, table_rows: int) -> None:
  if x.shape[-1:] != (3,):
    raise ValueError(f'points must have shape [..., 3], got {x.shape}')
  if table_rows >= 2**31:  # the backward indexes all rows with int32
    raise ValueError(f'tables too large: {table_rows} rows in all')


def hash_grid_encode(x: jnp.ndarray, tables: jnp.ndarray,
                     resolutions: tuple[int, ...]) -> jnp.ndarray:
  """Multiresolution hash encoding (instant-ngp) of points in the unit cube.

  Level l is a grid of N_l cells per axis (vertices at integer coordinates
  0..N_l of x * N_l). Each vertex has a row of tables[l]: the one-to-one
  index i + j (N_l + 1) + k (N_l + 1)^2 when (N_l + 1)^3 <= T, else the
  spatial hash (i * 1 xor j * 2654435761 xor k * 805459861) mod T in uint32
  arithmetic. A point's features at level l are the trilinear interpolation
  of its cell's 8 rows. Differentiable w.r.t. tables and x (reverse mode).

  Args:
    x: f32[..., 3], points in [0, 1]^3; clipped to it.
    tables: f32[L, T, F], T rows of F features per level (bf16 works too:
      features are interpolated in float32).
    resolutions: L ints, N_l, static (e.g. from hash_grid_resolutions).

  Returns:
    f32[..., L * F], level-major: out[..., l*F:(l+1)*F] is level l.
  """
  num_levels, table_size, features = tables.shape
  resolutions = tuple(int(n) for n in resolutions)
  if len(resolutions) != num_levels:
    raise ValueError(f'{len(resolutions)} resolutions for {num_levels} '
                     'tables')
  if min(resolutions) < 1:
    raise ValueError(f'resolutions must be >= 1, got {resolutions}')
  _check_points(x, num_levels * table_size)
  specs = tuple(_hash_level_spec(n, table_size) for n in resolutions)
  points = jnp.clip(x.reshape(-1, 3), 0.0, 1.0)
  out = _lookup(points, tables, specs)
  return out.reshape(x.shape[:-1] + (num_levels * features,))


def dense_grid_encode(x: jnp.ndarray, grid: jnp.ndarray) -> jnp.ndarray:
  """Trilinear interpolation of a dense grid spanning the unit cube.

  grid[i, j, k] is the value at vertex (i, j, k) / (R - 1): the first axis
  runs along x, the last along z. Linear functions of x are reproduced
  exactly (up to float rounding).

  Args:
    x: f32[..., 3], points in [0, 1]^3; clipped to it.
    grid: f32[R, R, R, C], R >= 2 vertices per axis.

  Returns:
    f32[..., C].
  """
  size = grid.shape[0]
  if grid.ndim != 4 or grid.shape[1:3] != (size, size) or size < 2:
    raise ValueError(f'grid must have shape [R, R, R, C], R >= 2, got '
                     f'{grid.shape}')
  channels = grid.shape[-1]
  _check_points(x, size**3)
  # One level of R - 1 cells per axis, row (i R + j) R + k (x slowest).
  specs = ((size - 1, (size * size, size, 1)),)
  table = grid.reshape(1, size**3, channels)
  points = jnp.clip(x.reshape(-1, 3), 0.0, 1.0)
  out = _lookup(points, table, specs)
  return out.reshape(x.shape[:-1] + (channels,))


def coarse_to_fine(num_levels: int, progress: jnp.ndarray) -> jnp.ndarray:
  """BARF's coarse-to-fine weights of encoding levels, f32[num_levels].

  With alpha = progress * num_levels, level l has weight
  (1 - cos(pi * clip(alpha - l, 0, 1))) / 2: levels fade in one after
  another, and from progress 1 every weight is 1. Level 0 is kept at 1
  throughout so the field always has features to fit (as BARF keeps the raw
  input).

  Args:
    num_levels: int, L.
    progress: f32[], the warm-up's progress (step / warm-up steps).
  """
  alpha = jnp.clip(progress, 0.0, 1.0) * num_levels
  ramp = jnp.clip(alpha - jnp.arange(num_levels, dtype=jnp.float32), 0.0,
                  1.0)
  weights = 0.5 * (1.0 - jnp.cos(jnp.pi * ramp))
  return weights.at[0].set(1.0)
