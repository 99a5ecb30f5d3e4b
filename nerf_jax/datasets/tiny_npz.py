"""The classic tiny NeRF npz: ``images`` f32[n, h, w, 3], ``poses`` f32[n, 4, 4]
camera-to-world, ``focal`` scalar (pixels).

Images are floats in [0, 1] or uint8 (floats up to 255 are refused); poses
must be rigid and the focal length sane (``checks.pose_problem``,
``checks.intrinsics_problem``). The arrays' declared sizes (their .npy
headers) are checked against the machine's memory before they are read.

Without a path, the public ``tiny_nerf_data.npz`` (106 lego views at 100x100)
is downloaded once into a cache directory and verified by its git blob id
(sha1 of ``b"blob %d\\0" % size`` followed by the bytes), which fixes both its
size and its content.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.request
import zipfile
from typing import Sequence

import numpy as np
import tqdm

from nerf_jax.io import inputs
from nerf_jax import resources
from nerf_jax.cameras import checks
from nerf_jax.cameras.camera import Intrinsics
from nerf_jax.datasets.scene import DEFAULT_AABB
from nerf_jax.datasets.base import DatasetError, Scene, pinhole_split

TINY_NPZ_URLS = (
    'http://cseweb.ucsd.edu/~viscomp/projects/LF/papers/ECCV20/nerf/'
    'tiny_nerf_data.npz',
    'https://people.eecs.berkeley.edu/~bmild/nerf/tiny_nerf_data.npz',
)
TINY_NPZ_BLOB_ID = 'c599d7004b19af4b4e822d767d9a3788cb0048ed'
TINY_NPZ_FILENAME = 'tiny_nerf_data.npz'
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, not for the whole file
NUM_CLASSIC_TRAIN = 100  # views 0-99 train, 100+ val in the classic split
DEFAULT_TEST_INDICES = (101,)  # the classic notebook's test view
DEMO_HINT = 'python train.py --config demo.py'
_KEYS = ('images', 'poses', 'focal')


def default_cache_dir() -> str:
  """$NERF_JAX_CACHE, else $XDG_CACHE_HOME/nerf_jax, else ~/.cache/nerf_jax."""
  if os.environ.get('NERF_JAX_CACHE'):
    return os.environ['NERF_JAX_CACHE']
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'nerf_jax')


def git_blob_id(path: str) -> str:
  """The git blob id of a file: sha1 of ``b"blob <size>\\0" + content``."""
  sha = hashlib.sha1(b'blob %d\0' % os.path.getsize(path))
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      sha.update(block)
  return sha.hexdigest()


def _download(url: str, dest: str) -> None:
  """Streams ``url`` into the open-able path ``dest`` with a progress bar."""
  with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
    total = int(response.headers.get('Content-Length') or 0) or None
    with open(dest, 'wb') as f, tqdm.tqdm(
        total=total, unit='B', unit_scale=True, desc=os.path.basename(url),
        disable=None) as bar:
      for block in iter(lambda: response.read(1 << 16), b''):
        f.write(block)
        bar.update(len(block))


def _try_url(url: str, target: str, cache_dir: str) -> str:
  """Downloads ``url`` to ``target`` if verified; returns '' or why not."""
  fd, tmp = tempfile.mkstemp(prefix='.download-', suffix='.part', dir=cache_dir)
  os.close(fd)
  try:
    _download(url, tmp)
    blob = git_blob_id(tmp)
    if blob != TINY_NPZ_BLOB_ID:
      return f'{url}: checksum mismatch (git blob id {blob}, expected ' \
             f'{TINY_NPZ_BLOB_ID})'
    os.replace(tmp, target)
    return ''
  except (OSError, http.client.HTTPException, ValueError) as e:
    return f'{url}: {type(e).__name__}: {e}'.replace('\n', ' ')
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def fetch_tiny_npz(cache_dir: str = '', url: str = '') -> str:
  """The path of a verified ``tiny_nerf_data.npz``, downloading it if needed.

  Args:
    cache_dir: str, where to keep the file ('' = ``default_cache_dir()``).
    url: str, a single URL to try instead of ``TINY_NPZ_URLS``.

  Returns:
    str, the path of the cached file.
  """
  cache_dir = cache_dir or default_cache_dir()
  target = os.path.join(cache_dir, TINY_NPZ_FILENAME)
  if os.path.isfile(target):
    if git_blob_id(target) == TINY_NPZ_BLOB_ID:
      return target
    logging.warning('%s fails verification; downloading it again', target)
    os.remove(target)
  try:
    os.makedirs(cache_dir, exist_ok=True)
  except OSError as e:
    raise DatasetError(f'cannot create cache directory {cache_dir}: {e}')
  errors = []
  for candidate in ((url,) if url else TINY_NPZ_URLS):
    logging.info('downloading %s to %s', candidate, target)
    error = _try_url(candidate, target, cache_dir)
    if not error:
      return target
    errors.append(error)
  first = url or TINY_NPZ_URLS[0]
  raise DatasetError(
      f'could not download {TINY_NPZ_FILENAME} ({"; ".join(errors)}); '
      f'download it from {first} and pass --config.data.path=FILE, or run the '
      f'built-in scene instead: {DEMO_HINT}')


def _declared_bytes(path: str) -> int:
  """The memory reading the archive takes, from its arrays' .npy headers
  (their declared shapes decide what numpy allocates, whatever the
  compressed file's size): the arrays, and the images again as float32 in
  the loaded splits. 0 when a header cannot be read (np.load says why)."""
  fmt = np.lib.format
  need = 0
  try:
    with zipfile.ZipFile(path) as archive:
      for info in archive.infolist():
        with archive.open(info) as f:
          version = fmt.read_magic(f)
          read = {(1, 0): fmt.read_array_header_1_0,
                  (2, 0): fmt.read_array_header_2_0}.get(version)
          if read is None:
            need += info.file_size
            continue
          shape, _, dtype = read(f)
        count = int(np.prod(shape, dtype=np.float64))
        need += count * dtype.itemsize
        if info.filename in ('images', 'images.npy'):
          need += count * 4 * 3  # float32: the file's views and the splits'
  except (OSError, ValueError, EOFError, zipfile.BadZipFile,
          NotImplementedError):
    return 0
  return need


def _read_npz(path: str):
  """Reads and checks the three arrays: (images, poses, focal)."""
  inputs.check_input_file(path, 'an .npz file', inputs.MAX_NPZ_BYTES,
                          DatasetError)
  with open(path, 'rb') as f:
    if f.read(4) != b'PK\x03\x04':  # every .npz is a zip archive
      raise DatasetError(f'{path}: not an .npz file (no zip header)')
  resources.check_fits(_declared_bytes(path), f'reading {path}',
                       'use a file with fewer or smaller views')
  try:
    with np.load(path, allow_pickle=False) as data:
      missing = [k for k in _KEYS if k not in data.files]
      if missing:
        raise DatasetError(
            f'{path}: missing key(s) {missing} (has {sorted(data.files)}); '
            f'expected {list(_KEYS)}')
      images, poses, focal = (np.asarray(data[k]) for k in _KEYS)
  except DatasetError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
    message = f'{type(e).__name__}: {e}'.replace('\n', ' ')
    raise DatasetError(f'{path}: not a readable .npz file ({message})')
  if focal.size != 1 or focal.dtype.kind not in 'fiu':
    raise DatasetError(f'{path}: focal must be a real scalar, got shape '
                       f'{focal.shape} {focal.dtype}')
  if poses.dtype.kind not in 'fiu':
    raise DatasetError(f'{path}: poses must be real numbers, got '
                       f'{poses.dtype}')
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / 255.0
  elif images.dtype.kind != 'f':
    raise DatasetError(f'{path}: images must be floats in [0, 1] or uint8, '
                       f'got {images.dtype}')
  return images, poses, float(focal.reshape(()))


def _check_indices(indices: Sequence[int], n: int, what: str,
                   path: str) -> np.ndarray:
  indices = np.asarray(indices, np.int64).reshape(-1)
  bad = indices[(indices < 0) | (indices >= n)]
  if bad.size:
    raise DatasetError(f'{path}: {what} {bad.tolist()} out of range for '
                       f'{n} views')
  return np.unique(indices)


def split_indices(n: int, val_indices: Sequence[int] = (),
                  val_fraction: float = 0.0, path: str = 'tiny npz'):
  """The (train, val) view numbers of an n-view file.

  Classic split: views 0-99 train, 100+ val. ``val_indices`` holds out those
  views; ``val_fraction`` holds out every round(1 / val_fraction)-th view,
  starting at 0. A file of at most 100 views without either option falls
  back to holding out every 8th view.

  Args:
    n: int, the number of views in the file.
    val_indices: int[k], explicit validation views.
    val_fraction: float in [0, 1), the share of held-out views.
    path: str, names the file in error messages.

  Returns:
    (train int[n_train], val int[n_val]), sorted view numbers.
  """
  if len(val_indices) and val_fraction > 0:
    raise DatasetError(f'{path}: give val_indices or val_fraction, not both')
  if not 0.0 <= val_fraction < 1.0:
    raise DatasetError(f'{path}: val_fraction must be in [0, 1), got '
                       f'{val_fraction}')
  views = np.arange(n)
  if len(val_indices):
    val = _check_indices(val_indices, n, 'val_indices', path)
  elif val_fraction > 0:
    val = views[::max(1, int(round(1.0 / val_fraction)))]
  elif n > NUM_CLASSIC_TRAIN:
    val = views[NUM_CLASSIC_TRAIN:]
  else:
    val = views[::8]
  return np.setdiff1d(views, val), val


def _test_indices(test_indices: Sequence[int], n: int, path: str) -> np.ndarray:
  """Checks test views; the default classic view is dropped if absent."""
  if tuple(test_indices) == DEFAULT_TEST_INDICES and n <= max(test_indices):
    return np.zeros((0,), np.int64)
  return _check_indices(test_indices, n, 'test_indices', path)


def load_tiny_npz(path: str = '', *, val_indices: Sequence[int] = (),
                  val_fraction: float = 0.0,
                  test_indices: Sequence[int] = DEFAULT_TEST_INDICES,
                  cache_dir: str = '', url: str = '', near: float = 2.0,
                  far: float = 6.0) -> Scene:
  """Loads a tiny-NeRF npz (downloading the public one when path is '').

  Args:
    path: str, the .npz file; '' downloads and caches tiny_nerf_data.npz.
    val_indices: int[k], explicit validation views (the rest train).
    val_fraction: float, hold out every round(1 / val_fraction)-th view.
    test_indices: int[k], views of the 'test' split (default: view 101, the
      classic test view; skipped when the file has no view 101).
    cache_dir: str, download cache ('' = ``default_cache_dir()``).
    url: str, a single download URL instead of ``TINY_NPZ_URLS``.
    near, far: float, the sampled interval along t.

  Returns:
    ``Scene`` named 'tiny_npz' with 'train', 'val' and 'test' splits (empty
    splits are left out) and 'all' (every view of the file).
  """
  path = path or fetch_tiny_npz(cache_dir, url)
  images, poses, focal = _read_npz(path)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise DatasetError(f'{path}: images must have shape (n, height, width, '
                       f'3), got {images.shape}')
  n, height, width = images.shape[:3]
  if min(height, width) < 1:
    raise DatasetError(f'{path}: images are {width}x{height} pixels (empty)')
  problem = checks.intrinsics_problem(
      focal, focal, width / 2.0, height / 2.0, width, height,
      names=('focal',) * 4 + ('width', 'height'))
  if problem:
    raise DatasetError(f'{path}: {problem}')
  intrinsics = Intrinsics.from_focal(focal, width, height)
  # Check the whole file once, so errors name the file's own view numbers.
  everything = pinhole_split(images, poses, intrinsics, np.arange(n), path)
  train, val = split_indices(n, val_indices, val_fraction, path)
  parts = {'train': train, 'val': val,
           'test': _test_indices(test_indices, n, path)}
  splits = {}
  for name, idx in parts.items():
    if name != 'train' and not idx.size:
      continue
    splits[name] = pinhole_split(everything.images[idx],
                                 everything.poses[idx], intrinsics, idx,
                                 f'{path} ({name} split)')
  splits['all'] = everything
  return Scene(name='tiny_npz', splits=splits, near=float(near),
               far=float(far), white_background=False,
               aabb=DEFAULT_AABB)
