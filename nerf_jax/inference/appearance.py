"""A held-out photo's appearance code, fitted as NeRF-W evaluates
(``eval.appearance='fit'``).

A model with appearance codes (``model.appearance_dim``) renders every ray
with one code. A held-out photo's own exposure and white balance are unknown
to it, and on a capture whose exposure drifts the training codes' mean is
no photo's: on the beer (a phone video) the mean code scored the held-out
photos 24.4 dB and the code of each one's neighbouring frame 28.6
(BENCHMARKS.md). NeRF-W's protocol answers it without letting the scored
pixels leak into the score: with the field frozen, only the code (its
``appearance_dim`` numbers) is fitted to the LEFT half of the photo, and
the photo is scored on its RIGHT half.

``eval.appearance='mean'`` (the default) keeps the mean code over the whole
photo; a model without codes is scored as before under either protocol,
except that 'fit' scores the right half (the same pixels, so runs with and
without codes compare).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nerf_jax import models
from nerf_jax.models import views as views_lib

PROTOCOLS = views_lib.EVAL_PROTOCOLS  # eval.appearance's values
check_protocol = views_lib.check_eval_protocol  # ValueError unless one

# The fit: Adam steps, rays a step (drawn from the left half) and rate. The
# codes are learned from zero beside the field at its rates (1e-2 at most);
# 64 steps at 2e-2 from the mean code settle (BENCHMARKS.md).
STEPS = 64
RAYS = 1024
LEARNING_RATE = 2e-2


def fits(model: models.Model, protocol: str) -> bool:
  """Whether ``protocol`` fits a code for this model (it has codes)."""
  return check_protocol(protocol) == 'fit' and bool(
      model.views.appearance_dim)


def fit_columns(width: int) -> int:
  """The columns [0, this) are fitted, the rest scored (the middle column
  of an odd width is scored)."""
  return width // 2


def halves(height: int, width: int) -> tuple:
  """(fit, scored): bool[h, w] each, the columns ``fit_columns`` splits."""
  left = np.zeros((height, width), bool)
  left[:, :fit_columns(width)] = True
  return left, ~left


def with_code(params: Any, code: jnp.ndarray) -> Any:
  """The params with every training view's code set to ``code`` f32[d]:
  whichever code the model renders with (the mean, or a chosen view's) is
  then ``code``."""
  field, per_view = views_lib.PerView.split(params)
  table = per_view['appearance']
  per_view = {**per_view, 'appearance': jnp.broadcast_to(
      code.astype(table.dtype), table.shape)}
  return {**field, views_lib.KEY: per_view}


def make_fitter(model: models.Model, steps: int = STEPS, rays: int = RAYS,
                learning_rate: float = LEARNING_RATE) -> Callable:
  """``fit(variables, rays, rgb, key, weights=None) -> variables`` with the
  code fitted.

  ``rays`` (flat ``camera.Rays`` [n]) and ``rgb`` f32[n, 3] are the pixels
  the code may see; ``weights`` f32[n] (>= 0, not all 0) how likely each is
  drawn (None: all alike; 0 leaves a masked pixel out without changing n).
  From the code the model renders with (the mean), Adam takes ``steps``
  steps on the mean squared error of ``rays`` pixels drawn at random each
  step, rendered by the model's training renderer (its sampling
  differentiable, jitter on); nothing but the code changes. The whole fit
  is one jitted loop, compiled once per pixel count (per image size, as
  evaluate_split passes every left-half pixel whatever its mask).
  """
  tx = optax.adam(learning_rate)

  def loss(code, params, state, batch_rays, batch_rgb, key):
    out = model.render(with_code(params, code), state, batch_rays, key)
    return jnp.mean((out['rgb'] - batch_rgb) ** 2)

  @jax.jit
  def fit(variables, all_rays, all_rgb, weights, key):
    params, state = variables['params'], variables['state']
    code = model.views.render_code(views_lib.PerView.split(params)[1])
    probs = weights / jnp.sum(weights)

    def step(i, carry):
      code, opt_state = carry
      k_draw, k_render = jax.random.split(jax.random.fold_in(key, i))
      idx = jax.random.choice(k_draw, probs.shape[0], (rays,), p=probs)
      batch = jax.tree_util.tree_map(lambda x: x[idx], all_rays)
      grad = jax.grad(loss)(code, params, state, batch, all_rgb[idx],
                            k_render)
      updates, opt_state = tx.update(grad, opt_state, code)
      return optax.apply_updates(code, updates), opt_state

    code, _ = jax.lax.fori_loop(0, steps, step, (code, tx.init(code)))
    return dict(variables, params=with_code(params, code))

  def fitter(variables, rays, rgb, key, weights=None):
    rgb = jnp.asarray(rgb, jnp.float32).reshape(-1, 3)
    weights = (jnp.ones(rgb.shape[:1]) if weights is None else
               jnp.asarray(weights, jnp.float32).reshape(-1))
    if rgb.shape[0] == 0 or not bool(jnp.any(weights > 0)):
      raise ValueError('no pixels to fit an appearance code to')
    return fit(variables, rays, rgb, weights, key)

  return fitter
