"""Tests of nerf_jax.export and export.py: meshes against the built-in scene's
analytic geometry, point clouds, depth and normal maps, the command line."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import shutil
import subprocess
import sys

import imageio.v3 as iio
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from nerf_jax.cameras import camera
from nerf_jax.export import fields
from nerf_jax.export import maps as maps_lib
from nerf_jax.export import mesh as mesh_lib
from nerf_jax.export import points as points_lib
from nerf_jax.io import outputs
from nerf_jax.inference import chunked
from nerf_jax.runs import load
from nerf_jax.datasets import procedural
from tests.checks import error_line

ROOT = pathlib.Path(__file__).resolve().parents[1]
VARIABLES = {'params': {}, 'state': {}}
CENTER = np.array([0.1, -0.2, 0.05], np.float32)
RADIUS = 0.5
BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))


class SphereField:
  """A Model-like field: a solid ball of radius RADIUS around CENTER with a
  smooth edge (density 100 inside, 0 outside) and a constant colour."""

  def __init__(self, centers=(CENTER,), radii=(RADIUS,)):
    self.centers = [jnp.asarray(c) for c in centers]
    self.radii = radii

  def density(self, params, state, points):
    del params, state
    sdf = jnp.min(jnp.stack([jnp.linalg.norm(points - c, axis=-1) - r
                             for c, r in zip(self.centers, self.radii)]), 0)
    return 100.0 * jax_sigmoid(-sdf / 0.01)

  def query(self, params, state, points, viewdirs=None):
    del viewdirs
    rgb = jnp.broadcast_to(jnp.array([0.9, 0.4, 0.1]), points.shape)
    return rgb, self.density(params, state, points)


def jax_sigmoid(x):
  return 1.0 / (1.0 + jnp.exp(-x))


def sphere_render_fn(variables, rays):
  """A render function (``chunked.make_render_fn``'s contract) that
  traces the analytic SphereField: depth of the first hit, acc 1 on hits."""
  del variables
  o, d = np.asarray(rays.origins), np.asarray(rays.directions)
  oc = o - CENTER
  a, b = np.sum(d * d, -1), np.sum(d * oc, -1)
  disc = b * b - a * (np.sum(oc * oc, -1) - RADIUS ** 2)
  hit = disc > 0
  t = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / a, 6.0)
  return dict(rgb=np.ones(o.shape, np.float32) * hit[..., None],
              depth=t.astype(np.float32), acc=hit.astype(np.float32),
              disparity=1.0 / t)


# ---------------------------------------------------------------------------
# Closed forms, without training.


def test_sphere_mesh_lies_on_the_sphere_with_outward_normals_and_winding():
  fns = fields.make_field_fns(SphereField())
  mesh = mesh_lib.extract_mesh(fns, VARIABLES, BOX, 48, 50.0, 4096)
  cell = 2.0 / 47
  offset = mesh.vertices - CENTER
  radius = np.linalg.norm(offset, axis=-1)
  np.testing.assert_allclose(radius, RADIUS, atol=0.25 * cell)
  outward = np.sum(mesh.normals * offset / radius[:, None], axis=-1)
  # Finite differences on the grid: a few degrees off at worst.
  assert outward.min() > 0.9 and outward.mean() > 0.98, outward
  solid = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
  assert solid.is_watertight
  # Counter-clockwise faces seen from outside give a positive volume.
  np.testing.assert_allclose(solid.volume, 4 / 3 * np.pi * RADIUS ** 3,
                             rtol=0.03)
  np.testing.assert_allclose(mesh.colors, np.broadcast_to(
      [0.9, 0.4, 0.1], mesh.colors.shape), atol=1e-6)


def test_density_grid_samples_the_box_corners_and_chunks_do_not_matter():
  fns = fields.make_field_fns(SphereField())
  box = ((-1.0, -0.5, 0.0), (1.0, 0.5, 0.5))
  assert mesh_lib.grid_shape(box, 40) == (40, 20, 10)
  whole = mesh_lib.density_grid(fns['density'], VARIABLES, box, 40, 10 ** 6)
  chunked = mesh_lib.density_grid(fns['density'], VARIABLES, box, 40, 333)
  np.testing.assert_allclose(whole, chunked, rtol=1e-4, atol=1e-4)
  corner = np.asarray(fns['density'](VARIABLES, jnp.array([[1.0, 0.5, 0.5]])))
  np.testing.assert_allclose(whole[-1, -1, -1], corner[0], rtol=1e-6)


def test_default_threshold_is_scale_free():
  base = mesh_lib.default_threshold(BOX)
  doubled = mesh_lib.default_threshold(((-2.0,) * 3, (2.0,) * 3))
  np.testing.assert_allclose(doubled, base / 2, rtol=1e-12)
  # A layer 2% of the diagonal thick is then half opaque.
  layer = 0.02 * np.sqrt(12.0)
  np.testing.assert_allclose(1 - np.exp(-base * layer), 0.5, rtol=1e-12)


def test_no_surface_is_one_line():
  fns = fields.make_field_fns(SphereField())
  with pytest.raises(mesh_lib.NoSurfaceError, match='never crosses'):
    mesh_lib.extract_mesh(fns, VARIABLES, BOX, 16, 1e6, 4096)


def test_keep_largest_components_drops_the_small_ball():
  field = SphereField(centers=(CENTER, np.array([-0.7, 0.7, 0.7])),
                      radii=(RADIUS, 0.15))
  fns = fields.make_field_fns(field)
  mesh = mesh_lib.extract_mesh(fns, VARIABLES, BOX, 48, 50.0, 4096)
  big = mesh_lib.keep_largest_components(mesh, 1)
  assert 0 < len(big.faces) < len(mesh.faces)
  np.testing.assert_allclose(np.linalg.norm(big.vertices - CENTER, axis=-1),
                             RADIUS, atol=0.02)
  assert big.faces.max() == len(big.vertices) - 1
  assert len(mesh_lib.keep_largest_components(mesh, 0).faces) == len(
      mesh.faces)


def test_normals_of_a_sphere_point_outward():
  fns = fields.make_field_fns(SphereField())
  rng = np.random.default_rng(0)
  dirs = rng.normal(size=(100, 3))
  dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
  points = (CENTER + RADIUS * dirs).astype(np.float32)
  normals = fields.map_chunked(fns['normal'], VARIABLES, (points,), 32)
  np.testing.assert_allclose(normals, dirs, atol=3e-3)


def _look_at_sphere(eye):
  return camera.look_at(np.asarray(eye) + CENTER, target=CENTER)


def test_point_cloud_backprojects_onto_the_rendered_sphere():
  poses = np.stack([_look_at_sphere([2.0, 0.5, 1.0]),
                    _look_at_sphere([-1.5, -1.0, 0.5])])
  intrinsics = camera.Intrinsics.from_focal(40.0, 32, 24)
  points, colors = points_lib.point_cloud(
      sphere_render_fn, VARIABLES, poses, intrinsics, 0.1, 6.0, 100, BOX,
      num_points=500)
  assert len(points) == 500
  np.testing.assert_allclose(np.linalg.norm(points - CENTER, axis=-1),
                             RADIUS, atol=1e-4)
  np.testing.assert_allclose(colors, 1.0)
  # Both views contribute: points on both sides of the sphere.
  side = (points - CENTER) @ np.array([1.0, 0.0, 0.0])
  assert side.min() < -0.2 and side.max() > 0.2


def test_depth_and_normal_maps_of_a_sphere_match_its_closed_form(tmp_path):
  """The written maps decode (with maps.json's scale) to the analytic depth
  and normals, within the PNG's quantisation."""
  c2w = _look_at_sphere([0.0, -2.5, 0.0])
  intrinsics = camera.Intrinsics.from_focal(30.0, 24, 20)
  fns = fields.make_field_fns(SphereField())
  for fmt in ('png16', 'npy'):
    folder = str(tmp_path / fmt)
    info = maps_lib.write_surface_maps(
        folder, sphere_render_fn, fns['normal'], VARIABLES, c2w[None],
        intrinsics, 0.1, 6.0, 128, fmt=fmt, frame='camera')
    ext = '.png' if fmt == 'png16' else '.npy'
    read = np.load if fmt == 'npy' else maps_lib.read_png16
    depth, normals = (read(os.path.join(folder, kind, '0000' + ext))
                      for kind in ('depth', 'normals'))
    if fmt == 'png16':
      assert depth.dtype == np.uint16 and normals.dtype == np.uint16
      # Valid PNGs: a general reader agrees (Pillow keeps 8 of the 16 bits
      # of RGB).
      np.testing.assert_array_equal(
          iio.imread(os.path.join(folder, 'depth', '0000.png')), depth)
      np.testing.assert_array_equal(
          iio.imread(os.path.join(folder, 'normals', '0000.png')),
          normals >> 8)
      scale = json.load(open(os.path.join(folder, 'maps.json')))['depth'][
          'scale']
      assert scale == info['depth']['scale'] == 10922  # floor(65534 / 6)
      valid = depth > 0
      depth = maps_lib.png16_to_depth(depth, scale)
      normals = maps_lib.png16_to_normals(normals)
      depth_tol, normal_tol = 0.5 / scale + 1e-6, 1.5 / 65535 + 1e-5
    else:
      valid = depth > 0
      depth_tol, normal_tol = 1e-5, 1e-3
    cameras = camera.Cameras.create(c2w[None], intrinsics)
    rays = chunked.image_rays(cameras, 0, 0.1, 6.0)
    truth = sphere_render_fn(None, rays)
    np.testing.assert_array_equal(valid, truth['acc'] > 0)
    np.testing.assert_allclose(depth[valid], truth['depth'][valid],
                               atol=depth_tol)
    # Camera-frame normals: the surface point minus the centre, rotated.
    points = rays.origins + truth['depth'][..., None] * rays.directions
    expected = (points - CENTER) / RADIUS @ c2w[:3, :3]
    np.testing.assert_allclose(normals[valid], expected[valid],
                               atol=normal_tol + 3e-3)
    assert np.all(depth[~valid] == 0)
    # The pixel at the centre sees the sphere head-on: the normal faces the
    # camera (+z in camera axes).
    np.testing.assert_allclose(normals[10, 12], [0, 0, 1], atol=0.1)


def test_exr_maps_round_trip(tmp_path):
  pytest.importorskip('OpenEXR')
  depth = np.random.default_rng(0).uniform(2, 6, (5, 7)).astype(np.float32)
  normals = np.random.default_rng(1).normal(size=(5, 7, 3)).astype(np.float32)
  valid = np.ones((5, 7), bool)
  path = maps_lib.write_map(str(tmp_path / 'd'), 'depth', depth, valid,
                            'exr', 1.0)
  np.testing.assert_array_equal(maps_lib.read_exr(path)['Z'], depth)
  path = maps_lib.write_map(str(tmp_path / 'n'), 'normals', normals, valid,
                            'exr', 1.0)
  np.testing.assert_array_equal(maps_lib.read_exr(path)['RGB'], normals)


def test_png16_depth_round_trip_within_quantisation():
  scale = maps_lib.depth_png_scale(6.0)
  depth = np.random.default_rng(2).uniform(0.0, 6.0, (30, 40))
  valid = depth > 0.5
  decoded = maps_lib.png16_to_depth(
      maps_lib.depth_to_png16(depth, valid, scale), scale)
  np.testing.assert_allclose(decoded[valid], depth[valid], atol=0.5 / scale)
  assert np.all(decoded[~valid] == 0)


def test_command_line_knows_the_library_formats():
  """export.py keeps copies of the formats (to check flags without JAX)."""
  command = ROOT / 'nerf_jax' / 'commands' / 'export.py'
  tree = ast.parse(command.read_text())
  values = {node.targets[0].id: ast.literal_eval(node.value)
            for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ('_MESH_FORMATS', '_POINT_FORMATS',
                                       '_EXR_PACKAGE')}
  assert values == {'_MESH_FORMATS': mesh_lib.MESH_FORMATS,
                    '_POINT_FORMATS': points_lib.POINT_FORMATS,
                    '_EXR_PACKAGE': maps_lib.EXR_PACKAGE}


# ---------------------------------------------------------------------------
# A trained model of the built-in scene against its analytic geometry.


@pytest.fixture(scope='module')
def trained(builtin_fast_run):
  """test_fast's learning run (the fast model, 250 steps at 32x32), trained
  once per session (conftest)."""
  return builtin_fast_run[0]


def _visible_surface(num_cameras=40, side=64):
  """Points of the analytic scene seen from cameras like the training ones,
  with their shaded colours: (f32[m, 3], f32[m, 3], poses f32[n, 4, 4])."""
  poses = procedural.random_poses(num_cameras, np.random.default_rng(7))
  intrinsics = procedural.default_intrinsics(side, side)
  rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing='ij')
  dirs = camera.pixel_directions(intrinsics, rows, cols, xnp=np)
  rays = camera.camera_rays(poses[:, None, None], dirs, 0.0, 1.0, xnp=np)
  rgb, depth, alpha = procedural.trace(rays.origins, rays.directions)
  hit = alpha > 0
  points = rays.origins[hit] + depth[hit][:, None] * rays.directions[hit]
  return points, rgb[hit], poses


def _unoccluded(points, poses, tol):
  """bool[m]: some camera sees the point with no analytic surface more than
  ``tol`` in front of it (hidden faces, e.g. the plinth's bottom or the
  inside of an object, are never supervised and are left out)."""
  seen = np.zeros(len(points), bool)
  for c2w in poses:
    origins = np.broadcast_to(c2w[:3, 3], points.shape)
    _, t, _ = procedural.trace(origins, points - origins)
    length = np.linalg.norm(points - origins, axis=-1)
    seen |= t * length >= length - tol
  return seen


@pytest.mark.slow
def test_mesh_of_the_builtin_scene_matches_its_analytic_geometry(trained):
  """Symmetric Chamfer distance (mean nearest-neighbour distance, both
  ways) between the exported mesh and the visible analytic surface: below
  2% of the scene box diagonal; vertex colours are the shapes' shaded
  colours."""
  _, info, model, variables, _ = load.load_trained(trained)
  fns = fields.make_field_fns(model)
  mesh = mesh_lib.extract_mesh(fns, variables, info.aabb, 80, None, 65536)
  diagonal = np.linalg.norm(np.subtract(*info.aabb))
  truth, truth_rgb, poses = _visible_surface()
  cell = diagonal / np.sqrt(3) / 79
  seen = _unoccluded(mesh.vertices, poses[:12], tol=3 * cell)
  assert seen.mean() > 0.3, seen.mean()
  accuracy, nearest = cKDTree(truth).query(mesh.vertices[seen])
  completeness, _ = cKDTree(mesh.vertices).query(truth)
  chamfer = 0.5 * (accuracy.mean() + completeness.mean())
  assert chamfer < 0.02 * diagonal, (chamfer, accuracy.mean(),
                                     completeness.mean())
  on_surface = accuracy < 3 * cell
  error = np.abs(mesh.colors[seen][on_surface] - truth_rgb[nearest[
      on_surface]])
  assert np.median(error) < 0.15, np.median(error)
  # The dominant channel of each coloured sphere's vertices is its albedo's.
  for shape in procedural.SHAPES:
    if (not isinstance(shape, procedural.Sphere)
        or shape.name == 'yellow_sphere'):  # yellow: two dominant channels
      continue
    r = np.linalg.norm(mesh.vertices - shape.center, axis=-1)
    near = np.abs(r - shape.radius) < 3 * cell
    colour = np.median(mesh.colors[near], axis=0)
    assert np.argmax(colour) == np.argmax(shape.albedo), (shape.name, colour)


def export_cli(*args):
  return subprocess.run([sys.executable, str(ROOT / 'export.py'), *args],
                        capture_output=True, text=True, timeout=300,
                        stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_command_line_writes_mesh_points_and_maps(trained, tmp_path):
  mesh_path, points_path = tmp_path / 'out' / 'mesh.ply', tmp_path / 'pts.ply'
  maps = tmp_path / 'maps'
  proc = export_cli('--ckpt', trained, '--mesh', str(mesh_path),
                    '--resolution', '32', '--points', str(points_path),
                    '--num_points', '3000', '--depth', str(maps),
                    '--frames', '2', '--progress=false')
  assert proc.returncode == 0, proc.stderr
  assert 'mesh:' in proc.stdout and 'points: 3,000' in proc.stdout
  mesh = trimesh.load(str(mesh_path), process=False)
  assert len(mesh.faces) > 500 and mesh.visual.vertex_colors.shape[1] == 4
  assert sorted(os.listdir(tmp_path / 'out')) == [  # no temporaries left
      outputs.LEDGER, 'mesh.ply']
  cloud = trimesh.load(str(points_path))
  assert len(cloud.vertices) == 3000 and cloud.colors.shape == (3000, 4)
  truth, _, _ = _visible_surface(num_cameras=20, side=48)
  distance, _ = cKDTree(truth).query(np.asarray(cloud.vertices))
  # Expected depth lies a little behind a fuzzy surface (the closed-form
  # test checks the back-projection itself).
  assert np.median(distance) < 0.1, np.median(distance)
  # The depth maps decode to the analytic scene's depth on the same path.
  info = json.load(open(maps / 'maps.json'))
  assert sorted(os.listdir(maps / 'depth')) == ['0000.png', '0001.png']
  intrinsics = camera.Intrinsics(**info['intrinsics'])
  for i, c2w in enumerate(np.asarray(info['poses'], np.float32)):
    raw = maps_lib.read_png16(str(maps / 'depth' / f'{i:04d}.png'))
    depth = maps_lib.png16_to_depth(raw, info['depth']['scale'])
    _, truth_depth, alpha = procedural.render_view(c2w, intrinsics)
    both = (raw > 0) & (alpha > 0)
    assert both.mean() > 0.3
    assert np.median(np.abs(depth[both] - truth_depth[both])) < 0.15
    encoded = maps_lib.read_png16(str(maps / 'normals' / f'{i:04d}.png'))
    has_normal = np.any(encoded > 0, axis=-1)
    assert not np.any(has_normal & (raw == 0))
    assert has_normal[raw > 0].mean() > 0.95  # flat density: no normal
    normals = maps_lib.png16_to_normals(encoded)[has_normal]
    np.testing.assert_allclose(np.linalg.norm(normals, axis=-1), 1.0,
                               atol=0.01)
    # Surfaces mostly face the camera that sees them. The gradient of this
    # briefly trained hash grid is noisy (about 62% face it; 90% for the
    # demo run's MLP), so this only asks for better than chance.
    facing = normals @ (c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]))
    assert np.mean(facing > 0) > 0.55, np.mean(facing > 0)


@pytest.mark.parametrize('ext', ['.obj', '.glb'])
def test_obj_and_glb_meshes_load_with_their_colours(tmp_path, ext):
  fns = fields.make_field_fns(SphereField())
  mesh = mesh_lib.extract_mesh(fns, VARIABLES, BOX, 24, 50.0, 4096)
  path = str(tmp_path / ('mesh' + ext))
  mesh_lib.write_mesh(path, mesh)
  loaded = trimesh.load(path, force='mesh', process=False)
  assert len(loaded.faces) == len(mesh.faces)
  np.testing.assert_allclose(loaded.visual.vertex_colors[:, :3] / 255.0,
                             np.broadcast_to([0.9, 0.4, 0.1],
                                             (len(loaded.vertices), 3)),
                             atol=1 / 255)


@pytest.mark.parametrize('args, message', [
    (['--mesh', 'out.stl'], 'must end in .ply or .obj or .glb'),
    (['--mesh', 'out.ply', '--resolution', '4'], '--resolution must be in'),
    (['--mesh', 'out.ply', '--box', '1,2,3'], '--box must be six numbers'),
    (['--mesh', 'out.ply', '--box', '1,1,1,0,2,2'], 'min < max'),
    (['--points', 'p.ply', '--min_opacity', '0'], '--min_opacity must be'),
    (['--step', '3'], 'nothing to export'),
    (['--mesh', 'm.ply', '--path', 'p.json'], '--path sets the cameras'),
])
def test_bad_flags_are_one_line_before_loading(tmp_path, args, message):
  proc = export_cli('--ckpt', str(tmp_path / 'missing'), *args)
  assert message in error_line(proc)
  assert proc.returncode == 2


def test_failed_export_keeps_the_earlier_file(trained, tmp_path):
  path = tmp_path / 'mesh.ply'
  path.write_bytes(b'earlier mesh')
  outputs.record(str(path), 'export.py')  # as an earlier export.py
  proc = export_cli('--ckpt', trained, '--mesh', str(path), '--resolution',
                    '16', '--threshold', '1e9', '--progress=false')
  assert 'never crosses the threshold' in error_line(proc)
  assert path.read_bytes() == b'earlier mesh'
  assert sorted(os.listdir(tmp_path)) == [outputs.LEDGER, 'mesh.ply']


def test_forward_facing_scenes_are_refused(trained, tmp_path):
  run = tmp_path / 'ndc_run'
  shutil.copytree(trained, run)
  scene = json.loads((run / 'scene.json').read_text())
  scene['ndc'] = True
  (run / 'scene.json').write_text(json.dumps(scene))
  proc = export_cli('--ckpt', str(run), '--mesh', str(tmp_path / 'm.ply'))
  assert 'forward-facing (NDC)' in error_line(proc)
  assert not (tmp_path / 'm.ply').exists()


def test_a_grid_larger_than_memory_is_refused_in_one_line(monkeypatch):
  from nerf_jax import errors, resources  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(resources, 'available_bytes', lambda device=None: 2 ** 30)
  box = ((-1.0, -1.0, -1.0), (1.0, 1.0, 0.0))
  mesh_lib.check_grid_fits(box, 256)  # 256 x 256 x 128 x 8 B = 64 MiB
  with pytest.raises(errors.UserError) as excinfo:
    mesh_lib.check_grid_fits(box, 1024)
  assert str(excinfo.value) == (
      'a 1024x1024x512 density grid (--resolution 1024) needs about 4.0 GiB '
      'of memory but 1.0 GiB is available; lower --resolution or crop with '
      '--box')
