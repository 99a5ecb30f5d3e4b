"""LLFF fern at 1/8 resolution with the fast model (hash grid + occupancy
grid) in NDC space: the scene box is NDC's [-1.5, 1.5]^2 x [-1, 1] (what the
cameras see between the near plane and infinity). 15-minute budget on 2 CPU
cores (BENCHMARKS.md)."""

from configs import llff


def get_config():
  config = llff.get_config()
  config.name = 'llff_fast'
  config.model.kind = 'fast'
  config.model.use_viewdirs = True
  config.model.dir_freqs = 4
  config.model.density_bias = -1.0
  fast = config.model.fast
  fast.levels = 16
  fast.features = 2
  fast.log2_table = 18
  fast.base_resolution = 16
  fast.max_resolution = 1024
  fast.width = 64
  fast.num_steps = 512
  fast.budget_per_ray = 16
  fast.occupancy_resolution = 128
  fast.occupancy_every = 16
  fast.occupancy_warmup = 256
  config.train.batch_rays = 4096
  config.train.max_steps = 4000
  config.train.lr_init = 1e-2
  config.train.lr_final = 5e-4
  config.train.warmup_steps = 50
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-15
  config.eval.chunk = 16384
  return config
