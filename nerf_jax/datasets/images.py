"""Reading image files: one-line errors, float RGBA, area downsampling."""

from __future__ import annotations

import concurrent.futures
import os
from typing import Sequence

import imageio.v3 as iio
import numpy as np

from nerf_jax.datasets.base import DatasetError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
_MAX_READERS = 8  # threads decoding images (zlib and libjpeg release the GIL)


def read_image(path: str) -> np.ndarray:
  """Reads an image as float RGBA.

  Args:
    path: str, a PNG or JPEG (8 or 16 bits; grey, grey+alpha, RGB or RGBA).

  Returns:
    f32[h, w, 4], values in [0, 1]; alpha is 1 where the file has none.
  """
  if os.path.isdir(path):
    raise DatasetError(f'{path}: a folder, not an image file')
  if not os.path.isfile(path):
    raise DatasetError(f'{path}: image file not found')
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
                background: float = 0.0) -> list:
  """Images as f32[h, w, 3] RGB in [0, 1], decoded in a thread pool.

  Downsampling block-averages premultiplied colour; images with alpha are
  then composited onto the ``background`` grey (photos have none).
  """
  def read(path):
    rgba = read_image(path)
    rgba = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    rgba = block_average(rgba, downsample)
    return rgba[..., :3] + background * (1.0 - rgba[..., 3:])

  workers = max(1, min(_MAX_READERS, len(paths), os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    return list(pool.map(read, paths))
