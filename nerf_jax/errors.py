"""The errors a user can cause or fix, and how one line describes any other.

Every error meant for the user derives from ``UserError``: its message is one
line naming the problem and the file, key or flag, and ``exit_code`` is the
process's exit status. The command-line entry points (``cli.run_guarded``)
print such errors as ``error: <message>``; ``describe`` turns the failures
that are not the user's doing but that a user can act on (out of memory, a
full disk, a folder that cannot be written) into such a line too.
"""

from __future__ import annotations

import errno
import os
from typing import Optional


class UserError(Exception):
  """A problem the user can fix, described in one line."""
  exit_code = 1


class Interrupted(UserError):
  """Training stopped by a signal (after saving what it could)."""

  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.exit_code = 128 + signum


# errno values meaning "the disk (or the quota, or the file-size limit) is
# full": what a full disk looks like to the process writing to it.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_NO_SPACE_TEXT = ('No space left on device', 'File too large',
                  'Disk quota exceeded')


def is_out_of_memory(e: BaseException) -> bool:
  """An accelerator or host allocation failure (XLA's RESOURCE_EXHAUSTED)."""
  return isinstance(e, MemoryError) or 'RESOURCE_EXHAUSTED' in str(e)


def is_disk_full(e: BaseException) -> bool:
  """A write failed for lack of space (also when a library wrapped the
  OSError in its own exception type, as tensorstore does)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _NO_SPACE:
      return True
    if any(text in str(e) for text in _NO_SPACE_TEXT):
      return True
    e = e.__cause__ or e.__context__
  return False


def nearest_existing(path: str) -> str:
  """``path`` (absolute) or its nearest ancestor that exists: what decides
  whether ``path`` can be created as a folder (it must be a folder too)."""
  existing = os.path.abspath(path)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  return existing


def first_line(e: BaseException, limit: int = 300) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  text = lines[0] if lines else type(e).__name__
  return text if len(text) <= limit else text[:limit - 3] + '...'


def describe(e: BaseException, memory_hint: str = '') -> Optional[str]:
  """One line for an error a user can act on, or None for a bug.

  Args:
    e: the exception.
    memory_hint: which settings to lower when out of memory, e.g.
      'lower train.batch_rays'.
  """
  if isinstance(e, UserError):
    return first_line(e, limit=2000)
  if is_out_of_memory(e):
    detail = first_line(e).replace('RESOURCE_EXHAUSTED: ', '')
    return ('out of memory (' + detail + ')'
            + (f'; {memory_hint}' if memory_hint else ''))
  if is_disk_full(e):
    where = getattr(e, 'filename', None)
    return (f'the disk is full{f" writing {where}" if where else ""} '
            f'({first_line(e)}); free some space and run the same command '
            'again')
  if isinstance(e, OSError) and e.errno is not None:
    where = e.filename or ''
    reason = e.strerror or first_line(e)
    if isinstance(e, (FileExistsError, NotADirectoryError)):
      return f'cannot create {where}: a file of that name is in the way'
    return f'cannot use {where}: {reason}' if where else reason
  return None
