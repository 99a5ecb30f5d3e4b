"""The lock: one training per workdir (``<workdir>/.lock``)."""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from typing import Optional

from nerf_jax import errors
from nerf_jax.runs import rundir


class RunLocked(errors.UserError):
  """Another training holds the workdir."""


class WorkdirLock:
  """An exclusive ``flock`` on ``<workdir>/.lock`` while a training runs.

  The kernel releases it when the process ends, however it ends (SIGKILL
  included), so a crash never leaves a stale lock. The file records who
  holds it, for the message a second training prints. Where ``fcntl`` is
  missing (Windows) the lock is a no-op.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, rundir.LOCK_FILE)
    self.file = None

  def acquire(self) -> 'WorkdirLock':
    try:
      import fcntl  # pylint: disable=g-import-not-at-top
    except ImportError:
      return self
    f = open(self.path, 'a+')
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
        # A filesystem without locks (some network mounts): train
        # unlocked, and say so.
        f.close()
        print(f'warning: cannot lock {self.path} ({e.strerror}); a second '
              'training into this workdir would not be refused',
              file=sys.stderr, flush=True)
        return self
      f.seek(0)
      holder = f.read().strip() or 'another process'
      f.close()
      raise RunLocked(
          f'{os.path.dirname(self.path) or "."} is in use by another training '
          f'({holder}); wait for it to finish, or use another --workdir')
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {socket.gethostname()} since '
            f'{time.strftime("%Y-%m-%d %H:%M:%S")}\n')
    f.flush()
    self.file = f
    return self

  @staticmethod
  def holder(workdir: str) -> Optional[str]:
    """Who trains in ``workdir`` now (None if no one)."""
    path = os.path.join(workdir, rundir.LOCK_FILE)
    try:
      import fcntl  # pylint: disable=g-import-not-at-top
      with open(path) as f:
        try:
          fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
          return f.read().strip() or 'another process'
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except (ImportError, OSError):
      pass
    return None

  def release(self) -> None:
    if self.file is not None:
      self.file.close()  # closing the descriptor releases the flock
      self.file = None
