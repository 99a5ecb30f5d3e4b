"""Times the jitted training step for a config: rays/s and ms/step.

  python benchmarks/step_speed.py --config tiny.py [--config.model.preset=tiny]

Uses random stand-in images of the dataset's size, so no download is needed.
"""

import sys
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, '.')
from nerf_jax import cli  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file('config', None, 'config file')
_STEPS = flags.DEFINE_integer('steps', 20, 'timed steps')


def main(_):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nerf_jax import camera, models, scene, train_lib  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  n, size = 100, 100
  info = scene.SceneInfo(
      name='synthetic', near=2.0, far=6.0, white_background=False,
      aabb=scene.DEFAULT_AABB,
      intrinsics=camera.Intrinsics.from_focal(138.9, size, size))
  model = models.make_model(config.model, info)
  tx = model.optimizer(config.train)
  state = train_lib.create_train_state(jax.random.PRNGKey(0), model, tx)
  rng = np.random.default_rng(0)
  poses = np.stack([camera.pose_spherical(a, -30.0, 4.0)
                    for a in np.linspace(0, 360, n, endpoint=False)])
  data = train_lib.TrainData(
      images=jax.numpy.asarray(rng.integers(0, 256, (n, size, size, 3),
                                            np.uint8)),
      poses=jax.numpy.asarray(poses),
      intrinsics=camera.Intrinsics.from_focal(138.9, size, size))
  step = jax.jit(train_lib.make_train_step(
      model, tx, config.train.batch_rays, 2.0, 6.0),
                 donate_argnums=(0,))
  key = jax.random.PRNGKey(1)
  t0 = time.perf_counter()
  state, m = step(state, data, key)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0
  for _ in range(3):
    state, m = step(state, data, key)
  jax.block_until_ready(m)
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    state, m = step(state, data, key)
  jax.block_until_ready(m)
  dt = (time.perf_counter() - t0) / _STEPS.value
  print(f'{cli.config_name(sys.argv)} preset={config.model.preset} '
        f'batch={config.train.batch_rays} samples={config.model.num_coarse}+'
        f'{config.model.num_fine}: {dt * 1e3:.1f} ms/step, '
        f'{config.train.batch_rays / dt:,.0f} rays/s, compile {compile_s:.1f} s')


if __name__ == '__main__':
  sys.argv = cli.resolve_config_arg(sys.argv)
  app.run(main)
