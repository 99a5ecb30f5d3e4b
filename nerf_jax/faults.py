"""Fault injection, for testing that a crash at a chosen moment loses nothing.

With the environment variable ``NERF_JAX_FAULT=<point>@<step>`` the process
kills itself with SIGKILL (no cleanup, no handlers: what a power cut or the
out-of-memory killer does) when it reaches ``<point>`` at training step
``<step>``. The points:

  step        after dispatching the step (the device may still be computing)
  metrics     half-way through writing the step's line of metrics.jsonl
  checkpoint  while the step's checkpoint is being written (after orbax
              started the save, before it is committed)

Unset, ``maybe_fail`` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from typing import Optional

ENV = 'NERF_JAX_FAULT'


def maybe_fail(point: str, step: Optional[int], path: str = '',
               partial: str = '') -> None:
  """Dies here if ``NERF_JAX_FAULT`` names this point and step; first
  appends ``partial`` to ``path`` (a write cut short)."""
  spec = os.environ.get(ENV)
  if not spec or step is None:
    return
  name, _, at = spec.partition('@')
  if name != point or not at.isdigit() or int(at) != int(step):
    return
  if path and partial:
    with open(path, 'a') as f:
      f.write(partial)
      f.flush()
      os.fsync(f.fileno())
  os.kill(os.getpid(), signal.SIGKILL)
