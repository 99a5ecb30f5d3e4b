"""Tests of the dataset loaders: procedural scene, tiny npz, Blender."""

from __future__ import annotations

import colorsys
import functools
import hashlib
import http.server
import json
import os
import pathlib
import sys
import threading
import types

import imageio.v3 as iio
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from anywhere without installing
  sys.path.insert(0, str(ROOT))

from nerf_jax.cameras import camera  # pylint: disable=g-import-not-at-top
from nerf_jax import datasets
from nerf_jax.datasets import blender
from nerf_jax.datasets import procedural
from nerf_jax.datasets import tiny_npz

from checks import one_line  # tests/checks.py

SHARED_DATA = pathlib.Path(__file__).parents[1].parent / 'shared' / 'data'


# ----------------------------------------------------------------- procedural


@pytest.fixture(scope='module')
def small_scene():
  return procedural.make_scene(width=32, height=24, num_train=6, num_val=3,
                               num_test=2, seed=0)


def _shape(name: str):
  return next(s for s in procedural.SHAPES if s.name == name)


def _sdf(shape, p: np.ndarray) -> np.ndarray:
  """Signed distance from points p: f[..., 3] to a shape (independent code)."""
  if isinstance(shape, procedural.Sphere):
    return np.linalg.norm(p - np.asarray(shape.center), axis=-1) - shape.radius
  if isinstance(shape, procedural.Box):
    lo, hi = np.asarray(shape.lo), np.asarray(shape.hi)
    q = np.abs(p - (lo + hi) / 2) - (hi - lo) / 2
  else:
    radial = np.linalg.norm(p[..., :2] - np.asarray(shape.center_xy), axis=-1)
    mid, half = (shape.z_min + shape.z_max) / 2, (shape.z_max - shape.z_min) / 2
    q = np.stack([radial - shape.radius, np.abs(p[..., 2] - mid) - half], -1)
  outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
  return outside + np.minimum(np.max(q, axis=-1), 0.0)


def _scene_sdf(p: np.ndarray) -> np.ndarray:
  return np.min([_sdf(s, p) for s in procedural.SHAPES], axis=0)


def _rays(pose: np.ndarray, intrinsics: camera.Intrinsics):
  rows, cols = np.meshgrid(np.arange(intrinsics.height),
                           np.arange(intrinsics.width), indexing='ij')
  dirs = camera.pixel_directions(intrinsics, rows, cols, xnp=np)
  rays = camera.camera_rays(pose, dirs, 2.0, 6.0, xnp=np)
  return (np.asarray(rays.origins, np.float64),
          np.asarray(rays.directions, np.float64))


def test_procedural_deterministic_and_seeded(small_scene):
  again = procedural.make_scene(width=32, height=24, num_train=6, num_val=3,
                                num_test=2, seed=0)
  other = procedural.make_scene(width=32, height=24, num_train=6, num_val=3,
                                num_test=2, seed=1)
  for name in ('train', 'val', 'test'):
    a, b, c = (s.split(name) for s in (small_scene, again, other))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.poses, b.poses)
    np.testing.assert_array_equal(a.depths, b.depths)
    assert not np.allclose(a.poses, c.poses)
    assert not np.allclose(a.images, c.images)


def test_procedural_splits_counts_and_shapes(small_scene):
  assert small_scene.name == 'procedural'
  assert (small_scene.near, small_scene.far) == (2.0, 6.0)
  for name, n in (('train', 6), ('val', 3), ('test', 2)):
    split = small_scene.split(name)
    assert len(split) == n
    assert split.images.shape == (n, 24, 32, 3)
    assert split.images.dtype == np.float32
    assert split.poses.shape == (n, 4, 4)
    assert split.depths.shape == split.alphas.shape == (n, 24, 32)
    assert (split.intrinsics.width, split.intrinsics.height) == (32, 24)
    np.testing.assert_array_equal(split.indices, np.arange(n))
  centres = {name: small_scene.split(name).poses[:, :3, 3]
             for name in ('train', 'val', 'test')}
  for a, b in (('train', 'val'), ('train', 'test'), ('val', 'test')):
    gaps = np.linalg.norm(centres[a][:, None] - centres[b][None], axis=-1)
    assert gaps.min() > 1e-2, (a, b)
  no_test = procedural.make_scene(8, 8, num_train=2, num_val=1, num_test=0)
  assert sorted(no_test.splits) == ['train', 'val']


def test_procedural_focal_matches_lego_field_of_view(small_scene):
  k = small_scene.split('train').intrinsics
  np.testing.assert_allclose(2 * np.arctan(0.5 * 32 / k.fx), 0.6911112,
                             rtol=1e-5)
  assert k.fx == k.fy and (k.cx, k.cy) == (16.0, 12.0)


def test_render_view_sphere_depth_closed_form():
  sphere = _shape('red_sphere')
  centre = np.asarray(sphere.center)
  outward = np.array([1.0, 0.6, 0.9]) / np.linalg.norm([1.0, 0.6, 0.9])
  eye = centre + 2.5 * outward
  pose = camera.look_at(eye, target=centre)
  k = camera.Intrinsics.from_focal(40.0, 33, 33)  # pixel (16, 16) is central
  rgb, depth, alpha = procedural.render_view(pose, k)
  # The central ray is the optical axis (unit length), so t is a distance.
  expected = np.linalg.norm(pose[:3, 3] - centre) - sphere.radius
  np.testing.assert_allclose(depth[16, 16], expected, rtol=1e-5)
  assert alpha[16, 16] == 1.0
  np.testing.assert_allclose(rgb[16, 16] / rgb[16, 16].max(),
                             np.asarray(sphere.albedo) / max(sphere.albedo),
                             atol=1e-5)
  # Off-centre pixels: the near root of |o + t d - c|^2 = r^2.
  o, d = _rays(pose, k)
  oc = o[12:21, 12:21] - centre
  a, b = np.sum(d[12:21, 12:21] ** 2, -1), np.sum(d[12:21, 12:21] * oc, -1)
  c = np.sum(oc ** 2, -1) - sphere.radius ** 2
  t = (-b - np.sqrt(b ** 2 - a * c)) / a
  np.testing.assert_allclose(depth[12:21, 12:21], t, rtol=1e-5)


def test_depth_reprojects_onto_a_surface(small_scene):
  split = small_scene.split('val')
  for pose, depth in zip(split.poses, split.depths):
    o, d = _rays(pose, split.intrinsics)
    hit = np.isfinite(depth)
    assert 0.1 < hit.mean() < 0.9
    t = depth[hit].astype(np.float64)[:, None]
    points = o[hit] + t * d[hit]
    np.testing.assert_allclose(_scene_sdf(points), 0.0, atol=1e-4)
    # Nothing lies in front of the hit point, and missed rays cross nothing.
    fractions = np.linspace(0.02, 0.995, 48)[:, None, None]
    before = o[hit] + fractions * t * d[hit]
    assert _scene_sdf(before).min() > -1e-5
    ts = np.linspace(2.0, 6.0, 64)[:, None, None]
    assert _scene_sdf(o[~hit] + ts * d[~hit]).min() > 0.0
    assert np.all((depth[hit] > 2.0) & (depth[hit] < 6.0))


@pytest.mark.parametrize('white', [False, True])
def test_alpha_depth_and_background(white):
  scene = procedural.make_scene(24, 24, num_train=3, num_val=1, num_test=1,
                                seed=3, white_background=white)
  assert scene.white_background == white
  for split in scene.splits.values():
    np.testing.assert_array_equal(split.alphas == 1.0,
                                  np.isfinite(split.depths))
    assert set(np.unique(split.alphas)) <= {0.0, 1.0}
    miss = split.alphas == 0
    assert miss.any() and (~miss).any()
    np.testing.assert_array_equal(split.images[miss], float(white))
    assert np.all((split.images >= 0) & (split.images <= 1))
    hits = split.images[~miss]
    assert np.any(np.abs(hits - float(white)).max(-1) > 0.2)


def test_cameras_on_upper_hemisphere_looking_at_origin():
  scene = procedural.make_scene(8, 8, num_train=50, num_val=8, num_test=8)
  for split in scene.splits.values():
    centres = split.poses[:, :3, 3].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 4.0,
                               rtol=1e-5)
    elevation = np.degrees(np.arcsin(centres[:, 2] / 4.0))
    assert np.all((elevation > 10.0 - 1e-3) & (elevation < 80.0 + 1e-3))
    rotation = split.poses[:, :3, :3].astype(np.float64)
    np.testing.assert_allclose(rotation @ rotation.transpose(0, 2, 1),
                               np.broadcast_to(np.eye(3), rotation.shape),
                               atol=1e-5)
    forward = -rotation[:, :, 2]
    # The principal ray c + s f passes within 1e-4 of the origin (s = 4).
    closest = centres + 4.0 * forward
    np.testing.assert_allclose(closest, 0.0, atol=1e-4)
    assert np.all(rotation[:, 2, 1] > 0)  # image up points to world +z
  azimuth = np.arctan2(*scene.split('train').poses[:, 1::-1, 3].T)
  assert np.ptp(azimuth) > np.pi  # train views spread around the object


def test_at_least_four_distinct_hues():
  scene = procedural.make_scene(48, 48, num_train=6, num_val=1, num_test=1)
  split = scene.split('train')
  pixels = split.images[split.alphas == 1]
  hsv = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
  vivid = hsv[(hsv[:, 1] > 0.5) & (hsv[:, 2] > 0.2)]
  counts = np.bincount((vivid[:, 0] * 12).astype(int) % 12, minlength=12)
  assert np.sum(counts > 0.02 * len(pixels)) >= 4, counts


def test_procedural_rejects_bad_counts():
  with pytest.raises(datasets.DatasetError):
    procedural.make_scene(8, 8, num_train=0)


# ------------------------------------------------------------------ tiny npz


def _write_npz(path, n: int, size: int, seed: int = 0, focal: float = 12.5):
  rng = np.random.default_rng(seed)
  arrays = dict(images=rng.uniform(size=(n, size, size, 3)).astype(np.float32),
                poses=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
                focal=np.float32(focal))
  arrays['poses'][:, :3, 3] = rng.normal(size=(n, 3))
  np.savez(path, **arrays)
  return arrays


def _blob_id(data: bytes) -> str:
  return hashlib.sha1(b'blob %d\0' % len(data) + data).hexdigest()


def test_git_blob_id_matches_git():
  # `git hash-object` of an empty file and of b'hello\n'.
  assert _blob_id(b'') == 'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
  assert _blob_id(b'hello\n') == 'ce013625030ba8dba906f756967f9e9ca394464a'


def test_tiny_default_split_on_106_views(tmp_path):
  arrays = _write_npz(tmp_path / 'd.npz', 106, 4)
  scene = tiny_npz.load_tiny_npz(str(tmp_path / 'd.npz'))
  assert scene.name == 'tiny_npz' and not scene.white_background
  np.testing.assert_array_equal(scene.split('train').indices, np.arange(100))
  np.testing.assert_array_equal(scene.split('val').indices,
                                np.arange(100, 106))
  np.testing.assert_array_equal(scene.split('test').indices, [101])
  np.testing.assert_array_equal(scene.split('test').images[0],
                                arrays['images'][101])
  np.testing.assert_array_equal(scene.split('val').poses,
                                arrays['poses'][100:])
  k = scene.split('train').intrinsics
  assert (k.fx, k.width, k.height, k.cx) == (12.5, 4, 4, 2.0)


def test_tiny_val_indices_and_fraction(tmp_path):
  path = str(tmp_path / 's.npz')
  arrays = _write_npz(path, 8, 10)
  scene = tiny_npz.load_tiny_npz(path, val_indices=(2, 5))
  np.testing.assert_array_equal(scene.split('val').indices, [2, 5])
  np.testing.assert_array_equal(scene.split('train').indices,
                                [0, 1, 3, 4, 6, 7])
  np.testing.assert_array_equal(scene.split('val').images,
                                arrays['images'][[2, 5]])
  assert 'test' not in scene.splits  # no view 101 in an 8-view file
  scene = tiny_npz.load_tiny_npz(path, val_fraction=0.25)
  np.testing.assert_array_equal(scene.split('val').indices, [0, 4])
  np.testing.assert_array_equal(scene.split('train').indices,
                                [1, 2, 3, 5, 6, 7])
  scene = tiny_npz.load_tiny_npz(path, test_indices=(3,), near=1.0, far=3.0)
  np.testing.assert_array_equal(scene.split('test').indices, [3])
  assert (scene.near, scene.far) == (1.0, 3.0)
  with pytest.raises(datasets.DatasetError, match='out of range'):
    tiny_npz.load_tiny_npz(path, val_indices=(8,))
  with pytest.raises(datasets.DatasetError, match='not both'):
    tiny_npz.load_tiny_npz(path, val_indices=(1,), val_fraction=0.5)


def test_tiny_errors_are_one_line(tmp_path):
  with pytest.raises(datasets.DatasetError, match='not found') as e:
    tiny_npz.load_tiny_npz(str(tmp_path / 'absent.npz'))
  one_line(e)
  (tmp_path / 'corrupt.npz').write_bytes(b'this is not a zip file\n' * 10)
  with pytest.raises(datasets.DatasetError, match='corrupt.npz') as e:
    tiny_npz.load_tiny_npz(str(tmp_path / 'corrupt.npz'))
  one_line(e)
  _write_npz(tmp_path / 'whole.npz', 3, 4)
  data = (tmp_path / 'whole.npz').read_bytes()
  (tmp_path / 'cut.npz').write_bytes(data[:len(data) // 2])
  with pytest.raises(datasets.DatasetError, match='cut.npz') as e:
    tiny_npz.load_tiny_npz(str(tmp_path / 'cut.npz'))
  one_line(e)
  np.savez(tmp_path / 'nofocal.npz', images=np.zeros((3, 4, 4, 3)),
           poses=np.zeros((3, 4, 4)))
  with pytest.raises(datasets.DatasetError, match='focal') as e:
    tiny_npz.load_tiny_npz(str(tmp_path / 'nofocal.npz'))
  one_line(e)
  np.savez(tmp_path / 'nan.npz', images=np.zeros((3, 4, 4, 3)),
           poses=np.stack([np.eye(4), np.full((4, 4), np.nan), np.eye(4)]),
           focal=5.0)
  with pytest.raises(datasets.DatasetError, match=r'\[1\].*NaN') as e:
    tiny_npz.load_tiny_npz(str(tmp_path / 'nan.npz'), val_indices=(0,))
  one_line(e)
  np.savez(tmp_path / 'shape.npz', images=np.zeros((3, 4, 4)),
           poses=np.zeros((3, 4, 4)), focal=5.0)
  with pytest.raises(datasets.DatasetError, match='images') as e:
    tiny_npz.load_tiny_npz(str(tmp_path / 'shape.npz'))
  one_line(e)


@pytest.fixture
def http_root(tmp_path):
  """Serves tmp_path/'www' on 127.0.0.1; yields (folder, base url)."""
  root = tmp_path / 'www'
  root.mkdir()

  class Quiet(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
      del args

  handler = functools.partial(Quiet, directory=str(root))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield root, f'http://127.0.0.1:{server.server_address[1]}'
  server.shutdown()
  server.server_close()


@pytest.fixture
def served_npz(http_root, monkeypatch):
  root, base = http_root
  _write_npz(root / 'tiny_nerf_data.npz', 8, 5, seed=7)
  data = (root / 'tiny_nerf_data.npz').read_bytes()
  monkeypatch.setattr(tiny_npz, 'TINY_NPZ_BLOB_ID', _blob_id(data))
  return f'{base}/tiny_nerf_data.npz', data


def test_tiny_download_verifies_and_caches(tmp_path, served_npz, monkeypatch):
  url, data = served_npz
  cache = tmp_path / 'cache'
  # The first URL is unreachable: the loader falls through to the next one.
  monkeypatch.setattr(tiny_npz, 'TINY_NPZ_URLS',
                      ('http://127.0.0.1:9/tiny_nerf_data.npz', url))
  scene = tiny_npz.load_tiny_npz(cache_dir=str(cache))
  assert len(scene.split('train')) + len(scene.split('val')) == 8
  assert os.listdir(cache) == ['tiny_nerf_data.npz']
  assert (cache / 'tiny_nerf_data.npz').read_bytes() == data

  def no_network(*args, **kwargs):
    raise AssertionError(f'network used: {args} {kwargs}')

  monkeypatch.setattr(tiny_npz.urllib.request, 'urlopen', no_network)
  again = tiny_npz.load_tiny_npz(cache_dir=str(cache))
  np.testing.assert_array_equal(again.split('val').images,
                                scene.split('val').images)


def test_tiny_download_replaces_a_bad_cached_file(tmp_path, served_npz):
  url, data = served_npz
  cache = tmp_path / 'cache'
  cache.mkdir()
  (cache / 'tiny_nerf_data.npz').write_bytes(data[:-10] + b'0123456789')
  tiny_npz.load_tiny_npz(cache_dir=str(cache), url=url)
  assert (cache / 'tiny_nerf_data.npz').read_bytes() == data


def test_tiny_download_checksum_mismatch(tmp_path, served_npz, monkeypatch):
  url, _ = served_npz
  monkeypatch.setattr(tiny_npz, 'TINY_NPZ_BLOB_ID', '0' * 40)
  cache = tmp_path / 'cache'
  with pytest.raises(datasets.DatasetError, match='checksum') as e:
    tiny_npz.load_tiny_npz(cache_dir=str(cache), url=url)
  one_line(e)
  assert os.listdir(cache) == []


def test_tiny_download_offline_error(tmp_path):
  with pytest.raises(datasets.DatasetError) as e:
    tiny_npz.load_tiny_npz(cache_dir=str(tmp_path / 'cache'),
                           url='http://127.0.0.1:9/tiny_nerf_data.npz')
  message = one_line(e)
  assert 'demo.py' in message and '--config.data.path=' in message
  assert os.listdir(tmp_path / 'cache') == []


def test_default_cache_dir(monkeypatch, tmp_path):
  monkeypatch.setenv('NERF_JAX_CACHE', str(tmp_path / 'a'))
  assert tiny_npz.default_cache_dir() == str(tmp_path / 'a')
  monkeypatch.delenv('NERF_JAX_CACHE')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'x'))
  assert tiny_npz.default_cache_dir() == str(tmp_path / 'x' / 'nerf_jax')
  monkeypatch.delenv('XDG_CACHE_HOME')
  assert tiny_npz.default_cache_dir() == os.path.join(
      os.path.expanduser('~'), '.cache', 'nerf_jax')


def test_real_tiny_lego():
  path = SHARED_DATA / 'tiny_lego.npz'
  if not path.is_file():
    pytest.skip(f'{path} is absent')
  scene = tiny_npz.load_tiny_npz(str(path))
  assert len(scene.split('train')) == 100 and len(scene.split('val')) == 6
  assert scene.split('train').images.shape == (100, 100, 100, 3)
  np.testing.assert_array_equal(scene.split('test').indices, [101])
  np.testing.assert_allclose(scene.split('val').intrinsics.fx, 138.889,
                             atol=1e-3)
  centres = scene.split('train').poses[:, :3, 3]
  np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 4.03, atol=0.05)


# ------------------------------------------------------------------- blender

_ANGLE = 0.7


def _rgba(seed: int, size: int = 8) -> np.ndarray:
  rng = np.random.default_rng(seed)
  rgba = rng.integers(0, 256, size=(size, size, 4), dtype=np.uint8)
  rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255  # fully clear and fully opaque
  return rgba


def _make_blender(root: pathlib.Path, counts=(('train', 2), ('val', 1))):
  """Writes a mini Blender scene; returns {split: [uint8 rgba, ...]}."""
  images = {}
  for split, n in counts:
    (root / split).mkdir(parents=True)
    frames = []
    for i in range(n):
      rgba = _rgba(seed=len(images) * 10 + i)
      iio.imwrite(root / split / f'r_{i}.png', rgba)
      pose = np.eye(4)
      pose[:3, 3] = [i, 2.0, 3.0]
      name = f'./{split}/r_{i}' + ('.png' if i == 1 else '')
      frames.append(dict(file_path=name, transform_matrix=pose.tolist()))
    images[split] = [_rgba(seed=len(images) * 10 + i) for i in range(n)]
    (root / f'transforms_{split}.json').write_text(
        json.dumps(dict(camera_angle_x=_ANGLE, frames=frames)))
  return images


@pytest.mark.parametrize('white', [True, False])
def test_blender_composites_onto_background(tmp_path, white):
  root = tmp_path / 'mini'
  raw = _make_blender(root)
  scene = blender.load_blender(str(root), white_background=white)
  assert scene.name == 'mini' and scene.white_background == white
  assert sorted(scene.splits) == ['train', 'val']
  train = scene.split('train')
  assert train.images.shape == (2, 8, 8, 3)
  rgba = raw['train'][0].astype(np.float64) / 255
  bg = 1.0 if white else 0.0
  expected = rgba[..., :3] * rgba[..., 3:] + bg * (1 - rgba[..., 3:])
  np.testing.assert_allclose(train.images[0], expected, atol=1e-6)
  np.testing.assert_allclose(train.images[0, 0, 0], bg, atol=1e-6)  # a = 0
  np.testing.assert_allclose(train.images[0, 0, 1], rgba[0, 1, :3], atol=1e-6)
  np.testing.assert_allclose(train.intrinsics.fx,
                             0.5 * 8 / np.tan(0.5 * _ANGLE), rtol=1e-6)
  np.testing.assert_array_equal(train.poses[1, :3, 3], [1.0, 2.0, 3.0])


def test_blender_downsample_is_a_block_mean(tmp_path):
  root = tmp_path / 'mini'
  raw = _make_blender(root)
  scene = blender.load_blender(str(root), downsample=2, white_background=True)
  val = scene.split('val')
  assert val.images.shape == (1, 4, 4, 3)
  rgba = raw['val'][0].astype(np.float64) / 255
  for i in range(4):
    for j in range(4):
      block = rgba[2 * i:2 * i + 2, 2 * j:2 * j + 2].reshape(4, 4)
      alpha = block[:, 3].mean()
      colour = (block[:, :3] * block[:, 3:]).mean(0) + (1 - alpha)
      np.testing.assert_allclose(val.images[0, i, j], colour, atol=1e-6)
  np.testing.assert_allclose(val.intrinsics.fx, 0.5 * 4 / np.tan(0.5 * _ANGLE),
                             rtol=1e-6)
  assert (val.intrinsics.width, val.intrinsics.cx) == (4, 2.0)


def test_blender_max_views_and_rgb_png(tmp_path):
  root = tmp_path / 'mini'
  raw = _make_blender(root)
  iio.imwrite(root / 'train' / 'r_0.png', raw['train'][0][..., :3])  # no alpha
  scene = blender.load_blender(str(root), max_views=1, splits=('train',))
  assert list(scene.splits) == ['train'] and len(scene.split('train')) == 1
  np.testing.assert_allclose(scene.split('train').images[0],
                             raw['train'][0][..., :3] / 255, atol=1e-6)


def test_blender_errors_name_the_file(tmp_path):
  with pytest.raises(datasets.DatasetError, match='not found'):
    blender.load_blender(str(tmp_path / 'nowhere'))
  root = tmp_path / 'mini'
  _make_blender(root, counts=(('val', 1),))
  with pytest.raises(datasets.DatasetError, match='transforms_train.json') as e:
    blender.load_blender(str(root))
  one_line(e)
  root = tmp_path / 'missing_png'
  _make_blender(root)
  os.remove(root / 'train' / 'r_1.png')
  with pytest.raises(datasets.DatasetError, match='r_1.png') as e:
    blender.load_blender(str(root))
  one_line(e)
  (root / 'train' / 'r_1.png').write_bytes(b'not a png')
  with pytest.raises(datasets.DatasetError, match='r_1.png') as e:
    blender.load_blender(str(root))
  one_line(e)
  (root / 'transforms_val.json').write_text('{"camera_angle_x": 0.7, "fra')
  with pytest.raises(datasets.DatasetError, match='transforms_val.json') as e:
    blender.load_blender(str(root), splits=('val',))
  one_line(e)
  (root / 'transforms_val.json').write_text('{"frames": []}')
  with pytest.raises(datasets.DatasetError, match='camera_angle_x'):
    blender.load_blender(str(root), splits=('val',))


def test_real_lego_blender():
  path = SHARED_DATA / 'nerf_synthetic' / 'lego'
  if not (path / 'transforms_train.json').is_file():
    pytest.skip(f'{path} is absent')
  scene = blender.load_blender(str(path), downsample=8, max_views=2)
  assert scene.name == 'lego'
  angle = json.loads((path / 'transforms_train.json').read_text())[
      'camera_angle_x']
  for split in scene.splits.values():
    assert split.images.shape == (2, 100, 100, 3)
    np.testing.assert_allclose(split.intrinsics.fx,
                               0.5 * 100 / np.tan(0.5 * angle), rtol=1e-6)
    np.testing.assert_allclose(split.images[:, 0, 0], 1.0, atol=1e-6)
    assert split.images.min() < 0.5  # the model is there, not just white


# ------------------------------------------------------------- load_scene


def _data_cfg(**overrides):
  fields = dict(kind='procedural', path='', near=2.0, far=6.0,
                white_background=False, seed=0, width=8, height=6,
                num_train=2, num_val=1, num_test=1, downsample=1,
                max_views=0, val_indices=(), val_fraction=0.0, cache_dir='')
  fields.update(overrides)
  return types.SimpleNamespace(**fields)


def test_load_scene_dispatches(tmp_path):
  scene = datasets.load_scene(_data_cfg(seed=2, white_background=True))
  assert scene.name == 'procedural' and scene.white_background
  assert scene.split('train').images.shape == (2, 6, 8, 3)
  _write_npz(tmp_path / 't.npz', 8, 4)
  scene = datasets.load_scene(_data_cfg(kind='tiny_npz',
                                        path=str(tmp_path / 't.npz'),
                                        val_indices=(1, 2)))
  np.testing.assert_array_equal(scene.split('val').indices, [1, 2])
  _make_blender(tmp_path / 'mini')
  scene = datasets.load_scene(_data_cfg(kind='blender', downsample=2,
                                        path=str(tmp_path / 'mini'),
                                        white_background=True))
  assert scene.name == 'mini' and scene.split('train').images.shape[1] == 4


def test_load_scene_with_config_dict():
  ml_collections = pytest.importorskip('ml_collections')
  cfg = ml_collections.ConfigDict(vars(_data_cfg(num_test=0)))
  scene = datasets.load_scene(cfg)
  assert sorted(scene.splits) == ['train', 'val']


def test_load_scene_errors():
  with pytest.raises(datasets.DatasetError, match='unknown data.kind'):
    datasets.load_scene(_data_cfg(kind='colmap'))
  with pytest.raises(datasets.DatasetError, match='has no files'):
    datasets.load_scene(_data_cfg(path='/some/file'))
  with pytest.raises(datasets.DatasetError, match='not found'):
    datasets.load_scene(_data_cfg(kind='blender', path=''))
