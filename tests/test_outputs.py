"""A tool writes only the files it owns and never removes what it did not
create (nerf_jax/outputs.py): every writer, and the command lines pointed at
a run's files or at the user's own folders."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from checks import error_line, one_line, snapshot  # tests/checks.py
from nerf_jax.io import outputs, video
from nerf_jax.runs import rundir

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fake_run(path: pathlib.Path) -> pathlib.Path:
  """A folder that looks like a training run (no model in it)."""
  (path / 'checkpoints' / '100').mkdir(parents=True)
  (path / 'checkpoints' / '100' / 'state').write_bytes(b'weights')
  (path / 'config.json').write_text('{}')
  (path / 'scene.json').write_text('{}')
  (path / 'metrics.jsonl').write_text('{"step": 100}\n')
  return path


def documents(path: pathlib.Path) -> pathlib.Path:
  """A folder of the user's own files."""
  (path / 'letters').mkdir(parents=True)
  (path / 'letters' / 'a.txt').write_text('dear user')
  (path / 'thesis.pdf').write_bytes(b'%PDF years of work')
  return path


def write_text(text):
  def write(tmp):
    pathlib.Path(tmp).write_text(text)
  return write


def write_tree(names):
  def write(tmp):
    os.makedirs(tmp)
    for name in names:
      pathlib.Path(tmp, name).write_text(name)
  return write


def test_run_entries_agree_with_rundir():
  names = {rundir.CONFIG_FILE, rundir.SCENE_FILE, rundir.METRICS_FILE,
           rundir.CHECKPOINT_DIR, rundir.DAMAGED_DIR, rundir.ENVIRONMENT_FILE,
           rundir.LOCK_FILE}
  assert names <= outputs.RUN_ENTRIES


def test_new_outputs_are_written_recorded_and_replaced_by_their_tool(tmp_path):
  file, folder = tmp_path / 'out' / 'mesh.ply', tmp_path / 'maps'
  outputs.write(str(file), 'export.py', write_text('one'))
  outputs.write(str(folder), 'export.py', write_tree(['a', 'b']),
                kind=outputs.FOLDER)
  assert file.read_text() == 'one'
  assert sorted(os.listdir(folder)) == ['a', 'b']
  assert outputs.owner(str(file)) == 'export.py'
  assert outputs.owner(str(folder)) == 'export.py'
  # The same tool replaces them whole; nothing temporary is left.
  outputs.write(str(file), 'export.py', write_text('two'))
  outputs.write(str(folder), 'export.py', write_tree(['c']),
                kind=outputs.FOLDER)
  assert file.read_text() == 'two'
  assert os.listdir(folder) == ['c']
  assert sorted(os.listdir(tmp_path)) == [outputs.LEDGER, 'maps', 'out']
  assert sorted(os.listdir(file.parent)) == [outputs.LEDGER, 'mesh.ply']
  # Another tool may not.
  before = snapshot(tmp_path)
  for path, kind in ((file, outputs.FILE), (folder, outputs.FOLDER)):
    with pytest.raises(outputs.OutputError) as e:
      outputs.write(str(path), 'render.py', write_text('x'), kind=kind)
    assert 'exists and was not written by render.py' in one_line(e)
  assert snapshot(tmp_path) == before


def test_an_empty_folder_is_used_and_a_missing_one_created(tmp_path):
  (tmp_path / 'empty').mkdir()
  outputs.write(str(tmp_path / 'empty'), 'export.py', write_tree(['a']),
                kind=outputs.FOLDER)
  assert os.listdir(tmp_path / 'empty') == ['a']
  outputs.write(str(tmp_path / 'new' / 'deeper'), 'export.py',
                write_tree(['b']), kind=outputs.FOLDER)
  assert os.listdir(tmp_path / 'new' / 'deeper') == ['b']


def test_the_users_files_and_folders_are_never_replaced(tmp_path):
  docs = documents(tmp_path / 'docs')
  (tmp_path / 'mesh.ply').write_text('my own mesh')
  before = snapshot(tmp_path)
  cases = ((docs, outputs.FOLDER), (docs / 'thesis.pdf', outputs.FILE),
           (tmp_path / 'mesh.ply', outputs.FILE),
           (docs / 'letters', outputs.FOLDER))
  for path, kind in cases:
    for replace in (True, False):
      problem = outputs.problem(str(path), 'export.py', kind, '--depth',
                                replace)
      assert problem.startswith(f'--depth {path} exists and was not written '
                                'by export.py; it is left as it is'), problem
      with pytest.raises(outputs.OutputError):
        outputs.write(str(path), 'export.py', write_tree(['x']), kind=kind,
                      replace=replace)
  assert snapshot(tmp_path) == before


def test_an_output_the_user_changed_is_theirs_now(tmp_path):
  file, folder = tmp_path / 'path.json', tmp_path / 'frames'
  outputs.write(str(file), 'view.py', write_text('{}'))
  outputs.write(str(folder), 'render.py', write_tree(['0000.png']),
                kind=outputs.FOLDER)
  file.write_text('{"edited": true}')
  (folder / 'notes.txt').write_text('mine')
  before = snapshot(tmp_path)
  for path, tool, kind in ((file, 'view.py', outputs.FILE),
                           (folder, 'render.py', outputs.FOLDER)):
    with pytest.raises(outputs.OutputError) as e:
      outputs.write(str(path), tool, write_tree(['x']), kind=kind)
    assert f'was written by {tool} but changed since' in one_line(e)
  assert snapshot(tmp_path) == before


def test_a_change_while_replacing_puts_the_folder_back(tmp_path, monkeypatch):
  folder = tmp_path / 'frames'
  outputs.write(str(folder), 'render.py', write_tree(['0000.png']),
                kind=outputs.FOLDER)
  original = outputs.check

  def check_then_user_adds_a_file(path, *args, **kwargs):
    original(path, *args, **kwargs)
    if os.path.isdir(folder) and not (folder / 'late.txt').exists():
      (folder / 'late.txt').write_text('added by the user meanwhile')

  monkeypatch.setattr(outputs, 'check', check_then_user_adds_a_file)
  with pytest.raises(outputs.OutputError):
    outputs.write(str(folder), 'render.py', write_tree(['0001.png']),
                  kind=outputs.FOLDER)
  assert sorted(os.listdir(folder)) == ['0000.png', 'late.txt']
  assert sorted(os.listdir(tmp_path)) == [outputs.LEDGER, 'frames']


def test_a_failed_write_changes_nothing(tmp_path):
  outputs.write(str(tmp_path / 'a.ply'), 'export.py', write_text('old'))
  outputs.write(str(tmp_path / 'maps'), 'export.py', write_tree(['x']),
                kind=outputs.FOLDER)
  before = snapshot(tmp_path)

  def fail(tmp):
    pathlib.Path(tmp).write_text('half')
    raise OSError(28, 'No space left on device', tmp)

  for name, kind in (('a.ply', outputs.FILE), ('maps', outputs.FOLDER),
                     ('new', outputs.FOLDER)):
    with pytest.raises(OSError):
      outputs.write(str(tmp_path / name), 'export.py', fail, kind=kind)
  assert snapshot(tmp_path) == before


def test_a_runs_own_files_are_never_an_output(tmp_path):
  run = fake_run(tmp_path / 'run')
  (tmp_path / 'link').symlink_to(run / 'checkpoints')
  before = snapshot(tmp_path)
  for path, kind in ((run, outputs.FOLDER), (run, outputs.CONTAINER),
                     (run / 'checkpoints', outputs.FOLDER),
                     (run / 'checkpoints' / '200', outputs.FOLDER),
                     (run / 'config.json', outputs.FILE),
                     (run / 'previews' / 'x.png', outputs.FILE),
                     (run / 'events.out.tfevents.1.host', outputs.FILE),
                     (tmp_path / 'link' / 'new', outputs.FOLDER)):
    problem = outputs.problem(str(path), 'export.py', kind, '--depth')
    assert 'training run' in problem, (path, problem)
    with pytest.raises(outputs.OutputError):
      outputs.write(str(path), 'export.py', write_tree(['x']),
                    kind=outputs.FILE if kind == outputs.FILE else
                    outputs.FOLDER)
  assert snapshot(tmp_path) == before
  # New names inside a run are fine.
  outputs.write(str(run / 'depth'), 'export.py', write_tree(['x']),
                kind=outputs.FOLDER)
  outputs.write(str(run / 'camera_path.json'), 'view.py', write_text('{}'))


def test_a_container_holds_only_nerf_jax_outputs(tmp_path):
  out = tmp_path / 'render'
  outputs.make_container(str(out), 'render.py')
  video.write_video(str(out / 'orbit_rgb.gif'),
                    np.zeros((2, 4, 4, 3), np.uint8), 10.0)
  outputs.write(str(out / 'mesh.ply'), 'export.py', write_text('m'))
  assert outputs.problem(str(out), 'render.py', outputs.CONTAINER) == ''
  (out / 'holiday.mp4').write_bytes(b'the user\'s video')
  assert outputs.problem(str(out), 'render.py', outputs.CONTAINER) == (
      f'output {out} holds files that nerf_jax did not write (holiday.mp4); '
      'choose a new or empty folder')


def test_an_earlier_render_folder_is_adopted_only_if_all_render_outputs(
    tmp_path):
  old = tmp_path / 'old'
  (old / 'eval_config_val').mkdir(parents=True)
  (old / 'orbit_rgb.mp4').write_bytes(b'v')
  (old / 'orbit_depth').mkdir()
  is_render = lambda n: n.startswith('eval_') or n.endswith(
      ('_rgb.mp4', '_depth'))
  outputs.adopt(str(old), 'render.py', is_render)
  assert outputs.owner(str(old / 'orbit_rgb.mp4')) == 'render.py'
  mixed = tmp_path / 'mixed'
  mixed.mkdir()
  (mixed / 'orbit_rgb.mp4').write_bytes(b'v')
  (mixed / 'notes.txt').write_text('mine')
  outputs.adopt(str(mixed), 'render.py', is_render)
  assert not (mixed / outputs.LEDGER).exists()


def test_overwrite_replaces_only_what_the_tool_wrote(tmp_path):
  scene = tmp_path / 'scene'
  outputs.write(str(scene), 'prepare.py', write_tree(['transforms.json']),
                kind=outputs.FOLDER, replace=False)
  problem = outputs.problem(str(scene), 'prepare.py', outputs.FOLDER,
                            '--out', replace=False)
  assert problem == (f'--out {scene} exists (written by prepare.py before); '
                     'pass --overwrite to replace it')
  outputs.write(str(scene), 'prepare.py', write_tree(['images']),
                kind=outputs.FOLDER, replace=True)
  assert os.listdir(scene) == ['images']


def test_a_corrupt_ledger_makes_nothing_ours(tmp_path):
  outputs.write(str(tmp_path / 'a.ply'), 'export.py', write_text('a'))
  (tmp_path / outputs.LEDGER).write_text('{"entries": [')
  assert outputs.owner(str(tmp_path / 'a.ply')) is None
  with pytest.raises(outputs.OutputError):
    outputs.write(str(tmp_path / 'a.ply'), 'export.py', write_text('b'))
  assert (tmp_path / 'a.ply').read_text() == 'a'


# ---------------------------------------------------------------------------
# The command lines (refused before JAX loads: about a second each).


def cli(tool, *args, cwd):
  return subprocess.run([sys.executable, str(ROOT / tool), *args],
                        capture_output=True, text=True, timeout=120,
                        cwd=cwd, stdin=subprocess.DEVNULL)


def test_export_depth_never_replaces_a_run_its_checkpoints_or_documents(
    tmp_path):
  run = fake_run(tmp_path / 'run')
  docs = documents(tmp_path / 'docs')
  before = snapshot(tmp_path)
  for target, expected in (
      (run, 'is a training run\'s folder'),
      (run / 'checkpoints', 'one of the training run\'s own files'),
      (docs, 'exists and was not written by export.py')):
    proc = cli('export.py', '--ckpt', str(run), '--depth', str(target),
               cwd=tmp_path)
    assert expected in error_line(proc), proc.stderr
  for flag in ('--mesh', '--points'):
    proc = cli('export.py', '--ckpt', str(run), flag,
               str(run / 'checkpoints' / 'x.ply'), cwd=tmp_path)
    assert 'own files' in error_line(proc)
  assert snapshot(tmp_path) == before


def test_render_refuses_an_out_folder_of_other_files(tmp_path):
  run = fake_run(tmp_path / 'run')
  out = documents(tmp_path / 'docs')
  (out / 'orbit_rgb').mkdir()
  (out / 'orbit_rgb' / 'holiday.png').write_bytes(b'a photo')
  before = snapshot(tmp_path)
  for target in (out, run):
    proc = cli('render.py', '--ckpt', str(run), '--format', 'png', '--out',
               str(target), cwd=tmp_path)
    line = error_line(proc)
    assert str(target) in line and ('nerf_jax did not write' in line or
                                    'training run' in line), line
  assert snapshot(tmp_path) == before


def test_a_new_training_never_writes_over_files_of_a_runs_names(tmp_path):
  docs = documents(tmp_path / 'docs')
  (docs / 'metrics.jsonl').write_text('{"my": "own measurements"}\n')
  before = snapshot(tmp_path)
  with pytest.raises(rundir.CheckpointError) as e:
    rundir.check_workdir(str(docs))
  assert one_line(e) == (
      f'{docs} holds metrics.jsonl but no config.json: it is not a run to '
      'resume, and a new run would write over it; move it away or use '
      'another --workdir')
  assert snapshot(tmp_path) == before
  (tmp_path / 'started').mkdir()  # a run killed before its config was saved
  (tmp_path / 'started' / rundir.LOCK_FILE).write_text('')
  (tmp_path / 'logged').mkdir()  # train.py ... > logged/train.log
  (tmp_path / 'logged' / 'train.log').write_text('')
  for ok in (tmp_path / 'started', tmp_path / 'logged', tmp_path / 'new',
             fake_run(tmp_path / 'run')):
    rundir.check_workdir(str(ok))
