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

from nerf_jax import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file: a path, or a name in configs/ (tiny.py).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Output directory (default: runs/<config name>).')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar.')
flags.mark_flag_as_required('config')
cli.define_distributed_flags()


def main(argv):
  cli.start(argv)
  # Imported here so --help stays fast.
  from nerf_jax import distributed, train_lib  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  workdir = _WORKDIR.value or os.path.join('runs', cli.config_name(sys.argv))
  # Every error meant for the user (errors.UserError) is one line; see
  # cli.run_guarded for out of memory, a full disk and the rest.
  guarded = cli.run_guarded(
      train_lib.train_and_evaluate,
      memory_hint='lower train.batch_rays or eval.chunk')
  record = guarded(config, workdir, progress=_PROGRESS.value)
  if distributed.is_primary():
    print(f'step {record["step"]}: held-out PSNR {record["psnr"]:.2f} dB, '
          f'SSIM {record["ssim"]:.3f}; outputs in {workdir}')


if __name__ == '__main__':
  sys.argv = cli.resolve_config_arg(sys.argv)
  app.run(main, flags_parser=cli.parse_flags)
