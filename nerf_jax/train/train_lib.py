"""Training: state, the jitted step, evaluation and the loop.

The loop talks to the model only through ``models.Model`` and to the run
directory only through ``rundir``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nerf_jax.cameras import camera
from nerf_jax import datasets, distributed, errors, faults, metrics, models, resources
from nerf_jax.inference import render_lib
from nerf_jax.runs import rundir
from nerf_jax.train import validation
from nerf_jax.io import viz
from nerf_jax.optim import make_schedule
from nerf_jax.datasets.scene import SceneInfo

CheckpointError = rundir.CheckpointError


ConfigError = validation.ConfigError
validate_config = validation.validate_config


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


# TrainState entries that checkpoints of older versions lack; they restore
# to their initial values.
_NEWER_ENTRIES = frozenset({'nonfinite', 'skipped'})


all_finite = metrics.all_finite


def sample_batch(key: jax.Array, data: TrainData, batch_rays: int,
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
    loss_and_grads_on_mesh = jax.shard_map(
        per_device, mesh=mesh, in_specs=(same, same, batch, batch, same, same),
        out_specs=same, check_vma=False)
  else:
    loss_and_grads_on_mesh = functools.partial(loss_and_grads, mesh=mesh)

  def train_step(state: TrainState, data: TrainData, rng: jax.Array):
    key = jax.random.fold_in(rng, state.step)
    k_batch, k_render, k_state = jax.random.split(key, 3)
    rays, target = sample_batch(k_batch, data, batch_rays, near, far, mesh)
    if mesh is not None:
      rays, target = jax.lax.with_sharding_constraint(
          (rays, target), distributed.batch_sharded(mesh))
    (loss, aux), grads = loss_and_grads_on_mesh(
        state.params, state.model_state, rays, target, k_render, state.step)
    finite = jnp.isfinite(loss) & all_finite(grads)

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


def evaluate(render_fn: Callable, variables, scene: datasets.Scene,
             split_name: str, max_views: int, chunk: int) -> dict:
  """Renders held-out views of ``scene`` with jitter off and scores them.

  See ``render_lib.evaluate_split`` for the returned dict.
  """
  return render_lib.evaluate_split(render_fn, variables,
                                   scene.split(split_name), scene.near,
                                   scene.far, chunk, max_views)


# ---------------------------------------------------------------------------
# The training loop.


def _to_uint8(images):
  """f32 images in [0, 1] as u8 (4x less device memory than float32); a
  list of images stays a list."""
  if isinstance(images, list):
    return [_to_uint8(image) for image in images]
  return np.clip(np.round(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


def put_data(split: datasets.Split, mesh: Mesh) -> TrainData:
  """The training split on the mesh: the pixel table's rows split over the
  devices, the cameras replicated."""
  table, starts = pixel_table(_to_uint8(split.images))
  return TrainData(pixels=distributed.shard_rows(table, mesh),
                   starts=distributed.replicate(starts, mesh),
                   cameras=distributed.replicate(split.cameras, mesh),
                   num_pixels=int(table.shape[0]))


def prepare_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Validated, references resolved, data.path absolute (so the saved config
  works from any directory)."""
  validate_config(config)
  config = config.copy_and_resolve_references()
  if config.data.path:
    config.data.path = os.path.abspath(os.path.expanduser(config.data.path))
  return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True, live=None) -> dict:
  """Trains (resuming from the newest intact checkpoint in ``workdir``) and
  evaluates.

  ``live`` (``viewer.LiveTraining``, or None) is shown the model as it
  trains: ``live.start(model, info, variables, step, workdir, images)``
  before the first step, then ``live.publish(variables, step)`` with a copy
  of the variables after each step where ``live.wants(step)``. It only
  reads copies, so training goes exactly as without it.

  While it runs the workdir is locked (a second training there is refused),
  SIGINT and SIGTERM stop it with a checkpoint of the step reached
  (``errors.Interrupted``), and anything that goes wrong leaves the files
  that were there before as they were.

  Returns:
    The last evaluation record written to metrics.jsonl.
  """
  config = prepare_config(config)
  rundir.check_workdir(workdir)  # before the data loads: fail fast
  with _StopSignals() as stop:
    scene = datasets.load_scene(config.data,
                                splits=('train', config.eval.split))
    scene.split(config.eval.split)  # fail now, not after training, if absent
    info = scene.info(config.data.path)
    primary = distributed.is_primary()
    lock = None
    if primary:
      os.makedirs(workdir, exist_ok=True)
      lock = rundir.WorkdirLock(workdir).acquire()
    try:
      rundir.check_resumable(config, info, workdir,
                             scene.legacy_fingerprint)
      trainer = _Trainer(config, scene, info, workdir, stop, live)
      return trainer.run(progress)
    finally:
      if lock is not None:
        lock.release()


class _StopSignals:
  """SIGINT and SIGTERM while training: a request to stop (``signum``) that
  the training loop honours at the next step by saving a checkpoint; a
  second signal interrupts at once (KeyboardInterrupt). Before the loop
  starts (loading, compiling) there is nothing new to save: a signal stops
  at once (``errors.Interrupted``). Outside the main thread (where Python
  cannot install handlers) nothing changes."""

  SIGNALS = (signal.SIGINT, signal.SIGTERM)

  def __init__(self):
    self.signum = None
    self.training = False  # set by the loop: from then on, save first
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    if not self.training:
      raise errors.Interrupted(
          f'stopped by {signal.Signals(signum).name} before training '
          'started; nothing new to save', signum)
    if self.signum is not None:
      raise KeyboardInterrupt
    self.signum = signum

  def __enter__(self) -> '_StopSignals':
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def requested(self) -> bool:
    """Whether any process was asked to stop (a collective when several
    processes train: all must call it at the same step)."""
    return distributed.any_process(self.signum is not None)


class Diverged(errors.UserError):
  """Training stopped: its loss or parameters stopped being finite."""


class _Trainer:
  """The training loop's state and its steps: setup, eval, loop, finish."""

  def __init__(self, config, scene: datasets.Scene, info: SceneInfo,
               workdir: str, stop: _StopSignals, live=None):
    self.config, self.scene, self.workdir = config, scene, workdir
    self.stop, self.live = stop, live
    self.model = models.make_model(config.model, info)
    tx = self.model.optimizer(config.train)
    init_key, self.train_rng = jax.random.split(
        jax.random.PRNGKey(config.train.seed))
    mesh = distributed.make_mesh()
    # Created by a jitted function straight into its replicated sharding, as
    # every process of a multi-host run can do.
    self.state = jax.jit(
        lambda key: create_train_state(key, self.model, tx),
        out_shardings=distributed.replicated(mesh))(init_key)
    self.manager = rundir.checkpoint_manager(workdir, config.checkpoint.keep)
    # Every process computes; only the primary one writes files and prints.
    self.primary = distributed.is_primary()
    if self.manager.all_steps():
      self.state, damaged = restore_state(self.manager, self.state)
      if self.primary:
        if damaged:
          print(rundir.describe_damaged(damaged, int(self.state.step),
                                        self.manager.directory),
                file=sys.stderr, flush=True)
          for step, _ in damaged:
            rundir.set_aside(workdir, step)
        print(f'resuming from the checkpoint at step {int(self.state.step)} '
              f'in {workdir}', flush=True)
      if damaged:  # orbax cached the steps it saw at start
        self.manager.close()
        self.manager = rundir.checkpoint_manager(workdir,
                                                 config.checkpoint.keep)
    self.logger = rundir.MetricsWriter(
        workdir, enabled=self.primary, tensorboard=config.train.tensorboard)
    self.info, self.files_written = info, False
    self.data = put_data(scene.split('train'), mesh)
    self.step_fn = self.compile_step(tx, mesh)
    self.finite_fn = jax.jit(lambda state: all_finite(
        (state.params, state.model_state)))
    self.render_fn = render_lib.make_render_fn(self.model)
    self.schedule = make_schedule(config.train)
    self.preview_dir = os.path.join(workdir, 'previews')
    self.elapsed = float(self.state.elapsed_s)
    self.start_step = int(self.state.step)
    self.reported_skips = int(self.state.skipped)

  def compile_step(self, tx, mesh):
    """The jitted step, compiled now for the state and data at hand, after
    checking that its working memory fits (a batch too large for the host
    would otherwise end in the kernel's out-of-memory killer, silently)."""
    cfg = self.config.train
    step = jax.jit(
        make_train_step(self.model, tx, cfg.batch_rays, self.scene.near,
                        self.scene.far, mesh, cfg.micro_batches),
        donate_argnums=(0,))
    compiled = step.lower(self.state, self.data, self.train_rng).compile()
    need = resources.compiled_bytes(compiled)
    if need is not None:
      resources.check_fits(
          need, f'the training step (train.batch_rays={cfg.batch_rays})',
          f'lower train.batch_rays or raise train.micro_batches (now '
          f'{cfg.micro_batches})', device=jax.local_devices()[0])
    return compiled

  def write_run_files(self) -> None:
    """Writes config.json, scene.json and environment.json and trims
    metrics.jsonl to the restored step: once the first step has run, so a
    run that fails to start (out of memory, a bad setting) changes none of
    the files of the run it would have resumed."""
    if self.files_written:
      return
    self.files_written = True
    if not self.primary:
      return
    rundir.save_config(self.config, self.workdir)
    rundir.save_scene(self.info, self.workdir)
    rundir.save_environment(self.workdir, self.config.train.seed)
    self.logger.truncate(self.start_step)
    os.makedirs(self.preview_dir, exist_ok=True)

  def evaluate(self) -> dict:
    """Scores the held-out split; writes the record, a preview and the plot."""
    self.write_run_files()
    config, scene = self.config, self.scene
    try:
      result = evaluate(self.render_fn, self.state.variables(), scene,
                        config.eval.split, config.eval.max_views,
                        config.eval.chunk)
    except Exception as e:  # pylint: disable=broad-except
      if errors.is_out_of_memory(e):
        raise errors.UserError(
            f'out of memory evaluating ({errors.first_line(e)}); lower '
            f'eval.chunk (now {config.eval.chunk})') from e
      raise
    step = int(self.state.step)
    record = dict(step=step, split=config.eval.split, psnr=result['psnr'],
                  ssim=result['ssim'], elapsed_s=round(self.elapsed, 3),
                  views=len(result['views']))
    self.logger.write(record)
    if not self.primary:
      return record
    first = result['first']
    depth_rgb = viz.colorize_depth(first['depth'], first['acc'], scene.near,
                                   scene.far, float(scene.white_background))
    row = viz.preview_row(first['rgb'], depth_rgb, first['ground_truth'])
    viz.save_preview(os.path.join(self.preview_dir, f'step_{step:07d}.png'),
                     row)
    self.logger.image(f'{config.eval.split}/preview', row, step)
    viz.plot_progress(self.logger.path,
                      os.path.join(self.workdir, 'progress.png'))
    return record

  def last_good(self) -> str:
    steps = rundir.complete_steps(self.workdir)
    return ('no checkpoint was saved yet' if not steps else
            f'the last good checkpoint is step {steps[-1]} in '
            f'{self.manager.directory}')

  def save(self, step: int, force: bool = False) -> None:
    """Checkpoints the state, with the training clock as of now; never a
    state with non-finite values."""
    self.write_run_files()
    if not bool(self.finite_fn(self.state)):
      raise Diverged(f'the parameters are not finite at step {step}, so they '
                     f'were not saved; {self.last_good()}; lower '
                     'train.lr_init or check the data')
    # Same sharding as before, so the jitted step never retraces.
    self.state = self.state.replace(elapsed_s=jax.device_put(
        np.float32(self.elapsed), self.state.elapsed_s.sharding))
    try:
      self.manager.save(step, args=ocp.args.PyTreeSave(self.state),
                        force=force)
      faults.maybe_fail('checkpoint', step)
    except Exception as e:  # pylint: disable=broad-except
      self.raise_save_error(e, step)

  def finish_saves(self, step: int) -> None:
    """Waits for the checkpoints being written in the background."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self.raise_save_error(e, step)

  def raise_save_error(self, e: Exception, step: int):
    if errors.is_disk_full(e):
      raise errors.UserError(
          f'the disk is full: checkpoint {step} could not be written to '
          f'{self.manager.directory} ({errors.first_line(e, 160)}); '
          f'{self.last_good()}; free some space and run the same command to '
          'resume') from e
    raise e

  def log_train(self, step: int, metrics: dict, rays_per_s: float,
                bar) -> None:
    m = {k: float(v) for k, v in jax.device_get(metrics).items()
         if k != 'nonfinite'}
    skipped = int(self.state.skipped)
    # Models that train on part of the drawn rays report which fraction.
    rays_per_s *= m.get('rays_kept', 1.0)
    postfix = dict(loss=f'{m["loss"]:.4f}', psnr=f'{m["psnr"]:.2f}',
                   rays_s=f'{rays_per_s:,.0f}')
    if skipped:
      postfix['skipped'] = skipped
    bar.set_postfix(**postfix)
    self.logger.write(dict(step=step, split='train',
                           lr=float(self.schedule(step)),
                           rays_per_s=round(rays_per_s),
                           elapsed_s=round(self.elapsed, 3),
                           skipped_steps=skipped, **m))
    if skipped > self.reported_skips and self.primary:
      bar.write(f'warning: {skipped - self.reported_skips} step(s) up to '
                f'step {step} had a non-finite loss or gradients and were '
                f'skipped ({skipped} in all; see {rundir.METRICS_FILE})',
                file=sys.stderr)
    self.reported_skips = skipped

  def run(self, progress: bool) -> dict:
    """Trains to max_steps (or the time budget), then evaluates and saves.

    Out of memory and a full disk become one line saying what to do (and
    which checkpoint is the last good one).
    """
    cfg = self.config
    try:
      return self.train(progress)
    except errors.UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      if errors.is_out_of_memory(e):
        raise errors.UserError(
            f'out of memory in the training step ({errors.first_line(e)}); '
            f'lower train.batch_rays (now {cfg.train.batch_rays}) or raise '
            f'train.micro_batches (now {cfg.train.micro_batches})') from e
      if errors.is_disk_full(e):
        raise errors.UserError(
            f'the disk is full ({errors.first_line(e, 160)}); '
            f'{self.last_good()}; free some space and run the same command '
            'to resume') from e
      raise

  def train(self, progress: bool) -> dict:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    cfg = self.config
    start, max_steps = int(self.state.step), int(cfg.train.max_steps)
    bar = tqdm(total=max_steps, initial=start,
               disable=not (progress and self.primary),
               dynamic_ncols=True, mininterval=0.5, desc=cfg.name)
    try:
      last_eval, record = self.loop(bar)
    finally:
      # On an error the checkpoint manager is left open: closing it after
      # a failed write makes its I/O threads print tracebacks, and the
      # process is about to end anyway (a save in flight either completes
      # or stays an uncommitted temporary folder).
      bar.close()
    step = int(self.state.step)
    if self.stop.requested():
      self.interrupt(step)
    if last_eval != step:
      record = self.evaluate()
    if self.manager.latest_step() != step:
      self.save(step, force=True)
    self.finish_saves(step)
    self.manager.close()
    self.logger.close()
    if not self.primary:
      return record
    frames = sorted(os.path.join(self.preview_dir, f)
                    for f in os.listdir(self.preview_dir) if f.endswith('.png'))
    viz.save_gif(os.path.join(self.workdir, 'progress.gif'), frames)
    return record

  def interrupt(self, step: int):
    """Saves the step reached (unless a checkpoint has it) and stops."""
    name = signal.Signals(self.stop.signum or signal.SIGINT).name
    if self.manager.latest_step() != step:
      self.save(step, force=True)
      what = f'checkpoint {step} saved in {self.manager.directory}'
    else:
      what = f'checkpoint {step} in {self.manager.directory} is the latest'
    self.finish_saves(step)
    self.manager.close()
    self.logger.close()
    raise errors.Interrupted(f'stopped by {name} at step {step}; {what}; run '
                             'the same command to resume',
                             self.stop.signum or signal.SIGINT)

  def loop(self, bar) -> tuple:
    """The optimisation loop; returns (step of the last eval, its record).

    The host never stalls the device queue for the clock: after dispatching
    step n it waits only for step n - ``_CLOCK_LAG`` to finish, then reads
    the clock (and that step's count of non-finite steps in a row), so the
    time budget and timed evaluations cost no round trip. Logging,
    evaluation and checkpoints synchronise fully, as they must.

    With several processes every decision that depends on the clock (or on
    a stop signal) uses an agreed value (``distributed.agree``,
    ``distributed.any_process``), taken every ``_AGREE_EVERY`` steps, so all
    processes stop and evaluate at the same step.
    """
    cfg = self.config
    max_steps, budget = int(cfg.train.max_steps), float(cfg.train.max_seconds)
    step = int(self.state.step)
    if self.live is not None and self.primary:  # before the clock starts
      self.live.start(self.model, self.info, self.live_variables(), step,
                      self.workdir, self.scene.split('train').images)
    timed_evals = sorted(float(s) for s in cfg.eval.at_seconds
                         if s > self.elapsed)
    last_eval, record = None, None
    base, t_mark = self.elapsed, time.perf_counter()
    rate_mark = (step, self.elapsed)
    in_flight = collections.deque()
    agree_every = 1 if jax.process_count() == 1 else _AGREE_EVERY
    limit = int(cfg.train.max_nonfinite_steps)
    self.stop.training = True
    while step < max_steps and not (budget > 0 and self.elapsed >= budget):
      if step % agree_every == 0 and self.stop.requested():
        break
      self.state, metrics = self.step_fn(self.state, self.data,
                                         self.train_rng)
      if not self.files_written:
        jax.block_until_ready(metrics)  # it ran: compiled, memory enough
        self.write_run_files()
      step += 1
      faults.maybe_fail('step', step)
      if self.live is not None and self.primary and self.live.wants(step):
        self.live.publish(self.live_variables(), step)
      in_flight.append((step, metrics['nonfinite']))
      if len(in_flight) > _CLOCK_LAG:
        self.check_finite(*in_flight.popleft(), limit)
      clock_now = step % agree_every == 0
      if clock_now:
        self.elapsed = distributed.agree(base + time.perf_counter() - t_mark)
      log_now = step % cfg.train.log_every == 0 or step == max_steps
      eval_now = cfg.eval.every > 0 and step % cfg.eval.every == 0
      ckpt_now = step % cfg.checkpoint.every == 0
      if clock_now and timed_evals and self.elapsed >= timed_evals[0]:
        eval_now = True
        timed_evals = [s for s in timed_evals if s > self.elapsed]
      if not (log_now or eval_now or ckpt_now):
        continue
      jax.block_until_ready(self.state.step)
      while in_flight:
        self.check_finite(*in_flight.popleft(), limit)
      self.elapsed = distributed.agree(base + time.perf_counter() - t_mark)
      bar.update(step - bar.n)
      if log_now:
        rays_per_s = (step - rate_mark[0]) * cfg.train.batch_rays / max(
            self.elapsed - rate_mark[1], 1e-9)
        rate_mark = (step, self.elapsed)
        self.log_train(step, metrics, rays_per_s, bar)
      if eval_now:
        record, last_eval = self.evaluate(), step
      if ckpt_now:
        self.save(step)
      base, t_mark = self.elapsed, time.perf_counter()
    jax.block_until_ready(self.state.step)
    while in_flight:
      self.check_finite(*in_flight.popleft(), limit)
    bar.update(step - bar.n)
    return last_eval, record

  def live_variables(self) -> dict:
    """Copies of the variables for ``live``: the step donates the state's
    buffers, so a reference would die with the next step."""
    return jax.tree_util.tree_map(jnp.copy, self.state.variables())

  def check_finite(self, step: int, nonfinite: jax.Array, limit: int) -> None:
    """Stops training when ``limit`` steps in a row up to ``step`` were
    skipped for a non-finite loss or gradients."""
    count = int(nonfinite)
    if count < limit:
      return
    skipped = int(self.state.skipped)
    self.finish_saves(step)
    self.logger.write(dict(step=step, split='train', skipped_steps=skipped,
                           nonfinite_in_a_row=count, stopped='diverged'))
    raise Diverged(
        f'training stopped at step {step}: the loss or gradients were not '
        f'finite for {count} steps in a row ({skipped} skipped in all); '
        f'{self.last_good()}; lower train.lr_init (now '
        f'{self.config.train.lr_init:g}) or check the data')


# Steps the host lets run ahead of the clock reading (see _Trainer.loop).
_CLOCK_LAG = 2
# Steps between agreeing on the clock when several processes train.
_AGREE_EVERY = 8


# ---------------------------------------------------------------------------
# Loading a trained run.


def _abstract(tree: Any, sharding=None) -> Any:
  """ShapeDtypeStructs of ``tree``'s arrays (with ``sharding``, or each
  array's own)."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(
          x.shape, x.dtype, sharding=sharding or getattr(x, 'sharding', None)),
      tree)


def restore_state(manager: ocp.CheckpointManager, target: TrainState,
                  step: Optional[int] = None) -> tuple:
  """Restores the newest intact checkpoint into ``target``'s structure and
  shardings (see ``rundir.restore_newest``).

  Checkpoints written before ``TrainState`` had ``model_state`` (models
  without state) or the non-finite counters still load.

  Returns:
    (state, [(damaged step, why), ...] of the newer checkpoints skipped).
  """
  names = [f.name for f in dataclasses.fields(TrainState)]
  entries = {name: _abstract(getattr(target, name)) for name in names}
  optional = set(_NEWER_ENTRIES)
  if not jax.tree_util.tree_leaves(target.model_state):
    optional.add('model_state')
  restored, _, damaged = rundir.restore_newest(manager, entries, step,
                                               frozenset(optional))
  return target.replace(**restored), damaged


def load_trained(workdir: str, step: Optional[int] = None,
                 warn: bool = True) -> tuple:
  """Loads a training directory for rendering.

  Reads the newest intact checkpoint (a damaged newer one is named on
  stderr and skipped, unless ``step`` asks for it); a run that is still
  training can be read: checkpoints being written are not listed.

  Returns:
    (config, scene_info, model, variables, step) of the latest (or given)
    checkpoint; ``variables`` = {'params': ..., 'state': ...}.
  """
  if not os.path.isdir(workdir):
    raise CheckpointError(
        f'{workdir} is a file, not a training directory' if os.path.exists(
            workdir) else f'checkpoint directory {workdir} does not exist')
  config = rundir.load_config(workdir)
  info = rundir.load_scene(workdir)
  try:
    validate_config(config, num_devices=0)
    model = models.make_model(config.model, info)
  except (ConfigError, ValueError, AttributeError, KeyError) as e:
    raise CheckpointError(f'{workdir}/{rundir.CONFIG_FILE} is not a valid '
                          f'config: {errors.first_line(e)}') from e
  ckpt_dir = os.path.join(workdir, rundir.CHECKPOINT_DIR)
  holder = rundir.WorkdirLock.holder(workdir)
  none = f'{workdir} has no checkpoints' + (
      f' yet (a training is running there: {holder})' if holder else '')
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(none)
  manager = rundir.checkpoint_manager(workdir, keep=None)
  steps = manager.all_steps()
  if not steps:
    raise CheckpointError(none)
  if step is not None and step not in steps:
    raise CheckpointError(f'{workdir} has no checkpoint at step {step} '
                          f'(it has {sorted(steps)})')
  variables, restored_step, damaged = restore_variables(manager, model, step)
  manager.close()
  if damaged and warn and distributed.is_primary():
    print(rundir.describe_damaged(damaged, restored_step, ckpt_dir),
          file=sys.stderr, flush=True)
  return config, info, model, variables, restored_step


def restore_variables(manager: ocp.CheckpointManager, model: models.Model,
                      step: Optional[int] = None) -> tuple:
  """A checkpoint's parameters and model state, without the optimizer state,
  replicated on the devices present (whatever devices wrote it).

  Returns:
    ({'params': ..., 'state': ...}, step, [(damaged step, why), ...]).
  """
  params, model_state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  replicated = distributed.replicated(distributed.make_mesh())
  target = {'step': _abstract(jax.ShapeDtypeStruct((), jnp.int32), replicated),
            'params': _abstract(params, replicated)}
  optional = frozenset()
  if jax.tree_util.tree_leaves(model_state):
    target['model_state'] = _abstract(model_state, replicated)
  restored, _, damaged = rundir.restore_newest(manager, target, step,
                                               optional)
  return ({'params': restored['params'],
           'state': restored.get('model_state', model_state)},
          int(restored['step']), damaged)
