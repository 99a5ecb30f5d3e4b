"""How the SfM pipeline reports to its user: a progress line per stage, a
one-line message per failure.

``Stages`` prints 'name: what ... result (time)' for each stage and keeps its
wall time; a long stage also shows how far it is and, where it can, the time
left (``Stages.progress``): on a terminal the line is rewritten twice a
second, in a log ' 120/3000 pairs, about 2 min left ...' is appended every
``LOG_INTERVAL`` seconds. Every function of ``nerf_jax.sfm`` that fails on
bad input raises ``SfmError`` with a one-line message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Optional

from nerf_jax import errors


class SfmError(errors.UserError):
  """A capture or option that cannot make a scene (one-line message)."""


TTY_INTERVAL = 0.5   # seconds between progress updates on a terminal
LOG_INTERVAL = 15.0  # between progress notes appended to a logged line


def duration(seconds: float) -> str:
  """A rough time in words: '40 s', '12 min', '1.5 h'."""
  if seconds < 90:
    return f'{seconds:.0f} s'
  if seconds < 90 * 60:
    return f'{seconds / 60:.0f} min'
  return f'{seconds / 3600:.1f} h'


@dataclasses.dataclass
class _Open:
  """The stage in progress: its header, start, last progress shown."""
  header: str
  start: float
  shown_at: float
  width: int = 0  # length of the progress text on a terminal's line


class Stages:
  """Prints one line per stage ('name: what ... result (time)') and keeps
  each stage's wall time in ``times``; ``tty`` (default: whether ``stream``
  is a terminal) rewrites the line for progress instead of appending."""

  def __init__(self, stream=None, tty: Optional[bool] = None):
    self.stream = stream
    isatty = getattr(stream, 'isatty', None)
    self.tty = bool(isatty() if tty is None and isatty else tty)
    self.times = {}
    self._open = None

  @contextlib.contextmanager
  def stage(self, name: str, what: str):
    out = self.stream
    header = f'{name}: {what} ...'
    if out is not None:
      out.write(header)
      out.flush()
    result = {}
    start = time.perf_counter()
    self._open = _Open(header, start, start)
    try:
      yield result
    except BaseException:
      if out is not None:
        out.write(' failed\n')
        out.flush()
      raise
    finally:
      shown, self._open = self._open, None
    self.times[name] = time.perf_counter() - start
    if out is not None:
      end = f' {result.get("result", "done")} ({self.times[name]:.1f} s)'
      if shown.width:  # rewrite the terminal's line, covering the progress
        end = f'\r{header}{end:<{shown.width}}'
      out.write(end + '\n')
      out.flush()

  def progress(self, done: int, total: int, unit: str = '',
               estimate: bool = True):
    """Shows how far the open stage is: 'done/total unit' and, with
    ``estimate``, the time left at the rate so far (linear in the work)."""
    now = time.perf_counter()
    shown = self._open
    if self.stream is None or shown is None or now - shown.shown_at < (
        TTY_INTERVAL if self.tty else LOG_INTERVAL):
      return
    shown.shown_at = now
    text = f' {done}/{total}{" " + unit if unit else ""}'
    if estimate and 0 < done < total:
      left = (now - shown.start) / done * (total - done)
      text += f', about {duration(left)} left'
    if self.tty:
      shown.width = max(shown.width, len(text))
      self.stream.write(f'\r{shown.header}{text:<{shown.width}}')
    else:
      self.stream.write(text + ' ...')
    self.stream.flush()

  def line(self, text: str):
    if self.stream is not None:
      self.stream.write(text + '\n')
      self.stream.flush()
