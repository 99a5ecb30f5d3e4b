"""The built-in unbounded scene: the procedural objects on a textured floor
under a textured dome 40 units away (``data.environment``), learnt by the
fast model in contracted space. No downloads; about 5 minutes on 2 CPU
cores (BENCHMARKS.md)."""

from nerf_jax.configs import base


def get_config():
  config = base.get_config()
  config.name = 'unbounded'
  config.data.kind = 'procedural'
  config.data.environment = True
  config.data.width = 64
  config.data.height = 64
  config.model.kind = 'fast'
  config.model.use_viewdirs = False  # the built-in scene is Lambertian
  config.model.density_bias = -1.0
  fast = config.model.fast
  fast.levels = 16
  fast.log2_table = 17
  fast.base_resolution = 16
  fast.max_resolution = 1024  # the box takes the central half of the grid
  fast.num_steps = 192  # up to where a ray leaves the box
  fast.outer_steps = 96  # equal in disparity from there to the dome
  fast.budget_per_ray = 64  # a ray needs about 90 occupied samples here
  fast.occupancy_resolution = 64
  fast.occupancy_every = 16
  fast.occupancy_warmup = 256
  config.train.batch_rays = 2048
  config.train.max_steps = 2000
  config.train.max_seconds = 300.0
  config.train.lr_init = 1e-2
  config.train.lr_final = 5e-4
  config.train.warmup_steps = 50
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-15
  config.eval.every = 500
  config.eval.chunk = 8192
  config.checkpoint.every = 500
  return config
