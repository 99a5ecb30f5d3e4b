"""A run directory: its layout, config.json and scene.json, and resuming.

```
<workdir>/
  config.json      the resolved config (merged onto today's defaults on read)
  scene.json       the SceneInfo: near/far, background, box, camera, data hash
  metrics.jsonl    one JSON record per line (strict JSON: NaN is null)
  environment.json seed, software versions and devices of each session
  checkpoints/     orbax checkpoints, one folder per step
  checkpoints.damaged/  damaged checkpoints set aside on resuming
  .lock            held (flock) while a training runs here
```

Training and rendering both go through ``nerf_jax.runs``, so the file names,
the formats and the compatibility rules live in one place: this module
(names, config.json, scene.json, resuming), ``checkpoints``, ``metrics_log``,
``lock`` and ``environment``.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import ml_collections

from nerf_jax import errors
from nerf_jax.configs import base as base_config
from nerf_jax.io import outputs
from nerf_jax.io import inputs
from nerf_jax.datasets import scene as scene_lib

CONFIG_FILE = 'config.json'
SCENE_FILE = 'scene.json'
METRICS_FILE = 'metrics.jsonl'
CHECKPOINT_DIR = 'checkpoints'
DAMAGED_DIR = 'checkpoints.damaged'
ENVIRONMENT_FILE = 'environment.json'
LOCK_FILE = '.lock'


class CheckpointError(errors.UserError):
  """A run directory that cannot be used as asked (one-line message)."""


def check_workdir(workdir: str) -> None:
  """Refuses a workdir that is a file, lies under one, holds something
  else where a run keeps its files, or (for a new run) already holds files
  of a run's names that it would write over (one line), before anything is
  loaded or written. Other files there (a log, notes) are left alone."""
  path = errors.nearest_existing(workdir)
  if not os.path.isdir(path):
    raise CheckpointError(f'cannot create {workdir}: {path} is a file, not a '
                          'folder')
  for name, folder in ((CHECKPOINT_DIR, True), ('previews', True),
                       (CONFIG_FILE, False), (SCENE_FILE, False),
                       (METRICS_FILE, False), (ENVIRONMENT_FILE, False)):
    entry = os.path.join(workdir, name)
    if os.path.exists(entry) and os.path.isdir(entry) != folder:
      raise CheckpointError(
          f'{entry} is a {"file" if folder else "folder"}, but a run keeps '
          f'its {name} there as a {"folder" if folder else "file"}; move it '
          'away or use another --workdir')
  if os.path.isdir(workdir) and not os.path.exists(
      os.path.join(workdir, CONFIG_FILE)):
    # A new run writes, appends to and prunes files of these names: ones
    # that are there already (but a lock) are not its own.
    theirs = sorted(n for n in os.listdir(workdir) if n != LOCK_FILE and (
        n in outputs.RUN_ENTRIES or n.startswith(outputs.RUN_EVENT_PREFIX)))
    if theirs:
      raise CheckpointError(
          f'{workdir} holds {theirs[0]} but no {CONFIG_FILE}: it is not a run '
          'to resume, and a new run would write over it; move it away or use '
          'another --workdir')


# ---------------------------------------------------------------------------
# config.json


def default_config() -> ml_collections.ConfigDict:
  """Today's defaults of every field (nerf_jax/configs/base.py)."""
  return base_config.get_config()


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
    data = saved.get('data')
    if isinstance(data, dict) and 'extent' not in data and (
        'extent' in merged.get('data', {})):
      # Runs from before scene extents modelled every scene inside one box
      # (NDC captures in NDC): they resume, render and export as trained.
      ndc = data.get('kind') == 'llff' and data.get('ndc', True)
      merged.data.extent = 'auto' if ndc else 'bounded'
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
  outputs.write_text_atomic(os.path.join(workdir, CONFIG_FILE),
                config.to_json(indent=2, sort_keys=True))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The saved config merged onto today's defaults; CheckpointError if bad."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{workdir} has no {CONFIG_FILE}: not a nerf_jax '
                          'training directory')
  inputs.check_input_file(path, 'a run\'s config.json',
                          inputs.MAX_JSON_BYTES, CheckpointError)
  saved = inputs.read_json(path, CheckpointError)
  try:
    if not isinstance(saved, dict):
      raise ValueError('not a JSON object')
    return merge_onto(default_config(), saved)
  except (OSError, ValueError, TypeError) as e:
    raise CheckpointError(f'{path} is unreadable: {e}') from e


# ---------------------------------------------------------------------------
# scene.json


def save_scene(info: scene_lib.SceneInfo, workdir: str) -> None:
  """Writes the SceneInfo that rendering and resuming read (atomically)."""
  outputs.write_text_atomic(os.path.join(workdir, SCENE_FILE),
                json.dumps(info.to_dict(), indent=2))


def load_scene(workdir: str) -> scene_lib.SceneInfo:
  """The saved SceneInfo; CheckpointError if absent or corrupt."""
  return _scene_from(_read_scene_json(workdir), workdir)


def _read_scene_json(workdir: str) -> dict:
  path = os.path.join(workdir, SCENE_FILE)
  if not os.path.exists(path):
    raise CheckpointError(f'{path} is missing')
  # A pipe or a device is never opened.
  inputs.check_input_file(path, 'a run\'s scene.json',
                          inputs.MAX_JSON_BYTES, CheckpointError)
  return inputs.read_json(path, CheckpointError)


def _scene_from(raw: dict, workdir: str) -> scene_lib.SceneInfo:
  try:
    return scene_lib.SceneInfo.from_dict(raw)
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(f'{os.path.join(workdir, SCENE_FILE)} is '
                          f'unreadable ({e})') from e


# ---------------------------------------------------------------------------
# Resuming.


def check_resumable(config: ml_collections.ConfigDict,
                    info: scene_lib.SceneInfo, workdir: str,
                    legacy_fingerprint: Optional[Callable[[], str]] = None
                    ) -> None:
  """Refuses a workdir whose run has another model or was trained on other
  data (one line naming what differs); a fresh workdir passes.

  ``legacy_fingerprint`` gives this data's fingerprint as runs saved before
  'v2:' fingerprints computed it (``Scene.legacy_fingerprint``).
  """
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
  what = _data_differences(saved, config, info, workdir, legacy_fingerprint)
  if what:
    raise CheckpointError(
        f'{workdir} holds a run trained on different data ({what}); use '
        'another --workdir or delete that one')


# Model fields that change how the same parameters are computed, not what
# they are: a run may resume with another value (e.g. bf16 on a TPU, then
# float32 on a CPU).
_FREE_ON_RESUME = frozenset({'compute_dtype'})


def _data_differences(saved_config, config, info: scene_lib.SceneInfo,
                      workdir: str, legacy_fingerprint=None) -> str:
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
    new = info.fingerprint
    if not old.fingerprint.startswith('v2:') and legacy_fingerprint:
      new = legacy_fingerprint()
    if old.fingerprint != new:
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

