"""Quality against training wall-clock: held-out PSNR/SSIM, speed, memory.

Trains a config with ``train.py`` (in a subprocess) for a wall-clock budget,
evaluating the held-out split when the training clock passes each mark, then
writes ``benchmark.json`` and ``benchmark.png`` (PSNR against training minutes)
and prints one Markdown table row for BENCHMARKS.md:

  .venv/bin/python benchmarks/psnr_vs_time.py --config tiny.py \\
      --minutes 0.5,1,2,5,10,15 -- --config.data.path=../shared/data/tiny_lego.npz

Arguments after ``--`` go to train.py unchanged (e.g. to stretch
``train.max_steps`` so the learning-rate schedule spans the whole budget).

Overlaying several results in one plot (no training):

  .venv/bin/python benchmarks/psnr_vs_time.py --plot a.json b.json --out cmp.png

What is measured:
  - PSNR / SSIM at each mark: the first evaluation at or after the mark on the
    training clock (``elapsed_s``: compilation included, evaluation
    excluded). A mark after training already finished (``train.max_steps``
    reached) reports the final evaluation, marked "done" in the cell. Cells
    of a run that scores held-out views as NeRF-W (``eval.appearance='fit'``:
    right halves, codes fitted) are marked "NeRF-W".
  - rays/s: median of the ``rays_per_s`` of the training records in
    metrics.jsonl (a run too short to write one: steps x batch_rays /
    training seconds over the whole run, "(overall)"). samples/s: median of
    rays/s x ``samples_per_ray`` (or rays/s x ``samples`` / batch_rays) when
    the records carry one; else "-".
  - peak memory: the maximum resident set size of the train.py process
    (``os.wait4`` on its pid, so no other child counts). Host memory only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = 1
_JAX_PROBE = ('import json, jax; d = jax.devices(); print(json.dumps(dict('
              'jax_version=jax.__version__, jax_backend=jax.default_backend(), '
              'device_count=len(d), device_kind=d[0].device_kind)))')


# ---------------------------------------------------------------------------
# Command line.


def parse_args(argv: list) -> argparse.Namespace:
  """Everything after a bare ``--`` is passed to train.py unchanged."""
  if '--' in argv:
    cut = argv.index('--')
    argv, train_args = argv[:cut], argv[cut + 1:]
  else:
    train_args = []
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='Arguments after -- are passed to train.py.')
  parser.add_argument('--config', help='config for train.py (tiny.py, demo, '
                      'or a path)')
  parser.add_argument('--minutes', default='0.5,1,2,5,10,15',
                      help='training-clock marks in minutes, comma-separated; '
                      'the last one is the budget (default %(default)s)')
  parser.add_argument('--workdir', default='', help='fresh training directory '
                      '(default runs/benchmarks/<config>-<date-time>)')
  parser.add_argument('--out', default='', help='result JSON (default '
                      '<workdir>/benchmark.json); with --plot, the PNG')
  parser.add_argument('--plot-out', default='', help='PSNR plot (default '
                      '<workdir>/benchmark.png)')
  parser.add_argument('--label', default='', help='name in the table and plot '
                      '(default: the config)')
  parser.add_argument('--plot', nargs='+', metavar='JSON',
                      help='only overlay these result JSONs into --out')
  args = parser.parse_args(argv)
  args.train_args = train_args
  if args.plot:
    if train_args or args.config:
      parser.error('--plot takes result JSONs only (no --config, no --)')
    args.out = args.out or 'benchmark_comparison.png'
    return args
  if not args.config:
    parser.error('--config is required (or --plot JSON...)')
  try:
    minutes = sorted({float(m) for m in args.minutes.split(',') if m.strip()})
  except ValueError:
    parser.error(f'--minutes must be numbers separated by commas, got '
                 f'{args.minutes!r}')
  if not minutes or minutes[0] <= 0:
    parser.error('--minutes needs at least one positive mark')
  args.minutes = minutes
  return args


def config_stem(config: str) -> str:
  return os.path.splitext(os.path.basename(config.partition(':')[0]))[0]


def format_minutes(m: float) -> str:
  return f'{m:g} min'


# ---------------------------------------------------------------------------
# Running train.py.


def run_training(cmd: list, log_path: str) -> tuple:
  """Runs ``cmd`` with stdout and stderr into ``log_path``.

  Returns:
    (exit code, peak RSS in bytes of that process, wall seconds).
  """
  start = time.perf_counter()
  with open(log_path, 'w') as log:
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
      _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
      proc.terminate()
      proc.wait()
      raise
  proc.returncode = os.waitstatus_to_exitcode(status)
  # ru_maxrss is in kilobytes on Linux, bytes on macOS.
  scale = 1 if sys.platform == 'darwin' else 1024
  return proc.returncode, usage.ru_maxrss * scale, time.perf_counter() - start


def tail(path: str, lines: int = 25) -> str:
  try:
    with open(path, errors='replace') as f:
      return ''.join(f.readlines()[-lines:])
  except OSError:
    return ''


def machine_info() -> dict:
  """Host facts, plus jax's version and backend from a short subprocess."""
  info = dict(node=platform.node(), platform=platform.platform(),
              cpu_count=os.cpu_count(), cpu_model=_cpu_model(),
              python=platform.python_version())
  try:
    proc = subprocess.run([sys.executable, '-c', _JAX_PROBE], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    info.update(json.loads(proc.stdout.strip().splitlines()[-1]))
  except (subprocess.SubprocessError, ValueError, IndexError, OSError):
    info.update(jax_version=None, jax_backend=None)
  return info


def _cpu_model():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or None


# ---------------------------------------------------------------------------
# Reading the results.


def read_records(path: str) -> list:
  """metrics.jsonl records (a half-written last line is skipped)."""
  sys.path.insert(0, ROOT)
  from nerf_jax.runs.metrics_log import read_metrics  # pylint: disable=g-import-not-at-top
  return read_metrics(path)


def speeds(train_records: list, batch_rays: int) -> dict:
  """Median rays/s and (when the records carry it) samples/s."""
  rays = [r['rays_per_s'] for r in train_records if 'rays_per_s' in r]
  samples = []
  for r in train_records:
    if 'rays_per_s' not in r:
      continue
    if 'samples_per_ray' in r:
      samples.append(r['rays_per_s'] * r['samples_per_ray'])
    elif 'samples' in r and batch_rays:
      samples.append(r['rays_per_s'] * r['samples'] / batch_rays)
  return dict(
      rays_per_s=float(statistics.median(rays)) if rays else None,
      samples_per_s=float(statistics.median(samples)) if samples else None,
      train_records=len(rays), rays_per_s_source='median' if rays else None)


def overall_rate(final: dict, batch_rays) -> dict:
  """rays/s over the whole run (compilation included), for runs too short
  to write a training record."""
  if not batch_rays or final['elapsed_s'] <= 0:
    return dict(rays_per_s=None, rays_per_s_source=None)
  return dict(rays_per_s=final['step'] * batch_rays / final['elapsed_s'],
              rays_per_s_source='overall')


def at_marks(evals: list, marks_s: list, minutes: list) -> list:
  """For each mark, the first evaluation at or after it on the training
  clock; the final evaluation (``done``) if training finished before it."""
  out = []
  for m, mark in zip(minutes, marks_s):
    hit = [r for r in evals if r['elapsed_s'] >= mark - 1e-3]
    record, done = (hit[0], False) if hit else (evals[-1], True)
    out.append(dict(minutes=m, seconds=mark, step=record['step'],
                    elapsed_s=record['elapsed_s'], psnr=record['psnr'],
                    ssim=record['ssim'], done=done,
                    appearance=record.get('appearance', 'mean')))
  return out


def markdown(result: dict) -> tuple:
  """(header, separator, row) of the table for BENCHMARKS.md."""
  marks = result['marks']
  header = ('| config | rays/s | samples/s | '
            + ' | '.join(format_minutes(m['minutes']) for m in marks)
            + ' | peak GB |')
  separator = '| --- |' + ' ---: |' * (len(marks) + 3)
  rays = _count(result['rays_per_s'])
  if result.get('rays_per_s_source') == 'overall':
    rays += ' (overall)'
  cells = [f'`{result["label"]}`', rays, _count(result['samples_per_s'])]
  for m in marks:
    cell = f'{m["psnr"]:.2f}'
    if m['done']:
      cell += f' (done: step {m["step"]}, {m["elapsed_s"]:.0f} s)'
    if m.get('appearance') == 'fit':  # right halves, codes fitted (NeRF-W)
      cell += ' (NeRF-W)'
    cells.append(cell)
  cells.append(f'{result["peak_rss_gb"]:.2f}')
  return header, separator, '| ' + ' | '.join(cells) + ' |'


def _count(value) -> str:
  return '-' if value is None else f'{value:,.0f}'


# ---------------------------------------------------------------------------
# Plots.


def plot(results: list, out_path: str) -> None:
  """Held-out PSNR against training minutes, one line per result."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  ticks = set()
  for result in results:
    evals = [e for e in result['evals'] if e['elapsed_s'] > 0]
    minutes = [e['elapsed_s'] / 60 for e in evals]
    line, = ax.plot(minutes, [e['psnr'] for e in evals], marker='o',
                    markersize=3, label=result.get('label', '?'))
    done = [m for m in result['marks'] if m['done']]
    if done:  # where training finished before the budget
      ax.plot([done[0]['elapsed_s'] / 60], [done[0]['psnr']], marker='s',
              markersize=7, color=line.get_color(), fillstyle='none')
    ticks.update(m['minutes'] for m in result['marks'])
  ax.set_xscale('log')
  if ticks:
    ax.set_xticks(sorted(ticks))
    ax.set_xticklabels([f'{t:g}' for t in sorted(ticks)])
    ax.minorticks_off()
  ax.set_xlabel('training wall-clock (minutes, log scale)')
  ax.set_ylabel('held-out PSNR (dB)')
  machines = {r.get('machine', {}).get('node') for r in results}
  title = 'Held-out PSNR against training time'
  if len(machines) == 1 and None not in machines:
    m = results[0]['machine']
    title += (f'\n{m.get("cpu_count")} cpus, jax {m.get("jax_version")} on '
              f'{m.get("jax_backend")}')
  ax.set_title(title, fontsize=10)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  tmp = out_path + '.tmp.png'
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, out_path)


# ---------------------------------------------------------------------------
# The benchmark.


def benchmark(args) -> int:
  stem = config_stem(args.config)
  workdir = os.path.abspath(args.workdir or os.path.join(
      'runs', 'benchmarks',
      f'{stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}'))
  for name in ('config.json', 'metrics.jsonl', 'checkpoints'):
    if os.path.exists(os.path.join(workdir, name)):
      print(f'error: {workdir} already holds a run (it would resume); use a '
            'fresh --workdir', file=sys.stderr)
      return 2
  os.makedirs(workdir, exist_ok=True)
  out_json = os.path.abspath(args.out or os.path.join(workdir, 'benchmark.json'))
  out_png = os.path.abspath(args.plot_out or os.path.join(workdir,
                                                          'benchmark.png'))
  marks_s = [round(m * 60, 6) for m in args.minutes]
  cmd = [sys.executable, os.path.join(ROOT, 'train.py'),
         '--config', args.config, '--workdir', workdir, '--progress=false',
         f'--config.train.max_seconds={marks_s[-1]}',
         f'--config.eval.at_seconds={tuple(marks_s)!r}',
         '--config.eval.every=0', '--config.checkpoint.every=100000000',
         *args.train_args]
  log_path = os.path.join(workdir, 'train.log')
  started = datetime.datetime.now().astimezone()
  print(f'# training {args.config} for {marks_s[-1]:g} s of training time; '
        f'log: {log_path}', flush=True)
  code, peak_bytes, wall_s = run_training(cmd, log_path)
  if code:
    print(f'error: train.py exited with {code}; last lines of {log_path}:\n'
          + tail(log_path), file=sys.stderr)
    return 1
  records = read_records(os.path.join(workdir, 'metrics.jsonl'))
  evals = [r for r in records if r.get('split') != 'train' and 'psnr' in r]
  if not evals:
    print(f'error: train.py wrote no evaluation to {workdir}/metrics.jsonl; '
          f'last lines of {log_path}:\n' + tail(log_path), file=sys.stderr)
    return 1
  with open(os.path.join(workdir, 'config.json')) as f:
    resolved = json.load(f)
  batch_rays = resolved.get('train', {}).get('batch_rays')
  speed = speeds([r for r in records if r.get('split') == 'train'], batch_rays)
  marks = at_marks(evals, marks_s, args.minutes)
  last = evals[-1]
  if speed['rays_per_s'] is None:
    speed.update(overall_rate(last, batch_rays))
  result = dict(
      schema=SCHEMA,
      label=args.label or args.config,
      config=args.config,
      overrides=list(args.train_args),
      command=cmd,
      workdir=workdir,
      started_at=started.isoformat(timespec='seconds'),
      wall_s=round(wall_s, 2),
      machine=machine_info(),
      minutes=args.minutes,
      max_seconds=marks_s[-1],
      batch_rays=batch_rays,
      final=dict(step=last['step'], elapsed_s=last['elapsed_s'],
                 psnr=last['psnr'], ssim=last['ssim'],
                 finished_early=any(m['done'] for m in marks)),
      rays_per_s=speed['rays_per_s'],
      rays_per_s_source=speed['rays_per_s_source'],
      samples_per_s=speed['samples_per_s'],
      train_records=speed['train_records'],
      peak_rss_gb=round(peak_bytes / 1e9, 3),
      marks=marks,
      evals=[dict(step=r['step'], elapsed_s=r['elapsed_s'], psnr=r['psnr'],
                  ssim=r['ssim'], split=r.get('split'), views=r.get('views'))
             for r in evals],
      resolved_config=resolved)
  header, separator, row = markdown(result)
  result['markdown'] = dict(header=header, separator=separator, row=row)
  os.makedirs(os.path.dirname(out_json), exist_ok=True)
  with open(out_json + '.tmp', 'w') as f:
    json.dump(result, f, indent=2)
  os.replace(out_json + '.tmp', out_json)
  plot([result], out_png)

  m = result['machine']
  print(f'# {m["node"]}: {m["cpu_count"]} cpus, jax {m["jax_version"]} on '
        f'{m["jax_backend"]}; wall {wall_s:.0f} s; {out_json}; {out_png}')
  for mark in marks:
    print(f'#   {format_minutes(mark["minutes"]):>9}: step {mark["step"]:>7} '
          f'at {mark["elapsed_s"]:8.1f} s  PSNR {mark["psnr"]:6.2f}  '
          f'SSIM {mark["ssim"]:.3f}' + ('  (training done)' if mark['done']
                                         else ''))
  print(header)
  print(separator)
  print(row)
  return 0


def compare(args) -> int:
  results = []
  for path in args.plot:
    try:
      with open(path) as f:
        results.append(json.load(f))
    except (OSError, ValueError) as e:
      print(f'error: cannot read {path}: {e}', file=sys.stderr)
      return 1
  plot(results, os.path.abspath(args.out))
  print(f'# {len(results)} results -> {args.out}')
  header = None
  for result in results:
    h, s, row = markdown(result)
    if h != header:
      print(h)
      print(s)
      header = h
    print(row)
  return 0


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return compare(args) if args.plot else benchmark(args)


if __name__ == '__main__':
  sys.exit(main())
