"""The train state and the training pixels on device.

``TrainState`` is everything a checkpoint holds; ``TrainData`` is the flat
pixel table of the training views and their cameras, from which the step
draws its rays.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from nerf_jax.cameras import camera
from nerf_jax import datasets, distributed, models
from nerf_jax.io import images as images_lib


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds.

  Attributes:
    step: i32[], optimisation steps taken.
    params: the model's trained parameters.
    opt_state: the optax state.
    model_state: the model's non-trained state (``{}`` for the vanilla NeRF).
    elapsed_s: f32[], training wall-clock so far (evaluation excluded), as of
      the last checkpoint.
    nonfinite: i32[], steps in a row (up to now) whose loss or gradients were
      not finite; each such step is skipped (no update).
    skipped: i32[], all steps skipped so far.
  """
  step: jnp.ndarray
  params: Any
  opt_state: Any
  model_state: Any
  elapsed_s: jnp.ndarray
  nonfinite: jnp.ndarray
  skipped: jnp.ndarray

  def variables(self) -> dict:
    """What rendering needs: {'params': ..., 'state': ...}."""
    return {'params': self.params, 'state': self.model_state}


@flax.struct.dataclass
class TrainData:
  """The training pixels kept on device; rays are made inside the step.

  Images of any sizes share one flat pixel table: view after view, each row
  by row, so a uniform draw over the table is a uniform draw over all
  training pixels, and its view, row and column follow from the index.

  Attributes:
    pixels: u8[p', 3] (or f32 in [0, 1]), the pixel table; in training its
      rows are split over the devices (``distributed.shard_rows``; p' >= p
      pads with never-sampled rows).
    starts: i32[n], the table row of each view's first pixel.
    cameras: ``camera.Cameras`` of the n views.
    num_pixels: int (static), p, the training pixels.
  """
  pixels: jnp.ndarray
  starts: jnp.ndarray
  cameras: camera.Cameras
  num_pixels: int = flax.struct.field(pytree_node=False)

  @classmethod
  def create(cls, images, poses, intrinsics) -> 'TrainData':
    """From images (f[n, h, w, 3], or a list of differently sized ones),
    poses f32[n, 3|4, 4] and an ``Intrinsics`` (shared) or a list of n."""
    return cls.from_cameras(images, camera.Cameras.create(
        np.asarray(poses), intrinsics))

  @classmethod
  def from_cameras(cls, images, cameras: camera.Cameras) -> 'TrainData':
    if not isinstance(images, list):
      images = np.asarray(images)
    table, starts = pixel_table(images)
    return cls(pixels=jnp.asarray(table), starts=jnp.asarray(starts),
               cameras=jax.tree_util.tree_map(jnp.asarray, cameras),
               num_pixels=int(table.shape[0]))


# Pixel indices are int32 on device.
_MAX_PIXELS = 2 ** 31 - 1


def pixel_table(images) -> tuple:
  """Images [n, h, w, 3] (or a list of [h_i, w_i, 3]) as one table.

  Returns:
    (pixels [p, 3] of the images' dtype, starts i32[n]: each view's first
    row). DatasetError when p does not fit int32 indices.
  """
  sizes = [int(np.prod(np.shape(image)[:2])) for image in images]
  total = int(np.sum(sizes))
  if total > _MAX_PIXELS:
    raise datasets.DatasetError(
        f'the training images have {total:,} pixels, more than the '
        f'{_MAX_PIXELS:,} one table can index; downsample them '
        '(data.downsample)')
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
  if isinstance(images, np.ndarray):
    return images.reshape(-1, images.shape[-1]), starts
  return np.concatenate([np.reshape(im, (-1, np.shape(im)[-1]))
                         for im in images]), starts


def create_train_state(key: jax.Array, model: models.Model,
                       tx: optax.GradientTransformation) -> TrainState:
  params, model_state = model.init(key)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), model_state=model_state,
                    elapsed_s=jnp.zeros((), jnp.float32),
                    nonfinite=jnp.zeros((), jnp.int32),
                    skipped=jnp.zeros((), jnp.int32))


def _to_uint8(images):
  """f32 images in [0, 1] as u8 (4x less device memory than float32); a
  list of images stays a list."""
  if isinstance(images, list):
    return [_to_uint8(image) for image in images]
  return images_lib.to_uint8(images)


def put_data(split: datasets.Split, mesh: Mesh) -> TrainData:
  """The training split on the mesh: the pixel table's rows split over the
  devices, the cameras replicated."""
  table, starts = pixel_table(_to_uint8(split.images))
  return TrainData(pixels=distributed.shard_rows(table, mesh),
                   starts=distributed.replicate(starts, mesh),
                   cameras=distributed.replicate(split.cameras, mesh),
                   num_pixels=int(table.shape[0]))
