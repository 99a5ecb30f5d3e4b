"""Orbit rendering speed (frames/s) and peak memory for a trained checkpoint.

  .venv/bin/python benchmarks/render_speed.py --ckpt runs/tiny --frames 24
  .venv/bin/python benchmarks/render_speed.py --ckpt runs/lego --frames 1 --width 800

Run one measurement per process: peak memory is the process's maximum
resident set size. The first frame (compilation) is timed apart.
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--ckpt', required=True)
  parser.add_argument('--frames', type=int, default=24)
  parser.add_argument('--width', type=int, default=0,
                      help='render width (default: the training width)')
  parser.add_argument('--chunk', type=int, default=4096)
  args = parser.parse_args()
  import jax  # pylint: disable=g-import-not-at-top
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  from nerf_jax.inference import chunked  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top
  config, info, model, params, _ = load.load_trained(args.ckpt)
  intr = info.intrinsics
  if args.width:
    intr = intr.scaled(args.width / intr.width)
  fn = chunked.make_render_fn(model)
  poses = paths.orbit_poses(args.frames + 1, 30.0, info.camera_radius)
  t0 = time.perf_counter()
  chunked.render_view(fn, params, intr, poses[0], info.near, info.far,
                      args.chunk)
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  for pose in poses[1:]:
    chunked.render_view(fn, params, intr, pose, info.near, info.far,
                        args.chunk)
  dt = max(time.perf_counter() - t0, 1e-9)
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
  print(f'{config.name} {intr.width}x{intr.height} chunk {args.chunk} on '
        f'{jax.device_count()} {jax.devices()[0].platform}: '
        + (f'{args.frames / dt:.2f} frames/s ({dt / args.frames:.3f} s/frame), '
           if args.frames else '') + f'first frame {first:.2f} s, peak RSS {peak:.2f} GB')


if __name__ == '__main__':
  main()
