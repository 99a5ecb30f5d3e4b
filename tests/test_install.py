"""The installed package: a wheel of this tree, installed into a fresh virtual
environment, trains, renders and loads a run from another folder.

No network: the wheel is built without build isolation (setuptools from this
interpreter) and installed with ``--no-deps --no-index``; the new environment
sees this interpreter's site-packages for the dependencies, as a
``--system-site-packages`` one would.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import site
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# A few steps on a tiny image.
from test_cli import SMALL  # pylint: disable=g-bad-import-order
# Loads the saved run through the installed package and says where that is.
LOAD = """
import json, sys
import nerf_jax
from nerf_jax.configs import base
from nerf_jax.runs import load
config, info, model, variables, step = load.load_trained('runs/demo')
print(json.dumps(dict(package=nerf_jax.__file__, configs=base.__file__,
                      step=int(step), name=config.name, near=info.near,
                      far=info.far, path=sys.path)))
"""


def run(args, cwd, timeout=300):
  """Runs ``args`` in ``cwd`` with nothing of this repository on the path."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP')}
  env.update(JAX_PLATFORMS='cpu', NERF_JAX_CACHE=str(cwd / 'cache'),
             PIP_DISABLE_PIP_VERSION_CHECK='1', PYTHONNOUSERSITE='1')
  return subprocess.run([str(a) for a in args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout,
                        stdin=subprocess.DEVNULL)


def check(proc):
  assert proc.returncode == 0, proc.stdout + proc.stderr
  return proc


@pytest.fixture(scope='module')
def venv(tmp_path_factory) -> pathlib.Path:
  """A new virtual environment with the wheel of this tree installed."""
  base = tmp_path_factory.mktemp('install')
  # Built from a copy, so that the build leaves no build/ or egg-info here.
  source = base / 'source'
  source.mkdir()
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(ROOT / name, source / name)
  shutil.copytree(ROOT / 'nerf_jax', source / 'nerf_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  check(run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
             '--no-build-isolation', '--no-index', '--quiet', '--wheel-dir',
             base / 'dist', source], base))
  wheel, = (base / 'dist').glob('nerf_jax-*.whl')
  env = base / 'venv'
  check(run([sys.executable, '-m', 'venv', '--without-pip', env], base))
  python = env / 'bin' / 'python'
  purelib = check(run([python, '-c', 'import sysconfig; print(sysconfig.'
                       'get_paths()["purelib"])'], base)).stdout.strip()
  # The dependencies (and pip) from this interpreter, after the new
  # environment's own site-packages, with their .pth files processed.
  pathlib.Path(purelib, '_nerf_jax_test_deps.pth').write_text(''.join(
      f'import site; site.addsitedir({path!r})\n'
      for path in site.getsitepackages()))
  check(run([python, '-m', 'pip', 'install', '--no-deps', '--no-index',
             '--quiet', wheel], base))
  return env


@pytest.mark.slow  # about 30 s on 2 CPU cores
def test_installed_package_trains_renders_and_loads_a_run(venv, tmp_path):
  bin_dir = venv / 'bin'
  for name in ('train', 'render', 'view', 'export', 'prepare'):
    assert (bin_dir / f'nerf-jax-{name}').is_file(), name
  # From another folder, a built-in config by name: it ships in the package.
  proc = check(run([bin_dir / 'nerf-jax-train', '--config', 'demo.py',
                    '--progress=false', *SMALL], tmp_path))
  assert 'held-out PSNR' in proc.stdout
  workdir = tmp_path / 'runs' / 'demo'
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['3', '6']
  proc = check(run([bin_dir / 'nerf-jax-render', '--ckpt', 'runs/demo',
                    '--frames', '2', '--format', 'gif', '--progress=false'],
                   tmp_path))
  assert 'rendered 2 frames' in proc.stdout
  assert {'orbit_rgb.gif', 'orbit_depth.gif'} <= set(
      os.listdir(workdir / 'render'))
  loaded = json.loads(check(run([bin_dir / 'python', '-c', LOAD],
                                tmp_path)).stdout.splitlines()[-1])
  assert loaded['step'] == 6 and loaded['name'] == 'demo'
  assert (loaded['near'], loaded['far']) == (2.0, 6.0)
  # The installed copy was imported, not this repository's.
  for key in ('package', 'configs'):
    path = pathlib.Path(loaded[key]).resolve()
    assert path.is_relative_to(venv.resolve()), (key, path)
  assert ROOT not in [(tmp_path / p).resolve() for p in loaded['path']]
