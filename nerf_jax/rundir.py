"""A run directory: what training writes and what rendering reads.

```
<workdir>/
  config.json      the resolved config (merged onto today's defaults on read)
  scene.json       the SceneInfo: near/far, background, box, camera, data hash
  metrics.jsonl    one JSON record per line
  checkpoints/     orbax checkpoints, one folder per step
```

train.py (through train_lib) and render.py both go through this module, so
the file names, the formats and the compatibility rules live in one place.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Optional

import ml_collections
import orbax.checkpoint as ocp

from nerf_jax import scene as scene_lib

CONFIG_FILE = 'config.json'
SCENE_FILE = 'scene.json'
METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'
_BASE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'configs', 'base.py')


class CheckpointError(Exception):
  """A run directory that cannot be used as asked (one-line message)."""


def _write_atomic(path: str, text: str) -> None:
  with open(path + '.tmp', 'w') as f:
    f.write(text)
  os.replace(path + '.tmp', path)


# ---------------------------------------------------------------------------
# config.json


def default_config() -> ml_collections.ConfigDict:
  """Today's defaults of every field (configs/base.py)."""
  spec = importlib.util.spec_from_file_location('_nerf_jax_base_config',
                                                _BASE_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def merge_onto(defaults: ml_collections.ConfigDict,
               saved: dict) -> ml_collections.ConfigDict:
  """``saved`` (a config as plain JSON) on top of ``defaults``.

  Fields the saved run predates keep today's default, so a run stays
  loadable when the code gains fields; fields that no longer exist are
  dropped. JSON lists become tuples where the default is a tuple.
  """
  merged = defaults.copy_and_resolve_references()
  with merged.unlocked():
    _merge(merged, saved)
  return merged


def _merge(node: ml_collections.ConfigDict, saved: dict) -> None:
  for key, value in saved.items():
    if key not in node:
      continue
    current = node[key]
    if isinstance(current, ml_collections.ConfigDict):
      if isinstance(value, dict):
        _merge(current, value)
    elif isinstance(current, tuple) and isinstance(value, list):
      node[key] = tuple(value)
    elif isinstance(current, float) and isinstance(value, int):
      node[key] = float(value)
    else:
      node[key] = value


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Writes the resolved config as JSON beside the checkpoints (atomically)."""
  _write_atomic(os.path.join(workdir, CONFIG_FILE),
                config.to_json(indent=2, sort_keys=True))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The saved config merged onto today's defaults; CheckpointError if bad."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{workdir} has no {CONFIG_FILE}: not a nerf_jax '
                          'training directory')
  try:
    with open(path) as f:
      saved = json.load(f)
    if not isinstance(saved, dict):
      raise ValueError('not a JSON object')
    return merge_onto(default_config(), saved)
  except (OSError, ValueError, TypeError) as e:
    raise CheckpointError(f'{path} is unreadable: {e}') from e


# ---------------------------------------------------------------------------
# scene.json


def save_scene(info: scene_lib.SceneInfo, workdir: str) -> None:
  """Writes the SceneInfo that rendering and resuming read (atomically)."""
  _write_atomic(os.path.join(workdir, SCENE_FILE),
                json.dumps(info.to_dict(), indent=2))


def load_scene(workdir: str) -> scene_lib.SceneInfo:
  """The saved SceneInfo; CheckpointError if absent or corrupt."""
  return _scene_from(_read_scene_json(workdir), workdir)


def _read_scene_json(workdir: str) -> dict:
  path = os.path.join(workdir, SCENE_FILE)
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f'{path} is missing or unreadable ({e})') from e


def _scene_from(raw: dict, workdir: str) -> scene_lib.SceneInfo:
  try:
    return scene_lib.SceneInfo.from_dict(raw)
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(f'{os.path.join(workdir, SCENE_FILE)} is '
                          f'unreadable ({e})') from e


# ---------------------------------------------------------------------------
# Resuming.


def check_resumable(config: ml_collections.ConfigDict,
                    info: scene_lib.SceneInfo, workdir: str) -> None:
  """Refuses a workdir whose run has another model or was trained on other
  data (one line naming what differs); a fresh workdir passes."""
  if not os.path.exists(os.path.join(workdir, CONFIG_FILE)):
    return
  saved = load_config(workdir)
  old, new = _flat(saved.model.to_dict()), _flat(config.model.to_dict())
  diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                and k not in _FREE_ON_RESUME)
  if saved.data.kind != config.data.kind:
    diff.insert(0, 'data.kind')
  if diff:
    names = ', '.join(k if k.startswith('data.') else f'model.{k}'
                      for k in diff)
    raise CheckpointError(
        f'{workdir} holds a run with a different model ({names} differ); use '
        'another --workdir or delete that one')
  what = _data_differences(saved, config, info, workdir)
  if what:
    raise CheckpointError(
        f'{workdir} holds a run trained on different data ({what}); use '
        'another --workdir or delete that one')


# Model fields that change how the same parameters are computed, not what
# they are: a run may resume with another value (e.g. bf16 on a TPU, then
# float32 on a CPU).
_FREE_ON_RESUME = frozenset({'compute_dtype'})


def _data_differences(saved_config, config, info: scene_lib.SceneInfo,
                      workdir: str) -> str:
  """What differs between the saved run's data and this one's ('' if same)."""
  if not os.path.exists(os.path.join(workdir, SCENE_FILE)):
    return ''
  raw = _read_scene_json(workdir)
  old = _scene_from(raw, workdir)
  has_box = 'aabb' in raw  # older runs did not record the box
  diffs = [name for name, a, b in (
      ('near', old.near, info.near), ('far', old.far, info.far),
      ('background', old.white_background, info.white_background),
      ('scene box', old.aabb if has_box else info.aabb, info.aabb)) if a != b]
  if old.fingerprint:
    if old.fingerprint != info.fingerprint:
      diffs.append('images or cameras')
  else:  # saved before fingerprints: compare what the config says instead
    a, b = _flat(saved_config.data.to_dict()), _flat(config.data.to_dict())
    diffs += [f'data.{k}' for k in sorted(set(a) | set(b))
              if k not in ('near', 'far', 'white_background')
              and a.get(k) != b.get(k)]
  if diffs and old.path != info.path:
    diffs.insert(0, f'path {old.path or "(built-in)"} -> '
                    f'{info.path or "(built-in)"}')
  return ', '.join(diffs)


def _flat(d: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = list(value) if isinstance(value, tuple) else value
  return out


# ---------------------------------------------------------------------------
# Checkpoints.


def checkpoint_manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR), options=options)


def restore(manager: ocp.CheckpointManager, target: Any,
            step: Optional[int] = None) -> Any:
  """Restores a checkpoint into the structure (and shardings) of ``target``."""
  step = manager.latest_step() if step is None else step
  try:
    return manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as e:  # orbax raises many types for a mismatched tree.
    raise CheckpointError(
        f'checkpoint {step} in {manager.directory} does not fit this model '
        f'({type(e).__name__}: {str(e).splitlines()[0][:200]})') from e


def restore_entries(manager: ocp.CheckpointManager, target: dict,
                    step: Optional[int] = None) -> dict:
  """Restores only the top-level entries named in ``target`` (e.g. 'step'
  and 'params', not the optimizer state) of a saved ``TrainState``.

  ``target`` maps each entry to a tree of ``jax.ShapeDtypeStruct`` whose
  shardings say where the arrays go on the devices present now, so a
  checkpoint written on any number of devices (or hosts) loads on any
  other: the sharding recorded at save time is not used.
  """
  step = manager.latest_step() if step is None else step
  args = ocp.args.PyTreeRestore(
      item=target,
      restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True)
  try:
    return manager.restore(step, args=args)
  except Exception as e:  # orbax raises many types for a mismatched tree.
    raise CheckpointError(
        f'checkpoint {step} in {manager.directory} does not fit this model '
        f'({type(e).__name__}: {str(e).splitlines()[0][:200]})') from e


# ---------------------------------------------------------------------------
# metrics.jsonl


def read_metrics(path: str) -> list:
  """The records of a metrics.jsonl (a half-written last line is skipped)."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except ValueError:
        continue
  return records


class MetricsWriter:
  """Appends records to ``<workdir>/metrics.jsonl``.

  ``enabled=False`` (processes other than 0 of a multi-process run) writes
  nothing.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.path = os.path.join(workdir, METRICS_FILE)
    self.enabled = enabled

  def truncate(self, step: int) -> None:
    """Drops records logged after ``step`` (a resumed run logs them again)."""
    if not self.enabled:
      return
    records = read_metrics(self.path)
    kept = [r for r in records if r.get('step', 0) <= step]
    if len(kept) != len(records):
      _write_atomic(self.path, ''.join(json.dumps(r) + '\n' for r in kept))

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
