"""Renders placed in the world: back-projected pixels and point clouds (PLY).

Symbols used below:
  box: ((x, y, z), (x, y, z)), the min and max corner of the exported region.
  depth: camera-axis depth, the ray parameter t of rays whose direction has
    camera-space z = -1 (what ``Model.render`` returns), in scene units.
  acc: accumulated opacity of a ray, in [0, 1].
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np

from nerf_jax.cameras import camera
from nerf_jax.inference import chunked
from nerf_jax.io import images

POINT_FORMATS = ('.ply',)


def backproject(origins: np.ndarray, directions: np.ndarray,
                depth: np.ndarray) -> np.ndarray:
  """World points ``o + depth * d``: f32[..., 3] from rays f32[..., 3]
  (directions with camera-space z = -1) and camera-axis depth f32[...]."""
  return origins + depth[..., None] * directions


def render_points(render_fn: Callable, variables, c2w: np.ndarray,
                  intrinsics: camera.Intrinsics, near: float, far: float,
                  chunk: int) -> dict:
  """Renders one view and places its pixels in the world.

  Returns:
    dict: rgb f32[h, w, 3], depth and acc f32[h, w], points f32[h, w, 3]
    (``backproject`` of the expected depth).
  """
  cameras = camera.Cameras.create(np.asarray(c2w, np.float32)[None],
                                  intrinsics)
  rays = chunked.image_rays(cameras, 0, near, far)
  out = chunked.render_rays_chunked(render_fn, variables, rays, chunk)
  out['points'] = backproject(rays.origins, rays.directions, out['depth'])
  return out


def inside_box(points: np.ndarray, box) -> np.ndarray:
  """bool[...], whether points f32[..., 3] lie in ``box``."""
  lo, hi = np.asarray(box, np.float32)
  return np.all((points >= lo) & (points <= hi), axis=-1)


def point_cloud(render_fn: Callable, variables, poses: np.ndarray,
                intrinsics: camera.Intrinsics, near: float, far: float,
                chunk: int, box, num_points: int, min_acc: float = 0.9,
                seed: int = 0, progress: bool = False) -> tuple:
  """Points on the surfaces the model renders, from the depth of views.

  Every pixel of every view whose opacity reaches ``min_acc`` (partly
  transparent pixels, e.g. at silhouettes, average two surfaces' depths)
  is placed at its expected depth; points outside ``box`` are dropped and
  at most ``num_points`` are kept, drawn uniformly (seeded).

  Args:
    render_fn: ``chunked.make_render_fn(model)``; variables: its input.
    poses: f32[n, 4, 4], camera-to-world; intrinsics: their camera.
    near, far: float, the sampled interval; chunk: int, rays per call.
    box: the region to keep; num_points: int >= 1.

  Returns:
    (points f32[m, 3], colours f32[m, 3]), m <= num_points.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  # Bound memory: each view keeps at most twice its fair share.
  per_view = -(-2 * num_points // max(len(poses), 1))
  points, colors = [], []
  for c2w in tqdm(poses, desc='views', disable=not progress,
                  dynamic_ncols=True):
    out = render_points(render_fn, variables, c2w, intrinsics, near, far,
                        chunk)
    keep = (out['acc'] >= min_acc) & inside_box(out['points'], box)
    p, c = out['points'][keep], out['rgb'][keep]
    if len(p) > per_view:
      pick = rng.choice(len(p), per_view, replace=False)
      p, c = p[pick], c[pick]
    points.append(p)
    colors.append(c)
  points = np.concatenate(points) if points else np.zeros((0, 3), np.float32)
  colors = np.concatenate(colors) if colors else np.zeros((0, 3), np.float32)
  if len(points) > num_points:
    pick = np.sort(rng.choice(len(points), num_points, replace=False))
    points, colors = points[pick], colors[pick]
  return points.astype(np.float32), colors.astype(np.float32)


def write_point_cloud(path: str, points: np.ndarray, colors: np.ndarray,
                      normals: Optional[np.ndarray] = None) -> None:
  """Writes a binary PLY of points f32[m, 3] with colours f32[m, 3] in
  [0, 1] and, if given, normals f32[m, 3] (nx, ny, nz).

  Written here, not with trimesh: its ``PointCloud`` has no normals and its
  PLY export writes only positions and colours."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in POINT_FORMATS:
    raise ValueError(f'{path}: a point cloud is written as .ply, not '
                     f'{ext or "no extension"}')
  fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
  if normals is not None:
    fields += [('nx', '<f4'), ('ny', '<f4'), ('nz', '<f4')]
  fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
  data = np.empty(len(points), fields)
  for i, name in enumerate('xyz'):
    data[name] = points[:, i]
    if normals is not None:
      data['n' + name] = normals[:, i]
  rgb = images.to_uint8(colors)
  for i, name in enumerate(('red', 'green', 'blue')):
    data[name] = rgb[:, i]
  types = {'<f4': 'float', 'u1': 'uchar'}
  header = ['ply', 'format binary_little_endian 1.0',
            f'element vertex {len(points)}']
  header += [f'property {types[t]} {name}' for name, t in fields]
  header += ['end_header']
  with open(path, 'wb') as f:
    f.write(('\n'.join(header) + '\n').encode('ascii'))
    f.write(data.tobytes())

