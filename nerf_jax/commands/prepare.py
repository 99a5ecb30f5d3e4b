"""Makes a scene from a capture: ``prepare.py PHOTOS_OR_VIDEO --out SCENE``.

Runs structure from motion (pycolmap on the CPU: SIFT features, matching,
incremental mapping) on a folder of photos or on frames picked from a video,
and writes an instant-ngp / nerfstudio scene::

  SCENE/transforms.json   intrinsics (fl_x fl_y cx cy w h k1 k2 p1 p2),
                          aabb_scale and a camera-to-world matrix per image
  SCENE/images/           the photos or frames, downscaled to --max_size
  SCENE/colmap/           COLMAP's database and sparse model

Examples::

  python prepare.py ~/captures/mug --out data/mug
  python prepare.py walkaround.mp4 --out data/walk --max_frames 120

An existing non-empty SCENE is never touched without --overwrite, and even
then only a scene that prepare.py wrote and nobody changed since is replaced
(nerf_jax/io/outputs.py); the scene is built in a temporary folder beside it
and moved into place when complete. Ctrl-C or SIGTERM stops it at once
(COLMAP runs in a child process, ``nerf_jax.sfm.child.run_colmap_apart``) with
one line, leaving nothing behind.
"""

import sys

from absl import app, flags

from nerf_jax import cli, commands

_OUT = flags.DEFINE_string('out', None, 'Scene folder to write.')
_MAX_SIZE = flags.DEFINE_integer(
    'max_size', 1600, 'Longest image side, in pixels, that photos and frames '
    'are downscaled to before SfM and writing: 32 to 16384 (0: keep the '
    'original size).')
_MAX_FRAMES = flags.DEFINE_integer(
    'max_frames', 150, 'Video: about how many frames to keep (the sharpest '
    'of each run of consecutive frames).')
_FPS = flags.DEFINE_float(
    'fps', 0.0, 'Video: decode this many frames per second before picking '
    '(0: every frame).')
_BLUR_KEEP = flags.DEFINE_float(
    'blur_keep', 0.3, 'Drop images whose sharpness (variance of the '
    'Laplacian) is below this fraction of the median (0: keep all).')
_MATCHER = flags.DEFINE_enum(
    'matcher', 'auto',
    ['auto', 'exhaustive', 'sequential', 'retrieval', 'vocab_tree'],
    'Feature matching: every pair (exhaustive, quadratic in the number of '
    'images); each image with its neighbours in name order (sequential); '
    'with its 10 next in name order and its 10 most similar images found '
    'from its own SIFT features (retrieval: linear, for ordered or '
    "unordered photos, no download); COLMAP's vocabulary tree "
    '(vocab_tree, needs --vocab_tree). auto: exhaustive up to 60 images, '
    'retrieval above.')
_VOCAB_TREE = flags.DEFINE_string(
    'vocab_tree', None, 'A COLMAP vocabulary tree file for --matcher '
    "vocab_tree (downloaded by you from COLMAP's site; never fetched "
    'here).')
_CAMERA_MODEL = flags.DEFINE_enum(
    'camera_model', 'OPENCV',
    ['OPENCV', 'RADIAL', 'SIMPLE_RADIAL', 'PINHOLE', 'SIMPLE_PINHOLE'],
    'COLMAP camera model. OPENCV: fx fy cx cy k1 k2 p1 p2.')
_FOCAL_FACTOR = flags.DEFINE_float(
    'focal_factor', 0.8, 'Starting focal length over the longest image side '
    'for images whose EXIF gives none (video frames): 0.8 suits phones (26 '
    "mm equivalent); COLMAP's own default is 1.2. SfM refines it.")
_SINGLE_CAMERA = flags.DEFINE_bool(
    'single_camera', True, 'One camera shared by all images (one device, '
    'fixed zoom); --nosingle_camera gives each image its own intrinsics.')
_AABB_SCALE = flags.DEFINE_integer(
    'aabb_scale', 0, "transforms.json's aabb_scale, a power of 2 up to 128: "
    "the scene box is instant-ngp's unit cube (half-width 1.5 here) times "
    'it. 0: the smallest that holds every camera (4 for a capture around an '
    'object, as the published fox; larger boxes spread the model thinner).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False,
                               'Replace an earlier scene that prepare.py wrote at --out (never '
                               'a folder holding anything else).')
_THREADS = flags.DEFINE_integer('threads', -1, 'CPU threads (-1: all).')
_SEED = flags.DEFINE_integer(
    'seed', 0, 'Random seed of COLMAP (mapping retries with seed+1, seed+2 '
    'when the model disagrees with the pairwise matches).')
_VERBOSE = flags.DEFINE_bool(
    'verbose', False, "Show COLMAP's own log (and, on an error, the Python "
    'traceback).')
flags.mark_flag_as_required('out')


# Allowed flag values: (flag, test, what the test asks). NaN fails every
# test. (nerf_jax.sfm.prepare checks the same for callers of the library.)
_RANGES = (
    (_MAX_SIZE, lambda v: v == 0 or 32 <= v <= 16384,
     'must be 0 (keep) or in [32, 16384] pixels'),
    (_MAX_FRAMES, lambda v: 1 <= v <= 100000, 'must be in [1, 100000]'),
    (_FPS, lambda v: 0 <= v <= 1000, 'must be 0 (all frames) or in (0, 1000]'),
    (_BLUR_KEEP, lambda v: 0 <= v < 1, 'must be in [0, 1)'),
    (_FOCAL_FACTOR, lambda v: 0.1 <= v <= 10, 'must be in [0.1, 10]'),
    (_AABB_SCALE, lambda v: v in (0, 1, 2, 4, 8, 16, 32, 64, 128),
     'must be 0 (auto) or a power of 2 from 1 to 128'),
    (_THREADS, lambda v: v == -1 or 1 <= v <= 4096,
     'must be -1 (all) or in [1, 4096]'),
    (_SEED, lambda v: 0 <= v <= 2**30, f'must be in [0, {2**30}]'),
)


def _main(argv):
  if len(argv) != 2:
    cli.fail('expected one input, a folder of photos or a video: '
             'python prepare.py PHOTOS_OR_VIDEO --out SCENE'
             + (f' (got {len(argv) - 1}: {" ".join(argv[1:])})'
                if len(argv) > 2 else ''), code=2)
  problem = cli.flag_problem(_RANGES)
  if problem:
    cli.fail(problem, code=2)
  if not _OUT.value.strip():
    cli.fail('--out must name a folder', code=2)
  cli.start(argv[:1])
  result = cli.run_guarded(_run, (OSError,))(argv[1])
  print(f'wrote {result.out}/transforms.json: {result.num_registered} of '
        f'{result.num_images} images registered, '
        f'{sum(result.times.values()):.0f} s')


def _run(source):
  from nerf_jax import errors  # pylint: disable=g-import-not-at-top
  from nerf_jax.sfm import prepare  # pylint: disable=g-import-not-at-top
  try:
    return prepare.prepare_scene(
        source, _OUT.value, max_size=_MAX_SIZE.value,
        max_frames=_MAX_FRAMES.value, fps=_FPS.value,
        blur_keep=_BLUR_KEEP.value, matcher=_MATCHER.value,
        vocab_tree=_VOCAB_TREE.value,
        camera_model=_CAMERA_MODEL.value, single_camera=_SINGLE_CAMERA.value,
        focal_factor=_FOCAL_FACTOR.value,
        aabb_scale=_AABB_SCALE.value, overwrite=_OVERWRITE.value,
        num_threads=_THREADS.value, seed=_SEED.value, verbose=_VERBOSE.value,
        stream=sys.stdout)
  except KeyboardInterrupt:
    print(file=sys.stdout)
    cli.fail(f'interrupted; {_OUT.value} was not changed', code=130)
  except errors.Interrupted as e:  # SIGTERM (cli.start)
    cli.fail(f'{e}; {_OUT.value} was not changed', code=e.exit_code)


def main() -> None:
  """The command line: ``nerf-jax-prepare`` and ``python prepare.py``."""
  commands.adopt_main(__name__)
  app.run(_main, flags_parser=cli.parse_flags)
