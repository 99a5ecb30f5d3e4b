"""Dataset loaders: one module per format plus the built-in procedural scene.

``load_scene(config.data)`` dispatches on ``data_cfg.kind``:
  'procedural': the built-in scene (no files; ``path`` must be ''), inside a
    distant textured environment (unbounded) with ``environment``.
  'tiny_npz': the classic tiny NeRF npz (``path`` '' downloads it).
  'blender': a Blender synthetic scene folder (``path`` required).
  'llff': an LLFF capture (poses_bounds.npy + images_N/; ``path`` required).
  'transforms': a transforms.json capture (instant-ngp, nerfstudio,
    prepare.py; ``path`` the json or its folder).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import ml_collections
import numpy as np

from nerf_jax import resources
from nerf_jax.cameras import refine
from nerf_jax.datasets.base import DatasetError, Scene, Split
from nerf_jax.datasets.blender import load_blender
from nerf_jax.datasets.extent import apply_extent
from nerf_jax.datasets.llff import load_llff
from nerf_jax.datasets.procedural import make_scene
from nerf_jax.datasets.tiny_npz import load_tiny_npz
from nerf_jax.datasets.transforms_json import load_transforms

KINDS = ('procedural', 'tiny_npz', 'blender', 'llff', 'transforms')

__all__ = ['DatasetError', 'KINDS', 'Scene', 'Split', 'load_blender',
           'load_llff', 'load_scene', 'load_tiny_npz', 'load_transforms',
           'make_scene']


def _load_procedural(cfg: Any, splits: Sequence[str]) -> Scene:
  del splits  # every split of the built-in scene takes milliseconds
  if getattr(cfg, 'path', ''):
    raise DatasetError(
        f'the procedural scene has no files, but data.path={cfg.path!r}; '
        f'leave it empty or choose another data.kind')
  environment = bool(getattr(cfg, 'environment', False))
  # Kept per pixel: colour, depth and coverage in float32 (20 bytes), and
  # the ray tracer's working arrays of one view (~200 bytes a pixel; the
  # environment's come after the shapes' are freed and add ~2% to the peak).
  views = int(cfg.num_train) + int(cfg.num_val) + int(cfg.num_test)
  pixels = int(cfg.width) * int(cfg.height)
  resources.check_fits(
      pixels * (20 * views + 200),
      f'the built-in scene ({views:,} views of {cfg.width}x{cfg.height})',
      'lower data.width, data.height or data.num_train')
  scene = make_scene(
      width=int(cfg.width), height=int(cfg.height),
      num_train=int(cfg.num_train), num_val=int(cfg.num_val),
      num_test=int(cfg.num_test), seed=int(cfg.seed),
      white_background=bool(cfg.white_background), near=float(cfg.near),
      far=float(cfg.far), environment=environment)
  return _capture_noise(scene, cfg)


def _capture_noise(scene: Scene, cfg: Any) -> Scene:
  """The built-in scene's training views as a real capture's: poses off
  by ``data.pose_noise`` (degrees, fraction of the distance) and photos
  with their own exposure and white balance (``data.exposure_noise``: a
  gain exp(N(0, s)) per view times exp(N(0, s / 3)) per channel).
  Held-out views stay exact."""
  degrees, fraction = (float(x) for x in getattr(cfg, 'pose_noise', (0, 0)))
  sigma = float(getattr(cfg, 'exposure_noise', 0.0))
  train = scene.splits['train']
  rng = np.random.default_rng(int(cfg.seed) + 1)
  if degrees or fraction:
    poses = refine.perturb_poses(np.asarray(train.cameras.poses), rng,
                                 degrees, fraction)
    train = dataclasses.replace(
        train, cameras=train.cameras.replace(poses=poses))
  if sigma:
    gains = np.exp(sigma * (rng.normal(size=(len(train), 1, 1, 1)) +
                            rng.normal(size=(len(train), 1, 1, 3)) / 3))
    train = dataclasses.replace(train, images=np.clip(
        train.images * gains, 0.0, 1.0).astype(np.float32))
  scene.splits['train'] = train
  return scene


def _load_tiny(cfg: Any, splits: Sequence[str]) -> Scene:
  del splits  # one small file holds every view
  if getattr(cfg, 'white_background', False):
    raise DatasetError(
        'data.white_background=True, but a tiny npz has no alpha channel: '
        'its images are on black, so train it with a black background')
  return load_tiny_npz(
      str(getattr(cfg, 'path', '')),
      val_indices=tuple(int(i) for i in getattr(cfg, 'val_indices', ())),
      val_fraction=float(getattr(cfg, 'val_fraction', 0.0)),
      cache_dir=str(getattr(cfg, 'cache_dir', '')),
      near=float(cfg.near), far=float(cfg.far))


def _load_blender(cfg: Any, splits: Sequence[str]) -> Scene:
  return load_blender(
      str(getattr(cfg, 'path', '')), downsample=int(cfg.downsample),
      white_background=bool(cfg.white_background),
      near=float(cfg.near), far=float(cfg.far),
      max_views=int(getattr(cfg, 'max_views', 0)),
      splits=tuple(splits) if splits else ('train', 'val', 'test'))


def _load_llff(cfg: Any, splits: Sequence[str]) -> Scene:
  del splits  # one folder holds every view
  _no_white(cfg, 'an LLFF capture')
  return load_llff(
      str(getattr(cfg, 'path', '')), downsample=int(cfg.downsample),
      ndc=bool(getattr(cfg, 'ndc', True)),
      holdout=int(getattr(cfg, 'holdout', 8)),
      near=float(cfg.near), far=float(cfg.far),
      extent=str(getattr(cfg, 'extent', 'auto')))


def _load_transforms(cfg: Any, splits: Sequence[str]) -> Scene:
  del splits  # one json holds every view
  if not getattr(cfg, 'path', ''):
    raise DatasetError('data.kind=\'transforms\' needs data.path (a '
                       'transforms.json or its folder)')
  return load_transforms(
      str(cfg.path), downsample=int(cfg.downsample),
      holdout=int(getattr(cfg, 'holdout', 8)), near=float(cfg.near),
      far=float(cfg.far), aabb_scale=float(getattr(cfg, 'aabb_scale', 0.0)),
      white_background=bool(cfg.white_background),
      extent=str(getattr(cfg, 'extent', 'auto')))


def _no_white(cfg: Any, what: str) -> None:
  if getattr(cfg, 'white_background', False):
    raise DatasetError(f'data.white_background=True, but {what} has no alpha '
                       'channel: its photos keep their own background')


_LOADERS = {'procedural': _load_procedural, 'tiny_npz': _load_tiny,
            'blender': _load_blender, 'llff': _load_llff,
            'transforms': _load_transforms}


def load_scene(data_cfg: Any, splits: Sequence[str] = ()) -> Scene:
  """Loads the scene a data config describes.

  Args:
    data_cfg: an ``ml_collections.ConfigDict`` (or any object with the same
      attributes): kind, path, near, far, white_background, seed, width,
      height, num_train, num_val, num_test, environment, downsample,
      max_views, val_indices, val_fraction, cache_dir.
    splits: the splits needed ('' = all); formats whose splits are separate
      files (Blender) read only these, the others are cheap to load whole.

  Returns:
    The loaded ``Scene``.
  """
  kind = getattr(data_cfg, 'kind', None)
  if kind not in _LOADERS:
    raise DatasetError(f'unknown data.kind {kind!r}; choose one of '
                       f'{", ".join(KINDS)}')
  return apply_extent(_LOADERS[kind](data_cfg, splits), data_cfg)


def load_eval_split(path: str, split: str, data_cfg: Any = None,
                    white_background: bool = False) -> Split:
  """The views to evaluate a model on, on the model's background.

  Args:
    path: a tiny-format .npz (all its views), a Blender scene folder (its
      ``split``), or 'config' for the training dataset itself (its ``split``).
    split: split name for Blender folders and 'config'.
    data_cfg: the training data config (needed for 'config').
    white_background: bool, the background the model was trained on (from
      its scene.json); Blender images are composited onto it.

  Returns:
    The ``Split``; DatasetError with one line for anything unreadable or
    for images that cannot be put on that background.
  """
  if path == 'config':
    return load_scene(data_cfg, splits=(split,)).split(split)
  capture = _capture_kind(path)
  if capture:
    # Read as training read its data (downsampling, NDC, holdout, box).
    cfg = ml_collections.ConfigDict(
        dict(data_cfg) if getattr(data_cfg, 'kind', None) == capture else
        dict(downsample=1, near=0.0, far=0.0))
    cfg.update(dict(kind=capture, path=path,
                    white_background=white_background))
    return load_scene(cfg, splits=(split,)).split(split)
  if os.path.isdir(path):
    return load_blender(path, splits=(split,),
                        white_background=white_background).split(split)
  # Anything else that exists (a pipe, a device) is refused as an .npz.
  if path.endswith('.npz') or os.path.exists(path):
    if white_background:
      raise DatasetError(
          f'{path}: a tiny npz is on black (no alpha channel), but this '
          'model was trained on a white background')
    return load_tiny_npz(path).split('all')
  raise DatasetError(f'{path}: no such file or folder')


def _capture_kind(path: str) -> str:
  """'llff' or 'transforms' for a real capture's folder or json, else ''."""
  if path.endswith('.json') and os.path.exists(path):
    return 'transforms'
  if os.path.isfile(os.path.join(path, 'poses_bounds.npy')):
    return 'llff'
  if os.path.isfile(os.path.join(path, 'transforms.json')):
    return 'transforms'
  return ''

