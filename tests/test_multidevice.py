"""Training and rendering on several (fake CPU) devices equal one device."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

from nerf_jax.runs import load

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys
import jax, jax.numpy as jnp, numpy as np
sys.path.insert(0, sys.argv[1])
from configs import demo
from nerf_jax import datasets, distributed, models
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.io import images as images_lib
from nerf_jax.models import pipeline
from nerf_jax.train import train_state, train_step
devices = int(sys.argv[2])
assert jax.device_count() == devices, jax.devices()
config = demo.get_config()
config.data.width, config.data.height = 12, 11
config.data.num_train, config.data.num_val, config.data.num_test = 7, 1, 1
config.model.preset, config.model.num_coarse = 'tiny', 8
scene = datasets.load_scene(config.data)
model = models.make_model(config.model, scene.info())
tx = model.optimizer(config.train)
split = scene.split('train')
mesh = distributed.make_mesh()
plain = batch_lib.PixelTable.create(images_lib.to_uint8(split.images),
                                    split.poses, split.intrinsics)
sharded = batch_lib.PixelTable.from_split(split, mesh)  # 7 x 132, padded
assert sharded.rgb.shape[0] % devices == 0
assert 0 < sharded.rgb.shape[0] - 7 * 132 < devices
assert len(sharded.rgb.addressable_shards) == devices
assert sharded.rgb.addressable_shards[0].data.shape[0] == (
    sharded.rgb.shape[0] // devices)
# The same batch, whatever the devices: pixels gathered from sharded rows.
key = jax.random.PRNGKey(5)


def sample_batch(key, data, count, mesh=None):
  drawn = batch_lib.draw_pixels(key, data, count, mesh)
  rays = batch_lib.cast(data.cameras, drawn, scene.near, scene.far)
  return rays.rays, rays.rgb


one = sample_batch(key, plain, 256)
many = jax.jit(lambda k, d: sample_batch(k, d, 256, mesh))(key, sharded)
assert many[1].sharding.spec == jax.sharding.PartitionSpec('data')
np.testing.assert_array_equal(np.asarray(one[1]), np.asarray(many[1]))
for a, b in zip(jax.tree_util.tree_leaves(one[0]),
                jax.tree_util.tree_leaves(many[0])):  # jit vs eager: an ulp
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=3e-7)
# Three steps from the same state on 1 device and on all devices.
results = []
for m, data in ((None, plain), (mesh, sharded)):
  state = train_state.create_train_state(jax.random.PRNGKey(0), model, tx)
  if m is not None:
    state = distributed.replicate(state, m)
  step = jax.jit(train_step.make_train_step(model, tx, 256, scene.near,
                                            scene.far, m, micro_batches=2),
                 donate_argnums=(0,))
  for _ in range(3):
    state, metrics = step(state, data, jax.random.PRNGKey(1))
  assert step._cache_size() == 1, step._cache_size()  # compiled once
  results.append(state)
assert all(x.sharding.is_fully_replicated
           for x in jax.tree_util.tree_leaves(results[1].params))
for a, b in zip(*(jax.tree_util.tree_leaves(s.params) for s in results)):
  np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
# Rendering spreads each chunk over the devices and matches one device.
from nerf_jax.cameras import camera, paths
from nerf_jax.inference import chunked
params = results[1].variables()
intr = camera.Intrinsics.from_focal(14.0, 11, 9)
pose = paths.orbit_poses(2, 30.0, 4.0)[1]
fn = chunked.make_render_fn(model)
multi = chunked.render_view(fn, params, intr, pose, 2.0, 6.0, 30)
ref = jax.jit(lambda v, r: pipeline.render_rays(
    model.field, v['params'], r, None, model.options))
rays = chunked.image_rays(camera.Cameras.create(pose[None], intr), 0, 2.0, 6.0)
single = ref(jax.device_put(results[0].variables(), jax.devices()[0]),
             rays)['coarse']
np.testing.assert_allclose(multi['rgb'], single['rgb'], rtol=1e-4, atol=1e-5)
# A model whose loss couples its rays runs per device (shard_map): for a
# per-ray loss without jitter that is the one-device step exactly.
class Coupled:
  couples_rays = True

  def __getattr__(self, name):
    return getattr(model, name)

  def loss(self, params, state, batch, key, step):
    return model.loss(params, state, batch, None, step)


coupled = Coupled()
results = []
for m, data in ((None, plain), (mesh, sharded)):
  state = train_state.create_train_state(jax.random.PRNGKey(0), model, tx)
  step = jax.jit(train_step.make_train_step(coupled, tx, 256, scene.near,
                                            scene.far, m))
  for _ in range(2):
    state, _ = step(state, data, jax.random.PRNGKey(1))
  results.append(state.params)
for a, b in zip(*(jax.tree_util.tree_leaves(p) for p in results)):
  np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
# The fast model renders each device's rays on that device: same image.
config.model.kind = 'fast'
config.model.fast.log2_table, config.model.fast.max_resolution = 12, 64
config.model.fast.occupancy_resolution, config.model.fast.levels = 16, 4
fast = models.make_model(config.model, scene.info())
variables = dict(zip(('params', 'state'), fast.init(jax.random.PRNGKey(2))))
multi = chunked.render_view(chunked.make_render_fn(fast), variables,
                            intr, pose, 2.0, 6.0, 32)
single = jax.jit(lambda v, r: fast.render(v['params'], v['state'], r))(
    jax.device_put(variables, jax.devices()[0]), rays)
np.testing.assert_allclose(multi['rgb'], single['rgb'], rtol=1e-4, atol=1e-5)
print('OK', jax.device_count())
'''


# 2 and 4 devices: see the checkpoint and two-process tests.
@pytest.mark.slow
@pytest.mark.parametrize('devices', [8])
def test_sharded_step_matches_one_device(devices):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  proc = subprocess.run([sys.executable, '-c', SCRIPT, str(ROOT), str(devices)],
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'OK {devices}' in proc.stdout


SMALL = [
    '--config', 'demo.py', '--config.data.width=12', '--config.data.height=12',
    '--config.data.num_train=6', '--config.data.num_val=1',
    '--config.data.num_test=1', '--config.model.preset=tiny',
    '--config.model.num_coarse=8', '--config.train.batch_rays=64',
    '--config.train.log_every=2', '--config.eval.every=0',
    '--config.checkpoint.every=2',
]


def _run(script: str, args: list, devices: int, cwd) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             NERF_JAX_CACHE=str(cwd / 'cache'),
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=300,
                        stdin=subprocess.DEVNULL)


def _train_reference(args: list, cwd) -> None:
  """train.py with ``args`` on one CPU device, the straight run a test
  compares with: in this process when it has just that (its flags parsed
  as train.py parses them; saves a process start and its imports, about
  3 s), else in a process of its own."""
  if (jax.device_count(), jax.default_backend()) != (1, 'cpu'):
    proc = _run('train.py', args, 1, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from nerf_jax import cli  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import loop  # pylint: disable=g-import-not-at-top
  argv = cli.resolve_config_arg(['train.py', *args])
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=values,
                                  lock_config=True, sys_argv=argv)
  flags.DEFINE_string('workdir', None, '', flag_values=values)
  flags.DEFINE_bool('progress', True, '', flag_values=values)
  with warnings.catch_warnings():  # ml_collections' load_module, as in train.py
    warnings.simplefilter('ignore', DeprecationWarning)
    values(argv)
  loop.train_and_evaluate(values.config, values.workdir,
                          progress=values.progress)


def _same_runs(runs: list, steps: int) -> None:
  """Loads two run directories as render.py does and checks that both are
  at ``steps`` with the same parameters."""
  got = [load.load_trained(str(d))[3:] for d in runs]
  assert got[0][1] == got[1][1] == steps, [g[1] for g in got]
  for a, b in zip(*(jax.tree_util.tree_leaves(g[0]) for g in got)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


LOAD = r'''
import sys, jax
sys.path.insert(0, sys.argv[1])
from tests.test_multidevice import _same_runs
assert jax.device_count() == int(sys.argv[4])
_same_runs(sys.argv[2:4], int(sys.argv[5]))
print('SAME')
'''


def _load_same(moved, ref, devices: int, steps: int) -> None:
  """``_same_runs`` on ``devices`` CPU devices: in this process when it has
  just that (one CPU device; saves a process start, about 3 s), else in a
  process of its own."""
  if (devices, jax.device_count(), jax.default_backend()) == (1, 1, 'cpu'):
    _same_runs([moved, ref], steps)
    return
  proc = subprocess.run(
      [sys.executable, '-c', LOAD, str(ROOT), str(moved), str(ref),
       str(devices), str(steps)], capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
          f'--xla_force_host_platform_device_count={devices}')))
  assert proc.returncode == 0 and 'SAME' in proc.stdout, proc.stderr[-3000:]


@pytest.mark.slow
def test_checkpoint_moves_between_topologies(tmp_path):
  """4 steps on 4 devices, resumed for 2 more on 2 devices, equals 6 steps on
  1 device; the run then loads (as render.py loads it) on 1 device and on
  3."""
  moved, ref = tmp_path / 'moved', tmp_path / 'ref'
  for devices, steps in ((4, 4), (2, 6)):
    proc = _run('train.py', SMALL + [f'--workdir={moved}',
                                     f'--config.train.max_steps={steps}'],
                devices, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'resum' in proc.stdout + proc.stderr
  _train_reference(SMALL + [f'--workdir={ref}', '--config.train.max_steps=6'],
                   tmp_path)
  for devices in (1, 3):  # 3 devices: a count the run never saw
    _load_same(moved, ref, devices, 6)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
  """Two processes (2 CPU devices each) joined by jax.distributed train one
  model under a time budget: they stop together at a step where they agreed
  on the clock, write one set of outputs, and reach the parameters of one
  process trained for as many steps."""
  multi, ref = tmp_path / 'multi', tmp_path / 'ref'
  args = SMALL + ['--config.train.max_steps=100000',
                  '--config.train.max_seconds=1', '--config.train.log_every=8',
                  '--config.checkpoint.every=100000', '--noprogress']
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             NERF_JAX_CACHE=str(tmp_path / 'cache'),
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  procs = [subprocess.Popen(
      [sys.executable, str(ROOT / 'train.py'), *args, f'--workdir={multi}',
       f'--coordinator=localhost:{port}', '--num_processes=2',
       f'--process_id={i}'], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
           for i in (0, 1)]
  outs = []
  for proc in procs:
    try:
      outs.append(proc.communicate(timeout=300))
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
  for proc, (out, err) in zip(procs, outs):
    assert proc.returncode == 0, err[-3000:]
  assert 'held-out PSNR' in outs[0][0] and 'held-out PSNR' not in outs[1][0]
  checkpoints = [p.name for p in (multi / 'checkpoints').iterdir()
                 if p.name.isdigit()]
  assert len(checkpoints) == 1
  steps = int(checkpoints[0])
  assert steps > 0 and steps % 8 == 0  # the clock is agreed every 8 steps
  records = [json.loads(line) for line in
             (multi / 'metrics.jsonl').read_text().splitlines()]
  assert [(r['step'], r['split']) for r in records] == [
      (s, 'train') for s in range(8, steps + 1, 8)] + [(steps, 'val')]
  assert len(list((multi / 'previews').glob('*.png'))) == 1
  _train_reference(SMALL + [f'--config.train.max_steps={steps}',
                           '--noprogress', f'--workdir={ref}'], tmp_path)
  _load_same(multi, ref, 1, steps)


def test_distributed_flags_are_checked(tmp_path):
  proc = _run('train.py', SMALL + [f'--workdir={tmp_path / "w"}',
                                   '--coordinator=localhost:1'], 1, tmp_path)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      'error: --coordinator, --num_processes and --process_id go together '
      '(or use --distributed to let JAX detect the cluster)']
  assert not (tmp_path / 'w').exists()


def test_batch_not_divisible_by_the_devices_is_refused(tmp_path):
  proc = _run('train.py', SMALL + [f'--workdir={tmp_path / "w"}'], 3, tmp_path)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      'error: train.batch_rays=64 must be divisible by the 3 devices present']
  assert not (tmp_path / 'w').exists()
