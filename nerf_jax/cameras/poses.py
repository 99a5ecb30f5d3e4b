"""Camera-pose math: normalising real captures.

Captures come in whatever frame their structure-from-motion chose. The loaders
move them into frames where nerf_jax's defaults work:

  * forward-facing (LLFF): the average camera at the origin looking down -z
    (``average_pose`` / ``recenter``), as the NeRF paper does before NDC;
  * object-centric (360 degrees): the point the cameras look at at the
    origin and the cameras' mean up direction along +z (``focus_point`` /
    ``orient_and_center``), so that orbit videos circle the object.

Video paths through such captures (the NeRF paper's spiral, a smooth path
through the training cameras) are in ``paths``.

All functions are NumPy (float64 inside); poses are camera-to-world [n, 4, 4] in OpenGL axes (x right, y up, looking down -z).
"""

from __future__ import annotations

import numpy as np


def normalize(v: np.ndarray) -> np.ndarray:
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def view_matrix(back: np.ndarray, up: np.ndarray,
                position: np.ndarray) -> np.ndarray:
  """The camera-to-world matrix f64[4, 4] of a camera at ``position`` whose
  +z axis (it looks down -z) is ``back`` and whose y axis is as close to
  ``up`` as it can be."""
  z = normalize(np.asarray(back, np.float64))
  x = normalize(np.cross(np.asarray(up, np.float64), z))
  y = np.cross(z, x)
  m = np.eye(4)
  m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, position
  return m


def average_pose(poses: np.ndarray) -> np.ndarray:
  """The mean camera, f64[4, 4]: mean centre, mean viewing axis, mean up."""
  poses = np.asarray(poses, np.float64)
  return view_matrix(poses[:, :3, 2].sum(0), poses[:, :3, 1].sum(0),
                     poses[:, :3, 3].mean(0))


def recenter(poses: np.ndarray) -> tuple:
  """Moves the average camera to the origin, looking down -z.

  Returns:
    (poses f32[n, 4, 4], the world transform f64[4, 4] that was applied on the
    left). Relative poses are unchanged (a rigid transform).
  """
  poses = np.asarray(poses, np.float64)
  transform = np.linalg.inv(average_pose(poses))
  return (transform @ poses).astype(np.float32), transform


def focus_point(poses: np.ndarray) -> np.ndarray:
  """The point nearest to every camera's optical axis (least squares), f64[3].

  For an object-centric capture, the point the cameras look at. Raises
  ValueError when the axes are (nearly) parallel or the point lies behind
  the cameras on average, as in forward-facing captures, where no such
  point is defined.
  """
  poses = np.asarray(poses, np.float64)
  d = normalize(-poses[:, :3, 2])
  o = poses[:, :3, 3]
  projector = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
  a = projector.sum(0)
  b = (projector @ o[:, :, None]).sum(0)[:, 0]
  eigenvalues = np.linalg.eigvalsh(a)
  if eigenvalues[0] < 1e-3 * eigenvalues[-1]:
    raise ValueError('the optical axes are nearly parallel: no focus point')
  point = np.linalg.solve(a, b)
  if np.mean(np.sum((point - o) * d, axis=-1)) <= 0:
    raise ValueError('the optical axes meet behind the cameras')
  return point


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The rotation f64[3, 3] taking the direction ``a`` to ``b`` (shortest
  arc; the half-turn about x or y when they are opposite)."""
  a, b = normalize(np.asarray(a, np.float64)), normalize(
      np.asarray(b, np.float64))
  v, c = np.cross(a, b), float(np.dot(a, b))
  if c < -1.0 + 1e-9:
    axis = np.cross(a, [1.0, 0.0, 0.0])
    if np.linalg.norm(axis) < 1e-6:
      axis = np.cross(a, [0.0, 1.0, 0.0])
    axis = normalize(axis)
    return 2.0 * np.outer(axis, axis) - np.eye(3)
  vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
  return np.eye(3) + vx + vx @ vx / (1.0 + c)


def orient_and_center(poses: np.ndarray, center: np.ndarray,
                      up: np.ndarray | None = None,
                      scale: float = 1.0) -> tuple:
  """Moves ``center`` to the origin, turns ``up`` (default: the cameras'
  mean up vector) to +z and scales by ``scale``.

  Returns:
    (poses f64[n, 4, 4], the similarity f64[4, 4] applied on the left; its
    rotation-scale block is ``scale * R``). Camera axes stay unit length.
  """
  poses = np.asarray(poses, np.float64)
  if up is None:
    up = poses[:, :3, 1].sum(0)
  rotation = (rotation_between(up, [0.0, 0.0, 1.0])
              if np.linalg.norm(up) > 1e-6 else np.eye(3))
  transform = np.eye(4)
  transform[:3, :3] = scale * rotation
  transform[:3, 3] = -scale * rotation @ np.asarray(center, np.float64)
  out = transform @ poses
  out[:, :3, :3] /= scale  # rotations stay rotations
  return out, transform
