"""Renders a trained NeRF: ``python render.py --ckpt runs/demo``.

By default the scene's own camera path (a seamless 360-degree orbit, the
spiral of forward-facing captures, or a smooth path through a capture's
cameras; ``--trajectory``) is written as MP4 videos (colour and depth) to
``<ckpt>/render/``. ``--eval PATH`` instead renders every view of a
dataset and scores it (PSNR, SSIM) into ``metrics.json``.
"""

import json
import math
import os
import re
import warnings

from absl import app, flags

from nerf_jax import cli, commands
from nerf_jax.io import outputs

_CKPT = flags.DEFINE_string('ckpt', None, 'Training directory (workdir).')
_OUT = flags.DEFINE_string('out', None, 'Output folder (default <ckpt>/render).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default latest).')
_FRAMES = flags.DEFINE_integer('frames', 120,
                                'Frames of the video, 1 to 100000.')
_TRAJECTORY = flags.DEFINE_enum(
    'trajectory', 'auto', ['auto', 'orbit', 'spiral', 'smooth'],
    'Camera path: orbit (360 degrees around the scene centre), spiral '
    '(forward-facing captures), smooth (through the training cameras), or '
    'auto (the scene\'s own: spiral for LLFF, orbit otherwise).')
_ELEVATION = flags.DEFINE_float(
    'elevation', None, 'Orbit elevation in degrees above the horizon, -90 '
    'to 90 (default: fits the training cameras; 30 for the tiny lego).')
_RADIUS = flags.DEFINE_float(
    'radius', None, 'Orbit radius, positive (default: fits the training '
    'cameras).')
_SCALE = flags.DEFINE_float(
    'scale', 1.0, 'Resolution relative to training (positive; frames of at '
    'most 8192 pixels a side).')
_PATH = flags.DEFINE_string(
    'path', None, 'Camera path instead of the orbit: .npy or .json list of '
    'camera-to-world matrices (JSON may add "intrinsics"; the format and '
    'its ranges: cameras.paths.load_camera_path).')
_FORMAT = flags.DEFINE_enum('format', 'mp4', ['mp4', 'gif', 'png'],
                            'Video format (png: a folder of frames).')
_LAYOUT = flags.DEFINE_enum(
    'layout', 'separate', ['separate', 'side', 'rgb'],
    'separate: rgb and depth videos; side: one video, rgb | depth; rgb only.')
_FPS = flags.DEFINE_float('fps', 30.0, 'Frames per second, (0, 1000].')
_QUALITY = flags.DEFINE_float('quality', 8.0, 'MP4 quality, 0 (low) to 10.')
_CHUNK = flags.DEFINE_integer(
    'chunk', None, 'Rays per jit call (memory); default: the run\'s '
    'eval.chunk.')
_EVAL = flags.DEFINE_string(
    'eval', None, 'Evaluate on a dataset instead: a tiny .npz (all views), a '
    'Blender folder (--split), an LLFF folder or transforms.json capture '
    "(its held-out views) or 'config' (the training data, --split).")
_SPLIT = flags.DEFINE_string('split', None,
                             "Split for --eval (default 'test'; 'val' for "
                             "--eval=config).")
_APPEARANCE = flags.DEFINE_integer(
    'appearance', None, 'Runs with appearance codes: render with training '
    'view N\'s code (its exposure and white balance), or -1 for the mean '
    'code (the default). With --eval, every view is scored whole with it.')
_EVAL_APPEARANCE = flags.DEFINE_enum(
    'eval_appearance', None, ['mean', 'fit'], 'With --eval: score each view '
    'whole with the mean appearance code (mean), or as NeRF-W (fit: a code '
    'fitted to the left half of the photo, the right half scored); default: '
    'the run\'s eval.appearance.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
flags.mark_flag_as_required('ckpt')
cli.define_distributed_flags()


# Allowed flag values: (flag, test of a set value, what the test asks).
_RANGES = (
    (_FRAMES, lambda v: 1 <= v <= 100000, 'must be in [1, 100000]'),
    (_STEP, lambda v: v >= 0, 'must be 0 or more'),
    (_ELEVATION, lambda v: -90 <= v <= 90, 'must be in [-90, 90] degrees'),
    (_RADIUS, lambda v: 0 < v <= 1e6, 'must be in (0, 1e6]'),
    (_SCALE, lambda v: 0 < v < math.inf, 'must be positive'),
    (_FPS, lambda v: 0 < v <= 1000, 'must be in (0, 1000]'),
    (_QUALITY, lambda v: 0 <= v <= 10, 'must be in [0, 10]'),
    (_CHUNK, lambda v: v >= 1, 'must be at least 1'),
)


def _main(argv):
  cli.start(argv)
  # Refuse bad flags in one line before any heavy import or work.
  problem = _flag_problem()
  if problem:
    cli.fail(problem, code=2)
  # The MP4 writer starts ffmpeg with fork+exec, which is safe; JAX's generic
  # warning about forking a multithreaded process does not apply.
  warnings.filterwarnings('ignore', message=r'os\.fork\(\) was called')
  guarded = cli.run_guarded(
      _run, (ValueError,),
      memory_hint='lower --chunk (rays rendered at once) or --scale')
  guarded()


def _flag_problem() -> str:
  """The first flag out of its range (``_RANGES``, --out), or ''."""
  problem = cli.flag_problem(_RANGES)
  if problem:
    return problem
  if _OUT.value:
    return outputs.problem(_OUT.value, TOOL, outputs.CONTAINER, '--out')
  return ''


TOOL = 'render.py'
# The names render.py writes in its folder: <stem>_<rgb|depth|side>[.mp4|
# .gif] videos and eval_<data>_<split> folders (a <run>/render folder of an
# earlier nerf_jax holding only these is adopted as render.py's).
_OUTPUT_NAME = re.compile(r'^(.+_(rgb|depth|side)(\.mp4|\.gif)?|eval_.+)$')


def _output_folder(ckpt: str) -> str:
  """--out, or <ckpt>/render; checked (outputs.CONTAINER) and created."""
  from nerf_jax import distributed  # pylint: disable=g-import-not-at-top
  out_dir = _OUT.value or os.path.join(ckpt, 'render')
  what = '--out' if _OUT.value else 'output folder'
  if not _OUT.value:
    outputs.adopt(out_dir, TOOL, _OUTPUT_NAME.match)
  outputs.check(out_dir, TOOL, outputs.CONTAINER, what)
  if distributed.is_primary():  # every process renders; process 0 writes
    os.makedirs(out_dir, exist_ok=True)
  return out_dir


def _run():
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  from nerf_jax.inference import chunked  # pylint: disable=g-import-not-at-top
  from nerf_jax.io import video as video_lib  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top
  # The cheap inputs first, so their errors come before the checkpoint loads.
  path = paths.load_camera_path(_PATH.value) if (
      _PATH.value and not _EVAL.value) else None
  if _EVAL.value and _EVAL.value != 'config' and not os.path.exists(
      _EVAL.value):
    raise ValueError(f'--eval {_EVAL.value}: no such file or folder')
  ckpt = _CKPT.value
  config, info, model, variables, step = load.load_trained(
      ckpt, _STEP.value)
  if _APPEARANCE.value is not None:
    model.views.choose_appearance(_APPEARANCE.value)
  out_dir = _output_folder(ckpt)
  chunk = _chunk(config)
  render_fn = chunked.make_render_fn(model)
  if _EVAL.value:
    _evaluate(config, info, model, render_fn, variables, out_dir, step,
              chunk)
    return
  stem, poses, intrinsics = _plan_video(info, path)
  ext = {'mp4': '.mp4', 'gif': '.gif', 'png': ''}[_FORMAT.value]
  names = {'side': ['side'], 'rgb': ['rgb'], 'separate': ['rgb', 'depth']}
  files = {name: os.path.join(out_dir, f'{stem}_{name}{ext}')
           for name in names[_LAYOUT.value]}
  for file in files.values():
    outputs.check(file, TOOL, video_lib.video_kind(file))
  _video(info, render_fn, variables, poses, intrinsics, files, step, chunk)


def _evaluate(config, info, model, render_fn, variables, out_dir, step,
              chunk):
  import dataclasses  # pylint: disable=g-import-not-at-top
  from nerf_jax import datasets, distributed  # pylint: disable=g-import-not-at-top
  from nerf_jax.inference import appearance  # pylint: disable=g-import-not-at-top
  from nerf_jax.inference import evaluate as evaluate_lib  # pylint: disable=g-import-not-at-top
  path = _EVAL.value
  split_name = _SPLIT.value or ('val' if path == 'config' else 'test')
  # The scene the model was trained on fixes near/far and the background.
  split = datasets.load_eval_split(path, split_name, config.data,
                                   white_background=info.white_background)
  # Refined poses: the run's own training views as refined, others moved
  # with the training views' drift.
  split = dataclasses.replace(split, cameras=model.split_cameras(
      variables['params'], split.cameras,
      path == 'config' and split_name == 'train'))
  name = 'config' if path == 'config' else os.path.basename(
      os.path.normpath(path)).replace('.npz', '')
  image_dir = os.path.join(out_dir, f'eval_{name}_{split_name}')
  # A chosen code (--appearance) is scored as chosen: over the whole view.
  protocol = _EVAL_APPEARANCE.value or (
      'mean' if _APPEARANCE.value is not None else config.eval.appearance)
  if _APPEARANCE.value is not None and protocol == 'fit':
    raise ValueError('--appearance chooses the code every view renders '
                     'with, and --eval_appearance=fit fits each view its '
                     'own: pass one of them')
  fitter = (appearance.make_fitter(model)
            if appearance.fits(model, protocol) else None)
  evaluate = lambda folder: evaluate_lib.evaluate_split(
      render_fn, variables, split, info.near, info.far, chunk,
      image_dir=folder, protocol=protocol, fitter=fitter,
      seed=config.train.seed)
  if not distributed.is_primary():
    evaluate(None)
    return
  outputs.check(image_dir, TOOL, outputs.FOLDER)

  def write(folder):  # a complete new folder replaces an earlier one
    os.makedirs(folder)
    result = evaluate(folder)
    report = dict(psnr=result['psnr'], ssim=result['ssim'], step=step,
                  dataset=path, split=split_name, appearance=protocol,
                  views=result['views'])
    with open(os.path.join(folder, 'metrics.json'), 'w') as f:
      json.dump(report, f, indent=2)
    return result

  result = outputs.write(image_dir, TOOL, write, kind=outputs.FOLDER)
  print(f'{"view":>6} {"PSNR":>8} {"SSIM":>7}')
  for v in result['views']:
    print(f'{v["index"]:>6} {v["psnr"]:>8.2f} {v["ssim"]:>7.4f}')
  print(f'{"mean":>6} {result["psnr"]:>8.2f} {result["ssim"]:>7.4f}')
  if protocol == 'fit':
    print('scored on the right half of each view' + (
        ', rendered with a code fitted to its left half (NeRF-W)'
        if fitter else ''))
  print(f'wrote {image_dir}/metrics.json and {len(result["views"])} PNGs')


def _chunk(config) -> int:
  chunk = _CHUNK.value or int(config.eval.chunk)
  if chunk < 1:
    raise ValueError(f'the run\'s eval.chunk must be positive, got {chunk}; '
                     'pass --chunk')
  return chunk


def _plan_video(info, path) -> tuple:
  """(stem, poses f32[n, 4, 4], intrinsics) of the video: the --path file's
  or the --trajectory's, at --scale; ValueError for frames too large."""
  from nerf_jax.cameras import paths  # pylint: disable=g-import-not-at-top
  kind, poses, intrinsics = paths.plan_cameras(
      info, path, _TRAJECTORY.value, _FRAMES.value, _ELEVATION.value,
      _RADIUS.value, _SCALE.value)
  stem = kind or os.path.splitext(os.path.basename(_PATH.value))[0]
  return stem, poses, intrinsics


def _video(info, render_fn, variables, poses, intrinsics, files, step, chunk):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nerf_jax import distributed  # pylint: disable=g-import-not-at-top
  from nerf_jax.inference import chunked  # pylint: disable=g-import-not-at-top
  from nerf_jax.io import images, video as video_lib  # pylint: disable=g-import-not-at-top
  frames = chunked.render_sequence(
      render_fn, variables, poses, intrinsics, info.near, info.far,
      chunk, progress=_PROGRESS.value and distributed.is_primary(),
      ndc=info.ndc)
  if not distributed.is_primary():
    return
  rgb = frames['rgb']
  depth = images.depth_to_rgb(frames['depth'], frames['acc'],
                              info.background, info.extent == 'unbounded')
  written = []
  for name, file in files.items():
    video = (np.concatenate([rgb, depth], axis=2) if name == 'side' else
             dict(rgb=rgb, depth=depth)[name])
    written.append(video_lib.write_video(file, images.to_uint8(video),
                                         _FPS.value, _QUALITY.value, TOOL))
  print(f'rendered {len(poses)} frames at {intrinsics.width}x'
        f'{intrinsics.height} from step {step}:')
  for file in written:
    print(f'  {file}')


def main() -> None:
  """The command line: ``nerf-jax-render`` and ``python render.py``."""
  commands.adopt_main(__name__)
  app.run(_main, flags_parser=cli.parse_flags)
