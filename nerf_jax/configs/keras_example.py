"""The Keras NeRF example's hyperparameters, for a like-for-like comparison.

8x64 MLP with a skip connection, 16 encoding frequencies, 32 samples per ray,
batches of 5 whole 100x100 images, Adam at a constant 1e-3, 20 epochs over the
100 training views (400 steps).
"""

from nerf_jax.configs import base


def get_config():
  config = base.get_config()
  config.name = 'keras_example'
  config.data.kind = 'tiny_npz'
  config.model.preset = ''
  config.model.depth = 8
  config.model.width = 64
  config.model.skips = (4,)
  config.model.pos_freqs = 16
  config.model.density_bias = 0.0
  config.model.num_coarse = 32
  config.train.batch_rays = 5 * 100 * 100  # five whole images' worth of rays
  # The 50,000 rays as 400 gradient-accumulated chunks of 125 (one update
  # from their mean gradient): each chunk's activations stay in cache, so
  # the step is ~2x faster on 2 CPU cores and peaks at 0.7 instead of 9.3 GB
  # (benchmarks/step_speed.py --sweep train.micro_batches=50:100:200:400:1000).
  config.train.micro_batches = 400
  config.train.max_steps = 400  # 20 epochs of 20 batches
  config.train.lr_init = 1e-3
  config.train.lr_final = 1e-3  # constant
  config.eval.every = 20  # once per epoch
  config.checkpoint.every = 100
  return config
