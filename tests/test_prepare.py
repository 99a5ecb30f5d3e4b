"""prepare.py and nerf_jax/sfm/: photos or a video to a transforms.json scene.

The SfM test runs pycolmap for real on 8 of the fox photos and checks the
recovered cameras against the published instant-ngp transforms.json.
"""

from __future__ import annotations

import io
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np

from checks import error_line, snapshot  # tests/checks.py
import pytest
from PIL import Image, ImageFilter

from nerf_jax.io import outputs
from nerf_jax.sfm import colmap
from nerf_jax.sfm import images
from nerf_jax.sfm import prepare
from nerf_jax.sfm import report
from nerf_jax.sfm import transforms
from nerf_jax.sfm import video as video_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOX = ROOT.parent / 'shared' / 'data' / 'fox'


def run_prepare(args, cwd):
  return subprocess.run([sys.executable, str(ROOT / 'prepare.py'), *args],
                        cwd=cwd, capture_output=True, text=True, timeout=120,
                        stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------------
# Sharpness and frame picking.


def test_sharpness_closed_forms():
  # A constant image and a linear ramp have a zero Laplacian everywhere.
  assert images.sharpness(np.full((20, 30), 77, np.uint8)) == 0.0
  yy, xx = np.mgrid[:20, :30]
  assert images.sharpness(3.0 * xx + 5.0 * yy) == pytest.approx(0.0, abs=1e-20)
  # A 1-pixel 0/255 checkerboard: every interior Laplacian is +-4*255, in
  # equal numbers on an 8x8 interior, so the variance is exactly 1020^2.
  board = ((xx[:10, :10] + yy[:10, :10]) % 2 * 255).astype(np.uint8)
  assert images.sharpness(board) == pytest.approx(1020.0 ** 2, rel=1e-12)
  # Colour goes through ITU-R 601 luma, whose weights sum to 1.
  assert images.sharpness(np.stack([board] * 3, -1)) == pytest.approx(
      1020.0 ** 2, rel=1e-9)
  assert images.sharpness(np.zeros((2, 50))) == 0.0


def test_sharpness_matches_scipy_laplace():
  ndimage = pytest.importorskip('scipy.ndimage')
  rgb = np.random.default_rng(0).integers(0, 256, (37, 45, 3)).astype(np.uint8)
  luma = rgb.astype(np.float64) @ [0.299, 0.587, 0.114]
  expected = ndimage.laplace(luma)[1:-1, 1:-1].var()  # interior: no padding
  assert images.sharpness(rgb) == pytest.approx(expected, rel=1e-12)


def test_sharpness_falls_as_a_checkerboard_is_blurred():
  yy, xx = np.mgrid[:96, :96]
  board = Image.fromarray(((xx // 8 + yy // 8) % 2 * 255).astype(np.uint8))
  scores = [images.sharpness(np.asarray(board))] + [
      images.sharpness(np.asarray(board.filter(ImageFilter.GaussianBlur(r))))
      for r in (1, 2, 4)]
  assert all(a > 1.5 * b for a, b in zip(scores, scores[1:])), scores


def test_median_sharpness_rule():
  # Median of [10, 11, 12, 1, 13] is 11: 0.3 x 11 = 3.3 drops only the 1.
  mask = images.keep_sharp([10, 11, 12, 1, 13], 0.3)
  assert mask.tolist() == [True, True, True, False, True]
  assert images.keep_sharp([10, 11, 12, 1, 13], 0.0).all()
  # The median, not the mean (63.4 here), sets the bar: 0.5 x 8 = 4.
  mask = images.keep_sharp([3, 6, 8, 100, 200], 0.5)
  assert mask.tolist() == [False, True, True, True, True]


def test_fit_size_downscales_only():
  assert images.fit_size(1080, 1920, 480) == (270, 480)
  assert images.fit_size(1920, 1080, 480) == (480, 270)
  assert images.fit_size(300, 200, 480) == (300, 200)
  assert images.fit_size(1080, 1920, 0) == (1080, 1920)


def test_photos_are_written_upright_keeping_the_exif_focal_length(tmp_path):
  import pycolmap  # pylint: disable=g-import-not-at-top
  # 80x60 photo, bright in its stored top-left corner, EXIF orientation 6
  # (display rotated 90 degrees clockwise) and a 26 mm-equivalent focal.
  stored = np.full((60, 80, 3), 40, np.uint8)
  stored[:20, :20] = 250
  exif = Image.Exif()
  exif[0x0112] = 6
  exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
  exif.get_ifd(0x8769)[0xA20E] = 5000.0  # FocalPlaneXResolution
  (tmp_path / 'in').mkdir()
  Image.fromarray(stored).save(tmp_path / 'in' / 'p.jpg', quality=95,
                               exif=exif.tobytes())
  Image.fromarray(stored).save(tmp_path / 'in' / 'q.png')
  kept, dropped = images.prepare_photos(
      images.list_images(str(tmp_path / 'in')), str(tmp_path / 'out'),
      max_size=40)
  assert [f.name for f in kept] == ['p.jpg', 'q.png'] and not dropped
  with Image.open(tmp_path / 'out' / 'p.jpg') as im:
    assert im.size == (30, 40)  # upright (portrait), longest side 40
    pixels = np.asarray(im.convert('L')).astype(float)
    out_exif = im.getexif()
    assert out_exif[0x0112] == 1
    assert out_exif.get_ifd(0x8769)[0xA405] == 26
    assert 0xA20E not in out_exif.get_ifd(0x8769)  # original-size units
  # Clockwise: the stored top-left corner is now the top-right one.
  assert pixels[:8, -8:].mean() > 200 and pixels[:8, :8].mean() < 80
  with Image.open(tmp_path / 'out' / 'q.png') as im:
    assert im.size == (40, 30)
  # COLMAP starts from the EXIF focal length: about 26 / 36 of the longest
  # side (measured 0.75).
  database = str(tmp_path / 'db.db')
  with colmap.colmap_logging(False):
    pycolmap.extract_features(database, str(tmp_path / 'out'),
                              image_names=['p.jpg'])
  with pycolmap.Database.open(database) as db:
    (camera,) = db.read_all_cameras()
  assert camera.has_prior_focal_length
  assert camera.focal_length / 40 == pytest.approx(26 / 36, rel=0.1)


# ---------------------------------------------------------------------------
# Video input.

_TEXTURE = np.kron(np.random.default_rng(0).integers(0, 256, (48, 80)),
                   np.ones((4, 4))).astype(np.uint8)  # 192x320, 4-px blocks


def _frame(i, blurred):
  """A textured 128x96 frame panning 2 px per frame, optionally blurred."""
  im = Image.fromarray(np.roll(_TEXTURE, 2 * i, axis=1)[:96, :128])
  if blurred:
    im = im.filter(ImageFilter.GaussianBlur(3))
  return np.ascontiguousarray(np.stack([np.asarray(im)] * 3, -1))


def _write_video(path, n, blurred):
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  writer = imageio_ffmpeg.write_frames(str(path), (128, 96), fps=10,
                                       quality=10, macro_block_size=16)
  writer.send(None)
  for i in range(n):
    writer.send(_frame(i, i in blurred))
  writer.close()


def test_video_keeps_the_sharpest_frame_of_each_window(tmp_path):
  # 40 frames; only every 4th (2, 6, 10, ...) is sharp. Asking for 10 frames
  # cuts windows of 4, each holding exactly one sharp frame.
  video = tmp_path / 'pan.mp4'
  _write_video(video, 40, {i for i in range(40) if i % 4 != 2})
  kept, dropped, decoded = video_lib.extract_video_frames(
      str(video), str(tmp_path / 'frames'), max_frames=10, max_size=64,
      blur_keep=0.3)
  assert decoded == 40
  assert [f.name for f in kept] == [f'frame_{i:06d}.jpg'
                                    for i in range(2, 40, 4)]
  assert not dropped
  assert sorted(os.listdir(tmp_path / 'frames')) == [f.name for f in kept]
  with Image.open(tmp_path / 'frames' / kept[0].name) as im:
    assert im.size == (64, 48)  # 128x96 downscaled to --max_size 64
  # --fps resamples before picking: 10 fps -> 5 fps halves the frames.
  _, _, decoded = video_lib.extract_video_frames(
      str(video), str(tmp_path / 'half'), max_frames=100, fps=5.0)
  assert decoded == 20


def test_video_drops_a_blurred_stretch(tmp_path):
  video = tmp_path / 'shake.mp4'
  _write_video(video, 30, set(range(20, 30)))
  kept, dropped, decoded = video_lib.extract_video_frames(
      str(video), str(tmp_path / 'frames'), max_frames=30, blur_keep=0.3)
  assert decoded == 30
  assert [f.name for f in kept] == [f'frame_{i:06d}.jpg' for i in range(20)]
  assert [f.name for f in dropped] == [f'frame_{i:06d}.jpg'
                                       for i in range(20, 30)]
  assert sorted(os.listdir(tmp_path / 'frames')) == [f.name for f in kept]
  assert max(f.sharpness for f in dropped) < 0.1 * min(f.sharpness
                                                       for f in kept)


# ---------------------------------------------------------------------------
# Geometry helpers against closed forms.


def _random_rotation(rng):
  q, r = np.linalg.qr(rng.normal(size=(3, 3)))
  q *= np.sign(np.diag(r))
  return q if np.linalg.det(q) > 0 else -q


def test_umeyama_recovers_a_known_similarity():
  rng = np.random.default_rng(1)
  src = rng.normal(size=(12, 3))
  rot, scale, shift = _random_rotation(rng), 2.7, np.array([1.0, -2.0, 0.5])
  s, r, t = transforms.umeyama(src, scale * src @ rot.T + shift)
  assert s == pytest.approx(scale, rel=1e-10)
  np.testing.assert_allclose(r, rot, atol=1e-10)
  np.testing.assert_allclose(t, shift, atol=1e-10)
  # Mirrored targets still give a proper rotation.
  _, r, _ = transforms.umeyama(src, src * [1, 1, -1])
  assert np.linalg.det(r) == pytest.approx(1.0)


def test_colmap_pose_to_opengl_camera_to_world():
  # An OpenCV camera at C looking along world +x with image-down = world -z:
  # its rows (camera axes in world) are x=-y, y=-z, z=+x; t = -R C.
  centre = np.array([1.0, 2.0, 3.0])
  rot = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
  c2w = transforms.colmap_to_c2w(rot, -rot @ centre)
  # OpenGL: x right (-y), y up (+z), the camera looks down -z, so z = -x.
  np.testing.assert_allclose(c2w[:3, :3], [[0, 0, -1], [-1, 0, 0], [0, 1, 0]],
                             atol=1e-12)
  np.testing.assert_allclose(c2w[:3, 3], centre, atol=1e-12)
  np.testing.assert_allclose(c2w[3], [0, 0, 0, 1])


def _synthetic_reconstruction(num=6):
  """Cameras on a ring around (2, -1, 0.5) looking at it, two OPENCV cameras."""
  import pycolmap  # pylint: disable=g-import-not-at-top
  rec = pycolmap.Reconstruction()
  params = {1: [100.0, 101.0, 32.0, 24.0, 0.01, -0.02, 0.001, 0.002],
            2: [80.0, 80.5, 24.0, 32.0, 0.03, 0.0, 0.0, -0.001]}
  for cam_id, (w, h) in ((1, (64, 48)), (2, (48, 64))):
    cam = pycolmap.Camera.create_from_model_name(cam_id, 'OPENCV', 100.0, w, h)
    cam.params = params[cam_id]
    rec.add_camera_with_trivial_rig(cam)
  target = np.array([2.0, -1.0, 0.5])
  poses = []
  for i in range(num):
    a = 2 * math.pi * i / num
    eye = target + [3 * math.cos(a), 3 * math.sin(a), 1.0 + 0.1 * i]
    fwd = (target - eye) / np.linalg.norm(target - eye)  # OpenCV +z
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    rot = np.stack([right, down, fwd])  # camera-from-world rows
    poses.append((eye, rot))
    image = pycolmap.Image(name=f'v{i}.jpg', camera_id=1 + i % 2,
                           image_id=i + 1)
    rec.add_image_with_trivial_frame(
        image, pycolmap.Rigid3d(pycolmap.Rotation3d(rot), -rot @ eye))
  return rec, params, poses, target


def test_reconstruction_to_transforms_per_camera_and_world_frame():
  rec, params, poses, target = _synthetic_reconstruction()
  out, world = transforms.reconstruction_to_transforms(rec, aabb_scale=16)
  assert out['camera_model'] == 'OPENCV' and out['aabb_scale'] == 16
  assert 'fl_x' not in out  # two cameras: intrinsics go per frame
  frames = out['frames']
  assert [f['file_path'] for f in frames] == [f'images/v{i}.jpg'
                                              for i in range(6)]
  for i, frame in enumerate(frames):
    fx, fy, cx, cy, k1, k2, p1, p2 = params[1 + i % 2]
    assert (frame['fl_x'], frame['fl_y'], frame['cx'], frame['cy']) == (
        fx, fy, cx, cy)
    assert (frame['k1'], frame['k2'], frame['p1'], frame['p2']) == (
        k1, k2, p1, p2)
    assert (frame['w'], frame['h']) == ((64, 48) if i % 2 == 0 else (48, 64))
  c2w = np.array([f['transform_matrix'] for f in frames])
  # The world map is a similarity: it takes each COLMAP camera centre to the
  # written one, and the ring's centre (where every axis meets) to the origin.
  for (eye, rot), m in zip(poses, c2w):
    np.testing.assert_allclose(world[:3, :3] @ eye + world[:3, 3], m[:3, 3],
                               atol=1e-9)
    scale = np.cbrt(np.linalg.det(world[:3, :3]))
    # OpenGL axes: -z is the viewing direction, +y is image-up.
    np.testing.assert_allclose(-m[:3, 2], world[:3, :3] @ rot[2] / scale,
                               atol=1e-9)
    np.testing.assert_allclose(m[:3, 1], -world[:3, :3] @ rot[1] / scale,
                               atol=1e-9)
  np.testing.assert_allclose(world[:3, :3] @ target + world[:3, 3], 0,
                             atol=1e-9)
  np.testing.assert_allclose(np.linalg.norm(c2w[:, :3, 3], axis=-1).mean(),
                             4.0, rtol=1e-12)
  up = c2w[:, :3, 1].mean(0)
  np.testing.assert_allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-12)


def test_auto_aabb_scale_is_the_smallest_box_holding_the_cameras():
  # instant-ngp's box is 1.5 * aabb_scale on each side of the origin.
  def at(x):
    c2w = np.tile(np.eye(4), (2, 1, 1))
    c2w[1, :3, 3] = [0.0, -x, 0.5]
    return transforms.auto_aabb_scale(c2w)
  assert [at(x) for x in (0.7, 1.5, 1.51, 6.0, 6.01, 150.0, 1e4)] == [
      1, 1, 2, 4, 8, 128, 128]


def test_camera_intrinsics_for_models_without_distortion_terms():
  import pycolmap  # pylint: disable=g-import-not-at-top
  cam = pycolmap.Camera.create_from_model_name(1, 'SIMPLE_RADIAL', 50.0, 40,
                                               30)
  cam.params = [50.0, 20.0, 15.0, 0.25]
  got = transforms.camera_intrinsics(cam)
  assert (got['fl_x'], got['fl_y'], got['cx'], got['cy']) == (50, 50, 20, 15)
  assert (got['k1'], got['k2'], got['p1'], got['p2']) == (0.25, 0, 0, 0)
  assert got['camera_angle_x'] == pytest.approx(2 * math.atan(40 / 100))
  cam = pycolmap.Camera.create_from_model_name(1, 'OPENCV_FISHEYE', 50.0, 40,
                                               30)
  with pytest.raises(report.SfmError, match='cannot hold'):
    transforms.camera_intrinsics(cam)


# ---------------------------------------------------------------------------
# Real SfM on the fox capture.

# Every third of the 50 fox photos, first eight: a half arc around the fox.
FOX_STRIDE, FOX_COUNT, FOX_SIZE = 3, 8, 480
# Thresholds (measured on this subset: 0.3 % RMS centre error, 0.7 degrees
# mean / 0.9 degrees max rotation error, focal 0.1 % off).
MAX_CENTRE_RMS = 0.02  # of the reference cameras' RMS spread about their mean
MAX_ROTATION_DEG = 3.0
MAX_FOCAL_ERROR = 0.03


@pytest.mark.skipif(not (FOX / 'transforms.json').exists(),
                    reason=f'{FOX} is absent (../shared/data)')
def test_sfm_on_fox_photos_matches_published_cameras(tmp_path):
  import pycolmap  # pylint: disable=g-import-not-at-top
  names = sorted(os.listdir(FOX / 'images'))[::FOX_STRIDE][:FOX_COUNT]
  photos = tmp_path / 'photos'
  photos.mkdir()
  for n in names:
    os.symlink(FOX / 'images' / n, photos / n)
  out = tmp_path / 'scene'
  out.mkdir()  # an empty folder is used
  result = prepare.prepare_scene(str(photos), str(out), max_size=FOX_SIZE,
                                 overwrite=True, stream=None, num_threads=1)
  assert result.num_registered == FOX_COUNT
  assert sorted(os.listdir(out)) == ['colmap', 'images', 'transforms.json']
  assert [p for p in os.listdir(tmp_path) if p.startswith('.')] == [
      outputs.LEDGER]

  # The json on disk: keys, sizes and 4x4 rigid camera-to-world matrices.
  written = json.load(open(out / 'transforms.json'))
  assert written == json.loads(json.dumps(result.transforms))
  for key in ('camera_model', 'fl_x', 'fl_y', 'cx', 'cy', 'w', 'h', 'k1', 'k2',
              'p1', 'p2', 'aabb_scale', 'frames'):
    assert key in written, key
  assert written['camera_model'] == 'OPENCV'
  assert (written['w'], written['h']) == (270, 480)
  frames = written['frames']
  assert [f['file_path'] for f in frames] == [f'images/{n}' for n in names]
  for f in frames:
    with Image.open(out / f['file_path']) as im:
      assert im.size == (270, 480)
  c2w = np.array([f['transform_matrix'] for f in frames])
  np.testing.assert_allclose(c2w[:, 3], np.tile([0, 0, 0, 1.0], (8, 1)))
  rot = c2w[:, :3, :3]
  np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1),
                             np.tile(np.eye(3), (8, 1, 1)), atol=1e-9)
  np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-9)

  # Intrinsics against the published ones (1080x1920), scaled to 270x480.
  ref = json.load(open(FOX / 'transforms.json'))
  # The smallest box that holds these cameras is the published fox's.
  assert written['aabb_scale'] == ref['aabb_scale'] == 4
  scale = 480 / ref['h']
  assert written['fl_x'] == pytest.approx(ref['fl_x'] * scale,
                                          rel=MAX_FOCAL_ERROR)
  assert written['fl_y'] == pytest.approx(ref['fl_y'] * scale,
                                          rel=MAX_FOCAL_ERROR)

  # Camera centres and rotations against the published poses, after the
  # best similarity (Umeyama) from our centres onto theirs.
  ref_c2w = {os.path.basename(f['file_path']): np.array(f['transform_matrix'])
             for f in ref['frames']}
  err = transforms.alignment_errors(c2w,
                                    np.stack([ref_c2w[n] for n in names]))
  print(f'fox {FOX_COUNT} photos at {FOX_SIZE}px: centre RMS '
        f'{100 * err["rms_relative"]:.2f} % of spread, rotation mean '
        f'{err["rot_mean_deg"]:.2f} / max {err["rot_max_deg"]:.2f} deg')
  assert err['rms_relative'] < MAX_CENTRE_RMS
  assert err['rot_max_deg'] < MAX_ROTATION_DEG

  # OpenGL convention, checked against pycolmap's own view of the saved
  # model: the similarity from its projection centres onto ours is exact, and
  # carries its viewing directions onto our -z axes, image-down onto -y.
  model = pycolmap.Reconstruction(str(out / 'colmap' / 'sparse' / '0'))
  images = {im.name: im for im in model.images.values()}
  centres = np.array([images[n].projection_center() for n in names])
  s, r, t = transforms.umeyama(centres, c2w[:, :3, 3])
  np.testing.assert_allclose(s * centres @ r.T + t, c2w[:, :3, 3], atol=1e-6)
  for n, m in zip(names, c2w):
    np.testing.assert_allclose(r @ images[n].viewing_direction(), -m[:3, 2],
                               atol=1e-6)
    down = images[n].cam_from_world().rotation.matrix()[1]
    np.testing.assert_allclose(r @ down, -m[:3, 1], atol=1e-6)
  # The pairwise check that triggers a re-run of mapping: the model agrees
  # with the verified matches; moving four cameras by a third of the spread
  # (a model with part of its images misplaced) breaks the agreement.
  database = str(out / 'colmap' / 'database.db')
  assert result.stats.agreement == pytest.approx(
      colmap.pair_agreement(database, model))
  assert result.stats.agreement >= colmap.MIN_AGREEMENT
  spread = np.sqrt(((centres - centres.mean(0)) ** 2).sum(-1).mean())
  for n in names[:4]:
    frame = model.frame(images[n].frame_id)
    rot = frame.rig_from_world.rotation.matrix()
    moved = images[n].projection_center() + [spread / 3, 0, 0]
    frame.rig_from_world = pycolmap.Rigid3d(pycolmap.Rotation3d(rot),
                                            -rot @ moved)
  np.testing.assert_allclose(images[names[0]].projection_center(),
                             centres[0] + [spread / 3, 0, 0], atol=1e-9)
  assert colmap.pair_agreement(database, model) < result.stats.agreement - 0.1
  # The written world: mean up is +z, mean camera distance 4, and the origin
  # is where the optical axes pass closest (zero least-squares gradient).
  up = c2w[:, :3, 1].mean(0)
  assert up[2] / np.linalg.norm(up) > 0.9999
  assert np.linalg.norm(c2w[:, :3, 3], axis=-1).mean() == pytest.approx(4.0)
  d = -c2w[:, :3, 2]
  proj = np.eye(3) - d[:, :, None] * d[:, None, :]
  assert np.linalg.norm((proj @ -c2w[:, :3, 3, None]).sum(0)) < 1e-9


# ---------------------------------------------------------------------------
# The command line: one clear line and a non-zero exit on bad input.


def test_cli_missing_input_and_folder_without_images(tmp_path):
  proc = run_prepare([str(tmp_path / 'nope'), '--out', 'scene'], tmp_path)
  assert 'no such file or folder' in error_line(proc)
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'notes.txt').write_text('not a photo')
  proc = run_prepare([str(empty), '--out', 'scene'], tmp_path)
  assert 'no images' in error_line(proc)
  proc = run_prepare([str(empty / 'notes.txt'), '--out', 'scene'], tmp_path)
  assert 'not a folder of photos or a video' in error_line(proc)
  (empty / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
  proc = run_prepare([str(empty), '--out', 'scene'], tmp_path)
  assert 'broken.jpg: unreadable image' in error_line(proc)
  proc = run_prepare(['--out', 'scene'], tmp_path)
  assert 'expected one input' in error_line(proc)
  assert proc.returncode == 2
  assert sorted(os.listdir(tmp_path)) == ['empty']  # nothing written


def _noise_photos(folder, n=4):
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), np.uint8)).save(
        folder / f'noise{i}.png')


def test_mapping_is_retried_while_the_model_disagrees_with_matches(
    tmp_path, monkeypatch):
  _noise_photos(tmp_path / 'photos')
  calls = []

  def fake_map(pycolmap, database, image_dir, work_dir, num_threads, seed,
               progress=None):
    del pycolmap, database, image_dir, work_dir, num_threads, progress
    rec = _synthetic_reconstruction(3 + seed)[0]
    calls.append(seed)
    return rec, 1

  monkeypatch.setattr(colmap, '_map_once', fake_map)
  for agreements, seeds, best in (([0.5, 0.8, 0.7], [5, 6, 7], 1),
                                  ([0.6, 0.93, 0.99], [5, 6], 1),
                                  ([0.91, 0.2, 0.2], [5], 0)):
    calls.clear()
    values = iter(agreements)
    monkeypatch.setattr(colmap, 'pair_agreement', lambda db, rec: next(values))
    stream = io.StringIO()
    rec, stats = colmap.run_colmap(str(tmp_path / 'photos'),
                                   str(tmp_path / 'colmap'), seed=5,
                                   stages=report.Stages(stream))
    assert calls == seeds
    assert stats.attempts == len(seeds)
    assert stats.agreement == agreements[best]
    assert rec.num_reg_images() == 3 + seeds[best]  # that run's model
    warned = 'warning: only' in stream.getvalue()
    assert warned == (agreements[best] < colmap.MIN_AGREEMENT)
    if warned:
      assert '80 % of the verified matches agree' in stream.getvalue()


def test_cli_refuses_existing_out_and_keeps_it_on_failure(tmp_path):
  _noise_photos(tmp_path / 'photos')
  out = tmp_path / 'scene'
  (out / 'images').mkdir(parents=True)
  (out / 'transforms.json').write_text('{"frames": []}')
  (out / 'images' / 'a.jpg').write_bytes(b'old')
  before = snapshot(out)
  proc = run_prepare(['photos', '--out', 'scene'], tmp_path)
  line = error_line(proc)
  assert 'exists and was not written by prepare.py' in line
  assert snapshot(out) == before
  # --overwrite replaces only a scene prepare.py wrote: not this one.
  proc = run_prepare(['photos', '--out', 'scene', '--overwrite'], tmp_path)
  assert 'exists and was not written by prepare.py' in error_line(proc)
  assert snapshot(out) == before
  # prepare.py's own scene (as recorded): --overwrite is needed, and a
  # capture that fails to register still leaves the old scene as it was,
  # and no temporary folder behind.
  outputs.record(str(out), 'prepare.py')
  before = snapshot(tmp_path)
  proc = run_prepare(['photos', '--out', 'scene'], tmp_path)
  assert 'pass --overwrite to replace it' in error_line(proc)
  proc = run_prepare(['photos', '--out', 'scene', '--overwrite'], tmp_path)
  line = error_line(proc)
  assert 'only 0 of 4 images registered' in line
  assert '--matcher exhaustive' in line
  assert snapshot(tmp_path) == before
  assert sorted(os.listdir(tmp_path)) == [outputs.LEDGER, 'photos', 'scene']


def test_cli_video_with_too_few_frames(tmp_path):
  _write_video(tmp_path / 'clip.mp4', 12, set())
  proc = run_prepare(['clip.mp4', '--out', 'scene', '--max_frames', '2'],
                     tmp_path)
  assert 'only 2 usable images' in error_line(proc)
  assert sorted(os.listdir(tmp_path)) == ['clip.mp4']
  proc = run_prepare(['clip.mp4', '--out', 'scene', '--blur_keep', '1.5'],
                     tmp_path)
  assert '--blur_keep must be in [0, 1)' in error_line(proc)


def _as_from_a_terminal():
  """In the child before exec: SIGINT and SIGTERM at their defaults and
  unblocked, as a shell starts a command (a test worker may have inherited
  them ignored or blocked, and a child inherits both)."""
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, signal.SIG_DFL)
  signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_matching_stops_at_once_in_one_line(tmp_path, signum):
  # 36 textured photos: matching (630 pairs) takes about 2 s on 2 cores
  # (long enough that the signal lands in it under load) and pycolmap looks
  # at no signal while it runs. The signal goes to the whole
  # process group, as Ctrl-C in a terminal or a service manager sends it.
  photos = tmp_path / 'photos'
  photos.mkdir()
  rng = np.random.default_rng(0)
  for i in range(36):
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), np.uint8)).resize(
        (160, 120), Image.BICUBIC).save(photos / f'{i:02d}.png')
  proc = subprocess.Popen(
      [sys.executable, str(ROOT / 'prepare.py'), 'photos', '--out', 'scene',
       '--max_size=0'], cwd=tmp_path, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
      start_new_session=True, preexec_fn=_as_from_a_terminal)
  shown = b''
  while b'matching:' not in shown:
    chunk = proc.stdout.read1(4096)
    assert chunk, (shown + proc.stdout.read() + proc.stderr.read()).decode()
    shown += chunk
  # Into matching, where the signal used to wait for it to end; soon after
  # its line shows, so that under load (the line read late) the signal
  # still lands before matching ends.
  features_s = float(re.search(rb'SIFT on 36 images .* \(([\d.]+) s\)',
                               shown)[1])
  time.sleep(0.1)
  start = time.monotonic()
  os.killpg(proc.pid, signum)
  rest, stderr = proc.communicate(timeout=60)
  stopped_after = time.monotonic() - start
  shown = (shown + rest).decode()
  assert 'matching: exhaustive, 630 pairs ... failed' in shown, shown
  # At once (0.03 s here), not when matching ends (0.6 s later, or more).
  assert stopped_after < 0.2 + 0.2 * features_s, (stopped_after, features_s)
  assert proc.returncode == 128 + signum, stderr
  lines = stderr.decode().splitlines()
  name = 'interrupted' if signum == signal.SIGINT else 'stopped by SIGTERM'
  assert lines == [f'error: {name}; scene was not changed'], lines
  # Nothing of the interrupted run is left: no scene, no temporary folder,
  # no COLMAP process.
  assert sorted(os.listdir(tmp_path)) == ['photos']
  left = subprocess.run(['ps', '-o', 'pid=,stat=,args=', '-g', str(proc.pid)],
                        capture_output=True, text=True).stdout
  assert not left.strip(), left
