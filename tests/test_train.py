"""Tests of training: schedule, batches, the jitted step, the loop, resume."""

from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo
from nerf_jax.cameras import camera
from nerf_jax import datasets, models, optim
from nerf_jax.runs import checkpoints, load, rundir, validation
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.train import loop, train_state, train_step


def small_config(**overrides):
  """The demo config shrunk so a run takes seconds."""
  config = demo.get_config()
  config.data.width = config.data.height = 16
  config.data.num_train, config.data.num_val, config.data.num_test = 20, 2, 1
  config.model.preset = 'tiny'
  config.model.num_coarse = 16
  config.train.batch_rays = 256
  config.train.max_steps = 20
  config.train.log_every = 5
  config.eval.every = 10
  config.eval.chunk = 128
  config.checkpoint.every = 10
  for key, value in overrides.items():
    section, field = key.split('__')
    config[section][field] = value
  return config


def test_log_linear_schedule_hits_both_ends_and_is_geometric():
  cfg = small_config(train__lr_init=1e-2, train__lr_final=1e-4,
                     train__max_steps=100, train__warmup_steps=0).train
  sched = optim.make_schedule(cfg)
  np.testing.assert_allclose(sched(0), 1e-2, rtol=1e-5)
  np.testing.assert_allclose(sched(100), 1e-4, rtol=1e-5)
  np.testing.assert_allclose(sched(50), 1e-3, rtol=1e-4)  # geometric mean


def test_warmup_ramps_linearly_then_decays():
  cfg = small_config(train__lr_init=1e-2, train__lr_final=1e-3,
                     train__max_steps=110, train__warmup_steps=10).train
  sched = optim.make_schedule(cfg)
  np.testing.assert_allclose(sched(0), 0.0, atol=1e-12)
  np.testing.assert_allclose(sched(5), 5e-3, rtol=1e-5)
  np.testing.assert_allclose(sched(10), 1e-2, rtol=1e-5)
  np.testing.assert_allclose(sched(110), 1e-3, rtol=1e-4)


def test_exponential_schedule_is_the_nerf_paper_decay():
  cfg = small_config(train__lr_schedule='exponential', train__lr_init=5e-4,
                     train__lr_decay_steps=1000, train__warmup_steps=0).train
  sched = optim.make_schedule(cfg)
  np.testing.assert_allclose(sched(1000), 5e-5, rtol=1e-5)
  np.testing.assert_allclose(sched(500), 5e-4 * 0.1 ** 0.5, rtol=1e-5)


def sample_batch(key, data, count, near, far):
  """(rays, colours) of ``count`` pixels drawn from ``data`` as the step
  draws them."""
  drawn = batch_lib.draw_pixels(key, data, count)
  batch = batch_lib.cast(data.cameras, drawn, near, far)
  return batch.rays, batch.rgb


def test_sample_batch_draws_rays_matching_their_pixels():
  # Images encode their own (view, row, col), so every drawn target tells
  # which pixel it came from; its ray must be that pixel's ray.
  n, h, w = 3, 5, 7
  view, row, col = np.meshgrid(np.arange(n), np.arange(h), np.arange(w),
                               indexing='ij')
  images = np.stack([view, row, col], -1).astype(np.float32)
  poses = np.stack([camera.pose_spherical(a, -30.0, 4.0) for a in (0, 90, 200)])
  intr = camera.Intrinsics(fx=6.0, fy=5.0, cx=3.2, cy=2.4, width=w, height=h)
  data = batch_lib.PixelTable.create(jnp.asarray(images), jnp.asarray(poses),
                                      intr)
  rays, target = sample_batch(jax.random.PRNGKey(3), data, 64, 2.0, 6.0)
  idx = np.asarray(target).astype(int)
  assert len(np.unique(idx[:, 0])) == n  # every view is drawn from
  for k in range(64):
    v, r, c = idx[k]
    full = camera.generate_rays(intr, poses[v], 2.0, 6.0)
    np.testing.assert_allclose(rays.origins[k], full.origins[r, c], atol=1e-5)
    np.testing.assert_allclose(rays.directions[k], full.directions[r, c],
                               atol=1e-5)
  np.testing.assert_allclose(rays.near, 2.0)
  np.testing.assert_allclose(rays.far, 6.0)


def test_sample_batch_draws_uniformly_from_views_of_different_sizes():
  # Three cameras of different sizes and intrinsics in one pixel table;
  # each pixel stores its own (view, row, col).
  sizes = [(5, 7), (9, 4), (3, 12)]
  images, intrinsics = [], []
  for v, (h, w) in enumerate(sizes):
    row, col = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    images.append(np.stack([np.full_like(row, v), row, col], -1).astype(
        np.float32))
    intrinsics.append(camera.Intrinsics(fx=5.0 + v, fy=6.0 - v, cx=w / 2 + v,
                                        cy=h / 2 - 0.3, width=w, height=h))
  poses = np.stack([camera.pose_spherical(a, -30.0, 4.0) for a in (0, 90, 200)])
  data = batch_lib.PixelTable.create(images, poses, intrinsics)
  assert data.num_pixels == sum(h * w for h, w in sizes)
  np.testing.assert_array_equal(data.starts, [0, 35, 71])
  rays, target = jax.jit(lambda k: sample_batch(
      k, data, 6000, 2.0, 6.0))(jax.random.PRNGKey(0))
  idx = np.asarray(target).astype(int)
  for k in range(0, 6000, 97):
    v, r, c = idx[k]
    full = camera.generate_rays(intrinsics[v], poses[v], 2.0, 6.0)
    np.testing.assert_allclose(rays.origins[k], full.origins[r, c], atol=1e-5)
    np.testing.assert_allclose(rays.directions[k], full.directions[r, c],
                               atol=1e-5)
  # Uniform over pixels: each view's share is its share of the pixels
  # (binomial standard deviation below 0.7%), and every pixel is reachable.
  share = np.bincount(idx[:, 0], minlength=3) / 6000
  np.testing.assert_allclose(share, np.array([35, 36, 36]) / 107, atol=0.025)
  for v, (h, w) in enumerate(sizes):
    mine = idx[idx[:, 0] == v]
    assert mine[:, 1].max() == h - 1 and mine[:, 2].max() == w - 1
    assert len({(r, c) for _, r, c in mine}) == h * w


def _setup(config):
  scene = datasets.load_scene(config.data)
  model = models.make_model(config.model, scene.info())
  tx = model.optimizer(config.train)
  state = train_state.create_train_state(jax.random.PRNGKey(0), model, tx)
  split = scene.split('train')
  data = batch_lib.PixelTable.create(
      jnp.asarray(split.images), jnp.asarray(split.poses), split.intrinsics)
  step = train_step.make_train_step(model, tx, config.train.batch_rays,
                                    scene.near, scene.far)
  return state, data, step


@pytest.mark.parametrize('num_fine', [0, 16])
def test_train_step_compiles_once_and_lowers_the_loss(num_fine):
  config = small_config(model__num_fine=num_fine, train__lr_init=5e-3,
                        train__lr_final=5e-3, train__batch_rays=512)
  state, data, step = _setup(config)
  traces = []

  def counted(*args):
    traces.append(1)
    return step(*args)

  jitted = jax.jit(counted, donate_argnums=(0,))
  rng = jax.random.PRNGKey(1)
  losses = []
  for _ in range(60):
    state, metrics = jitted(state, data, rng)
    losses.append(float(metrics['loss']))
  assert len(traces) == 1
  assert int(state.step) == 60
  assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
  if num_fine:  # both levels are supervised and reported apart
    assert {'psnr_coarse', 'psnr_fine'} <= set(metrics)
    assert set(state.params) == {'coarse', 'fine'}


def test_training_is_deterministic_given_the_seed():
  config = small_config()
  finals = []
  for _ in range(2):
    state, data, step = _setup(config)
    jitted = jax.jit(step)
    for _ in range(5):
      state, _ = jitted(state, data, jax.random.PRNGKey(1))
    finals.append(jax.tree_util.tree_leaves(state.params))
  for a, b in zip(*finals):
    np.testing.assert_array_equal(a, b)


def _read(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_loop_writes_metrics_previews_plot_gif_and_checkpoints(tmp_path):
  workdir = str(tmp_path / 'run')
  record = loop.train_and_evaluate(small_config(), workdir,
                                   progress=False)
  records = _read(workdir)
  evals = [r for r in records if r['split'] == 'val']
  assert [r['step'] for r in evals] == [10, 20]
  for r in evals:
    assert {'step', 'split', 'psnr', 'ssim', 'elapsed_s'} <= set(r)
    assert np.isfinite(r['psnr']) and -1.0 <= r['ssim'] <= 1.0
  assert evals[0]['elapsed_s'] <= evals[1]['elapsed_s']
  assert record == evals[-1]
  trains = [r for r in records if r['split'] == 'train']
  assert [r['step'] for r in trains] == [5, 10, 15, 20]
  assert all({'loss', 'psnr', 'lr', 'rays_per_s'} <= set(r) for r in trains)
  assert sorted(os.listdir(os.path.join(workdir, 'previews'))) == [
      'step_0000010.png', 'step_0000020.png']
  for name in ('progress.png', 'progress.gif', 'config.json'):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  ckpts = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert '20' in ckpts and '10' in ckpts
  saved = rundir.load_config(workdir)
  assert saved.model.preset == 'tiny' and saved.train.max_steps == 20
  # The same records as TensorBoard events (read by TensorBoard's reader).
  events = tensorboard_events(workdir)
  assert {'train/loss', 'train/psnr', 'train/lr', 'train/rays_per_s',
          'val/psnr', 'val/ssim'} <= set(events.Tags()['scalars'])
  loss = events.Scalars('train/loss')
  assert [e.step for e in loss] == [5, 10, 15, 20]
  np.testing.assert_allclose([e.value for e in loss],
                             [r['loss'] for r in trains], rtol=1e-6)
  previews = events.Images('val/preview')
  assert [e.step for e in previews] == [10, 20]
  assert previews[0].width > 3 * previews[0].height > 0


def tensorboard_events(workdir):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(
      workdir, size_guidance={event_accumulator.IMAGES: 0,
                              event_accumulator.SCALARS: 0})
  events.Reload()
  return events


def _params(workdir, config):
  model = models.make_model(config.model, rundir.load_scene(workdir))
  tx = model.optimizer(config.train)
  target = train_state.create_train_state(jax.random.PRNGKey(0), model, tx)
  manager = checkpoints.checkpoint_manager(workdir)
  state, damaged = load.restore_state(manager, target)
  manager.close()
  assert not damaged
  return state


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_straight_run(tmp_path):
  config = small_config(model__num_fine=8)
  straight = str(tmp_path / 'straight')
  loop.train_and_evaluate(config, straight, progress=False)
  # An interrupted run: killed after its step-10 checkpoint was written.
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(straight, resumed)
  shutil.rmtree(os.path.join(resumed, 'checkpoints', '20'))
  assert int(_params(resumed, config).step) == 10
  loop.train_and_evaluate(config, resumed, progress=False)
  a, b = _params(straight, config), _params(resumed, config)
  assert int(a.step) == int(b.step) == 20
  for x, y in zip(jax.tree_util.tree_leaves(a.params),
                  jax.tree_util.tree_leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  # Metrics of the resumed run have no duplicated steps.
  steps = [r['step'] for r in _read(resumed) if r['split'] == 'train']
  assert steps == sorted(set(steps))
  # Running the finished command again trains no further.
  loop.train_and_evaluate(config, resumed, progress=False)
  assert int(_params(resumed, config).step) == 20


def test_workdir_of_another_model_is_refused_and_kept(tmp_path):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(small_config(train__max_steps=10), workdir,
                          progress=False)
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  config_before = open(os.path.join(workdir, 'config.json')).read()
  with pytest.raises(rundir.CheckpointError, match='model.preset'):
    loop.train_and_evaluate(small_config(model__preset='small'), workdir,
                            progress=False)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before
  assert open(os.path.join(workdir, 'config.json')).read() == config_before


def test_wall_clock_budget_stops_early_with_eval_and_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  config = small_config(train__max_steps=100000, train__max_seconds=1.0,
                        eval__every=0, checkpoint__every=100000)
  record = loop.train_and_evaluate(config, workdir, progress=False)
  assert 0 < record['step'] < 100000
  assert record['elapsed_s'] >= 1.0
  assert str(record['step']) in os.listdir(os.path.join(workdir, 'checkpoints'))


@pytest.mark.parametrize('bad, match', [
    (dict(model__preset='huge'), 'model.preset'),
    (dict(train__lr_schedule='cosine'), 'lr_schedule'),
    (dict(model__num_coarse=1), 'num_coarse'),
    (dict(data__near=7.0), 'near'),
    (dict(model__kind='nope'), 'model.kind'),
])
def test_invalid_configs_are_refused(bad, match):
  with pytest.raises(validation.ConfigError, match=match):
    validation.validate_config(small_config(**bad))


@pytest.mark.slow
def test_end_to_end_learns_the_builtin_scene(tmp_path):
  """240 steps of 256 rays at 32x32 must beat 21 dB on views never trained
  on (22.9 dB and SSIM 0.86 now, in a fifth less time than 180 steps of 512
  rays, which reached the same; 180 steps of 256 rays reach 22.0 dB)."""
  config = small_config(data__width=32, data__height=32, data__num_train=60,
                        data__num_val=4, model__preset='small',
                        model__pos_freqs=6, model__num_coarse=32,
                        train__batch_rays=256, train__max_steps=240,
                        train__lr_init=1e-2, train__lr_final=1e-3,
                        eval__every=0, eval__chunk=1024,
                        checkpoint__every=1000)
  record = loop.train_and_evaluate(config, str(tmp_path / 'run'),
                                   progress=False)
  assert record['psnr'] > 21.0, record
  assert record['ssim'] > 0.7, record


# ---------------------------------------------------------------------------
# Micro-batching (train.micro_batches): gradient accumulation over a scan.

import optax  # pylint: disable=g-import-not-at-top,wrong-import-position


class _NoJitter:
  """A model whose training render is the deterministic one (key ignored),
  so a step's result does not depend on how render keys are handed out."""

  def __init__(self, model):
    self._model = model

  def __getattr__(self, name):
    return getattr(self._model, name)

  def loss(self, params, state, batch, key, step):
    del key
    return self._model.loss(params, state, batch, None, step)


def _micro_setup(num_fine=0, batch_rays=256):
  config = small_config(model__num_fine=num_fine, train__batch_rays=batch_rays)
  scene = datasets.load_scene(config.data)
  model = models.make_model(config.model, scene.info())
  state = train_state.create_train_state(jax.random.PRNGKey(0), model,
                                         optax.sgd(1.0))
  split = scene.split('train')
  images = np.round(np.asarray(split.images) * 255).astype(np.uint8)
  data = batch_lib.PixelTable.create(
      jnp.asarray(images), jnp.asarray(split.poses), split.intrinsics)
  return config, scene, model, state, data


@pytest.mark.parametrize('num_fine', [0, 8])
def test_micro_batched_step_equals_the_single_batch_step(num_fine):
  config, scene, model, state, data = _micro_setup(num_fine)
  model = _NoJitter(model)
  tx = optax.sgd(1.0)  # params move by exactly -grads: compares the grads
  rng = jax.random.PRNGKey(4)
  results = {}
  for k in (1, 4):
    step = jax.jit(train_step.make_train_step(
        model, tx, config.train.batch_rays, scene.near, scene.far,
        micro_batches=k))
    results[k] = step(state, data, rng)
  (one, m_one), (four, m_four) = results[1], results[4]
  assert set(m_one) == set(m_four)
  for name in m_one:
    np.testing.assert_allclose(m_four[name], m_one[name], rtol=1e-5)
  assert int(four.step) == int(one.step) == 1
  moved = 0.0
  for a, b, p in zip(jax.tree_util.tree_leaves(one.params),
                     jax.tree_util.tree_leaves(four.params),
                     jax.tree_util.tree_leaves(state.params)):
    # Float sums in another order; the fine pass's inverse-CDF samples can
    # move a little with them: within 0.1% of the leaf's largest update.
    scale = float(jnp.max(jnp.abs(a - p)))
    np.testing.assert_allclose(b - p, a - p, rtol=1e-4, atol=1e-3 * scale)
    moved += float(jnp.sum(jnp.abs(a - p)))
  assert moved > 0.0


def test_micro_batches_average_per_micro_batch_losses_and_grads():
  # With jitter: micro-batch i (rays i, i + k, ...) renders with
  # fold_in(key, i); the result is the mean over the micro-batches.
  config, scene, model, state, data = _micro_setup()
  rays = batch_lib.cast(data.cameras, batch_lib.draw_pixels(
      jax.random.PRNGKey(1), data, 64), scene.near, scene.far)
  key, step_no = jax.random.PRNGKey(2), jnp.zeros((), jnp.int32)
  (loss, aux), grads = jax.jit(
      train_step.accumulate_loss_and_grads, static_argnums=(0, 6))(
          model.loss, state.params, state.model_state, rays, key, step_no, 4)
  grad_fn = jax.jit(jax.value_and_grad(model.loss, has_aux=True))
  parts = [grad_fn(state.params, state.model_state,
                   jax.tree_util.tree_map(lambda x, i=i: x[i::4], rays),
                   jax.random.fold_in(key, i), step_no)
           for i in range(4)]
  np.testing.assert_allclose(loss, np.mean([p[0][0] for p in parts]),
                             rtol=1e-5)
  np.testing.assert_allclose(aux['mse'],
                             np.mean([p[0][1]['mse'] for p in parts]),
                             rtol=1e-5)
  for i, leaf in enumerate(jax.tree_util.tree_leaves(grads)):
    mean = np.mean([jax.tree_util.tree_leaves(p[1])[i] for p in parts], 0)
    np.testing.assert_allclose(leaf, mean, rtol=1e-4, atol=1e-7)
  # Different micro-batches really get different jitter.
  assert float(loss) != float(grad_fn(state.params, state.model_state, rays,
                                      key, step_no)[0][0])


def test_micro_batched_step_compiles_once_and_lowers_the_loss():
  config, scene, model, _, data = _micro_setup(batch_rays=512)
  config.train.lr_init = config.train.lr_final = 5e-3
  tx = model.optimizer(config.train)
  state = train_state.create_train_state(jax.random.PRNGKey(0), model, tx)
  step = train_step.make_train_step(model, tx, 512, scene.near, scene.far,
                                    micro_batches=4)
  traces = []

  def counted(*args):
    traces.append(1)
    return step(*args)

  jitted = jax.jit(counted, donate_argnums=(0,))
  losses = []
  for _ in range(60):
    state, metrics = jitted(state, data, jax.random.PRNGKey(1))
    losses.append(float(metrics['loss']))
  assert len(traces) == 1
  assert int(state.step) == 60
  assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
  assert {'loss', 'psnr', 'psnr_coarse'} <= set(metrics)


def test_micro_batches_must_divide_the_batch():
  config = small_config(train__batch_rays=250, train__micro_batches=4)
  with pytest.raises(validation.ConfigError) as e:
    validation.validate_config(config)
  message = str(e.value)
  assert '\n' not in message
  assert 'batch_rays=250' in message and 'micro_batches=4' in message
  with pytest.raises(validation.ConfigError, match='micro_batches'):
    validation.validate_config(small_config(train__micro_batches=0))
  validation.validate_config(small_config(train__batch_rays=256,
                                          train__micro_batches=4))
  with pytest.raises(ValueError, match='micro_batches=3'):
    train_step.make_train_step(None, None, 256, 2.0, 6.0, micro_batches=3)
