"""The training loop: ``train_and_evaluate`` trains a config into a run
directory, resuming from its newest intact checkpoint, and evaluates.

The loop talks to the model only through ``models.Model`` and to the run
directory only through ``nerf_jax.runs``.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections

from nerf_jax import datasets, distributed, errors, faults, models, resources
from nerf_jax.inference import appearance, chunked, evaluate
from nerf_jax.runs import environment, lock, metrics_log, rundir, validation
from nerf_jax.train import checkpointing, previews, signals, train_state
from nerf_jax.train import train_step
from nerf_jax.optim import make_schedule
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.datasets.scene import SceneInfo


def prepare_config(
    config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Validated, references resolved, data.path absolute (so the saved config
  works from any directory)."""
  validation.validate_config(config)
  config = config.copy_and_resolve_references()
  if config.data.path:
    config.data.path = os.path.abspath(os.path.expanduser(config.data.path))
  return config


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       progress: bool = True, live=None) -> dict:
  """Trains (resuming from the newest intact checkpoint in ``workdir``) and
  evaluates.

  ``live`` (``viewer.live.LiveTraining``, or None) is shown the model as it
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
  with signals.StopSignals() as stop:
    scene = datasets.load_scene(config.data,
                                splits=('train', config.eval.split))
    scene.split(config.eval.split)  # fail now, not after training, if absent
    info = scene.info(config.data.path)
    primary = distributed.is_primary()
    workdir_lock = None
    if primary:
      os.makedirs(workdir, exist_ok=True)
      workdir_lock = lock.WorkdirLock(workdir).acquire()
    try:
      rundir.check_resumable(config, info, workdir,
                             scene.legacy_fingerprint)
      trainer = _Trainer(config, scene, info, workdir, stop, live)
      return trainer.run(progress)
    finally:
      if workdir_lock is not None:
        workdir_lock.release()


# Steps the host lets run ahead of the clock reading (see _Trainer.loop).
_CLOCK_LAG = 2
# Steps between agreeing on the clock when several processes train.
_AGREE_EVERY = 8


class _Clock:
  """The training clock in seconds (evaluation excluded), the same in every
  process: each reading is agreed (``distributed.agree``)."""

  def __init__(self, elapsed: float):
    self.elapsed = elapsed
    self.restart()

  def restart(self) -> None:
    """Counts on from ``elapsed`` from now (after an evaluation, say)."""
    self._base, self._mark = self.elapsed, time.perf_counter()

  def read(self) -> float:
    self.elapsed = distributed.agree(
        self._base + time.perf_counter() - self._mark)
    return self.elapsed


class _Trainer:
  """The training loop's state and its steps: setup, eval, loop, finish."""

  def __init__(self, config, scene: datasets.Scene, info: SceneInfo,
               workdir: str, stop: signals.StopSignals, live=None):
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
        lambda key: train_state.create_train_state(key, self.model, tx),
        out_shardings=distributed.replicated(mesh))(init_key)
    # Every process computes; only the primary one writes files and prints.
    self.primary = distributed.is_primary()
    self.checkpointer = checkpointing.Checkpointer(
        workdir, config.checkpoint.keep, self.primary)
    self.state = self.checkpointer.resume(self.state)
    self.logger = metrics_log.MetricsWriter(
        workdir, enabled=self.primary, tensorboard=config.train.tensorboard)
    self.info, self.files_written = info, False
    self.data = batch_lib.PixelTable.from_split(scene.split('train'), mesh)
    self.step_fn = self.compile_step(tx, mesh)
    self.render_fn = chunked.make_render_fn(self.model)
    self.fitter = (appearance.make_fitter(self.model) if appearance.fits(
        self.model, config.eval.appearance) else None)
    self.schedule = make_schedule(config.train)
    self.preview_dir = os.path.join(workdir, 'previews')
    self.clock = _Clock(float(self.state.elapsed_s))
    self.start_step = int(self.state.step)
    self.reported_skips = int(self.state.skipped)
    # (step, its count of non-finite steps in a row) of the steps
    # dispatched but not yet checked (see loop).
    self.in_flight = collections.deque()

  def compile_step(self, tx, mesh):
    """The jitted step, compiled now for the state and data at hand, after
    checking that its working memory fits (a batch too large for the host
    would otherwise end in the kernel's out-of-memory killer, silently)."""
    cfg = self.config.train
    step = jax.jit(
        train_step.make_train_step(self.model, tx, cfg.batch_rays,
                                   self.scene.near, self.scene.far, mesh,
                                   cfg.micro_batches),
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
    environment.save_environment(self.workdir, self.config.train.seed)
    self.logger.truncate(self.start_step)
    os.makedirs(self.preview_dir, exist_ok=True)

  def evaluate(self) -> dict:
    """Renders the held-out split with jitter off and scores it (see
    ``evaluate.evaluate_split``); writes the record, a preview and the
    plot."""
    self.write_run_files()
    config, scene = self.config, self.scene
    try:
      split = scene.split(config.eval.split)
      split = dataclasses.replace(split, cameras=self.model.split_cameras(
          self.state.params, split.cameras, config.eval.split == 'train'))
      result = evaluate.evaluate_split(
          self.render_fn, self.state.variables(), split, scene.near, scene.far,
          config.eval.chunk, config.eval.max_views,
          protocol=config.eval.appearance, fitter=self.fitter,
          seed=config.train.seed)
    except Exception as e:  # pylint: disable=broad-except
      if errors.is_out_of_memory(e):
        raise errors.UserError(
            f'out of memory evaluating ({errors.first_line(e)}); lower '
            f'eval.chunk (now {config.eval.chunk})') from e
      raise
    step = int(self.state.step)
    record = dict(step=step, split=config.eval.split, psnr=result['psnr'],
                  ssim=result['ssim'], elapsed_s=round(self.clock.elapsed, 3),
                  views=len(result['views']))
    if config.eval.appearance != 'mean':  # scored as NeRF-W (appearance.py)
      record['appearance'] = config.eval.appearance
    if 'depth_error' in result:  # the built-in scenes know their depth
      record['depth_error'] = round(result['depth_error'], 5)
    self.logger.write(record)
    if not self.primary:
      return record
    row = previews.write_preview(self.preview_dir, step, result['first'],
                                 scene.near, scene.far,
                                 self.info.background,
                                 self.info.extent == 'unbounded')
    self.logger.image(f'{config.eval.split}/preview', row, step)
    previews.plot_progress(self.logger.path,
                           os.path.join(self.workdir, 'progress.png'))
    return record

  def save(self, step: int, force: bool = False) -> None:
    """Checkpoints the state, with the training clock as of now; never a
    state with non-finite values."""
    self.write_run_files()
    self.state = self.checkpointer.save(self.state, step, self.clock.elapsed,
                                        force)

  def close(self, step: int) -> None:
    """Waits for the checkpoints being written, then closes them and the
    metrics log."""
    self.checkpointer.finish(step)
    self.checkpointer.close()
    self.logger.close()

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
                           elapsed_s=round(self.clock.elapsed, 3),
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
            f'{self.checkpointer.last_good()}; free some space and run the '
            'same command to resume') from e
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
    if self.checkpointer.latest_step() != step:
      self.save(step, force=True)
    self.close(step)
    if not self.primary:
      return record
    previews.write_progress_gif(self.preview_dir,
                                os.path.join(self.workdir, 'progress.gif'))
    return record

  def interrupt(self, step: int):
    """Saves the step reached (unless a checkpoint has it) and stops."""
    name = signal.Signals(self.stop.signum or signal.SIGINT).name
    directory = self.checkpointer.directory
    if self.checkpointer.latest_step() != step:
      self.save(step, force=True)
      what = f'checkpoint {step} saved in {directory}'
    else:
      what = f'checkpoint {step} in {directory} is the latest'
    self.close(step)
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
                         if s > self.clock.elapsed)
    last_eval, record = None, None
    self.clock.restart()
    rate_mark = (step, self.clock.elapsed)
    agree_every = 1 if jax.process_count() == 1 else _AGREE_EVERY
    self.stop.training = True
    while step < max_steps and not (budget > 0 and
                                    self.clock.elapsed >= budget):
      if step % agree_every == 0 and self.stop.requested():
        break
      step += 1
      metrics = self.take_step(step)
      clock_now = step % agree_every == 0
      if clock_now:
        self.clock.read()
      (log_now, eval_now, ckpt_now), timed_evals = self.due(
          step, clock_now, timed_evals)
      if not (log_now or eval_now or ckpt_now):
        continue
      self.catch_up()
      self.clock.read()
      bar.update(step - bar.n)
      if log_now:
        rays_per_s = (step - rate_mark[0]) * cfg.train.batch_rays / max(
            self.clock.elapsed - rate_mark[1], 1e-9)
        rate_mark = (step, self.clock.elapsed)
        self.log_train(step, metrics, rays_per_s, bar)
      if eval_now:
        record, last_eval = self.evaluate(), step
      if ckpt_now:
        self.save(step)
      self.clock.restart()
    self.catch_up()
    bar.update(step - bar.n)
    return last_eval, record

  def take_step(self, step: int) -> dict:
    """Dispatches the step that makes the state's step ``step`` and returns
    its metrics (on device, still being computed)."""
    self.state, metrics = self.step_fn(self.state, self.data, self.train_rng)
    if not self.files_written:
      jax.block_until_ready(metrics)  # it ran: compiled, memory enough
      self.write_run_files()
    faults.maybe_fail('step', step)
    if self.live is not None and self.primary and self.live.wants(step):
      self.live.publish(self.live_variables(), step)
    self.in_flight.append((step, metrics['nonfinite']))
    if len(self.in_flight) > _CLOCK_LAG:
      self.check_finite(*self.in_flight.popleft())
    return metrics

  def due(self, step: int, clock_now: bool, timed_evals: list) -> tuple:
    """Whether to (log, evaluate, checkpoint) at ``step``, and the timed
    evaluations (seconds of ``eval.at_seconds``) still ahead."""
    cfg = self.config
    log_now = (step % cfg.train.log_every == 0
               or step == int(cfg.train.max_steps))
    eval_now = cfg.eval.every > 0 and step % cfg.eval.every == 0
    ckpt_now = step % cfg.checkpoint.every == 0
    if clock_now and timed_evals and self.clock.elapsed >= timed_evals[0]:
      eval_now = True
      timed_evals = [s for s in timed_evals if s > self.clock.elapsed]
    return (log_now, eval_now, ckpt_now), timed_evals

  def catch_up(self) -> None:
    """Waits for the steps dispatched and checks them all."""
    jax.block_until_ready(self.state.step)
    while self.in_flight:
      self.check_finite(*self.in_flight.popleft())

  def live_variables(self) -> dict:
    """Copies of the variables for ``live``: the step donates the state's
    buffers, so a reference would die with the next step."""
    return jax.tree_util.tree_map(jnp.copy, self.state.variables())

  def check_finite(self, step: int, nonfinite: jax.Array) -> None:
    """Stops training when ``train.max_nonfinite_steps`` steps in a row up
    to ``step`` were skipped for a non-finite loss or gradients."""
    count = int(nonfinite)
    if count < int(self.config.train.max_nonfinite_steps):
      return
    skipped = int(self.state.skipped)
    self.checkpointer.finish(step)
    self.logger.write(dict(step=step, split='train', skipped_steps=skipped,
                           nonfinite_in_a_row=count, stopped='diverged'))
    raise signals.Diverged(
        f'training stopped at step {step}: the loss or gradients were not '
        f'finite for {count} steps in a row ({skipped} skipped in all); '
        f'{self.checkpointer.last_good()}; lower train.lr_init (now '
        f'{self.config.train.lr_init:g}) or check the data')
