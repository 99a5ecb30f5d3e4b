"""Runs written before the package was split by stage (commit f760632) still
load, evaluate to their recorded PSNR, resume, render, export and open in
the viewer with today's code.

Two fixtures, each copied to a temporary folder before use:
  fast_run_before_packages: the fast model (hash grid and occupancy grid in
    the checkpoint's model_state), 300 steps on a 16x16 procedural scene,
    written by f760632's train.py (its README.txt has the command).
  legacy_run: an MLP run from before the model interface existed (see
    tests/test_rundir.py).
"""

from __future__ import annotations

import os
import pathlib
import shutil

import jax
import numpy as np
import pytest
import trimesh

from nerf_jax import datasets
from nerf_jax.export import fields
from nerf_jax.export import maps as maps_lib
from nerf_jax.export import points as points_lib
from nerf_jax.inference import chunked, evaluate
from nerf_jax.runs import load, metrics_log, rundir
from nerf_jax.train import checkpointing, train_state
from nerf_jax.viewer import cameras
from nerf_jax.viewer import frames
from nerf_jax.viewer import server

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / 'tests' / 'data'
FAST = 'fast_run_before_packages'
LEGACY = 'legacy_run'
CHUNK = 256  # rays per call: one 16x16 view


def _copy(tmp_path_factory, name: str) -> str:
  workdir = tmp_path_factory.mktemp('old') / name
  shutil.copytree(DATA / name, workdir)
  return str(workdir)


@pytest.fixture(scope='module', params=[FAST, LEGACY])
def loaded(request, tmp_path_factory) -> dict:
  """A copy of an old run loaded once (tests only read it): its folder,
  ``load.load_trained``'s results, one render function and its scene."""
  workdir = _copy(tmp_path_factory, request.param)
  config, info, model, variables, step = load.load_trained(workdir)
  return dict(name=request.param, workdir=workdir, config=config, info=info,
              model=model, variables=variables, step=step,
              render_fn=chunked.make_render_fn(model),
              data=datasets.load_scene(config.data))


def _val_pose(run: dict) -> np.ndarray:
  """f32[4, 4], the first held-out camera (the legacy run's scene.json
  lists no cameras, so they come from the scene)."""
  return np.asarray(run['data'].split('val').poses[0], np.float32)


def test_the_fast_run_keeps_its_model_and_occupancy_grid(loaded):
  if loaded['name'] != FAST:
    pytest.skip('the fast run only')
  config, step, state = loaded['config'], loaded['step'], loaded[
      'variables']['state']
  assert config.model.kind == 'fast' and step == 300
  mask = np.asarray(state['grid']['mask'])
  assert mask.shape == (16,) * 3 and mask.dtype == bool
  # The trained grid, not a fresh (all occupied) one: metrics.jsonl
  # recorded its occupied share at step 300, before that step's update.
  records = metrics_log.read_metrics(
      os.path.join(loaded['workdir'], 'metrics.jsonl'))
  occupied = [r for r in records if r['split'] == 'train'][-1]['occupied']
  assert 0.3 < occupied < 0.7
  np.testing.assert_allclose(mask.mean(), occupied, atol=0.01)


def test_an_old_run_evaluates_to_its_recorded_psnr(loaded):
  records = metrics_log.read_metrics(
      os.path.join(loaded['workdir'], 'metrics.jsonl'))
  recorded = [r for r in records if r['split'] == 'val'][-1]
  assert recorded['step'] == loaded['step']
  info = loaded['info']
  result = evaluate.evaluate_split(
      loaded['render_fn'], loaded['variables'], loaded['data'].split('val'),
      info.near, info.far, CHUNK)
  np.testing.assert_allclose(result['psnr'], recorded['psnr'], atol=1e-4)


def test_an_old_run_opens_in_the_viewer(loaded):
  """The viewer's frame of a held-out camera is the renderer's view of it."""
  info, variables = loaded['info'], loaded['variables']
  k = info.intrinsics
  view = server.Viewer(loaded['model'], info, variables, loaded['step'],
                       chunk=CHUNK, resolution=max(k.width, k.height))
  pose = _val_pose(loaded)
  request = frames.ViewRequest(c2w=pose, fov_y=cameras.vertical_fov(k),
                               aspect=k.width / k.height)
  image, out = view.render_request(request, 'full')
  intrinsics = view.intrinsics_for(request, 'full')
  assert (intrinsics.width, intrinsics.height) == (k.width, k.height)
  expected = chunked.render_view(loaded['render_fn'], variables, intrinsics,
                                 pose, info.near, info.far, CHUNK)
  assert image.shape == (k.height, k.width, 3) and image.dtype == np.uint8
  np.testing.assert_allclose(out['rgb'], expected['rgb'], atol=1e-4)
  np.testing.assert_allclose(out['acc'], expected['acc'], atol=1e-4)
  assert out['rgb'].std() > 0.02  # the scene, not a blank frame


def test_an_old_run_exports_depth_maps(loaded, tmp_path):
  """export --depth's maps (as .npy) are the renderer's depth where the
  view is opaque, 0 elsewhere, with unit normals there."""
  info, variables = loaded['info'], loaded['variables']
  fns = fields.make_field_fns(loaded['model'], fields.normal_step(info.aabb))
  pose = _val_pose(loaded)
  folder = str(tmp_path / 'maps')
  maps_lib.write_surface_maps(folder, loaded['render_fn'], fns['normal'],
                              variables, pose[None], info.intrinsics,
                              info.near, info.far, CHUNK, 'npy',
                              min_acc=0.5)
  depth = np.load(os.path.join(folder, 'depth', '0000.npy'))
  normals = np.load(os.path.join(folder, 'normals', '0000.npy'))
  expected = chunked.render_view(loaded['render_fn'], variables,
                                 info.intrinsics, pose, info.near, info.far,
                                 CHUNK)
  valid = expected['acc'] >= 0.5
  assert valid.sum() >= 10
  np.testing.assert_allclose(depth[valid], expected['depth'][valid],
                             atol=1e-4)
  assert np.all(depth[~valid] == 0)
  lengths = np.linalg.norm(normals[valid], axis=-1)
  assert np.mean(np.abs(lengths - 1) < 1e-3) > 0.9


def test_the_fast_run_exports_points_from_its_recorded_cameras(loaded,
                                                               tmp_path):
  """export --points: the cameras scene.json recorded, points inside the
  box where the views are opaque, written as PLY and read back."""
  if loaded['name'] != FAST:
    pytest.skip('the legacy run recorded no cameras (export.py refuses)')
  info, variables = loaded['info'], loaded['variables']
  poses = np.asarray(info.camera_poses, np.float32).reshape(-1, 4, 4)
  assert len(poses) == loaded['config'].data.num_train
  points, colors = points_lib.point_cloud(
      loaded['render_fn'], variables, poses[:2], info.intrinsics, info.near,
      info.far, CHUNK, info.aabb, 1000, 0.5)
  assert len(points) >= 10
  assert np.all(points_lib.inside_box(points, info.aabb))
  path = str(tmp_path / 'points.ply')
  points_lib.write_point_cloud(path, points, colors)
  cloud = trimesh.load(path)
  np.testing.assert_allclose(np.asarray(cloud.vertices), points, atol=1e-6)


def test_the_fast_run_resumes_into_todays_train_state(tmp_path_factory):
  """The loop's resume (``Checkpointer.resume``) restores the old
  checkpoint into a train state built by today's code: step, parameters,
  optimizer state and grid. (Training on from an old run's checkpoint:
  tests/test_rundir.py's legacy run.)"""
  workdir = _copy(tmp_path_factory, FAST)
  config = rundir.load_config(workdir)
  _, info, model, variables, _ = load.load_trained(workdir)
  tx = model.optimizer(config.train)
  fresh = train_state.create_train_state(jax.random.PRNGKey(1), model, tx)
  state = checkpointing.Checkpointer(workdir, 3, True).resume(fresh)
  assert int(state.step) == 300 and info.extent == 'bounded'
  for a, b in zip(jax.tree_util.tree_leaves(state.variables()),
                  jax.tree_util.tree_leaves(variables)):
    np.testing.assert_array_equal(a, b)
  counts = [int(x) for x in jax.tree_util.tree_leaves(state.opt_state)
            if np.ndim(x) == 0 and np.issubdtype(np.asarray(x).dtype,
                                                 np.integer)]
  assert 300 in counts  # Adam's step count came back
