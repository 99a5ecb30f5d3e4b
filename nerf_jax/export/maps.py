"""Depth and normal maps of views: rendering them, their encodings (16-bit
PNG, EXR, .npy) and the folder of maps with ``maps.json``.

Symbols used below:
  depth: camera-axis depth, the ray parameter t of rays whose direction has
    camera-space z = -1 (what ``Model.render`` returns), in scene units.
  acc: accumulated opacity of a ray, in [0, 1].
  normal: unit outward surface normal, ``-grad sigma / |grad sigma|``.
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable

import numpy as np

from nerf_jax.cameras import camera
from nerf_jax.export import fields
from nerf_jax.export import points

MAP_FORMATS = ('png16', 'npy', 'exr')
PNG16_MAX = 65535
# The pip requirement that adds the EXR writer (OpenEXR's own bindings; no
# download at run time).
EXR_PACKAGE = 'OpenEXR==3.5.3'


def depth_png_scale(far: float) -> float:
  """Units of a 16-bit depth PNG per scene unit: the largest whole number
  that still fits ``far`` (depth = value / scale; 0 = no surface).

  A whole number, as depth cameras' PNGs (1000 for millimetres) and
  Open3D's ``depth_scale`` use it.
  """
  return float(max(1, math.floor((PNG16_MAX - 1) / max(far, 1e-6))))


def depth_to_png16(depth: np.ndarray, valid: np.ndarray,
                   scale: float) -> np.ndarray:
  """u16[h, w]: ``round(depth * scale)``, clipped to [1, 65535] where
  ``valid``, 0 elsewhere."""
  value = np.clip(np.round(depth * scale), 1, PNG16_MAX)
  return np.where(valid, value, 0).astype(np.uint16)


def png16_to_depth(value: np.ndarray, scale: float) -> np.ndarray:
  """f32[h, w] depth of a ``depth_to_png16`` image (0 stays 0)."""
  return (value.astype(np.float32) / np.float32(scale)).astype(np.float32)


def normals_to_png16(normals: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """u16[h, w, 3]: unit normals as ``round((n + 1) / 2 * 65535)``; (0, 0, 0)
  where not ``valid`` or where the normal is zero (flat density)."""
  value = np.round((np.clip(normals, -1, 1) + 1) * 0.5 * PNG16_MAX)
  valid = valid & (np.linalg.norm(normals, axis=-1) > 0.5)
  return np.where(valid[..., None], value, 0).astype(np.uint16)


def png16_to_normals(value: np.ndarray) -> np.ndarray:
  """f32[h, w, 3] normals of a ``normals_to_png16`` image (not re-normalised;
  invalid pixels decode to (-1, -1, -1))."""
  return (value.astype(np.float32) / PNG16_MAX * 2.0 - 1.0).astype(np.float32)


def write_png16(path: str, image: np.ndarray) -> None:
  """Writes u16[h, w] (grey) or u16[h, w, 3] (RGB) as a 16-bit PNG (with
  pypng: Pillow, imageio's PNG writer, has no 16-bit RGB mode)."""
  import png  # pylint: disable=g-import-not-at-top
  image = np.asarray(image, np.uint16)
  h, w = image.shape[:2]
  writer = png.Writer(w, h, greyscale=image.ndim == 2, bitdepth=16)
  with open(path, 'wb') as f:
    writer.write(f, image.reshape(h, -1))


def read_png16(path: str) -> np.ndarray:
  """u16[h, w] or u16[h, w, 3] of a 16-bit grey or RGB PNG."""
  import png  # pylint: disable=g-import-not-at-top
  w, h, rows, meta = png.Reader(filename=path).read()
  if meta['bitdepth'] != 16 or meta['planes'] not in (1, 3):
    raise ValueError(f'{path}: not a 16-bit grey or RGB PNG')
  image = np.vstack([np.asarray(row, np.uint16) for row in rows])
  return image.reshape((h, w, 3) if meta['planes'] == 3 else (h, w))


def surface_maps(render_fn: Callable, normal_fn: Callable, variables,
                 c2w: np.ndarray, intrinsics: camera.Intrinsics, near: float,
                 far: float, chunk: int, min_acc: float,
                 frame: str = 'world') -> dict:
  """Depth and normals of one view.

  Normals are the density gradient's (``fields.make_field_fns``) at the pixel's
  expected surface point, in world axes or, with ``frame='camera'``, in the
  camera's (OpenGL: x right, y up, z towards the viewer).

  Returns:
    dict: depth f32[h, w] (0 where acc < ``min_acc``), normals f32[h, w, 3]
    (0 there too), valid bool[h, w], acc f32[h, w].
  """
  out = points.render_points(render_fn, variables, c2w, intrinsics, near,
                             far, chunk)
  valid = out['acc'] >= min_acc
  normals = np.zeros(out['points'].shape, np.float32)
  normals[valid] = fields.map_chunked(
      normal_fn, variables, (out['points'][valid].astype(np.float32),), chunk)
  if frame == 'camera':
    normals = normals @ np.asarray(c2w, np.float32)[:3, :3]
  return dict(depth=np.where(valid, out['depth'], 0.0).astype(np.float32),
              normals=normals, valid=valid, acc=out['acc'])


def exr_available() -> bool:
  try:
    import OpenEXR  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


def write_exr(path: str, channels: dict) -> None:
  """Writes f32 channels ({'Z': [h, w]} or {'RGB': [h, w, 3]}) as a
  ZIP-compressed scanline EXR."""
  import OpenEXR  # pylint: disable=g-import-not-at-top
  header = {'compression': OpenEXR.ZIP_COMPRESSION,
            'type': OpenEXR.scanlineimage}
  data = {k: np.ascontiguousarray(v, np.float32) for k, v in channels.items()}
  with OpenEXR.File(header, data) as f:
    f.write(path)


def read_exr(path: str) -> dict:
  """{channel name: f32 array} of an EXR file written by ``write_exr``."""
  import OpenEXR  # pylint: disable=g-import-not-at-top
  with OpenEXR.File(path) as f:
    return {k: np.array(v.pixels) for k, v in f.channels().items()}


def write_map(path_stem: str, kind: str, value: np.ndarray,
              valid: np.ndarray, fmt: str, scale: float) -> str:
  """Writes one depth (``kind='depth'``, f32[h, w]) or normal map
  (``'normals'``, f32[h, w, 3]) as ``fmt``; returns the file name."""
  if fmt == 'npy':
    path = path_stem + '.npy'
    np.save(path, value.astype(np.float32))
  elif fmt == 'exr':
    path = path_stem + '.exr'
    write_exr(path, {'Z' if kind == 'depth' else 'RGB': value})
  else:
    path = path_stem + '.png'
    png = (depth_to_png16(value, valid, scale) if kind == 'depth' else
           normals_to_png16(value, valid))
    write_png16(path, png)
  return path


def map_conventions(fmt: str, scale: float, frame: str, min_acc: float
                    ) -> dict:
  """What the numbers of written depth and normal maps mean (written as
  ``maps.json`` beside them)."""
  depth = dict(quantity='camera-axis (z) depth in scene units',
               invalid=0, valid_where=f'opacity >= {min_acc}')
  axes = ('camera axes (OpenGL: x right, y up, z towards the viewer)'
          if frame == 'camera' else 'world axes')
  normals = dict(quantity=f'unit outward surface normal in {axes}, from the '
                 'density gradient', invalid=[0, 0, 0],
                 invalid_where='depth invalid, or the density flat')
  if fmt == 'png16':
    depth.update(encoding='uint16 = round(depth * scale)', scale=scale)
    normals.update(encoding='uint16 = round((n + 1) / 2 * 65535)')
  elif fmt == 'exr':
    depth.update(encoding='float32 channel Z')
    normals.update(encoding='float32 channels R, G, B = x, y, z')
  else:
    depth.update(encoding='float32 .npy [h, w]')
    normals.update(encoding='float32 .npy [h, w, 3]')
  return dict(depth=depth, normals=normals)


def write_surface_maps(folder: str, render_fn: Callable, normal_fn: Callable,
                       variables, poses: np.ndarray,
                       intrinsics: camera.Intrinsics, near: float, far: float,
                       chunk: int, fmt: str = 'png16', frame: str = 'world',
                       min_acc: float = 0.5, progress: bool = False) -> dict:
  """Writes depth/NNNN and normals/NNNN maps of every pose into a new
  ``folder``, with ``maps.json`` (conventions, intrinsics and poses).

  Returns:
    The contents of maps.json.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  if fmt not in MAP_FORMATS:
    raise ValueError(f'unknown map format {fmt!r}; choose one of '
                     f'{", ".join(MAP_FORMATS)}')
  scale = depth_png_scale(far)
  for kind in ('depth', 'normals'):
    os.makedirs(os.path.join(folder, kind))
  for i, c2w in enumerate(tqdm(poses, desc='frames', disable=not progress,
                               dynamic_ncols=True)):
    maps = surface_maps(render_fn, normal_fn, variables, c2w, intrinsics,
                        near, far, chunk, min_acc, frame)
    for kind in ('depth', 'normals'):
      write_map(os.path.join(folder, kind, f'{i:04d}'), kind, maps[kind],
                maps['valid'], fmt, scale)
  info = map_conventions(fmt, scale, frame, min_acc)
  info.update(format=fmt, intrinsics=intrinsics.to_dict(),
              poses=np.asarray(poses, np.float64).round(7).tolist())
  with open(os.path.join(folder, 'maps.json'), 'w') as f:
    json.dump(info, f, indent=1)
  return info
