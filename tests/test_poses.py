"""Tests of nerf_jax.cameras.poses (capture normalisation) and of the
camera paths through captures (nerf_jax.cameras.paths)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from nerf_jax.cameras import camera  # pylint: disable=g-import-not-at-top
from nerf_jax.cameras import paths, poses


def _random_rotation(rng) -> np.ndarray:
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q *= np.sign(np.diag(r))
  if np.linalg.det(q) < 0:
    q[:, 0] *= -1
  return q


def _random_poses(n, rng) -> np.ndarray:
  out = np.tile(np.eye(4), (n, 1, 1))
  for i in range(n):
    out[i, :3, :3] = _random_rotation(rng)
    out[i, :3, 3] = rng.normal(size=3)
  return out


def _is_rotation(m, atol=1e-5) -> bool:
  return (np.allclose(m @ m.T, np.eye(3), atol=atol)
          and np.isclose(np.linalg.det(m), 1.0, atol=atol))


def test_recenter_keeps_relative_poses_and_centres_the_average_camera():
  rng = np.random.default_rng(0)
  # A forward-facing capture: cameras scattered in front of a wall, all
  # looking roughly the same way.
  base = camera.look_at((3.0, 1.0, 2.0), (3.5, 9.0, 2.5), up=(0, 0, 1))
  p = np.stack([base.astype(np.float64)] * 6)
  p[:, :3, 3] += rng.normal(scale=0.3, size=(6, 3))
  p[:, :3, :3] = [r @ _small_rotation(rng) for r in p[:, :3, :3]]
  out, transform = poses.recenter(p)
  np.testing.assert_allclose(poses.average_pose(out), np.eye(4), atol=1e-5)
  for i in range(6):
    for j in range(6):
      np.testing.assert_allclose(np.linalg.inv(out[i]) @ out[j],
                                 np.linalg.inv(p[i]) @ p[j], atol=1e-4)
  np.testing.assert_allclose(transform @ p, out, atol=1e-5)


def _small_rotation(rng, scale=0.1) -> np.ndarray:
  w = rng.normal(scale=scale, size=3)
  angle = np.linalg.norm(w)
  k = w / angle
  kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def test_focus_point_is_where_the_cameras_look():
  target = np.array([0.3, -1.2, 0.7])
  rng = np.random.default_rng(1)
  eyes = target + rng.normal(size=(9, 3)) * 3.0
  p = np.stack([camera.look_at(e, target, up=(0, 0, 1)) for e in eyes])
  np.testing.assert_allclose(poses.focus_point(p), target, atol=1e-4)
  # Parallel axes (a forward-facing rig) have no focus point.
  parallel = np.tile(np.eye(4), (4, 1, 1))
  parallel[:, 0, 3] = np.arange(4)
  with pytest.raises(ValueError, match='parallel'):
    poses.focus_point(parallel)
  # Cameras looking outwards from a ring: their axes meet behind them.
  outward = np.stack([camera.look_at(target + (e - target), target + 2 * (
      e - target), up=(0, 0, 1)) for e in eyes])
  with pytest.raises(ValueError, match='behind'):
    poses.focus_point(outward)


@pytest.mark.parametrize('a', [(0, 0, 1), (1, 2, 3), (0, 0, -1), (0.1, -1, 0)])
def test_rotation_between_takes_one_direction_to_the_other(a):
  b = np.array([0.3, 0.4, -0.5])
  r = poses.rotation_between(a, b)
  assert _is_rotation(r, 1e-9)
  np.testing.assert_allclose(r @ (np.asarray(a) / np.linalg.norm(a)),
                             b / np.linalg.norm(b), atol=1e-9)


def test_orient_and_center_puts_up_on_z_and_the_centre_at_the_origin():
  rng = np.random.default_rng(2)
  up = np.array([0.2, 0.9, 0.3])
  centre = np.array([1.0, 2.0, -3.0])
  # Cameras on a ring around `centre` whose mean up is `up`.
  ring = np.stack([np.cos(t) * np.cross(up, [1, 0, 0]) + np.sin(t) * np.cross(
      up, np.cross(up, [1, 0, 0])) for t in np.linspace(0, 6, 12)])
  ring = ring / np.linalg.norm(ring, axis=-1, keepdims=True) * 4.0
  p = np.stack([camera.look_at(centre + e, centre, up=up) for e in ring])
  out, transform = poses.orient_and_center(p, centre, scale=0.5)
  np.testing.assert_allclose(poses.normalize(out[:, :3, 1].sum(0)),
                             [0, 0, 1], atol=1e-5)
  np.testing.assert_allclose(poses.focus_point(out), 0.0, atol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(out[:, :3, 3], axis=-1), 2.0,
                             atol=1e-4)
  for m in out:
    assert _is_rotation(m[:3, :3])
  np.testing.assert_allclose(transform[:3, :3] @ centre + transform[:3, 3], 0,
                             atol=1e-9)
  del rng


def test_spiral_looks_at_the_focus_point_and_spans_the_cameras():
  rng = np.random.default_rng(3)
  p = np.tile(np.eye(4), (10, 1, 1))
  p[:, :3, 3] = rng.uniform(-1, 1, size=(10, 3)) * [0.5, 0.3, 0.1]
  p, _ = poses.recenter(p)
  path = paths.spiral_poses(p, focus_depth=5.0, num_frames=40)
  assert path.shape == (40, 4, 4)
  average = poses.average_pose(p)
  target = average[:3, 3] - 5.0 * average[:3, 2]
  offsets = np.abs(path[:, :3, 3] - average[:3, 3])
  radii = np.percentile(np.abs(p[:, :3, 3] - average[:3, 3]), 90, axis=0)
  assert np.all(offsets <= radii + 1e-5)
  for m in path:
    assert _is_rotation(m[:3, :3])
    # The optical axis passes through the focus point.
    to_target = target - m[:3, 3]
    axis = -m[:3, 2]
    np.testing.assert_allclose(np.cross(axis, to_target), 0, atol=1e-4)
    assert np.dot(axis, to_target) > 0


def test_smooth_path_runs_from_the_first_camera_to_the_last():
  target = np.zeros(3)
  eyes = np.stack([[4 * np.cos(t), 4 * np.sin(t), 1.0]
                   for t in np.linspace(0, np.pi, 7)])
  eyes += np.random.default_rng(4).normal(scale=0.05, size=eyes.shape)
  p = np.stack([camera.look_at(e, target) for e in eyes])
  path = paths.smooth_path(p, 50)
  assert path.shape == (50, 4, 4)
  np.testing.assert_allclose(path[0], p[0], atol=1e-5)
  np.testing.assert_allclose(path[-1], p[-1], atol=1e-5)
  for m in path:
    assert _is_rotation(m[:3, :3])
  steps = np.linalg.norm(np.diff(path[:, :3, 3], axis=0), axis=-1)
  # Smooth: no frame jumps far more than the average step.
  assert steps.max() < 3.0 * steps.mean()
  # It stays on the cameras' arc (radius 4, looking inwards).
  np.testing.assert_allclose(np.linalg.norm(path[:, :2, 3], axis=-1), 4.0,
                             atol=0.35)
  assert np.all(np.einsum('ni,ni->n', -path[:, :3, 2], -path[:, :3, 3]) > 0)
