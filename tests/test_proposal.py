"""Proposal sampling (``render.proposal``) and the model it samples
(``models.proposal``): the outer measure and the interlevel loss against a
NumPy loop and closed forms, the spacing of the first level, resampling,
where gradients go, and that the model learns the built-in scenes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_jax import datasets, models
from nerf_jax.cameras import camera
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.render import occupancy, proposal
from nerf_jax.runs import load
from nerf_jax.train import loop
from tests.test_fast import fast_config


def proposal_config(**overrides):
  """The fast test model's field (test_fast.fast_config), proposal-
  sampled with few, small levels."""
  config = fast_config(model__kind='proposal', **overrides)
  p = config.model.proposal
  p.samples, p.field_samples, p.max_resolution = (32, 16), 12, (32, 64)
  p.log2_table, p.levels = 10, 4
  return config


def _outer_reference(edges, other_edges, other_weights):
  """The summed weights of the other intervals that overlap each interval
  (more than in a point), one pair at a time."""
  out = np.zeros(edges.shape[:-1] + (edges.shape[-1] - 1,))
  for r in np.ndindex(edges.shape[:-1]):
    e, o, w = edges[r], other_edges[r], other_weights[r]
    for i in range(len(e) - 1):
      out[r + (i,)] = sum(w[j] for j in range(len(o) - 1)
                          if o[j + 1] > e[i] and o[j] < e[i + 1])
  return out


def test_outer_mass_sums_the_overlapping_intervals_as_a_loop_does():
  rng = np.random.default_rng(0)
  edges = np.sort(rng.uniform(0, 1, (5, 9)), axis=-1)
  other = np.sort(rng.uniform(0, 1, (5, 6)), axis=-1)
  # Shared endpoints, coincident edges and empty intervals.
  edges[:, 0], edges[:, -1], other[:, 0], other[:, -1] = 0, 1, 0, 1
  edges[0, 3] = edges[0, 4] = other[0, 2]
  other[1, 2] = other[1, 3]
  weights = rng.uniform(0, 1, (5, 5))
  got = proposal.outer_mass(jnp.asarray(edges, jnp.float32),
                            jnp.asarray(other, jnp.float32),
                            jnp.asarray(weights, jnp.float32))
  np.testing.assert_allclose(got, _outer_reference(edges, other, weights),
                             atol=1e-6)


def test_interlevel_loss_is_zero_when_the_proposal_covers_the_field():
  edges = jnp.linspace(0.0, 1.0, 9)[None]
  w = jnp.asarray([[0.0, 0.1, 0.5, 0.2, 0.0, 0.1, 0.0, 0.0]])
  # The same histogram, and a coarser one holding the same mass.
  assert float(proposal.interlevel_loss(edges, w, edges, w)[0]) < 1e-12
  coarse_edges = edges[:, ::2]
  coarse = w.reshape(1, 4, 2).sum(-1)
  assert float(proposal.interlevel_loss(edges, w, coarse_edges,
                                        coarse)[0]) < 1e-12


def test_interlevel_loss_matches_its_closed_form_and_trains_only_the_proposal():
  edges = jnp.asarray([[0.0, 0.5, 1.0]])
  w = jnp.asarray([[0.5, 0.25]])
  p_edges = jnp.asarray([[0.0, 0.25, 0.75, 1.0]])
  p_w = jnp.asarray([[0.1, 0.2, 0.0]])
  # Bounds: [0, .5] overlaps p's first two (0.3); [.5, 1] its last two (.2).
  want = (0.5 - 0.3) ** 2 / 0.5 + (0.25 - 0.2) ** 2 / 0.25
  got = proposal.interlevel_loss(edges, w, p_edges, p_w)
  np.testing.assert_allclose(got, [want], rtol=1e-5)
  g_w, g_pw = jax.grad(
      lambda a, b: proposal.interlevel_loss(edges, a, p_edges, b)[0],
      argnums=(0, 1))(w, p_w)
  np.testing.assert_array_equal(g_w, 0.0)  # the field's weights: held fixed
  # d/db of (w_i - sum_j b_j)^2 / w_i = -2 (w_i - bound_i) / w_i.
  np.testing.assert_allclose(
      g_pw, [[-2 * 0.2 / 0.5, -2 * 0.2 / 0.5 - 2 * 0.05 / 0.25,
              -2 * 0.05 / 0.25]], rtol=1e-5)


def _rays(n=6, seed=0):
  rng = np.random.default_rng(seed)
  # Towards the box from 4 units away: every ray passes through it.
  origins = rng.normal(size=(n, 3)) * 0.1 + np.array([0.0, 0.0, 4.0])
  directions = rng.normal(size=(n, 3)) * 0.05 + np.array([0.0, 0.0, -1.0])
  directions *= rng.uniform(0.5, 2.0, (n, 1))
  f = lambda x: jnp.asarray(x, jnp.float32)
  return camera.Rays(origins=f(origins), directions=f(directions),
                     viewdirs=f(directions / np.linalg.norm(
                         directions, axis=-1, keepdims=True)),
                     near=f(np.full((n, 1), 0.5)), far=f(np.full((n, 1), 60.)))


AABB = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))


def test_first_level_is_linear_in_the_box_and_in_disparity_beyond():
  rays = _rays()
  box = jnp.asarray(AABB)
  edges = np.asarray(proposal.first_edges(rays, box, 16, unbounded=True))
  _, t_exit, hit = occupancy.ray_aabb(rays.origins, rays.directions, box,
                                      rays.near, rays.far)
  assert np.asarray(hit).all()
  np.testing.assert_allclose(edges[:, 0], 0.5)
  np.testing.assert_allclose(edges[:, 8], t_exit, rtol=1e-5)
  np.testing.assert_allclose(edges[:, -1], 60.0, rtol=1e-5)
  inner, outer = np.diff(edges[:, :9]), np.diff(1.0 / edges[:, 8:])
  np.testing.assert_allclose(inner, inner[:, :1].repeat(8, 1), rtol=1e-4)
  np.testing.assert_allclose(outer, outer[:, :1].repeat(8, 1), rtol=1e-3)
  # Bounded: only the ray's part of the box, in equal steps.
  t_in, t_out, _ = occupancy.ray_aabb(rays.origins, rays.directions, box,
                                      rays.near, rays.far)
  edges = np.asarray(proposal.first_edges(rays, box, 16, unbounded=False))
  np.testing.assert_allclose(edges[:, 0], t_in, rtol=1e-5)
  np.testing.assert_allclose(edges[:, -1], t_out, rtol=1e-5)
  np.testing.assert_allclose(np.diff(edges), np.diff(edges)[:, :1].repeat(
      16, 1), rtol=1e-4)


@pytest.mark.parametrize('uniform', [0.0, 0.3])
def test_resampled_levels_follow_the_previous_weights(uniform):
  sampler = proposal.ProposalSampler(aabb=AABB, samples=(16, 40),
                                     unbounded=True, uniform=uniform)
  assert sampler.levels == ('proposal_0', 'main')
  rays = _rays()
  first = sampler.sample(jax.random.PRNGKey(0), rays, {}, 0, None)
  e = np.asarray(first.t_edges())
  t = np.asarray(first.t)
  assert ((t >= e[:, :-1]) & (t <= e[:, 1:])).all()  # jittered inside
  assert not np.allclose(t, 0.5 * (e[:, :-1] + e[:, 1:]))
  # All the previous level's weight in its interval 5.
  weights = jnp.zeros((6, 16)).at[:, 5].set(1.0)
  second = sampler.sample(jax.random.PRNGKey(1), rays, {}, 1,
                          (first, weights))
  edges = np.asarray(second.t_edges())
  assert edges.shape == (6, 41)
  assert (np.diff(edges) >= 0).all()
  assert (edges[:, 0] >= 0.5 - 1e-6).all() and (edges[:, -1] <= 60.).all()
  inside = (second.t >= e[:, 5:6]) & (second.t <= e[:, 6:7])
  share = np.asarray(inside).mean(axis=1)
  # 1 - uniform of the mass in the interval, plus its own even share.
  want = 1.0 - uniform + uniform / 16
  np.testing.assert_allclose(share, want, atol=1.5 / 40)
  # Deterministic without a key.
  a = sampler.sample(None, rays, {}, 1, (first, weights))
  b = sampler.sample(None, rays, {}, 1, (first, weights))
  np.testing.assert_array_equal(a.t, b.t)


def _model(config=None):
  config = config or proposal_config()
  scene = datasets.load_scene(config.data)
  model = models.make_model(config.model, scene.info())
  return model, scene


def test_gradients_of_the_colour_reach_the_field_and_of_the_bound_the_proposals():
  model, scene = _model()
  params, state = model.init(jax.random.PRNGKey(0))
  params = jax.tree_util.tree_map(
      lambda x: x + 0.5 * jax.random.normal(jax.random.PRNGKey(3), x.shape),
      params)
  split = scene.split('train')
  rays = camera.generate_rays(split.intrinsics, split.poses[0], scene.near,
                              scene.far)
  rays = jax.tree_util.tree_map(lambda x: x.reshape(-1, x.shape[-1])[:64],
                                rays)
  target = jnp.asarray(split.images[0].reshape(-1, 3)[:64])
  batch = batch_lib.RayBatch(rays=rays, rgb=target,
                             view=jnp.zeros((64,), jnp.int32))
  key, step = jax.random.PRNGKey(2), jnp.asarray(0)

  def mse_and_interlevel(p):
    metrics = model.loss(p, state, batch, key, step)[1]
    return jnp.stack([metrics['mse'], metrics['interlevel']])

  jac = jax.jit(jax.jacrev(mse_and_interlevel))(params)
  norms = lambda tree: [float(sum(jnp.sum(x[i] ** 2) for x in
                                  jax.tree_util.tree_leaves(tree)))
                        for i in (0, 1)]
  for name in ('proposal_0', 'proposal_1'):
    g_mse, g_inter = norms(jac[name])
    assert g_mse == 0.0  # sample positions carry no gradient
    assert g_inter > 0.0
  g_mse, g_inter = norms(jac['field'])
  assert g_mse > 0.0
  assert g_inter == 0.0  # the field's weights: held fixed
  out = jax.jit(model.render)(params, state, rays)
  assert set(models.OUTPUT_KEYS) <= set(out)
  assert out['rgb'].shape == (64, 3)


@pytest.mark.slow
def test_proposal_model_learns_the_unbounded_builtin_scene(tmp_path):
  """200 steps on the built-in scene under its dome (32x32): held-out PSNR
  well above an untrained field's (about 10 dB), and on held-out rays each
  proposal's weights bound nearly all of the field's."""
  config = proposal_config(
      data__width=32, data__height=32, data__num_train=40, data__num_val=4,
      data__environment=True, train__batch_rays=512, train__max_steps=200,
      eval__every=0, eval__chunk=1024, checkpoint__every=1000,
      model__use_viewdirs=False)
  f = config.model.fast
  f.levels, f.log2_table, f.max_resolution, f.width = 12, 14, 64, 64
  config.model.proposal.samples = (48, 24)
  config.model.proposal.field_samples = 24
  workdir = str(tmp_path / 'run')
  record = loop.train_and_evaluate(config, workdir, progress=False)
  assert record['psnr'] > 20.5, record
  config, _, model, variables, _ = load.load_trained(workdir)
  scene = datasets.load_scene(config.data)
  split = scene.split('val')
  rays = camera.generate_rays(split.intrinsics, split.poses[0], scene.near,
                              scene.far)
  rays = jax.tree_util.tree_map(lambda x: x.reshape(-1, x.shape[-1]), rays)
  params = variables['params']

  @jax.jit
  def uncovered(params):
    """Per proposal level, the share of the field's weight above its bound."""
    levels = model.render_levels(params, rays, None)
    edges, w = levels['main']['intervals'].t_edges(), levels['main']['weights']
    return jnp.stack([jnp.sum(jnp.maximum(w - proposal.outer_mass(
        edges, levels[name]['intervals'].t_edges(), levels[name]['weights']),
                                          0)) / jnp.sum(w)
                      for name in ('proposal_0', 'proposal_1')])

  trained = uncovered(params).tolist()
  # The trained field, sampled by untrained proposal networks.
  fresh = model.init(jax.random.PRNGKey(7))[0]
  untrained = uncovered(dict(params, proposal_0=fresh['proposal_0'],
                             proposal_1=fresh['proposal_1'])).tolist()
  for a, b in zip(trained, untrained):
    assert a < 0.15 and b > 2 * a, (trained, untrained)


@pytest.mark.parametrize('field, value, named', [
    ('samples', (), 'model.proposal.samples'),
    ('samples', (64, 1), 'model.proposal.samples'),
    ('max_resolution', (128,), 'model.proposal.max_resolution'),
    ('loss_weight', 0.0, 'model.proposal.loss_weight'),
    ('uniform', 1.0, 'model.proposal.uniform'),
    ('field_samples', 0, 'model.proposal.field_samples'),
])
def test_invalid_proposal_settings_are_refused_with_the_field_named(
    field, value, named):
  config = proposal_config()
  config.model.proposal[field] = value
  with pytest.raises(ValueError, match=named):
    models.KINDS['proposal'].check_config(config.model)
  models.KINDS['proposal'].check_config(proposal_config().model)  # valid
  bad = proposal_config()
  bad.model.fast.levels = 0  # the field's settings are checked too
  with pytest.raises(ValueError, match='model.fast.levels'):
    models.KINDS['proposal'].check_config(bad.model)
