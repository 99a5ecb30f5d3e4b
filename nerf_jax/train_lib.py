"""Training: state, the jitted step, evaluation, checkpoints and the loop."""

from __future__ import annotations

import json
import os
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

from nerf_jax import camera, datasets, metrics, models, pipeline, render_lib, viz


class ConfigError(Exception):
  """An invalid configuration (one-line message)."""


class CheckpointError(Exception):
  """A checkpoint that cannot be used with this config (one-line message)."""


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds.

  Attributes:
    step: i32[], optimisation steps taken.
    params: the model parameters, {'coarse': ..., 'fine': ...}.
    opt_state: the optax state.
    elapsed_s: f32[], training wall-clock so far (evaluation excluded).
  """
  step: jnp.ndarray
  params: Any
  opt_state: Any
  elapsed_s: jnp.ndarray


@flax.struct.dataclass
class TrainData:
  """The training pixels kept on device; rays are made inside the step.

  Attributes:
    images: f32[n, h, w, 3], training images.
    poses: f32[n, 4, 4], their camera-to-world matrices.
    intrinsics: the shared camera.
  """
  images: jnp.ndarray
  poses: jnp.ndarray
  intrinsics: camera.Intrinsics


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for values that cannot work."""
  m, t = config.model, config.train
  if m.preset and m.preset not in models.PRESETS:
    raise ConfigError(f'model.preset={m.preset!r} is not one of '
                      f'{", ".join(models.PRESETS)} (or \'\' for depth/width)')
  if m.num_coarse < 2:
    raise ConfigError('model.num_coarse must be at least 2')
  if m.num_fine < 0:
    raise ConfigError('model.num_fine must be >= 0')
  if t.batch_rays <= 0 or t.max_steps <= 0:
    raise ConfigError('train.batch_rays and train.max_steps must be positive')
  if t.batch_rays % jax.device_count():
    raise ConfigError(f'train.batch_rays={t.batch_rays} must be divisible by '
                      f'the {jax.device_count()} devices present')
  if t.lr_schedule not in ('log_linear', 'exponential'):
    raise ConfigError(f'train.lr_schedule={t.lr_schedule!r} must be '
                      "'log_linear' or 'exponential'")
  if t.lr_init <= 0 or t.lr_final <= 0:
    raise ConfigError('train.lr_init and train.lr_final must be positive')
  if not config.data.near < config.data.far:
    raise ConfigError('data.near must be smaller than data.far')


def make_schedule(train_cfg) -> optax.Schedule:
  """Learning rate against step: optional linear warm-up, then a decay.

  'log_linear' interpolates log(lr) from lr_init to lr_final over max_steps;
  'exponential' is lr_init * 0.1 ** (step / lr_decay_steps) (NeRF paper).
  """
  warmup = int(train_cfg.warmup_steps)
  if train_cfg.lr_schedule == 'log_linear':
    decay_steps = max(1, train_cfg.max_steps - warmup)
    decay = optax.exponential_decay(
        train_cfg.lr_init, decay_steps,
        train_cfg.lr_final / train_cfg.lr_init, end_value=train_cfg.lr_final)
  else:
    decay = optax.exponential_decay(train_cfg.lr_init,
                                    train_cfg.lr_decay_steps, 0.1)
  if warmup <= 0:
    return decay
  ramp = optax.linear_schedule(0.0, train_cfg.lr_init, warmup)
  return optax.join_schedules([ramp, decay], [warmup])


def make_optimizer(train_cfg) -> optax.GradientTransformation:
  """Adam with the configured schedule and optional gradient clipping."""
  adam = optax.adam(make_schedule(train_cfg), b1=train_cfg.adam_b1,
                    b2=train_cfg.adam_b2, eps=train_cfg.adam_eps)
  if train_cfg.grad_clip > 0:
    return optax.chain(optax.clip_by_global_norm(train_cfg.grad_clip), adam)
  return adam


def create_train_state(key: jax.Array, field: models.NerfMLP,
                       options: pipeline.RenderOptions,
                       tx: optax.GradientTransformation) -> TrainState:
  params = pipeline.init_params(key, field, options)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params),
                    elapsed_s=jnp.zeros((), jnp.float32))


def sample_batch(key: jax.Array, data: TrainData, batch_rays: int,
                 near: float, far: float) -> tuple:
  """Random rays drawn uniformly from all training pixels (with replacement).

  Returns:
    (rays: Rays of batch shape [batch_rays], rgb: f32[batch_rays, 3]).
  """
  n, h, w, _ = data.images.shape
  flat = jax.random.randint(key, (batch_rays,), 0, n * h * w)
  view, pixel = flat // (h * w), flat % (h * w)
  rows, cols = pixel // w, pixel % w
  dirs = camera.pixel_directions(data.intrinsics, rows, cols)
  rays = camera.camera_rays(data.poses[view], dirs, near, far)
  return rays, data.images[view, rows, cols]


def make_train_step(field: models.NerfMLP, options: pipeline.RenderOptions,
                    tx: optax.GradientTransformation, batch_rays: int,
                    near: float, far: float,
                    mesh: Optional[Mesh] = None) -> Callable:
  """``train_step(state, data, rng) -> (state, metrics)``, pure and unjitted.

  Randomness is ``fold_in(rng, state.step)``, so a resumed run draws the
  same batches as an uninterrupted one. With a mesh, the ray batch is split
  over its 'data' axis (parameters stay replicated).
  """

  def loss_fn(params, rays, target, key):
    outputs = pipeline.render_rays(field, params, rays, key, options)
    mses = {lvl: jnp.mean((outputs[lvl]['rgb'] - target) ** 2)
            for lvl in options.levels}
    return sum(mses.values()), mses

  def train_step(state: TrainState, data: TrainData, rng: jax.Array):
    key = jax.random.fold_in(rng, state.step)
    k_batch, k_render = jax.random.split(key)
    rays, target = sample_batch(k_batch, data, batch_rays, near, far)
    if mesh is not None:
      shard = NamedSharding(mesh, P('data'))
      rays, target = jax.lax.with_sharding_constraint((rays, target), shard)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, mses), grads = grad_fn(state.params, rays, target, k_render)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    out = {'loss': loss, 'psnr': metrics.mse_to_psnr(mses[options.levels[-1]])}
    for lvl, mse in mses.items():
      out[f'psnr_{lvl}'] = metrics.mse_to_psnr(mse)
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=opt_state)
    return new_state, out

  return train_step


def evaluate(render_fn: Callable, params, scene: datasets.Scene,
             split_name: str, max_views: int, chunk: int) -> dict:
  """Renders held-out views of ``scene`` with jitter off and scores them.

  See ``render_lib.evaluate_split`` for the returned dict.
  """
  return render_lib.evaluate_split(render_fn, params, scene.split(split_name),
                                   scene.near, scene.far, chunk, max_views)


# ---------------------------------------------------------------------------
# Checkpoints and the saved config.

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
SCENE_FILE = 'scene.json'


def save_scene_info(scene: datasets.Scene, workdir: str) -> None:
  """Writes what rendering needs to know of the training cameras.

  scene.json holds the training intrinsics, near/far, the background and the
  median radius and elevation of the training cameras (for orbit videos), so
  that render.py needs no dataset.
  """
  split = scene.split('train')
  centres = split.poses[:, :3, 3].astype(np.float64)
  radii = np.linalg.norm(centres, axis=-1)
  elevations = np.degrees(np.arcsin(np.clip(centres[:, 2] / np.maximum(
      radii, 1e-9), -1.0, 1.0)))
  info = dict(name=scene.name, near=scene.near, far=scene.far,
              white_background=scene.white_background,
              intrinsics=split.intrinsics.to_dict(),
              camera_radius=float(np.median(radii)),
              camera_elevation_deg=float(np.median(elevations)))
  path = os.path.join(workdir, SCENE_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(info, f, indent=2)
  os.replace(path + '.tmp', path)


def checkpoint_manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options)


def restore_state(manager: ocp.CheckpointManager, target: TrainState,
                  step: Optional[int] = None) -> TrainState:
  """Restores a checkpoint into the structure of ``target``."""
  step = manager.latest_step() if step is None else step
  try:
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as e:  # orbax raises many types for a mismatched tree.
    raise CheckpointError(
        f'checkpoint {step} in {manager.directory} does not fit this model '
        f'({type(e).__name__}: {str(e).splitlines()[0][:200]})') from e
  return restored


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config as JSON beside the checkpoints (atomically)."""
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + '.tmp', 'w') as f:
    f.write(config.to_json(indent=2, sort_keys=True))
  os.replace(path + '.tmp', path)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config saved by ``save_config``; CheckpointError if absent/corrupt."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{workdir} has no {CONFIG_FILE}: not a nerf_jax '
                          'training directory')
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{path} is unreadable: {e}') from e


def check_resumable(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses to resume a workdir whose checkpoints belong to another model."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  saved = load_config(workdir)
  old = dict(saved.model.to_dict(), data_kind=saved.data.kind)
  new = dict(config.model.to_dict(), data_kind=config.data.kind)
  diff = sorted(k for k in set(old) | set(new)
                if _normalise(old.get(k)) != _normalise(new.get(k)))
  if diff:
    names = ', '.join('data.kind' if k == 'data_kind' else f'model.{k}'
                      for k in diff)
    raise CheckpointError(
        f'{workdir} holds a run with a different model ({names} differ); use '
        'another --workdir or delete that one')


def _normalise(value):
  return list(value) if isinstance(value, (list, tuple)) else value


# ---------------------------------------------------------------------------
# The training loop.


def _make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ('data',))


def _truncate_metrics(path: str, step: int) -> None:
  """Drops records logged after ``step`` (a resumed run logs them again)."""
  records = viz.read_metrics(path)
  kept = [r for r in records if r.get('step', 0) <= step]
  if len(kept) != len(records):
    with open(path + '.tmp', 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in kept)
    os.replace(path + '.tmp', path)


class _Logger:
  """Appends records to metrics.jsonl."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, METRICS_FILE)

  def write(self, record: dict) -> None:
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')


def _put_data(split: datasets.Split, mesh: Mesh) -> TrainData:
  replicated = NamedSharding(mesh, P())
  return TrainData(images=jax.device_put(split.images, replicated),
                   poses=jax.device_put(split.poses, replicated),
                   intrinsics=split.intrinsics)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True) -> dict:
  """Trains (resuming from the latest checkpoint in ``workdir``) and evaluates.

  Returns:
    The last evaluation record written to metrics.jsonl.
  """
  validate_config(config)
  config = config.copy_and_resolve_references()
  if config.data.path:  # so that the saved config works from any directory
    config.data.path = os.path.abspath(os.path.expanduser(config.data.path))
  scene = datasets.load_scene(config.data)
  scene.split(config.eval.split)  # fail now, not after training, if absent
  os.makedirs(workdir, exist_ok=True)
  check_resumable(config, workdir)
  trainer = _Trainer(config, scene, workdir)
  return trainer.run(progress)


class _Trainer:
  """The training loop's state and its steps: setup, eval, loop, finish."""

  def __init__(self, config, scene: datasets.Scene, workdir: str):
    self.config, self.scene, self.workdir = config, scene, workdir
    field = models.make_field(config.model)
    options = pipeline.RenderOptions.from_config(config)
    tx = make_optimizer(config.train)
    init_key, self.train_rng = jax.random.split(
        jax.random.PRNGKey(config.train.seed))
    mesh = _make_mesh()
    state = create_train_state(init_key, field, options, tx)
    self.state = jax.device_put(state, NamedSharding(mesh, P()))
    self.manager = checkpoint_manager(workdir, config.checkpoint.keep)
    if self.manager.latest_step() is not None:
      self.state = restore_state(self.manager, self.state)
    save_config(config, workdir)
    save_scene_info(scene, workdir)
    self.metrics_path = os.path.join(workdir, METRICS_FILE)
    _truncate_metrics(self.metrics_path, int(self.state.step))
    self.logger = _Logger(workdir)
    self.data = _put_data(scene.split('train'), mesh)
    self.step_fn = jax.jit(
        make_train_step(field, options, tx, config.train.batch_rays,
                        scene.near, scene.far, mesh), donate_argnums=(0,))
    self.render_fn = render_lib.make_render_fn(field, options)
    self.schedule = make_schedule(config.train)
    self.preview_dir = os.path.join(workdir, 'previews')
    os.makedirs(self.preview_dir, exist_ok=True)

  def evaluate(self) -> dict:
    """Scores the held-out split; writes the record, a preview and the plot."""
    config, scene = self.config, self.scene
    result = evaluate(self.render_fn, self.state.params, scene,
                      config.eval.split, config.eval.max_views,
                      config.eval.chunk)
    step = int(self.state.step)
    record = dict(step=step, split=config.eval.split, psnr=result['psnr'],
                  ssim=result['ssim'],
                  elapsed_s=round(float(self.state.elapsed_s), 3),
                  views=len(result['views']))
    self.logger.write(record)
    first = result['first']
    depth_rgb = viz.colorize_depth(first['depth'], first['acc'], scene.near,
                                   scene.far,
                                   float(config.data.white_background))
    viz.save_preview(os.path.join(self.preview_dir, f'step_{step:07d}.png'),
                     first['rgb'], depth_rgb, first['ground_truth'])
    viz.plot_progress(self.metrics_path,
                      os.path.join(self.workdir, 'progress.png'))
    return record

  def log_train(self, step: int, metrics: dict, rays_per_s: float,
                elapsed: float, bar) -> None:
    m = {k: float(v) for k, v in jax.device_get(metrics).items()}
    bar.set_postfix(loss=f'{m["loss"]:.4f}', psnr=f'{m["psnr"]:.2f}',
                    rays_s=f'{rays_per_s:,.0f}')
    self.logger.write(dict(step=step, split='train',
                           lr=float(self.schedule(step)),
                           rays_per_s=round(rays_per_s),
                           elapsed_s=round(elapsed, 3), **m))

  def run(self, progress: bool) -> dict:
    """Trains to max_steps (or the time budget), then evaluates and saves."""
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    cfg = self.config
    start, max_steps = int(self.state.step), int(cfg.train.max_steps)
    bar = tqdm(total=max_steps, initial=start, disable=not progress,
               dynamic_ncols=True, mininterval=0.5, desc=cfg.name)
    last_eval, record = self.loop(bar)
    bar.close()
    step = int(self.state.step)
    if last_eval != step:
      record = self.evaluate()
    if self.manager.latest_step() != step:
      self.manager.save(step, args=ocp.args.StandardSave(self.state),
                        force=True)
    self.manager.wait_until_finished()
    self.manager.close()
    frames = sorted(os.path.join(self.preview_dir, f)
                    for f in os.listdir(self.preview_dir) if f.endswith('.png'))
    viz.save_gif(os.path.join(self.workdir, 'progress.gif'), frames)
    return record

  def loop(self, bar) -> tuple:
    """The optimisation loop; returns (step of the last eval, its record)."""
    cfg = self.config
    max_steps, budget = int(cfg.train.max_steps), float(cfg.train.max_seconds)
    step, elapsed = int(self.state.step), float(self.state.elapsed_s)
    timed_evals = sorted(float(s) for s in cfg.eval.at_seconds if s > elapsed)
    # A time budget or timed evals need the clock read after every step.
    sync_every = 1 if (budget > 0 or timed_evals) else 10
    last_eval, record = None, None
    t_mark, rate_mark = time.perf_counter(), (step, elapsed)
    while step < max_steps and not (budget > 0 and elapsed >= budget):
      self.state, metrics = self.step_fn(self.state, self.data, self.train_rng)
      step += 1
      log_now = step % cfg.train.log_every == 0 or step == max_steps
      eval_now = cfg.eval.every > 0 and step % cfg.eval.every == 0
      ckpt_now = step % cfg.checkpoint.every == 0
      if not (log_now or eval_now or ckpt_now or step % sync_every == 0):
        continue
      jax.block_until_ready(self.state.step)
      elapsed += time.perf_counter() - t_mark
      # Same sharding as before, so the jitted step never retraces.
      self.state = self.state.replace(elapsed_s=jax.device_put(
          np.float32(elapsed), self.state.elapsed_s.sharding))
      bar.update(step - bar.n)
      if timed_evals and elapsed >= timed_evals[0]:
        eval_now = True
        timed_evals = [s for s in timed_evals if s > elapsed]
      if log_now:
        rays_per_s = (step - rate_mark[0]) * cfg.train.batch_rays / max(
            elapsed - rate_mark[1], 1e-9)
        rate_mark = (step, elapsed)
        self.log_train(step, metrics, rays_per_s, elapsed, bar)
      if eval_now:
        record, last_eval = self.evaluate(), step
      if ckpt_now:
        self.manager.save(step, args=ocp.args.StandardSave(self.state))
      t_mark = time.perf_counter()
    bar.update(step - bar.n)
    return last_eval, record


def load_scene_info(workdir: str) -> dict:
  """The scene.json written by training; CheckpointError if absent/corrupt."""
  path = os.path.join(workdir, SCENE_FILE)
  try:
    with open(path) as f:
      info = json.load(f)
    info['intrinsics'] = camera.Intrinsics(**info['intrinsics'])
    return info
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f'{path} is missing or unreadable ({e})') from e


def load_trained(workdir: str, step: Optional[int] = None) -> tuple:
  """Loads a training directory for rendering.

  Returns:
    (config, field, options, params, step) of the latest (or given) checkpoint.
  """
  if not os.path.isdir(workdir):
    raise CheckpointError(f'checkpoint directory {workdir} does not exist')
  config = load_config(workdir)
  try:
    validate_config(config)
    field = models.make_field(config.model)
  except (ConfigError, ValueError, AttributeError, KeyError) as e:
    raise CheckpointError(f'{workdir}/{CONFIG_FILE} is not a valid config: '
                          f'{e}') from e
  options = pipeline.RenderOptions.from_config(config)
  tx = make_optimizer(config.train)
  target = jax.eval_shape(lambda: create_train_state(
      jax.random.PRNGKey(0), field, options, tx))
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):
    raise CheckpointError(f'{workdir} has no checkpoints')
  manager = checkpoint_manager(workdir)
  steps = manager.all_steps()
  if not steps:
    raise CheckpointError(f'{workdir} has no checkpoints')
  if step is not None and step not in steps:
    raise CheckpointError(f'{workdir} has no checkpoint at step {step} '
                          f'(it has {sorted(steps)})')
  state = restore_state(manager, target, step)
  manager.close()
  return config, field, options, state.params, int(state.step)
