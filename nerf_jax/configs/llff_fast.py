"""LLFF fern at 1/8 resolution with the fast model (hash grid + occupancy
grid) in NDC space: the scene box is NDC's [-1.5, 1.5]^2 x [-1, 1] (what the
cameras see between the near plane and infinity). llff.py's data and budget
with tiny_fast's model and optimizer, a larger table and finer grids, and
mip-NeRF 360's distortion loss (0.4 dB more at 10 minutes: it thins the
fog, so more of the drawn rays fit the sample budget). 24.7 dB in 15
minutes on 2 CPU cores before the distortion loss (BENCHMARKS.md)."""

from nerf_jax.configs import llff
from nerf_jax.configs import tiny_fast


def get_config():
  config = llff.get_config()
  config.name = 'llff_fast'
  recipe = tiny_fast.get_config()
  config.model = recipe.model
  for key in ('lr_init', 'lr_final', 'warmup_steps', 'adam_b2', 'adam_eps'):
    config.train[key] = recipe.train[key]
  fast = config.model.fast
  fast.log2_table = 18
  fast.max_resolution = 1024
  fast.num_steps = 512
  fast.budget_per_ray = 16
  fast.occupancy_resolution = 128
  fast.distortion = 0.01
  config.train.batch_rays = 4096
  config.train.max_steps = 4000
  config.eval.chunk = 16384
  return config
