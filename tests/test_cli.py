"""The command lines, run as a user would, in a temporary directory."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np

from checks import error_line  # tests/checks.py

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = [
    '--config.data.width=12', '--config.data.height=12',
    '--config.data.num_train=10', '--config.data.num_val=1',
    '--config.data.num_test=1', '--config.model.preset=tiny',
    '--config.model.num_coarse=8', '--config.train.batch_rays=128',
    '--config.train.max_steps=6', '--config.train.log_every=3',
    '--config.eval.every=3', '--config.checkpoint.every=3',
]


def run(args, cwd):
  env = dict(os.environ, JAX_PLATFORMS='cpu', NERF_JAX_CACHE=str(cwd / 'cache'))
  return subprocess.run([sys.executable, str(ROOT / 'train.py'), *args],
                        cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=300, stdin=subprocess.DEVNULL)


def test_train_by_config_name_writes_default_workdir_and_resumes(tmp_path):
  proc = run(['--config', 'demo.py', '--progress=false', *SMALL], tmp_path)
  assert proc.returncode == 0, proc.stderr
  workdir = tmp_path / 'runs' / 'demo'
  assert 'held-out PSNR' in proc.stdout
  records = [json.loads(l) for l in open(workdir / 'metrics.jsonl')]
  assert [r['step'] for r in records if r['split'] == 'val'] == [3, 6]
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['3', '6']
  saved = json.load(open(workdir / 'config.json'))
  assert saved['train']['max_steps'] == 6 and saved['model']['preset'] == 'tiny'
  # Same command again: resumes at step 6 and trains no further.
  again = run(['--config=configs/demo.py', '--progress=false', *SMALL],
              tmp_path)
  assert again.returncode == 0, again.stderr
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['3', '6']
  # (A longer budget continues from the checkpoint: test_reliability.py.)


def test_errors_ignored_in_orbax_are_not_printed_unless_verbose():
  # What orbax leaves when a damaged checkpoint's reads are dropped (see
  # test_reliability's damaged checkpoint): an error in a coroutine of its
  # own, or one whose traceback runs through it.
  from nerf_jax import cli  # pylint: disable=g-import-not-at-top
  shown = []
  hook = cli._quiet_unraisable(shown.append)  # pylint: disable=protected-access
  scope = {}
  exec(compile('async def read():\n  pass\ndef fail():\n  raise OSError()',
               '/venv/site-packages/orbax/checkpoint/serialization.py',
               'exec'), scope)
  coroutine = scope['read']()
  try:
    scope['fail']()
  except OSError as e:
    through_orbax = e
  mine = ValueError('not a library\'s')

  def unraisable(obj, error):
    return types.SimpleNamespace(object=obj, exc_value=error,
                                 exc_type=type(error), err_msg=None,
                                 exc_traceback=error.__traceback__)

  hook(unraisable(coroutine, Exception('Encountered error while reading')))
  hook(unraisable(None, through_orbax))
  assert not shown
  hook(unraisable(None, mine))
  assert [u.exc_value for u in shown] == [mine]
  coroutine.close()


def test_unknown_config_key_is_one_clear_line(tmp_path):
  line = error_line(run(['--config', 'demo.py', '--config.train.bogus=1'],
                        tmp_path))
  assert "unknown config key 'train.bogus'" in line
  assert not (tmp_path / 'runs').exists()


def test_missing_config_file_is_one_clear_line(tmp_path):
  line = error_line(run(['--config', 'nope.py'], tmp_path))
  assert 'nope.py' in line and 'demo' in line


def test_missing_dataset_file_is_one_clear_line(tmp_path):
  line = error_line(run(['--config', 'tiny.py', '--workdir', 'w',
                         '--config.data.path=missing.npz'], tmp_path))
  assert 'missing.npz' in line


def test_nan_poses_are_one_clear_line(tmp_path):
  poses = np.tile(np.eye(4, dtype=np.float32), (8, 1, 1))
  poses[3, 0, 3] = np.nan
  np.savez(tmp_path / 'bad.npz', images=np.zeros((8, 4, 4, 3), np.float32),
           poses=poses, focal=np.float32(5.0))
  line = error_line(run(['--config', 'tiny.py', '--workdir', 'w',
                         '--config.data.path=bad.npz'], tmp_path))
  assert 'NaN' in line


def test_checkpoint_of_another_model_is_refused_and_kept(tmp_path):
  assert run(['--config', 'demo.py', '--workdir', 'w', '--progress=false',
              *SMALL], tmp_path).returncode == 0
  before = sorted(os.listdir(tmp_path / 'w' / 'checkpoints'))
  line = error_line(run(['--config', 'demo.py', '--workdir', 'w', *SMALL,
                         '--config.model.preset=small'], tmp_path))
  assert 'different model' in line
  assert sorted(os.listdir(tmp_path / 'w' / 'checkpoints')) == before


def test_offline_tiny_download_says_how_to_proceed(tmp_path):
  # No cached copy and (in tests) no network: the URL is a closed local port.
  env_args = ['--config', 'tiny.py', '--workdir', 'w']
  proc = subprocess.run(
      [sys.executable, '-c',
       'import sys, runpy; from nerf_jax.datasets import tiny_npz; '
       "tiny_npz.TINY_NPZ_URLS = ('http://127.0.0.1:9/tiny.npz',); "
       'sys.argv = ["train.py"] + sys.argv[1:]; '
       f'runpy.run_path({str(ROOT / "train.py")!r}, run_name="__main__")',
       *env_args], cwd=tmp_path, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=str(ROOT),
               NERF_JAX_CACHE=str(tmp_path / 'cache')))
  line = error_line(proc)
  assert 'demo.py' in line and 'data.path' in line
