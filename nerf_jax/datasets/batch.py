"""The training pixels on device and the ray batches drawn from them.

Training draws pixels, not rays: ``draw_pixels`` picks random pixels of the
``PixelTable`` (outside the gradient: an index is not differentiable), and
``cast`` turns them into a ``RayBatch`` through the cameras *inside* the
differentiated loss, so that whatever the cameras depend on (a model's pose
refinement) receives gradients, and a model sees which view each ray came
from (per-view appearance codes).

Pixels that a split's masks leave out (``base.Split.masks``) are not in the
table at all: the draw is uniform over the used pixels and no ray of a batch
is spent on one that the loss would ignore.

Symbols (``b`` the rays of a batch, ``p`` the training pixels):
  view: i32[b], the training view of each ray (an index into the cameras);
  rgb: f32[b, 3], the pixels' colours in [0, 1];
  alpha: f32[b], their coverage in [0, 1] (a mask), where the data has it;
  depth: f32[b], their ground-truth t (camera-axis depth, ``inf`` where the
    ray hits nothing), where the data has it.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from nerf_jax import distributed
from nerf_jax.cameras import camera
from nerf_jax.datasets import base
from nerf_jax.io import images as images_lib

# Pixel indices are int32 on device.
_MAX_PIXELS = 2 ** 31 - 1


@flax.struct.dataclass
class PixelTable:
  """Every training pixel of every view, flat, with the views' cameras.

  Images of any sizes share one table: view after view, each row by row, so
  a uniform draw over the table is a uniform draw over all training pixels,
  and its view, row and column follow from the index. With masks, only the
  used pixels are rows (still view after view, row by row), and ``offset``
  says where each is in its image.

  Attributes:
    rgb: u8[p', 3] (or f32 in [0, 1]), the colours; in training the rows are
      split over the devices (``distributed.shard_rows``; p' >= p pads with
      never-drawn rows).
    starts: i32[n], the table row of each view's first pixel.
    cameras: ``camera.Cameras`` of the n views.
    num_pixels: int (static), p, the training pixels.
    alpha: u8[p'] coverage (255 = opaque), or None where the data has none.
    depth: f32[p'] ground-truth depth, or None where the data has none.
    offset: i32[p'], each row's pixel in its image (row * width + col), or
      None when every pixel is a row (the offset is then the row's index
      less its view's start).
  """
  rgb: jnp.ndarray
  starts: jnp.ndarray
  cameras: camera.Cameras
  num_pixels: int = flax.struct.field(pytree_node=False)
  alpha: Optional[jnp.ndarray] = None
  depth: Optional[jnp.ndarray] = None
  offset: Optional[jnp.ndarray] = None

  @classmethod
  def create(cls, images, poses, intrinsics, alphas=None, depths=None,
             masks=None) -> 'PixelTable':
    """From images (f[n, h, w, 3], or a list of differently sized ones),
    poses f32[n, 3|4, 4] and an ``Intrinsics`` (shared) or a list of n."""
    return cls.from_cameras(images, camera.Cameras.create(
        np.asarray(poses), intrinsics), alphas, depths, masks)

  @classmethod
  def from_cameras(cls, images, cameras: camera.Cameras, alphas=None,
                   depths=None, masks=None) -> 'PixelTable':
    """From images as ``create`` takes them, and their cameras; optional
    alphas and depths f[n, h, w] (or lists of [h_i, w_i]), and masks
    bool[n, h, w] (or a list; True = used, the others left out)."""
    columns = table_columns(images, alphas, depths, masks)
    return cls(**{k: jnp.asarray(v) for k, v in columns.items()},
               cameras=jax.tree_util.tree_map(jnp.asarray, cameras),
               num_pixels=int(columns['rgb'].shape[0]))

  @classmethod
  def from_split(cls, split: base.Split, mesh: Mesh) -> 'PixelTable':
    """A training split on the mesh, colours and coverage as u8: the table's
    rows split over the devices, the cameras replicated."""
    alphas = None if split.alphas is None else _to_uint8(split.alphas)
    columns = table_columns(_to_uint8(split.images), alphas, split.depths,
                            split.masks)
    tables = {k: distributed.shard_rows(v, mesh) for k, v in columns.items()
              if k != 'starts'}
    return cls(**tables, starts=distributed.replicate(columns['starts'], mesh),
               cameras=distributed.replicate(split.cameras, mesh),
               num_pixels=int(columns['rgb'].shape[0]))


@flax.struct.dataclass
class Pixels:
  """Pixels drawn from a ``PixelTable``: where they are and their targets.

  Attributes:
    view, row, col: i32[b], each pixel's view, row (0 = top) and column.
    rgb: f32[b, 3]; alpha, depth: f32[b] or None (see the module docstring).
  """
  view: jnp.ndarray
  row: jnp.ndarray
  col: jnp.ndarray
  rgb: jnp.ndarray
  alpha: Optional[jnp.ndarray] = None
  depth: Optional[jnp.ndarray] = None


@flax.struct.dataclass
class RayBatch:
  """What a model trains on: rays that know their camera, and the targets.

  Attributes:
    rays: ``camera.Rays`` of batch shape [b].
    view: i32[b], the training view each ray was cast from.
    rgb: f32[b, 3]; alpha, depth: f32[b] or None (see the module docstring).
  """
  rays: camera.Rays
  view: jnp.ndarray
  rgb: jnp.ndarray
  alpha: Optional[jnp.ndarray] = None
  depth: Optional[jnp.ndarray] = None

  @classmethod
  def of_rays(cls, rays: camera.Rays, rgb: jnp.ndarray,
              view: Optional[jnp.ndarray] = None) -> 'RayBatch':
    """A batch of given rays and colours (view 0 unless given): for a loss
    evaluated outside training."""
    if view is None:
      view = jnp.zeros(rgb.shape[:-1], jnp.int32)
    return cls(rays=rays, view=view, rgb=rgb)


def table_columns(images, alphas=None, depths=None, masks=None) -> dict:
  """Images [n, h, w, 3] (or a list of [h_i, w_i, 3]), and optional alphas
  and depths [n, h, w], as flat columns of one table; with masks bool[n, h,
  w] (or a list; True = used), only the used pixels.

  Returns:
    dict of rgb [p, 3] (the images' dtype), starts i32[n] (each view's first
    row), alpha [p] and depth [p] where given, and offset i32[p] (each row's
    pixel in its image) where the masks leave some pixel out. DatasetError
    when p does not fit int32 indices, or is 0.
  """
  keep = _kept_pixels(masks)
  sizes = [int(np.prod(np.shape(image)[:2])) for image in images]
  if keep is not None:
    sizes = [int(np.count_nonzero(k)) for k in keep]
  total = int(np.sum(sizes))
  if total > _MAX_PIXELS:
    raise base.DatasetError(
        f'the training images have {total:,} pixels, more than the '
        f'{_MAX_PIXELS:,} one table can index; downsample them '
        '(data.downsample)')
  if total == 0:
    raise base.DatasetError('the masks leave no training pixel (0 = '
                            'ignored in mask_path images, nonzero in '
                            'dynamic_mask_ ones)')
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
  columns = {'rgb': _flatten(images, (-1, 3), keep), 'starts': starts}
  if alphas is not None:
    columns['alpha'] = _flatten(alphas, (-1,), keep)
  if depths is not None:
    columns['depth'] = _flatten(depths, (-1,), keep).astype(np.float32)
  if keep is not None:
    columns['offset'] = np.concatenate(
        [np.flatnonzero(k) for k in keep]).astype(np.int32)
  return columns


def _kept_pixels(masks) -> Optional[list]:
  """The masks as a list of flat bool[h_i * w_i], or None where there are
  none or they keep every pixel (the table then needs no offsets)."""
  if masks is None:
    return None
  keep = [np.asarray(mask).reshape(-1) != 0 for mask in masks]
  return None if all(k.all() for k in keep) else keep


def _flatten(images, shape: tuple, keep: Optional[list] = None
             ) -> np.ndarray:
  """The images' pixels as one array of ``shape``: view after view, row by
  row; only those of ``keep`` (flat bool per view) where given."""
  if keep is not None:
    return np.concatenate([np.reshape(im, shape)[k]
                           for im, k in zip(images, keep)])
  if isinstance(images, np.ndarray):
    return images.reshape(shape)
  return np.concatenate([np.reshape(im, shape) for im in images])


def _to_uint8(images):
  """f32 images in [0, 1] as u8 (4x less device memory than float32); a
  list of images stays a list."""
  if isinstance(images, list):
    return [_to_uint8(image) for image in images]
  return images_lib.to_uint8(images)


def _as_unit(x: jnp.ndarray) -> jnp.ndarray:
  """u8 in [0, 255] as f32 in [0, 1]; floats as they are."""
  if x.dtype == jnp.uint8:
    return x.astype(jnp.float32) / 255.0
  return x


def draw_pixels(key: jax.Array, table: PixelTable, count: int,
                mesh: Optional[Mesh] = None) -> Pixels:
  """Random pixels drawn uniformly from all training pixels (with
  replacement).

  One flat index per pixel picks a row of the table; its view is found by a
  binary search over the views' first rows, then row and column by its
  offset in that view (the table's ``offset`` column where masks left
  pixels out; a view they leave empty has no rows and is never drawn). The draw depends on the key only, not on the
  devices: with a mesh (the table's rows split over the devices, see
  ``distributed.gather_rows``) the batch is the same one, split over them.

  Returns:
    ``Pixels`` of batch shape [count], targets as f32.
  """
  index = jax.random.randint(key, (count,), 0, table.num_pixels)
  view = jnp.searchsorted(table.starts, index, side='right') - 1
  if table.offset is None:
    offset = index - table.starts[view]
  else:
    offset = distributed.gather_rows(table.offset, index, mesh)
  width = table.cameras.width[view]
  row, col = offset // width, offset % width
  if mesh is not None:
    view, row, col = jax.lax.with_sharding_constraint(
        (view, row, col), distributed.batch_sharded(mesh))
  gather = lambda column: None if column is None else _as_unit(
      distributed.gather_rows(column, index, mesh))
  return Pixels(view=view, row=row, col=col, rgb=gather(table.rgb),
                alpha=gather(table.alpha), depth=gather(table.depth))


def cast(cameras: camera.Cameras, pixels: Pixels, near: float,
         far: float) -> RayBatch:
  """The rays of drawn pixels through ``cameras`` (``camera.cast_rays``, the
  one ray caster), with the pixels' views and targets: differentiable with
  respect to the cameras."""
  rays = camera.cast_rays(cameras, pixels.view, pixels.row, pixels.col, near,
                          far)
  return RayBatch(rays=rays, view=pixels.view, rgb=pixels.rgb,
                  alpha=pixels.alpha, depth=pixels.depth)
