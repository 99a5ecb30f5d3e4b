"""The interface every kind of NeRF implements.

The training loop (train/) and the renderer (inference/) talk to a model
only through these methods, so a new kind of NeRF is one new module plus a
config, and neither of them branches on the model's kind:

  init(key)                                  -> (params, state)
  render(params, state, rays, key=None)      -> outputs (rgb, depth, acc, ...)
  loss(params, state, batch, key, step)      -> (loss, metrics)
  adjust_cameras(params, cameras)            -> cameras of the training views
  align_cameras(params, cameras)             -> other cameras, in their frame
  update_state(params, state, step, key)     -> state
  optimizer(train_cfg)                       -> optax transformation
  query(params, state, points, viewdirs)     -> (rgb, density) at points
  density(params, state, points)             -> density at points

``params`` are trained by gradients; ``state`` is everything else the model
keeps (e.g. an occupancy grid). Both are pytrees that travel in the train
state and in checkpoints. Per-view parameters (appearance codes, pose
corrections: ``views.PerView``) are the same for every kind, under
``params['views']`` when the config turns them on. Every method is pure and
jit-traceable; the model object itself holds only static settings and Flax
module definitions.
"""

from __future__ import annotations

import abc
from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax

from nerf_jax import optim
from nerf_jax.cameras.camera import Cameras, Rays
from nerf_jax.datasets.batch import RayBatch
from nerf_jax.datasets.scene import SceneInfo
from nerf_jax.models import views as views_lib

# Per-ray outputs every model's ``render`` returns (the renderer's contract).
OUTPUT_KEYS = ('rgb', 'depth', 'disparity', 'acc')


class Model(abc.ABC):
  """One kind of NeRF: its fields, sampler, losses and non-trained state.

  Attributes:
    kind: str, the ``model.kind`` config value that selects it.
    couples_rays: bool, whether ``loss`` and ``render`` treat a batch as a
      whole rather than ray by ray (e.g. samples packed across rays into one
      budget). Several devices then run them on each device's share of the
      rays (``shard_map``) instead of letting XLA partition them: a packed
      batch split by XLA moves every sample between devices. Per-ray models
      (False) are partitioned by XLA and give the same result on any number
      of devices.
    config: the ``model`` config section.
    scene: the SceneInfo it models (near/far, background, box).
    views: ``views.PerView``, the per-view parameters' settings.
  """
  kind: str = ''
  couples_rays: bool = False
  views: views_lib.PerView = views_lib.PerView.none()

  @classmethod
  def check_config(cls, model_cfg) -> None:
    """Raises ValueError (one line naming the field) for unusable values."""
    views_lib.PerView.check_config(model_cfg)

  def __init__(self, model_cfg, scene: SceneInfo):
    self.config = model_cfg
    self.scene = scene
    self.views = views_lib.PerView(model_cfg, scene)

  @abc.abstractmethod
  def init(self, key: jax.Array) -> tuple:
    """Initial ``(params, state)``; ``state`` is ``{}`` if the model has none."""

  @abc.abstractmethod
  def query(self, params: Any, state: Any, points: jnp.ndarray,
            viewdirs: Optional[jnp.ndarray] = None) -> tuple:
    """The radiance field the model renders, at arbitrary world points.

    What an image of the model shows, as a function of position: the finest
    level of a coarse-to-fine model, and zero density wherever the renderer
    would skip space (e.g. cells an occupancy grid marks empty). Mesh and
    point-cloud export and the viewer read the scene through it.

    Args:
      params, state: as from ``init`` (or training).
      points: f32[..., 3], world-space positions.
      viewdirs: f32[..., 3], unit directions the points are seen along; None
        for a default direction (+z; only view-dependent colour changes).

    Returns:
      rgb: f32[..., 3] in [0, 1]; density: f32[...] >= 0 (per unit length).
    """

  def density(self, params: Any, state: Any,
              points: jnp.ndarray) -> jnp.ndarray:
    """f32[...] density at f32[..., 3] world points (``query``'s)."""
    return self.query(params, state, points)[1]

  @abc.abstractmethod
  def render(self, params: Any, state: Any, rays: Rays,
             key: Optional[jax.Array] = None) -> dict:
    """Renders rays: with a key the training path (jittered), with None the
    deterministic evaluation path.

    Args:
      params, state: as from ``init`` (or training).
      rays: ``Rays`` of batch shape [...].
      key: PRNG key or None.

    Returns:
      dict with at least rgb f32[..., 3] and depth, disparity, acc f32[...]
      (see ``OUTPUT_KEYS``); models may add more.
    """

  def loss(self, params: Any, state: Any, batch: RayBatch, key: jax.Array,
           step: jnp.ndarray) -> tuple:
    """The training loss of a ray batch.

    Args:
      params, state: the model's parameters and state.
      batch: ``RayBatch`` of batch shape [n]: the rays, the training view
        each came from (for per-view parameters) and the pixels' targets
        (rgb f32[n, 3]; alpha and depth f32[n] where the data has them).
      key: PRNG key for the training path.
      step: i32[], the optimisation step (for schedules inside the loss).

    Returns:
      (loss f32[], metrics: dict of f32[] scalars). ``metrics['mse']`` is the
      colour error of the final output; every ``mse*`` entry is logged as the
      matching ``psnr*``.
    """
    del step
    out = self.render(params, state, batch.rays, key)
    mse = jnp.mean((out['rgb'] - batch.rgb) ** 2)
    return mse, {'mse': mse}

  def adjust_cameras(self, params: Any, cameras: Cameras) -> Cameras:
    """The training views' cameras as this model sees them.

    Training casts each batch's rays through the cameras this returns,
    inside the differentiated loss, so a model that refines poses (or
    intrinsics) returns them changed by its per-view parameters and those
    receive gradients. Models with ``model.refine_poses`` correct each
    view's pose (``views.PerView.adjust``); the default changes nothing.
    """
    return self.views.adjust(self.views.split(params)[1], cameras)

  def align_cameras(self, params: Any, cameras: Cameras) -> Cameras:
    """Cameras that were not trained (held-out views, video paths through
    the capture's given poses) in the frame of the refined training
    cameras: moved by their rigid drift (unchanged without refinement)."""
    return self.views.align(self.views.split(params)[1], cameras)

  def split_cameras(self, params: Any, cameras: Cameras,
                    training: bool) -> Cameras:
    """A split's cameras as the model renders them: the training views'
    adjusted (``adjust_cameras``), any other's aligned
    (``align_cameras``)."""
    if training:
      return self.adjust_cameras(params, cameras)
    return self.align_cameras(params, cameras)

  def refined_poses(self, params: Any):
    """f64[n, 4, 4] the training views' poses as the model sees them."""
    return self.views.refined_poses(self.views.split(params)[1])

  def update_state(self, params: Any, state: Any, step: jnp.ndarray,
                   key: jax.Array) -> Any:
    """The non-trained state after optimisation step ``step`` (pure).

    Called inside the jitted training step, after the parameter update; a
    model that refreshes its state every N steps decides so itself (with
    ``jax.lax.cond``), so the step compiles once.
    """
    del params, step, key
    return state

  def optimizer(self, train_cfg) -> optax.GradientTransformation:
    """The optax transformation for ``params``: the field's
    (``field_optimizer``), pose corrections apart (``views.PerView``)."""
    return self.views.optimizer(self.field_optimizer(train_cfg), train_cfg)

  def field_optimizer(self, train_cfg) -> optax.GradientTransformation:
    """The optax transformation of the field's parameters (default: Adam,
    train config)."""
    return optim.make_optimizer(train_cfg)


def init_ray_inputs(appearance_dim: int) -> jnp.ndarray:
  """f32[1, 3 + d]: a +z direction and a zero code, to initialise a field
  with (its per-ray input, see ``views.PerView.condition``)."""
  return jnp.zeros((1, 3 + appearance_dim), jnp.float32).at[:, 2].set(1.0)


def default_viewdirs(points: jnp.ndarray) -> jnp.ndarray:
  """Unit +z directions, f32[..., 3], one per point of f32[..., 3]."""
  return jnp.zeros(points.shape, jnp.float32).at[..., 2].set(1.0)
