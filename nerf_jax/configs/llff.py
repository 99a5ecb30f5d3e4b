"""LLFF fern (forward-facing phone capture, 20 views) at 1/8 resolution.

NDC rays, every 8th view held out, a spiral video, as in the NeRF paper; the
model and schedule are sized for about 15 minutes on 2 CPU cores
(BENCHMARKS.md). Another LLFF scene: --config.data.path=DIR (a folder with
poses_bounds.npy and images_8/, or images/ to downsample).
"""

from nerf_jax.configs import base


def get_config():
  config = base.get_config()
  config.name = 'llff'
  config.data.kind = 'llff'
  config.data.path = '../shared/data/nerf_llff_data/fern'
  config.data.downsample = 8  # images_8: 504x378 for fern
  config.data.ndc = True
  config.data.holdout = 8
  config.data.near = 0.0  # NDC: t in [0, 1]
  config.data.far = 0.0
  config.model.preset = 'small'
  config.model.pos_freqs = 10
  config.model.dir_freqs = 4
  config.model.use_viewdirs = True
  config.model.num_coarse = 48
  config.model.num_fine = 0
  config.train.batch_rays = 1024
  config.train.max_steps = 6000
  config.train.max_seconds = 900.0  # the target's 15 minutes
  config.train.lr_init = 5e-3
  config.train.lr_final = 1e-4
  config.train.warmup_steps = 100
  config.eval.every = 0  # only at the end (and at eval.at_seconds)
  config.eval.at_seconds = (300.0, 600.0)
  config.eval.chunk = 8192
  config.checkpoint.every = 1000
  return config
