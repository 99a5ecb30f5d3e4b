"""The built-in unbounded scene: the procedural objects on a textured floor
under a textured dome 40 units away (``data.environment``), learnt by the
fast model in contracted space: tiny_fast's recipe with a 64-sample budget
(a ray needs about 90 occupied samples here). No downloads; about 5 minutes
on 2 CPU cores (BENCHMARKS.md)."""

from nerf_jax.configs import tiny_fast


def get_config():
  config = tiny_fast.get_config()
  config.name = 'unbounded'
  config.data.kind = 'procedural'
  config.data.environment = True
  config.data.width = 64
  config.data.height = 64
  config.model.use_viewdirs = False  # the built-in scene is Lambertian
  fast = config.model.fast
  fast.max_resolution = 1024  # the box takes the central half of the grid
  fast.num_steps = 192  # up to where a ray leaves the box
  fast.outer_steps = 96  # equal in disparity from there to the dome
  fast.budget_per_ray = 64
  config.train.batch_rays = 2048
  config.train.max_steps = 2000
  config.train.max_seconds = 300.0
  config.eval.every = 500
  config.eval.chunk = 8192
  config.checkpoint.every = 500
  return config
