"""Blender lego with the fast model (tiny_fast's recipe at a larger scale).

On a CPU: 200x200 images (data.downsample=4, the default here), about 15
minutes. On a GPU: ``--config.data.downsample=1`` for the full 800x800.
"""

from nerf_jax.configs import tiny_fast


def get_config():
  config = tiny_fast.get_config()
  config.name = 'lego_fast'
  config.data.kind = 'blender'
  config.data.path = '../shared/data/nerf_synthetic/lego'
  config.data.white_background = True
  config.data.downsample = 4
  fast = config.model.fast
  fast.log2_table = 19
  fast.max_resolution = 1024
  fast.num_steps = 512
  fast.occupancy_resolution = 128
  config.train.max_steps = 4000
  config.eval.split = 'val'
  config.eval.every = 1000
  config.eval.max_views = 8
  config.checkpoint.every = 1000
  return config
