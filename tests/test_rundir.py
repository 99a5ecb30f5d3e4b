"""The run directory: saved configs stay loadable, scene.json is the one
source of scene facts, and resuming on other data is refused."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import demo
from nerf_jax.cameras import camera
from nerf_jax import datasets, models
from nerf_jax.runs import load, metrics_log, rundir
from nerf_jax.datasets import scene
from nerf_jax.inference import chunked, evaluate
from nerf_jax.train import loop

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A run written by nerf_jax before the model interface existed (no
# model.kind, no model_state in the checkpoint, no box or data hash in
# scene.json): 3 steps of a 2x64 MLP on a 16x16 procedural scene.
LEGACY = ROOT / 'tests' / 'data' / 'legacy_run'


def small_config(**overrides):
  config = demo.get_config()
  config.data.width = config.data.height = 12
  config.data.num_train, config.data.num_val, config.data.num_test = 6, 1, 1
  config.model.preset, config.model.num_coarse = 'tiny', 8
  config.train.batch_rays, config.train.max_steps = 64, 4
  config.eval.every, config.checkpoint.every = 4, 4
  for key, value in overrides.items():
    section, field = key.split('__')
    config[section][field] = value
  return config


@pytest.fixture
def legacy(tmp_path):
  workdir = tmp_path / 'legacy'
  shutil.copytree(LEGACY, workdir)
  return str(workdir)


def test_merge_fills_new_fields_drops_gone_ones_and_keeps_types():
  defaults = demo.get_config()
  saved = json.loads(defaults.to_json())
  del saved['model']['kind']  # a run from before the field existed
  saved['model']['retired_field'] = 3
  saved['data']['val_indices'] = [1, 2]
  saved['train']['lr_init'] = 1  # JSON int where the field is a float
  merged = rundir.merge_onto(rundir.default_config(), saved)
  assert merged.model.kind == 'mlp'
  assert 'retired_field' not in merged.model
  assert merged.data.val_indices == (1, 2)
  assert isinstance(merged.train.lr_init, float) and merged.train.lr_init == 1.0
  assert merged.name == 'demo'


def test_a_saved_config_from_before_extents_keeps_its_box():
  saved = json.loads(demo.get_config().to_json())
  del saved['data']['extent']
  saved['data'].update(kind='transforms', path='capture')
  assert rundir.merge_onto(rundir.default_config(),
                           saved).data.extent == 'bounded'
  saved['data'].update(kind='llff', ndc=True)  # NDC stays forward-facing
  assert rundir.merge_onto(rundir.default_config(),
                           saved).data.extent == 'auto'
  saved['data']['extent'] = 'unbounded'  # saved since: kept
  assert rundir.merge_onto(rundir.default_config(),
                           saved).data.extent == 'unbounded'


def test_scene_info_round_trips_and_reads_old_files():
  info = datasets.load_scene(small_config().data).info()
  assert scene.SceneInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
  old = {k: v for k, v in info.to_dict().items()
         if k not in ('aabb', 'fingerprint', 'path')}
  back = scene.SceneInfo.from_dict(old)
  assert back.aabb == scene.DEFAULT_AABB and back.fingerprint == ''
  with pytest.raises(ValueError, match='scene box'):
    scene.as_aabb([[0, 0, 0], [1, -1, 1]])


def test_fingerprint_sees_a_changed_pixel_and_pose():
  split = datasets.load_scene(small_config().data).split('train')
  base = scene.fingerprint(split.images, [split.poses], split.intrinsics)
  images = split.images.copy()
  images[2, 4, 8, 1] += 0.5
  assert scene.fingerprint(images, [split.poses], split.intrinsics) != base
  poses = split.poses.copy()
  poses[0, 0, 3] += 1e-3
  assert scene.fingerprint(split.images, [poses], split.intrinsics) != base


def test_legacy_run_evaluates_to_its_recorded_psnr(legacy):
  records = metrics_log.read_metrics(os.path.join(legacy, 'metrics.jsonl'))
  recorded = [r for r in records if r['split'] == 'val'][-1]
  config, info, model, variables, step = load.load_trained(legacy)
  assert config.model.kind == 'mlp' and step == 3
  data = datasets.load_scene(config.data)
  render_fn = chunked.make_render_fn(model)
  result = evaluate.evaluate_split(
      render_fn, variables, data.split('val'), info.near, info.far, 256)
  np.testing.assert_allclose(result['psnr'], recorded['psnr'], atol=1e-4)


def test_legacy_run_resumes_and_renders_from_the_command_line(legacy):
  config = rundir.load_config(legacy)
  config.train.max_steps = 5
  record = loop.train_and_evaluate(config, legacy, progress=False)
  assert record['step'] == 5
  info = json.loads(open(os.path.join(legacy, 'scene.json')).read())
  assert info['fingerprint'] and info['aabb']  # now recorded
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'render.py'), '--ckpt', legacy, '--frames',
       '2', '--format', 'gif', '--progress=false'], capture_output=True,
      text=True, timeout=300, stdin=subprocess.DEVNULL)
  assert proc.returncode == 0, proc.stderr
  assert 'from step 5' in proc.stdout


@pytest.mark.parametrize('override, what', [
    (dict(data__near=2.5), 'near'),
    (dict(data__far=5.0), 'far'),
    (dict(data__white_background=True), 'background'),
    (dict(data__seed=7), 'images or cameras'),
])
def test_resuming_on_other_data_is_refused_and_changes_nothing(
    tmp_path, override, what):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(small_config(), workdir, progress=False)
  before = {name: open(os.path.join(workdir, name)).read()
            for name in ('config.json', 'scene.json', 'metrics.jsonl')}
  ckpts = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  with pytest.raises(rundir.CheckpointError,
                     match=f'different data .*{what}'):
    loop.train_and_evaluate(small_config(train__max_steps=8, **override),
                            workdir, progress=False)
  for name, text in before.items():
    assert open(os.path.join(workdir, name)).read() == text
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ckpts


def test_same_data_resumes(tmp_path):
  workdir = str(tmp_path / 'run')
  loop.train_and_evaluate(small_config(), workdir, progress=False)
  record = loop.train_and_evaluate(small_config(train__max_steps=6),
                                   workdir, progress=False)
  assert record['step'] == 6


def test_the_model_composites_onto_the_scenes_background():
  # An empty field (huge negative density bias) shows only the background,
  # which comes from the scene, not from a config field.
  config = small_config(model__density_bias=-1e4)
  for white in (False, True):
    info = datasets.load_scene(
        small_config(data__white_background=white).data).info()
    model = models.make_model(config.model, info)
    params, state = model.init(jax.random.PRNGKey(0))
    rays = camera.generate_rays(info.intrinsics, camera.pose_spherical(
        0.0, -30.0, 4.0), info.near, info.far)
    out = model.render(params, state, rays)
    np.testing.assert_allclose(out['rgb'], float(white), atol=1e-6)


def test_eval_reads_near_far_from_scene_json_not_the_config(tmp_path):
  workdir = str(tmp_path / 'run')
  record = loop.train_and_evaluate(small_config(), workdir,
                                   progress=False)
  path = os.path.join(workdir, 'config.json')
  saved = json.loads(open(path).read())
  saved['data']['near'], saved['data']['far'] = 0.5, 60.0  # a stale copy
  open(path, 'w').write(json.dumps(saved))
  _, info, model, variables, _ = load.load_trained(workdir)
  assert (info.near, info.far) == (2.0, 6.0)
  data = datasets.load_scene(small_config().data)
  result = evaluate.evaluate_split(
      chunked.make_render_fn(model), variables,
      data.split('val'), info.near, info.far, 256)
  np.testing.assert_allclose(result['psnr'], record['psnr'], atol=1e-4)


def test_tiny_npz_on_white_is_refused(tmp_path):
  config = small_config(data__kind='tiny_npz', data__white_background=True)
  config.data.path = str(tmp_path / 'x.npz')
  with pytest.raises(datasets.DatasetError, match='no alpha'):
    datasets.load_scene(config.data)


def test_precision_may_change_on_resume_but_the_model_may_not(tmp_path):
  config = demo.get_config()
  rundir.save_config(config, str(tmp_path))
  info = datasets.load_scene(small_config().data).info()
  with config.unlocked():
    config.model.compute_dtype = 'bfloat16'
  rundir.check_resumable(config, info, str(tmp_path))  # same parameters
  config.model.width += 1
  config.model.preset = ''
  with pytest.raises(rundir.CheckpointError,
                     match=r'different model \(model.preset, model.width'):
    rundir.check_resumable(config, info, str(tmp_path))


# Run in a fresh interpreter: loads a run through nerf_jax.runs, then imports
# every module of the tools that read runs, and names any module of
# nerf_jax.train that came along.
NO_TRAINING = r'''
import importlib, pkgutil, sys
sys.path.insert(0, sys.argv[1])

def training():
  return sorted(m for m in sys.modules
                if m == 'nerf_jax.train' or m.startswith('nerf_jax.train.'))

from nerf_jax.runs import load
step = load.load_trained(sys.argv[2])[4]
assert step == 3, step
assert not training(), f'loading a run imported {training()}'
for package in ('nerf_jax.inference', 'nerf_jax.viewer', 'nerf_jax.export'):
  path = importlib.import_module(package).__path__
  for module in pkgutil.iter_modules(path, package + '.'):
    importlib.import_module(module.name)
    assert not training(), f'importing {module.name} imported {training()}'
print('no training imported')
'''


def test_loading_a_run_and_the_tools_import_no_training(legacy):
  proc = subprocess.run(
      [sys.executable, '-c', NO_TRAINING, str(ROOT), legacy],
      capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
  assert proc.returncode == 0, proc.stderr
  assert 'no training imported' in proc.stdout
