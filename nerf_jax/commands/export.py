"""Exports a trained NeRF as geometry: ``python export.py --ckpt runs/demo
--mesh runs/demo/mesh.ply``.

--mesh FILE (.ply, .obj, .glb): the iso-surface of the density on a grid
over the scene box (marching cubes), coloured by the field seen head-on.
--points FILE (.ply): a coloured point cloud with normals, from the depth
the model renders in the training views. --depth FOLDER: depth and normal
maps of a camera path (the scene's own, or --path) as 16-bit PNG, .npy or
EXR, with maps.json saying what the numbers mean. Any of the three may be
combined; each output replaces an earlier one only once it is complete.
"""

import importlib.util
import math
import os
import time

from absl import app, flags

from nerf_jax import cli, commands
from nerf_jax.io import outputs

TOOL = 'export.py'

_CKPT = flags.DEFINE_string('ckpt', None, 'Training directory (workdir).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default latest).')
_MESH = flags.DEFINE_string('mesh', None, 'Write a mesh: .ply, .obj or .glb.')
_RESOLUTION = flags.DEFINE_integer(
    'resolution', 256, 'Mesh: density samples along the longest side of the '
    'box, 8 to 2048.')
_THRESHOLD = flags.DEFINE_float(
    'threshold', None, 'Mesh: the iso-density, positive (default: a layer '
    '2% of the box diagonal thick is half opaque; about 8.3 for the '
    'built-in scene).')
_BOX = flags.DEFINE_string(
    'box', None, 'Mesh and points: the region, "xmin,ymin,zmin,xmax,ymax,'
    'zmax" (default: the scene box).')
_COMPONENTS = flags.DEFINE_integer(
    'components', 0, 'Mesh: keep only this many largest connected pieces '
    '(drops floaters); 0 keeps all.')
_POINTS = flags.DEFINE_string('points', None,
                              'Write a point cloud from the training views: '
                              '.ply.')
_NUM_POINTS = flags.DEFINE_integer('num_points', 1_000_000,
                                   'Points: at most this many, 1 to 1e8.')
_DEPTH = flags.DEFINE_string(
    'depth', None, 'Write depth and normal maps of a camera path into this '
    'folder (depth/NNNN, normals/NNNN, maps.json).')
_FORMAT = flags.DEFINE_enum(
    'format', 'png16', ['png16', 'npy', 'exr'],
    'Depth maps: png16 (depth * scale, the scale in maps.json; normals as '
    '(n + 1) / 2), npy or exr (float32).')
_NORMAL_FRAME = flags.DEFINE_enum(
    'normal_frame', 'world', ['world', 'camera'],
    'Depth maps: axes of the normals (camera: OpenGL, x right, y up, z '
    'towards the viewer).')
_PATH = flags.DEFINE_string(
    'path', None, 'Depth maps: camera path file (.npy or .json, as '
    'render.py --path) instead of the scene\'s trajectory.')
_TRAJECTORY = flags.DEFINE_enum(
    'trajectory', 'auto', ['auto', 'orbit', 'spiral', 'smooth'],
    'Depth maps: camera path when --path is not given (as render.py).')
_FRAMES = flags.DEFINE_integer('frames', 120,
                               'Depth maps: frames of the trajectory, 1 to '
                               '100000.')
_ELEVATION = flags.DEFINE_float(
    'elevation', None, 'Depth maps: orbit elevation in degrees, -90 to 90.')
_RADIUS = flags.DEFINE_float('radius', None,
                             'Depth maps: orbit radius, positive.')
_SCALE = flags.DEFINE_float(
    'scale', 1.0, 'Points and depth maps: resolution relative to training, '
    'positive.')
_MIN_OPACITY = flags.DEFINE_float(
    'min_opacity', 0.9, 'Points and depth maps: pixels less opaque than '
    'this (silhouettes mix two depths) are left out, in (0, 1].')
_CHUNK = flags.DEFINE_integer(
    'chunk', None, 'Rays per jit call (memory; field queries take 64 points '
    'per ray); default: the run\'s eval.chunk.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show progress bars.')
flags.mark_flag_as_required('ckpt')

# Allowed flag values: (flag, test of a set value, what the test asks).
_RANGES = (
    (_STEP, lambda v: v >= 0, 'must be 0 or more'),
    (_RESOLUTION, lambda v: 8 <= v <= 2048, 'must be in [8, 2048]'),
    (_THRESHOLD, lambda v: 0 < v < math.inf, 'must be positive'),
    (_COMPONENTS, lambda v: v >= 0, 'must be 0 (all) or more'),
    (_NUM_POINTS, lambda v: 1 <= v <= 10 ** 8, 'must be in [1, 1e8]'),
    (_FRAMES, lambda v: 1 <= v <= 100000, 'must be in [1, 100000]'),
    (_ELEVATION, lambda v: -90 <= v <= 90, 'must be in [-90, 90] degrees'),
    (_RADIUS, lambda v: 0 < v <= 1e6, 'must be in (0, 1e6]'),
    (_SCALE, lambda v: 0 < v < math.inf, 'must be positive'),
    (_MIN_OPACITY, lambda v: 0 < v <= 1, 'must be in (0, 1]'),
    (_CHUNK, lambda v: v >= 1, 'must be at least 1'),
)
_POINTS_PER_RAY = 64  # field queries per call = this * --chunk
# nerf_jax.export's mesh.MESH_FORMATS, points.POINT_FORMATS and
# maps.EXR_PACKAGE, known here
# without importing JAX (tests check that they agree).
_MESH_FORMATS = ('.ply', '.obj', '.glb')
_POINT_FORMATS = ('.ply',)
_EXR_PACKAGE = 'OpenEXR==3.5.3'


def _main(argv):
  cli.start(argv)
  # Refuse bad flags in one line before any heavy import or work.
  problem = _flag_problem()
  if problem:
    cli.fail(problem, code=2)
  guarded = cli.run_guarded(
      _run, (ValueError,),
      memory_hint='lower --chunk, --resolution or --scale')
  guarded()


def _flag_problem() -> str:
  """The first unusable flag (ranges, outputs, --box, --format), or ''."""
  problem = cli.flag_problem(_RANGES)
  if problem:
    return problem
  if not (_MESH.value or _POINTS.value or _DEPTH.value):
    return 'nothing to export: pass --mesh FILE, --points FILE or --depth DIR'
  files = ((_MESH, _MESH_FORMATS), (_POINTS, _POINT_FORMATS))
  for holder, formats in files:
    if holder.value:
      problem = _file_problem(holder.value, f'--{holder.name}', formats)
      if problem:
        return problem
  if _DEPTH.value:
    problem = outputs.problem(_DEPTH.value, TOOL, outputs.FOLDER, '--depth')
    if problem:
      return problem
  elif _PATH.value:
    return '--path sets the cameras of --depth, which is not given'
  if (_DEPTH.value and _FORMAT.value == 'exr'
      and importlib.util.find_spec('OpenEXR') is None):
    return ('--format exr needs the OpenEXR package (pip install '
            f'{_EXR_PACKAGE}); or use --format png16 or npy')
  if _BOX.value is not None:
    try:
      _box()
    except ValueError as e:
      return str(e)
  return ''


def _file_problem(path: str, what: str, formats: tuple) -> str:
  """'' or why ``path`` cannot be written as an output file."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in formats:
    return (f'{what} {path}: the file name must end in '
            f'{" or ".join(formats)}')
  return outputs.problem(path, TOOL, outputs.FILE, what)


def _box() -> tuple:
  """--box as ((x, y, z), (x, y, z)); ValueError (one line) if malformed."""
  from nerf_jax.datasets import scene  # pylint: disable=g-import-not-at-top
  text = _BOX.value
  try:
    values = [float(v) for v in text.split(',')]
  except ValueError:
    values = []
  if len(values) != 6:
    raise ValueError(f'--box must be six numbers "xmin,ymin,zmin,xmax,ymax,'
                     f'zmax", got {text!r}')
  try:
    return scene.as_aabb([values[:3], values[3:]])
  except ValueError as e:
    raise ValueError(f'--box {text}: {e}') from e


def _run():
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  from nerf_jax.export import fields  # pylint: disable=g-import-not-at-top
  from nerf_jax.inference import chunked  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top
  # The cheap inputs first, so their errors come before the checkpoint loads.
  path = paths.load_camera_path(_PATH.value) if _PATH.value else None
  config, info, model, variables, step = load.load_trained(
      _CKPT.value, _STEP.value)
  if info.ndc:
    raise ValueError(
        f'{_CKPT.value} is a forward-facing (NDC) scene: its field lives in '
        'normalised device coordinates, not in the world, so it cannot be '
        'exported as a mesh, points or depth maps')
  chunk = _CHUNK.value or int(config.eval.chunk)
  if chunk < 1:
    raise ValueError(f'the run\'s eval.chunk must be positive, got {chunk}; '
                     'pass --chunk')
  box = _box() if _BOX.value else info.aabb
  fns = fields.make_field_fns(model, fields.normal_step(info.aabb))
  print(f'exporting step {step} of {_CKPT.value}')
  if _MESH.value:
    _export_mesh(fns, variables, box, chunk * _POINTS_PER_RAY)
  render_fn = chunked.make_render_fn(model)
  if _POINTS.value:
    _export_points(info, fns, render_fn, variables, box, chunk)
  if _DEPTH.value:
    _export_maps(info, fns, render_fn, variables, path, chunk)


def _export_mesh(fns, variables, box, points_per_call):
  from nerf_jax.export import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  mesh_lib.check_grid_fits(box, _RESOLUTION.value)
  threshold = _THRESHOLD.value or mesh_lib.default_threshold(box)
  mesh = mesh_lib.extract_mesh(fns, variables, box, _RESOLUTION.value,
                               threshold, points_per_call,
                               _COMPONENTS.value)
  outputs.write(_MESH.value, TOOL, lambda tmp: mesh_lib.write_mesh(
      tmp, mesh), what='--mesh')
  shape = 'x'.join(map(str, mesh_lib.grid_shape(box, _RESOLUTION.value)))
  print(f'mesh: {len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces '
        f'(grid {shape}, threshold {threshold:.3g}) in '
        f'{time.perf_counter() - start:.1f} s: {_MESH.value}')


def _export_points(info, fns, render_fn, variables, box, chunk):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  from nerf_jax.export import fields  # pylint: disable=g-import-not-at-top
  from nerf_jax.export import points as points_lib  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  poses = np.asarray(info.camera_poses, np.float32).reshape(-1, 4, 4)
  if not len(poses):
    raise ValueError(f'{_CKPT.value}/scene.json lists no training cameras '
                     '(a run from before they were saved); --points needs '
                     'them')
  intrinsics = paths.scaled_intrinsics(info.intrinsics, _SCALE.value)
  points, colors = points_lib.point_cloud(
      render_fn, variables, poses, intrinsics, info.near, info.far, chunk,
      box, _NUM_POINTS.value, _MIN_OPACITY.value, progress=_PROGRESS.value)
  if not len(points):
    raise ValueError(f'no points: no pixel of the {len(poses)} training views '
                     f'reaches opacity {_MIN_OPACITY.value} inside the box; '
                     'lower --min_opacity or check --box')
  normals = fields.map_chunked(fns['normal'], variables, (points,),
                               chunk * _POINTS_PER_RAY)
  outputs.write(_POINTS.value, TOOL, lambda tmp: (
      points_lib.write_point_cloud(tmp, points, colors, normals)),
                what='--points')
  print(f'points: {len(points):,} from {len(poses)} training views at '
        f'{intrinsics.width}x{intrinsics.height} in '
        f'{time.perf_counter() - start:.1f} s: {_POINTS.value}')


def _export_maps(info, fns, render_fn, variables, path, chunk):
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  from nerf_jax.export import maps  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  _, poses, intrinsics = paths.plan_cameras(
      info, path, _TRAJECTORY.value, _FRAMES.value, _ELEVATION.value,
      _RADIUS.value, _SCALE.value)
  folder = _DEPTH.value
  outputs.write(folder, TOOL, lambda tmp: maps.write_surface_maps(
      tmp, render_fn, fns['normal'], variables, poses, intrinsics, info.near,
      info.far, chunk, _FORMAT.value, _NORMAL_FRAME.value, _MIN_OPACITY.value,
      progress=_PROGRESS.value), kind=outputs.FOLDER, what='--depth')
  print(f'depth and normals: {len(poses)} frames at {intrinsics.width}x'
        f'{intrinsics.height} ({_FORMAT.value}, see maps.json) in '
        f'{time.perf_counter() - start:.1f} s: {folder}')


def main() -> None:
  """The command line: ``nerf-jax-export`` and ``python export.py``."""
  commands.adopt_main(__name__)
  app.run(_main, flags_parser=cli.parse_flags)
