"""Tests of nerf_jax.cameras.camera (intrinsics, pinhole rays and orbit
poses) and nerf_jax.cameras.distortion (lens distortion)."""

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

from nerf_jax.cameras import camera, distortion  # pylint: disable=g-import-not-at-top

ATOL = 1e-5
RTOL = 1e-5


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
  """A uniformly random rotation (det +1) via QR of a Gaussian matrix."""
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q = q * np.sign(np.diag(r))[None, :]
  if np.linalg.det(q) < 0:
    q[:, 0] = -q[:, 0]
  return q


def _random_pose(rng: np.random.Generator) -> np.ndarray:
  c2w = np.eye(4)
  c2w[:3, :3] = _random_rotation(rng)
  c2w[:3, 3] = rng.uniform(-3.0, 3.0, size=3)
  return c2w


def _reference_rays(fx, fy, cx, cy, width, height, c2w):
  """Independent float64 pinhole model: x right, y up, camera looks down -z.

  Pixel (i, j) has its centre at image coordinates (u, v) = (j + .5, i + .5);
  u grows right and v grows down, so camera y = -(v - cy) / fy.
  """
  dirs = np.zeros((height, width, 3))
  origins = np.zeros((height, width, 3))
  rot, centre = np.asarray(c2w, np.float64)[:3, :3], np.asarray(
      c2w, np.float64)[:3, 3]
  for i in range(height):
    for j in range(width):
      d_cam = np.array([(j + 0.5 - cx) / fx, -(i + 0.5 - cy) / fy, -1.0])
      dirs[i, j] = rot @ d_cam
      origins[i, j] = centre
  viewdirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
  return origins, dirs, viewdirs


def _assert_rotation(rot: np.ndarray, atol: float = 1e-5) -> None:
  rot = np.asarray(rot, np.float64)
  np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=atol, rtol=0)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=atol, rtol=0)


# ------------------------------------------------------------------ intrinsics


@pytest.mark.parametrize('focal,width,height', [(50.0, 40, 30), (111.5, 7, 13)])
def test_from_focal_is_square_and_centred(focal, width, height):
  intr = camera.Intrinsics.from_focal(focal, width, height)
  assert (intr.width, intr.height) == (width, height)
  np.testing.assert_allclose([intr.fx, intr.fy, intr.cx, intr.cy],
                             [focal, focal, width / 2.0, height / 2.0],
                             atol=0, rtol=0)


@pytest.mark.parametrize('factor,new_size', [(0.5, (20, 15)), (2.0, (80, 60)),
                                             (0.25, (10, 7))])
def test_scaled_scales_every_length(factor, new_size):
  intr = camera.Intrinsics(fx=70.0, fy=55.0, cx=17.0, cy=13.0, width=40,
                           height=30)
  out = intr.scaled(factor)
  assert (out.width, out.height) == new_size
  sx, sy = new_size[0] / 40, new_size[1] / 30
  np.testing.assert_allclose([out.fx, out.fy, out.cx, out.cy],
                             [70.0 * sx, 55.0 * sy, 17.0 * sx, 13.0 * sy],
                             atol=1e-9, rtol=1e-9)


def test_scaled_keeps_the_field_of_view():
  # The image corners (0, 0) and (W, H) must map to the same camera directions.
  intr = camera.Intrinsics(fx=70.0, fy=55.0, cx=17.0, cy=13.0, width=40,
                           height=30)
  for factor in (0.5, 2.0, 3.0):
    out = intr.scaled(factor)
    for u, v in ((0.0, 0.0), (intr.width, intr.height)):
      s_u, s_v = u * out.width / intr.width, v * out.height / intr.height
      np.testing.assert_allclose(
          [(s_u - out.cx) / out.fx, (s_v - out.cy) / out.fy],
          [(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy],
          atol=1e-9, rtol=1e-9)


# ---------------------------------------------------------------------- rays


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_generate_rays_matches_numpy_pinhole(seed):
  rng = np.random.default_rng(seed)
  width, height = int(rng.integers(3, 9)), int(rng.integers(3, 9))
  fx, fy = rng.uniform(3.0, 12.0, size=2)  # fx != fy
  cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
  c2w = _random_pose(rng)
  intr = camera.Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=width,
                           height=height)
  rays = camera.generate_rays(intr, c2w.astype(np.float32), 0.5, 4.0)
  origins, dirs, viewdirs = _reference_rays(fx, fy, cx, cy, width, height, c2w)
  assert rays.directions.shape == (height, width, 3)
  assert rays.near.shape == rays.far.shape == (height, width, 1)
  np.testing.assert_allclose(rays.origins, origins, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(rays.directions, dirs, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(rays.viewdirs, viewdirs, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(rays.near, 0.5, atol=0, rtol=0)
  np.testing.assert_allclose(rays.far, 4.0, atol=0, rtol=0)


@pytest.mark.parametrize('seed', [3, 4])
def test_pixel_directions_numpy_path_matches_reference(seed):
  rng = np.random.default_rng(seed)
  fx, fy, cx, cy = rng.uniform(2.0, 9.0, size=4)
  intr = camera.Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=5, height=4)
  rows = rng.integers(0, 4, size=(6,))
  cols = rng.integers(0, 5, size=(6,))
  expected = np.stack([(cols + 0.5 - cx) / fx, -(rows + 0.5 - cy) / fy,
                       -np.ones(6)], axis=-1)
  for xnp in (np, jnp):
    got = camera.pixel_directions(intr, rows, cols, xnp=xnp)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize('seed', [5, 6, 7])
def test_principal_point_ray_is_forward_axis(seed):
  rng = np.random.default_rng(seed)
  width, height = 9, 7
  i0, j0 = int(rng.integers(0, height)), int(rng.integers(0, width))
  # Principal point exactly on the centre of pixel (i0, j0), off-centre.
  intr = camera.Intrinsics(fx=rng.uniform(4, 9), fy=rng.uniform(4, 9),
                           cx=j0 + 0.5, cy=i0 + 0.5, width=width, height=height)
  c2w = _random_pose(rng)
  rays = camera.generate_rays(intr, c2w.astype(np.float32), 1.0, 2.0)
  forward = -c2w[:3, 2]
  np.testing.assert_allclose(rays.directions[i0, j0], forward, atol=ATOL,
                             rtol=RTOL)
  np.testing.assert_allclose(rays.viewdirs[i0, j0], forward, atol=ATOL,
                             rtol=RTOL)


@pytest.mark.parametrize('seed', [8, 9])
def test_viewdirs_unit_depth_axis_and_origins(seed):
  rng = np.random.default_rng(seed)
  intr = camera.Intrinsics(fx=rng.uniform(2, 6), fy=rng.uniform(2, 6),
                           cx=rng.uniform(0, 6), cy=rng.uniform(0, 5), width=6,
                           height=5)
  c2w = _random_pose(rng)
  rays = camera.generate_rays(intr, c2w.astype(np.float32), 1.0, 2.0)
  np.testing.assert_allclose(np.linalg.norm(rays.viewdirs, axis=-1), 1.0,
                             atol=1e-6, rtol=0)
  # Back in camera space every direction has z = -1: t is camera-axis depth.
  dirs_cam = np.asarray(rays.directions, np.float64) @ c2w[:3, :3]
  np.testing.assert_allclose(dirs_cam[..., 2], -1.0, atol=ATOL, rtol=0)
  # So the point at t lies at depth t in front of the camera.
  t = rng.uniform(0.5, 5.0)
  points = np.asarray(rays.origins) + t * np.asarray(rays.directions)
  depth = -((points - c2w[:3, 3]) @ c2w[:3, 2])
  np.testing.assert_allclose(depth, t, atol=1e-4, rtol=1e-5)
  np.testing.assert_allclose(rays.origins,
                             np.broadcast_to(c2w[:3, 3], (5, 6, 3)), atol=ATOL,
                             rtol=RTOL)


def test_generate_rays_accepts_3x4_pose():
  rng = np.random.default_rng(10)
  c2w = _random_pose(rng)
  intr = camera.Intrinsics.from_focal(4.0, 4, 3)
  a = camera.generate_rays(intr, c2w.astype(np.float32), 1.0, 2.0)
  b = camera.generate_rays(intr, c2w[:3].astype(np.float32), 1.0, 2.0)
  np.testing.assert_allclose(a.directions, b.directions, atol=0, rtol=0)
  np.testing.assert_allclose(a.origins, b.origins, atol=0, rtol=0)


def test_image_corners_point_up_left_and_down_right():
  # Identity pose: the top-left pixel looks left (x < 0) and up (y > 0).
  intr = camera.Intrinsics.from_focal(5.0, 6, 4)
  rays = camera.generate_rays(intr, np.eye(4, dtype=np.float32), 1.0, 2.0)
  top_left, bottom_right = np.asarray(rays.directions[0, 0]), np.asarray(
      rays.directions[-1, -1])
  assert top_left[0] < 0 and top_left[1] > 0
  assert bottom_right[0] > 0 and bottom_right[1] < 0


def test_generate_rays_jits_with_traced_pose():
  rng = np.random.default_rng(11)
  intr = camera.Intrinsics(fx=5.0, fy=6.0, cx=2.2, cy=1.7, width=5, height=4)
  traces = []

  @jax.jit
  def rays_of(c2w):
    traces.append(None)
    return camera.generate_rays(intr, c2w, 0.5, 3.0)

  for _ in range(2):
    c2w = _random_pose(rng)
    got = rays_of(jnp.asarray(c2w, jnp.float32))
    origins, dirs, viewdirs = _reference_rays(5.0, 6.0, 2.2, 1.7, 5, 4, c2w)
    np.testing.assert_allclose(got.directions, dirs, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got.viewdirs, viewdirs, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(got.origins, origins, atol=ATOL, rtol=RTOL)
  assert len(traces) == 1


# --------------------------------------------------------------------- poses


@pytest.mark.parametrize('theta,phi,radius', [(0.0, -30.0, 4.0),
                                              (37.0, -10.0, 2.5),
                                              (-120.0, 20.0, 6.0),
                                              (200.0, -75.0, 1.0)])
def test_pose_spherical_orbits_and_looks_at_origin(theta, phi, radius):
  c2w = camera.pose_spherical(theta, phi, radius).astype(np.float64)
  assert c2w.shape == (4, 4)
  np.testing.assert_allclose(c2w[3], [0, 0, 0, 1], atol=0, rtol=0)
  _assert_rotation(c2w[:3, :3])
  centre = c2w[:3, 3]
  np.testing.assert_allclose(np.linalg.norm(centre), radius, atol=1e-5,
                             rtol=1e-5)
  # The forward axis (-z column) points from the centre to the origin.
  np.testing.assert_allclose(-c2w[:3, 2], -centre / radius, atol=1e-5,
                             rtol=1e-5)
  # No roll: the camera's x axis is horizontal, its y axis points up-ish.
  np.testing.assert_allclose(c2w[2, 0], 0.0, atol=1e-6, rtol=0)
  assert c2w[2, 1] > 0


@pytest.mark.parametrize('theta', [0.0, 45.0, 160.0])
def test_pose_spherical_negative_phi_is_above(theta):
  radius = 3.0
  c2w = camera.pose_spherical(theta, -30.0, radius).astype(np.float64)
  centre = c2w[:3, 3]
  assert centre[2] > 0
  elevation = np.degrees(np.arcsin(centre[2] / radius))
  np.testing.assert_allclose(elevation, 30.0, atol=1e-4, rtol=0)
  # Looking down at the origin.
  assert -c2w[2, 2] < 0


@pytest.mark.parametrize('phi,theta1,theta2', [(-30.0, 0.0, 50.0),
                                               (15.0, -80.0, 100.0),
                                               (-60.0, 10.0, 11.0)])
def test_pose_spherical_theta_rotates_about_world_up(phi, theta1, theta2):
  p1 = camera.pose_spherical(theta1, phi, 2.0).astype(np.float64)
  p2 = camera.pose_spherical(theta2, phi, 2.0).astype(np.float64)
  # The map from pose 1 to pose 2 is a rotation about world z ...
  m = p2[:3, :3] @ p1[:3, :3].T
  np.testing.assert_allclose(m[2], [0, 0, 1], atol=1e-5, rtol=0)
  np.testing.assert_allclose(m[:, 2], [0, 0, 1], atol=1e-5, rtol=0)
  np.testing.assert_allclose(m @ p1[:3, 3], p2[:3, 3], atol=1e-5, rtol=0)
  # ... by the azimuth difference (in either sense).
  angle = np.degrees(np.arctan2(m[1, 0], m[0, 0]))
  delta = theta2 - theta1
  wrapped = min(abs((angle + delta + 180) % 360 - 180),
                abs((angle - delta + 180) % 360 - 180))
  np.testing.assert_allclose(wrapped, 0.0, atol=1e-3, rtol=0)
  np.testing.assert_allclose(p1[2, 3], p2[2, 3], atol=1e-6, rtol=0)


@pytest.mark.parametrize('seed', [12, 13, 14])
def test_look_at_frame(seed):
  rng = np.random.default_rng(seed)
  eye = rng.uniform(-4.0, 4.0, size=3)
  target = rng.uniform(-1.0, 1.0, size=3)
  c2w = camera.look_at(eye, target).astype(np.float64)
  _assert_rotation(c2w[:3, :3])
  np.testing.assert_allclose(c2w[:3, 3], eye, atol=1e-6, rtol=1e-6)
  forward = (target - eye) / np.linalg.norm(target - eye)
  np.testing.assert_allclose(-c2w[:3, 2], forward, atol=1e-5, rtol=1e-5)
  # Right-handed: x cross y = z.
  np.testing.assert_allclose(np.cross(c2w[:3, 0], c2w[:3, 1]), c2w[:3, 2],
                             atol=1e-5, rtol=0)
  # Upright: x is horizontal, y has a positive world-up component.
  np.testing.assert_allclose(c2w[2, 0], 0.0, atol=1e-6, rtol=0)
  assert c2w[2, 1] > 0


def test_look_at_centre_ray_hits_target():
  rng = np.random.default_rng(15)
  eye = np.array([3.0, -2.0, 1.5])
  target = rng.uniform(-0.5, 0.5, size=3)
  c2w = camera.look_at(eye, target)
  intr = camera.Intrinsics.from_focal(8.0, 5, 5)  # pixel (2, 2) is the centre
  rays = camera.generate_rays(intr, c2w, 0.1, 10.0)
  o, d = np.asarray(rays.origins[2, 2]), np.asarray(rays.viewdirs[2, 2])
  s = np.dot(target - o, d)
  assert s > 0
  np.testing.assert_allclose(o + s * d, target, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------
# Per-view cameras and the ray caster.

LENS = np.array([-0.12, 0.03, 1.5e-3, -8e-4], np.float32)  # fox-like k1 k2 p1 p2


def _random_cameras(rng, n, distortion=None, ndc=False):
  intrinsics = [camera.Intrinsics(fx=float(rng.uniform(40, 90)),
                                  fy=float(rng.uniform(40, 90)),
                                  cx=float(rng.uniform(20, 40)),
                                  cy=float(rng.uniform(15, 30)),
                                  width=int(rng.integers(40, 80)),
                                  height=int(rng.integers(30, 60)))
                for _ in range(n)]
  poses = np.stack([camera.pose_spherical(float(rng.uniform(0, 360)),
                                          float(rng.uniform(-60, 0)), 4.0)
                    for _ in range(n)])
  return camera.Cameras.create(poses, intrinsics, distortion, ndc), intrinsics


@pytest.mark.parametrize('xnp', [np, jnp])
def test_cast_rays_of_pinholes_equal_the_per_view_reference(xnp):
  """Views of different sizes and focal lengths in one batch."""
  rng = np.random.default_rng(3)
  cams, intrinsics = _random_cameras(rng, 4)
  view = rng.integers(0, 4, 200)
  rows = np.array([rng.integers(0, intrinsics[v].height) for v in view])
  cols = np.array([rng.integers(0, intrinsics[v].width) for v in view])
  got = camera.cast_rays(cams, view, rows, cols, 2.0, 6.0, xnp=xnp)
  for i in range(0, 200, 17):
    k = intrinsics[view[i]]
    d = camera.pixel_directions(k, rows[i], cols[i], xnp=np)
    ref = camera.camera_rays(cams.poses[view[i]], d, 2.0, 6.0, xnp=np)
    for field in ('origins', 'directions', 'viewdirs', 'near', 'far'):
      np.testing.assert_allclose(np.asarray(getattr(got, field))[i],
                                 getattr(ref, field), rtol=1e-5, atol=1e-6)


def test_undistort_inverts_distort():
  rng = np.random.default_rng(4)
  xy = rng.uniform(-0.7, 0.7, (1000, 2)).astype(np.float32)
  for xnp in (np, jnp):
    distorted = distortion.distort(xy, LENS, xnp=xnp)
    assert np.abs(np.asarray(distorted) - xy).max() > 1e-2  # a real lens
    back = distortion.undistort(distorted, LENS, xnp=xnp)
    np.testing.assert_allclose(np.asarray(back), xy, atol=2e-6)


# The fox's camera (1080x1920, a phone) and a 94-degree wide angle.
FOX = dict(fx=1375.52, fy=1374.49, cx=554.558, cy=965.268, width=1080,
           height=1920)
WIDE = dict(fx=300.0, fy=300.0, cx=320.0, cy=240.0, width=640, height=480)


def test_real_lenses_are_plausible_and_undistort_converges():
  for lens, k in (((0.0578421, -0.0805099, -0.000980296, 0.00015575), FOX),
                  (LENS, FOX), ((-0.3, 0.1, 0.0, 0.0), WIDE),
                  ((-0.4, 0.15, 1e-3, -1e-3), WIDE), ((0.3, 0.0, 0, 0), WIDE)):
    assert distortion.distortion_problem(lens, **k) == '', lens
    assert distortion.undistort_error_px(lens, **k) < 1e-3


def test_undistort_that_diverges_is_measured_and_refused():
  """Strong decentring: Newton's steps run away from the image's corners
  (the radial profile alone is fine, so only convergence catches it)."""
  lens = (0.0, 0.0, 0.1, 0.1)
  assert distortion.undistort_error_px(lens, **FOX) > 1e3
  problem = distortion.distortion_problem(lens, **FOX)
  assert problem.startswith("p1=0.1, p2=0.1: undistorting the image's "
                            'pixels does not converge (off by up to ')
  assert problem.endswith('pixels, at most 0.01); not a real lens')


@pytest.mark.parametrize('lens, expected', [
    ((1e6, 0, 0, 0), 'k1=1e+06 is implausible for a real lens (at most 100 '
     'in magnitude)'),
    ((0, 0, -0.5, 0), 'p1=-0.5 is implausible'),
    ((np.inf, 0, 0, 0), 'k1=inf must be finite'),
    # Rays past radius 0.58 would point back towards the axis.
    ((-1.0, 0, 0, 0), 'k1=-1, k2=0: the lens folds the image over at radius '
     '0.578 (normalised), inside the image (its farthest pixel is at 1.33)'),
    ((-50.0, 0, 0, 0), 'k1=-50, k2=0: the lens folds the image over at '
     'radius 0.0825'),
    # A point at radius 0.34 would be imaged 4.5 times as far out.
    ((30.0, 0, 0, 0), 'k1=30, k2=0: the lens would scale distances from '
     'the principal point by 4.'),
])
def test_implausible_lenses_are_named(lens, expected):
  assert distortion.distortion_problem(lens, **WIDE).startswith(expected)


def test_distorted_rays_project_back_onto_their_pixels():
  """A ray cast through a pixel of a distorting lens, projected through the
  same lens (pinhole, then distort), lands on that pixel's centre."""
  rng = np.random.default_rng(5)
  cams, intrinsics = _random_cameras(rng, 3, distortion=LENS)
  view = rng.integers(0, 3, 300)
  rows = np.array([rng.integers(0, intrinsics[v].height) for v in view])
  cols = np.array([rng.integers(0, intrinsics[v].width) for v in view])
  rays = camera.cast_rays(cams, view, rows, cols, 2.0, 6.0)
  rotation = np.asarray(cams.poses)[view, :3, :3]
  d_cam = np.einsum('nji,nj->ni', rotation, np.asarray(rays.directions))
  xy = np.stack([d_cam[:, 0] / -d_cam[:, 2], -d_cam[:, 1] / -d_cam[:, 2]], -1)
  uv = distortion.distort(xy, LENS, xnp=np)
  u = uv[:, 0] * np.asarray(cams.fx)[view] + np.asarray(cams.cx)[view]
  v = uv[:, 1] * np.asarray(cams.fy)[view] + np.asarray(cams.cy)[view]
  np.testing.assert_allclose(u, cols + 0.5, atol=2e-3)
  np.testing.assert_allclose(v, rows + 0.5, atol=2e-3)
  # And the lens matters: a pinhole puts these rays elsewhere.
  assert cams.distorted
  pinhole = camera.cast_rays(cams.replace(distorted=False), view, rows, cols,
                             2.0, 6.0)
  assert np.abs(np.asarray(pinhole.viewdirs - rays.viewdirs)).max() > 1e-2


def test_ndc_rays_match_the_closed_form():
  """A point s along a world ray maps to NDC (ax x/z, ay y/z, 1 + 2n/z), and
  the NDC ray reaches it at t' = 1 - z0/z (z0: the origin moved to the near
  plane); t' in [0, 1) covers the near plane to infinity."""
  rng = np.random.default_rng(6)
  k = camera.Intrinsics.from_focal(50.0, 64, 48)
  poses = np.stack([np.eye(4, dtype=np.float32)] * 2)
  poses[1, :3, 3] = [0.1, -0.05, 0.2]
  cams = camera.Cameras.create(poses, k, ndc=True)
  view = rng.integers(0, 2, 50)
  rows, cols = rng.integers(0, 48, 50), rng.integers(0, 64, 50)
  world = camera.cast_rays(cams.replace(ndc=False), view, rows, cols, 0.0, 1.0,
                           xnp=np)
  ndc = camera.cast_rays(cams, view, rows, cols, 0.0, 1.0, xnp=np)
  np.testing.assert_allclose(ndc.near, 0.0)
  np.testing.assert_allclose(ndc.far, 1.0)
  np.testing.assert_allclose(ndc.viewdirs, world.viewdirs, atol=1e-6)
  near_plane = 1.0
  o, d = world.origins, world.directions
  z0 = -near_plane  # origins are moved onto z = -near
  for s in (1.5, 3.0, 20.0):
    p = o + s * d
    expected = np.stack([-2 * 50.0 / 64 * p[:, 0] / p[:, 2],
                         -2 * 50.0 / 48 * p[:, 1] / p[:, 2],
                         1 + 2 * near_plane / p[:, 2]], -1)
    t = 1.0 - z0 / p[:, 2]
    np.testing.assert_allclose(ndc.origins + t[:, None] * ndc.directions,
                               expected, rtol=1e-4, atol=1e-5)
    assert np.all((t >= 0) & (t < 1))


def test_cameras_create_checks_shapes_and_shares_intrinsics():
  k = camera.Intrinsics.from_focal(30.0, 20, 10)
  cams = camera.Cameras.create(np.zeros((3, 3, 4)), k)
  assert len(cams) == 3 and cams.poses.shape == (3, 4, 4)
  np.testing.assert_array_equal(cams.poses[:, 3], [[0, 0, 0, 1]] * 3)
  assert cams.intrinsics(2) == k
  with pytest.raises(ValueError, match='poses'):
    camera.Cameras.create(np.zeros((3, 4)), k)
  with pytest.raises(ValueError, match='2 intrinsics for 3 poses'):
    camera.Cameras.create(np.zeros((3, 4, 4)), [k, k])


def test_distorted_whole_image_rays_on_device_equal_numpy():
  """A whole image through a distorting lens, on device (the shape that
  hung XLA:CPU when the Newton steps were unrolled) and in NumPy."""
  k = camera.Intrinsics.from_focal(20.0, 24, 24)
  cams = camera.Cameras.create(camera.pose_spherical(30.0, -20.0, 4.0)[None],
                               k, LENS)
  rows, cols = np.meshgrid(np.arange(24), np.arange(24), indexing='ij')
  view = np.zeros_like(rows)
  on_device = jax.jit(camera.cast_rays)(cams, view, rows, cols, 2.0, 6.0)
  reference = camera.cast_rays(cams, view, rows, cols, 2.0, 6.0, xnp=np)
  assert on_device.origins.shape == (24, 24, 3)
  np.testing.assert_allclose(on_device.viewdirs, reference.viewdirs, atol=1e-5)


def test_to_4x4_adds_the_bottom_row():
  p = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  out = camera.to_4x4(p)
  assert out.shape == (2, 4, 4)
  np.testing.assert_array_equal(out[:, :3], p)
  np.testing.assert_array_equal(out[:, 3], [[0, 0, 0, 1]] * 2)
