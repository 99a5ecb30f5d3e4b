"""Depth of a run on the built-in unbounded scene against the exact truth.

Renders the held-out views of a run trained with ``data.environment=True``
(``configs/unbounded.py``) and prints, per split, the held-out PSNR and the
median relative depth error |depth - truth| / truth over all pixels, over
the objects and over the background (the floor and dome: the pixels where
the scene without its environment has nothing):

  .venv/bin/python train.py --config configs/unbounded.py --workdir runs/unb
  .venv/bin/python benchmarks/unbounded_depth.py runs/unb
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))

from nerf_jax import datasets, metrics  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.datasets import procedural  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.inference import chunked, evaluate  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('workdir', help='a run on the built-in unbounded scene')
  parser.add_argument('--splits', default='val,test')
  args = parser.parse_args()
  config, info, model, variables, step = load.load_trained(args.workdir)
  if not config.data.get('environment', False):
    sys.exit(f'{args.workdir} is not a run on the built-in unbounded scene')
  scene = datasets.load_scene(config.data)
  render_fn = chunked.make_render_fn(model)
  print(f'{args.workdir}: step {step}, extent {info.extent}')
  for name in args.splits.split(','):
    split = scene.split(name)
    # The objects alone: where they have no depth, the pixel is background.
    _, objects, _ = procedural.render_views(split.poses, split.intrinsics)
    psnr, errors = [], {'all': [], 'objects': [], 'background': []}
    for i in range(len(split)):
      out = chunked.render_camera(render_fn, variables, split.cameras, i,
                                  info.near, info.far, 8192)
      psnr.append(metrics.psnr(out['rgb'], split.images[i]))
      background = ~np.isfinite(objects[i])
      for key, where in (('all', None), ('objects', ~background),
                         ('background', background)):
        errors[key].append(evaluate.depth_error(out['depth'],
                                                split.depths[i], where))
    cells = ', '.join(f'{k} {np.nanmean(v):.3f}' for k, v in errors.items())
    print(f'{name}: {len(split)} views, PSNR {np.mean(psnr):.2f} dB, median '
          f'relative depth error: {cells}')


if __name__ == '__main__':
  main()
