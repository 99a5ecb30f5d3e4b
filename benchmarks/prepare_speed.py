"""prepare.py's SfM on all 50 fox photos: time per stage and pose accuracy.

  .venv/bin/python benchmarks/prepare_speed.py --max_size 1600
  .venv/bin/python benchmarks/prepare_speed.py --max_size 800 --out /tmp/fox

Runs the same pipeline as ``prepare.py ../shared/data/fox/images --out ...``
(pycolmap on the CPU: SIFT, exhaustive matching, incremental mapping) and
prints the wall time of each stage, how many of the photos registered, and
the camera-centre and rotation error against the published instant-ngp
transforms.json after the best similarity alignment (Umeyama) of the centres.
The centre error is given in the published scene's units and relative to the
RMS spread of the published camera centres about their mean.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
FOX = os.path.join(os.path.dirname(ROOT), 'shared', 'data', 'fox')


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--max_size', type=int, default=1600,
                      help='longest image side for SfM (0: 1080x1920 as is)')
  parser.add_argument('--matcher', default='exhaustive',
                      choices=['exhaustive', 'sequential'])
  parser.add_argument('--camera_model', default='OPENCV')
  parser.add_argument('--threads', type=int, default=-1)
  parser.add_argument('--fox', default=FOX, help='the fox scene folder')
  parser.add_argument('--out', default=None,
                      help='keep the scene here (default: a temporary folder)')
  args = parser.parse_args()
  import pycolmap  # pylint: disable=g-import-not-at-top
  from nerf_jax.sfm import prepare  # pylint: disable=g-import-not-at-top
  from nerf_jax.sfm import transforms  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(os.path.join(args.fox, 'transforms.json')):
    sys.exit(f'error: {args.fox}/transforms.json not found')
  tmp = tempfile.mkdtemp(prefix='prepare_speed-')
  out = args.out or os.path.join(tmp, 'scene')
  start = time.perf_counter()
  try:
    result = prepare.prepare_scene(
        os.path.join(args.fox, 'images'), out, max_size=args.max_size,
        matcher=args.matcher, camera_model=args.camera_model,
        num_threads=args.threads, overwrite=bool(args.out),
        stream=sys.stdout)
  finally:
    total = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)

  ref = json.load(open(os.path.join(args.fox, 'transforms.json')))
  ref_c2w = {os.path.basename(f['file_path']): np.array(f['transform_matrix'])
             for f in ref['frames']}
  frames = [f for f in result.transforms['frames']
            if os.path.basename(f['file_path']) in ref_c2w]
  ours = np.array([f['transform_matrix'] for f in frames])
  theirs = np.stack([ref_c2w[os.path.basename(f['file_path'])]
                     for f in frames])
  err = transforms.alignment_errors(ours, theirs)
  t = result.transforms
  focal = t['fl_y'] * ref['h'] / t['h'] if 'fl_y' in t else float('nan')

  print()
  print(f'machine: {os.cpu_count()} CPU cores, {platform.machine()}, '
        f'pycolmap {pycolmap.__version__} (CUDA: {pycolmap.has_cuda})')
  print(f'fox: {result.num_inputs} photos at --max_size {args.max_size} '
        f'({t.get("w")}x{t.get("h")}), {args.matcher} matching, '
        f'{args.camera_model}')
  for stage, seconds in result.times.items():
    print(f'  {stage:<10} {seconds:8.1f} s')
  print(f'  {"total":<10} {total:8.1f} s')
  print(f'registered: {result.num_registered} of {result.num_inputs} '
        f'({result.num_dropped} dropped as blurry)')
  print(f'keypoints: {result.stats.num_keypoints}, points: '
        f'{result.stats.num_points}, reprojection error '
        f'{result.stats.reprojection_error:.2f} px, mapping attempts '
        f'{result.stats.attempts}, matches agreeing with the model '
        f'{100 * result.stats.agreement:.1f} %')
  print(f'camera centres vs published (after similarity, {len(frames)} '
        f'cameras): RMS {err["rms"]:.4f} (max {err["max"]:.4f}) scene units, '
        f'{100 * err["rms_relative"]:.2f} % of the camera spread '
        f'{err["spread"]:.2f}')
  print(f'rotations vs published: mean {err["rot_mean_deg"]:.2f}, max '
        f'{err["rot_max_deg"]:.2f} deg')
  print(f'focal (at 1920 px): {focal:.1f} vs published {ref["fl_y"]:.1f} '
        f'({100 * (focal / ref["fl_y"] - 1):+.2f} %)')


if __name__ == '__main__':
  main()
