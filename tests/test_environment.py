"""Tests of the built-in unbounded scene: the procedural objects inside a
textured ground and dome (nerf_jax/datasets/environment.py)."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from configs import demo  # pylint: disable=g-import-not-at-top
from nerf_jax.cameras import camera
from nerf_jax import datasets
from nerf_jax.datasets import environment
from nerf_jax.datasets import procedural
from nerf_jax.datasets import scene as scene_lib
from nerf_jax.runs import validation

from checks import one_line  # tests/checks.py

R = 40.0  # the dome's radius, as the issue asks: tens of times the object
GROUND = -1.0  # the ground plane: the plinth's bottom face
SIZE = dict(width=16, height=12, num_train=4, num_val=2, num_test=1, seed=5)


@pytest.fixture(scope='module')
def scenes():
  """(bounded, unbounded) scenes with the same cameras."""
  return (procedural.make_scene(**SIZE),
          procedural.make_scene(**SIZE, environment=True))


def _rays(pose: np.ndarray, intrinsics: camera.Intrinsics):
  rows, cols = np.meshgrid(np.arange(intrinsics.height),
                           np.arange(intrinsics.width), indexing='ij')
  dirs = camera.pixel_directions(intrinsics, rows, cols, xnp=np)
  rays = camera.camera_rays(pose, dirs, 2.0, 6.0, xnp=np)
  return (np.asarray(rays.origins, np.float64),
          np.asarray(rays.directions, np.float64))


def _environment_depth(o: np.ndarray, d: np.ndarray) -> np.ndarray:
  """t of the first dome or ground point, solved along unit directions and
  scaled back to d's length (independent of environment.py)."""
  length = np.linalg.norm(d, axis=-1)
  v = d / length[..., None]
  b = np.sum(o * v, -1)
  to_dome = -b + np.sqrt(b * b - (np.sum(o * o, -1) - R * R))
  with np.errstate(divide='ignore'):
    to_ground = np.where(v[..., 2] < 0, (GROUND - o[..., 2]) / v[..., 2],
                         np.inf)
  return np.minimum(to_dome, to_ground) / length


def test_constants_match_the_scene():
  assert environment.DOME_RADIUS == R
  plinth = next(s for s in procedural.SHAPES if s.name == 'plinth')
  assert environment.GROUND_Z == GROUND == plinth.lo[2]
  assert procedural.ENVIRONMENT_FAR >= R + procedural.CAMERA_RADIUS


def test_every_pixel_hits_something_within_near_far(scenes):
  _, unbounded = scenes
  assert unbounded.extent == 'unbounded'
  assert unbounded.aabb == procedural.AABB
  assert (unbounded.near, unbounded.far) == (2.0, procedural.ENVIRONMENT_FAR)
  for split in unbounded.splits.values():
    np.testing.assert_array_equal(split.alphas, 1.0)
    assert np.all(np.isfinite(split.depths))
    assert split.depths.min() > unbounded.near
    assert split.depths.max() < unbounded.far
    assert np.all((split.images >= 0) & (split.images <= 1))


def test_objects_occlude_the_environment(scenes):
  bounded, unbounded = scenes
  for name in bounded.splits:
    a, b = bounded.split(name), unbounded.split(name)
    np.testing.assert_array_equal(a.poses, b.poses)
    hit = a.alphas == 1
    assert hit.any() and (~hit).any()
    np.testing.assert_array_equal(b.depths[hit], a.depths[hit])
    np.testing.assert_array_equal(b.images[hit], a.images[hit])
    # Behind the objects: the emissive colours, all in [0.1, 0.9].
    background = b.images[~hit]
    assert background.min() >= 0.1 and background.max() <= 0.9


def test_background_depth_is_the_first_dome_or_ground_point(scenes):
  _, unbounded = scenes
  # The scene's views, and two of the lowest (10 degrees up), whose upper
  # rows see the dome above the floor's horizon.
  k = unbounded.split('train').intrinsics
  poses = np.concatenate([s.poses for s in unbounded.splits.values()]
                         + [procedural.spiral_poses(2, 30.0, (10.0, 10.0))])
  _, depths, _ = procedural.render_views(poses, k, environment=True)
  _, _, alphas = procedural.render_views(poses, k)
  checked = {'dome': 0, 'ground': 0}
  for pose, depth, keep in zip(poses, depths, alphas == 0):
    o, d = _rays(pose, k)
    o, d, t = o[keep], d[keep], depth[keep].astype(np.float64)
    np.testing.assert_allclose(t, _environment_depth(o, d), rtol=2e-5)
    points = o + t[:, None] * d
    on_ground = np.abs(points[:, 2] - GROUND) < 1e-3
    np.testing.assert_allclose(
        np.linalg.norm(points[~on_ground], axis=-1), R, rtol=1e-5)
    assert np.all(np.linalg.norm(points[on_ground], axis=-1) <= R * 1.00001)
    checked['dome'] += int(np.sum(~on_ground))
    checked['ground'] += int(np.sum(on_ground))
  assert min(checked.values()) > 20, checked  # both surfaces were seen


def test_central_ray_depth_closed_form():
  k = camera.Intrinsics.from_focal(20.0, 17, 13)  # pixel (6, 8) is central
  # Looking outwards and up from (3, 0, 1): the dome at s along the unit
  # axis v solves |e + s v| = R; looking down from (3, 1, 2): the floor at
  # s = (2 - GROUND) / sin(angle below the horizon).
  eye, v = np.array([3.0, 0.0, 1.0]), np.array([1.0, 0.5, 0.3])
  v /= np.linalg.norm(v)
  expected = -eye @ v + np.sqrt((eye @ v) ** 2 - eye @ eye + R * R)
  _, depth, alpha = procedural.render_view(
      camera.look_at(eye, eye + v), k, environment=True)
  np.testing.assert_allclose(depth[6, 8], expected, rtol=1e-5)
  assert alpha[6, 8] == 1.0 and 30 < expected < 40
  eye, v = np.array([3.0, 1.0, 2.0]), np.array([1.0, 0.2, -0.5])
  sin_down = 0.5 / np.linalg.norm(v)
  _, depth, _ = procedural.render_view(
      camera.look_at(eye, eye + v), k, environment=True)
  np.testing.assert_allclose(depth[6, 8], (2.0 - GROUND) / sin_down,
                             rtol=1e-5)


@pytest.mark.parametrize('target', [
    R * np.array([1.0, 0.4, 0.15]) / np.linalg.norm([1.0, 0.4, 0.15]),
    np.array([8.0, -5.0, GROUND])])
def test_colour_is_the_same_from_every_view(target):
  # Two cameras whose optical axes meet at one dome (or ground) point.
  k = camera.Intrinsics.from_focal(20.0, 17, 13)
  colours = []
  for eye in (np.array([3.0, 0.0, 1.0]), np.array([2.0, -4.0, 2.5])):
    rgb, depth, _ = procedural.render_view(
        camera.look_at(eye, target), k, environment=True)
    np.testing.assert_allclose(depth[6, 8], np.linalg.norm(target - eye),
                               rtol=1e-5)
    colours.append(rgb[6, 8])
  np.testing.assert_allclose(colours[0], colours[1], atol=1e-4)
  assert np.all((colours[0] >= 0.1) & (colours[0] <= 0.9))


def test_environment_is_deterministic_and_textured(scenes):
  _, unbounded = scenes
  again = procedural.make_scene(**SIZE, environment=True)
  bounded = scenes[0]
  for name, split in unbounded.splits.items():
    np.testing.assert_array_equal(split.images, again.split(name).images)
    np.testing.assert_array_equal(split.depths, again.split(name).depths)
    for image, miss in zip(split.images, bounded.split(name).alphas == 0):
      # Not a flat colour behind the objects: a pattern to learn.
      assert image[miss].std(axis=0).mean() > 0.03, name
  # Both surfaces vary along and across: colour by longitude and latitude on
  # the dome, by azimuth and distance on the floor.
  lon, lat = np.meshgrid(np.linspace(-np.pi, np.pi, 64),
                         np.deg2rad(np.linspace(0.0, 30.0, 16)))
  dome = R * np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                       np.sin(lat)], -1)
  radius, azimuth = np.meshgrid(np.linspace(2.0, 39.0, 32),
                                np.linspace(-np.pi, np.pi, 64))
  ground = np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth),
                     np.full_like(radius, GROUND)], -1)
  for rgb in (environment.dome_colour(dome), environment.ground_colour(ground)):
    assert rgb.min() >= 0.1 and rgb.max() <= 0.9
    assert np.abs(np.diff(rgb, axis=0)).mean() > 0.01
    assert np.abs(np.diff(rgb, axis=1)).mean() > 0.01


def test_the_bounded_scene_is_unchanged(scenes):
  bounded, _ = scenes
  default = procedural.make_scene(**SIZE, environment=False)
  assert bounded.extent == default.extent == 'bounded'
  assert (bounded.near, bounded.far) == (2.0, 6.0)
  for name in bounded.splits:
    for field in ('images', 'depths', 'alphas', 'poses'):
      np.testing.assert_array_equal(getattr(bounded.split(name), field),
                                    getattr(default.split(name), field))


def test_scene_info_records_the_extent(scenes):
  _, unbounded = scenes
  info = unbounded.info()
  back = scene_lib.SceneInfo.from_dict(json.loads(json.dumps(info.to_dict())))
  assert back == info and back.extent == 'unbounded'
  assert back.far == procedural.ENVIRONMENT_FAR
  assert back.aabb == scene_lib.as_aabb(procedural.AABB)


def test_the_data_config_selects_the_environment():
  config = demo.get_config()
  assert config.data.environment is False
  config.data.update(dict(width=8, height=6, num_train=2, num_val=1,
                          num_test=0, environment=True))
  validation.validate_config(config, num_devices=1)
  scene = datasets.load_scene(config.data)
  assert scene.extent == 'unbounded' and scene.far == 45.0
  assert np.all(scene.split('train').alphas == 1.0)
  config.data.far = 60.0  # a farther plane is kept
  assert datasets.load_scene(config.data).far == 60.0
  config.data.environment = False
  assert datasets.load_scene(config.data).extent == 'bounded'


def test_environment_is_refused_for_other_kinds():
  for kind in ('tiny_npz', 'blender', 'llff', 'transforms'):
    config = demo.get_config()
    config.data.kind, config.data.environment = kind, True
    with pytest.raises(validation.ConfigError) as e:
      validation.validate_config(config, num_devices=1)
    assert (f"data.environment=True does not apply to data.kind='{kind}' "
            '(it is for procedural data)') in one_line(e)
    validation.validate_config(config, num_devices=0)  # a saved run renders
