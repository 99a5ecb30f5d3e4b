"""Bad input where values enter: data files, camera paths, render.py and
prepare.py flags.

Every bad value is refused with one line naming the file, key or flag (no
traceback, a non-zero exit) and leaves what already existed unchanged.
Most checks run in-process; a few run the command lines as a user would.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

from checks import error_line, one_line, snapshot  # tests/checks.py
from nerf_jax.cameras import camera, paths
from nerf_jax.cameras import checks as camera_checks
from nerf_jax import datasets
from nerf_jax.io import outputs, video
from nerf_jax.datasets import base

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _poses(n: int = 4) -> np.ndarray:
  return paths.orbit_poses(n, 30.0, 4.0).astype(np.float64)


def _with(array: np.ndarray, index, value) -> np.ndarray:
  array = np.array(array)
  array[index] = value
  return array


def _scaled_rotation(poses: np.ndarray) -> np.ndarray:
  poses = np.array(poses)
  poses[1, :3, :3] *= 2.0
  return poses


def _mirrored(poses: np.ndarray) -> np.ndarray:
  poses = np.array(poses)
  poses[2, :3, 0] *= -1.0
  return poses


# ---------------------------------------------------------------------------
# The shared ranges (checks.pose_problem, checks.intrinsics_problem).


def test_real_cameras_are_in_range():
  assert camera_checks.pose_problem(_poses(8)) == ''
  assert camera_checks.pose_problem(np.stack([camera.look_at((3.0, -2.0, 1.0))])) == ''
  # Blender's lego (800 px, 1111 px focal), a phone, a long lens, a crop
  # whose principal point is off-centre.
  for fx, cx, w, h in ((1111.1, 400, 800, 800), (3000, 2016, 4032, 3024),
                       (50000, 960, 1920, 1080), (500, -300, 640, 480)):
    assert camera_checks.intrinsics_problem(fx, fx, cx, h / 2, w, h) == ''


@pytest.mark.parametrize('fx, cx, width, expected', [
    (0.0, 4, 8, 'fx=0 must be a positive number'),
    (np.nan, 4, 8, 'fx=nan must be a positive number'),
    (1e9, 4, 8, 'fx=1e+09 is absurd for a 8x8 image'),
    (1e-4, 4, 8, 'fx=0.0001 is absurd'),
    (10.0, 100, 8, 'cx=100 is far outside the 8x8 image'),
    (10.0, 4, 0, 'width=0 must be a positive number of pixels'),
])
def test_intrinsics_out_of_range_are_named(fx, cx, width, expected):
  assert camera_checks.intrinsics_problem(fx, 10.0, cx, 4, width, 8).startswith(
      expected)


def test_several_views_name_the_first_bad_one():
  problem = camera_checks.intrinsics_problem([10, 10, -1], 10, 4, 4, 8, 8,
                                      what='row')
  assert problem == 'row 2: fx=-1 must be a positive number'
  assert camera_checks.pose_problem(_scaled_rotation(_poses())).startswith(
      'pose 1: rotation is not orthonormal')


# ---------------------------------------------------------------------------
# Tiny npz files (and base.pinhole_split / validate_split behind them).


def _npz(tmp_path, images=None, poses=None, focal=10.0) -> str:
  path = str(tmp_path / 'views.npz')
  images = np.full((4, 6, 8, 3), 0.5, np.float32) if images is None else images
  np.savez(path, images=images, poses=_poses() if poses is None else poses,
           focal=np.asarray(focal))
  return path


_HALF = np.full((4, 6, 8, 3), 0.5, np.float32)
TINY_NPZ_CASES = {
    'floats_0_255': (dict(images=_HALF * 510.0),
                     'images are floats up to 255.0; expected values in '
                     '[0, 1] or uint8'),
    'negative': (dict(images=_HALF - 1.0), 'images have values down to -0.5'),
    'nan_pixel': (dict(images=_with(_HALF, (1, 2, 3, 0), np.nan)),
                  'images contain NaN or inf values'),
    'inf_pixel': (dict(images=_with(_HALF, (0, 0, 0, 2), np.inf)),
                  'images contain NaN or inf values'),
    'complex': (dict(images=_HALF.astype(np.complex64)),
                'images must be floats in [0, 1] or uint8, got complex64'),
    'strings': (dict(images=np.full((4, 6, 8, 3), 'a')),
                'images must be floats in [0, 1] or uint8, got <U1'),
    'int64': (dict(images=(_HALF * 255).astype(np.int64)),
              'images must be floats in [0, 1] or uint8, got int64'),
    'bool': (dict(images=_HALF > 0), 'or uint8, got bool'),
    'one_channel': (dict(images=_HALF[..., :1]),
                    'images must have shape (n, height, width, 3), got '
                    '(4, 6, 8, 1)'),
    'two_channels': (dict(images=_HALF[..., :2]), 'got (4, 6, 8, 2)'),
    'five_channels': (dict(images=np.concatenate([_HALF, _HALF[..., :2]], -1)),
                      'got (4, 6, 8, 5)'),
    'zero_size': (dict(images=_HALF[:, :0]), 'images are 8x0 pixels (empty)'),
    'focal_zero': (dict(focal=0.0), 'focal=0 must be a positive number'),
    'focal_negative': (dict(focal=-10.0), 'focal=-10 must be a positive'),
    'focal_nan': (dict(focal=np.nan), 'focal=nan must be a positive'),
    'focal_huge': (dict(focal=1e6), 'focal=1e+06 is absurd for a 8x6 image'),
    'focal_tiny': (dict(focal=1e-3), 'focal=0.001 is absurd'),
    'focal_string': (dict(focal='10'), 'focal must be a real scalar'),
    'focal_vector': (dict(focal=[10.0, 10.0]), 'focal must be a real scalar'),
    'poses_complex': (dict(poses=_poses().astype(np.complex64)),
                      'poses must be real numbers'),
    'poses_shape': (dict(poses=_poses()[:, :2]), 'poses must have shape'),
    'pose_nan': (dict(poses=_with(_poses(), (3, 0, 3), np.nan)),
                 'pose(s) [3] contain NaN or inf values'),
    'pose_not_rigid': (dict(poses=_scaled_rotation(_poses())),
                       'pose 1: rotation is not orthonormal'),
    'pose_mirrored': (dict(poses=_mirrored(_poses())),
                      'pose 2: rotation is a reflection'),
    'pose_far': (dict(poses=_with(_poses(), (0, 0, 3), 5e6)),
                 'pose 0: camera is 5e+06 units from the origin'),
    'pose_bottom_row': (dict(poses=_with(_poses(), (1, 3, 0), 1.0)),
                        'pose 1: bottom row is [1.0, 0.0, 0.0, 1.0]'),
}


@pytest.mark.parametrize('case', sorted(TINY_NPZ_CASES))
def test_bad_tiny_npz_is_one_line_naming_the_file(tmp_path, case):
  arrays, expected = TINY_NPZ_CASES[case]
  path = _npz(tmp_path, **arrays)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_tiny_npz(path)
  line = one_line(e)
  assert line.startswith(path + ': ') and expected in line, line


def test_good_tiny_npz_floats_and_uint8_load(tmp_path):
  for images in (_HALF, (_HALF * 255).astype(np.uint8)):
    scene = datasets.load_tiny_npz(_npz(tmp_path, images=images))
    assert scene.split('all').images.max() <= 1.0


def test_validate_split_checks_images_of_every_size():
  cams = camera.Cameras.create(_poses(2), [
      camera.Intrinsics.from_focal(10.0, 8, 6),
      camera.Intrinsics.from_focal(10.0, 4, 4)])
  good = [np.full((6, 8, 3), 0.5, np.float32), np.zeros((4, 4, 3), np.float32)]
  for images, expected in (
      ([good[0], np.zeros((4, 4, 2))], 'image 1 must have shape (height, '
       'width, 3), got (4, 4, 2)'),
      ([good[0], np.full((4, 4, 3), 255.0)], 'images are floats up to 255.0'),
      ([good[0], np.zeros((4, 4, 3), np.complex64)],
       'images must be real numbers'),
      ([good[0]], '1 images but 2 cameras')):
    with pytest.raises(datasets.DatasetError) as e:
      base.validate_split(base.Split(images=images, cameras=cams,
                                     indices=np.arange(2)), 'scene.json')
    assert one_line(e).startswith('scene.json: ') and expected in str(e.value)
  split = base.validate_split(base.Split(images=good, cameras=cams,
                                         indices=np.arange(2)), 'scene.json')
  assert not split.same_size


# ---------------------------------------------------------------------------
# Blender scenes, images, LLFF poses_bounds.npy, transforms.json.


def _write_blender(root: pathlib.Path, poses, angle=0.7) -> None:
  (root / 'train').mkdir(parents=True)
  frames = []
  for i, pose in enumerate(poses):
    iio.imwrite(root / 'train' / f'r_{i}.png', np.zeros((4, 4, 4), np.uint8))
    frames.append(dict(file_path=f'./train/r_{i}',
                       transform_matrix=np.asarray(pose).tolist()))
  (root / 'transforms_train.json').write_text(json.dumps(
      dict(camera_angle_x=angle, frames=frames)))


def test_blender_pose_not_rigid_names_the_frame(tmp_path):
  _write_blender(tmp_path / 'scene', _scaled_rotation(_poses()))
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_blender(str(tmp_path / 'scene'))
  assert one_line(e).startswith(str(tmp_path / 'scene' /
                                    'transforms_train.json'))
  assert 'transform_matrix of frame 1: rotation is not orthonormal' in str(
      e.value)


def test_image_path_that_is_a_folder(tmp_path):
  _write_blender(tmp_path / 'scene', _poses(2))
  (tmp_path / 'scene' / 'train' / 'r_1.png').unlink()
  (tmp_path / 'scene' / 'train' / 'r_1.png').mkdir()
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_blender(str(tmp_path / 'scene'))
  assert one_line(e).endswith('r_1.png: a folder, not an image file')


def test_folders_and_empty_files_where_files_are_expected(tmp_path):
  (tmp_path / 'views.npz').mkdir()
  (tmp_path / 'llff').mkdir()
  (tmp_path / 'llff' / 'poses_bounds.npy').write_bytes(b'')
  for load, path, expected in (
      (datasets.load_tiny_npz, tmp_path / 'views.npz',
       'views.npz: a folder, not an .npz file'),
      (datasets.load_llff, tmp_path / 'llff',
       'poses_bounds.npy: cannot read (No data left in file)')):
    with pytest.raises(datasets.DatasetError) as e:
      load(str(path))
    assert one_line(e).endswith(expected)


def _opengl_to_llff(c2w: np.ndarray) -> np.ndarray:
  return np.stack([-c2w[:3, 1], c2w[:3, 0], c2w[:3, 2], c2w[:3, 3]], axis=1)


def _poses_bounds(n: int = 3) -> np.ndarray:
  """Rows of a valid poses_bounds.npy: 48x64 photos, focal 60, depth 3-20."""
  rows = [np.concatenate([np.concatenate(
      [_opengl_to_llff(pose), [[48.0], [64.0], [60.0]]], axis=1).reshape(-1),
                          [3.0, 20.0]]) for pose in _poses(n)]
  return np.asarray(rows)


def _llff_rows(column, value, row=1):
  return _with(_poses_bounds(), (row, column), value)


LLFF_CASES = {
    'near_after_far': (_llff_rows(15, 30.0), 'row(s) [1]: near depth bound '
                       '>= far (near=30, far=20)'),
    'near_zero': (_llff_rows(15, 0.0), 'row(s) [1]: near depth bound <= 0'),
    'nan': (_llff_rows(16, np.nan), 'row(s) [1] contain NaN or inf'),
    'focal_zero': (_llff_rows(14, 0.0), 'row 1: focal=0 must be a positive'),
    'focal_absurd': (_llff_rows(14, 1e9), 'row 1: focal=1e+09 is absurd for '
                     'a 64x48 image'),
    'height_zero': (_llff_rows(4, 0.0), 'row 1: height=0 must be a positive'),
    'not_rigid': (_llff_rows(0, 3.0), 'row 1: rotation is not orthonormal'),
    'camera_far': (_llff_rows(3, -1e7), 'row 1: camera is 1e+07 units'),
    'strings': (np.full((3, 17), 'x'), 'expected real numbers, got <U1'),
}


@pytest.mark.parametrize('case', sorted(LLFF_CASES))
def test_bad_llff_poses_bounds_is_one_line(tmp_path, case):
  rows, expected = LLFF_CASES[case]
  (tmp_path / 'images').mkdir()
  np.save(tmp_path / 'poses_bounds.npy', rows)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_llff(str(tmp_path))
  line = one_line(e)
  assert line.startswith(str(tmp_path / 'poses_bounds.npy') + ': ')
  assert expected in line, line


def _write_capture(root: pathlib.Path, meta: dict, poses=None) -> str:
  """A two-image transforms.json capture (8x6 PNGs)."""
  (root / 'images').mkdir(parents=True)
  poses = _poses(2) if poses is None else poses
  frames = []
  for i, pose in enumerate(poses):
    iio.imwrite(root / 'images' / f'{i}.png', np.zeros((6, 8, 3), np.uint8))
    frames.append(dict(file_path=f'images/{i}.png',
                       transform_matrix=np.asarray(pose).tolist()))
  (root / 'transforms.json').write_text(json.dumps(dict(meta, frames=frames)))
  return str(root / 'transforms.json')


TRANSFORMS_CASES = {
    'fl_x_zero': (dict(fl_x=0.0), 'fl_x=0 must be a positive number'),
    'fl_x_string': (dict(fl_x='50'), "fl_x must be a number, got '50'"),
    'fl_y_absurd': (dict(fl_x=10.0, fl_y=1e7), 'fl_y=1e+07 is absurd'),
    'angle_degrees': (dict(camera_angle_x=60.0),
                      'camera_angle_x=60 must be in (0, pi) radians'),
    'angle_zero': (dict(camera_angle_x=0.0), 'camera_angle_x=0 must be in'),
    'cx_outside': (dict(fl_x=10.0, cx=1000.0), 'cx=1000 is far outside the '
                   '8x6 image'),
    'cy_nan': (dict(fl_x=10.0, cy=float('nan')), 'cy must be finite'),
    'w_negative': (dict(fl_x=10.0, w=-8), 'w=-8 must be a positive number of '
                   'pixels'),
    'k1_string': (dict(fl_x=10.0, k1='x'), "k1 must be a number, got 'x'"),
    'aabb_scale_negative': (dict(fl_x=10.0, aabb_scale=-4),
                            'aabb_scale=-4 must be in (0, 10000]'),
    # Lens distortion no real lens has (distortion.distortion_problem).
    'k1_huge': (dict(fl_x=10.0, k1=1e6), 'k1=1e+06 is implausible for a '
                'real lens (at most 100 in magnitude)'),
    'k1_folds': (dict(fl_x=10.0, k1=-50), 'k1=-50, k2=0: the lens folds the '
                 'image over at radius 0.0817'),
    'k1_stretches': (dict(fl_x=4.0, k1=50.0), 'k1=50, k2=0: the lens would '
                     'scale distances from the principal point by'),
    'p1_nan': (dict(fl_x=10.0, p1=float('nan')), 'p1 must be finite'),
}


@pytest.mark.parametrize('case', sorted(TRANSFORMS_CASES))
def test_bad_transforms_json_is_one_line_naming_the_key(tmp_path, case):
  meta, expected = TRANSFORMS_CASES[case]
  path = _write_capture(tmp_path / 'capture', meta)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_transforms(path, holdout=0)
  line = one_line(e)
  assert line.startswith(path) and expected in line, line


@pytest.mark.parametrize('poses, expected', [
    (_scaled_rotation(_poses(2)[[0, 0]]),
     'transform_matrix of images/1.png: rotation is not orthonormal'),
    (_with(_poses(2), (0, 2, 3), 1e7),
     'transform_matrix of images/0.png: camera is 1e+07 units'),
    (_with(_poses(2), (1, 1, 1), np.nan),
     'transform_matrix of images/1.png: NaN or inf values'),
])
def test_bad_transform_matrix_names_the_image(tmp_path, poses, expected):
  path = _write_capture(tmp_path / 'capture', dict(fl_x=10.0), poses)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_transforms(path, holdout=0)
  assert one_line(e).startswith(path) and expected in str(e.value)


# ---------------------------------------------------------------------------
# Camera paths (render.py --path).

_PATH_POSES = paths.orbit_poses(2, 20.0, 4.5)[:, :3].tolist()
_INTRINSICS = dict(fx=20.0, fy=20.0, cx=6.0, cy=5.0, width=12, height=10)


def _path_with(**changes):
  return dict(poses=_PATH_POSES, intrinsics=dict(_INTRINSICS, **changes))


CAMERA_PATH_CASES = {
    'fx_zero': (_path_with(fx=0), '"intrinsics": fx=0 must be a positive'),
    'fy_negative': (_path_with(fy=-5), '"intrinsics": fy=-5 must be a '
                    'positive'),
    'fx_absurd': (_path_with(fx=1e9), '"intrinsics": fx=1e+09 is absurd'),
    'cx_outside': (_path_with(cx=-500), '"intrinsics": cx=-500 is far outside'),
    'width_zero': (_path_with(width=0), '"intrinsics": width=0 must be a '
                   'whole number of pixels in [1, 8192]'),
    'width_huge': (_path_with(width=10**6), 'width=1000000 must be a whole '
                   'number of pixels in [1, 8192]'),
    'height_fraction': (_path_with(height=10.5), 'height=10.5 must be a whole'),
    'width_string': (_path_with(width='12'), '"intrinsics": width must be a '
                     "number, got '12'"),
    'fx_bool': (_path_with(fx=True), 'fx must be a number, got True'),
    'missing_key': (dict(poses=_PATH_POSES, intrinsics=dict(
        fx=20.0, fy=20.0, cx=6.0, width=12, height=10)),
                    '"intrinsics": missing key(s) [\'cy\']'),
    'unknown_key': (_path_with(k1=0.1), '"intrinsics": unknown key(s) '
                    "['k1']"),
    'intrinsics_list': (dict(poses=_PATH_POSES, intrinsics=[20, 20]),
                        '"intrinsics" must be an object'),
    'unknown_top_key': (dict(poses=_PATH_POSES, intrinsic=_INTRINSICS),
                        "unknown key(s) ['intrinsic']"),
    'no_poses_key': (dict(intrinsics=_INTRINSICS), "missing key(s) ['poses']"),
    'empty': ([], 'no poses (the path is empty)'),
    'empty_poses': (dict(poses=[]), '"poses": no poses'),
    'string_entry': ([[['1', 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]]],
                     'expected a list of 4x4 or 3x4 matrices of numbers'),
    'ragged': ([[[1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]]],
               'rows differ in length'),
    'wrong_shape': ([[[1, 0], [0, 1]]], 'expected (n, 4, 4) or (n, 3, 4)'),
    'not_rigid': ([[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]]],
                  'pose 0: rotation is not orthonormal'),
    'far': ([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1e9]]],
            'pose 0: camera is 1e+09 units from the origin'),
}


_DEEP = '[' * 100000 + ']' * 100000  # RecursionError in json.load
_OUT_OF_RANGE = ('=100000...000 (41 digits) is out of range (no field takes '
                 'an integer beyond 9223372036854775807)')


def test_json_nested_too_deeply_or_with_huge_integers_names_file_and_key(
    tmp_path):
  # Every reader of a user's JSON goes through inputs.read_json: one line
  # naming the file and the key, never an unexpected RecursionError,
  # OverflowError or TypeError.
  from nerf_jax.runs import metrics_log, rundir  # pylint: disable=g-import-not-at-top
  path = _write_capture(tmp_path / 'capture', dict(fl_x=10.0))
  meta = json.loads(pathlib.Path(path).read_text())
  meta['frames'][1]['w'] = 10 ** 40
  pathlib.Path(path).write_text(json.dumps(meta))
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_transforms(path, holdout=0)
  assert one_line(e) == f'{path}: frames[1].w{_OUT_OF_RANGE}'
  pathlib.Path(path).write_text(_DEEP)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_transforms(path, holdout=0)
  assert one_line(e) == f'{path}: nested more than 64 levels deep'
  blender = tmp_path / 'blender'
  blender.mkdir()
  (blender / 'transforms_train.json').write_text(json.dumps(
      dict(camera_angle_x=10 ** 400, frames=[])))
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_blender(str(blender), splits=('train',))
  assert 'transforms_train.json: camera_angle_x=100000...000 (401 digits) ' \
      'is out of range' in one_line(e)
  # A run's own files, edited by hand.
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text('{"train": {"lr_init": 1' + '0' * 40 + '}}')
  with pytest.raises(rundir.CheckpointError) as e:
    rundir.load_config(str(run))
  assert one_line(e) == f'{run}/config.json: train.lr_init{_OUT_OF_RANGE}'
  (run / 'scene.json').write_text(_DEEP)
  with pytest.raises(rundir.CheckpointError) as e:
    rundir.load_scene(str(run))
  assert one_line(e) == f'{run}/scene.json: nested more than 64 levels deep'
  # metrics.jsonl: such a line is skipped as a half-written one is.
  (run / 'metrics.jsonl').write_text('{"step": 1}\n' + _DEEP + '\n'
                                     '{"step": 1' + '0' * 40 + '}\n')
  assert metrics_log.read_metrics(str(run / 'metrics.jsonl')) == [{'step': 1}]


@pytest.mark.parametrize('case', sorted(CAMERA_PATH_CASES))
def test_bad_camera_path_is_one_line_naming_file_and_key(tmp_path, case):
  doc, expected = CAMERA_PATH_CASES[case]
  path = str(tmp_path / 'cams.json')
  with open(path, 'w') as f:
    json.dump(doc, f)
  with pytest.raises(ValueError) as e:
    paths.load_camera_path(path)
  line = one_line(e)
  assert line.startswith(f'camera path {path}') and expected in line, line


@pytest.mark.parametrize('text, expected', [
    ('[[[NaN, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]]]',
     'pose(s) [0] contain NaN or inf values'),
    ('[[[1, 0',
     "malformed JSON (Expecting ',' delimiter at line 1, column 8)"),
    ('', 'malformed JSON (Expecting value at line 1, column 1)'),
    ('[' * 100000 + ']' * 100000, 'nested more than 64 levels deep'),
    ('[' * 70 + ']' * 70, 'nested more than 64 levels deep'),
    ('{"poses": [[[1, 0, 0, 1' + '0' * 40 + ']]]}',
     'poses[0][0][3]=100000...000 (41 digits) is out of range'),
    ('[[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -' + '9' * 5000 + ']]]',
     '[0][2][3]=-999999...999 (5000 digits) is out of range'),
])
def test_unreadable_camera_path_text(tmp_path, text, expected):
  (tmp_path / 'cams.json').write_text(text)
  with pytest.raises(ValueError) as e:
    paths.load_camera_path(str(tmp_path / 'cams.json'))
  assert expected in one_line(e) and 'cams.json' in str(e.value)


def test_camera_path_npy_and_folder(tmp_path):
  np.save(tmp_path / 'cams.npy', np.zeros((2, 4, 4), np.complex64))
  with pytest.raises(ValueError) as e:
    paths.load_camera_path(str(tmp_path / 'cams.npy'))
  assert 'expected real numbers, got complex64' in one_line(e)
  np.save(tmp_path / 'cams.npy', np.zeros((2, 4, 4)))
  with pytest.raises(ValueError) as e:
    paths.load_camera_path(str(tmp_path / 'cams.npy'))
  assert 'pose 0: rotation is not orthonormal' in one_line(e)
  with pytest.raises(ValueError) as e:
    paths.load_camera_path(str(tmp_path))
  assert one_line(e).endswith('is a folder, not a .npy or .json file')


def test_good_camera_path_keeps_working(tmp_path):
  (tmp_path / 'cams.json').write_text(json.dumps(dict(
      poses=_PATH_POSES, intrinsics=dict(_INTRINSICS, width=12.0))))
  poses, intrinsics = paths.load_camera_path(str(tmp_path / 'cams.json'))
  assert poses.shape == (2, 4, 4) and poses.dtype == np.float32
  assert intrinsics == camera.Intrinsics(**_INTRINSICS)
  (tmp_path / 'list.json').write_text(json.dumps(_PATH_POSES))
  poses, intrinsics = paths.load_camera_path(str(tmp_path / 'list.json'))
  assert poses.shape == (2, 4, 4) and intrinsics is None


# ---------------------------------------------------------------------------
# Writing videos: complete outputs replace earlier ones, failures keep them.

_FRAMES = np.full((3, 6, 8, 3), 128, np.uint8)


def test_failed_write_keeps_the_earlier_video_and_leaves_no_temporary(
    tmp_path, monkeypatch):
  video.write_video(str(tmp_path / 'orbit_rgb.gif'), _FRAMES, 30.0)
  video.write_video(str(tmp_path / 'frames'), _FRAMES, 30.0)
  before = snapshot(tmp_path)

  def disk_full(path, *args, **kwargs):  # half a file, then the disk is full
    del args, kwargs
    pathlib.Path(path).write_bytes(b'partial')
    raise OSError(28, 'No space left on device', str(path))

  monkeypatch.setattr(video.iio, 'imwrite', disk_full)
  for name in ('orbit_rgb.gif', 'frames'):
    with pytest.raises(OSError):
      video.write_video(str(tmp_path / name), _FRAMES, 30.0)
  assert snapshot(tmp_path) == before


def test_png_folder_is_replaced_whole(tmp_path):
  out = str(tmp_path / 'orbit_rgb')
  assert video.write_video(out, np.repeat(_FRAMES, 2, 0), 30.0) == out
  assert len(os.listdir(out)) == 6
  video.write_video(out, _FRAMES, 30.0)
  assert sorted(os.listdir(out)) == ['0000.png', '0001.png', '0002.png']
  assert sorted(os.listdir(tmp_path)) == [outputs.LEDGER, 'orbit_rgb']


def test_output_of_the_wrong_kind_or_not_ours_is_refused(tmp_path):
  (tmp_path / 'v.gif').mkdir()
  (tmp_path / 'frames').write_bytes(b'a file')
  (tmp_path / 'mine.gif').write_bytes(b'the user\'s own file')
  (tmp_path / 'mine_rgb').mkdir()
  (tmp_path / 'mine_rgb' / 'notes.txt').write_text('the user\'s own file')
  before = snapshot(tmp_path)
  for name, expected in (
      ('v.gif', 'is a folder, not a file'),
      ('frames', 'is a file, not a folder'),
      ('mine.gif', 'exists and was not written by render.py; it is left as '
                   'it is: choose another file name'),
      ('mine_rgb', 'exists and was not written by render.py; it is left as '
                   'it is: choose another folder name or an empty folder')):
    with pytest.raises(outputs.OutputError) as e:
      video.write_video(str(tmp_path / name), _FRAMES, 30.0)
    assert one_line(e) == f'output {tmp_path / name} {expected}'
  for fps, quality in ((0.0, 8.0), (np.nan, 8.0), (30.0, 11.0)):
    with pytest.raises(ValueError):
      video.write_video(str(tmp_path / 'x.gif'), _FRAMES, fps, quality)
  assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------
# The command lines, as a user runs them.

SMALL = [
    '--config.data.width=12', '--config.data.height=12',
    '--config.data.num_train=6', '--config.data.num_val=1',
    '--config.data.num_test=1', '--config.model.preset=tiny',
    '--config.model.num_coarse=8', '--config.train.batch_rays=64',
    '--config.train.max_steps=2', '--config.train.log_every=2',
    '--config.eval.every=2', '--config.checkpoint.every=2',
]


def _run(script: str, args, cwd):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             NERF_JAX_CACHE=str(cwd / 'cache'))
  return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)],
                        cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A run trained for two steps on a tiny built-in scene."""
  cwd = tmp_path_factory.mktemp('trained')
  proc = _run('train.py', ['--config', 'demo.py', '--workdir', 'run',
                           '--progress=false', *SMALL], cwd)
  assert proc.returncode == 0, proc.stderr
  return cwd / 'run'


def _earlier_outputs(out: pathlib.Path) -> dict:
  """An output folder holding an earlier render; returns its snapshot."""
  (out / 'eval_views_test').mkdir(parents=True)
  (out / 'orbit_rgb.mp4').write_bytes(b'earlier video')
  (out / 'eval_views_test' / 'metrics.json').write_text('{"psnr": 30}')
  for name in ('eval_views_test', 'orbit_rgb.mp4'):  # as render.py records
    outputs.record(str(out / name), 'render.py')
  return snapshot(out)


def test_render_flags_are_refused_before_any_work(tmp_path):
  out = tmp_path / 'out'
  before = _earlier_outputs(out)
  (tmp_path / 'file').write_text('not a folder')
  # The checkpoint does not exist: the flag is refused before it is read.
  for args, expected in (
      (['--scale=0'], '--scale must be positive, got 0.0'),
      (['--quality=11'], '--quality must be in [0, 10], got 11.0'),
      (['--elevation=120'], '--elevation must be in [-90, 90] degrees, got '
       '120.0'),
      (['--fps=nan'], '--fps must be in (0, 1000], got nan'),
      (['--radius=-1'], '--radius must be in (0, 1e6], got -1.0'),
      (['--out', tmp_path / 'file'], f'--out {tmp_path / "file"} is a file, '
       'not a folder'),
      (['--out', tmp_path / 'file' / 'sub'],
       f'--out {tmp_path / "file" / "sub"}: {tmp_path / "file"} is a file, '
       'not a folder')):
    proc = _run('render.py', ['--ckpt', tmp_path / 'none', '--out', out,
                              *args], tmp_path)
    assert error_line(proc) == f'error: {expected}'
    assert proc.returncode == 2
  assert snapshot(out) == before


def test_render_failures_keep_earlier_outputs(trained, tmp_path):
  out = tmp_path / 'out'
  before = _earlier_outputs(out)
  bad_path = tmp_path / 'cams.json'
  bad_path.write_text(json.dumps(_path_with(fx=float('nan'))))
  views = _npz(tmp_path, images=_HALF * 510.0)
  for args, expected in (
      (['--path', bad_path], f'camera path {bad_path}: "intrinsics": fx=nan '
       'must be a positive number'),
      (['--scale', '1000'], 'frames of 12000x12000 pixels are too large (at '
       'most 8192 a side); lower --scale'),
      (['--eval', views], f'{views}: images are floats up to 255.0; '
       'expected values in [0, 1] or uint8')):
    proc = _run('render.py', ['--ckpt', trained, '--out', out, *args],
                tmp_path)
    assert error_line(proc) == f'error: {expected}'
  assert snapshot(out) == before


def test_train_refuses_images_in_0_255(tmp_path):
  path = _npz(tmp_path, images=_HALF * 510.0)
  before = snapshot(tmp_path)
  proc = _run('train.py', ['--config', 'tiny.py', '--workdir', 'w',
                           f'--config.data.path={path}'], tmp_path)
  assert error_line(proc) == (f'error: {path}: images are floats up to '
                              '255.0; expected values in [0, 1] or uint8')
  after = snapshot(tmp_path)
  assert {k: after.get(k) for k in before} == before


def test_prepare_flags_are_refused_before_any_work(tmp_path):
  scene = tmp_path / 'scene'
  scene.mkdir()
  (scene / 'transforms.json').write_text('{"frames": []}')
  before = snapshot(tmp_path)
  for flag, expected in (
      ('--max_size=-1', '--max_size must be 0 (keep) or in [32, 16384] '
       'pixels, got -1'),
      ('--fps=nan', '--fps must be 0 (all frames) or in (0, 1000], got nan'),
      ('--threads=0', '--threads must be -1 (all) or in [1, 4096], got 0'),
      ('--max_frames=0', '--max_frames must be in [1, 100000], got 0')):
    proc = _run('prepare.py', ['photos', '--out', 'scene', '--overwrite',
                               flag], tmp_path)
    assert error_line(proc) == f'error: {expected}'
    assert proc.returncode == 2
  assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------------
# Unbounded reads and bombs: every user-named file is looked at (os.stat)
# before it is opened, and images and arrays by their headers before their
# pixels are decoded.


@pytest.fixture
def no_hang():
  """Fails a test that blocks (opening a FIFO waits for a writer) instead
  of hanging the suite: SIGALRM after 20 s interrupts the blocked call."""
  import signal  # pylint: disable=g-import-not-at-top

  def alarm(signum, frame):
    del signum, frame
    raise TimeoutError('blocked reading a user-named input')

  old = signal.signal(signal.SIGALRM, alarm)
  signal.alarm(20)
  yield
  signal.alarm(0)
  signal.signal(signal.SIGALRM, old)


def _png_declaring(path, width: int, height: int) -> None:
  """A valid 8x6 PNG (a few dozen bytes) whose header declares width x
  height pixels: decoding it would allocate for all of them."""
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  iio.imwrite(path, np.zeros((6, 8, 3), np.uint8))
  data = bytearray(pathlib.Path(path).read_bytes())
  assert data[12:16] == b'IHDR'  # the signature, then IHDR's length and type
  data[16:24] = struct.pack('>II', width, height)
  data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
  pathlib.Path(path).write_bytes(bytes(data))


@pytest.fixture
def no_decoding(monkeypatch):
  """Makes decoding any image fail the test: what is refused must be
  refused from its header alone."""
  def decode(*args, **kwargs):
    raise AssertionError(f'an image was decoded: {args} {kwargs}')
  monkeypatch.setattr(datasets.images.iio, 'imread', decode)


def test_pipes_devices_and_huge_files_are_refused_unopened(tmp_path, no_hang):
  from nerf_jax import cli  # pylint: disable=g-import-not-at-top
  from nerf_jax.io import inputs  # pylint: disable=g-import-not-at-top
  fifo = str(tmp_path / 'cams.json')
  os.mkfifo(fifo)
  huge = tmp_path / 'huge.json'
  with open(huge, 'wb') as f:  # sparse: no disk space used
    f.truncate(inputs.MAX_JSON_BYTES + 1)
  for path, expected in (
      (fifo, f'camera path {fifo}: a named pipe (FIFO), not a .npy or .json '
       'file'),
      ('/dev/zero', 'camera path /dev/zero: a character device, not a .npy '
       'or .json file'),
      (str(huge), f'camera path {huge}: 256 MB is too large for a .npy or '
       '.json file (at most 256 MB)')):
    with pytest.raises(ValueError) as e:
      paths.load_camera_path(path)
    assert one_line(e) == expected
  assert cli._config_file_problem(fifo) == (  # pylint: disable=protected-access
      f'config file {fifo}: a named pipe (FIFO), not a .py file')
  # Every dataset reader: a pipe where its json, npy, npz or image is.
  (tmp_path / 'llff' / 'images').mkdir(parents=True)
  os.mkfifo(tmp_path / 'llff' / 'poses_bounds.npy')
  os.mkfifo(tmp_path / 'views.npz')
  (tmp_path / 'capture').mkdir()
  os.mkfifo(tmp_path / 'capture' / 'transforms.json')
  _write_blender(tmp_path / 'scene', _poses(2))
  (tmp_path / 'scene' / 'train' / 'r_1.png').unlink()
  os.mkfifo(tmp_path / 'scene' / 'train' / 'r_1.png')
  for load, path, expected in (
      (datasets.load_llff, tmp_path / 'llff', 'poses_bounds.npy: a named '
       'pipe (FIFO), not an (n, 17) .npy array'),
      (datasets.load_tiny_npz, tmp_path / 'views.npz',
       'views.npz: a named pipe (FIFO), not an .npz file'),
      (datasets.load_transforms, tmp_path / 'capture', 'transforms.json: a '
       'named pipe (FIFO), not a transforms.json file'),
      (datasets.load_blender, tmp_path / 'scene', 'r_1.png: a named pipe '
       '(FIFO), not an image file')):
    with pytest.raises(datasets.DatasetError) as e:
      load(str(path))
    assert one_line(e).endswith(expected)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_eval_split('/dev/zero', 'test')
  assert one_line(e) == '/dev/zero: a character device, not an .npz file'


def test_render_path_on_a_pipe_is_one_line(tmp_path):
  """As a user runs it: a short timeout makes a regression fail, not hang
  (the camera path is read before the checkpoint, which does not exist;
  /dev/zero is refused by the same check, tested in-process above)."""
  fifo = tmp_path / 'path.json'
  os.mkfifo(fifo)
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'render.py'), '--ckpt',
       str(tmp_path / 'none'), '--path', str(fifo)], cwd=tmp_path,
      env=dict(os.environ, JAX_PLATFORMS='cpu'), capture_output=True,
      text=True, timeout=60, stdin=subprocess.DEVNULL)
  assert error_line(proc) == (f'error: camera path {fifo}: a named pipe '
                              '(FIFO), not a .npy or .json file')


def test_config_file_on_dev_zero_is_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'train.py'), '--config', '/dev/zero',
       '--workdir', str(tmp_path / 'w')], cwd=tmp_path, capture_output=True,
      text=True, timeout=60, stdin=subprocess.DEVNULL)
  assert error_line(proc) == ('error: config file /dev/zero: a character '
                              'device, not a .py file')
  assert proc.returncode == 2 and not (tmp_path / 'w').exists()


def test_image_bombs_are_refused_from_their_headers(tmp_path, no_decoding):
  import time  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  # Blender: one image declares 12000x12000 (a 6.4 GB decode), the other
  # is 4x4: the scene's images share one size.
  _write_blender(tmp_path / 'scene', _poses(2))
  bomb = tmp_path / 'scene' / 'train' / 'r_1.png'
  _png_declaring(bomb, 12000, 9000)
  assert bomb.stat().st_size < 1000
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_blender(str(tmp_path / 'scene'))
  assert one_line(e) == (f'{bomb}: the image is 12000x9000 but '
                         f'{tmp_path / "scene" / "train" / "r_0.png"} is 4x4 '
                         '(the images of a scene share one size)')
  # transforms.json: larger than the camera the json describes (8x6).
  path = _write_capture(tmp_path / 'capture', dict(fl_x=10.0, w=8, h=6))
  bomb = tmp_path / 'capture' / 'images' / '1.png'
  _png_declaring(bomb, 8000, 6000)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_transforms(path, holdout=0)
  assert one_line(e) == f'{bomb}: the image is 8000x6000 but its camera is 8x6'
  # Beyond any photo, whatever the scene: every image declares 12000x12000.
  _png_declaring(tmp_path / 'capture' / 'images' / '0.png', 12000, 12000)
  _png_declaring(bomb, 12000, 12000)
  with pytest.raises(datasets.DatasetError) as e:
    datasets.load_transforms(path.replace('transforms.json', ''), holdout=0)
  assert one_line(e).endswith('0.png: the image declares 12000x12000 pixels '
                              '(at most 134,217,728 pixels)')
  # CMYK would be read as RGBA.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.new('CMYK', (4, 4)).save(tmp_path / 'scene' / 'train' / 'r_1.jpg')
  with pytest.raises(datasets.DatasetError) as e:
    datasets.images.image_header(str(tmp_path / 'scene' / 'train' /
                                     'r_1.jpg'))
  assert 'colour mode CMYK is not supported' in one_line(e)
  assert time.perf_counter() - start < 5.0


def test_images_and_arrays_beyond_memory_are_refused_before_reading(
    tmp_path, monkeypatch, no_decoding):
  from nerf_jax import resources  # pylint: disable=g-import-not-at-top
  # A scene of same-size images that together exceed the memory there is.
  (tmp_path / 'llff' / 'images').mkdir(parents=True)
  np.save(tmp_path / 'llff' / 'poses_bounds.npy', _poses_bounds(3))
  for i in range(3):
    _png_declaring(tmp_path / 'llff' / 'images' / f'{i}.png', 4096, 3072)
  monkeypatch.setattr(resources, 'available_bytes',
                      lambda device=None: 2 ** 30)
  with pytest.raises(Exception) as e:
    datasets.load_llff(str(tmp_path / 'llff'), downsample=1)
  assert one_line(e).startswith('reading 3 images of 12.6 megapixels at '
                                'most from ')
  assert 'of memory but 1.0 GiB is available' in str(e.value)
  # An .npz whose header declares 100,000 views of 1000x1000: a few
  # hundred bytes that np.load would allocate 1.2 TB for.
  import zipfile  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'bomb.npz'
  with zipfile.ZipFile(path, 'w') as archive:
    with archive.open('images.npy', 'w') as f:
      np.lib.format.write_array_header_1_0(f, dict(
          descr='<f4', fortran_order=False, shape=(100000, 1000, 1000, 3)))
  with pytest.raises(Exception) as e:
    datasets.load_tiny_npz(str(path))
  assert one_line(e).startswith(f'reading {path} needs about ')


def test_prepare_refuses_pipes_and_photos_beyond_memory(tmp_path,
                                                        monkeypatch, no_hang):
  from nerf_jax import resources  # pylint: disable=g-import-not-at-top
  from nerf_jax.sfm import images  # pylint: disable=g-import-not-at-top
  from nerf_jax.sfm import prepare  # pylint: disable=g-import-not-at-top
  from nerf_jax.sfm import report  # pylint: disable=g-import-not-at-top
  os.mkfifo(tmp_path / 'walk.mp4')
  with pytest.raises(report.SfmError) as e:
    prepare.prepare_scene(str(tmp_path / 'walk.mp4'), str(tmp_path / 'scene'))
  assert one_line(e) == (f'{tmp_path / "walk.mp4"}: a named pipe (FIFO), '
                         'not a video file or a folder of photos')
  _png_declaring(tmp_path / 'big.png', 12000, 12000)
  monkeypatch.setattr(resources, 'available_bytes',
                      lambda device=None: 2 ** 30)
  with pytest.raises(Exception) as e:
    images.prepare_photos([str(tmp_path / 'big.png')], str(tmp_path / 'out'),
                          max_size=1600)
  assert one_line(e).startswith(f'decoding {tmp_path / "big.png"} '
                                '(12000x12000 pixels) needs about ')
