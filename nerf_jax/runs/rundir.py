"""A run directory: what training writes and what rendering reads.

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

train.py (through train_lib) and render.py both go through this module, so
the file names, the formats and the compatibility rules live in one place.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import math
import os
import socket
import sys
import time
from typing import Callable, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from nerf_jax import errors, faults, metrics
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
_BASE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'configs', 'base.py')


class CheckpointError(errors.UserError):
  """A run directory that cannot be used as asked (one-line message)."""


def _write_atomic(path: str, text: str) -> None:
  """Writes a whole new file or nothing: a crash (or a full disk) leaves
  the old one in place."""
  tmp = path + '.tmp'
  try:
    with open(tmp, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


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
  _write_atomic(os.path.join(workdir, SCENE_FILE),
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


# ---------------------------------------------------------------------------
# Checkpoints.


def checkpoint_manager(workdir: str,
                       keep: Optional[int] = 3) -> ocp.CheckpointManager:
  """The run's checkpoints; ``keep`` most recent are kept when saving
  (None: all, for readers that never save)."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR), options=options)


# The folder of a step's checkpoint that holds the saved TrainState.
_ITEM = 'default'


def complete_steps(workdir: str) -> list:
  """The steps of the committed checkpoints, oldest first (orbax writes a
  checkpoint under a temporary name and renames it to its step when it is
  complete)."""
  try:
    names = os.listdir(os.path.join(workdir, CHECKPOINT_DIR))
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
    raise CheckpointError(f'{directory} has no checkpoints')
  damaged = []
  for s in steps:
    verdict, detail = _fit(manager, s, target, optional)
    if verdict == 'mismatch':
      raise CheckpointError(f'checkpoint {s} in {directory} does not fit '
                            f'this model ({detail})')
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
    raise CheckpointError(f'checkpoint {s} in {directory} is damaged ({why})')
  raise CheckpointError(
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
  source = os.path.join(workdir, CHECKPOINT_DIR, str(step))
  target_dir = os.path.join(workdir, DAMAGED_DIR)
  os.makedirs(target_dir, exist_ok=True)
  target = os.path.join(target_dir, str(step))
  n = 1
  while os.path.exists(target):
    n += 1
    target = os.path.join(target_dir, f'{step}.{n}')
  os.replace(source, target)
  return target


# ---------------------------------------------------------------------------
# metrics.jsonl


def read_metrics(path: str) -> list:
  """The records of a metrics.jsonl (a half-written line is skipped)."""
  if not os.path.exists(path):
    return []
  records = []
  with open(path, errors='replace') as f:
    for line in f:
      try:
        record = json.loads(line)
      except (ValueError, RecursionError):  # RecursionError: nested deeply
        continue
      if isinstance(record, dict) and not inputs.json_problem(record):
        records.append(record)
  return records


def _strict(value):
  """JSON has no NaN or infinity: non-finite numbers are written as null."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: _strict(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_strict(v) for v in value]
  return value


class MetricsWriter:
  """Appends records to ``<workdir>/metrics.jsonl``, one JSON object a line,
  and (``tensorboard``) to TensorBoard event files beside it.

  Records are strict JSON (non-finite numbers become null). Each line is
  one ``write`` of an append-mode file, so a crash leaves at most one
  half-written last line, which ``truncate`` removes on resuming.
  ``enabled=False`` (processes other than 0 of a multi-process run) writes
  nothing.
  """

  def __init__(self, workdir: str, enabled: bool = True,
               tensorboard: bool = False):
    self.path = os.path.join(workdir, METRICS_FILE)
    self.enabled = enabled
    self.events = TensorBoardWriter(workdir) if (
        enabled and tensorboard) else None

  def truncate(self, step: int) -> None:
    """Drops records logged after ``step`` (a resumed run logs them again)
    and any half-written line."""
    if self.events is not None:
      self.events.purge_step = step + 1
    if not self.enabled or not os.path.exists(self.path):
      return
    with open(self.path, 'rb') as f:
      raw = f.read()
    records = read_metrics(self.path)
    kept = [r for r in records if r.get('step', 0) <= step]
    lines = raw.splitlines()
    if (len(kept) != len(lines) or (raw and not raw.endswith(b'\n'))):
      _write_atomic(self.path, ''.join(
          json.dumps(_strict(r), allow_nan=False) + '\n' for r in kept))

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    line = json.dumps(_strict(record), allow_nan=False) + '\n'
    faults.maybe_fail('metrics', record.get('step'), path=self.path,
                      partial=line[:len(line) // 2])
    with open(self.path, 'a') as f:
      f.write(line)
    if self.events is not None:
      self.events.scalars(record)

  def image(self, tag: str, image, step: int) -> None:
    """An image f32[h, w, 3] in [0, 1] (TensorBoard only)."""
    if self.events is not None:
      self.events.image(tag, image, step)

  def close(self) -> None:
    if self.events is not None:
      self.events.close()


class TensorBoardWriter:
  """TensorBoard event files (tensorboardX) beside metrics.jsonl, so that
  ``tensorboard --logdir runs`` shows every run: each record's numbers as
  scalars ``<split>/<key>`` (train/loss, train/lr, train/rays_per_s,
  val/psnr, ...) and the evaluation previews as images.

  The file is opened at the first write, so a run that fails to start
  leaves none. A resumed session opens its file with ``purge_step`` (the
  restored step + 1): TensorBoard then drops what a killed session logged
  after that checkpoint, as ``MetricsWriter.truncate`` does for
  metrics.jsonl. Every write is flushed: a crash loses nothing logged.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.purge_step = None
    self._writer = None

  def _open(self):
    if self._writer is None:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._writer = SummaryWriter(logdir=self.workdir,
                                   purge_step=self.purge_step)
    return self._writer

  def scalars(self, record: dict) -> None:
    step, split = record.get('step'), record.get('split', 'train')
    if step is None:
      return
    writer = self._open()
    for key, value in record.items():
      if (key not in ('step', 'split') and isinstance(value, (int, float))
          and not isinstance(value, bool) and math.isfinite(value)):
        writer.add_scalar(f'{split}/{key}', value, int(step))
    writer.flush()

  def image(self, tag: str, image, step: int) -> None:
    writer = self._open()
    writer.add_image(tag, np.clip(np.asarray(image, np.float32), 0, 1),
                     int(step), dataformats='HWC')
    writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


# ---------------------------------------------------------------------------
# The lock: one training per workdir.


class RunLocked(errors.UserError):
  """Another training holds the workdir."""


class WorkdirLock:
  """An exclusive ``flock`` on ``<workdir>/.lock`` while a training runs.

  The kernel releases it when the process ends, however it ends (SIGKILL
  included), so a crash never leaves a stale lock. The file records who
  holds it, for the message a second training prints. Where ``fcntl`` is
  missing (Windows) the lock is a no-op.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, LOCK_FILE)
    self.file = None

  def acquire(self) -> 'WorkdirLock':
    try:
      import fcntl  # pylint: disable=g-import-not-at-top
    except ImportError:
      return self
    f = open(self.path, 'a+')
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
        # A filesystem without locks (some network mounts): train
        # unlocked, and say so.
        f.close()
        print(f'warning: cannot lock {self.path} ({e.strerror}); a second '
              'training into this workdir would not be refused',
              file=sys.stderr, flush=True)
        return self
      f.seek(0)
      holder = f.read().strip() or 'another process'
      f.close()
      raise RunLocked(
          f'{os.path.dirname(self.path) or "."} is in use by another training '
          f'({holder}); wait for it to finish, or use another --workdir')
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {socket.gethostname()} since '
            f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    f.flush()
    self.file = f
    return self

  @staticmethod
  def holder(workdir: str) -> Optional[str]:
    """Who trains in ``workdir`` now (None if no one)."""
    path = os.path.join(workdir, LOCK_FILE)
    try:
      import fcntl  # pylint: disable=g-import-not-at-top
      with open(path) as f:
        try:
          fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
          return f.read().strip() or 'another process'
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except (ImportError, OSError):
      pass
    return None

  def release(self) -> None:
    if self.file is not None:
      self.file.close()  # closing the descriptor releases the flock
      self.file = None


# ---------------------------------------------------------------------------
# environment.json: what produced the run.


def save_environment(workdir: str, seed: int) -> None:
  """Records the seed, the software versions and the devices of this
  session; a resumed run appends its own session."""
  import platform  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
               'numpy', 'ml_collections'):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  session = dict(
      started=time.strftime('%Y-%m-%dT%H:%M:%S%z'), seed=int(seed),
      versions=versions, python=platform.python_version(),
      platform=platform.platform(), host=socket.gethostname(),
      backend=jax.default_backend(), process_count=jax.process_count(),
      devices=[f'{d.platform}:{d.id} {d.device_kind}' for d in jax.devices()],
      command=' '.join(sys.argv))
  path = os.path.join(workdir, ENVIRONMENT_FILE)
  sessions = []
  try:
    with open(path) as f:
      sessions = json.load(f).get('sessions', [])
  except (OSError, ValueError, AttributeError, RecursionError):
    pass
  if not isinstance(sessions, list):  # edited by hand: start the list again
    sessions = []
  sessions.append(session)
  _write_atomic(path, json.dumps({'seed': int(seed), 'sessions': sessions},
                                 indent=2))
