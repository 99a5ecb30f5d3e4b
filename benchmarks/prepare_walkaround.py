"""prepare.py on a synthetic 250-photo walk-around: time per stage and the
share registered, exhaustive against retrieval matching.

  .venv/bin/python benchmarks/prepare_walkaround.py --num 250 \\
      --matchers retrieval --photos /tmp/walk250
  .venv/bin/python benchmarks/prepare_walkaround.py --num 100 \\
      --matchers exhaustive,retrieval --shuffle

The photos are the built-in procedural scene inside its textured ground and
dome (``procedural.trace(environment=True)``), each surface point's colour
times a solid value-noise texture (a function of the 3D point, so every
view sees the same texture: SIFT finds about 1,100 keypoints in a 320x240
photo, against 120 without it). The cameras walk twice around the objects,
at 15 and 35 degrees of elevation, 4 units from the centre, looking at it
with a little jitter; files are named in walking order (``--shuffle``:
in a random order, as unordered photos). Each matcher runs the same
pipeline as ``prepare.py PHOTOS --out SCENE --matcher M --max_size 0``; the
registered cameras are compared with the true ones after a similarity.
"""

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nerf_jax.cameras import camera  # pylint: disable=g-import-not-at-top,wrong-import-position
from nerf_jax.datasets import procedural  # pylint: disable=g-import-not-at-top,wrong-import-position


def value_noise(q: np.ndarray, seed: int, size: int = 64) -> np.ndarray:
  """Smooth value noise in [0, 1] at points q f[..., 3] (lattice step 1)."""
  table = np.random.default_rng(seed).random((size,) * 3)
  f = np.floor(q)
  w = (q - f) ** 2 * (3 - 2 * (q - f))  # smoothstep weights
  i = f.astype(np.int64)
  out = 0.0
  for corner in np.ndindex(2, 2, 2):
    weight = np.prod([w[..., a] if c else 1 - w[..., a]
                      for a, c in enumerate(corner)], axis=0)
    out = out + weight * table[tuple((i[..., a] + c) % size
                                     for a, c in enumerate(corner))]
  return out


def render(c2w: np.ndarray, intrinsics) -> np.ndarray:
  """One textured view: u8[h, w, 3]."""
  rows, cols = np.meshgrid(np.arange(intrinsics.height),
                           np.arange(intrinsics.width), indexing='ij')
  dirs = camera.pixel_directions(intrinsics, rows, cols, xnp=np)
  rays = camera.camera_rays(np.asarray(c2w, np.float32)[None, None], dirs,
                            0.0, 1.0, xnp=np)
  rgb, depth, _ = procedural.trace(rays.origins, rays.directions,
                                   environment=True)
  p = rays.origins + depth[..., None] * rays.directions
  # Far points (ground, dome) are textured by their direction, near ones by
  # their position: a texture of about the same scale in every photo.
  q = p * np.minimum(1.0, 4.0 / np.linalg.norm(p, axis=-1, keepdims=True))
  tex = 0.55 * value_noise(q * 9, 0) + 0.45 * value_noise(q * 23, 1)
  rgb = np.clip(rgb * (0.45 + 0.9 * tex[..., None]), 0, 1)
  return (rgb * 255 + 0.5).astype(np.uint8)


def walkaround_poses(num: int, rng: np.random.Generator, laps: int = 2,
                     arc_deg: float = 360.0) -> np.ndarray:
  """Laps around the objects (15 degrees up, then 35; one lap: 25), each
  over ``arc_deg`` of azimuth: f32[num, 4, 4]."""
  lap = np.arange(num) * laps // num
  per_lap = -(-num // laps)
  azimuth = np.deg2rad(arc_deg * (np.arange(num) % per_lap) / per_lap
                       + rng.normal(0, 0.5, num))
  heights = np.linspace(15.0, 35.0, laps) if laps > 1 else np.array([25.0])
  elevation = np.deg2rad(heights[lap] + rng.normal(0, 1.0, num))
  eyes = procedural.CAMERA_RADIUS * np.stack(
      [np.cos(elevation) * np.cos(azimuth),
       np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], axis=-1)
  targets = rng.normal(0, 0.1, (num, 3))
  return np.stack([camera.look_at(e, t) for e, t in zip(eyes, targets)])


def make_photos(folder: str, num: int, width: int, height: int,
                shuffle: bool, laps: int = 2, arc_deg: float = 360.0
                ) -> dict:
  """Writes the photos (reused when the folder holds them): name -> c2w."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  poses = walkaround_poses(num, rng, laps, arc_deg)
  order = rng.permutation(num) if shuffle else np.arange(num)
  names = {f'{order[i]:04d}.png': poses[i] for i in range(num)}
  os.makedirs(folder, exist_ok=True)
  intrinsics = procedural.default_intrinsics(width, height)
  start = time.perf_counter()
  for name, c2w in names.items():
    path = os.path.join(folder, name)
    if not os.path.exists(path):
      Image.fromarray(render(c2w, intrinsics)).save(path)
  print(f'photos: {num} at {width}x{height} in {folder} '
        f'({time.perf_counter() - start:.0f} s)')
  return names


def run(photos: str, truth: dict, matcher: str, threads: int) -> dict:
  """prepare_scene with one matcher: its stage times and accuracy."""
  from nerf_jax.sfm import prepare  # pylint: disable=g-import-not-at-top
  from nerf_jax.sfm import transforms  # pylint: disable=g-import-not-at-top
  tmp = tempfile.mkdtemp(prefix='prepare_walkaround-')
  start = time.perf_counter()
  try:
    result = prepare.prepare_scene(photos, os.path.join(tmp, 'scene'),
                                   max_size=0, matcher=matcher,
                                   num_threads=threads, stream=sys.stdout)
  finally:
    total = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)
  frames = result.transforms['frames']
  ours = np.array([f['transform_matrix'] for f in frames])
  theirs = np.stack([truth[os.path.basename(f['file_path'])] for f in frames])
  err = transforms.alignment_errors(ours, theirs.astype(np.float64))
  return dict(matcher=result.stats.matcher, times=result.times, total=total,
              registered=result.num_registered, images=result.num_images,
              pairs=result.stats.num_pairs,
              verified=result.stats.num_verified_pairs, err=err)


def report(r: dict):
  print(f'\n{r["matcher"]}: {r["pairs"]} pairs ({r["verified"]} verified), '
        f'{r["registered"]} of {r["images"]} registered '
        f'({100 * r["registered"] / r["images"]:.1f} %)')
  for stage, seconds in r['times'].items():
    print(f'  {stage:<10} {seconds:8.1f} s')
  print(f'  {"total":<10} {r["total"]:8.1f} s')
  err = r['err']
  print(f'  centres: RMS {100 * err["rms_relative"]:.2f} % of the spread; '
        f'rotations mean {err["rot_mean_deg"]:.2f}, max '
        f'{err["rot_max_deg"]:.2f} deg')


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--num', type=int, default=250)
  parser.add_argument('--width', type=int, default=320)
  parser.add_argument('--height', type=int, default=240)
  parser.add_argument('--matchers', default='exhaustive,retrieval')
  parser.add_argument('--shuffle', action='store_true',
                      help='name the photos in a random order')
  parser.add_argument('--threads', type=int, default=-1)
  parser.add_argument('--photos', default=None,
                      help='keep (and reuse) the photos here')
  args = parser.parse_args()
  import pycolmap  # pylint: disable=g-import-not-at-top
  photos = args.photos or tempfile.mkdtemp(prefix='walkaround-photos-')
  truth = make_photos(photos, args.num, args.width, args.height, args.shuffle)
  print(f'machine: {os.cpu_count()} CPU cores, {platform.machine()}, '
        f'pycolmap {pycolmap.__version__}')
  results = [run(photos, truth, m, args.threads)
             for m in args.matchers.split(',')]
  for r in results:
    report(r)
  if not args.photos:
    shutil.rmtree(photos, ignore_errors=True)


if __name__ == '__main__':
  main()
