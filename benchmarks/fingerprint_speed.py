"""Times the training-data fingerprint (scene.fingerprint): every pixel
('v2:', what runs save now) against every 16th (the legacy hash), on a
dataset's training split as train.py loads it.

  python benchmarks/fingerprint_speed.py --config lego.py
  python benchmarks/fingerprint_speed.py --config demo.py
"""

import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))
from nerf_jax import cli  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file('config', None, 'config file')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'timings of each (best kept)')


def main(argv):
  del argv
  from nerf_jax import datasets  # pylint: disable=g-import-not-at-top
  from nerf_jax.datasets import scene  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  t = time.perf_counter()
  data = datasets.load_scene(config.data, splits=('train', 'val'))
  load_s = time.perf_counter() - t
  train = data.split('train')
  poses = [data.splits[k].poses for k in sorted(data.splits)]
  images = train.images
  pixels = (sum(int(im.shape[0] * im.shape[1]) for im in images)
            if isinstance(images, list) else int(images.shape[0] *
                                                 images.shape[1] *
                                                 images.shape[2]))
  best = {}
  for legacy in [True, False] * _REPEATS.value:
    t = time.perf_counter()
    scene.fingerprint(images, poses, train.cameras, legacy=legacy)
    s = time.perf_counter() - t
    best[legacy] = min(best.get(legacy, s), s)
  print(f'{config.name}: {pixels:,} training pixels, loaded in {load_s:.2f} '
        f's; fingerprint of every pixel {best[False]:.3f} s, of every 16th '
        f'(legacy) {best[True]:.3f} s: ratio {best[False] / best[True]:.1f}, '
        f'{100 * best[False] / load_s:.1f} % of the load time')


if __name__ == '__main__':
  sys.argv = cli.resolve_config_arg(sys.argv)
  app.run(main)
