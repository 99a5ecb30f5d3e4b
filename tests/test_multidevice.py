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
