"""Train-step throughput on 1, 2, 4, ... (fake CPU or real) devices.

  python benchmarks/devices_speed.py --config tiny.py --devices 1,2,4 \\
      --rounds 3 --steps 10

Each device count runs ``step_speed.py --sharded`` (the step as train.py
runs it: a mesh over every device, images split by view) in its own process,
with ``--xla_force_host_platform_device_count`` set on a CPU; ``plain`` is the
unsharded single-device step, the baseline. The processes run one at a time,
interleaved over rounds, and the median s/step of each is reported with its
ratio to the baseline. On a GPU/TPU host pass ``--real`` to use the devices
present (the count is then whatever is installed, one variant).
"""

import os
import re
import subprocess
import sys

from absl import app, flags
import numpy as np

_CONFIG = flags.DEFINE_string('config', 'tiny.py', 'config file or name')
_DEVICES = flags.DEFINE_list('devices', ['1', '2', '4'], 'device counts')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'interleaved rounds')
_STEPS = flags.DEFINE_integer('steps', 10, 'timed steps per round')
_OVERRIDES = flags.DEFINE_multi_string(
    'override', [], '--config.<key>=<value> passed to every variant, e.g. '
    'train.batch_rays=4096')
_REAL = flags.DEFINE_bool('real', False, 'use the devices present, no fakes')

HERE = os.path.dirname(os.path.abspath(__file__))


def _time(devices, sharded: bool) -> dict:
  env = dict(os.environ)
  if devices:
    env['JAX_PLATFORMS'] = 'cpu'
    env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                        f' --xla_force_host_platform_device_count={devices}')
  args = [sys.executable, os.path.join(HERE, 'step_speed.py'),
          f'--config={_CONFIG.value}', f'--steps={_STEPS.value}',
          '--rounds=1', f'--sharded={sharded}']
  args += [f'--config.{o}' for o in _OVERRIDES.value]
  proc = subprocess.run(args, env=env, capture_output=True, text=True,
                        check=False)
  if proc.returncode:
    raise SystemExit(proc.stderr[-2000:])
  s = float(re.search(r': ([0-9.]+) s/step', proc.stdout).group(1))
  rays = float(re.search(r'([0-9,]+) rays/s', proc.stdout).group(1).replace(
      ',', ''))
  count = int(re.search(r'^(\d+) \w+ device', proc.stdout, re.M).group(1))
  return dict(s=s, rays=rays, count=count)


def main(_):
  if _REAL.value:
    variants = [('plain', None, False), ('sharded', None, True)]
  else:
    variants = [('plain', 1, False)] + [
        (f'{d} device(s)', int(d), True) for d in _DEVICES.value]
  times = {label: [] for label, _, _ in variants}
  counts = {}
  for _ in range(_ROUNDS.value):
    for label, devices, sharded in variants:
      r = _time(devices, sharded)
      times[label].append(r['s'])
      counts[label] = r['count']
  base = float(np.median(times['plain']))
  print(f'config {_CONFIG.value} {" ".join(_OVERRIDES.value)}: median of '
        f'{_ROUNDS.value} interleaved rounds of {_STEPS.value} steps')
  print(f'{"variant":>14} {"devices":>7} {"s/step":>8} {"vs plain":>9}')
  for label, _, _ in variants:
    s = float(np.median(times[label]))
    print(f'{label:>14} {counts[label]:>7} {s:8.4f} {s / base:8.2f}x')
  with open('/proc/loadavg') as f:
    print('loadavg:', f.read().strip())


if __name__ == '__main__':
  app.run(main)
