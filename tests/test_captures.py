"""Tests of the loaders of real captures: LLFF and transforms.json."""

from __future__ import annotations

import json
import pathlib
import sys

import imageio.v3 as iio
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from nerf_jax.cameras import camera  # pylint: disable=g-import-not-at-top
from nerf_jax import datasets
from nerf_jax.cameras import poses as poses_lib
from nerf_jax.datasets import llff

from checks import one_line  # tests/checks.py

SHARED_DATA = ROOT.parent / 'shared' / 'data'
FERN = SHARED_DATA / 'nerf_llff_data' / 'fern'
FOX = SHARED_DATA / 'fox'


# ---------------------------------------------------------------------------
# LLFF


def _opengl_to_llff(c2w: np.ndarray) -> np.ndarray:
  """Our [right, up, back, centre] -> LLFF's [down, right, back, centre]."""
  c2w = np.asarray(c2w, np.float64)
  return np.stack([-c2w[:3, 1], c2w[:3, 0], c2w[:3, 2], c2w[:3, 3]], axis=1)


def _write_llff(root: pathlib.Path, n: int = 9, full=(48, 64), focal=60.0,
                folders=(('images_4', 4),), seed=0) -> np.ndarray:
  """A forward-facing LLFF scene: n cameras near the origin looking at a
  wall; returns the OpenGL poses written."""
  rng = np.random.default_rng(seed)
  root.mkdir(parents=True, exist_ok=True)
  eyes = np.column_stack([rng.uniform(-0.5, 0.5, n), rng.uniform(-0.3, 0.3, n),
                          rng.uniform(-0.1, 0.1, n)]) + [2.0, -1.0, 0.5]
  c2w = np.stack([camera.look_at(e, e + [0.05, 0.02, -1.0], up=(0, 1, 0))
                  for e in eyes])
  h, w = full
  rows = []
  for pose in c2w:
    m = np.concatenate([_opengl_to_llff(pose), [[h], [w], [focal]]], axis=1)
    rows.append(np.concatenate([m.reshape(-1), [3.0, 20.0]]))
  np.save(root / 'poses_bounds.npy', np.asarray(rows))
  for name, factor in folders:
    (root / name).mkdir()
    for i in range(n):
      image = rng.integers(0, 255, (h // factor, w // factor, 3), np.uint8)
      iio.imwrite(root / name / f'img{i:03d}.png', image)
  return c2w


def test_llff_poses_convert_to_opengl():
  c2w = camera.look_at((1.0, 2.0, 3.0), (0.0, 0.5, 0.0), up=(0, 0, 1))
  converted = llff.llff_to_opengl(_opengl_to_llff(c2w)[None])
  np.testing.assert_allclose(converted[0], c2w, atol=1e-6)
  # LLFF's columns [down, right, back] = world x, y, z: our right axis is
  # world y, our up axis world -x, our back axis world z.
  m = np.eye(3, 4)
  np.testing.assert_allclose(llff.llff_to_opengl(m[None])[0, :3, :3],
                             [[0, -1, 0], [1, 0, 0], [0, 0, 1]])


def test_llff_loader_scales_intrinsics_recentres_and_holds_out(tmp_path):
  c2w = _write_llff(tmp_path / 'scene', n=9, full=(48, 64), focal=60.0)
  scene = datasets.load_llff(str(tmp_path / 'scene'), downsample=4)
  train, val = scene.split('train'), scene.split('val')
  np.testing.assert_array_equal(val.indices, [0, 8])  # every 8th view
  np.testing.assert_array_equal(train.indices, np.arange(1, 8))
  assert train.images.shape == (7, 12, 16, 3)
  k = train.intrinsics
  assert (k.width, k.height) == (16, 12)
  np.testing.assert_allclose([k.fx, k.fy, k.cx, k.cy], [15.0, 15.0, 8.0, 6.0])
  assert train.cameras.ndc and (scene.near, scene.far) == (0.0, 1.0)
  assert scene.trajectory == 'spiral' and scene.focus_depth > 0
  # Recentred: the average camera of all views is the identity; relative
  # poses are those of the file, the scale 1 / (0.75 * the nearest bound).
  everything = np.concatenate([val.poses[:1], train.poses, val.poses[1:]])
  np.testing.assert_allclose(poses_lib.average_pose(everything), np.eye(4),
                             atol=1e-5)
  scale = 1.0 / (0.75 * 3.0)
  for i, j in ((0, 3), (2, 7), (5, 1)):
    want = np.linalg.inv(c2w[i]) @ c2w[j]
    want[:3, 3] *= scale
    np.testing.assert_allclose(
        np.linalg.inv(everything[i]) @ everything[j], want, atol=1e-5)
  # The images are the files', in file-name order.
  first = iio.imread(tmp_path / 'scene' / 'images_4' / 'img001.png')
  np.testing.assert_allclose(train.images[0], first / 255.0, atol=1e-6)


def test_eval_split_of_a_capture_is_read_as_training_read_it(tmp_path):
  import ml_collections  # pylint: disable=g-import-not-at-top
  _write_llff(tmp_path / 's', n=9, folders=(('images_4', 4),))
  cfg = ml_collections.ConfigDict(dict(
      kind='llff', path=str(tmp_path / 's'), downsample=4, ndc=True,
      holdout=4, near=0.0, far=0.0, white_background=False))
  split = datasets.load_eval_split(str(tmp_path / 's'), 'test', cfg)
  want = datasets.load_scene(cfg).split('test')
  np.testing.assert_array_equal(split.indices, [0, 4, 8])
  np.testing.assert_array_equal(split.poses, want.poses)
  np.testing.assert_array_equal(split.images, want.images)
  assert split.cameras.ndc


def test_llff_downsamples_from_a_finer_folder(tmp_path):
  _write_llff(tmp_path / 's', n=3, full=(48, 64), folders=(('images_2', 2),))
  scene = datasets.load_llff(str(tmp_path / 's'), downsample=4, holdout=0)
  train = scene.split('train')
  assert train.images.shape == (3, 12, 16, 3)
  np.testing.assert_allclose(train.intrinsics.fx, 15.0)
  source = iio.imread(tmp_path / 's' / 'images_2' / 'img000.png') / 255.0
  np.testing.assert_allclose(train.images[0],
                             source.reshape(12, 2, 16, 2, 3).mean((1, 3)),
                             atol=1e-6)
  with pytest.raises(datasets.DatasetError, match='images_2') as e:
    datasets.load_llff(str(tmp_path / 's'), downsample=3)
  one_line(e)


def test_llff_360_switch_orbits_instead_of_ndc(tmp_path):
  target = np.array([0.5, 0.2, -0.3])
  root = tmp_path / 'ring'
  root.mkdir()
  rows = []
  for t in np.linspace(0, 2 * np.pi, 10, endpoint=False):
    eye = target + [3 * np.cos(t), 3 * np.sin(t), 0.8]
    pose = camera.look_at(eye, target, up=(0, 0, 1))
    m = np.concatenate([_opengl_to_llff(pose), [[8], [8], [8.0]]], axis=1)
    rows.append(np.concatenate([m.reshape(-1), [2.0, 4.0]]))
  np.save(root / 'poses_bounds.npy', np.asarray(rows))
  (root / 'images').mkdir()
  for i in range(10):
    iio.imwrite(root / 'images' / f'{i}.png', np.zeros((8, 8, 3), np.uint8))
  scene = datasets.load_llff(str(root), downsample=1, ndc=False)
  train = scene.split('train')
  assert not train.cameras.ndc and scene.trajectory == 'orbit'
  every = np.concatenate([train.poses, scene.split('val').poses])
  np.testing.assert_allclose(poses_lib.focus_point(every), 0, atol=1e-4)
  scale = 1 / (0.75 * 2.0)
  np.testing.assert_allclose(scene.near, 0.9 * 2.0 * scale)
  # A 360-degree capture is unbounded: far reaches twice the far bound
  # (background beyond COLMAP's points); the box holds the object only.
  assert scene.extent == 'unbounded'
  np.testing.assert_allclose(scene.far, 2 * 4.0 * scale)
  ups = poses_lib.normalize(every[:, :3, 1].sum(0))
  np.testing.assert_allclose(ups, [0, 0, 1], atol=1e-5)


def test_llff_bad_files_giveone_line(tmp_path):
  with pytest.raises(datasets.DatasetError, match='not found') as e:
    datasets.load_llff(str(tmp_path / 'absent'))
  one_line(e)
  (tmp_path / 'empty').mkdir()
  with pytest.raises(datasets.DatasetError, match='poses_bounds') as e:
    datasets.load_llff(str(tmp_path / 'empty'))
  one_line(e)
  _write_llff(tmp_path / 'bad', n=3, folders=(('images_4', 4),))
  np.save(tmp_path / 'bad' / 'poses_bounds.npy', np.zeros((3, 15)))
  with pytest.raises(datasets.DatasetError, match=r'\(n, 17\)') as e:
    datasets.load_llff(str(tmp_path / 'bad'), downsample=4)
  one_line(e)
  _write_llff(tmp_path / 'nan', n=3, folders=(('images_4', 4),))
  rows = np.load(tmp_path / 'nan' / 'poses_bounds.npy')
  rows[1, 3] = np.nan
  np.save(tmp_path / 'nan' / 'poses_bounds.npy', rows)
  with pytest.raises(datasets.DatasetError, match=r'\[1\].*NaN') as e:
    datasets.load_llff(str(tmp_path / 'nan'), downsample=4)
  one_line(e)
  _write_llff(tmp_path / 'count', n=3, folders=(('images_4', 4),))
  (tmp_path / 'count' / 'images_4' / 'img002.png').unlink()
  with pytest.raises(datasets.DatasetError, match='2 images but') as e:
    datasets.load_llff(str(tmp_path / 'count'), downsample=4)
  one_line(e)
  _write_llff(tmp_path / 'corrupt', n=3, folders=(('images_4', 4),))
  (tmp_path / 'corrupt' / 'images_4' / 'img001.png').write_bytes(b'junk')
  with pytest.raises(datasets.DatasetError, match='img001.png') as e:
    datasets.load_llff(str(tmp_path / 'corrupt'), downsample=4)
  one_line(e)


@pytest.mark.skipif(not FERN.is_dir(), reason=f'{FERN} is absent')
def test_fern_loads_at_one_eighth():
  scene = datasets.load_llff(str(FERN), downsample=8)
  train, val = scene.split('train'), scene.split('val')
  assert (len(train), len(val)) == (17, 3)
  assert train.images.shape[1:] == (378, 504, 3)
  hwf = np.load(FERN / 'poses_bounds.npy')[0, :15].reshape(3, 5)[:, 4]
  np.testing.assert_allclose(train.intrinsics.fx, hwf[2] * 504 / hwf[1],
                             rtol=1e-5)
  # The same cameras at 1/4 have twice the focal length in pixels.
  quarter = datasets.load_llff(str(FERN), downsample=4)
  np.testing.assert_allclose(quarter.split('train').intrinsics.fx,
                             2 * train.intrinsics.fx, rtol=1e-5)
  np.testing.assert_allclose(quarter.split('train').poses, train.poses)


# ---------------------------------------------------------------------------
# transforms.json


def _write_capture(root: pathlib.Path, frames: list, top: dict,
                   sizes: list) -> None:
  (root / 'images').mkdir(parents=True)
  rng = np.random.default_rng(0)
  for frame, (h, w) in zip(frames, sizes):
    if (h, w) != (0, 0):
      iio.imwrite(root / frame['file_path'],
                  rng.integers(0, 255, (h, w, 3), np.uint8))
  (root / 'transforms.json').write_text(json.dumps(dict(top, frames=frames)))


def _ring(n: int, radius=4.0, height=1.0, centre=(0.0, 0.0, 0.0)):
  centre = np.asarray(centre)
  return [camera.look_at(centre + [radius * np.cos(t), radius * np.sin(t),
                                   height], centre)
          for t in np.linspace(0, 2 * np.pi, n, endpoint=False)]


def test_transforms_global_camera_with_distortion(tmp_path):
  poses = _ring(8)
  frames = [dict(file_path=f'images/{i:02d}.png',
                 transform_matrix=p.tolist()) for i, p in enumerate(poses)]
  top = dict(fl_x=20.0, fl_y=22.0, cx=15.0, cy=11.0, w=32, h=24, k1=0.1,
             k2=-0.02, p1=0.001, p2=-0.002, aabb_scale=2)
  _write_capture(tmp_path / 'cap', frames, top, [(24, 32)] * 8)
  scene = datasets.load_transforms(str(tmp_path / 'cap'), holdout=4)
  train, val = scene.split('train'), scene.split('val')
  np.testing.assert_array_equal(val.indices, [0, 4])
  k = train.intrinsics
  np.testing.assert_allclose([k.fx, k.fy, k.cx, k.cy], [20, 22, 15, 11])
  np.testing.assert_allclose(train.cameras.distortion,
                             [[0.1, -0.02, 0.001, -0.002]] * 6, rtol=1e-6)
  assert train.cameras.distorted and not train.cameras.ndc
  # instant-ngp's frame is kept (already z up, centred): poses unchanged.
  np.testing.assert_allclose(val.poses[1], poses[4], atol=1e-6)
  # aabb_scale 2 > 1: content beyond the unit cube, so unbounded, with
  # the aabb_scale box (1.5 * 2 each way) at full resolution.
  assert scene.extent == 'unbounded'
  assert scene.aabb == ((-3.0,) * 3, (3.0,) * 3)
  assert scene.near > 0 and scene.far >= 4.0 + 3.0


def test_transforms_downsample_scales_intrinsics(tmp_path):
  frames = [dict(file_path=f'images/{i}.png',
                 transform_matrix=p.tolist()) for i, p in enumerate(_ring(3))]
  top = dict(fl_x=20.0, fl_y=20.0, cx=16.0, cy=12.0, w=32, h=24)
  _write_capture(tmp_path / 'cap', frames, top, [(24, 32)] * 3)
  scene = datasets.load_transforms(str(tmp_path / 'cap'), downsample=2,
                                   holdout=0)
  k = scene.split('train').intrinsics
  np.testing.assert_allclose([k.fx, k.fy, k.cx, k.cy], [10, 10, 8, 6])
  assert (k.width, k.height) == (16, 12)
  # The rays of the downsampled camera are the full camera's rays through
  # the centres of the 2x2 blocks.
  cams = scene.split('train').cameras
  full = camera.Cameras.create(cams.poses, camera.Intrinsics(
      fx=20.0, fy=20.0, cx=16.0, cy=12.0, width=32, height=24))
  small_rays = camera.cast_rays(cams, np.array([0]), np.array([3]),
                                np.array([5]), 1.0, 2.0, xnp=np)
  # block (3, 5) covers full-res pixels 6-7 x 10-11: centre at (7.0, 11.0)
  x = (11.0 - 16.0) / 20.0
  y = (7.0 - 12.0) / 20.0
  want = cams.poses[0, :3, :3] @ np.array([x, -y, -1.0])
  np.testing.assert_allclose(small_rays.directions[0], want, atol=1e-6)
  del full


def test_transforms_per_frame_cameras_of_different_sizes(tmp_path):
  poses = _ring(4, centre=(5.0, -2.0, 1.0))
  frames = []
  for i, p in enumerate(poses):
    frames.append(dict(file_path=f'images/{i}.png',
                       transform_matrix=p.tolist(),
                       fl_x=10.0 + i, fl_y=10.0 + i, w=16 + 4 * i, h=12,
                       cx=8.0 + 2 * i, cy=6.0))
  sizes = [(12, 16 + 4 * i) for i in range(4)]
  # No aabb_scale (a nerfstudio file): centred on the focus point, the
  # cameras 4 from it, the box holding them.
  _write_capture(tmp_path / 'cap', frames, {}, sizes)
  scene = datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  train = scene.split('train')
  assert isinstance(train.images, list)
  assert [im.shape[:2] for im in train.images] == sizes
  np.testing.assert_array_equal(train.cameras.width, [16, 20, 24, 28])
  np.testing.assert_allclose(train.cameras.fx, [10, 11, 12, 13])
  np.testing.assert_allclose(np.linalg.norm(train.poses[:, :3, 3], axis=-1),
                             4.0 * np.ones(4), atol=1e-4)
  np.testing.assert_allclose(poses_lib.focus_point(train.poses), 0, atol=1e-4)
  # No aabb_scale (nerfstudio): cameras around an object, unbounded; the
  # object's box holds the cameras, the farthest on its side.
  assert scene.extent == 'unbounded'
  np.testing.assert_allclose(np.abs(train.poses[:, :3, 3]).max(),
                             scene.aabb[1][0], rtol=1e-6)


def test_transforms_camera_angle_fallback(tmp_path):
  frames = [dict(file_path=f'images/{i}.png', transform_matrix=p.tolist())
            for i, p in enumerate(_ring(2))]
  _write_capture(tmp_path / 'cap', frames, dict(camera_angle_x=0.9),
                 [(10, 20)] * 2)
  k = datasets.load_transforms(str(tmp_path / 'cap'),
                               holdout=0).split('train').intrinsics
  np.testing.assert_allclose(k.fx, 10.0 / np.tan(0.45), rtol=1e-6)
  np.testing.assert_allclose([k.fy, k.cx, k.cy], [k.fx, 10.0, 5.0], rtol=1e-6)


def test_transforms_missing_images_warn_once_with_the_count(tmp_path, capfd):
  poses = _ring(6)
  frames = [dict(file_path=f'images/{i}.png', transform_matrix=p.tolist())
            for i, p in enumerate(poses)]
  sizes = [(8, 8), (0, 0), (8, 8), (0, 0), (0, 0), (8, 8)]  # 3 missing
  _write_capture(tmp_path / 'cap', frames, dict(fl_x=8.0, aabb_scale=1),
                 sizes)
  scene = datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  assert len(scene.split('train')) == 3
  err = capfd.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'lists 6 frames but 3' in err[0], err
  assert 'images/1.png' in err[0]


def test_transforms_bad_files_giveone_line(tmp_path):
  with pytest.raises(datasets.DatasetError, match='no such file') as e:
    datasets.load_transforms(str(tmp_path / 'absent'))
  one_line(e)
  bad = tmp_path / 'bad'
  bad.mkdir()
  (bad / 'transforms.json').write_text('{"frames": [')
  with pytest.raises(datasets.DatasetError, match='malformed') as e:
    datasets.load_transforms(str(bad))
  one_line(e)
  frames = [dict(file_path='images/0.png', transform_matrix=np.eye(4).tolist())]
  _write_capture(tmp_path / 'nofocal', frames, {}, [(4, 4)])
  with pytest.raises(datasets.DatasetError, match='focal') as e:
    datasets.load_transforms(str(tmp_path / 'nofocal'), holdout=0)
  one_line(e)
  frames = [dict(file_path='images/0.png', transform_matrix=[[np.nan] * 4] * 4)]
  _write_capture(tmp_path / 'nan', frames, dict(fl_x=4.0), [(4, 4)])
  with pytest.raises(datasets.DatasetError, match='NaN') as e:
    datasets.load_transforms(str(tmp_path / 'nan'), holdout=0)
  one_line(e)
  frames = [dict(file_path='images/0.png', transform_matrix=np.eye(4).tolist())]
  _write_capture(tmp_path / 'none', frames, dict(fl_x=4.0), [(0, 0)])
  with pytest.raises(datasets.DatasetError, match='none of its 1 images') as e:
    datasets.load_transforms(str(tmp_path / 'none'))
  one_line(e)
  _write_capture(tmp_path / 'fish', frames, dict(
      fl_x=4.0, camera_model='OPENCV_FISHEYE'), [(4, 4)])
  with pytest.raises(datasets.DatasetError, match='FISHEYE') as e:
    datasets.load_transforms(str(tmp_path / 'fish'), holdout=0)
  one_line(e)


@pytest.mark.skipif(not FOX.is_dir(), reason=f'{FOX} is absent')
def test_fox_loads_with_its_missing_frames_skipped(capfd):
  scene = datasets.load_transforms(str(FOX), downsample=8)
  err = capfd.readouterr().err
  assert 'lists 67 frames but 17' in err
  train, val = scene.split('train'), scene.split('val')
  assert len(train) + len(val) == 50 and len(val) == 7
  assert train.images.shape[1:] == (240, 135, 3)
  np.testing.assert_allclose(train.intrinsics.fx, 1375.52 * 135 / 1080,
                             rtol=1e-5)
  assert train.cameras.distorted
  # The cameras look at the fox, near the origin (instant-ngp's centre).
  assert np.linalg.norm(poses_lib.focus_point(train.poses)) < 0.3


# ---------------------------------------------------------------------------
# A few training steps, an evaluation and a video on each real format.


def _train_and_render(config, workdir) -> tuple:
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  from nerf_jax.inference import chunked  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import loop  # pylint: disable=g-import-not-at-top
  record = loop.train_and_evaluate(config, str(workdir), progress=False)
  _, info, model, variables, step = load.load_trained(str(workdir))
  kind, path = paths.camera_path(info, 'auto', 2)
  frames = chunked.render_sequence(
      chunked.make_render_fn(model), variables, path,
      info.intrinsics.scaled(0.25), info.near, info.far, 4096,
      progress=False, ndc=info.ndc)
  return record, info, kind, frames, step


def _tiny(config):
  config.model.preset = 'tiny'
  config.model.num_coarse = 8
  config.train.batch_rays = 256
  config.train.max_steps = 3
  config.train.max_seconds = 0.0
  config.eval.at_seconds = ()
  config.eval.max_views = 1
  return config


@pytest.mark.slow
@pytest.mark.skipif(not FERN.is_dir(), reason=f'{FERN} is absent')
def test_fern_trains_evaluates_and_renders_a_spiral(tmp_path):
  from configs import llff as llff_config  # pylint: disable=g-import-not-at-top
  config = _tiny(llff_config.get_config())
  config.data.path = str(FERN)
  config.data.downsample = 16  # 252x189, from images_8
  record, info, kind, frames, step = _train_and_render(config, tmp_path / 'r')
  assert step == 3 and np.isfinite(record['psnr'])
  assert info.ndc and (info.near, info.far) == (0.0, 1.0)
  assert kind == 'spiral' and len(info.camera_poses) == 17
  assert frames['rgb'].shape == (2, 47, 63, 3)
  assert np.all(np.isfinite(frames['rgb']))


@pytest.mark.slow
@pytest.mark.skipif(not FOX.is_dir(), reason=f'{FOX} is absent')
def test_fox_trains_evaluates_and_renders(tmp_path):
  from configs import fox as fox_config  # pylint: disable=g-import-not-at-top
  config = _tiny(fox_config.get_config())
  config.data.path = str(FOX)
  config.data.downsample = 16  # 67x120
  config.model.kind = 'mlp'  # the format is under test here, not the model
  record, info, kind, frames, step = _train_and_render(config, tmp_path / 'r')
  assert step == 3 and np.isfinite(record['psnr'])
  # fox.py keeps the aabb_scale box its recipe was measured with.
  assert not info.ndc and info.extent == 'bounded'
  assert info.aabb == ((-6.0,) * 3, (6.0,) * 3)
  # The fox's cameras cover half a circle: the video follows them.
  assert kind == 'smooth'
  assert frames['rgb'].shape == (2, 30, 16, 3)
