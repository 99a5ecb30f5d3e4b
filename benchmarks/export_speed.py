"""Mesh export time of a trained checkpoint, stage by stage.

  .venv/bin/python benchmarks/export_speed.py --ckpt runs/demo
  .venv/bin/python benchmarks/export_speed.py --ckpt runs/demo --resolutions 128,256,384

For each resolution (density samples along the box's longest side): the
density grid (field evaluations), marching cubes, vertex colours (one field
query per vertex) and writing the PLY, as ``export.py --mesh`` does them.
Compilation is done before timing (a warm-up export at resolution 32), but
vertex colours still compile once per new power-of-two chunk of vertices;
each stage is timed once. The last column is the total
relative to the first resolution's.
"""

import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--ckpt', required=True)
  parser.add_argument('--resolutions', default='128,256')
  parser.add_argument('--chunk', type=int, default=1 << 18,
                      help='points per field call (export.py: 64 x --chunk)')
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  from nerf_jax.export import fields  # pylint: disable=g-import-not-at-top
  from nerf_jax.export import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top
  config, info, model, variables, step = load.load_trained(args.ckpt)
  fns = fields.make_field_fns(model, fields.normal_step(info.aabb))
  box, threshold = info.aabb, mesh_lib.default_threshold(info.aabb)
  resolutions = [int(r) for r in args.resolutions.split(',')]
  warm = mesh_lib.extract_mesh(fns, variables, box, 32, threshold,
                               args.chunk)  # compiles; imports trimesh
  with tempfile.TemporaryDirectory() as tmp:
    mesh_lib.write_mesh(os.path.join(tmp, 'warm.ply'), warm)
  print(f'{config.name} ({config.model.kind}, step {step}) on '
        f'{jax.device_count()} {jax.devices()[0].platform}, chunk '
        f'{args.chunk}, threshold {threshold:.3g}')
  print(f'{"res":>5} {"points":>11} {"grid s":>7} {"mcubes s":>8} '
        f'{"colours s":>9} {"write s":>7} {"total s":>7} {"vertices":>9} '
        f'{"faces":>9} {"ratio":>6}')
  first = None
  for res in resolutions:
    times = []
    t0 = time.perf_counter()
    grid = mesh_lib.density_grid(fns['density'], variables, box, res,
                                 args.chunk)
    times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    mesh = mesh_lib.marching_cubes(grid, box, threshold)
    times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    mesh.colors = mesh_lib.vertex_colors(fns['rgb'], variables,
                                         mesh.vertices, mesh.normals,
                                         args.chunk)
    times.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
      t0 = time.perf_counter()
      mesh_lib.write_mesh(os.path.join(tmp, 'mesh.ply'), mesh)
      times.append(time.perf_counter() - t0)
    total = sum(times)
    first = first or total
    print(f'{res:>5} {grid.size:>11,} {times[0]:>7.2f} {times[1]:>8.2f} '
          f'{times[2]:>9.2f} {times[3]:>7.2f} {total:>7.2f} '
          f'{len(mesh.vertices):>9,} {len(mesh.faces):>9,} '
          f'{total / first:>6.2f}')
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
  print(f'peak RSS {peak:.2f} GB')


if __name__ == '__main__':
  main()
