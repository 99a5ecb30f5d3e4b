"""Checks a run's config where it enters: names, types and ranges.

Every field of ``configs/base.py`` has a type (its default's) and, where a
value can be wrong, a range below (``RANGES``). A config file or a command
line override that names no field, has the wrong type, is not finite or
falls outside its range is refused with one line naming the key:

  config key train.log_every=0 is out of range: must be an integer in [1, inf)

The checks that depend on several fields (or on the devices present) follow
the table.
"""

from __future__ import annotations

import math
import re
from typing import Any, Optional

import jax
import ml_collections

from nerf_jax import datasets, errors, models
from nerf_jax.datasets import extent as extent_lib
from nerf_jax.models import views as views_lib
from nerf_jax.runs import rundir


class ConfigError(errors.UserError):
  """An invalid configuration (one-line message)."""


# Allowed values: an interval with '[' / ']' closed and '(' / ')' open ends;
# 'inf' is unbounded. Integer fields (by their default's type) must also be
# integers. Bounds are generous: they refuse what cannot work or is absurd
# (a far plane of 1e38, a learning rate of 1000), not what is merely unusual.
RANGES = {
    'data.near': '[0, 1e5)',
    'data.far': '[0, 1e5]',
    'data.width': '[1, 8192]',
    'data.height': '[1, 8192]',
    'data.num_train': '[1, 100000]',
    'data.num_val': '[0, 100000]',
    'data.num_test': '[0, 100000]',
    'data.downsample': '[1, 64]',
    'data.max_views': '[0, inf)',
    'data.val_indices': '[0, 1e9]',  # each index
    'data.val_fraction': '[0, 1)',
    'data.holdout': '[0, inf)',
    'data.aabb_scale': '[0, 1e4]',
    'data.seed': '[0, 9.2e18]',  # numpy's generators take no negative seed
    'model.depth': '[1, 64]',
    'model.width': '[1, 8192]',
    'model.pos_freqs': '[0, 24]',
    'model.dir_freqs': '[0, 24]',
    'model.density_bias': '[-100, 100]',
    'model.num_coarse': '[2, 8192]',
    'model.num_fine': '[0, 8192]',
    'train.batch_rays': '[1, 67108864]',
    'train.micro_batches': '[1, inf)',
    'train.max_steps': '[1, 1e12]',
    'train.seed': '[-9.2e18, 9.2e18]',  # JAX's PRNGKey takes an int64
    'train.max_seconds': '[0, inf)',
    'train.lr_init': '(0, 1]',
    'train.lr_final': '(0, 1]',
    'train.lr_decay_steps': '[1, inf)',
    'train.warmup_steps': '[0, inf)',
    'train.adam_b1': '[0, 1)',
    'train.adam_b2': '[0, 1)',
    'train.adam_eps': '(0, 1]',
    'train.grad_clip': '[0, inf)',
    'train.log_every': '[1, inf)',
    'train.max_nonfinite_steps': '[1, inf)',
    'eval.every': '[0, inf)',
    'eval.at_seconds': '[0, inf)',
    'eval.max_views': '[0, inf)',
    'eval.chunk': '[1, 16777216]',
    'checkpoint.every': '[1, inf)',
    'checkpoint.keep': '[1, 10000]',
}

# The held-out view options and the data kinds they apply to. Their loaders
# alone read them: set to anything but its default for another kind, one
# would be ignored, so it is refused (the same for every kind).
HELD_OUT_OPTIONS = {
    'data.num_val': ('procedural',),
    'data.num_test': ('procedural',),
    'data.max_views': ('blender',),
    'data.val_indices': ('tiny_npz',),
    'data.val_fraction': ('tiny_npz',),
    'data.holdout': ('llff', 'transforms'),
}

# Other options that only their kind's loader reads, refused the same way.
KIND_OPTIONS = {
    'data.environment': ('procedural',),
    'data.pose_noise': ('procedural',),
    'data.exposure_noise': ('procedural',),
}

_INTERVAL = re.compile(r'^([\[(])\s*([^,]+),\s*([^\])]+)([\])])$')


def _in_interval(value: float, interval: str) -> bool:
  lo_br, lo, hi, hi_br = _INTERVAL.match(interval).groups()
  lo, hi = float(lo), float(hi)
  above = value >= lo if lo_br == '[' else value > lo
  below = value <= hi if hi_br == ']' else value < hi
  return above and below


def _walk(node, prefix: str = ''):
  """(dotted key, value) of every leaf of a ConfigDict."""
  for key in node.keys():
    value = node[key]
    if isinstance(value, ml_collections.ConfigDict):
      yield from _walk(value, f'{prefix}{key}.')
    else:
      yield prefix + key, value


def _same_type(value: Any, default: Any) -> bool:
  if isinstance(default, bool):
    return isinstance(value, bool)
  if isinstance(default, int):
    return isinstance(value, int) and not isinstance(value, bool)
  if isinstance(default, float):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(default, str):
    return isinstance(value, str)
  if isinstance(default, (tuple, list)):
    return isinstance(value, (tuple, list))
  return True


def check_fields(config: ml_collections.ConfigDict,
                 defaults: ml_collections.ConfigDict) -> None:
  """Names, types, finiteness and ``RANGES`` of every field (ConfigError)."""
  known = dict(_walk(defaults))
  for key, value in _walk(config):
    if key not in known:
      parent = key.rpartition('.')[0]
      siblings = sorted(k.rpartition('.')[2] for k in known
                        if k.rpartition('.')[0] == parent)
      raise ConfigError(f'unknown config key {key!r} (known fields of '
                        f'{parent or "config"}: {", ".join(siblings)})')
    default = known[key]
    if not _same_type(value, default):
      raise ConfigError(f'config key {key}={value!r} has the wrong type: '
                        f'expected {type(default).__name__} like its default '
                        f'{default!r}')
    items = value if isinstance(value, (tuple, list)) else (value,)
    for item in items:
      if isinstance(item, float) and not math.isfinite(item):
        raise ConfigError(f'config key {key}={value!r} is not finite')
      if key in RANGES and isinstance(item, (int, float)):
        interval = RANGES[key]
        if not _in_interval(item, interval):
          what = 'an integer' if isinstance(default, int) else 'a number'
          raise ConfigError(f'config key {key}={value!r} is out of range: '
                            f'must be {what} in {interval}')


def held_out_problem(data: ml_collections.ConfigDict,
                     defaults: ml_collections.ConfigDict) -> str:
  """'' or the line refusing a held-out option (``HELD_OUT_OPTIONS``) or
  another kind's option (``KIND_OPTIONS``) set for a data kind it does not
  apply to."""
  if data.kind not in datasets.KINDS:
    return ''  # the loader names the kinds
  for key, kinds in {**HELD_OUT_OPTIONS, **KIND_OPTIONS}.items():
    field = key.partition('.')[2]
    if data.kind in kinds or field not in data:
      continue
    value, default = data[field], defaults[field]
    same = (tuple(value) == tuple(default) if isinstance(default, tuple)
            else value == default)
    if not same:
      return (f'{key}={value!r} does not apply to data.kind={data.kind!r} '
              f'(it is for {" and ".join(kinds)} data); leave it at its '
              f'default {default!r}')
  return ''


def validate_config(config: ml_collections.ConfigDict,
                    num_devices: Optional[int] = None) -> None:
  """Raises ConfigError for values that cannot work.

  Args:
    config: the run's config.
    num_devices: the devices the batch is split over when training (all
      devices of all processes by default); ``0`` is a saved run's config,
      read to render it: the checks that depend on the device count are
      skipped, and so is ``held_out_problem`` (a run trained while such an
      option was ignored keeps rendering).
  """
  defaults = rundir.default_config()
  check_fields(config, defaults)
  if num_devices != 0:
    problem = held_out_problem(config.data, defaults.data)
    if problem:
      raise ConfigError(problem)
  if num_devices is None:
    num_devices = jax.device_count()
  m, t = config.model, config.train
  if m.kind not in models.KINDS:
    raise ConfigError(f'model.kind={m.kind!r} is not one of '
                      f'{", ".join(repr(k) for k in models.KINDS)}')
  if m.preset and m.preset not in models.PRESETS:
    raise ConfigError(f'model.preset={m.preset!r} is not one of '
                      f'{", ".join(models.PRESETS)} (or \'\' for depth/width)')
  try:
    models.KINDS[m.kind].check_config(m)
    models.compute_dtype(m)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  micro = t.micro_batches
  if num_devices and t.batch_rays % num_devices:
    raise ConfigError(f'train.batch_rays={t.batch_rays} must be divisible by '
                      f'the {num_devices} devices present')
  if num_devices and t.batch_rays % (micro * num_devices):
    raise ConfigError(f'train.batch_rays={t.batch_rays} must be divisible by '
                      f'train.micro_batches={micro} x {num_devices} '
                      f'device(s) = {micro * num_devices}')
  elif t.batch_rays % micro:
    raise ConfigError(f'train.batch_rays={t.batch_rays} must be divisible by '
                      f'train.micro_batches={micro}')
  if t.lr_schedule not in ('log_linear', 'exponential'):
    raise ConfigError(f'train.lr_schedule={t.lr_schedule!r} must be '
                      "'log_linear' or 'exponential'")
  if m.refine_poses and not (0 <= t.camera_lr_final <= t.camera_lr) or min(
      t.camera_delay, t.camera_warmup) < 0:
    raise ConfigError('train.camera_lr must be >= train.camera_lr_final >= 0 '
                      'and train.camera_delay, train.camera_warmup >= 0')
  try:
    views_lib.check_eval_protocol(getattr(config.eval, 'appearance', 'mean'))
  except ValueError as e:
    raise ConfigError(str(e)) from e
  if config.data.extent not in extent_lib.CHOICES:
    raise ConfigError(f'data.extent={config.data.extent!r} is not one of '
                      f'{", ".join(repr(c) for c in extent_lib.CHOICES)}')
  d = config.data
  from_data = d.kind in ('llff', 'transforms') and d.near == d.far == 0
  if not (d.near < d.far or from_data):
    raise ConfigError('data.near must be smaller than data.far'
                      + (' (or both 0: from the data)'
                         if d.kind in ('llff', 'transforms') else ''))
