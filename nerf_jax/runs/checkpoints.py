"""A run's checkpoints: the orbax manager, the committed steps, restoring the
newest intact one, and setting damaged ones aside.

A checkpoint holds a saved ``TrainState`` (its entries by name: 'step',
'params', 'opt_state', 'model_state', ...); readers restore the entries they
need into the shardings of the devices present now.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from nerf_jax import errors, metrics
from nerf_jax.runs import rundir


def checkpoint_manager(workdir: str,
                       keep: Optional[int] = 3) -> ocp.CheckpointManager:
  """The run's checkpoints; ``keep`` most recent are kept when saving
  (None: all, for readers that never save)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), rundir.CHECKPOINT_DIR),
      options=options)


# The folder of a step's checkpoint that holds the saved TrainState.
_ITEM = 'default'


def complete_steps(workdir: str) -> list:
  """The steps of the committed checkpoints, oldest first (orbax writes a
  checkpoint under a temporary name and renames it to its step when it is
  complete)."""
  try:
    names = os.listdir(os.path.join(workdir, rundir.CHECKPOINT_DIR))
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit())


def _key_name(key) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _layout(tree) -> dict:
  """{'a/b/0': (shape, dtype name)} of a tree of arrays or array metadata;
  paths by name, so a dataclass field, a dict key and a namedtuple field of
  the same name match."""
  leaves = jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda x: hasattr(x, 'shape') and hasattr(x, 'dtype'))
  return {'/'.join(_key_name(k) for k in path):
          (tuple(leaf.shape), str(np.dtype(leaf.dtype)))
          for path, leaf in leaves if hasattr(leaf, 'shape')}


def _fit(manager: ocp.CheckpointManager, step: int, target: dict,
         optional: frozenset) -> tuple:
  """How checkpoint ``step`` relates to ``target`` by its metadata.

  Returns:
    ('fits', entries present) | ('mismatch', what differs) |
    ('damaged', why).
  """
  try:
    from etils import epath  # pylint: disable=g-import-not-at-top
    item = epath.Path(str(manager.directory)) / str(step) / _ITEM
    saved = ocp.StandardCheckpointHandler().metadata(item)
    saved = {k: saved[k] for k in saved.keys()}
  except Exception as e:  # pylint: disable=broad-except
    return 'damaged', f'unreadable: {errors.first_line(e, 120)}'
  missing = [k for k in target if k not in saved and k not in optional]
  if missing:
    return 'mismatch', f'it has no {", ".join(missing)}'
  present = [k for k in target if k in saved]
  for name in present:
    want, have = _layout(target[name]), _layout(saved[name])
    if want != have:
      diff = sorted(set(want.items()) ^ set(have.items()))
      path, (shape, dtype) = diff[0]
      where = f'{name}/{path}'.rstrip('/')
      expected = want.get(path)
      return 'mismatch', (
          f'{where}: saved {have.get(path, "nothing")}, this model '
          f'{expected if expected else "has nothing there"}'
          if (path in want or path in have) else f'{where} differs')
  return 'fits', present


def restore_newest(manager: ocp.CheckpointManager, target: dict,
                   step: Optional[int] = None,
                   optional: frozenset = frozenset()) -> tuple:
  """The newest intact checkpoint's entries named in ``target``.

  ``target`` maps top-level entries of a saved ``TrainState`` (e.g. 'step',
  'params') to trees of ``jax.ShapeDtypeStruct`` whose shardings say where
  the arrays go on the devices present now, so a checkpoint written on any
  number of devices (or hosts) loads on any other. Entries named in
  ``optional`` may be absent from older checkpoints; they are left out of
  the result.

  A checkpoint whose files are unreadable, truncated or hold non-finite
  values is damaged: the one before it is tried (unless ``step`` asks for
  one). A checkpoint of another model (its arrays' names or shapes differ)
  is refused at once.

  Returns:
    (restored dict, its step, [(damaged step, why), ...] newest first).
    CheckpointError (one line) when none can be used.
  """
  directory = manager.directory
  steps = ([step] if step is not None else
           sorted(manager.all_steps(), reverse=True))
  if not steps:
    raise rundir.CheckpointError(f'{directory} has no checkpoints')
  damaged = []
  for s in steps:
    verdict, detail = _fit(manager, s, target, optional)
    if verdict == 'mismatch':
      raise rundir.CheckpointError(
          f'checkpoint {s} in {directory} does not fit this model ({detail})')
    if verdict == 'fits':
      item = {k: target[k] for k in detail}
      args = ocp.args.PyTreeRestore(
          item=item,
          restore_args=ocp.checkpoint_utils.construct_restore_args(item),
          partial_restore=True)
      try:
        restored = manager.restore(s, args=args)
      except Exception as e:  # pylint: disable=broad-except
        detail = f'unreadable: {errors.first_line(e, 120)}'
      else:
        if bool(metrics.all_finite(restored)):
          return restored, s, damaged
        detail = 'it holds NaN or infinite values'
    damaged.append((s, detail))
  if len(damaged) == 1:
    s, why = damaged[0]
    raise rundir.CheckpointError(
        f'checkpoint {s} in {directory} is damaged ({why})')
  raise rundir.CheckpointError(
      f'all {len(damaged)} checkpoints in {directory} are damaged (newest, '
      f'{damaged[0][0]}: {damaged[0][1]})')


def describe_damaged(damaged: list, used: int, directory: str) -> str:
  """The warning line about skipped damaged checkpoints."""
  names = ', '.join(f'{s} ({why})' for s, why in damaged)
  return (f'warning: damaged checkpoint{"s" if len(damaged) > 1 else ""} in '
          f'{directory}: {names}; using checkpoint {used}')


def set_aside(workdir: str, step: int) -> str:
  """Moves a damaged checkpoint out of the way (to checkpoints.damaged/)
  so that training can write that step again; nothing is deleted."""
  source = os.path.join(workdir, rundir.CHECKPOINT_DIR, str(step))
  target_dir = os.path.join(workdir, rundir.DAMAGED_DIR)
  os.makedirs(target_dir, exist_ok=True)
  target = os.path.join(target_dir, str(step))
  n = 1
  while os.path.exists(target):
    n += 1
    target = os.path.join(target_dir, f'{step}.{n}')
  os.replace(source, target)
  return target
