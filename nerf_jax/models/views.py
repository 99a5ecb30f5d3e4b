"""Per-view parameters: appearance codes and camera-pose corrections.

Real captures break two assumptions of a radiance field: every photo sees
the same colours (auto-exposure and white balance change from frame to
frame), and every photo's pose is exact (structure-from-motion's are good,
not perfect). Both are answered by a few parameters per training view,
learned with the field:

* appearance codes (NeRF-W's GLO embeddings, as nerfacto): a vector of
  ``model.appearance_dim`` numbers per training view, an extra input of the
  colour network. A training ray reads its own view's code; rendering and
  evaluation read one code for every ray: the mean of the training views'
  codes (``model.appearance_eval = -1``, what nerfacto renders with), or
  training view N's (``render.py --appearance N``). Held-out views are
  evaluated with the mean code (``eval.appearance='mean'``), or as NeRF-W
  evaluates (``'fit'``, capture.py's): a code fitted to the left half of
  the photo, its right half scored (``inference/appearance.py``). On a
  capture whose exposure drifts the mean code is no photo's, and costs
  several dB.
* pose corrections (``model.refine_poses``): per training view a rotation
  vector and a translation in its camera frame (``cameras.refine``), the
  translation in units of the capture's camera distance so that one
  learning rate suits any scene scale. Cameras that were not refined
  (held-out views) follow the training views' rigid drift
  (``align_cameras``), and are otherwise used as given (nerfstudio's
  protocol: held-out poses come from the same structure-from-motion).

The parameters live under ``params['views']``, beside the field's, only
when a feature is on: runs without them keep their parameter tree.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nerf_jax.cameras import refine
from nerf_jax.cameras.camera import Cameras, Rays

KEY = 'views'  # params[KEY] holds the per-view parameters

# eval.appearance: how held-out views are scored (inference/appearance.py):
# with the mean code over the whole view, or NeRF-W's protocol (a code
# fitted to the left half, the right half scored).
EVAL_PROTOCOLS = ('mean', 'fit')


def check_eval_protocol(value) -> str:
  """``value`` if it is one of ``EVAL_PROTOCOLS``; ValueError (one line)
  if not."""
  if value not in EVAL_PROTOCOLS:
    raise ValueError(f'eval.appearance={value!r} is not one of '
                     f'{", ".join(repr(p) for p in EVAL_PROTOCOLS)}')
  return value


class PerView:
  """The per-view parameters of a model over a scene's training views.

  Attributes:
    num_views: int, the training views (the scene's camera poses).
    appearance_dim: int, size of each view's appearance code (0 = none).
    refine_poses: bool, whether poses are corrected.
    appearance_eval: int, the view whose code renders (-1 = the mean).
    translation_scale: float, scene units per unit of a translation
      correction (the capture's camera distance).
  """

  def __init__(self, model_cfg, scene):
    self.num_views = len(scene.camera_poses)
    self.appearance_dim = int(getattr(model_cfg, 'appearance_dim', 0))
    self.refine_poses = bool(getattr(model_cfg, 'refine_poses', False))
    self.appearance_eval = int(getattr(model_cfg, 'appearance_eval', -1))
    self.translation_scale = float(scene.camera_radius) or 1.0
    self.given_poses = np.asarray(scene.camera_poses, np.float64).reshape(
        -1, 4, 4)
    if self.enabled and self.num_views == 0:
      raise ValueError('per-view parameters (model.appearance_dim, '
                       'model.refine_poses) need the scene\'s training '
                       'cameras, and this scene has none')
    if not -1 <= self.appearance_eval < max(self.num_views, 1):
      raise ValueError(f'model.appearance_eval={self.appearance_eval} must '
                       f'be -1 (the mean code) or a training view in [0, '
                       f'{self.num_views - 1}]')

  @classmethod
  def none(cls) -> 'PerView':
    """No per-view parameters (the default of a model that sets none)."""
    out = cls.__new__(cls)
    out.num_views, out.appearance_dim, out.refine_poses = 0, 0, False
    out.appearance_eval, out.translation_scale = -1, 1.0
    out.given_poses = np.zeros((0, 4, 4))
    return out

  def choose_appearance(self, view: int) -> None:
    """Renders with training view ``view``'s code (-1: the mean);
    ValueError (one line) for a model without codes or a view out of
    range."""
    if not self.appearance_dim:
      raise ValueError('this run has no appearance codes '
                       '(model.appearance_dim is 0)')
    if not -1 <= view < self.num_views:
      raise ValueError(f'appearance {view} is not a training view: choose '
                       f'0 to {self.num_views - 1}, or -1 for the mean')
    self.appearance_eval = int(view)

  @classmethod
  def check_config(cls, model_cfg) -> None:
    """ValueError (one line) for unusable values."""
    dim = getattr(model_cfg, 'appearance_dim', 0)
    if not isinstance(dim, int) or not 0 <= dim <= 1024:
      raise ValueError(f'model.appearance_dim={dim!r} must be an integer in '
                       '[0, 1024]')

  @property
  def enabled(self) -> bool:
    return bool(self.appearance_dim or self.refine_poses)

  def init(self) -> dict:
    """Zero codes and corrections: at the start every view looks alike and
    sits where the capture put it."""
    out = {}
    if self.appearance_dim:
      out['appearance'] = jnp.zeros((self.num_views, self.appearance_dim),
                                    jnp.float32)
    if self.refine_poses:
      out['poses'] = jnp.zeros((self.num_views, 6), jnp.float32)
    return out

  def with_views(self, field_params: Any) -> Any:
    """The model's params: the field's, plus ours when any are on."""
    if not self.enabled:
      return field_params
    return {**field_params, KEY: self.init()}

  @staticmethod
  def split(params: Any) -> tuple:
    """(field params, per-view params or {})."""
    if isinstance(params, dict) and KEY in params:
      return {k: v for k, v in params.items() if k != KEY}, params[KEY]
    return params, {}

  # -- poses -------------------------------------------------------------

  def deltas(self, views: dict) -> jnp.ndarray:
    """f32[n, 6] corrections in scene units (rotation vector, translation)."""
    scale = jnp.asarray([1.0, 1.0, 1.0] + [self.translation_scale] * 3)
    return views['poses'] * scale

  def adjust(self, views: dict, cameras: Cameras) -> Cameras:
    """The training cameras with their corrections (differentiable)."""
    if not self.refine_poses:
      return cameras
    poses = refine.correct_poses(cameras.poses, self.deltas(views))
    return cameras.replace(poses=poses)

  def refined_poses(self, views: dict) -> np.ndarray:
    """f64[n, 4, 4] the training views' poses as refined."""
    if not self.refine_poses:
      return self.given_poses
    return np.asarray(refine.correct_poses(
        jnp.asarray(self.given_poses, jnp.float32), self.deltas(views)),
                      np.float64)

  def drift(self, views: dict) -> np.ndarray:
    """f64[4, 4] the rigid motion that best maps the given training camera
    centres onto the refined ones (identity without refinement)."""
    if not self.refine_poses:
      return np.eye(4)
    refined = self.refined_poses(views)
    return refine.rigid_alignment(self.given_poses[:, :3, 3],
                                  refined[:, :3, 3])

  def align(self, views: dict, cameras: Cameras) -> Cameras:
    """Cameras that were not refined, moved with the training views'
    drift."""
    if not self.refine_poses:
      return cameras
    moved = np.asarray(self.drift(views), np.float32) @ np.asarray(
        cameras.poses, np.float32)
    return cameras.replace(poses=moved)

  # -- appearance --------------------------------------------------------

  def train_codes(self, views: dict, view: jnp.ndarray) -> Optional[
      jnp.ndarray]:
    """f32[b, d] each training ray's view's code (None without codes)."""
    if not self.appearance_dim:
      return None
    return views['appearance'][view]

  def render_code(self, views: dict) -> Optional[jnp.ndarray]:
    """f32[d] the code every rendered ray reads: the mean code, or the
    chosen view's (None without codes)."""
    if not self.appearance_dim:
      return None
    codes = views['appearance']
    if self.appearance_eval < 0:
      return jnp.mean(codes, axis=0)
    return codes[self.appearance_eval]

  def with_render_code(self, views: dict,
                       viewdirs: jnp.ndarray) -> jnp.ndarray:
    """Directions f32[..., 3] followed by the rendering code: the field's
    per-ray input for a query at arbitrary points."""
    return append_code(viewdirs, self.render_code(views))

  def condition(self, rays: Rays, codes: Optional[jnp.ndarray]) -> Rays:
    """Rays whose ``viewdirs`` carry the codes after the direction:
    f32[..., 3 + d], the per-ray input the samplers hand to the field
    (codes f32[..., d], or f32[d] for every ray; None: unchanged)."""
    if codes is None:
      return rays
    return rays.replace(viewdirs=append_code(rays.viewdirs, codes))

  # -- optimisation -------------------------------------------------------

  def optimizer(self, field_tx: optax.GradientTransformation,
                train_cfg) -> optax.GradientTransformation:
    """The field's optimizer for everything but the pose corrections, which
    get Adam at ``train.camera_lr``: zero for ``train.camera_delay`` steps
    (the field first learns a rough scene), a linear ramp over
    ``train.camera_warmup`` steps, then a log-linear decay to
    ``train.camera_lr_final`` (small steps keep good poses good)."""
    if not self.refine_poses:
      return field_tx
    camera_tx = optax.adam(camera_schedule(train_cfg), eps=1e-15)

    def labels(params):
      return {k: (jax.tree_util.tree_map(lambda _: 'field', v) if k != KEY
                  else {name: ('poses' if name == 'poses' else 'field')
                        for name in v})
              for k, v in params.items()}

    return optax.multi_transform({'field': field_tx, 'poses': camera_tx},
                                 labels)


def append_code(viewdirs: jnp.ndarray,
                code: Optional[jnp.ndarray]) -> jnp.ndarray:
  """Directions f32[..., 3] followed by codes f32[..., d] (or one f32[d]
  for all): f32[..., 3 + d]; unchanged for None."""
  if code is None:
    return viewdirs
  code = jnp.broadcast_to(code, viewdirs.shape[:-1] + code.shape[-1:])
  return jnp.concatenate([viewdirs, code], axis=-1)


def camera_schedule(train_cfg) -> optax.Schedule:
  """The pose corrections' learning rate against step (see
  ``PerView.optimizer``)."""
  delay = int(train_cfg.camera_delay)
  warmup = max(1, int(train_cfg.camera_warmup))
  peak, final = float(train_cfg.camera_lr), float(train_cfg.camera_lr_final)
  decay_steps = max(1, int(train_cfg.max_steps) - delay - warmup)
  decay = optax.exponential_decay(peak, decay_steps, max(final, 1e-12) / peak,
                                  end_value=final) if peak > 0 else (
                                      optax.constant_schedule(0.0))
  return optax.join_schedules(
      [optax.constant_schedule(0.0), optax.linear_schedule(0.0, peak, warmup),
       decay], [delay, delay + warmup])
