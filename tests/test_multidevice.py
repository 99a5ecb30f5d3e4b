"""Training and rendering on several (fake CPU) devices equal one device."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
sys.path.insert(0, sys.argv[1])
from configs import demo
from nerf_jax import datasets, models, pipeline, train_lib
assert jax.device_count() == 4, jax.devices()
config = demo.get_config()
config.data.width = config.data.height = 12
config.data.num_train, config.data.num_val, config.data.num_test = 6, 1, 1
config.model.preset, config.model.num_coarse = 'tiny', 8
scene = datasets.load_scene(config.data)
model = models.make_model(config.model, scene.info())
tx = model.optimizer(config.train)
split = scene.split('train')
data = train_lib.TrainData(jnp.asarray(split.images), jnp.asarray(split.poses),
                           split.intrinsics)
results = []
for mesh in (None, Mesh(np.asarray(jax.devices()), ('data',))):
  state = train_lib.create_train_state(jax.random.PRNGKey(0), model, tx)
  step = jax.jit(train_lib.make_train_step(model, tx, 256, scene.near,
                                           scene.far, mesh))
  for _ in range(3):
    state, metrics = step(state, data, jax.random.PRNGKey(1))
  results.append(state)
  if mesh is not None:
    lowered = step.lower(state, data, jax.random.PRNGKey(1)).as_text()
    assert 'sharding' in lowered
for a, b in zip(*(jax.tree_util.tree_leaves(s.params) for s in results)):
  np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
# Rendering spreads each chunk over the devices and matches one device.
from nerf_jax import camera, render_lib
params = results[0].variables()
intr = camera.Intrinsics.from_focal(14.0, 11, 9)
pose = render_lib.orbit_poses(2, 30.0, 4.0)[1]
fn = render_lib.make_render_fn(model)
multi = render_lib.render_view(fn, params, intr, pose, 2.0, 6.0, 30)
ref = jax.jit(lambda v, r: pipeline.render_rays(
    model.field, v['params'], r, None, model.options))
rays = render_lib._image_rays(intr, pose, 2.0, 6.0)
single = ref(jax.device_put(params, jax.devices()[0]), rays)['coarse']
np.testing.assert_allclose(multi['rgb'], single['rgb'], rtol=1e-4, atol=1e-5)
print('OK', jax.device_count())
'''


def test_sharded_step_on_four_devices_matches_one_device():
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  proc = subprocess.run([sys.executable, '-c', SCRIPT, str(ROOT)], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'OK 4' in proc.stdout


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


LOAD = r'''
import sys, jax, numpy as np
sys.path.insert(0, sys.argv[1])
from nerf_jax import train_lib
assert jax.device_count() == int(sys.argv[4])
got = [train_lib.load_trained(d)[3:] for d in sys.argv[2:4]]
assert got[0][1] == got[1][1] == 6, [g[1] for g in got]
for a, b in zip(*(jax.tree_util.tree_leaves(g[0]) for g in got)):
  np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
print('SAME')
'''


def test_checkpoint_moves_between_topologies(tmp_path):
  """4 steps on 4 devices, resumed for 2 more on 2 devices, equals 6 steps on
  1 device; the run then renders on 1 device and loads on 3."""
  moved, ref = tmp_path / 'moved', tmp_path / 'ref'
  for devices, steps in ((4, 4), (2, 6)):
    proc = _run('train.py', SMALL + [f'--workdir={moved}',
                                     f'--config.train.max_steps={steps}'],
                devices, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'resum' in proc.stdout + proc.stderr
  proc = _run('train.py', SMALL + [f'--workdir={ref}',
                                   '--config.train.max_steps=6'], 1, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for devices in (1, 3):  # 3 devices: a count the run never saw
    proc = subprocess.run(
        [sys.executable, '-c', LOAD, str(ROOT), str(moved), str(ref),
         str(devices)], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=(
            f'--xla_force_host_platform_device_count={devices}')))
    assert proc.returncode == 0 and 'SAME' in proc.stdout, proc.stderr[-3000:]
  proc = _run('render.py', [f'--ckpt={moved}', '--frames=2', '--format=gif',
                            f'--out={tmp_path / "video"}', '--noprogress'],
              1, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert list((tmp_path / 'video').glob('*.gif'))
