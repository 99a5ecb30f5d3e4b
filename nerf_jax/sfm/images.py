"""Photos for SfM: listing, sharpness, downscaling and writing them.

A photo is written upright (EXIF orientation applied), downscaled so its
longest side is at most ``max_size``, with its EXIF kept for COLMAP's
starting focal length; photos much blurrier than the rest are dropped
(``sharpness``, the variance of the Laplacian, against the median). The
memory a photo needs decoded is checked from its header before decoding.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import warnings
from typing import Sequence

import numpy as np

from nerf_jax import resources
from nerf_jax.io import inputs
from nerf_jax.sfm import report

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
JPEG_QUALITY = 95


@dataclasses.dataclass
class Frame:
  """An image written for SfM: its file name, where it came from, sharpness."""
  name: str
  source: str
  sharpness: float


def natural_key(name: str):
  """Sort key that puts 'img2' before 'img10'."""
  return [int(p) if p.isdigit() else p.lower()
          for p in re.split(r'(\d+)', name)]


def is_image_file(path: str) -> bool:
  return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str) -> list:
  """The image files directly inside ``folder``, in natural name order."""
  if not os.path.isdir(folder):
    raise report.SfmError(f'{folder}: not a folder')
  names = [n for n in os.listdir(folder)
           if not n.startswith('.') and is_image_file(n)
           and os.path.isfile(os.path.join(folder, n))]
  if not names:
    raise report.SfmError(f'{folder}: no images (looked for '
                   f'{", ".join(IMAGE_EXTENSIONS)})')
  return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def sharpness(image) -> float:
  """Variance of the 4-neighbour Laplacian of the image's luma.

  ``image`` is HxW or HxWx3 (uint8 in [0, 255], or float on any scale: the
  score scales with its square). Only interior pixels are used (no padding),
  so a constant or linear image scores exactly 0. Higher means sharper; the
  score is only comparable between images of the same size and content type.
  """
  g = np.asarray(image, dtype=np.float64)
  if g.ndim == 3:
    g = g[..., :3] @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma
  if g.ndim != 2:
    raise ValueError(f'expected an HxW or HxWx3 image, got shape {g.shape}')
  if g.shape[0] < 3 or g.shape[1] < 3:
    return 0.0
  lap = (g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
         - 4.0 * g[1:-1, 1:-1])
  return float(lap.var())


def fit_size(width: int, height: int, max_size: int) -> tuple:
  """(width, height) scaled down so the longer side is at most ``max_size``
  (0: unchanged). Never upscales."""
  longest = max(width, height)
  if not max_size or longest <= max_size:
    return int(width), int(height)
  s = max_size / longest
  return max(1, round(width * s)), max(1, round(height * s))


def keep_sharp(scores: Sequence[float], keep_ratio: float) -> np.ndarray:
  """bool mask: False where a score is below ``keep_ratio`` x the median.

  ``keep_ratio`` 0 keeps everything.
  """
  scores = np.asarray(scores, dtype=np.float64)
  if keep_ratio <= 0 or scores.size == 0:
    return np.ones(scores.shape, bool)
  return scores >= keep_ratio * float(np.median(scores))


def pil():
  """PIL's Image and ImageOps modules (imported when first needed)."""
  from PIL import Image, ImageOps  # pylint: disable=g-import-not-at-top
  return Image, ImageOps


def prepare_photos(paths: Sequence[str], image_dir: str, max_size: int,
                   blur_keep: float = 0.0) -> tuple:
  """Writes the photos into ``image_dir`` (upright, downscaled to
  ``max_size``) and drops those much blurrier than the rest.

  Returns (kept frames, dropped frames). A photo that needs no change
  (no resize, no EXIF rotation, an RGB JPEG or PNG) is copied byte for byte;
  others are written as JPEG (PNG for PNG and lossless inputs), keeping their
  EXIF (with the orientation reset) so COLMAP can read the focal length.
  """
  Image, ImageOps = pil()
  os.makedirs(image_dir, exist_ok=True)
  frames, used = [], set()
  for path in paths:
    inputs.check_input_file(path, 'an image file', inputs.MAX_IMAGE_BYTES,
                            report.SfmError)
    try:
      with warnings.catch_warnings():  # the memory is checked here instead
        warnings.simplefilter('ignore', Image.DecompressionBombWarning)
        im = Image.open(path)  # reads the header only
        check_decode_fits(path, *im.size, max_size)
        im.load()
    except (OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as e:
      raise report.SfmError(f'{path}: unreadable image ({e})') from None
    with im:
      rotated = im.getexif().get(0x0112, 1) not in (1, None)
      upright = ImageOps.exif_transpose(im) if rotated else im
      size = fit_size(*upright.size, max_size)
      rgb = upright.convert('RGB')
      if size != rgb.size:
        rgb = rgb.resize(size, Image.LANCZOS)
      ext = os.path.splitext(path)[1].lower()
      stem = os.path.splitext(os.path.basename(path))[0]
      out_ext = ext if ext in ('.jpg', '.jpeg', '.png') else '.png'
      name, k = stem + out_ext, 1
      while name.lower() in used:
        name, k = f'{stem}_{k}{out_ext}', k + 1
      used.add(name.lower())
      out = os.path.join(image_dir, name)
      if (size == im.size and not rotated and im.mode == 'RGB'
          and ext == out_ext):
        shutil.copyfile(path, out)
      elif out_ext == '.png':
        rgb.save(out)
      else:
        rgb.save(out, quality=JPEG_QUALITY,
                 exif=_exif_for_copy(im, resized=size != upright.size))
      frames.append(Frame(name, path, sharpness(np.asarray(rgb))))
  return drop_blurry(frames, image_dir, blur_keep)


# Memory per pixel of a photo or frame as decoded (and turned upright, to
# RGB), and per pixel of its downscaled copy (which the sharpness is
# computed on in float64).
_DECODED_BYTES_PER_PIXEL = 16
_SCALED_BYTES_PER_PIXEL = 64


def check_decode_fits(path: str, width: int, height: int,
                      max_size: int) -> None:
  """Refuses, from its declared size and before decoding, a photo or video
  whose pixels cannot fit in memory (a small file may declare a huge
  image): ``errors.UserError`` with one line naming it."""
  w, h = fit_size(width, height, max_size)
  resources.check_fits(
      _DECODED_BYTES_PER_PIXEL * width * height
      + _SCALED_BYTES_PER_PIXEL * w * h,
      f'decoding {path} ({width}x{height} pixels)',
      'use a smaller image' + ('' if max_size else ' or set --max_size'))


def _exif_for_copy(im, resized: bool) -> bytes:
  """The photo's EXIF for its upright, maybe downscaled copy: COLMAP takes
  its starting focal length from the 35 mm equivalent focal length there."""
  exif = im.getexif()
  if not exif:
    return b''
  sub = exif.get_ifd(0x8769)  # the Exif sub-IFD, loaded so that it is kept
  if 0x0112 in exif:
    exif[0x0112] = 1  # the pixels are upright now
  if resized:
    # Focal-plane resolution is in pixels of the original size: drop it so
    # the focal length cannot be derived at the wrong scale.
    for tag in (0xA002, 0xA003, 0xA20E, 0xA20F, 0xA210):
      sub.pop(tag, None)
  return exif.tobytes()


def drop_blurry(frames: list, image_dir: str, blur_keep: float) -> tuple:
  """Deletes the frames below ``blur_keep`` x the median sharpness from
  ``image_dir``: (kept frames, dropped frames)."""
  mask = keep_sharp([f.sharpness for f in frames], blur_keep)
  kept = [f for f, k in zip(frames, mask) if k]
  dropped = [f for f, k in zip(frames, mask) if not k]
  for f in dropped:
    os.remove(os.path.join(image_dir, f.name))
  return kept, dropped

