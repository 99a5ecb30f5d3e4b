"""Times the jitted training step for a config: s/step, rays/s, samples/s, RSS.

  python benchmarks/step_speed.py --config tiny.py [--config.model.preset=tiny]

Compare two variants, timed interleaved in one process (the machine's load
then affects both alike), with the ratio other / config:

  python benchmarks/step_speed.py --config keras_example.py \\
      --other_overrides train.micro_batches=1
  python benchmarks/step_speed.py --config keras_example.py --other tiny.py

``--other`` (a config file, default: the --config file) with
``--other_overrides`` (comma-separated ``section.key=value``) names the second
variant; without ``--other`` it starts from --config *including* its
``--config.*`` overrides. Either flag turns comparison on. ``--sweep`` times
one variant per value of one field, interleaved, with ratios to the first:

  python benchmarks/step_speed.py --config keras_example.py \
      --sweep train.micro_batches=1:5:25:50 --rounds 3 --steps 2

CPU-s is the process's CPU time (all threads, user + system) per step: less
sensitive than wall time to other work on a shared machine.

Uses random stand-in uint8 images of the dataset's size (100 views of
100x100, like the tiny lego), so no download is needed. Peak RSS is the
process's high-water mark (VmHWM), reset before each variant's warm-up where
Linux allows, so in comparisons it is per variant.
"""

import ast
import importlib.util
import os
import resource
import sys
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))
from nerf_jax import cli  # pylint: disable=g-import-not-at-top

_CONFIG = _STEPS = _WARMUP = _ROUNDS = _OTHER = _OTHER_OVERRIDES = _SWEEP = None
_SHARDED = None


def _define_flags() -> None:
  """This script's flags (not defined on import, for profile_step.py)."""
  global _CONFIG, _STEPS, _WARMUP, _ROUNDS, _OTHER, _OTHER_OVERRIDES, _SWEEP, _SHARDED  # pylint: disable=global-statement
  _CONFIG = config_flags.DEFINE_config_file('config', None, 'config file')
  _STEPS = flags.DEFINE_integer('steps', 10, 'timed steps (per round)')
  _WARMUP = flags.DEFINE_integer('warmup', 2, 'untimed steps after compiling')
  _ROUNDS = flags.DEFINE_integer(
      'rounds', 1, 'timing rounds; with two variants they alternate, and the '
      'median over rounds is reported')
  _OTHER = flags.DEFINE_string(
      'other', None, 'second config file to compare with (default: --config)')
  _OTHER_OVERRIDES = flags.DEFINE_list(
      'other_overrides', [],
      'section.key=value overrides of the second variant')
  _SWEEP = flags.DEFINE_string(
      'sweep', '', 'section.key=v1:v2:...: time one variant of --config per '
      'value, interleaved (e.g. train.micro_batches=1:5:25)')
  _SHARDED = flags.DEFINE_bool(
      'sharded', False, 'time the step as train.py runs it: on a mesh over '
      'every device, images split by view, state replicated (default: the '
      'plain single-device step)')


# Synthetic data: the tiny lego's shape.
NUM_VIEWS, SIZE, FOCAL, NEAR, FAR = 100, 100, 138.9, 2.0, 6.0


def synthetic_setup(config, seed: int = 0, mesh=None):
  """(model, tx, state, data) for ``config`` on random uint8 images; with a
  mesh, placed as train.py places them (see ``distributed``)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nerf_jax.cameras import camera  # pylint: disable=g-import-not-at-top
  from nerf_jax import distributed, models  # pylint: disable=g-import-not-at-top
  from nerf_jax.datasets import scene  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import train_state  # pylint: disable=g-import-not-at-top
  from nerf_jax.datasets import batch as batch_lib  # pylint: disable=g-import-not-at-top
  intrinsics = camera.Intrinsics.from_focal(FOCAL, SIZE, SIZE)
  info = scene.SceneInfo(name='synthetic', near=NEAR, far=FAR,
                         white_background=False, aabb=scene.DEFAULT_AABB,
                         intrinsics=intrinsics)
  model = models.make_model(config.model, info)
  tx = model.optimizer(config.train)
  state = train_state.create_train_state(jax.random.PRNGKey(seed), model, tx)
  rng = np.random.default_rng(seed)
  poses = np.stack([camera.pose_spherical(a, -30.0, 4.0)
                    for a in np.linspace(0, 360, NUM_VIEWS, endpoint=False)])
  data = batch_lib.PixelTable.create(
      rng.integers(0, 256, (NUM_VIEWS, SIZE, SIZE, 3), np.uint8), poses,
      intrinsics)
  if mesh is not None:
    state = distributed.replicate(state, mesh)
    data = data.replace(
        rgb=distributed.shard_rows(np.asarray(data.rgb), mesh),
        starts=distributed.replicate(np.asarray(data.starts), mesh),
        cameras=distributed.replicate(data.cameras, mesh))
  return model, tx, state, data


def make_step(config, model, tx, mesh=None):
  """The jitted training step of ``config`` (state donated)."""
  import jax  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import train_step  # pylint: disable=g-import-not-at-top
  return jax.jit(train_step.make_train_step(
      model, tx, config.train.batch_rays, NEAR, FAR, mesh,
      micro_batches=config.train.get('micro_batches', 1)),
                 donate_argnums=(0,))


def samples_per_ray(config) -> int:
  """Field evaluations per ray of the vanilla NeRF (coarse + fine)."""
  m = config.model
  if m.kind == 'fast':  # the packed budget: what the field evaluates
    return m.fast.budget_per_ray
  fine = m.num_coarse + m.num_fine if m.num_fine > 0 else 0
  return m.num_coarse + fine


def apply_override(config, item: str) -> None:
  """Sets ``section.key=value`` on ``config``, parsed like the field's type."""
  key, sep, raw = item.partition('=')
  if not sep:
    raise ValueError(f'override {item!r} is not section.key=value')
  *path, leaf = key.strip().split('.')
  node = config
  for name in path:
    node = node[name]
  current = node[leaf]
  if isinstance(current, bool):
    value = raw.strip().lower() in ('1', 'true', 'yes')
  elif isinstance(current, str):
    value = raw
  elif isinstance(current, (int, float)):
    value = type(current)(ast.literal_eval(raw))
  else:
    value = ast.literal_eval(raw)
    if isinstance(current, tuple):
      value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
  node[leaf] = value


def load_config_file(name: str):
  """A config file's ``get_config()``, found like ``--config`` finds it."""
  path = cli.resolve_config_arg(['--config', name])[1].partition(':')[0]
  spec = importlib.util.spec_from_file_location('_other_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def peak_rss_gb() -> float:
  """The process's resident-set high-water mark, in GB."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024 / 1e9
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def reset_peak_rss() -> bool:
  """Resets VmHWM to the current RSS (Linux); False where not possible."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    return True
  except OSError:
    return False


class Variant:
  """One config's compiled step, its state and its timings."""

  def __init__(self, label: str, config, sharded: bool = False):
    import jax  # pylint: disable=g-import-not-at-top
    from nerf_jax import distributed  # pylint: disable=g-import-not-at-top
    self.label, self.config = label, config
    mesh = distributed.make_mesh() if sharded else None
    model, tx, self.state, self.data = synthetic_setup(config, mesh=mesh)
    self.step = make_step(config, model, tx, mesh)
    self.key = jax.random.PRNGKey(1)
    t0 = time.perf_counter()
    compiled = self.step.lower(self.state, self.data, self.key).compile()
    self.step = compiled  # call the executable itself: no second compile
    self.compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    self.xla_temp_gb = (mem.temp_size_in_bytes / 1e9) if mem else float('nan')
    self.times, self.cpu_times = [], []
    self.peak_rss_gb = self.last_cpu_s = float('nan')

  def run(self, steps: int) -> float:
    """Runs ``steps`` steps; returns seconds per step."""
    import jax  # pylint: disable=g-import-not-at-top
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
      self.state, m = self.step(self.state, self.data, self.key)
    jax.block_until_ready(m)
    self.last_cpu_s = (time.process_time() - c0) / steps
    return (time.perf_counter() - t0) / steps

  def warm_up(self, steps: int) -> None:
    reset_peak_rss()  # where it cannot, the peak is the process's so far
    self.run(max(1, steps))
    self.peak_rss_gb = peak_rss_gb()

  def summary(self) -> dict:
    import numpy as np  # pylint: disable=g-import-not-at-top
    c = self.config
    s = float(np.median(self.times))
    cpu = float(np.median(self.cpu_times))
    rays = c.train.batch_rays
    return dict(label=self.label, s_per_step=s, cpu_s_per_step=cpu,
                rays_per_s=rays / s,
                samples_per_s=rays * samples_per_ray(c) / s,
                compile_s=self.compile_s, xla_temp_gb=self.xla_temp_gb,
                peak_rss_gb=self.peak_rss_gb,
                micro_batches=c.train.get('micro_batches', 1),
                batch=rays, preset=c.model.preset,
                samples=(f'{c.model.fast.budget_per_ray} packed'
                         if c.model.kind == 'fast' else
                         f'{c.model.num_coarse}+{c.model.num_fine}'))


def describe(r: dict) -> str:
  return (f'{r["label"]}: preset={r["preset"]!r} batch={r["batch"]} '
          f'micro_batches={r["micro_batches"]} samples={r["samples"]}: '
          f'{r["s_per_step"]:.3f} s/step ({r["cpu_s_per_step"]:.2f} CPU-s), '
          f'{r["rays_per_s"]:,.0f} rays/s, '
          f'{r["samples_per_s"]:,.0f} samples/s, peak RSS '
          f'{r["peak_rss_gb"]:.2f} GB (XLA temp {r["xla_temp_gb"]:.2f} GB), '
          f'compile {r["compile_s"]:.1f} s')


def main(_):
  import numpy as np  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  name = cli.config_name(sys.argv)
  variants = [(name, config)]
  if _SWEEP.value:
    key, _, values = _SWEEP.value.partition('=')
    variants = []
    for value in values.split(':'):
      cfg = config.copy_and_resolve_references()
      apply_override(cfg, f'{key}={value}')
      variants.append((f'{name}[{key}={value}]', cfg))
  elif _OTHER.value or _OTHER_OVERRIDES.value:
    other = (load_config_file(_OTHER.value) if _OTHER.value
             else config.copy_and_resolve_references())
    for item in _OTHER_OVERRIDES.value:
      apply_override(other, item)
    label = os.path.splitext(os.path.basename(_OTHER.value or name))[0]
    if _OTHER_OVERRIDES.value:
      label += '[' + ','.join(_OTHER_OVERRIDES.value) + ']'
    variants.append((label, other))
  runs = []
  for label, cfg in variants:  # compile and warm up one at a time (memory)
    v = Variant(label, cfg, sharded=_SHARDED.value)
    v.warm_up(_WARMUP.value)
    runs.append(v)
  for _ in range(max(1, _ROUNDS.value)):
    for v in runs:
      v.times.append(v.run(_STEPS.value))
      v.cpu_times.append(v.last_cpu_s)
  results = [v.summary() for v in runs]
  import jax  # pylint: disable=g-import-not-at-top
  print(f'{jax.device_count()} {jax.devices()[0].platform} device(s), '
        f'{"sharded step on a mesh" if _SHARDED.value else "plain step"}')
  for r in results:
    print(describe(r))
  for v, r in zip(runs[1:], results[1:]):
    ratios = [b / a for a, b in zip(runs[0].times, v.times)]
    print(f'ratio {r["label"]} / {results[0]["label"]}: '
          f'{r["s_per_step"] / results[0]["s_per_step"]:.3f}x '
          f'time per step (median of per-round ratios '
          f'{float(np.median(ratios)):.3f}, {len(ratios)} rounds of '
          f'{_STEPS.value} steps)')
  with open('/proc/loadavg') as f:
    print('loadavg:', f.read().strip())


if __name__ == '__main__':
  _define_flags()
  sys.argv = cli.resolve_config_arg(sys.argv)
  app.run(main)
