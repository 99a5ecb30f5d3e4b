"""A training's checkpoints: resuming from the newest intact one (damaged
newer ones are set aside), saving (never a non-finite state), and naming the
last good one when something goes wrong."""

from __future__ import annotations

import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from nerf_jax import errors, faults, metrics
from nerf_jax.runs import checkpoints, load
from nerf_jax.train import signals, train_state


class Checkpointer:
  """The orbax manager of a training's run directory, and what the loop
  does with it. Every process saves its shards; only the primary one
  prints and moves files."""

  def __init__(self, workdir: str, keep: int, primary: bool):
    self.workdir, self.keep, self.primary = workdir, keep, primary
    self.manager = checkpoints.checkpoint_manager(workdir, keep)
    self.finite_fn = jax.jit(lambda state: metrics.all_finite(
        (state.params, state.model_state)))

  @property
  def directory(self) -> str:
    return self.manager.directory

  def resume(self, state: train_state.TrainState) -> train_state.TrainState:
    """The newest intact checkpoint restored into ``state``'s structure and
    shardings (``state`` itself when there is none yet); newer damaged ones
    are named on stderr and set aside (checkpoints.damaged/)."""
    if not self.manager.all_steps():
      return state
    state, damaged = load.restore_state(self.manager, state)
    if self.primary:
      if damaged:
        print(checkpoints.describe_damaged(damaged, int(state.step),
                                           self.manager.directory),
              file=sys.stderr, flush=True)
        for step, _ in damaged:
          checkpoints.set_aside(self.workdir, step)
      print(f'resuming from the checkpoint at step {int(state.step)} '
            f'in {self.workdir}', flush=True)
    if damaged:  # orbax cached the steps it saw at start
      self.manager.close()
      self.manager = checkpoints.checkpoint_manager(self.workdir, self.keep)
    return state

  def latest_step(self):
    return self.manager.latest_step()

  def last_good(self) -> str:
    """Which checkpoint a user can go back to, for error messages."""
    steps = checkpoints.complete_steps(self.workdir)
    return ('no checkpoint was saved yet' if not steps else
            f'the last good checkpoint is step {steps[-1]} in '
            f'{self.manager.directory}')

  def save(self, state: train_state.TrainState, step: int, elapsed: float,
           force: bool = False) -> train_state.TrainState:
    """Checkpoints ``state`` with the training clock ``elapsed`` (seconds);
    never a state with non-finite values (``signals.Diverged``).

    Returns:
      The state saved: ``state`` with ``elapsed_s`` set.
    """
    if not bool(self.finite_fn(state)):
      raise signals.Diverged(
          f'the parameters are not finite at step {step}, so they were not '
          f'saved; {self.last_good()}; lower train.lr_init or check the data')
    # Same sharding as before, so the jitted step never retraces.
    state = state.replace(elapsed_s=jax.device_put(
        np.float32(elapsed), state.elapsed_s.sharding))
    try:
      self.manager.save(step, args=ocp.args.PyTreeSave(state), force=force)
      faults.maybe_fail('checkpoint', step)
    except Exception as e:  # pylint: disable=broad-except
      self._raise_save_error(e, step)
    return state

  def finish(self, step: int) -> None:
    """Waits for the checkpoints being written in the background."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._raise_save_error(e, step)

  def close(self) -> None:
    self.manager.close()

  def _raise_save_error(self, e: Exception, step: int):
    if errors.is_disk_full(e):
      raise errors.UserError(
          f'the disk is full: checkpoint {step} could not be written to '
          f'{self.manager.directory} ({errors.first_line(e, 160)}); '
          f'{self.last_good()}; free some space and run the same command to '
          'resume') from e
    raise e
