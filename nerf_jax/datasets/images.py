"""Reading image files: one-line errors, float RGBA, area downsampling.

Before any pixel is decoded, every file is checked to be a regular file of
plausible size (``inputs.check_input_file``) and its header (size, colour
mode) is read: an image larger than ``MAX_IMAGE_PIXELS``, of a size that
does not fit the scene (``read_images``' ``same_size`` and ``expected``), or
images that together need more memory than the machine has are refused in
one line, so a small file declaring a huge image (a decompression bomb)
costs nothing.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import warnings
from typing import Optional, Sequence

import imageio.v3 as iio
import numpy as np

from nerf_jax.io import inputs
from nerf_jax import resources
from nerf_jax.datasets.base import DatasetError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
_MAX_READERS = 8  # threads decoding images (zlib and libjpeg release the GIL)
# The most pixels one image of a dataset may declare (16384 x 8192): beyond
# any photo nerf_jax trains on, and decoding it takes about 8 GB.
MAX_IMAGE_PIXELS = 2 ** 27
# Colour modes (PIL's names) that read_image turns into RGBA correctly; CMYK
# would be read as RGBA.
_MODES = frozenset({'1', 'L', 'LA', 'La', 'P', 'PA', 'RGB', 'RGBA', 'RGBa',
                    'RGBX', 'I', 'I;16', 'I;16B', 'I;16L'})
# Memory per pixel while an image is decoded (the decoded array and
# read_image's float RGBA copies) and per pixel kept (f32 RGB, and the
# split's stacked copy), for the check before decoding.
_DECODE_BYTES_PER_PIXEL = 64
_KEPT_BYTES_PER_PIXEL = 24


def image_header(path: str) -> tuple:
  """(width, height, mode) from an image file's header; nothing decoded.

  DatasetError with one line for a path that is not a regular image file of
  plausible size, an unreadable header, more than ``MAX_IMAGE_PIXELS`` or an
  unsupported colour mode.
  """
  inputs.check_input_file(path, 'an image file', inputs.MAX_IMAGE_BYTES,
                          DatasetError)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    # PIL warns above 89 million pixels and refuses twice that: this
    # module's own limit is lower and is checked below.
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      with Image.open(path) as im:
        (width, height), mode = im.size, im.mode
  except Image.DecompressionBombError as e:
    pixels = re.search(r'\((\d+) pixels\)', str(e))
    declared = f'{int(pixels.group(1)):,} pixels' if pixels else (
        'more pixels than PIL allows')
    raise DatasetError(f'{path}: the image declares {declared} (at most '
                       f'{MAX_IMAGE_PIXELS:,})') from None
  except Exception as e:  # PIL raises many types for a broken file.
    message = f'{type(e).__name__}: {e}'.replace('\n', ' ')
    raise DatasetError(f'{path}: cannot read image ({message})') from None
  if width * height > MAX_IMAGE_PIXELS:
    raise DatasetError(f'{path}: the image declares {width}x{height} pixels '
                       f'(at most {MAX_IMAGE_PIXELS:,} pixels)')
  if mode not in _MODES:
    raise DatasetError(f'{path}: colour mode {mode} is not supported (save '
                       'it as RGB, RGBA or grey)')
  return width, height, mode


def image_sizes(paths: Sequence[str], same_size: bool = False,
                expected: Optional[Sequence] = None) -> list:
  """The (height, width) of each image from its header, checked against
  the scene before anything is decoded.

  Args:
    paths: the image files.
    same_size: the images must share one size (Blender, LLFF).
    expected: optional per-image (width, height) or None: the camera the
      scene describes; an image may be smaller (a downscaled copy) but of
      the same aspect ratio (2%), never larger.

  Returns:
    list of (height, width); DatasetError with one line naming the file.
  """
  sizes = []
  for i, path in enumerate(paths):
    width, height, _ = image_header(path)
    if same_size and sizes and sizes[0] != (height, width):
      raise DatasetError(
          f'{path}: the image is {width}x{height} but {paths[0]} is '
          f'{sizes[0][1]}x{sizes[0][0]} (the images of a scene share one '
          'size)')
    want = expected[i] if expected is not None else None
    if want is not None:
      w, h = want
      if width > w + 0.5 or height > h + 0.5 or abs(
          (width / w) / (height / h) - 1.0) > 0.02:
        raise DatasetError(f'{path}: the image is {width}x{height} but its '
                           f'camera is {w:g}x{h:g}')
    sizes.append((height, width))
  return sizes


def read_image(path: str) -> np.ndarray:
  """Reads an image as float RGBA.

  Args:
    path: str, a PNG or JPEG (8 or 16 bits; grey, grey+alpha, RGB or RGBA).

  Returns:
    f32[h, w, 4], values in [0, 1]; alpha is 1 where the file has none.
  """
  inputs.check_input_file(path, 'an image file', inputs.MAX_IMAGE_BYTES,
                          DatasetError)
  try:
    image = np.asarray(iio.imread(path))
  except Exception as e:  # imageio raises many types for a broken file.
    message = f'{type(e).__name__}: {e}'.replace('\n', ' ')
    raise DatasetError(f'{path}: cannot read image ({message})') from None
  if np.issubdtype(image.dtype, np.integer):
    image = image.astype(np.float32) / np.iinfo(image.dtype).max
  image = image.astype(np.float32)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
    raise DatasetError(f'{path}: unsupported image shape {image.shape}')
  if image.shape[-1] in (1, 2):  # grey (+ alpha) -> RGB (+ alpha)
    image = np.concatenate([np.repeat(image[..., :1], 3, -1), image[..., 1:]],
                           axis=-1)
  if image.shape[-1] == 3:
    image = np.concatenate([image, np.ones_like(image[..., :1])], axis=-1)
  return image


def block_average(image: np.ndarray, factor: int) -> np.ndarray:
  """Area downsampling by an integer factor: f[h, w, c] -> f[h // factor,
  w // factor, c] (rows and columns past a multiple of it are cropped)."""
  f = int(factor)
  if f == 1:
    return image
  h, w = image.shape[0] // f, image.shape[1] // f
  if min(h, w) < 1:
    raise DatasetError(f'downsampling {image.shape[1]}x{image.shape[0]} by '
                       f'{f} leaves no pixels')
  return image[:h * f, :w * f].reshape(h, f, w, f, -1).mean(axis=(1, 3))


def read_images(paths: Sequence[str], downsample: int = 1,
                background: float = 0.0, same_size: bool = False,
                expected: Optional[Sequence] = None,
                sizes: Optional[Sequence] = None) -> list:
  """Images as f32[h, w, 3] RGB in [0, 1], decoded in a thread pool.

  Downsampling block-averages premultiplied colour; images with alpha are
  then composited onto the ``background`` grey (photos have none).

  The headers are read first (``image_sizes`` with ``same_size`` and
  ``expected``, unless ``sizes`` gives its result) and the memory the
  images need is checked against what is available before any is decoded.
  """
  if sizes is None:
    sizes = image_sizes(paths, same_size, expected)
  f = max(1, int(downsample))
  workers = max(1, min(_MAX_READERS, len(paths), os.cpu_count() or 1))
  if sizes:
    kept = sum((h // f) * (w // f) for h, w in sizes)
    largest = max(h * w for h, w in sizes)
    folders = sorted({os.path.dirname(p) or '.' for p in paths})
    resources.check_fits(
        _KEPT_BYTES_PER_PIXEL * kept + _DECODE_BYTES_PER_PIXEL * largest
        * workers, f'reading {len(paths)} images of {largest / 1e6:.3g} '
        f'megapixels at most from {", ".join(folders[:2])}'
        + (' ...' if len(folders) > 2 else ''),
        'downsample them (data.downsample) or use fewer')

  def read(path):
    rgba = read_image(path)
    rgba = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    rgba = block_average(rgba, downsample)
    return rgba[..., :3] + background * (1.0 - rgba[..., 3:])

  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(read, paths))
