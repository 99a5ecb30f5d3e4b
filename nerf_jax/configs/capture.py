"""Own captures: the recommended config for photos or a video prepared by
prepare.py (or a nerfstudio capture), derived from the fast model's recipe.

* unbounded: the loader decides from the capture (``data.extent='auto'``:
  cameras around an object with far depth bounds are unbounded), so the
  hash grid holds the object at full resolution and the background out to
  the horizon in contracted space;
* appearance codes: 16 numbers per photo condition the colour (auto-
  exposure, white balance); videos use the mean code
  (``render.py --appearance N`` renders with photo N's), and held-out
  photos are scored as NeRF-W scores them (``eval.appearance='fit'``: a
  code fitted to the photo's left half, its right half scored);
* pose refinement is built but off (``--config.model.refine_poses=True``):
  on the fox's poses it cost held-out PSNR (25.7 dB at 5 minutes falling
  to 21.5 at 15, against 26.3 and 26.4 without; BENCHMARKS.md), as
  held-out photos are scored at their given poses. When on, each training
  camera's correction is held still for the first 200 steps, then learned
  at a small rate
  (``--config.model.coarse_to_fine=N`` adds BARF's fade-in of the hash
  levels over N steps, for poorer poses);
* training samples: each ray's 48 samples are drawn where the field's own
  weights over the march lie (``model.fast.train_importance``), so every
  drawn ray trains however much of the early fog the occupancy grid holds;
  a quarter of them are spread evenly over the ray's occupied steps
  (``model.fast.train_uniform``): drawn from the weights alone, a field
  that turned solid in front of the cameras early would never train what
  lies behind (on the beer every photo ended up painted on the near
  plane; BENCHMARKS.md).

It reads ``transforms.json`` captures (prepare.py's output, nerfstudio's)::

  python train.py --config capture.py --config.data.path=DIR

and an LLFF folder of a 360-degree capture with
``--config.data.kind=llff --config.data.ndc=False``. Every 8th photo is held
out; ``--config.data.downsample`` shrinks large photos.
"""

from nerf_jax.configs import tiny_fast


def get_config():
  config = tiny_fast.get_config()
  config.name = 'capture'
  config.data.kind = 'transforms'
  config.data.path = ''  # required: --config.data.path=DIR
  config.data.holdout = 8
  config.data.near = 0.0  # from the cameras and the box
  config.data.far = 0.0
  config.data.extent = 'auto'
  config.model.use_viewdirs = True  # real surfaces shine
  config.model.appearance_dim = 16
  config.model.refine_poses = False  # see above; the settings below apply when on
  # BARF's coarse-to-fine fade of the hash levels is off: with the poses of
  # a structure-from-motion run it only slowed the first minutes (fox, 2
  # minutes: 20.2 dB with 300 steps of it, BENCHMARKS.md).
  config.model.coarse_to_fine = 0
  fast = config.model.fast
  fast.max_resolution = 2048  # the object's box is the grid's central half
  fast.num_steps = 256
  fast.outer_steps = 96
  fast.budget_per_ray = 48
  # Every ray gets its 48 samples where the field's own weights lie, however
  # much of the early fog the grid holds (BENCHMARKS.md: 4x the trained
  # rays per second of the packed march on the fox).
  fast.train_importance = True
  fast.train_uniform = 0.25
  fast.distortion = 0.01  # mip-NeRF 360's weight (BENCHMARKS.md: clearer background)
  config.train.batch_rays = 2048
  # About 15 minutes on 2 CPU cores (a step of 2048 rays takes about 0.7 s
  # on the fox at 1/8); the learning rates decay over these steps, so raise
  # it on a GPU (train.max_seconds still stops the run).
  config.train.max_steps = 1300
  config.train.max_seconds = 900.0
  # Small: at 1e-3 the fox's cameras drifted and training diverged after
  # 500 steps (BENCHMARKS.md).
  config.train.camera_lr = 1e-4
  config.train.camera_lr_final = 1e-6
  config.train.camera_delay = 200
  config.train.camera_warmup = 300
  config.eval.every = 0
  config.eval.at_seconds = (120.0, 300.0, 600.0)
  config.eval.chunk = 8192
  # Held-out photos are scored as NeRF-W scores them: a code fitted to each
  # photo's left half, its right half scored (inference/appearance.py). The
  # mean code is no photo's when the exposure drifts over a capture (the
  # beer: 24.4 dB held out with the mean code, 29.4 fitted; BENCHMARKS.md).
  config.eval.appearance = 'fit'
  config.checkpoint.every = 500
  return config
