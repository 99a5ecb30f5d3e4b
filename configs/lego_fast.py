"""Blender lego with the fast model.

On a CPU: 200x200 images (data.downsample=4, the default here), about 15
minutes. On a GPU: ``--config.data.downsample=1`` for the full 800x800.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.name = 'lego_fast'
  config.data.kind = 'blender'
  config.data.path = '../shared/data/nerf_synthetic/lego'
  config.data.white_background = True
  config.data.downsample = 4
  config.model.kind = 'fast'
  config.model.use_viewdirs = True
  config.model.density_bias = -1.0
  fast = config.model.fast
  fast.levels = 16
  fast.features = 2
  fast.log2_table = 19
  fast.base_resolution = 16
  fast.max_resolution = 1024
  fast.width = 64
  fast.num_steps = 512
  fast.budget_per_ray = 24
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
  config.eval.split = 'val'
  config.eval.every = 1000
  config.eval.max_views = 8
  config.eval.chunk = 16384
  config.checkpoint.every = 1000
  return config
