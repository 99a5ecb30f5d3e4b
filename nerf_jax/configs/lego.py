"""Full Blender lego as in the NeRF paper (a GPU job: 800x800, 300k steps)."""

from nerf_jax.configs import base


def get_config():
  config = base.get_config()
  config.name = 'lego'
  config.data.kind = 'blender'
  config.data.path = '../shared/data/nerf_synthetic/lego'
  config.data.white_background = True
  config.model.preset = 'nerf'
  config.model.use_viewdirs = True
  config.model.pos_freqs = 10
  config.model.dir_freqs = 4
  config.model.density_bias = 0.0
  config.model.num_coarse = 64
  config.model.num_fine = 128
  config.model.separate_fine = True
  config.train.batch_rays = 4096
  # 512 rays at a time through the 8x256 MLPs, gradients accumulated: the
  # same step in under 4 GB (the whole batch at once needs about 18 GB;
  # benchmarks/config_memory.py).
  config.train.micro_batches = 8
  config.train.max_steps = 300_000
  config.train.lr_init = 5e-4
  config.train.lr_final = 5e-6
  config.train.lr_schedule = 'log_linear'
  config.eval.every = 25_000
  config.eval.max_views = 8
  # 1,024 rays (196,608 samples) a call: 8,192 needed about 14 GB.
  config.eval.chunk = 1024
  config.checkpoint.every = 10_000
  return config
