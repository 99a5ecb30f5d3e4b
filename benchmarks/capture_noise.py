"""Pose refinement and appearance codes on the built-in scene made into a
real capture: misposed training cameras, or photos of changing exposure.

Trains the fast model three times on the built-in scene (``tiny_fast.py``
at 48x48, the same time budget each): on the exact capture, on the noisy
one, and on the noisy one with the remedy. ``poses``: every training camera
turned and moved (``data.pose_noise``), remedied by ``model.refine_poses``;
``exposure``: every training photo with its own exposure and white balance
(``data.exposure_noise``), remedied by ``model.appearance_dim``. Prints
held-out PSNR (held-out views are exact) and, for refined poses, the
training cameras' errors against the truth (rotation in degrees, centre in
scene units; also after removing the rigid drift of the whole set):

  .venv/bin/python benchmarks/capture_noise.py poses --noise 3,0.03
  .venv/bin/python benchmarks/capture_noise.py exposure --noise 0.3
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))

from nerf_jax import datasets  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.cameras import refine  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.configs import tiny_fast  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.train import loop  # pylint: disable=g-import-not-at-top,wrong-import-position


def _config(seconds: float, what: str, noise, remedy: bool):
  config = tiny_fast.get_config()
  config.data.kind, config.data.path = 'procedural', ''
  config.data.width = config.data.height = 48
  config.data.num_train = 60
  config.model.use_viewdirs = False  # the built-in scene is Lambertian
  if what == 'poses':
    config.data.pose_noise = noise or (0.0, 0.0)
    config.model.refine_poses = remedy
    config.model.coarse_to_fine = 300 if remedy else 0
  else:
    config.data.exposure_noise = noise[0] if noise else 0.0
    config.model.appearance_dim = 8 if remedy else 0
  config.train.max_seconds = seconds
  config.train.max_steps = 1500
  config.train.camera_delay = 200
  config.train.camera_warmup = 100
  config.train.camera_lr = 1e-3
  config.train.tensorboard = False
  config.eval.every = 0
  return config


def _errors(poses: np.ndarray, truth: np.ndarray) -> str:
  angle = refine.rotation_angle_deg(poses[:, :3, :3], truth[:, :3, :3])
  shift = np.linalg.norm(poses[:, :3, 3] - truth[:, :3, 3], axis=1)
  return f'{angle.mean():.2f} deg, {shift.mean():.4f} units'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('what', choices=('poses', 'exposure'))
  parser.add_argument('--seconds', type=float, default=120.0)
  parser.add_argument('--noise', default=None, help='poses: degrees,'
                      'fraction of the camera distance (default 3,0.03); '
                      'exposure: the log-gain deviation (default 0.3)')
  parser.add_argument('--remedy_only', action='store_true',
                      help='train only the remedied run')
  args = parser.parse_args()
  noise = tuple(float(x) for x in (args.noise or (
      '3,0.03' if args.what == 'poses' else '0.3')).split(','))
  root = tempfile.mkdtemp(prefix='capture_noise_')
  runs = (('exact', None, False), ('noisy', noise, False),
          ('noisy, remedied', noise, True))
  for name, level, remedy in runs[2:] if args.remedy_only else runs:
    config = _config(args.seconds, args.what, level, remedy)
    workdir = os.path.join(root, name.replace(' ', '_').replace(',', ''))
    record = loop.train_and_evaluate(config, workdir, progress=False)
    print(f'{args.what} {name}: held-out PSNR {record["psnr"]:.2f} dB at '
          f'step {record["step"]} ({args.seconds:.0f} s)', flush=True)
    if remedy and args.what == 'poses':
      exact = _config(args.seconds, 'poses', None, False)
      truth = datasets.load_scene(exact.data).split('train').poses
      given = datasets.load_scene(config.data).split('train').poses
      _, _, model, variables, _ = load.load_trained(workdir)
      refined = model.refined_poses(variables['params'])
      drift = np.linalg.inv(model.views.drift(
          model.views.split(variables['params'])[1]))
      print(f'  training cameras: given {_errors(given, truth)}; refined '
            f'{_errors(refined, truth)}; refined without the drift '
            f'{_errors(drift @ refined, truth)}')


if __name__ == '__main__':
  main()
