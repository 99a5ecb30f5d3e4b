"""The ray batch that knows its camera: pixels drawn from the pixel table,
their rays cast inside the differentiated loss, so per-view parameters and
the cameras themselves receive gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from nerf_jax import datasets, distributed
from nerf_jax.cameras import camera
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.models import base
from nerf_jax.runs import load
from nerf_jax.train import train_step

NUM_VIEWS = 6


class PerViewColour(base.Model):
  """A toy model: one colour for the whole scene plus an offset per view
  (an appearance code), read by the loss through ``batch.view``."""
  kind = 'toy'

  def __init__(self):  # pylint: disable=super-init-not-called
    pass

  def init(self, key):
    del key
    return {'colour': jnp.zeros(3), 'code': jnp.zeros((NUM_VIEWS, 3))}, {}

  def query(self, params, state, points, viewdirs=None):
    raise NotImplementedError

  def render(self, params, state, rays, key=None):
    return {'rgb': jnp.broadcast_to(params['colour'], rays.origins.shape)}

  def loss(self, params, state, batch, key, step):
    rgb = self.render(params, state, batch.rays)['rgb']
    rgb = rgb + params['code'][batch.view]
    # The rays take part too: a loss of rays cast outside would see none.
    rgb = rgb * jnp.linalg.norm(batch.rays.viewdirs, axis=-1, keepdims=True)
    mse = jnp.mean((rgb - batch.rgb) ** 2)
    return mse, {'mse': mse}


class PoseOffsets(base.Model):
  """A trained model whose training cameras are moved by a learnt
  translation per view (``params['pose']`` f32[n, 3])."""

  def __init__(self, inner: base.Model):  # pylint: disable=super-init-not-called
    self.inner = inner
    self.couples_rays = inner.couples_rays

  def init(self, key):
    raise NotImplementedError

  def query(self, params, state, points, viewdirs=None):
    raise NotImplementedError

  def render(self, params, state, rays, key=None):
    raise NotImplementedError

  def adjust_cameras(self, params, cameras):
    poses = cameras.poses.at[:, :3, 3].add(params['pose'])
    return cameras.replace(poses=poses)

  def loss(self, params, state, batch, key, step):
    return self.inner.loss(params['field'], state, batch, key, step)


def _table(rng) -> batch_lib.PixelTable:
  images = rng.uniform(size=(NUM_VIEWS, 4, 5, 3)).astype(np.float32)
  poses = np.stack([camera.pose_spherical(a, -30.0, 4.0)
                    for a in np.linspace(0, 300, NUM_VIEWS)])
  return batch_lib.PixelTable.create(
      images, poses, camera.Intrinsics.from_focal(5.0, 5, 4))


@pytest.mark.parametrize('micro_batches', [1, 2])
def test_per_view_parameters_get_gradients_only_from_their_views(
    micro_batches):
  model = PerViewColour()
  params, state = model.init(None)
  table = _table(np.random.default_rng(0))
  fn = jax.jit(train_step.make_loss_and_grads(model, 2.0, 6.0,
                                              micro_batches))
  seen_every_view = False
  for seed in range(4):
    pixels = batch_lib.draw_pixels(jax.random.PRNGKey(seed), table, 4)
    (loss, _), grads = fn(params, state, pixels, table.cameras,
                          jax.random.PRNGKey(9), jnp.int32(0))
    views = set(np.asarray(pixels.view).tolist())
    assert 0 < len(views) < NUM_VIEWS  # 4 rays cannot reach 6 views
    touched = np.abs(np.asarray(grads['code'])).sum(axis=1) > 0
    assert set(np.flatnonzero(touched).tolist()) == views
    assert float(jnp.abs(grads['colour']).sum()) > 0
    seen_every_view |= len(views) > 1
  assert seen_every_view


def test_drawn_pixels_carry_the_splits_targets():
  config = demo.get_config().data
  config.width, config.height, config.num_train = 9, 7, 3
  split = datasets.load_scene(config).split('train')
  table = batch_lib.PixelTable.from_split(split, distributed.make_mesh())
  assert table.alpha.dtype == jnp.uint8 and table.depth.dtype == jnp.float32
  pixels = batch_lib.draw_pixels(jax.random.PRNGKey(0), table, 200)
  v, r, c = (np.asarray(x) for x in (pixels.view, pixels.row, pixels.col))
  np.testing.assert_allclose(pixels.rgb, split.images[v, r, c], atol=0.5 / 255)
  np.testing.assert_allclose(pixels.alpha, split.alphas[v, r, c],
                             atol=0.5 / 255)
  np.testing.assert_array_equal(pixels.depth, split.depths[v, r, c])
  assert np.isinf(pixels.depth).any() and np.isfinite(pixels.depth).any()
  rays = batch_lib.cast(table.cameras, pixels, 2.0, 6.0)
  np.testing.assert_array_equal(rays.view, pixels.view)
  full = camera.generate_rays(split.intrinsics, split.poses[v[0]], 2.0, 6.0)
  np.testing.assert_allclose(rays.rays.origins[0], full.origins[r[0], c[0]],
                             atol=1e-5)


def test_a_pose_offset_gradient_moves_a_misposed_camera_to_its_pose(
    builtin_fast_run):
  """The fast model trained on the built-in scene; training view 7 is moved
  by 0.15 (about 1.5 pixels) and only the gradient of its photometric loss
  with respect to the view's offset brings it back."""
  config, info, model, variables, _ = load.load_trained(builtin_fast_run[0])
  split = datasets.load_scene(config.data).split('train')
  table = batch_lib.PixelTable.from_split(split, distributed.make_mesh())
  fn = jax.jit(train_step.make_loss_and_grads(PoseOffsets(model), info.near,
                                              info.far))
  view, (h, w) = 7, split.images.shape[1:3]
  rows, cols = (x.reshape(-1) for x in np.mgrid[:h, :w])
  pixels = batch_lib.Pixels(
      view=jnp.full(h * w, view, jnp.int32), row=jnp.asarray(rows, jnp.int32),
      col=jnp.asarray(cols, jnp.int32),
      rgb=jnp.asarray(split.images[view, rows, cols]))
  rng = np.random.default_rng(0)
  for trial in range(2):
    error = rng.normal(size=3)
    error *= 0.15 / np.linalg.norm(error)
    offsets = np.zeros((len(split), 3), np.float32)
    offsets[view] = error  # the truth is offset 0
    for it in range(12):
      params = {'field': variables['params'], 'pose': jnp.asarray(offsets)}
      _, grads = fn(params, variables['state'], pixels, table.cameras,
                    jax.random.PRNGKey(100 * trial + it), jnp.int32(0))
      grad = np.asarray(grads['pose'])
      assert not np.delete(grad, view, axis=0).any()  # other views: none
      if it == 0:  # downhill points towards the true pose
        cos = -grad[view] @ -error / np.linalg.norm(grad[view]) / 0.15
        assert cos > 0.3, (trial, cos)
      offsets[view] -= 0.02 * grad[view] / np.linalg.norm(grad[view])
    assert np.linalg.norm(offsets[view]) < 0.05, trial  # from 0.15
