"""Defaults shared by every config; each config file changes what it needs.

Every field is documented with its unit or meaning. Override any of them on
the command line, e.g. ``--config.train.batch_rays=2048``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Every field with its default and meaning."""
  # long function: one flat list of every field, read top to bottom as a
  # reference; split into pieces it would be harder to search.
  config = ml_collections.ConfigDict()
  config.name = 'base'  # run name: the default workdir is runs/<name>

  config.data = data = ml_collections.ConfigDict()
  data.kind = 'procedural'  # 'procedural' | 'tiny_npz' | 'blender' | 'llff' | 'transforms'
  data.path = ''  # local dataset file or folder ('' = the kind's default source)
  data.near = 2.0  # start of the sampled interval along each ray (scene units; llff/transforms: 0 = from the data)
  data.far = 6.0  # end of the sampled interval along each ray (scene units; llff/transforms: 0 = from the data)
  data.white_background = False  # composite images and renders onto white
  data.seed = 0  # procedural: camera placement seed
  data.width = 64  # procedural: image width in pixels
  data.height = 64  # procedural: image height in pixels
  data.num_train = 100  # procedural: training views
  data.environment = False  # procedural only: the objects inside a distant textured ground and dome (unbounded; far becomes at least 45)
  data.pose_noise = (0.0, 0.0)  # procedural only: the training cameras' poses turned by this many degrees and moved by this fraction of their distance, in random directions (to try pose refinement against the truth)
  data.exposure_noise = 0.0  # procedural only: each training photo's colours scaled by a random exposure and white balance, exp(N(0, this)) (to try appearance codes)
  # The held-out view options below (num_val, num_test, max_views,
  # val_indices, val_fraction, holdout) apply only to the kinds they name: set
  # to anything but its default for another kind, one is refused with one line
  # naming it and the kind, never ignored (validation.HELD_OUT_OPTIONS).
  data.num_val = 8  # procedural only: held-out validation views
  data.num_test = 8  # procedural only: test views
  data.downsample = 1  # blender, llff, transforms: integer image downsampling factor (llff reads images_<this>/)
  data.max_views = 0  # blender only: keep the first N views per split (0 = all)
  data.val_indices = ()  # tiny_npz only: explicit held-out view indices
  data.val_fraction = 0.0  # tiny_npz only: hold out every 1/fraction-th view
  data.cache_dir = ''  # tiny_npz: download cache ('' = ~/.cache/nerf_jax)
  data.holdout = 8  # llff, transforms only: every Nth view is held out for val/test (0 = none)
  data.ndc = True  # llff: forward-facing capture, rays in NDC (False for 360-degree captures)
  data.aabb_scale = 0.0  # transforms: scene box half-width / 1.5, as instant-ngp's (0 = the json's, or fit the cameras)
  data.extent = 'auto'  # 'auto' (the loader decides from the capture) | 'bounded' (all in the scene box) | 'forward' (NDC) | 'unbounded' (the box holds the object; the background is contracted)

  config.model = model = ml_collections.ConfigDict()
  model.kind = 'mlp'  # 'mlp': the NeRF paper's MLP (coarse + fine); 'fast': hash grid + occupancy grid; 'proposal': hash grid + proposal networks
  model.preset = 'small'  # tiny|small|medium|nerf|large, or '' to use depth/width/skips
  model.depth = 4  # hidden layers (when preset == '')
  model.width = 128  # units per hidden layer (when preset == '')
  model.skips = ()  # layers that re-read the encoded input (when preset == '')
  model.pos_freqs = 10  # positional encoding octaves L for points
  model.dir_freqs = 4  # positional encoding octaves L for view directions
  model.use_viewdirs = False  # colour depends on the view direction
  model.density_bias = -1.0  # added to raw density before softplus
  model.num_coarse = 64  # stratified samples per ray
  model.num_fine = 0  # importance samples per ray (0 = no fine pass)
  model.separate_fine = True  # the fine pass has its own MLP (NeRF paper)
  model.compute_dtype = 'float32'  # MLP matmuls: 'float32' | 'bfloat16' (mixed precision for GPU/TPU; params stay float32)
  # Per-view parameters for real captures (models/views.py):
  model.appearance_dim = 0  # size of each training view's appearance code, read by the colour network (NeRF-W; 0 = none)
  model.appearance_eval = -1  # the code rendering and evaluation use: -1 = the mean of the training views' codes, N = training view N's
  model.refine_poses = False  # learn a rotation and translation correction of each training camera (see train.camera_*)
  model.coarse_to_fine = 0  # kind='fast': steps over which the finer hash levels fade in (BARF; 0 = all on from the start)
  # kind='fast' only (use_viewdirs, dir_freqs and density_bias apply too):
  model.fast = fast = ml_collections.ConfigDict()
  fast.levels = 16  # hash grid: resolution levels L
  fast.features = 2  # hash grid: features per level F
  fast.log2_table = 19  # hash grid: log2 of the table size T per level
  fast.base_resolution = 16  # hash grid: coarsest cells per side of the box
  fast.max_resolution = 2048  # hash grid: finest cells per side of the box
  fast.width = 64  # hidden units of the density and colour MLPs
  fast.geo_features = 15  # features from the density MLP to the colour MLP
  fast.num_steps = 512  # marching steps across the box diagonal (step = diagonal / this); unbounded scenes: steps up to where a ray leaves the box
  fast.outer_steps = 128  # unbounded scenes: steps equal in disparity from the box out to far
  fast.budget_per_ray = 32  # training: packed field evaluations per ray on average
  fast.occupancy_resolution = 64  # occupancy grid cells per side of the box
  fast.occupancy_every = 16  # steps between occupancy-grid updates
  fast.occupancy_warmup = 256  # steps during which every cell is re-evaluated
  fast.occupancy_decay = 0.95  # density EMA decay per update
  fast.occupancy_alpha = 0.01  # a cell is occupied if its opacity per step exceeds this
  fast.occupancy_cells = 2 ** 18  # cells evaluated per update (after warm-up)
  fast.round_samples = 16  # rendering: occupied samples per ray per round (termination checks between)
  fast.eval_block = 16384  # rendering: field evaluations per block
  fast.min_transmittance = 1e-4  # rendering: a ray stops below this transmittance
  fast.weight_decay = 1e-6  # L2 on the MLP weights (not the hash tables)
  fast.train_transmittance = 0.0  # training: leave out samples behind which a ray's transmittance (the field's, no gradient) is below this (0 = off)
  fast.train_alpha = 0.0  # training, with train_transmittance: also leave out samples of opacity at most this
  fast.train_importance = False  # training: draw budget_per_ray samples per ray from the field's own weights over the march (no gradient), every ray kept
  fast.train_uniform = 0.0  # with train_importance: share of each ray's sampling mass spread evenly over its occupied steps, in [0, 1)
  fast.distortion = 0.0  # weight of mip-NeRF 360's distortion loss (clears fog and floaters; 0 = off)
  # kind='proposal': the field of model.fast's hash-grid settings (and its
  # weight_decay, distortion), sampled by proposal networks (mip-NeRF 360,
  # nerfacto) instead of an occupancy grid:
  model.proposal = proposal = ml_collections.ConfigDict()
  proposal.samples = (128, 64)  # intervals per ray of each proposal level (the first spaced linearly in the box, in disparity beyond)
  proposal.field_samples = 48  # intervals per ray where the field itself is evaluated, drawn from the last proposal's weights
  proposal.levels = 5  # each proposal network's hash grid: resolution levels
  proposal.features = 2  # features per level
  proposal.log2_table = 17  # log2 of the table size per level
  proposal.base_resolution = 16  # coarsest cells per side of the box
  proposal.max_resolution = (128, 256)  # finest cells per side, one per proposal level
  proposal.width = 16  # hidden units of each proposal network's MLP
  proposal.loss_weight = 1.0  # weight of the interlevel loss (each proposal's weights must bound the field's)
  proposal.uniform = 0.0  # share of each resampled level's mass spread evenly over the previous level's intervals, in [0, 1)

  config.train = train = ml_collections.ConfigDict()
  train.seed = 0  # PRNG seed for initialisation and ray sampling
  train.batch_rays = 1024  # rays per step, drawn from all training pixels
  train.micro_batches = 1  # chunks each step's rays are split into, gradients accumulated (less memory)
  train.max_steps = 2000  # total optimisation steps
  train.max_seconds = 0.0  # wall-clock training budget in seconds (0 = none)
  train.lr_init = 5e-4  # learning rate after warm-up
  train.lr_final = 5e-5  # learning rate at max_steps
  train.lr_schedule = 'log_linear'  # 'log_linear' (init -> final) | 'exponential'
  train.lr_decay_steps = 250_000  # exponential: lr_init * 0.1^(step / this)
  train.warmup_steps = 0  # linear warm-up steps from 0 to lr_init
  train.adam_b1 = 0.9  # Adam beta1
  train.adam_b2 = 0.999  # Adam beta2
  train.adam_eps = 1e-7  # Adam epsilon
  train.grad_clip = 0.0  # global gradient-norm clip (0 = off)
  train.camera_lr = 1e-3  # model.refine_poses: Adam learning rate of the pose corrections (radians; translations in units of the camera distance)
  train.camera_lr_final = 1e-5  # model.refine_poses: their learning rate at max_steps
  train.camera_delay = 100  # model.refine_poses: steps before the poses move (the field first learns a rough scene)
  train.camera_warmup = 200  # model.refine_poses: steps of linear ramp of their learning rate after the delay
  train.log_every = 50  # steps between training records in metrics.jsonl
  train.tensorboard = True  # also write TensorBoard event files beside metrics.jsonl
  train.max_nonfinite_steps = 20  # stop when this many steps in a row have a non-finite loss or gradients (each one is skipped)

  config.eval = evaluation = ml_collections.ConfigDict()
  evaluation.every = 500  # steps between held-out evaluations (0 = only at the end)
  evaluation.at_seconds = ()  # also evaluate when training wall-clock passes these
  evaluation.split = 'val'  # split to evaluate on
  evaluation.max_views = 0  # evaluate the first N held-out views (0 = all)
  evaluation.chunk = 4096  # rays rendered per jit call
  evaluation.appearance = 'mean'  # with appearance codes: 'mean' (the mean code, whole view) or 'fit' (NeRF-W: a code fitted to the left half, the right half scored; without codes also the right half)

  config.checkpoint = ckpt = ml_collections.ConfigDict()
  ckpt.every = 1000  # steps between checkpoints (one is always saved at the end)
  ckpt.keep = 3  # most recent checkpoints kept
  return config
