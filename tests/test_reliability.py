"""Nothing lost, nothing silent: training killed, interrupted, locked out,
fed NaNs, given a damaged checkpoint or a full disk, run as a user would.

Every run here is the same small training (9 steps, a checkpoint every 3);
``reference`` is its uninterrupted result, which every interrupted and
resumed run must match bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import ml_collections
import numpy as np
import pytest

from checks import error_line, one_line  # tests/checks.py
from configs import demo
from nerf_jax import datasets, distributed, errors, faults, models, resources
from nerf_jax.runs import checkpoints, load, lock, metrics_log, rundir
from nerf_jax.runs import validation
from nerf_jax.datasets import batch as batch_lib
from nerf_jax.train import loop, signals, train_state, train_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = [
    '--config', 'demo.py', '--progress=false',
    '--config.data.width=12', '--config.data.height=12',
    '--config.data.num_train=10', '--config.data.num_val=1',
    '--config.data.num_test=1', '--config.model.preset=tiny',
    '--config.model.num_coarse=8', '--config.train.batch_rays=128',
    '--config.train.max_steps=9', '--config.train.log_every=3',
    '--config.eval.every=0', '--config.checkpoint.every=3',
]


def env(**extra):
  return dict(os.environ, JAX_PLATFORMS='cpu', **extra)


def train(workdir, *args, fault=None, cwd=None, preexec_fn=None):
  extra = {faults.ENV: fault} if fault else {}
  return subprocess.run(
      [sys.executable, str(ROOT / 'train.py'), *SMALL, '--workdir',
       str(workdir), *args], cwd=cwd or workdir.parent, env=env(**extra),
      capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
      preexec_fn=preexec_fn)


def start_training(workdir, *args):
  return subprocess.Popen(
      [sys.executable, str(ROOT / 'train.py'), *SMALL, '--workdir',
       str(workdir), *args], cwd=workdir.parent, env=env(),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      stdin=subprocess.DEVNULL)


def wait_for(condition, proc, timeout=180.0):
  end = time.time() + timeout
  while not condition():
    assert proc.poll() is None, proc.communicate()
    assert time.time() < end, 'timed out'
    time.sleep(0.2)


def render(workdir, *args):
  return subprocess.run(
      [sys.executable, str(ROOT / 'render.py'), '--ckpt', str(workdir),
       '--frames=1', '--scale=0.5', '--format=png', '--progress=false',
       *args], cwd=workdir.parent, env=env(), capture_output=True, text=True,
      timeout=300, stdin=subprocess.DEVNULL)


def params(workdir, step=None) -> dict:
  _, _, _, variables, _ = load.load_trained(str(workdir), step)
  leaves = jax.tree_util.tree_leaves_with_path(variables['params'])
  return {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}


def assert_same_params(a: dict, b: dict):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def strict_records(workdir) -> list:
  """Every line of metrics.jsonl, parsed as strict JSON (no NaN)."""
  def refuse(token):
    raise AssertionError(f'non-standard JSON constant {token}')
  text = (workdir / 'metrics.jsonl').read_text()
  assert text.endswith('\n')
  return [json.loads(line, parse_constant=refuse)
          for line in text.splitlines()]


def snapshot(workdir) -> dict:
  """Every file under ``workdir`` (but the lock) by its content hash."""
  out = {}
  for path in sorted(pathlib.Path(workdir).rglob('*')):
    if path.is_file() and path.name != rundir.LOCK_FILE:
      out[str(path.relative_to(workdir))] = hashlib.sha1(
          path.read_bytes()).hexdigest()
  return out


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run: (workdir, its final parameters)."""
  workdir = tmp_path_factory.mktemp('reference') / 'run'
  proc = train(workdir)
  assert proc.returncode == 0, proc.stderr
  return workdir, params(workdir)


def copy_of(reference, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference[0], workdir)
  return workdir


# ---------------------------------------------------------------------------
# Crashes.


def test_repeat_runs_are_bit_identical_and_record_their_environment(
    reference, tmp_path):
  workdir = tmp_path / 'run'
  assert train(workdir).returncode == 0
  assert_same_params(params(workdir), reference[1])
  saved = json.loads((workdir / 'environment.json').read_text())
  session = saved['sessions'][-1]
  assert saved['seed'] == session['seed'] == 0
  for package in ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint'):
    assert session['versions'][package], package
  assert session['devices'] and session['devices'][0].startswith('cpu')


def test_killed_at_any_moment_resumes_to_the_uninterrupted_parameters(
    reference, tmp_path):
  workdir = tmp_path / 'run'
  # Checkpoints are written in the background, so one may or may not be
  # complete when the process dies; a resumed run uses the newest complete
  # one, whichever it is.
  # SIGKILL while training (step 5 dispatched, checkpoint 3 written or not).
  proc = train(workdir, fault='step@5')
  assert proc.returncode == -signal.SIGKILL
  assert checkpoints.complete_steps(workdir) in ([], [3])
  # Resumed, then killed while checkpoint 6 is being written.
  proc = train(workdir, fault='checkpoint@6')
  assert proc.returncode == -signal.SIGKILL
  assert checkpoints.complete_steps(workdir) in ([], [3])
  # Resumed again, then killed half-way through a metrics line.
  proc = train(workdir, fault='metrics@9')
  assert proc.returncode == -signal.SIGKILL
  assert not (workdir / 'metrics.jsonl').read_text().endswith('\n')
  assert 9 not in checkpoints.complete_steps(workdir)
  # The same command once more finishes, as if nothing had happened.
  proc = train(workdir)
  assert proc.returncode == 0, proc.stderr
  assert_same_params(params(workdir), reference[1])
  records = strict_records(workdir)
  assert [r['step'] for r in records if r['split'] == 'train'] == [3, 6, 9]
  # TensorBoard too drops what the killed sessions logged past their
  # checkpoints (each session's file starts with a purge step).
  from test_train import tensorboard_events  # pylint: disable=g-import-not-at-top
  loss = tensorboard_events(str(workdir)).Scalars('train/loss')
  assert [e.step for e in loss] == [3, 6, 9]
  assert [e.value for e in loss] == pytest.approx(
      [r['loss'] for r in records if r['split'] == 'train'], rel=1e-6)


def test_a_fault_spec_that_does_not_parse_is_refused(tmp_path, monkeypatch):
  for spec, parsed in (('step@5', ('step', 5)), ('metrics@0', ('metrics', 0)),
                       ('checkpoint@12', ('checkpoint', 12))):
    assert faults.parse(spec) == parsed
    monkeypatch.setenv(faults.ENV, spec)
    assert faults.spec_problem() == ''
  monkeypatch.setenv(faults.ENV, '')  # set but empty: no fault
  assert faults.spec_problem() == ''
  for spec in ('step5', 'step@', 'steps@5', 'step@-1', 'step@5x', '@5',
               'STEP@5', 'step@ 5', ' step@5', 'step@5@6'):
    assert faults.parse(spec) is None, spec
    monkeypatch.setenv(faults.ENV, spec)
    problem = faults.spec_problem()
    assert repr(spec) in problem and 'step, metrics, checkpoint' in problem
  # train.py refuses one at start-up, before writing anything.
  proc = train(tmp_path / 'run', fault='checkpont@6')
  line = error_line(proc)
  assert proc.returncode == 2
  assert "NERF_JAX_FAULT='checkpont@6' is not <point>@<step>" in line
  assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_lock_sigint_sigterm_and_rendering_a_run_in_progress(tmp_path):
  workdir = tmp_path / 'run'
  long_run = ['--config.train.max_steps=100000',
              '--config.checkpoint.every=100000']
  first = start_training(workdir, *long_run)
  wait_for(lambda: metrics_log.read_metrics(str(workdir / 'metrics.jsonl')),
           first)
  # A second training into the same workdir is refused, changing nothing.
  before = {name: (workdir / name).read_bytes()
            for name in ('config.json', 'scene.json', 'environment.json')}
  line = error_line(train(workdir, *long_run))
  assert 'in use by another training' in line and str(workdir) in line
  assert f'pid {first.pid}' in line
  assert {name: (workdir / name).read_bytes() for name in before} == before
  # Ctrl-C: the step reached is saved (no checkpoint existed before).
  first.send_signal(signal.SIGINT)
  _, stderr = first.communicate(timeout=120)
  assert first.returncode == 130, stderr
  assert stderr.count('\n') == 1 and 'stopped by SIGINT at step' in stderr
  saved = checkpoints.complete_steps(workdir)
  assert len(saved) == 1 and f'checkpoint {saved[0]} saved' in stderr
  # Resumed; rendering while it trains reads a complete checkpoint.
  second = start_training(workdir, *long_run)
  wait_for(lambda: max(r['step'] for r in metrics_log.read_metrics(
      str(workdir / 'metrics.jsonl'))) > saved[0], second)
  shown = render(workdir, '--out', str(tmp_path / 'frames'))
  assert shown.returncode == 0, shown.stderr
  assert f'from step {saved[0]}' in shown.stdout
  # SIGTERM (a preempted VM): saved too, and the lock is free again.
  second.send_signal(signal.SIGTERM)
  _, stderr = second.communicate(timeout=120)
  assert second.returncode == 128 + signal.SIGTERM, stderr
  assert 'stopped by SIGTERM' in stderr
  assert checkpoints.complete_steps(workdir)[-1] > saved[0]
  assert lock.WorkdirLock.holder(str(workdir)) is None


def test_a_damaged_newest_checkpoint_is_named_and_the_previous_one_used(
    reference, tmp_path):
  workdir = copy_of(reference, tmp_path)
  for path in (workdir / 'checkpoints' / '9').rglob('*'):
    if path.is_file() and path.parent.parent.name.startswith('ocdbt.'):
      # Its arrays' data emptied, as a crash of the disk might leave it: the
      # metadata reads, the arrays do not, and orbax's other reads in
      # flight fail as they are dropped ("Exception ignored in", TensorStore
      # specs: hundreds of lines, in half of the runs unfiltered).
      path.write_bytes(b'')
  shown = render(workdir, '--out', str(tmp_path / 'frames'))
  assert shown.returncode == 0, shown.stderr
  assert 'damaged checkpoint' in shown.stderr and 'using checkpoint 6' in (
      shown.stderr)
  assert len(shown.stderr.splitlines()) == 1, shown.stderr
  assert 'from step 6' in shown.stdout
  # Training resumes from 6, sets 9 aside (kept) and redoes it exactly.
  proc = train(workdir)
  assert proc.returncode == 0, proc.stderr
  assert 'damaged' in proc.stderr and 'step 6' in proc.stdout
  assert len(proc.stderr.splitlines()) == 1, proc.stderr
  assert (workdir / rundir.DAMAGED_DIR / '9').is_dir()
  assert_same_params(params(workdir), reference[1])


def test_a_checkpoint_holding_nan_is_skipped(reference, tmp_path):
  workdir = copy_of(reference, tmp_path)
  manager = checkpoints.checkpoint_manager(str(workdir), keep=None)
  config = rundir.load_config(str(workdir))
  model = models.make_model(config.model,
                            rundir.load_scene(str(workdir)))
  target = train_state.create_train_state(jax.random.PRNGKey(0), model,
                                          model.optimizer(config.train))
  state, damaged = load.restore_state(manager, target)
  assert int(state.step) == 9 and not damaged
  poisoned = state.replace(step=state.step + 3, params=jax.tree_util.tree_map(
      lambda x: x * np.nan, state.params))
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  manager.save(12, args=ocp.args.PyTreeSave(poisoned))
  manager.wait_until_finished()
  state, damaged = load.restore_state(manager, target)
  manager.close()
  assert int(state.step) == 9
  assert damaged == [(12, 'it holds NaN or infinite values')]


def test_disk_full_is_one_line_and_keeps_the_last_good_checkpoint(
    reference, tmp_path):
  resource = pytest.importorskip('resource')
  workdir = copy_of(reference, tmp_path)

  def small_files_only():  # what a nearly full disk looks like to a writer
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

  line = error_line(train(workdir, '--config.train.max_steps=12',
                          preexec_fn=small_files_only))
  assert 'the disk is full' in line
  assert f'the last good checkpoint is step 9 in {workdir}' in line
  assert checkpoints.complete_steps(workdir) == [3, 6, 9]
  assert_same_params(params(workdir), reference[1])
  # With space again the same command resumes and finishes.
  proc = train(workdir, '--config.train.max_steps=12')
  assert proc.returncode == 0, proc.stderr
  assert checkpoints.complete_steps(workdir)[-1] == 12


# ---------------------------------------------------------------------------
# Numerical health.


def small_config(**overrides):
  config = demo.get_config()
  config.data.width = config.data.height = 12
  config.data.num_train, config.data.num_val, config.data.num_test = 10, 1, 1
  config.model.preset, config.model.num_coarse = 'tiny', 8
  config.train.batch_rays, config.train.max_steps = 128, 9
  config.train.log_every, config.eval.every = 3, 0
  config.checkpoint.every = 3
  for key, value in overrides.items():
    section, field = key.split('__')
    config[section][field] = value
  return config


def poison(monkeypatch, rows: int):
  """Makes the first ``rows`` training pixels NaN once they are on the
  device (the pixel table in float32): a batch that draws one has a NaN
  loss."""
  real = batch_lib.PixelTable.from_split

  def from_split(split, mesh):
    data = real(split, mesh)
    pixels = np.asarray(data.rgb)[:data.num_pixels] / np.float32(255)
    pixels[:rows] = np.nan
    return data.replace(rgb=distributed.shard_rows(pixels, mesh))

  monkeypatch.setattr(batch_lib.PixelTable, 'from_split',
                      staticmethod(from_split))


def test_nonfinite_steps_are_skipped_then_persistent_ones_stop_training(
    tmp_path, monkeypatch, capsys):
  workdir = str(tmp_path / 'run')
  # 10 of the 1,440 pixels are NaN: about half the batches draw one, and
  # each such step is skipped.
  poison(monkeypatch, 10)
  loop.train_and_evaluate(small_config(), workdir, progress=False)
  records = strict_records(tmp_path / 'run')
  skipped = [r['skipped_steps'] for r in records if r['split'] == 'train']
  assert skipped[-1] > 0 and skipped == sorted(skipped)
  assert 'non-finite loss or gradients and were skipped' in (
      capsys.readouterr().err)
  good = params(tmp_path / 'run')
  assert all(np.all(np.isfinite(x)) for x in good.values())
  # All pixels NaN: every step is skipped; after 4 in a row training stops
  # and the last good checkpoint is left as it was.
  poison(monkeypatch, 12 * 12 * 10)
  before = snapshot(os.path.join(workdir, 'checkpoints'))
  with pytest.raises(signals.Diverged) as e:
    loop.train_and_evaluate(
        small_config(train__max_steps=30, train__max_nonfinite_steps=4),
        workdir, progress=False)
  message = one_line(e)
  assert 'not finite for 4 steps in a row' in message
  assert 'last good checkpoint is step 9' in message
  assert snapshot(os.path.join(workdir, 'checkpoints')) == before
  assert_same_params(params(tmp_path / 'run'), good)
  assert strict_records(tmp_path / 'run')[-1]['stopped'] == 'diverged'


def test_the_step_keeps_the_state_when_the_loss_is_not_finite():
  config = small_config()
  scene = datasets.load_scene(config.data, splits=('train',))
  info = scene.info()
  model = models.make_model(config.model, info)
  tx = model.optimizer(config.train)
  state = train_state.create_train_state(jax.random.PRNGKey(0), model, tx)
  split = scene.split('train')
  images = np.array(split.images)
  good = batch_lib.PixelTable.from_cameras(images, split.cameras)
  images[:] = np.nan
  bad = batch_lib.PixelTable.from_cameras(images, split.cameras)
  step = jax.jit(train_step.make_train_step(model, tx, 64, scene.near,
                                            scene.far))
  rng = jax.random.PRNGKey(1)
  after_bad, metrics = step(state, bad, rng)
  assert not np.isfinite(float(metrics['loss']))
  assert int(after_bad.step) == 1 and int(after_bad.skipped) == 1
  assert int(after_bad.nonfinite) == 1
  for a, b in zip(jax.tree_util.tree_leaves((state.params, state.opt_state)),
                  jax.tree_util.tree_leaves((after_bad.params,
                                             after_bad.opt_state))):
    np.testing.assert_array_equal(a, b)
  after_good, _ = step(after_bad, good, rng)
  assert int(after_good.nonfinite) == 0 and int(after_good.skipped) == 1
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree_util.tree_leaves((state.params, state.opt_state)),
      jax.tree_util.tree_leaves((after_good.params, after_good.opt_state))))


def test_metrics_stay_strict_json_and_a_half_line_is_dropped(tmp_path):
  writer = metrics_log.MetricsWriter(str(tmp_path))
  writer.write({'step': 1, 'split': 'train', 'loss': float('nan'),
                'psnr': float('inf')})
  writer.write({'step': 2, 'split': 'train', 'loss': 0.5})
  with open(writer.path, 'a') as f:
    f.write('{"step": 3, "spl')  # a crash mid-write
  assert [r['step'] for r in metrics_log.read_metrics(writer.path)] == [1, 2]
  writer.truncate(2)
  records = strict_records(tmp_path)
  assert records[0]['loss'] is None and records[0]['psnr'] is None
  assert [r['step'] for r in records] == [1, 2]


# ---------------------------------------------------------------------------
# Bad input: one line, non-zero exit, nothing changed.


@pytest.mark.parametrize('key, value, expected', [
    ('checkpoint.keep', 0, 'checkpoint.keep=0 is out of range'),
    ('checkpoint.every', 0, 'checkpoint.every=0 is out of range'),
    ('train.log_every', 0, 'train.log_every=0 is out of range'),
    ('data.far', 3e38, 'data.far=3e+38 is out of range'),
    ('data.near', -1.0, 'data.near=-1.0 is out of range'),
    ('train.lr_init', 1000.0, 'train.lr_init=1000.0 is out of range'),
    ('train.adam_b2', 1.0, 'train.adam_b2=1.0 is out of range'),
    ('eval.chunk', 0, 'eval.chunk=0 is out of range'),
    ('eval.at_seconds', (10.0, float('nan')), 'is not finite'),
    ('train.max_seconds', float('inf'), 'is not finite'),
    ('model.pos_freqs', 200, 'model.pos_freqs=200 is out of range'),
    ('train.max_steps', 10.5, 'has the wrong type: expected int'),
    ('data.white_background', 1, 'has the wrong type: expected bool'),
    ('train.seed', 2 ** 63, f'train.seed={2 ** 63} is out of range'),
    ('data.seed', -1, 'data.seed=-1 is out of range'),
    ('data.val_indices', (3, 10 ** 30), 'data.val_indices=(3, 10000'),
])
def test_config_values_are_checked_where_they_enter(key, value, expected):
  # As a config file could write them (a ConfigDict built from scratch
  # takes any type; overrides on the command line are typed by absl).
  raw = small_config().to_dict()
  section, field = key.split('.')
  raw[section][field] = value
  config = ml_collections.ConfigDict(raw)
  with pytest.raises(validation.ConfigError) as e:
    validation.validate_config(config, num_devices=1)
  assert expected in one_line(e)


def test_a_config_file_with_unknown_fields_is_refused():
  config = small_config()
  with config.unlocked():
    config.train.learning_rate = 0.1
  with pytest.raises(validation.ConfigError) as e:
    validation.validate_config(config, num_devices=1)
  assert "unknown config key 'train.learning_rate'" in one_line(e)


def test_a_held_out_option_for_another_data_kind_is_refused_for_every_kind():
  setting = {'data.num_val': 3, 'data.num_test': 0, 'data.max_views': 2,
             'data.val_indices': (1, 2), 'data.val_fraction': 0.25,
             'data.holdout': 4}
  for kind in ('procedural', 'tiny_npz', 'blender', 'llff', 'transforms'):
    for key, applies_to in validation.HELD_OUT_OPTIONS.items():
      config = demo.get_config()
      config.data.kind = kind
      config.data[key.split('.')[1]] = setting[key]
      if kind in applies_to:
        validation.validate_config(config, num_devices=1)
        continue
      with pytest.raises(validation.ConfigError) as e:
        validation.validate_config(config, num_devices=1)
      assert (f'{key}={setting[key]!r} does not apply to '
              f"data.kind='{kind}'") in one_line(e)
      # A saved run trained while such options were ignored still renders.
      validation.validate_config(config, num_devices=0)
  # At a default value (as a saved config.json lists every field), any kind.
  config = demo.get_config()
  config.data.kind = 'blender'
  config.data.val_indices = []
  validation.validate_config(config, num_devices=1)


def test_every_shipped_config_passes():
  for path in sorted((ROOT / 'configs').glob('*.py')):
    if path.name == '__init__.py':
      continue
    from nerf_jax import cli  # pylint: disable=g-import-not-at-top
    validation.validate_config(
        cli._load_config_module(str(path)).get_config(), num_devices=1)  # pylint: disable=protected-access


def test_bad_runs_are_one_line_and_change_nothing(reference, tmp_path):
  workdir = copy_of(reference, tmp_path)
  before = snapshot(workdir)
  cases = [
      (['--config.checkpoint.keep=0'], 'checkpoint.keep=0'),
      (['--config.train.batch_rays=40000000'], 'of memory but'),
  ]
  for args, expected in cases:
    line = error_line(train(workdir, '--config.train.max_steps=12', *args))
    assert expected in line, line
    assert snapshot(workdir) == before, args
  assert 'lower train.batch_rays' in line
  # A workdir that is a file, or under one; a config that is not Python.
  blocker = tmp_path / 'a_file'
  blocker.write_text('keep me')
  for target in (blocker, blocker / 'run'):
    line = error_line(train(target, cwd=tmp_path))
    assert 'is a file, not a folder' in line and str(blocker) in line
  assert blocker.read_text() == 'keep me'
  (tmp_path / 'config.json').write_text('{"train": {"max_steps": 3}}')
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'train.py'), '--config', 'config.json'],
      cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
  assert 'is not a Python config' in error_line(proc)


def test_unexpected_errors_are_one_line_unless_verbose():
  code = ('import sys; from absl import app; from nerf_jax import cli\n'
          'def main(argv):\n'
          '  cli.start(argv)\n'
          '  cli.run_guarded(lambda: {}["missing"])()\n'
          'app.run(main, flags_parser=cli.parse_flags)\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env(),
                        capture_output=True, text=True, timeout=60)
  line = error_line(proc)
  assert 'unexpected KeyError' in line and '--verbose' in line
  proc = subprocess.run([sys.executable, '-c', code, '--verbose'], cwd=ROOT,
                        env=env(), capture_output=True, text=True, timeout=60)
  assert proc.returncode == 1 and 'Traceback' in proc.stderr


def test_out_of_memory_and_disk_full_are_recognised_through_wrappers():
  import errno  # pylint: disable=g-import-not-at-top
  inner = OSError(errno.ENOSPC, 'No space left on device', '/x/ckpt')
  try:
    try:
      raise inner
    except OSError as e:
      raise ValueError('OUT_OF_RANGE: Error writing "params"') from e
  except ValueError as wrapped:
    assert errors.is_disk_full(wrapped)
  assert errors.is_out_of_memory(RuntimeError(
      'RESOURCE_EXHAUSTED: Out of memory allocating 6502400018176 bytes.'))
  assert 'lower train.batch_rays' in errors.describe(
      MemoryError(), 'lower train.batch_rays')
  assert errors.describe(KeyError('x')) is None


def test_work_that_cannot_fit_in_memory_is_refused_before_it_starts(
    monkeypatch):
  # What the host has, as the out-of-memory killer sees it: refusing beats
  # being killed without a word.
  monkeypatch.setattr(resources, 'available_bytes', lambda device=None: 2**30)
  config = small_config()
  config.data.num_train = 5000
  config.data.width = config.data.height = 256
  with pytest.raises(errors.UserError) as e:
    datasets.load_scene(config.data, splits=('train',))
  message = one_line(e)
  assert 'needs about 6.1 GiB of memory but 1.0 GiB is available' in message
  assert 'data.num_train' in message
  resources.check_fits(2**29, 'half', 'unused')  # what fits passes
