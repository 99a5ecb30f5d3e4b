"""The training step: drawing rays, the pure update and micro-batches.

``make_train_step`` builds ``train_step(state, data, rng) -> (state,
metrics)``, pure and unjitted; the loop jits it once with the state donated.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nerf_jax.cameras import camera
from nerf_jax import distributed, metrics, models
from nerf_jax.train import train_state


def sample_batch(key: jax.Array, data: train_state.TrainData, batch_rays: int,
                 near: float, far: float, mesh: Optional[Mesh] = None) -> tuple:
  """Random rays drawn uniformly from all training pixels (with replacement).

  One flat index per ray picks a pixel of the table; its view is found by a
  binary search over the views' first rows, then row and column by its
  offset in that view. The draw depends on the key only, not on the
  devices: with a mesh (the table's rows split over the devices, see
  ``distributed.gather_rows``) the batch is the same one, split over them.

  Returns:
    (rays: Rays of batch shape [batch_rays], rgb: f32[batch_rays, 3] in
    [0, 1]).
  """
  index = jax.random.randint(key, (batch_rays,), 0, data.num_pixels)
  view = jnp.searchsorted(data.starts, index, side='right') - 1
  offset = index - data.starts[view]
  width = data.cameras.width[view]
  rows, cols = offset // width, offset % width
  rgb = distributed.gather_rows(data.pixels, index, mesh)
  if mesh is not None:
    view, rows, cols = jax.lax.with_sharding_constraint(
        (view, rows, cols), distributed.batch_sharded(mesh))
  rays = camera.cast_rays(data.cameras, view, rows, cols, near, far)
  if rgb.dtype == jnp.uint8:
    rgb = rgb.astype(jnp.float32) / 255.0
  return rays, rgb


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

  loss_and_grads_on_mesh = _loss_and_grads_fn(model, micro_batches, mesh)

  def train_step(state: train_state.TrainState, data: train_state.TrainData,
                 rng: jax.Array):
    key = jax.random.fold_in(rng, state.step)
    k_batch, k_render, k_state = jax.random.split(key, 3)
    rays, target = sample_batch(k_batch, data, batch_rays, near, far, mesh)
    if mesh is not None:
      rays, target = jax.lax.with_sharding_constraint(
          (rays, target), distributed.batch_sharded(mesh))
    (loss, aux), grads = loss_and_grads_on_mesh(
        state.params, state.model_state, rays, target, k_render, state.step)
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


def _loss_and_grads_fn(model: models.Model, micro_batches: int,
                       mesh: Optional[Mesh]) -> Callable:
  """``(params, model_state, rays, target, key, step) -> ((loss, aux),
  grads)`` of ``model.loss``, over ``micro_batches`` micro-batches; for a
  model that ``couples_rays`` on a mesh, per device and averaged."""
  def loss_and_grads(params, model_state, rays, target, key, step, mesh):
    if micro_batches == 1:
      grad_fn = jax.value_and_grad(model.loss, has_aux=True)
      return grad_fn(params, model_state, rays, target, key, step)
    return accumulate_loss_and_grads(model.loss, params, model_state, rays,
                                     target, key, step, micro_batches, mesh)

  if mesh is not None and model.couples_rays:
    # Each device computes its shard's loss and gradients (its own packing,
    # its own render key); their means are the step's.
    def per_device(params, model_state, rays, target, key, step):
      key = jax.random.fold_in(key, jax.lax.axis_index(distributed.AXIS))
      value = loss_and_grads(params, model_state, rays, target, key, step,
                             None)
      return jax.lax.pmean(value, distributed.AXIS)

    batch, same = P(distributed.AXIS), P()
    return jax.shard_map(
        per_device, mesh=mesh, in_specs=(same, same, batch, batch, same, same),
        out_specs=same, check_vma=False)
  return functools.partial(loss_and_grads, mesh=mesh)


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
                              rays, target: jnp.ndarray, key: jax.Array,
                              step: jnp.ndarray, micro_batches: int,
                              mesh: Optional[Mesh] = None) -> tuple:
  """``value_and_grad(loss_fn, has_aux=True)`` averaged over micro-batches.

  The rays (and targets) are split by ``split_micro_batches``; micro-batch i
  is rendered with ``fold_in(key, i)``. A ``lax.scan`` sums each micro-batch's
  loss, metrics and gradients, so only one micro-batch's forward and backward
  working set is alive at a time; the sums are divided by k. For a loss that
  is a mean over rays this is the full batch's loss and gradient.

  Returns:
    ((loss f32[], metrics dict of f32[]), grads like ``params``).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  xs = (split_micro_batches((rays, target), micro_batches, mesh),
        jnp.arange(micro_batches))

  def body(total, x):
    (mb_rays, mb_target), i = x
    value = grad_fn(params, model_state, mb_rays, mb_target,
                    jax.random.fold_in(key, i), step)
    return jax.tree_util.tree_map(jnp.add, total, value), None

  first = jax.eval_shape(grad_fn, params, model_state,
                         *jax.tree_util.tree_map(lambda x: x[0], xs[0]),
                         key, step)
  zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)
  total, _ = jax.lax.scan(body, zeros, xs)
  return jax.tree_util.tree_map(lambda x: x / micro_batches, total)

