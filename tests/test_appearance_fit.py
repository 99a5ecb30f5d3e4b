"""Held-out views scored as NeRF-W scores them (``eval.appearance='fit'``,
nerf_jax/inference/appearance.py): a code fitted to the left half of a
view, the right half scored."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_jax import metrics
from nerf_jax.inference import appearance, chunked, evaluate
from nerf_jax.runs import validation
from tests.test_fast import fast_config
from tests.test_views import _small_model


def test_halves_split_the_columns():
  left, right = appearance.halves(2, 5)
  np.testing.assert_array_equal(left, [[1, 1, 0, 0, 0]] * 2)
  np.testing.assert_array_equal(right, ~left)
  left, right = appearance.halves(3, 4)
  assert left.sum() == right.sum() == 6 and not (left & right).any()


def test_with_code_is_the_code_the_model_renders_with():
  _, model = _small_model(appearance_dim=3)
  params, state = model.init(jax.random.PRNGKey(0))
  params['views']['appearance'] = jax.random.normal(jax.random.PRNGKey(1),
                                                    (5, 3))
  code = jnp.asarray([0.5, -1.0, 2.0])
  points = jax.random.uniform(jax.random.PRNGKey(2), (64, 3), minval=-1,
                              maxval=1)
  changed = appearance.with_code(params, code)
  np.testing.assert_allclose(changed['views']['appearance'],
                             np.broadcast_to(code, (5, 3)))
  # The mean code and a chosen view's are both the code now.
  np.testing.assert_allclose(model.views.render_code(changed['views']), code)
  model.views.choose_appearance(4)
  np.testing.assert_allclose(model.views.render_code(changed['views']), code)
  model.views.choose_appearance(-1)
  query = lambda p: np.asarray(model.query(p, state, points)[0])
  assert np.abs(query(changed) - query(params)).max() > 1e-4


def _render_with(render_fn, model, variables, code, split, near, far):
  """View 0 of the split rendered with ``code`` f32[d]: f32[h, w, 3]."""
  changed = dict(variables, params=appearance.with_code(variables['params'],
                                                        code))
  return np.asarray(chunked.render_camera(render_fn, changed, split.cameras,
                                          0, near, far, 4096)['rgb'])


def test_the_fit_recovers_the_left_halfs_code_and_never_sees_the_right():
  scene, model = _small_model(appearance_dim=3)
  params, state = model.init(jax.random.PRNGKey(0))
  codes = 3.0 * jax.random.normal(jax.random.PRNGKey(1), (5, 3))
  params['views']['appearance'] = codes
  state = model.update_state(params, state, jnp.int32(0),
                             jax.random.PRNGKey(2))
  variables = {'params': params, 'state': state}
  split = scene.split('val')
  near, far = model.scene.near, model.scene.far
  render_fn = chunked.make_render_fn(model)
  seen = _render_with(render_fn, model, variables, codes[2], split, near, far)
  other = _render_with(render_fn, model, variables, codes[4], split, near,
                       far)
  # A "photo" whose left half has view 2's exposure and right half view
  # 4's: a fit that read the right half would move towards code 4.
  left, right = appearance.halves(*seen.shape[:2])
  photo = np.where(left[..., None], seen, other)
  split = dataclasses.replace(split, images=photo[None])
  fitter = appearance.make_fitter(model, steps=80, rays=128,
                                  learning_rate=0.1)
  fitted = fitter(variables, jax.tree_util.tree_map(
      lambda x: x[left], chunked.image_rays(split.cameras, 0, near, far)),
                  photo[left], jax.random.PRNGKey(3))
  code = np.asarray(model.views.render_code(fitted['params']['views']))
  start = np.asarray(codes.mean(0))
  got = _render_with(render_fn, model, variables, jnp.asarray(code), split,
                     near, far)
  mean_render = _render_with(render_fn, model, variables, start, split, near,
                             far)
  # The left half is rendered as with view 2's code (a fit that also read
  # the right half, view 4's, would have settled between the two).
  assert metrics.psnr(got[left], seen[left]) > 40
  assert metrics.psnr(mean_render[left], seen[left]) < 30
  # Scored on the right half: evaluate_split's figure is the fitted
  # render's against view 4's right half, whatever the fit saw.
  result = evaluate.evaluate_split(render_fn, variables, split, near, far,
                                   4096, protocol='fit', fitter=fitter,
                                   seed=3)
  want = metrics.psnr(got[right], other[right])
  assert abs(result['psnr'] - want) < 0.5, (result['psnr'], want)
  mean_score = evaluate.evaluate_split(render_fn, variables, split, near,
                                       far, 4096)
  np.testing.assert_allclose(mean_score['psnr'],
                             metrics.psnr(mean_render, photo), rtol=1e-5)


def test_without_codes_fit_scores_the_right_half_and_bad_values_are_refused():
  scene, model = _small_model()
  params, state = model.init(jax.random.PRNGKey(0))
  assert not appearance.fits(model, 'fit')
  variables = {'params': params, 'state': state}
  split = scene.split('val')
  near, far = model.scene.near, model.scene.far
  render_fn = chunked.make_render_fn(model)
  rgb = np.asarray(chunked.render_camera(render_fn, variables, split.cameras,
                                         0, near, far, 4096)['rgb'])
  gt = np.asarray(split.images[0])
  _, right = appearance.halves(*gt.shape[:2])
  result = evaluate.evaluate_split(render_fn, variables, split, near, far,
                                   4096, protocol='fit')
  np.testing.assert_allclose(result['psnr'],
                             metrics.psnr(rgb[right], gt[right]), rtol=1e-5)
  # SSIM of the right half alone (not of the whole with the left filled in).
  half = gt.shape[1] // 2
  np.testing.assert_allclose(
      result['ssim'], metrics.ssim(rgb[:, half:], gt[:, half:]), rtol=1e-5)
  with pytest.raises(ValueError, match="eval.appearance='half'"):
    evaluate.evaluate_split(render_fn, variables, split, near, far, 4096,
                            protocol='half')
  config = fast_config()
  config.eval.appearance = 'best'
  with pytest.raises(validation.ConfigError, match='eval.appearance'):
    validation.validate_config(config)
