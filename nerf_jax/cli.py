"""Shared plumbing of the command-line entry points."""

from __future__ import annotations

import os
import sys
from typing import Callable

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'configs')


def resolve_config_arg(argv: list) -> list:
  """Lets ``--config tiny.py`` (or ``tiny``) mean ``configs/tiny.py``.

  Rewrites the first ``--config`` argument of ``argv`` (both ``--config X`` and
  ``--config=X`` forms) when X is not an existing file but names one in
  ``configs/``. A config-file override suffix ``:arg`` is preserved.
  """
  argv = list(argv)
  for i, arg in enumerate(argv):
    if arg == '--config' and i + 1 < len(argv):
      argv[i + 1] = _resolve(argv[i + 1])
      break
    if arg.startswith('--config='):
      argv[i] = '--config=' + _resolve(arg[len('--config='):])
      break
  return argv


def _resolve(value: str) -> str:
  path, sep, suffix = value.partition(':')
  if os.path.isfile(path):
    return value
  for candidate in (path, path + '.py'):
    full = os.path.join(CONFIGS_DIR, os.path.basename(candidate))
    if os.path.isfile(full) and os.path.dirname(candidate) in ('', 'configs'):
      return full + sep + suffix
  return value


def config_name(argv: list) -> str:
  """The stem of the --config file, e.g. 'tiny' for configs/tiny.py."""
  value = _config_file(argv)
  return os.path.splitext(os.path.basename(value))[0] if value else 'run'


def define_distributed_flags() -> None:
  """The flags that join a multi-process run (see ``start``)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_bool(
      'distributed', False, 'Join a multi-process run, letting JAX detect the '
      'cluster (Cloud TPU pod, SLURM, Open MPI, or JAX_COORDINATOR_ADDRESS, '
      'JAX_NUM_PROCESSES and JAX_PROCESS_ID).')
  flags.DEFINE_string('coordinator', '', 'host:port of process 0, for a '
                      'multi-process run started by hand (with '
                      '--num_processes and --process_id).')
  flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
  flags.DEFINE_integer('process_id', None, 'This process, 0 .. '
                       'num_processes - 1 (0 writes the outputs).')


def start(argv: list) -> None:
  """What every entry point does first: refuse stray arguments, quiet logs,
  and join the multi-process run if the distributed flags ask for one."""
  from absl import flags, logging  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    fail(f'unexpected arguments: {" ".join(argv[1:])}')
  logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  if 'distributed' not in f:
    return
  from nerf_jax import distributed  # pylint: disable=g-import-not-at-top
  try:
    distributed.initialize(f.coordinator, f.num_processes, f.process_id,
                           auto=f.distributed)
  except distributed.DistributedError as e:
    fail(str(e), code=2)


def parse_flags(argv: list) -> list:
  """absl flag parsing with one clear error line instead of a traceback.

  Use as ``app.run(main, flags_parser=cli.parse_flags)``.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  config_file = _config_file(argv)
  if config_file is not None and not os.path.isfile(config_file):
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(CONFIGS_DIR)
                   if f.endswith('.py') and f not in ('__init__.py', 'base.py'))
    fail(f'config file {config_file!r} not found (built-in configs: '
         f'{", ".join(names)})', code=2)
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    unknown = _first_unknown_override(argv, config_file)
    if unknown:
      fail(unknown, code=2)
    fail(str(e).strip().splitlines()[0], code=2)


def _config_file(argv: list):
  for i, arg in enumerate(argv):
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1].partition(':')[0]
    if arg.startswith('--config='):
      return arg[len('--config='):].partition(':')[0]
  return None


def _first_unknown_override(argv: list, config_file) -> str:
  """Describes the first ``--config.a.b=`` override naming no config field."""
  if not config_file:
    return ''
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('_cfg', config_file)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
    config = module.get_config()
  except Exception:  # pylint: disable=broad-except
    return ''
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.'):].partition('=')[0].split('.')
    node = config
    for depth, key in enumerate(path):
      if not hasattr(node, 'keys') or key not in node:
        where = '.'.join(path[:depth]) or 'config'
        known = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else ''
        return (f'unknown config key {".".join(path)!r}: {where} has no field '
                f'{key!r} (known: {known})')
      node = node[key]
  return ''


def fail(message: str, code: int = 1):
  """Prints one error line and exits."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def run_guarded(fn: Callable, errors: tuple) -> Callable:
  """Wraps ``fn`` so that the expected error types print one line and exit 1."""

  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except errors as e:
      fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    except KeyboardInterrupt:
      fail('interrupted; the latest checkpoint is kept', code=130)

  return wrapped
