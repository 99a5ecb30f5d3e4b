"""Held-out PSNR against training wall-clock, rays/s and peak memory.

Runs ``train.py`` in a subprocess with a wall-clock budget and evaluations at
fixed training times, then prints one Markdown table row. Example:

  .venv/bin/python benchmarks/psnr_vs_time.py --config tiny.py \\
      --minutes 1,2,5,10 -- --config.data.path=../shared/data/tiny_lego.npz \\
      --config.train.max_steps=4200

Arguments after ``--`` go to train.py unchanged (e.g. to stretch max_steps so
the learning-rate schedule spans the whole budget).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--config', required=True)
  parser.add_argument('--minutes', default='1,2,5,10')
  parser.add_argument('--workdir', default='')
  parser.add_argument('train_args', nargs='*')
  args = parser.parse_args()
  marks = [float(m) * 60 for m in args.minutes.split(',')]
  workdir = args.workdir or tempfile.mkdtemp(prefix='nerf_bench_')
  cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--config',
         args.config, '--workdir', workdir, '--progress=false',
         f'--config.train.max_seconds={max(marks)}',
         f'--config.eval.at_seconds={tuple(marks)!r}',
         '--config.eval.every=0', '--config.checkpoint.every=1000000',
         *args.train_args]
  start = time.time()
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode:
    sys.exit(f'train.py failed:\n{proc.stderr[-2000:]}')
  peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  evals = [r for r in records if r['split'] != 'train']
  rates = sorted(r['rays_per_s'] for r in records if r['split'] == 'train')
  cells = []
  for mark in marks:
    hit = [r for r in evals if r['elapsed_s'] >= mark - 1.0]
    if hit:
      cells.append(f'{hit[0]["psnr"]:.2f} (step {hit[0]["step"]})')
    else:  # training finished before this mark: its final evaluation
      last = evals[-1]
      cells.append(f'{last["psnr"]:.2f} (done: step {last["step"]}, '
                   f'{last["elapsed_s"]:.0f} s)')
  print(f'# {platform.node()} {os.cpu_count()} cpus, wall {time.time() - start:.0f} s, '
        f'workdir {workdir}')
  print(f'| {args.config} | {rates[len(rates) // 2]:,} | ' + ' | '.join(cells)
        + f' | {peak_gb:.2f} |')


if __name__ == '__main__':
  main()
