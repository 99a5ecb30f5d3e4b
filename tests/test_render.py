"""Tests of rendering (cameras.paths, inference.chunked) and render.py: paths,
chunking, videos, evaluation."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import pytest

from configs import demo
from nerf_jax import datasets, metrics
from nerf_jax.cameras import camera, paths
from nerf_jax.inference import chunked, evaluate
from nerf_jax.runs import load
from nerf_jax.train import loop

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A small model trained on the built-in scene (seconds)."""
  config = demo.get_config()
  config.data.width, config.data.height = 20, 16
  config.data.num_train, config.data.num_val, config.data.num_test = 12, 2, 1
  config.model.preset, config.model.num_coarse = 'tiny', 12
  config.model.num_fine = 6
  config.train.batch_rays, config.train.max_steps = 256, 30
  config.train.warmup_steps = 0
  config.eval.every, config.checkpoint.every = 30, 30
  workdir = str(tmp_path_factory.mktemp('run'))
  record = loop.train_and_evaluate(config, workdir, progress=False)
  return workdir, record


def render_cli(*args, cwd=None):
  return subprocess.run([sys.executable, str(ROOT / 'render.py'), *args],
                        capture_output=True, text=True, timeout=300,
                        cwd=cwd, stdin=subprocess.DEVNULL)


def one_error_line(proc):
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
  return lines[0]


@pytest.mark.parametrize('n', [1, 5, 120])
def test_orbit_is_evenly_spaced_looks_at_origin_and_loops(n):
  poses = paths.orbit_poses(n, elevation_deg=30.0, radius=4.0)
  assert poses.shape == (n, 4, 4)
  centres = poses[:, :3, 3]
  np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 4.0, rtol=1e-5)
  np.testing.assert_allclose(centres[:, 2], 4.0 * np.sin(np.radians(30.0)),
                             rtol=1e-5)
  forward = -poses[:, :3, 2]  # the camera looks down its -z axis
  np.testing.assert_allclose(forward, -centres / 4.0, atol=1e-5)
  azimuth = np.degrees(np.arctan2(centres[:, 1], centres[:, 0]))
  if n > 1:
    # Equal steps in one direction, the last frame to the first included, so
    # the loop is seamless and no frame repeats.
    steps = np.diff(np.concatenate([azimuth, azimuth[:1]])) % 360.0
    step = steps[0] if steps[0] < 180.0 else steps[0] - 360.0
    np.testing.assert_allclose(abs(step), 360.0 / n, atol=1e-3)
    np.testing.assert_allclose(steps, step % 360.0, atol=1e-3)
    assert len(np.unique(np.round(azimuth, 3) % 360.0)) == n


def test_chunked_rendering_equals_unchunked(trained):
  workdir, _ = trained
  _, _, model, params, _ = load.load_trained(workdir)
  fn = chunked.make_render_fn(model)
  intr = camera.Intrinsics.from_focal(30.0, 13, 11)
  pose = paths.orbit_poses(3, 40.0, 4.0)[1]
  whole = chunked.render_view(fn, params, intr, pose, 2.0, 6.0, 13 * 11)
  for chunk in (7, 64, 1000):
    part = chunked.render_view(fn, params, intr, pose, 2.0, 6.0, chunk)
    for k in whole:
      np.testing.assert_allclose(part[k], whole[k], rtol=1e-5, atol=1e-6)
  assert whole['rgb'].shape == (11, 13, 3) and whole['depth'].shape == (11, 13)


def test_render_function_compiles_once_per_chunk_shape(trained):
  workdir, _ = trained
  _, _, model, params, _ = load.load_trained(workdir)
  fn = chunked.make_render_fn(model)
  for w, h in ((9, 7), (20, 16), (5, 7)):  # all at least one chunk
    intr = camera.Intrinsics.from_focal(20.0, w, h)
    chunked.render_view(fn, params, intr, np.eye(4, dtype=np.float32) +
                        np.diag([0, 0, 0, 0]), 2.0, 6.0, 32)
  assert fn._cache_size() == 1


@pytest.mark.parametrize('fmt, layout', [('mp4', 'separate'), ('gif', 'side'),
                                         ('png', 'rgb')])
def test_video_has_requested_frames_and_size(trained, tmp_path, fmt, layout):
  workdir, _ = trained
  out = tmp_path / 'out'
  proc = render_cli('--ckpt', workdir, '--frames', '5', '--format', fmt,
                    '--layout', layout, '--scale', '2', '--out', str(out),
                    '--progress=false')
  assert proc.returncode == 0, proc.stderr
  width = 40 * (2 if layout == 'side' else 1)
  if fmt == 'mp4':
    for name in ('orbit_rgb.mp4', 'orbit_depth.mp4'):
      reader = iio2.get_reader(str(out / name), 'ffmpeg')
      frames = [f for f in reader]
      assert len(frames) == 5 and frames[0].shape == (32, width, 3)
  elif fmt == 'gif':
    frames = iio.imread(out / 'orbit_side.gif', index=None)
    assert frames.shape[:3] == (5, 32, width)
  else:
    files = sorted(os.listdir(out / 'orbit_rgb'))
    assert files == [f'{i:04d}.png' for i in range(5)]
    assert iio.imread(out / 'orbit_rgb' / files[0]).shape == (32, width, 3)
  assert str(out) in proc.stdout


def test_mp4_encoder_failure_falls_back_to_gif(trained, tmp_path):
  workdir, _ = trained
  env = dict(os.environ, IMAGEIO_FFMPEG_EXE=str(tmp_path / 'no-ffmpeg'))
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'render.py'), '--ckpt', workdir, '--frames',
       '3', '--layout', 'rgb', '--out', str(tmp_path), '--progress=false'],
      capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr
  warnings = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(warnings) == 1 and 'GIF' in warnings[0], proc.stderr
  assert iio.imread(tmp_path / 'orbit_rgb.gif', index=None).shape[0] == 3
  assert not any(f.endswith('.mp4') for f in os.listdir(tmp_path))


def test_camera_path_from_json_with_intrinsics(trained, tmp_path):
  workdir, _ = trained
  poses = paths.orbit_poses(3, 20.0, 4.5)
  doc = dict(poses=poses[:, :3].tolist(),
             intrinsics=dict(fx=20.0, fy=20.0, cx=6.0, cy=5.0, width=12,
                             height=10))
  (tmp_path / 'cams.json').write_text(json.dumps(doc))
  proc = render_cli('--ckpt', workdir, '--path', str(tmp_path / 'cams.json'),
                    '--format', 'gif', '--layout', 'rgb', '--out',
                    str(tmp_path / 'o'), '--progress=false')
  assert proc.returncode == 0, proc.stderr
  frames = iio.imread(tmp_path / 'o' / 'cams_rgb.gif', index=None)
  assert frames.shape[:3] == (3, 10, 12)


def test_eval_reproduces_training_psnr(trained, tmp_path):
  workdir, record = trained
  proc = render_cli('--ckpt', workdir, '--eval', 'config', '--split', 'val',
                    '--out', str(tmp_path), '--progress=false')
  assert proc.returncode == 0, proc.stderr
  report = json.loads((tmp_path / 'eval_config_val' / 'metrics.json').read_text())
  np.testing.assert_allclose(report['psnr'], record['psnr'], atol=1e-3)
  np.testing.assert_allclose(report['ssim'], record['ssim'], atol=1e-4)
  assert [v['index'] for v in report['views']] == [0, 1]
  assert sorted(os.listdir(tmp_path / 'eval_config_val')) == [
      '0000.png', '0001.png', 'metrics.json']
  assert 'mean' in proc.stdout


def test_eval_appearance_fit_scores_the_right_halves(trained, tmp_path):
  workdir, record = trained
  proc = render_cli('--ckpt', workdir, '--eval', 'config', '--split', 'val',
                    '--eval_appearance', 'fit', '--out', str(tmp_path),
                    '--progress=false')
  assert proc.returncode == 0, proc.stderr
  assert 'right half' in proc.stdout
  folder = tmp_path / 'eval_config_val'
  report = json.loads((folder / 'metrics.json').read_text())
  assert report['appearance'] == 'fit'
  config = load.load_trained(workdir)[0]
  split = datasets.load_scene(config.data, splits=('val',)).split('val')
  for i, view in enumerate(report['views']):
    rgb = iio.imread(folder / f'{view["index"]:04d}.png') / 255.0
    gt = np.asarray(split.images[i])
    half = gt.shape[1] // 2  # the written render is whole
    assert rgb.shape == gt.shape
    np.testing.assert_allclose(
        view['psnr'], metrics.psnr(rgb[:, half:], gt[:, half:]), atol=0.05)
  assert abs(report['psnr'] - record['psnr']) > 1e-3
  # A run without codes has no code to choose.
  line = one_error_line(render_cli('--ckpt', workdir, '--eval', 'config',
                                   '--appearance', '0', '--out',
                                   str(tmp_path / 'o')))
  assert 'no appearance codes' in line


def test_eval_on_tiny_npz_uses_its_own_camera(trained, tmp_path):
  workdir, _ = trained
  poses = paths.orbit_poses(4, 30.0, 4.0)
  np.savez(tmp_path / 'views.npz', images=np.zeros((4, 9, 7, 3), np.float32),
           poses=poses, focal=np.float32(12.0))
  proc = render_cli('--ckpt', workdir, '--eval', str(tmp_path / 'views.npz'),
                    '--out', str(tmp_path / 'o'), '--progress=false')
  assert proc.returncode == 0, proc.stderr
  out = tmp_path / 'o' / 'eval_views_test'
  report = json.loads((out / 'metrics.json').read_text())
  assert len(report['views']) == 4
  assert iio.imread(out / '0000.png').shape == (9, 7, 3)


def test_missing_checkpoint_is_one_clear_line(tmp_path):
  line = one_error_line(render_cli('--ckpt', str(tmp_path / 'nope')))
  assert 'does not exist' in line


def test_folder_without_config_is_one_clear_line(tmp_path):
  line = one_error_line(render_cli('--ckpt', str(tmp_path)))
  assert 'config.json' in line


def test_unreadable_dataset_is_one_clear_line(trained, tmp_path):
  workdir, _ = trained
  (tmp_path / 'bad.npz').write_bytes(b'not a zip file')
  line = one_error_line(render_cli('--ckpt', workdir, '--eval',
                                   str(tmp_path / 'bad.npz'), '--out',
                                   str(tmp_path / 'o')))
  assert 'bad.npz' in line


def test_appearance_of_a_run_without_codes_is_one_clear_line(trained,
                                                            tmp_path):
  workdir, _ = trained
  line = one_error_line(render_cli('--ckpt', workdir, '--appearance', '0',
                                   '--out', str(tmp_path / 'o')))
  assert 'no appearance codes' in line
  assert not (tmp_path / 'o').exists()


def _write_blender(root, split, poses, size=(6, 8)):
  h, w = size
  (root / split).mkdir(parents=True)
  frames = []
  for i, pose in enumerate(poses):
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255 if i % 2 else 0
    iio.imwrite(root / split / f'r_{i}.png', rgba)
    frames.append(dict(file_path=f'./{split}/r_{i}',
                       transform_matrix=pose.tolist()))
  doc = dict(camera_angle_x=0.69, frames=frames)
  (root / f'transforms_{split}.json').write_text(json.dumps(doc))


def test_eval_on_blender_folder_split_and_missing_split(trained, tmp_path):
  workdir, _ = trained
  scene = tmp_path / 'scene'
  poses = paths.orbit_poses(3, 30.0, 4.0)
  _write_blender(scene, 'train', poses[:1])
  _write_blender(scene, 'test', poses)
  proc = render_cli('--ckpt', workdir, '--eval', str(scene), '--out',
                    str(tmp_path / 'o'), '--progress=false')
  assert proc.returncode == 0, proc.stderr
  report = json.loads(
      (tmp_path / 'o' / 'eval_scene_test' / 'metrics.json').read_text())
  assert [v['index'] for v in report['views']] == [0, 1, 2]
  assert iio.imread(tmp_path / 'o' / 'eval_scene_test' / '0000.png').shape == (
      6, 8, 3)
  line = one_error_line(render_cli('--ckpt', workdir, '--eval', str(scene),
                                   '--split', 'val', '--out',
                                   str(tmp_path / 'o')))
  assert "'val'" in line


def test_depth_error_is_the_median_relative_error_where_truth_is_finite():
  truth = np.array([[1.0, 2.0, np.inf], [4.0, 0.0, 10.0]])
  depth = np.array([[1.1, 1.0, 7.0], [4.0, 3.0, 12.0]])
  # Relative errors 0.1, 0.5, 0, 0.2 (inf and 0 truths are left out).
  np.testing.assert_allclose(evaluate.depth_error(depth, truth), 0.15)
  where = np.array([[True, False, True], [True, True, False]])
  np.testing.assert_allclose(evaluate.depth_error(depth, truth, where), 0.05)
  assert np.isnan(evaluate.depth_error(depth, np.full_like(truth, np.inf)))
