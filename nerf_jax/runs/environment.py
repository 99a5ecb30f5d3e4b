"""environment.json: what produced the run (seed, versions, devices)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import jax

from nerf_jax.io import outputs
from nerf_jax.runs import rundir


def save_environment(workdir: str, seed: int) -> None:
  """Records the seed, the software versions and the devices of this
  session; a resumed run appends its own session."""
  import platform  # pylint: disable=g-import-not-at-top
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  versions = {}
  for name in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint',
               'numpy', 'ml_collections'):
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  session = dict(
      started=time.strftime('%Y-%m-%dT%H:%M:%S%z'), seed=int(seed),
      versions=versions, python=platform.python_version(),
      platform=platform.platform(), host=socket.gethostname(),
      backend=jax.default_backend(), process_count=jax.process_count(),
      devices=[f'{d.platform}:{d.id} {d.device_kind}' for d in jax.devices()],
      command=' '.join(sys.argv))
  path = os.path.join(workdir, rundir.ENVIRONMENT_FILE)
  sessions = []
  try:
    with open(path) as f:
      sessions = json.load(f).get('sessions', [])
  except (OSError, ValueError, AttributeError, RecursionError):
    pass
  if not isinstance(sessions, list):  # edited by hand: start the list again
    sessions = []
  sessions.append(session)
  outputs.write_text_atomic(path, json.dumps(
      {'seed': int(seed), 'sessions': sessions}, indent=2))
