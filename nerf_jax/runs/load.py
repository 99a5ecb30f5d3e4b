"""Loading a trained run: its variables for rendering, or its whole train
state for resuming.

Rendering, exporting and viewing load a run through here and never import
``nerf_jax.train``; the train state is restored into the structure of a
target built by the caller.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from nerf_jax import distributed, errors, models
from nerf_jax.runs import checkpoints, lock, rundir, validation


# TrainState entries that checkpoints of older versions lack; they restore
# to their initial values.
_NEWER_ENTRIES = frozenset({'nonfinite', 'skipped'})


def _abstract(tree: Any, sharding=None) -> Any:
  """ShapeDtypeStructs of ``tree``'s arrays (with ``sharding``, or each
  array's own)."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(
          x.shape, x.dtype, sharding=sharding or getattr(x, 'sharding', None)),
      tree)


def restore_state(manager: ocp.CheckpointManager, target: Any,
                  step: Optional[int] = None) -> tuple:
  """Restores the newest intact checkpoint into ``target``'s structure and
  shardings (see ``checkpoints.restore_newest``).

  ``target`` is a train state (``train_state.TrainState``, a flax struct
  dataclass): each of its fields is a checkpoint entry. Checkpoints written
  before ``TrainState`` had ``model_state`` (models without state) or the
  non-finite counters still load.

  Returns:
    (state, [(damaged step, why), ...] of the newer checkpoints skipped).
  """
  names = [f.name for f in dataclasses.fields(target)]
  entries = {name: _abstract(getattr(target, name)) for name in names}
  optional = set(_NEWER_ENTRIES)
  if not jax.tree_util.tree_leaves(target.model_state):
    optional.add('model_state')
  restored, _, damaged = checkpoints.restore_newest(manager, entries, step,
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
    raise rundir.CheckpointError(
        f'{workdir} is a file, not a training directory' if os.path.exists(
            workdir) else f'checkpoint directory {workdir} does not exist')
  config = rundir.load_config(workdir)
  info = rundir.load_scene(workdir)
  try:
    validation.validate_config(config, num_devices=0)
    model = models.make_model(config.model, info)
  except (validation.ConfigError, ValueError, AttributeError, KeyError) as e:
    raise rundir.CheckpointError(
        f'{workdir}/{rundir.CONFIG_FILE} is not a valid config: '
        f'{errors.first_line(e)}') from e
  ckpt_dir = os.path.join(workdir, rundir.CHECKPOINT_DIR)
  holder = lock.WorkdirLock.holder(workdir)
  none = f'{workdir} has no checkpoints' + (
      f' yet (a training is running there: {holder})' if holder else '')
  if not os.path.isdir(ckpt_dir):
    raise rundir.CheckpointError(none)
  manager = checkpoints.checkpoint_manager(workdir, keep=None)
  steps = manager.all_steps()
  if not steps:
    raise rundir.CheckpointError(none)
  if step is not None and step not in steps:
    raise rundir.CheckpointError(f'{workdir} has no checkpoint at step '
                                 f'{step} (it has {sorted(steps)})')
  variables, restored_step, damaged = restore_variables(manager, model, step)
  manager.close()
  if damaged and warn and distributed.is_primary():
    print(checkpoints.describe_damaged(damaged, restored_step, ckpt_dir),
          file=sys.stderr, flush=True)
  if model.views.refine_poses:  # video paths and the viewer follow them
    refined = model.refined_poses(variables['params'])
    info = dataclasses.replace(info, camera_poses=tuple(
        tuple(map(tuple, pose)) for pose in refined.tolist()))
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
  restored, _, damaged = checkpoints.restore_newest(manager, target, step,
                                                    optional)
  return ({'params': restored['params'],
           'state': restored.get('model_state', model_state)},
          int(restored['step']), damaged)
