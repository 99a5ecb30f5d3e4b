"""Exporting a trained field: meshes, point clouds, depth and normal maps.

Everything reads the scene through the model's field (``Model.query`` and
``Model.density``: what an image of the model shows) or through its renders.

Symbols used below:
  sigma: density per unit length (``Model.density``).
  box: ((x, y, z), (x, y, z)), the min and max corner of the exported region.
  depth: camera-axis depth, the ray parameter t of rays whose direction has
    camera-space z = -1 (what ``Model.render`` returns), in scene units.
  acc: accumulated opacity of a ray, in [0, 1].
  normal: unit outward surface normal, ``-grad sigma / |grad sigma|``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from nerf_jax.cameras import camera
from nerf_jax.inference import render_lib

MESH_FORMATS = ('.ply', '.obj', '.glb')
POINT_FORMATS = ('.ply',)
MAP_FORMATS = ('png16', 'npy', 'exr')
# A mesh's default iso-level makes a layer this fraction of the box diagonal
# thick half opaque (``default_threshold``).
THRESHOLD_LAYER = 0.02
PNG16_MAX = 65535
# The pip requirement that adds the EXR writer (OpenEXR's own bindings; no
# download at run time).
EXR_PACKAGE = 'OpenEXR==3.5.3'


@dataclasses.dataclass
class Mesh:
  """A triangle mesh with per-vertex attributes.

  Attributes:
    vertices: f32[v, 3], world positions.
    faces: i32[f, 3], vertex indices, counter-clockwise seen from outside.
    normals: f32[v, 3], unit outward normals.
    colors: f32[v, 3] in [0, 1], or None.
  """
  vertices: np.ndarray
  faces: np.ndarray
  normals: np.ndarray
  colors: Optional[np.ndarray] = None


# ---------------------------------------------------------------------------
# Field evaluation in chunks.


# Tetrahedron vertices: central differences along them estimate a gradient
# from 4 evaluations instead of 6, sum_k e_k f(p + h e_k) = 4 h grad f(p)
# + O(h^3).
_TETRAHEDRON = np.array([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]],
                        np.float32)


def normal_step(box) -> float:
  """The finite-difference step of normals: 1/256 of the box diagonal.

  Smaller steps follow the field's noise: on the built-in scene's demo run,
  the share of depth-map normals facing their camera was 84% at 1/1024,
  90% at 1/256 and 94% at 1/128 (which rounds off finer detail).
  """
  lo, hi = np.asarray(box, np.float64)
  return float(np.linalg.norm(hi - lo) / 256)


def make_field_fns(model, step: float = 1e-3) -> dict:
  """Jitted ``fn(variables, points f32[n, 3], ...)`` of a model's field.

  Args:
    model: a ``models.Model`` (or anything with its ``query`` and
      ``density``).
    step: float, the finite-difference step of normals (``normal_step``).

  Returns:
    dict: density (-> f32[n]), rgb (with viewdirs f32[n, 3] -> f32[n, 3]),
    normal (-> f32[n, 3], unit ``-grad sigma``; zero where the density is
    flat). The gradient is numerical, as Neuralangelo's for hash grids: a
    hash grid's analytic gradient is local to one cell and noisy, and
    differentiating through it took 15 s to compile on a CPU against 3 s
    for the density alone.
  """

  def density(variables, points):
    return model.density(variables['params'], variables['state'], points)

  def rgb(variables, points, viewdirs):
    return model.query(variables['params'], variables['state'], points,
                       viewdirs)[0]

  def normal(variables, points):
    offsets = jnp.asarray(_TETRAHEDRON) * step
    around = density(variables, points[:, None, :] + offsets)  # [n, 4]
    grad = jnp.einsum('nk,kc->nc', around, jnp.asarray(_TETRAHEDRON))
    norm = jnp.linalg.norm(grad, axis=-1, keepdims=True)
    # Where the field is flat the direction is undefined: return zero.
    return jnp.where(norm > 1e-12, -grad / jnp.maximum(norm, 1e-12), 0.0)

  return dict(density=jax.jit(density), rgb=jax.jit(rgb),
              normal=jax.jit(normal))


def map_chunked(fn: Callable, variables, arrays: tuple,
                chunk: int) -> np.ndarray:
  """``fn(variables, *arrays)`` over a leading axis in chunks of ``chunk``.

  The last chunk is padded (by repeating its last row) so ``fn`` compiles
  once per chunk size. Every array in ``arrays`` has the leading size n;
  returns the NumPy result of leading size n.
  """
  n = arrays[0].shape[0]
  # Chunks of a power of two: at most log2(chunk) shapes compile, whatever
  # the varying n (e.g. the valid pixels of each frame).
  chunk = max(1, min(int(chunk), 1 << max(n - 1, 0).bit_length()))
  pieces = []
  for start in range(0, n, chunk):
    part = [a[start:start + chunk] for a in arrays]
    valid = part[0].shape[0]
    if valid < chunk:
      part = [np.concatenate([a, np.repeat(a[-1:], chunk - valid, axis=0)])
              for a in part]
    pieces.append(np.asarray(fn(variables, *part))[:valid])
  if not pieces:
    out = jax.eval_shape(fn, variables,
                         *[np.zeros((1,) + a.shape[1:], a.dtype)
                           for a in arrays])
    return np.zeros((0,) + out.shape[1:], out.dtype)
  return np.concatenate(pieces)


# ---------------------------------------------------------------------------
# Meshes.


def default_threshold(box) -> float:
  """The default iso-density of a mesh: a layer ``THRESHOLD_LAYER`` of the
  box diagonal thick is half opaque, ``1 - exp(-sigma * layer) = 0.5``.

  Scale-free (a scene twice as large has half the density): 8.3 for the
  built-in scene's box (diagonal 4.2). Trained fields there peak at a
  density of about 50 (the MLP) to 60 (the hash grid); at 1 % (16.7) the
  hash grid's mesh lost half its surface, and 2 % gave the lowest Chamfer
  distance for both.
  """
  lo, hi = np.asarray(box, np.float64)
  return float(math.log(2.0) / (THRESHOLD_LAYER * np.linalg.norm(hi - lo)))


def grid_shape(box, resolution: int) -> tuple:
  """Samples per axis: ``resolution`` along the longest side of ``box``,
  proportionally fewer (at least 2) along the others."""
  lo, hi = np.asarray(box, np.float64)
  extent = hi - lo
  counts = np.round(resolution * extent / extent.max()).astype(int)
  return tuple(int(c) for c in np.maximum(counts, 2))


def check_grid_fits(box, resolution: int) -> None:
  """Refuses (``errors.UserError``, one line) a density grid that the host
  cannot hold: about 8 bytes per sample (the f32 grid and the temporaries
  around it; marching cubes adds little: 457 MB peak for 384^3 = 216 MB)."""
  from nerf_jax import resources  # pylint: disable=g-import-not-at-top
  shape = grid_shape(box, resolution)
  resources.check_fits(
      8 * int(np.prod(shape)),
      f'a {"x".join(map(str, shape))} density grid (--resolution '
      f'{resolution})', 'lower --resolution or crop with --box')


def density_grid(density_fn: Callable, variables, box, resolution: int,
                 chunk: int) -> np.ndarray:
  """sigma at the vertices of a regular grid spanning ``box`` (corners
  included), evaluated ``chunk`` points per call.

  Args:
    density_fn: ``make_field_fns(model)['density']``.
    variables: the model's {'params': ..., 'state': ...}.
    box: the region; resolution: int, samples along its longest side.
    chunk: int, points per call.

  Returns:
    f32[nx, ny, nz] (``grid_shape``), index [i, j, k] at
    ``lo + (i, j, k) * (hi - lo) / (shape - 1)``.
  """
  shape = grid_shape(box, resolution)
  lo, hi = np.asarray(box, np.float32)
  spacing = (hi - lo) / (np.asarray(shape, np.float32) - 1)
  total = int(np.prod(shape))
  chunk = max(1, min(int(chunk), total))

  # The chunk's points are made on the device from its first index, so the
  # grid's coordinates never exist as one (large) host array.
  @jax.jit
  def block(variables, start):
    index = jnp.minimum(start + jnp.arange(chunk), total - 1)
    ijk = jnp.stack(jnp.unravel_index(index, shape), axis=-1)
    return density_fn(variables, lo + ijk.astype(jnp.float32) * spacing)

  values = np.empty(total, np.float32)
  for start in range(0, total, chunk):
    part = np.asarray(block(variables, jnp.int32(start)))
    values[start:start + chunk] = part[:total - start]
  return values.reshape(shape)


class NoSurfaceError(ValueError):
  """The density never crosses the iso-level inside the box."""


def marching_cubes(grid: np.ndarray, box, threshold: float) -> Mesh:
  """The iso-surface sigma = ``threshold`` of a ``density_grid``.

  Returns:
    ``Mesh`` without colours; normals from the grid's gradient, pointing
    out of the dense region. ``NoSurfaceError`` (one line) when the
    density never crosses ``threshold``.
  """
  from skimage import measure  # pylint: disable=g-import-not-at-top
  lo, hi = np.asarray(box, np.float64)
  spacing = (hi - lo) / (np.asarray(grid.shape) - 1)
  low, high = float(grid.min()), float(grid.max())
  if not low < threshold < high:
    raise NoSurfaceError(
        f'no surface: the density in the box ranges over [{low:.3g}, '
        f'{high:.3g}] and never crosses the threshold {threshold:.3g}; '
        'pass a --threshold inside that range')
  # With 'ascent' the faces wind counter-clockwise seen from the sparse side
  # (trimesh then finds a positive volume); the normals skimage returns
  # point down the gradient, out of the dense side, either way.
  vertices, faces, normals, _ = measure.marching_cubes(
      grid, level=threshold, spacing=tuple(spacing),
      gradient_direction='ascent')
  return Mesh(vertices=(vertices + lo).astype(np.float32),
              faces=faces.astype(np.int32),
              normals=_unit(normals).astype(np.float32))


def _unit(v: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(v, axis=-1, keepdims=True)
  return v / np.maximum(norm, 1e-12)


def keep_largest_components(mesh: Mesh, count: int) -> Mesh:
  """The ``count`` connected components with the most faces (all when
  ``count`` is 0); unused vertices are dropped."""
  if count <= 0 or not len(mesh.faces):
    return mesh
  from scipy import sparse  # pylint: disable=g-import-not-at-top
  from scipy.sparse import csgraph  # pylint: disable=g-import-not-at-top
  n = len(mesh.vertices)
  f = mesh.faces
  edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
  graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])),
                            shape=(n, n))
  _, labels = csgraph.connected_components(graph, directed=False)
  face_labels = labels[f[:, 0]]
  sizes = np.bincount(face_labels)
  kept = np.argsort(-sizes, kind='stable')[:count]
  return _select_faces(mesh, np.isin(face_labels, kept))


def _select_faces(mesh: Mesh, keep: np.ndarray) -> Mesh:
  """The faces where ``keep`` (bool[f]) and the vertices they use."""
  faces = mesh.faces[keep]
  used = np.zeros(len(mesh.vertices), bool)
  used[faces.reshape(-1)] = True
  remap = np.cumsum(used) - 1
  pick = lambda a: None if a is None else a[used]
  return Mesh(vertices=mesh.vertices[used],
              faces=remap[faces].astype(np.int32),
              normals=mesh.normals[used], colors=pick(mesh.colors))


def vertex_colors(rgb_fn: Callable, variables, vertices: np.ndarray,
                  normals: np.ndarray, chunk: int) -> np.ndarray:
  """The field's colour at each vertex, seen head-on from outside
  (view direction ``-normal``): f32[v, 3] in [0, 1]."""
  viewdirs = -normals.astype(np.float32)
  viewdirs[np.linalg.norm(viewdirs, axis=-1) < 0.5] = (0.0, 0.0, 1.0)
  return np.clip(map_chunked(rgb_fn, variables,
                             (vertices.astype(np.float32), viewdirs), chunk),
                 0.0, 1.0)


def extract_mesh(fns: dict, variables, box, resolution: int,
                 threshold: Optional[float], chunk: int,
                 components: int = 0) -> Mesh:
  """The coloured iso-surface of a model's density inside ``box``.

  Args:
    fns: ``make_field_fns(model)``.
    variables: the model's {'params': ..., 'state': ...}.
    box: the region; resolution: int, grid samples along its longest side.
    threshold: the iso-density, or None for ``default_threshold(box)``.
    chunk: int, points per field call.
    components: int, keep this many largest connected pieces (0 = all).

  Returns:
    ``Mesh`` with colours. ``NoSurfaceError`` if there is no surface.
  """
  if threshold is None:
    threshold = default_threshold(box)
  grid = density_grid(fns['density'], variables, box, resolution, chunk)
  mesh = keep_largest_components(marching_cubes(grid, box, threshold),
                                 components)
  mesh.colors = vertex_colors(fns['rgb'], variables, mesh.vertices,
                              mesh.normals, chunk)
  return mesh


def write_mesh(path: str, mesh: Mesh) -> None:
  """Writes PLY, OBJ or GLB (by ``path``'s extension) with vertex colours
  and normals, through trimesh."""
  import trimesh  # pylint: disable=g-import-not-at-top
  ext = os.path.splitext(path)[1].lower()
  if ext not in MESH_FORMATS:
    raise ValueError(f'{path}: a mesh is written as '
                     f'{", ".join(MESH_FORMATS)}, not {ext or "no extension"}')
  colors = None
  if mesh.colors is not None:
    colors = np.round(np.clip(mesh.colors, 0, 1) * 255).astype(np.uint8)
  out = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces,
                        vertex_normals=mesh.normals, vertex_colors=colors,
                        process=False)
  out.export(path, file_type=ext[1:])


# ---------------------------------------------------------------------------
# Renders to points: point clouds, depth and normal maps.


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
  rays = render_lib.image_rays(cameras, 0, near, far)
  out = render_lib.render_rays_chunked(render_fn, variables, rays, chunk)
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
    render_fn: ``render_lib.make_render_fn(model)``; variables: its input.
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
  rgb = np.round(np.clip(colors, 0, 1) * 255).astype(np.uint8)
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

  Normals are the density gradient's (``make_field_fns``) at the pixel's
  expected surface point, in world axes or, with ``frame='camera'``, in the
  camera's (OpenGL: x right, y up, z towards the viewer).

  Returns:
    dict: depth f32[h, w] (0 where acc < ``min_acc``), normals f32[h, w, 3]
    (0 there too), valid bool[h, w], acc f32[h, w].
  """
  out = render_points(render_fn, variables, c2w, intrinsics, near, far,
                      chunk)
  valid = out['acc'] >= min_acc
  normals = np.zeros(out['points'].shape, np.float32)
  normals[valid] = map_chunked(normal_fn, variables,
                               (out['points'][valid].astype(np.float32),),
                               chunk)
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
