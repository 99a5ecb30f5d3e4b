"""benchmarks/psnr_vs_time.py: end to end on the built-in scene, tiny budget."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'psnr_vs_time.py'
TINY = [
    '--config.data.width=16', '--config.data.height=16',
    '--config.data.num_train=8', '--config.data.num_val=1',
    '--config.model.preset=tiny', '--config.model.num_coarse=8',
    '--config.train.batch_rays=128',
]


def _load_script():
  spec = importlib.util.spec_from_file_location('psnr_vs_time', SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run(args, cwd):
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             NERF_JAX_CACHE=str(cwd / 'cache'))
  return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=300,
                        stdin=subprocess.DEVNULL)


def cells(row):
  assert row.startswith('| ') and row.endswith(' |'), row
  return [c.strip() for c in row[2:-2].split(' | ')]


@pytest.mark.slow
def test_benchmark_end_to_end(tmp_path):
  workdir = tmp_path / 'bench'
  proc = run(['--config', 'demo.py', '--minutes', '0.05,0.1',
              '--workdir', str(workdir), '--', *TINY], tmp_path)
  assert proc.returncode == 0, proc.stdout + proc.stderr

  result = json.load(open(workdir / 'benchmark.json'))
  assert result['config'] == 'demo.py' and result['overrides'] == TINY
  assert result['minutes'] == [0.05, 0.1] and result['max_seconds'] == 6.0
  assert [m['minutes'] for m in result['marks']] == [0.05, 0.1]
  for mark in result['marks']:
    assert math.isfinite(mark['psnr']) and math.isfinite(mark['ssim'])
    assert mark['step'] >= 1
    # Each mark is reached on the training clock, or training had finished.
    assert mark['elapsed_s'] >= mark['seconds'] - 1e-3 or mark['done']
  assert result['evals'] and all(math.isfinite(e['psnr'])
                                 for e in result['evals'])
  assert {'step', 'elapsed_s', 'psnr', 'ssim'} <= set(result['evals'][0])
  assert result['rays_per_s'] > 0
  assert result['samples_per_s'] is None  # the MLP's records carry no count
  assert 0 < result['peak_rss_gb'] < 20
  machine = result['machine']
  assert machine['cpu_count'] == os.cpu_count()
  assert machine['jax_backend'] == 'cpu' and machine['jax_version']
  assert result['resolved_config']['model']['preset'] == 'tiny'

  png = workdir / 'benchmark.png'
  assert png.exists() and png.stat().st_size > 1000
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

  # The last three lines: a Markdown header, separator and row that fit.
  header, separator, row = proc.stdout.strip().splitlines()[-3:]
  n = 3 + 2 + 1  # config, rays/s, samples/s, two marks, peak GB
  assert len(cells(header)) == n and len(cells(row)) == n
  assert separator.count('|') == n + 1
  assert cells(header)[3:5] == ['0.05 min', '0.1 min']
  assert cells(row)[0] == '`demo.py`'
  assert row == result['markdown']['row']

  # A second run into the same workdir would resume: refused.
  again = run(['--config', 'demo.py', '--minutes', '0.05',
               '--workdir', str(workdir)], tmp_path)
  assert again.returncode != 0 and 'already holds a run' in again.stderr

  # Overlaying results needs no training.
  cmp_png = tmp_path / 'cmp.png'
  other = dict(result, label='copy', evals=[
      dict(e, psnr=e['psnr'] + 1) for e in result['evals']])
  json.dump(other, open(tmp_path / 'other.json', 'w'))
  overlay = run(['--plot', str(workdir / 'benchmark.json'),
                 str(tmp_path / 'other.json'), '--out', str(cmp_png)],
                tmp_path)
  assert overlay.returncode == 0, overlay.stderr
  assert cmp_png.stat().st_size > 1000
  assert overlay.stdout.count('| `') == 2


def test_train_error_is_shown_and_exits_nonzero(tmp_path):
  proc = run(['--config', 'demo.py', '--minutes', '0.05',
              '--workdir', str(tmp_path / 'bad'), '--',
              '--config.model.preset=nope'], tmp_path)
  assert proc.returncode != 0
  assert 'train.py exited' in proc.stderr
  assert "model.preset='nope'" in proc.stderr
  assert not (tmp_path / 'bad' / 'benchmark.json').exists()


def test_marks_after_training_finished_report_the_final_evaluation():
  bench = _load_script()
  evals = [dict(step=1, elapsed_s=3.2, psnr=10.0, ssim=0.1),
           dict(step=40, elapsed_s=9.0, psnr=20.0, ssim=0.5)]
  marks = bench.at_marks(evals, [3.0, 30.0, 60.0], [0.05, 0.5, 1.0])
  assert [(m['step'], m['done']) for m in marks] == [
      (1, False), (40, True), (40, True)]
  result = dict(label='x', rays_per_s=1234.4, samples_per_s=None,
                peak_rss_gb=0.5, marks=marks)
  _, _, row = bench.markdown(result)
  assert cells(row) == ['`x`', '1,234', '-', '10.00',
                        '20.00 (done: step 40, 9 s)',
                        '20.00 (done: step 40, 9 s)', '0.50']


def test_samples_per_second_from_the_records():
  bench = _load_script()
  assert bench.speeds([dict(rays_per_s=100, samples_per_ray=8),
                       dict(rays_per_s=300, samples_per_ray=8),
                       dict(rays_per_s=200, samples_per_ray=8)],
                      128)['samples_per_s'] == 1600
  speed = bench.speeds([dict(rays_per_s=100, samples=128 * 4)], 128)
  assert speed['rays_per_s'] == 100 and speed['samples_per_s'] == 400
  assert bench.speeds([dict(rays_per_s=100)], 128)['samples_per_s'] is None
