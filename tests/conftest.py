"""Settings and shared fixtures for the whole test session.

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
import fcntl
import json
import os
import shutil
import tempfile

import pytest

if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='nerf_jax_tests_xla_cache_')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

# A folder every pytest-xdist worker of this session shares (the controller
# reads this file first and its workers inherit the variable).
if 'NERF_JAX_TESTS_SHARED' not in os.environ:
  _SHARED = tempfile.mkdtemp(prefix='nerf_jax_tests_shared_')
  atexit.register(shutil.rmtree, _SHARED, ignore_errors=True)
  os.environ['NERF_JAX_TESTS_SHARED'] = _SHARED


@pytest.fixture(scope='session')
def builtin_fast_run() -> tuple:
  """(workdir, final record) of ``test_fast.learning_config()`` trained once
  per test session: the fast model on the built-in scene (about 36 s).

  The first worker to ask trains it, holding a lock in the shared folder;
  the others wait and read the same run. Tests read it only (copy it to
  change anything).
  """
  from nerf_jax.train import loop  # pylint: disable=g-import-not-at-top
  from tests.test_fast import learning_config  # pylint: disable=g-import-not-at-top
  folder = os.path.join(os.environ['NERF_JAX_TESTS_SHARED'], 'builtin_fast')
  os.makedirs(folder, exist_ok=True)
  workdir = os.path.join(folder, 'run')
  done = os.path.join(folder, 'record.json')
  with open(os.path.join(folder, '.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(done):
      shutil.rmtree(workdir, ignore_errors=True)  # a worker that died
      record = loop.train_and_evaluate(learning_config(), workdir,
                                       progress=False)
      with open(done + '.tmp', 'w') as f:
        json.dump({'psnr': record['psnr'], 'step': record['step']}, f)
      os.replace(done + '.tmp', done)
    with open(done) as f:
      return workdir, json.load(f)


def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  """The slow tests (minute-long trainings, subprocess runs) first: under
  pytest-xdist each worker then starts on its long ones and the quick tests
  fill in at the end, instead of one worker finishing a long test alone.
  A stable sort, so the order within each group is the files' order."""
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)
