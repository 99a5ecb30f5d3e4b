"""The training step: drawing pixels, the pure update and micro-batches.

``make_train_step`` builds ``train_step(state, data, rng) -> (state,
metrics)``, pure and unjitted; the loop jits it once with the state donated.
The step draws pixels from the pixel table (``datasets.batch``) and the
differentiated loss casts their rays through the cameras the model adjusts
(``Model.adjust_cameras``), so per-view parameters and cameras receive
gradients (``make_loss_and_grads``).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nerf_jax import distributed, metrics, models
from nerf_jax.cameras import camera
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.train import train_state


def make_train_step(model: models.Model, tx: optax.GradientTransformation,
                    batch_rays: int, near: float, far: float,
                    mesh: Optional[Mesh] = None,
                    micro_batches: int = 1) -> Callable:
  """``train_step(state, data, rng) -> (state, metrics)``, pure and unjitted.

  Randomness is ``fold_in(rng, state.step)``, so a resumed run draws the
  same batches as an uninterrupted one. With a mesh, the ray batch is split
  over its 'data' axis (parameters stay replicated). After the parameter
  update the model may refresh its non-trained state (``update_state``).
  A model that ``couples_rays`` computes its loss and gradients on each
  device's share of the batch (``shard_map``), averaged over devices.

  A step whose loss or gradients are not finite (NaN or infinity) changes
  nothing but the step counter and ``state.nonfinite`` / ``state.skipped``:
  the parameters, the optimizer state and the model state stay as they
  were, and the next step draws another batch.

  With ``micro_batches`` k > 1 the same ``batch_rays`` rays are processed as
  k micro-batches of ``batch_rays / k`` rays in a ``lax.scan`` (see
  ``accumulate_loss_and_grads``) and their mean loss, metrics and gradients
  drive one optimizer update: the update of a mean-over-rays loss, with the
  working memory of one micro-batch.
  """
  micro_batches = int(micro_batches)
  if micro_batches < 1 or batch_rays % micro_batches:
    raise ValueError(f'batch_rays={batch_rays} is not divisible by '
                     f'micro_batches={micro_batches}')

  loss_and_grads = make_loss_and_grads(model, near, far, micro_batches, mesh)

  def train_step(state: train_state.TrainState, data: batch_lib.PixelTable,
                 rng: jax.Array):
    key = jax.random.fold_in(rng, state.step)
    k_batch, k_render, k_state = jax.random.split(key, 3)
    pixels = batch_lib.draw_pixels(k_batch, data, batch_rays, mesh)
    if mesh is not None:
      pixels = jax.lax.with_sharding_constraint(
          pixels, distributed.batch_sharded(mesh))
    (loss, aux), grads = loss_and_grads(
        state.params, state.model_state, pixels, data.cameras, k_render,
        state.step)
    finite = jnp.isfinite(loss) & metrics.all_finite(grads)

    def update(_):
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      model_state = model.update_state(params, state.model_state,
                                       state.step + 1, k_state)
      return params, opt_state, model_state

    def keep(_):
      return state.params, state.opt_state, state.model_state

    # One branch runs: a finite step costs the check (a reduction over the
    # gradients) and nothing else.
    params, opt_state, model_state = jax.lax.cond(finite, update, keep, None)
    skip = 1 - finite.astype(jnp.int32)
    out = {'loss': loss}
    for name, value in aux.items():
      if name.startswith('mse'):
        out['psnr' + name[3:]] = metrics.mse_to_psnr(value)
      else:
        out[name] = value
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=opt_state, model_state=model_state,
                              nonfinite=(state.nonfinite + 1) * skip,
                              skipped=state.skipped + skip)
    # A copy the host may read after the state is donated to the next step.
    out['nonfinite'] = new_state.nonfinite + 0
    return new_state, out

  return train_step


def pixel_loss(model: models.Model, near: float, far: float) -> Callable:
  """``loss(params, model_state, pixels, cameras, key, step) -> (loss,
  metrics)``: the model's loss of drawn pixels, their rays cast through the
  cameras the model adjusts, all inside the function (so inside the
  gradient)."""
  def loss(params, model_state, pixels: batch_lib.Pixels,
           cameras: camera.Cameras, key: jax.Array, step: jnp.ndarray):
    cameras = model.adjust_cameras(params, cameras)
    batch = batch_lib.cast(cameras, pixels, near, far)
    return model.loss(params, model_state, batch, key, step)

  return loss


def make_loss_and_grads(model: models.Model, near: float, far: float,
                        micro_batches: int = 1,
                        mesh: Optional[Mesh] = None) -> Callable:
  """``(params, model_state, pixels, cameras, key, step) -> ((loss, aux),
  grads)`` of ``pixel_loss`` with respect to ``params``, over
  ``micro_batches`` micro-batches; for a model that ``couples_rays`` on a
  mesh, per device and averaged."""
  loss_fn = pixel_loss(model, near, far)

  def loss_and_grads(params, model_state, pixels, cameras, key, step, mesh):
    if micro_batches == 1:
      grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
      return grad_fn(params, model_state, pixels, cameras, key, step)
    return accumulate_loss_and_grads(
        functools.partial(_with_cameras, loss_fn, cameras), params,
        model_state, pixels, key, step, micro_batches, mesh)

  if mesh is not None and model.couples_rays:
    # Each device computes its shard's loss and gradients (its own packing,
    # its own render key); their means are the step's.
    def per_device(params, model_state, pixels, cameras, key, step):
      key = jax.random.fold_in(key, jax.lax.axis_index(distributed.AXIS))
      value = loss_and_grads(params, model_state, pixels, cameras, key, step,
                             None)
      return jax.lax.pmean(value, distributed.AXIS)

    batch, same = P(distributed.AXIS), P()
    return jax.shard_map(
        per_device, mesh=mesh, in_specs=(same, same, batch, same, same, same),
        out_specs=same, check_vma=False)
  return functools.partial(loss_and_grads, mesh=mesh)


def _with_cameras(loss_fn: Callable, cameras, params, model_state, pixels,
                  key, step):
  """``loss_fn`` with the cameras fixed (the micro-batches share them)."""
  return loss_fn(params, model_state, pixels, cameras, key, step)


def split_micro_batches(tree: Any, micro_batches: int,
                        mesh: Optional[Mesh] = None) -> Any:
  """Splits every leaf's leading axis [b, ...] into [k, b / k, ...].

  Micro-batch i holds the items i, i + k, i + 2k, ... (a strided split), so
  with a mesh each device keeps exactly its own shard of every micro-batch
  and nothing moves between devices.
  """
  def split(x):
    x = x.reshape((x.shape[0] // micro_batches, micro_batches) + x.shape[1:])
    return jnp.moveaxis(x, 1, 0)

  tree = jax.tree_util.tree_map(split, tree)
  if mesh is not None:
    tree = jax.lax.with_sharding_constraint(
        tree, NamedSharding(mesh, P(None, distributed.AXIS)))
  return tree


def accumulate_loss_and_grads(loss_fn: Callable, params: Any, model_state: Any,
                              batch: Any, key: jax.Array, step: jnp.ndarray,
                              micro_batches: int,
                              mesh: Optional[Mesh] = None) -> tuple:
  """``value_and_grad(loss_fn, has_aux=True)`` averaged over micro-batches.

  ``loss_fn(params, model_state, batch, key, step)``; the batch (a pytree of
  [b, ...] leaves, e.g. drawn ``Pixels``) is split by
  ``split_micro_batches``, and micro-batch i is rendered with
  ``fold_in(key, i)``. A ``lax.scan`` sums each micro-batch's loss, metrics
  and gradients, so only one micro-batch's forward and backward working set
  is alive at a time; the sums are divided by k. For a loss that is a mean
  over rays this is the full batch's loss and gradient.

  Returns:
    ((loss f32[], metrics dict of f32[]), grads like ``params``).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  xs = (split_micro_batches(batch, micro_batches, mesh),
        jnp.arange(micro_batches))

  def body(total, x):
    part, i = x
    value = grad_fn(params, model_state, part, jax.random.fold_in(key, i),
                    step)
    return jax.tree_util.tree_map(jnp.add, total, value), None

  first = jax.eval_shape(grad_fn, params, model_state,
                         jax.tree_util.tree_map(lambda x: x[0], xs[0]),
                         key, step)
  zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)
  total, _ = jax.lax.scan(body, zeros, xs)
  return jax.tree_util.tree_map(lambda x: x / micro_batches, total)
