"""Shared plumbing of the command-line entry points."""

from __future__ import annotations

import importlib.resources
import os
import sys
from typing import Callable

from nerf_jax import configs


def resolve_config_arg(argv: list) -> list:
  """Lets ``--config tiny.py`` (or ``tiny``, or ``configs/tiny.py`` where no
  such file is) mean the built-in config ``nerf_jax/configs/tiny.py``.

  Rewrites the first ``--config`` argument of ``argv`` (both ``--config X`` and
  ``--config=X`` forms) when X is not an existing file but names a built-in
  config (``builtin_config_file``). A config-file override suffix ``:arg`` is
  preserved.
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
  if os.path.isfile(path) or os.path.dirname(path) not in ('', 'configs'):
    return value
  for candidate in (path, path + '.py'):
    full = builtin_config_file(os.path.basename(candidate))
    if full:
      return full + sep + suffix
  return value


def builtin_config_file(name: str) -> str | None:
  """The path of the built-in config file ``name`` ('tiny.py'), or None.

  The configs ship inside the package (``nerf_jax.configs``) and are found
  through it, wherever the package is installed.
  """
  entry = importlib.resources.files(configs).joinpath(name)
  return str(entry) if name and entry.is_file() else None


def builtin_config_names() -> list:
  """The names of the built-in configs ('demo', 'tiny', ...), sorted."""
  return sorted(
      os.path.splitext(entry.name)[0]
      for entry in importlib.resources.files(configs).iterdir()
      if entry.name.endswith('.py')
      and entry.name not in ('__init__.py', 'base.py'))


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
  if not _verbose():
    # Libraries that log the error they then raise (orbax, tensorstore via
    # asyncio) would print it twice, with tracebacks: the raised error's one
    # line is enough.
    import logging as py_logging  # pylint: disable=g-import-not-at-top
    for logger in (py_logging.getLogger('absl'),
                   py_logging.getLogger('asyncio')):
      logger.addFilter(_quiet_library_errors)
    # Reading a damaged checkpoint leaves orbax's other reads to fail as
    # they are closed, each printing "Exception ignored in" with a
    # TensorStore spec (hundreds of lines) after the one-line warning.
    if not getattr(sys.unraisablehook, '_nerf_jax', False):
      sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
  _drop_late_callbacks()
  _stop_on_sigterm()
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
  define_verbose_flag()
  config_file = _config_file(argv)
  if config_file is not None and not os.path.exists(config_file):
    fail(f'config file {config_file!r} not found (built-in configs: '
         f'{", ".join(builtin_config_names())})', code=2)
  if config_file is not None:
    problem = _config_file_problem(config_file)
    if problem:
      fail(problem, code=2)
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    unknown = _first_unknown_override(argv, config_file)
    if unknown:
      fail(unknown, code=2)
    fail(str(e).strip().splitlines()[0], code=2)


def _load_config_module(path: str):
  """Runs a config file as a module (raises what running it raises)."""
  import importlib.machinery  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  loader = importlib.machinery.SourceFileLoader('_nerf_jax_config', path)
  spec = importlib.util.spec_from_loader('_nerf_jax_config', loader)
  module = importlib.util.module_from_spec(spec)
  loader.exec_module(module)
  return module


def _config_file_problem(path: str) -> str:
  """Why ``path`` cannot be a config file ('' if it can): not Python, not
  valid Python, failing when run, or without ``get_config()``."""
  from nerf_jax.io import inputs  # pylint: disable=g-import-not-at-top
  where = f'config file {path}'
  if os.path.isdir(path):
    return f'{where} is a folder, not a .py file defining get_config()'
  problem = inputs.input_file_problem(path, 'a .py file',
                                      inputs.MAX_CONFIG_BYTES, where)
  if problem:  # a pipe or a device (/dev/zero) is never opened
    return problem
  try:
    with open(path, 'rb') as f:
      source = f.read()
  except OSError as e:
    return f'{where} cannot be read: {e.strerror}'
  try:
    compile(source, path, 'exec')
  except (SyntaxError, ValueError) as e:
    kind = ('not Python (it holds binary data)' if b'\0' in source else
            'not valid Python')
    line = f', line {e.lineno}' if getattr(e, 'lineno', None) else ''
    return f'{where} is {kind}: {getattr(e, "msg", str(e))}{line}'
  try:
    module = _load_config_module(path)
  except Exception as e:  # pylint: disable=broad-except
    return f'{where} failed when run: {type(e).__name__}: {e}'.splitlines()[0]
  if not callable(getattr(module, 'get_config', None)):
    if not path.endswith('.py'):
      return (f'{where} is not a Python config (a .py file defining '
              'get_config(), as configs/tiny.py does)')
    return (f'{where} defines no get_config() (a config file returns its '
            'ConfigDict from get_config(), as configs/tiny.py does)')
  try:
    config = module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    return (f'{where}: get_config() failed: {type(e).__name__}: '
            f'{e}').splitlines()[0]
  if not hasattr(config, 'keys'):
    return (f'{where}: get_config() returned a {type(config).__name__}, not '
            'an ml_collections.ConfigDict')
  return ''


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
  try:
    config = _load_config_module(config_file).get_config()
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


def flag_problem(ranges) -> str:
  """The first flag out of its range, or ''.

  ``ranges``: (flag holder, test of a set value, what the test asks), e.g.
  ``(_FPS, lambda v: 0 < v <= 1000, 'must be in (0, 1000]')``. An unset
  flag (None) passes; NaN fails every test.
  """
  for holder, test, requirement in ranges:
    if holder.value is not None and not test(holder.value):
      return f'--{holder.name} {requirement}, got {holder.value}'
  return ''


def fail(message: str, code: int = 1):
  """Prints one error line and exits."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def _quiet_library_errors(record) -> bool:
  """logging filter: drops the error records of orbax and asyncio."""
  path = record.pathname.replace('\\', '/')
  return not (record.name == 'asyncio' or '/orbax/' in path)


_LIBRARIES = ('/orbax/', '/tensorstore/')


def _quiet_unraisable(previous: Callable) -> Callable:
  """A ``sys.unraisablehook`` that drops the errors ignored in orbax's or
  tensorstore's code (a coroutine of theirs, or a traceback through them)
  and passes the others to ``previous``."""

  def hook(unraisable):
    code = (getattr(unraisable.object, 'cr_code', None)
            or getattr(unraisable.object, 'gi_code', None))
    files = [code.co_filename] if code is not None else []
    tb = unraisable.exc_traceback
    while tb is not None:
      files.append(tb.tb_frame.f_code.co_filename)
      tb = tb.tb_next
    if any(library in f.replace('\\', '/') for f in files
           for library in _LIBRARIES):
      return
    previous(unraisable)

  hook._nerf_jax = True  # pylint: disable=protected-access
  return hook


def _stop_on_sigterm() -> None:
  """SIGTERM (a preempted VM, ``kill``) ends any command as Ctrl-C does:
  through Python, so temporary outputs are cleaned up and one line says
  so. train.py's loop replaces this with a handler that saves first."""
  import signal  # pylint: disable=g-import-not-at-top
  from nerf_jax import errors  # pylint: disable=g-import-not-at-top

  def stop(signum, frame):
    del frame
    raise errors.Interrupted('stopped by SIGTERM', signum)

  try:
    signal.signal(signal.SIGTERM, stop)
  except ValueError:  # not the main thread
    pass


def _drop_late_callbacks() -> None:
  """Lets a closed asyncio event loop ignore callbacks instead of raising.

  When an orbax checkpoint write fails (a full disk), orbax's event loop
  closes while tensorstore still has writes in flight; each one completing
  later schedules its callback on the closed loop, and tensorstore prints
  the resulting "Event loop is closed" traceback. Those callbacks have
  nothing left to do; the failure itself is reported as one line.
  """
  import asyncio  # pylint: disable=g-import-not-at-top
  loop_class = asyncio.BaseEventLoop
  if getattr(loop_class.call_soon_threadsafe, '_nerf_jax', False):
    return
  original = loop_class.call_soon_threadsafe

  def call_soon_threadsafe(self, callback, *args, **kwargs):
    if self.is_closed():
      return None
    return original(self, callback, *args, **kwargs)

  call_soon_threadsafe._nerf_jax = True  # pylint: disable=protected-access
  loop_class.call_soon_threadsafe = call_soon_threadsafe


def define_verbose_flag() -> None:
  """``--verbose``: show the traceback behind an error line."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False, 'On an error, show the Python '
                      'traceback as well as the one-line message.')


def _verbose() -> bool:
  from absl import flags  # pylint: disable=g-import-not-at-top
  return 'verbose' in flags.FLAGS and bool(flags.FLAGS.verbose)


def run_guarded(fn: Callable, errors: tuple = (),
                memory_hint: str = '') -> Callable:
  """Wraps ``fn`` so that an error prints one line and exits non-zero.

  ``errors.UserError`` (with its ``exit_code``), the types in ``errors``,
  out of memory (with ``memory_hint``: the settings to lower), a full disk
  and unwritable paths each print their line. Anything else is a bug: one
  line naming it and asking for ``--verbose``. With ``--verbose`` the
  traceback is printed too.
  """
  from nerf_jax import errors as errors_lib  # pylint: disable=g-import-not-at-top

  def wrapped(*args, **kwargs):
    try:
      return fn(*args, **kwargs)
    except KeyboardInterrupt:
      if _verbose():
        raise
      fail('interrupted', code=130)
    except Exception as e:  # pylint: disable=broad-except
      if _verbose():
        import traceback  # pylint: disable=g-import-not-at-top
        traceback.print_exc()
      line = errors_lib.describe(e, memory_hint)
      code = getattr(e, 'exit_code', 1)
      if line is None and isinstance(e, errors):
        line = errors_lib.first_line(e)
      if line is None:
        line = (f'unexpected {type(e).__name__}: {errors_lib.first_line(e)} '
                '(run again with --verbose for the traceback, and please '
                'report it)')
      print(f'error: {line}', file=sys.stderr, flush=True)
      sys.stdout.flush()
      # Exit now: background threads of a failed write (orbax, tensorstore)
      # would otherwise print their own tracebacks while Python shuts down.
      # Files are closed and the workdir lock released by the OS.
      os._exit(code)  # pylint: disable=protected-access

  return wrapped
