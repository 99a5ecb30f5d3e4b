"""Meshes of a trained field: a density grid, marching cubes, the largest
pieces, vertex colours and the mesh file.

Symbols used below:
  sigma: density per unit length (``Model.density``).
  box: ((x, y, z), (x, y, z)), the min and max corner of the exported region.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from nerf_jax import resources
from nerf_jax.export import fields
from nerf_jax.inference import chunked
from nerf_jax.io import images

MESH_FORMATS = ('.ply', '.obj', '.glb')
# A mesh's default iso-level makes a layer this fraction of the box diagonal
# thick half opaque (``default_threshold``).
THRESHOLD_LAYER = 0.02


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
    density_fn: ``fields.make_field_fns(model)['density']``.
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

  # The chunk's points are made on the device from their flat indices, so
  # the grid's coordinates never exist as one (large) host array.
  @jax.jit
  def block(variables, index):
    ijk = jnp.stack(jnp.unravel_index(index, shape), axis=-1)
    return density_fn(variables, lo + ijk.astype(jnp.float32) * spacing)

  values = chunked.map_chunked(functools.partial(block, variables),
                               chunk=max(1, min(int(chunk), total)),
                               size=total)
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
  colors = fields.map_chunked(
      rgb_fn, variables, (vertices.astype(np.float32), viewdirs), chunk)
  return np.clip(colors, 0.0, 1.0)


def extract_mesh(fns: dict, variables, box, resolution: int,
                 threshold: Optional[float], chunk: int,
                 components: int = 0) -> Mesh:
  """The coloured iso-surface of a model's density inside ``box``.

  Args:
    fns: ``fields.make_field_fns(model)``.
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
    colors = images.to_uint8(mesh.colors)
  out = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces,
                        vertex_normals=mesh.normals, vertex_colors=colors,
                        process=False)
  out.export(path, file_type=ext[1:])

