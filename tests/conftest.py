"""Settings for the whole test session.

Many tests, and the train.py / render.py processes they start, compile the
same small programs again and again. A persistent XLA compilation cache that
lives only for this session (a fresh temporary folder, removed at exit) lets
them reuse each other's compilations; results are unaffected. Every
compilation is kept, however quick: a train.py process compiles dozens of
small programs, and caching them all took a small training process from
5.2 to 3.7 s. Under pytest-xdist (``make test`` runs ``-n auto``) this file
is read by the controller first, so its workers inherit and share the one
folder. A cache the caller configured is left alone.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='nerf_jax_tests_xla_cache_')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')
