"""A web viewer of a trained NeRF: ``python view.py --ckpt runs/demo``.

Open the printed URL (with its secret ``?token=``; other pages are refused)
in a browser: the model renders the browser's camera (a quarter-resolution
frame while it moves, the full frame when it rests),
in colour, depth or accumulation; the training cameras are shown as
frustums with their images (click one to look through it). Place keyframes
and save a camera path as JSON for ``render.py --ckpt RUN --path FILE``.
When a training in another process saves a newer checkpoint in the run, the
viewer loads it. Ctrl-C stops the viewer.
"""

import time

from absl import app, flags

from nerf_jax import cli, commands

_CKPT = flags.DEFINE_string('ckpt', None, 'Training directory (workdir).')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default latest; '
                             'a given step is not replaced by newer ones).')
_HOST = flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on '
                            '(0.0.0.0: every network interface: anyone there '
                            'with the printed token URL can use the viewer; '
                            'see the README).')
_PORT = flags.DEFINE_integer(
    'port', 8080, 'Port to listen on, 0 to 65535 (0: any free port; a port '
    'in use: the next free one; the URL is printed).')
_RESOLUTION = flags.DEFINE_integer(
    'resolution', 256, 'Pixels along the longer side of still frames, 8 to '
    '2048 (a quarter while the camera moves; also set in the page).')
_CHUNK = flags.DEFINE_integer(
    'chunk', 4096, 'Rays per jit call of still frames, 16 to 1048576 '
    '(moving frames: a quarter; smaller chunks supersede sooner).')
flags.mark_flag_as_required('ckpt')

# Allowed flag values: (flag, test of a set value, what the test asks).
_RANGES = (
    (_STEP, lambda v: v >= 0, 'must be 0 or more'),
    (_PORT, lambda v: 0 <= v <= 65535, 'must be in [0, 65535]'),
    (_RESOLUTION, lambda v: 8 <= v <= 2048, 'must be in [8, 2048]'),
    (_CHUNK, lambda v: 16 <= v <= 2 ** 20, 'must be in [16, 1048576]'),
)


def _main(argv):
  cli.start(argv)
  # Refuse bad flags in one line before any heavy import or work.
  problem = cli.flag_problem(_RANGES)
  if problem:
    cli.fail(problem, code=2)
  guarded = cli.run_guarded(_run, (ValueError, OSError),
                            memory_hint='lower --chunk or --resolution')
  guarded()


def _run():
  from nerf_jax import errors  # pylint: disable=g-import-not-at-top
  from nerf_jax.runs import load  # pylint: disable=g-import-not-at-top
  from nerf_jax.viewer import server  # pylint: disable=g-import-not-at-top
  ckpt = _CKPT.value
  config, info, model, variables, step = load.load_trained(
      ckpt, _STEP.value)
  viewer = server.Viewer(model, info, variables, step, host=_HOST.value,
                         port=_PORT.value, chunk=_CHUNK.value,
                         resolution=_RESOLUTION.value, workdir=ckpt)
  print(f'compiling the renderer for step {step} of {ckpt}', flush=True)
  viewer.compile()
  try:
    url = viewer.start()
    viewer.gui.load_training_images(
        lambda: server.training_images(config))
    if _STEP.value is None:
      viewer.follow_checkpoints(
          lambda s: load.load_trained(ckpt, s, warn=False)[3])
    print(f'viewer ready at {url} (Ctrl-C to stop)', flush=True)
    while True:
      time.sleep(3600)
  except (KeyboardInterrupt, errors.Interrupted):  # Ctrl-C, SIGTERM
    print('viewer stopped', flush=True)
  finally:
    viewer.close()


def main() -> None:
  """The command line: ``nerf-jax-view`` and ``python view.py``."""
  commands.adopt_main(__name__)
  app.run(_main, flags_parser=cli.parse_flags)
