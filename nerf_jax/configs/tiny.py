"""The classic tiny lego (106 views at 100x100): beats the Keras example fast."""

from nerf_jax.configs import base


def get_config():
  config = base.get_config()
  config.name = 'tiny'
  config.data.kind = 'tiny_npz'
  config.model.preset = 'small'
  config.model.pos_freqs = 6
  config.model.num_coarse = 32
  config.train.batch_rays = 1024
  config.train.max_steps = 2100
  config.train.lr_init = 5e-3
  config.train.warmup_steps = 100
  config.train.lr_final = 1e-4
  config.eval.every = 700
  config.checkpoint.every = 700
  return config
