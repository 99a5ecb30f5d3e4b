"""The classic tiny lego with the fast model (hash grid + occupancy grid).

Tuned on 2 CPU cores (BENCHMARKS.md): the schedule spans about 5 minutes
there; raise train.max_steps (and keep train.max_seconds) for longer runs.
"""

from nerf_jax.configs import base


def get_config():
  config = base.get_config()
  config.name = 'tiny_fast'
  config.data.kind = 'tiny_npz'
  config.model.kind = 'fast'
  config.model.use_viewdirs = True
  config.model.dir_freqs = 4
  config.model.density_bias = -1.0
  fast = config.model.fast
  fast.levels = 16
  fast.features = 2
  fast.log2_table = 17
  fast.base_resolution = 16
  fast.max_resolution = 512
  fast.width = 64
  fast.num_steps = 384
  fast.budget_per_ray = 8  # 65,536 field evaluations per step
  fast.occupancy_resolution = 64
  fast.occupancy_every = 16
  fast.occupancy_warmup = 256
  config.train.batch_rays = 8192  # drawn; those that fit the budget train
  config.train.max_steps = 1200  # about 5 minutes on 2 CPU cores
  config.train.lr_init = 1e-2
  config.train.lr_final = 5e-4
  config.train.warmup_steps = 50
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-15
  config.eval.every = 400
  config.eval.chunk = 16384
  config.checkpoint.every = 400
  return config
