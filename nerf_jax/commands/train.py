"""Trains a NeRF: ``python train.py --config tiny.py [--workdir DIR]``.

Any config field can be overridden, e.g. ``--config.train.max_steps=500``.
Re-running the same command resumes from the latest checkpoint in the workdir.

Several processes (hosts) train one model together when started with
``--distributed`` (cluster detected by JAX) or with ``--coordinator HOST:PORT
--num_processes N --process_id I`` each; see the README.
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

from nerf_jax import cli, commands, faults

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file: a path, or a name in configs/ (tiny.py).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Output directory (default: runs/<config name>).')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
_VIEWER = flags.DEFINE_bool(
    'viewer', False, 'Serve a web viewer of the model as it trains (see '
    'view.py).')
_VIEWER_SHARE = flags.DEFINE_float(
    'viewer_share', 0.25, 'Largest fraction of the time --viewer may spend '
    'rendering, (0, 1] (training slows by about this much while a client '
    'moves the camera on a CPU).')
_VIEWER_PORT = flags.DEFINE_integer(
    'viewer_port', 8080, 'Port of --viewer, 0 to 65535 (0: any free port; '
    'in use: the next free one).')
flags.mark_flag_as_required('config')
cli.define_distributed_flags()

# Allowed flag values: (flag, test of a set value, what the test asks).
_RANGES = (
    (_VIEWER_PORT, lambda v: 0 <= v <= 65535, 'must be in [0, 65535]'),
    (_VIEWER_SHARE, lambda v: 0 < v <= 1, 'must be in (0, 1]'),
)


def _main(argv):
  cli.start(argv)
  problem = cli.flag_problem(_RANGES) or faults.spec_problem()
  if problem:
    cli.fail(problem, code=2)
  # Imported here so --help stays fast.
  from nerf_jax import distributed  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import loop  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join('runs', cli.config_name(sys.argv))
  live = _live_viewer()
  # Every error meant for the user (errors.UserError) is one line; see
  # cli.run_guarded for out of memory, a full disk and the rest.
  guarded = cli.run_guarded(
      loop.train_and_evaluate,
      memory_hint='lower train.batch_rays or eval.chunk')
  try:
    record = guarded(config, workdir, progress=_PROGRESS.value, live=live)
  finally:
    if live is not None:
      live.close()
  if distributed.is_primary():
    print(f'step {record["step"]}: held-out PSNR {record["psnr"]:.2f} dB, '
          f'SSIM {record["ssim"]:.3f}; outputs in {workdir}')


def _live_viewer():
  """The --viewer hook (``nerf_jax.viewer.live.LiveTraining``), or None."""
  if not _VIEWER.value:
    return None
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() > 1:
    cli.fail('--viewer serves a single-process training only', code=2)
  from nerf_jax.viewer import live  # pylint: disable=g-import-not-at-top
  return live.LiveTraining(port=_VIEWER_PORT.value,
                           max_busy=_VIEWER_SHARE.value)


def main() -> None:
  """The command line: ``nerf-jax-train`` and ``python train.py``."""
  commands.adopt_main(__name__)
  sys.argv = cli.resolve_config_arg(sys.argv)
  app.run(_main, flags_parser=cli.parse_flags)
