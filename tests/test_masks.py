"""Per-frame masks of a transforms.json capture (nerfstudio's ``mask_path``,
instant-ngp's ``dynamic_mask_<stem>.png``): loaded with the right polarity
and downsampling, never drawn for training, left out of held-out PSNR."""

from __future__ import annotations

import json
import pathlib

import imageio.v3 as iio
import jax
import numpy as np
import pytest

from nerf_jax import datasets, distributed
from nerf_jax.cameras import camera
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.inference import evaluate
from nerf_jax.io import images as images_lib

H, W = 8, 12  # the capture's images, full resolution


def _ring(n: int) -> list:
  return [camera.look_at(np.array([4 * np.cos(t), 4 * np.sin(t), 1.0]),
                         np.zeros(3))
          for t in np.linspace(0, 2 * np.pi, n, endpoint=False)]


def _write_capture(root: pathlib.Path, seed: int = 0,
                   half_mask: bool = False) -> dict:
  """Four frames: 0 with a full-size mask_path (grey, 0/255), 1 (a JPEG)
  with a dynamic mask beside it (RGB, only green set where dynamic), 2
  without a mask, 3 (if ``half_mask``) with a mask_path of half the size.

  Returns:
    dict of the masks written: 'path0' bool[H, W] (True = used), 'dynamic1'
    bool[H, W] (True = dynamic), 'half3' bool[H / 2, W / 2] (True = used).
  """
  rng = np.random.default_rng(seed)
  (root / 'images').mkdir(parents=True)
  (root / 'masks').mkdir()
  names = ['0.png', '1.jpg', '2.png'] + (['3.png'] if half_mask else [])
  frames = []
  for name, pose in zip(names, _ring(len(names))):
    iio.imwrite(root / 'images' / name,
                rng.integers(0, 255, (H, W, 3), np.uint8))
    frames.append(dict(file_path=f'images/{name}',
                       transform_matrix=pose.tolist()))
  written = dict(path0=rng.uniform(size=(H, W)) < 0.8,
                 dynamic1=rng.uniform(size=(H, W)) < 0.2,
                 half3=rng.uniform(size=(H // 2, W // 2)) < 0.7)
  iio.imwrite(root / 'masks' / '0.png',
              np.where(written['path0'], 255, 0).astype(np.uint8))
  frames[0]['mask_path'] = 'masks/0.png'
  dynamic = np.zeros((H, W, 3), np.uint8)
  dynamic[..., 1] = np.where(written['dynamic1'], 7, 0)
  iio.imwrite(root / 'images' / 'dynamic_mask_1.png', dynamic)
  if half_mask:
    iio.imwrite(root / 'masks' / '3.png',
                np.where(written['half3'], 1, 0).astype(np.uint8))
    frames[3]['mask_path'] = 'masks/3.png'
  top = dict(fl_x=10.0, fl_y=10.0, cx=W / 2, cy=H / 2, w=W, h=H)
  (root / 'transforms.json').write_text(json.dumps(dict(top, frames=frames)))
  return written


def _block_all(used: np.ndarray, f: int) -> np.ndarray:
  h, w = used.shape[0] // f, used.shape[1] // f
  return np.array([[used[f * i:f * i + f, f * j:f * j + f].all()
                    for j in range(w)] for i in range(h)])


def test_masks_load_with_each_conventions_polarity(tmp_path):
  written = _write_capture(tmp_path / 'cap')
  train = datasets.load_transforms(str(tmp_path / 'cap'),
                                   holdout=0).split('train')
  assert train.masks.dtype == bool and train.masks.shape == (3, H, W)
  np.testing.assert_array_equal(train.masks[0], written['path0'])
  np.testing.assert_array_equal(train.masks[1], ~written['dynamic1'])
  assert train.masks[2].all()  # no mask: every pixel used


def test_masks_downsample_with_the_images(tmp_path):
  written = _write_capture(tmp_path / 'cap', seed=1, half_mask=True)
  train = datasets.load_transforms(str(tmp_path / 'cap'), downsample=2,
                                   holdout=0).split('train')
  assert train.images.shape[1:3] == train.masks.shape[1:] == (H // 2, W // 2)
  # A downsampled pixel is used only if all four it averages are.
  np.testing.assert_array_equal(train.masks[0],
                                _block_all(written['path0'], 2))
  np.testing.assert_array_equal(train.masks[1],
                                _block_all(~written['dynamic1'], 2))
  assert train.masks[2].all()
  np.testing.assert_array_equal(train.masks[3], written['half3'])  # as is
  # At full resolution the half-size mask fits neither size: one line.
  with pytest.raises(datasets.DatasetError, match='3.png: the mask is 6x4 '
                     'but its image is 12x8') as e:
    datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  assert '\n' not in str(e.value)


def test_a_capture_without_masks_has_none(tmp_path):
  _write_capture(tmp_path / 'cap')
  (tmp_path / 'cap' / 'images' / 'dynamic_mask_1.png').unlink()
  meta = json.loads((tmp_path / 'cap' / 'transforms.json').read_text())
  del meta['frames'][0]['mask_path']
  (tmp_path / 'cap' / 'transforms.json').write_text(json.dumps(meta))
  scene = datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  assert scene.split('train').masks is None


def test_training_draws_only_used_pixels_with_their_colours(tmp_path):
  _write_capture(tmp_path / 'cap', seed=2)
  split = datasets.load_transforms(str(tmp_path / 'cap'),
                                   holdout=0).split('train')
  table = batch_lib.PixelTable.from_split(split, distributed.make_mesh())
  assert table.num_pixels == int(split.masks.sum())
  pixels = batch_lib.draw_pixels(jax.random.PRNGKey(0), table, 4096)
  v, r, c = (np.asarray(x) for x in (pixels.view, pixels.row, pixels.col))
  assert split.masks[v, r, c].all()
  np.testing.assert_allclose(pixels.rgb, split.images[v, r, c],
                             atol=0.5 / 255)
  # Uniform over the used pixels: ~270 of them, 4096 draws reach each one.
  assert len(set(zip(v, r, c))) == table.num_pixels


def test_table_of_differently_sized_views_one_masked_out():
  rng = np.random.default_rng(3)
  sizes = [(4, 5), (3, 6), (5, 4)]
  images = [rng.uniform(size=s + (3,)).astype(np.float32) for s in sizes]
  masks = [rng.uniform(size=s) < 0.6 for s in sizes]
  masks[1][:] = False  # a view the masks leave empty is never drawn
  poses = np.stack(_ring(3))
  table = batch_lib.PixelTable.create(
      images, poses, [camera.Intrinsics.from_focal(5.0, w, h)
                      for h, w in sizes], masks=masks)
  np.testing.assert_array_equal(
      table.starts, [0, masks[0].sum(), masks[0].sum()])
  pixels = batch_lib.draw_pixels(jax.random.PRNGKey(1), table, 2000)
  v, r, c = (np.asarray(x) for x in (pixels.view, pixels.row, pixels.col))
  assert set(v.tolist()) == {0, 2}
  assert all(masks[i][j, k] for i, j, k in zip(v, r, c))
  want = np.stack([images[i][j, k] for i, j, k in zip(v, r, c)])
  np.testing.assert_array_equal(pixels.rgb, want)
  # Masks that keep every pixel: the plain table, without offsets.
  full = batch_lib.PixelTable.create(
      images, poses, [camera.Intrinsics.from_focal(5.0, w, h)
                      for h, w in sizes], masks=[np.ones(s, bool)
                                                 for s in sizes])
  assert full.offset is None and full.num_pixels == sum(
      h * w for h, w in sizes)
  with pytest.raises(datasets.DatasetError, match='no training pixel'):
    batch_lib.PixelTable.create(images, poses, [
        camera.Intrinsics.from_focal(5.0, w, h) for h, w in sizes],
                                masks=[np.zeros(s, bool) for s in sizes])


def test_held_out_psnr_ignores_masked_pixels(tmp_path, monkeypatch):
  rng = np.random.default_rng(4)
  n = 3
  gt = rng.uniform(size=(n, H, W, 3)).astype(np.float32)
  masks = rng.uniform(size=(n, H, W)) < 0.7
  masks[2] = False  # nothing to score: left out of the means
  split = datasets.Split(
      images=gt, cameras=camera.Cameras.create(
          np.stack(_ring(n)), camera.Intrinsics.from_focal(10.0, W, H)),
      indices=np.arange(n), masks=masks)
  # View 0 is wrong only where masked; view 1 also a little where used.
  pred = np.where(masks[..., None], gt, 1.0 - gt).astype(np.float32)
  pred[1] += np.where(masks[1][..., None], 0.03, 0.0).astype(np.float32)
  monkeypatch.setattr(
      evaluate.chunked, 'render_camera',
      lambda fn, var, cams, i, near, far, chunk: dict(rgb=pred[i]))
  result = evaluate.evaluate_split(None, None, split, 1.0, 5.0, 64,
                                   image_dir=str(tmp_path))
  views = result['views']
  assert views[0]['psnr'] > 100 and views[0]['ssim'] == pytest.approx(1.0)
  used = masks[1]
  mse = np.mean((pred[1][used].astype(np.float64) - gt[1][used]) ** 2)
  assert views[1]['psnr'] == pytest.approx(-10 * np.log10(mse), abs=1e-6)
  assert views[2]['masked'] and np.isnan(views[2]['psnr'])
  assert result['psnr'] == pytest.approx(
      (views[0]['psnr'] + views[1]['psnr']) / 2)
  # The written renders stay whole, masked pixels included.
  np.testing.assert_array_equal(iio.imread(tmp_path / '0000.png'),
                                images_lib.to_uint8(pred[0]))


def test_missing_or_broken_mask_files_are_one_line(tmp_path):
  _write_capture(tmp_path / 'cap')
  mask = tmp_path / 'cap' / 'masks' / '0.png'
  mask.unlink()
  with pytest.raises(datasets.DatasetError, match='masks/0.png: no such '
                     'mask file') as e:
    datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  assert '\n' not in str(e.value)
  mask.write_bytes(b'not a png')
  with pytest.raises(datasets.DatasetError, match='masks/0.png: cannot '
                     'read image') as e:
    datasets.load_transforms(str(tmp_path / 'cap'), holdout=0)
  assert '\n' not in str(e.value)
