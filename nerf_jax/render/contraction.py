"""Scene contraction: all of space in a bounded cube, for unbounded scenes.

The grids of the fast model (hash grid, occupancy grid) span the unit cube
[0, 1]^3; ``to_unit`` maps world points into it and ``from_unit`` back.

A bounded scene maps its box (``aabb``) linearly onto the cube. An
unbounded scene first normalises by its box, u = (x - c) / h (c the box's
centre, h its half size, so the box is [-1, 1]^3), then contracts with the
L-infinity variant of mip-NeRF 360's contraction that nerfacto uses:

  contract(u) = u                                   if |u|_inf <= 1,
              = (2 - 1 / |u|_inf) u / |u|_inf        otherwise,

which keeps the box as it is and maps the rest of space, out to infinity,
into the shell between [-1, 1]^3 and [-2, 2]^3; the unit cube is then
(contract(u) + 2) / 4, the box taking its central half. Distance from the
box shrinks like 1 / |u|, so equal steps in contracted space are equal
steps in disparity far away.

Symbols: aabb f32[2, 3] (rows: min and max corner); points f32[..., 3].
"""

from __future__ import annotations

import jax.numpy as jnp

# Contracted points stay this far inside the cube's faces when mapped back
# (the faces themselves are at infinity).
_FACE_MARGIN = 1e-6


def contract(u: jnp.ndarray) -> jnp.ndarray:
  """f32[..., 3] box-normalised points into [-2, 2]^3 (see the module)."""
  # m >= 1 makes the formula the identity inside the box, with no branch
  # (and a finite gradient at u = 0).
  m = jnp.maximum(jnp.max(jnp.abs(u), axis=-1, keepdims=True), 1.0)
  return (2.0 - 1.0 / m) * u / m


def uncontract(y: jnp.ndarray) -> jnp.ndarray:
  """The inverse of ``contract`` for f32[..., 3] points in (-2, 2)^3."""
  m = jnp.clip(jnp.max(jnp.abs(y), axis=-1, keepdims=True), 1.0,
               2.0 - _FACE_MARGIN)
  # |u|_inf = 1 / (2 - m) where |y|_inf = m > 1; the identity for m = 1.
  return y / (m * (2.0 - m))


def to_unit(points: jnp.ndarray, aabb: jnp.ndarray,
            unbounded: bool = False) -> jnp.ndarray:
  """World points f32[..., 3] in the grids' unit cube coordinates.

  Bounded: (x - min) / (max - min), in [0, 1]^3 inside the box (points
  outside map outside the cube). Unbounded: every point maps into [0, 1]^3.
  """
  lo, hi = aabb[0], aabb[1]
  # A degenerate (zero-width) box axis would divide by zero.
  size = jnp.maximum(hi - lo, 1e-12)
  if not unbounded:
    return (points - lo) / size
  u = (2.0 * points - (lo + hi)) / size
  return (contract(u) + 2.0) / 4.0


def from_unit(unit: jnp.ndarray, aabb: jnp.ndarray,
              unbounded: bool = False) -> jnp.ndarray:
  """Unit-cube coordinates f32[..., 3] back to world points (the inverse of
  ``to_unit``; the cube's faces of an unbounded scene, at infinity, come
  back as very distant points)."""
  lo, hi = aabb[0], aabb[1]
  if not unbounded:
    return lo + unit * (hi - lo)
  u = uncontract(4.0 * unit - 2.0)
  return 0.5 * (lo + hi) + 0.5 * u * (hi - lo)
