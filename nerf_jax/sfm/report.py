"""How the SfM pipeline reports to its user: a progress line per stage, a
one-line message per failure.

``Stages`` prints 'name: what ... result (time)' for each stage and keeps its
wall time; every function of ``nerf_jax.sfm`` that fails on bad input raises
``SfmError`` with a one-line message.
"""

from __future__ import annotations

import contextlib
import time

from nerf_jax import errors


class SfmError(errors.UserError):
  """A capture or option that cannot make a scene (one-line message)."""


class Stages:
  """Prints one line per stage ('name: what ... result (time)') and keeps
  each stage's wall time in ``times``."""

  def __init__(self, stream=None):
    self.stream = stream
    self.times = {}

  @contextlib.contextmanager
  def stage(self, name: str, what: str):
    out = self.stream
    if out is not None:
      out.write(f'{name}: {what} ...')
      out.flush()
    result = {}
    start = time.perf_counter()
    try:
      yield result
    except BaseException:
      if out is not None:
        out.write(' failed\n')
        out.flush()
      raise
    self.times[name] = time.perf_counter() - start
    if out is not None:
      out.write(f' {result.get("result", "done")} '
                f'({self.times[name]:.1f} s)\n')
      out.flush()

  def line(self, text: str):
    if self.stream is not None:
      self.stream.write(text + '\n')
      self.stream.flush()
