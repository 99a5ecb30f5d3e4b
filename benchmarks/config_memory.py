"""Peak host memory of training every shipped config (and variants).

  .venv/bin/python benchmarks/config_memory.py [--steps 30] [NAME ...]

For each config, ``train.py`` runs in a subprocess for ``--steps`` steps
(with its data, model, batch and evaluation chunk as shipped), evaluates
one held-out view at the end, and its peak resident set size is read with
``os.wait4`` (that process alone). Prints one Markdown table row per
config. A config whose data is not present is reported as skipped.
``NAME`` selects configs or variants by name (default: all).

Host memory only: on a GPU or TPU the device memory is separate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, '..', 'shared', 'data')

# name -> (config file, extra train.py flags, data path that must exist).
_BEER = ['--config.data.kind=llff',
         f'--config.data.path={DATA}/beer', '--config.data.ndc=False',
         '--config.data.downsample=4']
RUNS = {
    'demo': ('demo.py', [], None),
    'tiny': ('tiny.py', [f'--config.data.path={DATA}/tiny_lego.npz'],
             'tiny_lego.npz'),
    'tiny_fast': ('tiny_fast.py', [f'--config.data.path={DATA}/tiny_lego.npz'],
                  'tiny_lego.npz'),
    'keras_example': ('keras_example.py',
                      [f'--config.data.path={DATA}/tiny_lego.npz'],
                      'tiny_lego.npz'),
    # At 100x100: the step's memory is the batch's, and one 800x800
    # held-out view through the 8x256 MLP takes most of an hour on a CPU.
    'lego': ('lego.py', [f'--config.data.path={DATA}/nerf_synthetic/lego',
                         '--config.data.downsample=8'],
             'nerf_synthetic/lego'),
    'lego_fast': ('lego_fast.py',
                  [f'--config.data.path={DATA}/nerf_synthetic/lego'],
                  'nerf_synthetic/lego'),
    'llff': ('llff.py', [f'--config.data.path={DATA}/nerf_llff_data/fern'],
             'nerf_llff_data/fern'),
    'llff_fast': ('llff_fast.py',
                  [f'--config.data.path={DATA}/nerf_llff_data/fern'],
                  'nerf_llff_data/fern'),
    'fox': ('fox.py', [f'--config.data.path={DATA}/fox'], 'fox'),
    'unbounded': ('unbounded.py', [], None),
    'unbounded_proposal': ('unbounded.py', ['--config.model.kind=proposal'],
                           None),
    'capture_fox': ('capture.py', [f'--config.data.path={DATA}/fox',
                                   '--config.data.downsample=8'], 'fox'),
    'capture_fox_proposal': ('capture.py', [
        f'--config.data.path={DATA}/fox', '--config.data.downsample=8',
        '--config.model.kind=proposal'], 'fox'),
    'capture_beer': ('capture.py', _BEER, 'beer'),
    'capture_beer_proposal': ('capture.py',
                              _BEER + ['--config.model.kind=proposal'],
                              'beer'),
}


# Configs whose step takes most of a minute on a CPU: fewer steps (the
# first step already reaches the peak).
SLOW = {'lego': 2}


def measure(name: str, steps: int, workdir: str) -> tuple:
  """(peak RSS in bytes or None, seconds, status) of one config's run."""
  config, flags, data = RUNS[name]
  if data and not os.path.exists(os.path.join(DATA, data)):
    return None, 0.0, f'skipped: ../shared/data/{data} absent'
  cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--config', config,
         '--workdir', os.path.join(workdir, name), '--progress=false',
         f'--config.train.max_steps={min(steps, SLOW.get(name, steps))}', '--config.train.max_seconds=0',
         '--config.eval.every=0', '--config.eval.at_seconds=()',
         '--config.eval.max_views=1', '--config.train.tensorboard=False',
         *flags]
  start = time.perf_counter()
  with open(os.path.join(workdir, name + '.log'), 'w') as log:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
  seconds = time.perf_counter() - start
  code = os.waitstatus_to_exitcode(status)
  scale = 1 if sys.platform == 'darwin' else 1024
  return usage.ru_maxrss * scale, seconds, 'ok' if code == 0 else (
      f'exit {code} (log: {log.name})')


def main(argv: list) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--steps', type=int, default=10,
                      help='training steps per config (default %(default)s)')
  parser.add_argument('--workdir', default='',
                      help='where the runs go (default: a temporary folder)')
  parser.add_argument('names', nargs='*', help=f'any of {", ".join(RUNS)}')
  args = parser.parse_args(argv)
  unknown = [n for n in args.names if n not in RUNS]
  if unknown:
    parser.error(f'unknown name(s) {", ".join(unknown)}; choose from '
                 f'{", ".join(RUNS)}')
  workdir = args.workdir or tempfile.mkdtemp(prefix='config_memory_')
  os.makedirs(workdir, exist_ok=True)
  print('| run | flags | peak RSS (GB) | seconds | status |')
  print('| --- | --- | ---: | ---: | --- |')
  worst = 0
  for name in args.names or RUNS:
    rss, seconds, status = measure(name, args.steps, workdir)
    flags = ' '.join(f for f in RUNS[name][1] if 'path=' not in f)
    gb = '-' if rss is None else f'{rss / 1e9:.2f}'
    worst = max(worst, rss or 0)
    print(f'| `{RUNS[name][0]}` ({name}) | {flags or "-"} | {gb} | '
          f'{seconds:.0f} | {status} |', flush=True)
  print(f'\nlargest: {worst / 1e9:.2f} GB; runs in {workdir}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
