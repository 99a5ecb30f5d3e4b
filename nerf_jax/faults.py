"""Fault injection, for testing that a crash at a chosen moment loses nothing.

With the environment variable ``NERF_JAX_FAULT=<point>@<step>`` the process
kills itself with SIGKILL (no cleanup, no handlers: what a power cut or the
out-of-memory killer does) when it reaches ``<point>`` at training step
``<step>``. The points:

  step        after dispatching the step (the device may still be computing)
  metrics     half-way through writing the step's line of metrics.jsonl
  checkpoint  while the step's checkpoint is being written (after orbax
              started the save, before it is committed)

Unset, ``maybe_fail`` costs one dictionary lookup. A spec that does not
parse is refused when train.py starts (``spec_problem``), so that a crash
test cannot pass because nothing crashed.
"""

from __future__ import annotations

import os
import re
import signal
from typing import Optional

ENV = 'NERF_JAX_FAULT'
POINTS = ('step', 'metrics', 'checkpoint')
_SPEC = re.compile(r'([a-z]+)@([0-9]+)')


def parse(spec: str) -> Optional[tuple]:
  """(point, step) of a spec, or None if it is not ``<point>@<step>`` with
  a known point and a step >= 0."""
  match = _SPEC.fullmatch(spec)
  if not match or match[1] not in POINTS:
    return None
  return match[1], int(match[2])


def spec_problem() -> str:
  """'' if ``NERF_JAX_FAULT`` is unset, empty or parses; else one line
  saying why it is refused."""
  spec = os.environ.get(ENV)
  if not spec or parse(spec):
    return ''
  return (f'{ENV}={spec!r} is not <point>@<step> with a point among '
          f'{", ".join(POINTS)} and a step >= 0 (e.g. step@5); unset it to '
          'run without a fault')


def maybe_fail(point: str, step: Optional[int], path: str = '',
               partial: str = '') -> None:
  """Dies here if ``NERF_JAX_FAULT`` names this point and step; first
  appends ``partial`` to ``path`` (a write cut short)."""
  spec = os.environ.get(ENV)
  if not spec or step is None:
    return
  if parse(spec) != (point, int(step)):
    return
  if path and partial:
    with open(path, 'a') as f:
      f.write(partial)
      f.flush()
      os.fsync(f.fileno())
  os.kill(os.getpid(), signal.SIGKILL)
