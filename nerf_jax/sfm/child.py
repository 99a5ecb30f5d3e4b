"""COLMAP in a child process, so that Ctrl-C and SIGTERM stop it at once.

``run_colmap_apart`` starts a fresh interpreter with SIGINT and SIGTERM
blocked, sends it the arguments of ``colmap.run_colmap`` (pickled, on its
stdin) and reads its progress lines and its result back through a pipe
(``_colmap_child`` is the child's side).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import traceback
from multiprocessing import connection
from typing import Optional

from nerf_jax import errors
from nerf_jax.sfm import colmap
from nerf_jax.sfm import report


def run_colmap_apart(image_dir: str, work_dir: str, *,
                     stages: Optional[report.Stages] = None,
                     **options) -> tuple:
  """``colmap.run_colmap`` in a child process, so that a signal stops it at
  once.

  pycolmap's matching looks at no signal for as long as it runs (minutes on
  a large capture), so Ctrl-C and SIGTERM would wait for it, and glog's
  handler (installed by importing pycolmap) turns SIGTERM into a native
  stack dump. The child (a fresh interpreter) starts with SIGINT and
  SIGTERM blocked, so neither reaches it, even sent to the whole process
  group; this process keeps its handlers and waits for the child's
  messages, so a signal raises here at once, the child is killed and the
  caller removes what it made. The child's progress lines are written to
  ``stages``' stream here.

  Args:
    image_dir, work_dir: as ``colmap.run_colmap``; options: its keyword
      arguments.
    stages: where the stages are shown and timed.

  Returns:
    What ``colmap.run_colmap`` returns, the model read back from
    ``work_dir/sparse/0``; raises what it raised (with the child's traceback
    as a note where it is a bug, for --verbose).
  """
  stages = stages or report.Stages(None)
  out = stages.stream
  read_fd, write_fd = os.pipe()
  receiver = connection.Connection(read_fd, writable=False)
  child = None
  progress = _Progress(out)
  try:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK,
                                  {signal.SIGINT, signal.SIGTERM})
    try:  # the child inherits the mask: only this process sees the signals
      child = _start_child(write_fd)
    finally:
      signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # pending ones land
      os.close(write_fd)
    with child.stdin:
      child.stdin.write(pickle.dumps(
          (image_dir, work_dir, options, out is not None, stages.tty)))
    stats, times = _receive(receiver, child, progress)
  except BaseException:
    progress.failed()
    raise
  finally:
    if child is not None:
      child.kill()  # if it still runs
      child.wait()
    receiver.close()
  stages.times.update(times)
  sparse = os.path.join(work_dir, 'sparse', '0')
  rec = (colmap.import_pycolmap().Reconstruction(sparse)
         if os.path.isdir(sparse) else None)
  return rec, stats


def _start_child(write_fd: int) -> subprocess.Popen:
  """A fresh interpreter running ``_colmap_child`` (with this process's
  signal mask), writing its messages to ``write_fd``."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (root, os.environ.get('PYTHONPATH')) if p))
  return subprocess.Popen(
      [sys.executable, '-c', 'import sys; from nerf_jax.sfm import child; '
       'child._colmap_child(int(sys.argv[1]))', str(write_fd)],
      stdin=subprocess.PIPE, pass_fds=(write_fd,), env=env)


class _Progress:
  """The child's progress lines, written to ``out`` (None: dropped); knows
  whether a line is left open, to close it with ' failed'."""

  def __init__(self, out):
    self.out = out
    self.line_open = False

  def write(self, text: str) -> None:
    if self.out is not None:
      self.line_open = not text.endswith('\n')  # before a signal can land
      self.out.write(text)
      self.out.flush()

  def failed(self) -> None:
    if self.line_open:
      self.out.write(' failed\n')
      self.out.flush()


def _receive(receiver, child, progress: _Progress) -> tuple:
  """The child's messages until it is done: (stats, stage times); raises
  what the child raised, or SfmError when it ended without a word."""
  while True:
    try:
      kind, payload = receiver.recv()
    except EOFError:
      raise report.SfmError(
          f'COLMAP stopped unexpectedly ({_ended(child.wait())}); run '
          'again with --verbose for its log') from None
    if kind == 'write':
      progress.write(payload)
    elif kind == 'error':
      raise payload
    else:
      return payload


def _ended(code: int) -> str:
  """A child's exit status in words, e.g. 'killed by SIGKILL, out of
  memory?'."""
  if code >= 0:
    return f'exit code {code}'
  try:
    name = signal.Signals(-code).name
  except ValueError:
    name = f'signal {-code}'
  return f'killed by {name}' + (', out of memory?' if -code == signal.SIGKILL
                                else '')


class _PipeStream:
  """A text stream that sends what is written through a multiprocessing
  connection, as ('write', text) messages."""

  def __init__(self, connection):
    self.connection = connection

  def write(self, text: str) -> None:
    self.connection.send(('write', text))

  def flush(self) -> None:
    pass


def _colmap_child(fd: int) -> None:
  """The child of ``run_colmap_apart``: reads its arguments (pickled) from
  stdin, runs COLMAP and sends ('done', (stats, stage times)) or ('error',
  exception) through the connection on ``fd``."""
  sender = connection.Connection(fd, readable=False)
  image_dir, work_dir, options, show, tty = pickle.load(sys.stdin.buffer)
  stages = report.Stages(_PipeStream(sender) if show else None, tty=tty)
  try:
    _, stats = colmap.run_colmap(image_dir, work_dir, stages=stages,
                                 **options)
    message = ('done', (stats, stages.times))
  except BaseException as e:  # pylint: disable=broad-except
    try:
      pickle.loads(pickle.dumps(e))
    except Exception:  # pylint: disable=broad-except
      e = RuntimeError(f'{type(e).__name__}: {errors.first_line(e)}')
    if not isinstance(e, errors.UserError) and hasattr(e, 'add_note'):
      e.add_note('in the COLMAP process:\n' + traceback.format_exc())
    message = ('error', e)
  sender.send(message)
  sender.close()

