"""The built-in procedural scene: no downloads, trains in minutes on a CPU."""

from nerf_jax.configs import base


def get_config():
  config = base.get_config()
  config.name = 'demo'
  config.data.kind = 'procedural'
  config.data.width = 64
  config.data.height = 64
  config.model.preset = 'small'
  config.model.pos_freqs = 8
  config.model.num_coarse = 32
  config.train.batch_rays = 1024
  config.train.max_steps = 1000
  config.train.lr_init = 5e-3
  config.train.warmup_steps = 100
  config.train.lr_final = 1e-4
  config.eval.every = 250
  config.checkpoint.every = 500
  return config
