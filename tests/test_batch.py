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


