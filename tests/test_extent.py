"""Tests of the scene extents: what the capture loaders decide (bounded,
forward-facing or unbounded) and the ``data.extent`` override
(nerf_jax/datasets/extent.py)."""

from __future__ import annotations

import pathlib
import sys
import types

import imageio.v3 as iio
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from configs import demo  # pylint: disable=g-import-not-at-top
from nerf_jax.cameras import camera, paths
from nerf_jax import datasets
from nerf_jax.cameras import poses as poses_lib
from nerf_jax.datasets import extent as extent_lib
from nerf_jax.datasets import scene as scene_lib
from nerf_jax.runs import validation

from checks import one_line  # tests/checks.py
from test_captures import _opengl_to_llff, _ring, _write_capture, _write_llff


def _cfg(extent):
  return types.SimpleNamespace(extent=extent)


def _write_llff_ring(root: pathlib.Path, n: int = 10, radius: float = 3.0,
                     bounds=(1.5, 40.0), arc_deg: float = 360.0) -> np.ndarray:
  """A 360-degree LLFF capture: n cameras on a ring (or an arc of it)
  looking at a point, with a distant far bound (a room around them);
  returns the target."""
  target = np.array([0.5, 0.2, -0.3])
  root.mkdir(parents=True)
  rows = []
  for t in np.radians(np.linspace(0, arc_deg, n, endpoint=arc_deg < 360)):
    eye = target + [radius * np.cos(t), radius * np.sin(t), 0.8]
    pose = camera.look_at(eye, target, up=(0, 0, 1))
    m = np.concatenate([_opengl_to_llff(pose), [[8], [8], [8.0]]], axis=1)
    rows.append(np.concatenate([m.reshape(-1), bounds]))
  np.save(root / 'poses_bounds.npy', np.asarray(rows))
  (root / 'images').mkdir()
  for i in range(n):
    iio.imwrite(root / 'images' / f'{i}.png', np.zeros((8, 8, 3), np.uint8))
  return target


def _every_pose(scene) -> np.ndarray:
  return np.concatenate([s.poses for s in scene.splits.values()])


def _old_transforms_box(centres: np.ndarray, half: float) -> tuple:
  """(half, far) of the box transforms.json files had before extents: far
  is the distance from the farthest camera to the box's farthest corner."""
  corners = np.array(np.meshgrid(*[[-half, half]] * 3)).reshape(3, -1).T
  return half, np.linalg.norm(centres[:, None] - corners[None], axis=-1).max()


def _capture(root: pathlib.Path, n: int = 8, **top) -> None:
  frames = [dict(file_path=f'images/{i}.png', transform_matrix=p.tolist())
            for i, p in enumerate(_ring(n, centre=(1.0, -2.0, 0.5)))]
  _write_capture(root, frames, dict(fl_x=8.0, w=8, h=6, **top), [(6, 8)] * n)


# ------------------------------------------------------------------- LLFF


def test_llff_forward_facing_is_forward(tmp_path):
  _write_llff(tmp_path / 's', n=3)
  scene = datasets.load_llff(str(tmp_path / 's'), downsample=4, holdout=0)
  assert scene.extent == 'forward' and scene.info().extent == 'forward'
  assert extent_lib.apply_extent(scene, _cfg('forward')).extent == 'forward'
  for extent in ('bounded', 'unbounded'):
    with pytest.raises(datasets.DatasetError, match='data.ndc=False') as e:
      datasets.load_llff(str(tmp_path / 's'), downsample=4, extent=extent)
    one_line(e)
    with pytest.raises(datasets.DatasetError, match='NDC rays') as e:
      extent_lib.apply_extent(scene, _cfg(extent))
    one_line(e)


def test_a_walk_part_way_round_gets_a_path_through_its_cameras(tmp_path):
  """An orbit only where the cameras surround the object: a 150-degree
  walk (as the beer's 155) gets the smooth path through its cameras, for
  LLFF's 360-degree captures as for transforms.json."""
  _write_llff_ring(tmp_path / 'arc', n=12, arc_deg=150.0)
  scene = datasets.load_llff(str(tmp_path / 'arc'), downsample=1, ndc=False)
  assert scene.extent == 'unbounded' and scene.trajectory == 'smooth'
  assert scene.info().trajectory == 'smooth'
  # The rule itself: the widest gap between the cameras' azimuths.
  ring = lambda degrees: np.stack([camera.look_at(
      [3 * np.cos(t), 3 * np.sin(t), 1.0], [0, 0, 0], up=(0, 0, 1))
                                   for t in np.radians(degrees)])
  assert paths.default_trajectory(ring(np.arange(0, 360, 30))) == 'orbit'
  assert paths.default_trajectory(ring([0, 72, 144, 216, 288])) == 'orbit'
  assert paths.default_trajectory(ring([0, 89, 178, 267, 300])) == 'orbit'
  assert paths.default_trajectory(ring([0, 90, 180, 269])) == 'smooth'
  assert paths.default_trajectory(ring(np.arange(-60, 100, 10))) == 'smooth'
  # Far from the origin on one side, the azimuths seen from it are narrow.
  shifted = ring(np.arange(0, 360, 30))
  shifted[:, 0, 3] += 10.0
  assert paths.default_trajectory(shifted) == 'smooth'


def test_llff_360_is_unbounded_around_the_object(tmp_path):
  _write_llff_ring(tmp_path / 'ring', radius=3.0, bounds=(1.5, 40.0))
  scene = datasets.load_llff(str(tmp_path / 'ring'), downsample=1, ndc=False)
  assert scene.extent == 'unbounded' and scene.info().extent == 'unbounded'
  assert scene.trajectory == 'orbit'
  every = _every_pose(scene)
  centres = every[:, :3, 3].astype(np.float64)
  scale = 1 / (0.75 * 1.5)  # the nearest bound becomes 1 / 0.75
  distance = np.hypot(3.0, 0.8) * scale
  np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), distance,
                             rtol=1e-5)
  # A cube about the point the cameras look at that holds every camera:
  # the ring's radius (the cameras 0.8 above the target are within it).
  lo, hi = np.asarray(scene.aabb)
  np.testing.assert_allclose(hi, 3.0 * scale, rtol=1e-5)
  np.testing.assert_allclose(lo, -hi)
  focus = poses_lib.focus_point(every)
  assert np.all(lo < focus) and np.all(focus < hi)
  assert np.all(np.abs(centres) <= hi[0] * (1 + 1e-6))
  assert np.any(np.isclose(np.abs(centres), hi[0], rtol=1e-5))
  np.testing.assert_allclose(scene.near, 0.9 * 1.5 * scale)
  assert scene.far >= 40.0 * scale
  # data.extent='bounded' gives the box of before: it reaches the far bound
  # from every camera, 14 times as wide here.
  old = datasets.load_llff(str(tmp_path / 'ring'), downsample=1, ndc=False,
                           extent='bounded')
  assert old.extent == 'bounded'
  np.testing.assert_allclose(_every_pose(old), every)
  np.testing.assert_allclose(old.far, 40.0 * scale)
  reach = distance + 40.0 * scale
  np.testing.assert_allclose(np.asarray(old.aabb), [[-reach] * 3, [reach] * 3],
                             rtol=1e-5)
  assert reach > 14 * hi[0]
  with pytest.raises(datasets.DatasetError, match='NDC') as e:
    datasets.load_llff(str(tmp_path / 'ring'), ndc=False, extent='forward')
  one_line(e)


def test_llff_360_keeps_the_near_and_far_asked_for(tmp_path):
  _write_llff_ring(tmp_path / 'ring')
  scene = datasets.load_llff(str(tmp_path / 'ring'), downsample=1, ndc=False,
                             near=0.5, far=300.0)
  assert (scene.near, scene.far, scene.extent) == (0.5, 300.0, 'unbounded')


# -------------------------------------------------------- transforms.json


def test_transforms_without_aabb_scale_is_unbounded(tmp_path):
  _capture(tmp_path / 'cap')  # nerfstudio's form: no aabb_scale
  scene = datasets.load_transforms(str(tmp_path / 'cap'), holdout=4)
  assert scene.extent == 'unbounded' and scene.info().extent == 'unbounded'
  centres = _every_pose(scene)[:, :3, 3].astype(np.float64)
  np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 4.0,
                             rtol=1e-5)
  # The cube about the focus point that holds the cameras (4 away).
  half = np.abs(centres).max()
  assert 4.0 / np.sqrt(3) < half <= 4.0
  np.testing.assert_allclose(np.asarray(scene.aabb),
                             [[-half] * 3, [half] * 3], rtol=1e-6)
  np.testing.assert_allclose(scene.far, 100 * 4.0, rtol=1e-5)
  # data.extent='bounded': the box of before, holding the cameras.
  old = datasets.load_transforms(str(tmp_path / 'cap'), holdout=4,
                                 extent='bounded')
  half, far = _old_transforms_box(centres, 1.1 * np.abs(centres).max())
  assert old.extent == 'bounded'
  np.testing.assert_allclose(np.asarray(old.aabb), [[-half] * 3, [half] * 3])
  np.testing.assert_allclose(old.far, far)
  assert old.near == scene.near
  given = datasets.load_transforms(str(tmp_path / 'cap'), holdout=4,
                                   far=50.0)
  assert given.far == 50.0 and given.extent == 'unbounded'


def test_transforms_aabb_scale_1_is_bounded_as_before(tmp_path):
  _capture(tmp_path / 'cap', aabb_scale=1)
  scene = datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  assert scene.extent == 'bounded' and scene.info().extent == 'bounded'
  assert scene.aabb == ((-1.5,) * 3, (1.5,) * 3)
  centres = _every_pose(scene)[:, :3, 3].astype(np.float64)
  np.testing.assert_allclose(scene.far, _old_transforms_box(centres, 1.5)[1])
  # Asked to be unbounded: the same box holds the object, far grows.
  wide = datasets.load_transforms(str(tmp_path / 'cap'), holdout=0,
                                  extent='unbounded')
  assert wide.extent == 'unbounded' and wide.aabb == scene.aabb
  np.testing.assert_allclose(
      wide.far, 100 * np.linalg.norm(centres, axis=-1).mean(), rtol=1e-5)


def test_transforms_aabb_scale_above_1_is_unbounded(tmp_path):
  _capture(tmp_path / 'cap', aabb_scale=4)
  scene = datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  assert scene.extent == 'unbounded'
  # The aabb_scale box (1.5 * aabb_scale) at full resolution, with what
  # lies beyond it contracted.
  assert scene.aabb == ((-6.0,) * 3, (6.0,) * 3)
  centres = _every_pose(scene)[:, :3, 3].astype(np.float64)
  _, reach = _old_transforms_box(centres, 6.0)
  assert scene.far >= reach  # past the far side of the aabb_scale box
  np.testing.assert_allclose(
      scene.far, max(reach, 100 * np.linalg.norm(centres, axis=-1).mean()),
      rtol=1e-5)
  old = datasets.load_transforms(str(tmp_path / 'cap'), holdout=0,
                                 extent='bounded')
  assert old.aabb == ((-6.0,) * 3, (6.0,) * 3)  # 1.5 * aabb_scale
  np.testing.assert_allclose(old.far, reach)
  with pytest.raises(datasets.DatasetError, match="extent='forward'") as e:
    datasets.load_transforms(str(tmp_path / 'cap'), extent='forward')
  one_line(e)


# ------------------------------------------------------ the override


def _ring_scene(ndc: bool = False) -> datasets.Scene:
  """A bounded scene of 4 cameras 4 from the origin (no pixels needed)."""
  poses = np.stack(_ring(4))
  k = camera.Intrinsics(fx=4.0, fy=4.0, cx=2.0, cy=2.0, width=4, height=4)
  split = datasets.Split(images=np.zeros((4, 4, 4, 3), np.float32),
                         cameras=camera.Cameras.create(poses, k, ndc=ndc),
                         indices=np.arange(4))
  return datasets.Scene(name='ring', splits={'train': split}, near=2.0,
                        far=6.0)


def test_apply_extent_overrides_the_loader():
  scene = _ring_scene()
  assert scene.extent == 'bounded'
  assert extent_lib.apply_extent(scene, _cfg('auto')) is scene
  assert extent_lib.apply_extent(scene, _cfg('bounded')) is scene
  assert extent_lib.apply_extent(scene, types.SimpleNamespace()) is scene
  # Unbounded: the box holds the object, far sees a background.
  distance = np.linalg.norm(scene.split('train').poses[0, :3, 3])
  wide = extent_lib.apply_extent(scene, _cfg('unbounded'))
  assert wide.extent == 'unbounded' and wide.aabb == scene.aabb
  assert wide.near == 2.0
  np.testing.assert_allclose(wide.far, 100 * distance, rtol=1e-5)
  assert wide.info().extent == 'unbounded' and scene.extent == 'bounded'
  # And back: a box reaching far from every camera holds every sample.
  boxed = extent_lib.apply_extent(wide, _cfg('bounded'))
  reach = distance + wide.far
  assert boxed.extent == 'bounded' and boxed.far == wide.far
  np.testing.assert_allclose(np.asarray(boxed.aabb),
                             [[-reach] * 3, [reach] * 3], rtol=1e-5)


def test_apply_extent_errors_are_one_line():
  scene = _ring_scene()
  with pytest.raises(datasets.DatasetError, match='data.ndc=True') as e:
    extent_lib.apply_extent(scene, _cfg('forward'))
  one_line(e)
  with pytest.raises(datasets.DatasetError,
                     match="data.extent='sideways' is not one of") as e:
    extent_lib.apply_extent(scene, _cfg('sideways'))
  one_line(e)
  forward = extent_lib.apply_extent(_ring_scene(ndc=True), _cfg('auto'))
  assert forward.extent == 'forward'
  with pytest.raises(datasets.DatasetError, match='NDC rays') as e:
    extent_lib.apply_extent(_ring_scene(ndc=True), _cfg('unbounded'))
  one_line(e)


def test_the_config_field_is_checked():
  config = demo.get_config()
  assert config.data.extent == 'auto'
  for extent in extent_lib.CHOICES:
    config.data.extent = extent
    validation.validate_config(config, num_devices=1)
  config.data.extent = 'sideways'
  with pytest.raises(validation.ConfigError) as e:
    validation.validate_config(config, num_devices=1)
  assert one_line(e) == ("data.extent='sideways' is not one of 'auto', "
                         "'bounded', 'forward', 'unbounded'")
  # Saved and read back as the loaders wrote it.
  info = _ring_scene().info()
  assert scene_lib.SceneInfo.from_dict(info.to_dict()).extent == 'bounded'
