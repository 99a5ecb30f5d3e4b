"""Per-frame masks of real captures: the pixels training and evaluation use.

Two conventions, both read from transforms.json captures:

- nerfstudio's ``mask_path``, a frame key (relative to the json, as
  ``file_path``): a single-channel image, 0 = the pixel is ignored,
  nonzero = used (nerfstudio ``data/utils/data_utils.py``,
  ``get_image_mask_tensor_from_path``: the mask's values cast to bool).
- instant-ngp's dynamic masks: ``dynamic_mask_<image stem>.png`` beside the
  image (``images/0001.jpg`` -> ``images/dynamic_mask_0001.png``); a pixel
  whose red, green or blue is nonzero is dynamic and ignored (instant-ngp
  ``src/nerf_loader.cu``, ``load_nerf``: ``path.parent_path() /
  "dynamic_mask_{}.png"`` of ``path.basename()``, the file name less its
  last extension; such pixels get its ``mask_color`` and are skipped).

Here a mask's pixel counts as nonzero where any of its red, green, blue
(or grey) values is; alpha is not read. A frame may have both kinds (a
pixel is used where both say so), either, or none (all its pixels used).

A mask is the size of its image file, or already of the image after
``data.downsample`` (then used as it is). Downsampled with its image, a
pixel is used only if every full-resolution pixel it averages is: a
block-averaged colour with a passer-by in it is not the static scene's.

Symbols: ``used``, bool[h, w], True where a pixel is used.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence

import numpy as np

from nerf_jax.datasets.base import DatasetError
from nerf_jax.datasets.images import image_header, read_image

DYNAMIC_PREFIX = 'dynamic_mask_'


class MaskFile(NamedTuple):
  """One mask image of a frame.

  Attributes:
    path: str, the file.
    dynamic: bool, instant-ngp's polarity (nonzero = ignored) if True, else
      nerfstudio's (nonzero = used).
  """
  path: str
  dynamic: bool


def frame_mask_files(frame: dict, image_file: str, root: str,
                     where: str) -> list:
  """The ``MaskFile`` s of one transforms.json frame: its ``mask_path``
  (which must exist) and the instant-ngp dynamic mask beside
  ``image_file``, where one exists. ``where`` names the json in errors."""
  files = []
  if frame.get('mask_path') is not None:
    value = frame['mask_path']
    if not isinstance(value, str) or not value:
      raise DatasetError(f'{where}: mask_path of {frame.get("file_path")!r} '
                         f'must be a file name, got {value!r}')
    path = os.path.normpath(os.path.join(root, value))
    if not os.path.exists(path):
      raise DatasetError(f'{path}: no such mask file (the mask_path of '
                         f'{os.path.relpath(image_file, root)} in {where})')
    files.append(MaskFile(path, dynamic=False))
  stem = os.path.splitext(os.path.basename(image_file))[0]
  dynamic = os.path.join(os.path.dirname(image_file),
                         f'{DYNAMIC_PREFIX}{stem}.png')
  if os.path.exists(dynamic):
    files.append(MaskFile(dynamic, dynamic=True))
  return files


def _mask_factor(path: str, image_size: tuple, downsample: int) -> int:
  """How much a mask is downsampled: ``downsample`` when it is as large as
  its image (h, w) file, 1 when it is as large as the downsampled image;
  DatasetError naming the mask otherwise. Reads the header only."""
  width, height, _ = image_header(path)
  h, w = image_size
  f = int(downsample)
  if (height, width) == (h, w):
    return f
  if (height, width) == (h // f, w // f):
    return 1
  also = f' ({w // f}x{h // f} downsampled by {f})' if f > 1 else ''
  raise DatasetError(f'{path}: the mask is {width}x{height} but its image '
                     f'is {w}x{h}{also}')


def check_mask_sizes(mask_files: Sequence[list], sizes: Sequence[tuple],
                     downsample: int) -> None:
  """Checks every mask's header against its image's (h, w) before any pixel
  is decoded (``_mask_factor``)."""
  for files, size in zip(mask_files, sizes):
    for file in files:
      _mask_factor(file.path, size, downsample)


def downsample_used(used: np.ndarray, factor: int) -> np.ndarray:
  """bool[h // f, w // f]: a block is used only if all its f x f pixels
  are (rows and columns past a multiple of f are cropped, as the images'
  ``images.block_average``)."""
  f = int(factor)
  if f == 1:
    return used
  h, w = used.shape[0] // f, used.shape[1] // f
  return used[:h * f, :w * f].reshape(h, f, w, f).all(axis=(1, 3))


def read_mask(files: Sequence[MaskFile], image_size: tuple,
              downsample: int) -> Optional[np.ndarray]:
  """The used pixels of one frame at its downsampled size, bool[h // f,
  w // f] (``image_size`` (h, w) the image file's), from its mask files;
  None where it has none (all used)."""
  used = None
  for file in files:
    f = _mask_factor(file.path, image_size, downsample)
    nonzero = np.any(read_image(file.path)[..., :3] > 0, axis=-1)
    mine = downsample_used(~nonzero if file.dynamic else nonzero, f)
    used = mine if used is None else used & mine
  return used


def read_masks(mask_files: Sequence[list], sizes: Sequence[tuple],
               downsample: int) -> Optional[list]:
  """Every frame's used pixels (``read_mask``; all True for frames without
  a mask), or None when no frame has a mask."""
  if not any(mask_files):
    return None
  f = int(downsample)
  masks = []
  for files, (h, w) in zip(mask_files, sizes):
    used = read_mask(files, (h, w), f)
    masks.append(np.ones((h // f, w // f), bool) if used is None else used)
  return masks
