"""instant-ngp's fox (a phone capture in transforms.json form) at 1/8
resolution (135x240) with the fast model.

The json lists 67 frames of which 50 images are shipped: the missing ones are
skipped with a warning. Lens distortion (k1 k2 p1 p2) is applied when casting
rays; the scene box is the json's aabb_scale. Every 8th photo is held out.
Another capture (prepare.py's output, nerfstudio's): --config.data.path=DIR.
"""

from configs import base


def get_config():
  config = base.get_config()
  config.name = 'fox'
  config.data.kind = 'transforms'
  config.data.path = '../shared/data/fox'
  config.data.downsample = 8  # 1080x1920 photos -> 135x240
  config.data.holdout = 8
  config.data.near = 0.0  # from the box and the cameras
  config.data.far = 0.0
  config.model.kind = 'fast'
  config.model.use_viewdirs = True
  config.model.dir_freqs = 4
  config.model.density_bias = -1.0
  fast = config.model.fast
  fast.levels = 16
  fast.features = 2
  fast.log2_table = 17
  fast.base_resolution = 16
  fast.max_resolution = 1024
  fast.width = 64
  fast.num_steps = 768
  fast.budget_per_ray = 16
  fast.occupancy_resolution = 64
  fast.occupancy_every = 16
  fast.occupancy_warmup = 256
  config.train.batch_rays = 4096
  config.train.max_steps = 3000
  config.train.max_seconds = 900.0
  config.train.lr_init = 1e-2
  config.train.lr_final = 5e-4
  config.train.warmup_steps = 50
  config.train.adam_b2 = 0.99
  config.train.adam_eps = 1e-15
  config.eval.every = 0
  config.eval.at_seconds = (120.0, 300.0, 600.0)
  config.eval.chunk = 16384
  config.checkpoint.every = 500
  return config
