"""Pose corrections: the math of camera-pose refinement.

A training view's pose is refined by a small rigid correction in its own
camera frame, ``pose' = pose @ [[R, t], [0, 1]]``: R rotates the camera
about its centre, t moves the centre along the camera's own axes. The
correction is parameterised as SO(3) x R^3 (nerfstudio's default): a
rotation vector (axis times angle, radians) and a translation; both zero
mean no change. ``correct_poses`` applies them differentiably (jnp).

Refinement fixes only what the photos say: a whole capture may drift
rigidly while every view's correction is learned. ``rigid_alignment``
finds that drift (the rotation and translation that best map the given
camera centres onto the refined ones) so that cameras that were not refined
(held-out views) can be moved with the training views.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def skew(v):
  """f[..., 3, 3] cross-product matrices of f[..., 3] vectors (jnp)."""
  x, y, z = v[..., 0], v[..., 1], v[..., 2]
  zero = jnp.zeros_like(x)
  return jnp.stack([jnp.stack([zero, -z, y], -1),
                    jnp.stack([z, zero, -x], -1),
                    jnp.stack([-y, x, zero], -1)], -2)


def so3_exp(omega: jnp.ndarray) -> jnp.ndarray:
  """Rotation matrices f32[..., 3, 3] of rotation vectors f32[..., 3].

  Rodrigues' formula, R = I + a K + b K^2 with a = sin(theta)/theta and
  b = (1 - cos(theta))/theta^2, with their Taylor series below a small angle
  so that the value and the gradient are exact at zero.
  """
  theta2 = jnp.sum(omega ** 2, axis=-1)
  small = theta2 < 1e-8
  safe = jnp.where(small, 1.0, theta2)
  theta = jnp.sqrt(safe)
  a = jnp.where(small, 1.0 - theta2 / 6.0, jnp.sin(theta) / theta)
  b = jnp.where(small, 0.5 - theta2 / 24.0, (1.0 - jnp.cos(theta)) / safe)
  k = skew(omega)
  eye = jnp.eye(3, dtype=omega.dtype)
  return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def correction_matrices(deltas: jnp.ndarray) -> jnp.ndarray:
  """f32[..., 4, 4] rigid transforms of corrections f32[..., 6] (rotation
  vector, then translation)."""
  rotation = so3_exp(deltas[..., :3])
  top = jnp.concatenate([rotation, deltas[..., 3:, None]], axis=-1)
  bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], deltas.dtype),
                            deltas.shape[:-1] + (1, 4))
  return jnp.concatenate([top, bottom], axis=-2)


def correct_poses(poses: jnp.ndarray, deltas: jnp.ndarray) -> jnp.ndarray:
  """Camera-to-world poses f32[n, 4, 4] corrected in their camera frames by
  deltas f32[n, 6]: ``poses @ correction_matrices(deltas)``."""
  return poses @ correction_matrices(deltas.astype(poses.dtype))


def rigid_alignment(source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """The rotation and translation that best map points onto others.

  Least squares over the points (Kabsch / Umeyama without scale): minimises
  sum |R source_i + t - target_i|^2.

  Args:
    source, target: f[n, 3], corresponding points (camera centres).

  Returns:
    f64[4, 4], [[R, t], [0, 1]]; the identity for fewer than 3 points or
    points on one line (their rotation is not determined).
  """
  source = np.asarray(source, np.float64)
  target = np.asarray(target, np.float64)
  out = np.eye(4)
  if source.shape[0] < 3:
    return out
  mu_s, mu_t = source.mean(0), target.mean(0)
  s, t = source - mu_s, target - mu_t
  singular = np.linalg.svd(s, compute_uv=False)
  if singular[1] <= 1e-9 * max(singular[0], 1e-30):
    return out
  u, _, vt = np.linalg.svd(t.T @ s)
  sign = np.sign(np.linalg.det(u @ vt)) or 1.0
  rotation = u @ np.diag([1.0, 1.0, sign]) @ vt
  out[:3, :3] = rotation
  out[:3, 3] = mu_t - rotation @ mu_s
  return out


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """f64[...] angles in degrees between rotations f[..., 3, 3] a and b."""
  rel = np.swapaxes(np.asarray(a, np.float64), -1, -2) @ np.asarray(
      b, np.float64)
  cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def perturb_poses(poses: np.ndarray, rng: np.random.Generator,
                  degrees: float, fraction: float) -> np.ndarray:
  """Poses f[n, 4, 4] each turned about its centre by ``degrees`` about a
  random axis and moved by ``fraction`` of its distance from the origin in
  a random direction: imperfect poses of a capture, to test refinement
  against the truth."""
  out = np.array(poses, np.float64)
  axes = rng.normal(size=(len(out), 3))
  axes *= np.radians(degrees) / np.linalg.norm(axes, axis=1, keepdims=True)
  turns = np.asarray(so3_exp(jnp.asarray(axes, jnp.float32)), np.float64)
  steps = rng.normal(size=(len(out), 3))
  steps /= np.linalg.norm(steps, axis=1, keepdims=True)
  distance = np.linalg.norm(out[:, :3, 3], axis=1, keepdims=True)
  out[:, :3, :3] = turns @ out[:, :3, :3]
  out[:, :3, 3] += fraction * distance * steps
  return out.astype(np.asarray(poses).dtype)
