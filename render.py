"""Renders a trained NeRF: ``python render.py --ckpt runs/demo``.

By default the scene's own camera path (a seamless 360-degree orbit, the
spiral of forward-facing captures, or a smooth path through a capture's
cameras; ``--trajectory``) is written as MP4 videos (colour and depth) to
``<ckpt>/render/``. ``--eval PATH`` instead renders every view of a
dataset and scores it (PSNR, SSIM) into ``metrics.json``.
"""

import json
import os
import warnings

from absl import app, flags

from nerf_jax import cli

_CKPT = flags.DEFINE_string('ckpt', None, 'Training directory (workdir).')
_OUT = flags.DEFINE_string('out', None, 'Output folder (default <ckpt>/render).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default latest).')
_FRAMES = flags.DEFINE_integer('frames', 120, 'Frames of the video.')
_TRAJECTORY = flags.DEFINE_enum(
    'trajectory', 'auto', ['auto', 'orbit', 'spiral', 'smooth'],
    'Camera path: orbit (360 degrees around the scene centre), spiral '
    '(forward-facing captures), smooth (through the training cameras), or '
    'auto (the scene\'s own: spiral for LLFF, orbit otherwise).')
_ELEVATION = flags.DEFINE_float(
    'elevation', None, 'Orbit elevation in degrees above the horizon '
    '(default: fits the training cameras; 30 for the tiny lego).')
_RADIUS = flags.DEFINE_float(
    'radius', None, 'Orbit radius (default: fits the training cameras).')
_SCALE = flags.DEFINE_float('scale', 1.0, 'Resolution relative to training.')
_PATH = flags.DEFINE_string(
    'path', None, 'Camera path instead of the orbit: .npy or .json list of '
    'camera-to-world matrices (JSON may add "intrinsics").')
_FORMAT = flags.DEFINE_enum('format', 'mp4', ['mp4', 'gif', 'png'],
                            'Video format (png: a folder of frames).')
_LAYOUT = flags.DEFINE_enum(
    'layout', 'separate', ['separate', 'side', 'rgb'],
    'separate: rgb and depth videos; side: one video, rgb | depth; rgb only.')
_FPS = flags.DEFINE_float('fps', 30.0, 'Frames per second.')
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
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
flags.mark_flag_as_required('ckpt')
cli.define_distributed_flags()


def main(argv):
  cli.start(argv)
  # The MP4 writer starts ffmpeg with fork+exec, which is safe; JAX's generic
  # warning about forking a multithreaded process does not apply.
  warnings.filterwarnings('ignore', message=r'os\.fork\(\) was called')
  from nerf_jax import datasets, train_lib  # pylint: disable=g-import-not-at-top
  guarded = cli.run_guarded(
      _run, (datasets.DatasetError, train_lib.CheckpointError, ValueError))
  guarded()


def _run():
  from nerf_jax import distributed, render_lib, train_lib  # pylint: disable=g-import-not-at-top
  ckpt = _CKPT.value
  config, info, model, variables, step = train_lib.load_trained(
      ckpt, _STEP.value)
  render_fn = render_lib.make_render_fn(model)
  out_dir = _OUT.value or os.path.join(ckpt, 'render')
  if distributed.is_primary():  # every process renders; process 0 writes
    os.makedirs(out_dir, exist_ok=True)
  if _EVAL.value:
    _evaluate(config, info, render_fn, variables, out_dir, step)
  else:
    _video(info, render_fn, variables, out_dir, step, _chunk(config))


def _evaluate(config, info, render_fn, variables, out_dir, step):
  from nerf_jax import datasets, distributed, render_lib  # pylint: disable=g-import-not-at-top
  path = _EVAL.value
  split_name = _SPLIT.value or ('val' if path == 'config' else 'test')
  # The scene the model was trained on fixes near/far and the background.
  split = datasets.load_eval_split(path, split_name, config.data,
                                   white_background=info.white_background)
  name = 'config' if path == 'config' else os.path.basename(
      os.path.normpath(path)).replace('.npz', '')
  image_dir = os.path.join(out_dir, f'eval_{name}_{split_name}')
  primary = distributed.is_primary()
  if primary:
    os.makedirs(image_dir, exist_ok=True)
  result = render_lib.evaluate_split(render_fn, variables, split, info.near,
                                     info.far, _chunk(config),
                                     image_dir=image_dir if primary else None)
  if not primary:
    return
  report = dict(psnr=result['psnr'], ssim=result['ssim'], step=step,
                dataset=path, split=split_name, views=result['views'])
  with open(os.path.join(image_dir, 'metrics.json'), 'w') as f:
    json.dump(report, f, indent=2)
  print(f'{"view":>6} {"PSNR":>8} {"SSIM":>7}')
  for v in result['views']:
    print(f'{v["index"]:>6} {v["psnr"]:>8.2f} {v["ssim"]:>7.4f}')
  print(f'{"mean":>6} {result["psnr"]:>8.2f} {result["ssim"]:>7.4f}')
  print(f'wrote {image_dir}/metrics.json and {len(result["views"])} PNGs')


def _chunk(config) -> int:
  chunk = _CHUNK.value or int(config.eval.chunk)
  if chunk < 1:
    raise ValueError(f'--chunk must be positive, got {chunk}')
  return chunk


def _video(info, render_fn, variables, out_dir, step, chunk):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nerf_jax import camera, distributed, render_lib, viz  # pylint: disable=g-import-not-at-top
  intrinsics = info.intrinsics
  if _PATH.value:
    poses, path_intrinsics = render_lib.load_camera_path(_PATH.value)
    if path_intrinsics:
      intrinsics = camera.Intrinsics(**path_intrinsics)
    stem = os.path.splitext(os.path.basename(_PATH.value))[0]
  else:
    stem, poses = render_lib.camera_path(info, _TRAJECTORY.value,
                                         _FRAMES.value, _ELEVATION.value,
                                         _RADIUS.value)
  if _SCALE.value != 1.0:
    intrinsics = intrinsics.scaled(_SCALE.value)
  frames = render_lib.render_sequence(
      render_fn, variables, poses, intrinsics, info.near, info.far,
      chunk, progress=_PROGRESS.value and distributed.is_primary(),
      ndc=info.ndc)
  if not distributed.is_primary():
    return
  background = info.background
  rgb = frames['rgb']
  depth = render_lib.depth_to_rgb(frames['depth'], frames['acc'], background)
  ext = {'mp4': '.mp4', 'gif': '.gif', 'png': ''}[_FORMAT.value]
  outputs = []
  write = lambda name, x: outputs.append(render_lib.write_video(
      os.path.join(out_dir, name + ext), viz.to_uint8(x),
      _FPS.value, _QUALITY.value))
  if _LAYOUT.value == 'side':
    write(f'{stem}_side', np.concatenate([rgb, depth], axis=2))
  else:
    write(f'{stem}_rgb', rgb)
    if _LAYOUT.value == 'separate':
      write(f'{stem}_depth', depth)
  print(f'rendered {len(poses)} frames at {intrinsics.width}x'
        f'{intrinsics.height} from step {step}:')
  for path in outputs:
    print(f'  {path}')


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
