"""Writing outputs so that nothing a tool did not write is ever removed.

The rule, for every tool that writes outside a training run (render.py,
export.py, view.py's camera paths, prepare.py):

* An output is a file or a folder that one tool writes whole. It is built
  under a temporary name beside its final place and renamed there once
  complete, so an interrupted or failed write changes nothing.
* What a tool wrote is recorded in a ledger, ``.nerf_jax-outputs.json``, in
  the folder holding the output: the tool, and a fingerprint (a file's size
  and modification time; every entry of a folder with its size).
* An existing file or folder is replaced only when the ledger says the same
  tool wrote it and it is unchanged since: a file the user edited, or a
  folder the user added a file to, is the user's now. Anything else there
  is refused with one line naming it, and nothing is written. An empty
  folder is used as it is.
* A *container* (render.py's ``--out``) is a folder a tool writes several
  outputs into; it must be new, empty, or hold only outputs recorded in
  its ledger: a folder of the user's documents is refused.
* No output lands on a training run's own files: neither a run directory
  itself nor anything inside its ``RUN_ENTRIES`` (config.json,
  checkpoints/, ...). New names inside a run (``<run>/render/``, a saved
  camera path) are fine.

The checks (``problem``) create nothing, so the command-line tools run them
before any heavy import or work; the writers check again at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Callable, Optional, TypeVar

from nerf_jax import errors

LEDGER = '.nerf_jax-outputs.json'
FILE, FOLDER, CONTAINER = 'file', 'folder', 'container'
# A training run's own entries (rundir's file names; tests/test_outputs.py
# checks they agree), and the prefix of its TensorBoard event files.
RUN_ENTRIES = frozenset({
    'config.json', 'scene.json', 'metrics.jsonl', 'environment.json',
    'checkpoints', 'checkpoints.damaged', 'previews', 'progress.gif',
    'progress.png', '.lock'})
RUN_EVENT_PREFIX = 'events.out.tfevents'

R = TypeVar('R')


class OutputError(errors.UserError):
  """An output that cannot be written without touching what is not ours."""


def is_run_dir(path: str) -> bool:
  """Whether ``path`` is a training run's directory (it has checkpoints/,
  or both config.json and scene.json)."""
  return os.path.isdir(path) and (
      os.path.isdir(os.path.join(path, 'checkpoints')) or (
          os.path.isfile(os.path.join(path, 'config.json'))
          and os.path.isfile(os.path.join(path, 'scene.json'))))


def _is_run_entry(name: str) -> bool:
  return name in RUN_ENTRIES or name.startswith(RUN_EVENT_PREFIX)


def run_problem(path: str, what: str) -> str:
  """'' or why ``path`` is a training run's own: the run directory itself
  or inside one of its ``RUN_ENTRIES`` (symbolic links resolved)."""
  real = os.path.realpath(path)
  if is_run_dir(real):
    return (f'{what} {path} is a training run\'s folder; choose a new '
            'folder (for example one inside it)')
  child, parent = real, os.path.dirname(real)
  while parent != child:
    if is_run_dir(parent) and _is_run_entry(os.path.basename(child)):
      return (f'{what} {path} is inside {child}, one of the training '
              'run\'s own files; choose another name')
    child, parent = parent, os.path.dirname(parent)
  return ''


# ---------------------------------------------------------------------------
# The ledger.


def _read_ledger(folder: str) -> dict:
  """{name: record} of the ledger in ``folder``; {} if there is none or it
  does not parse (then nothing there counts as ours)."""
  path = os.path.join(folder, LEDGER)
  try:
    if not os.path.isfile(path) or os.path.getsize(path) > 16 << 20:
      return {}
    with open(path) as f:
      doc = json.load(f)
  except (OSError, ValueError, RecursionError):
    return {}
  entries = doc.get('entries') if isinstance(doc, dict) else None
  return entries if isinstance(entries, dict) else {}


def write_atomic(path: str, write_fn: Callable[[str], object]) -> None:
  """The one atomic writer: ``write_fn(tmp)`` writes a whole new file at a
  temporary name beside ``path``, which then replaces ``path``; a crash or
  a full disk leaves the previous file (or none), never a truncated one."""
  folder, name = os.path.split(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=folder)
  os.close(fd)
  try:
    write_fn(tmp)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_text_atomic(path: str, text: str) -> None:
  """``write_atomic`` of ``text``, flushed to the disk before the rename."""
  def write(tmp):
    with open(tmp, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
  write_atomic(path, write)


def _write_ledger(folder: str, entries: dict) -> None:
  write_text_atomic(os.path.join(folder, LEDGER), json.dumps(
      {'about': 'outputs written here by nerf_jax tools; a tool replaces '
                'only what it wrote (nerf_jax/io/outputs.py)',
       'entries': entries}, indent=1, sort_keys=True))


def fingerprint(path: str) -> dict:
  """What must be unchanged for ``path`` to still count as ours: a file's
  size and modification time; a folder's entries (relative paths) with
  their sizes (-1 for a folder)."""
  if not os.path.isdir(path) or os.path.islink(path):
    st = os.lstat(path)
    return {'kind': FILE, 'size': st.st_size, 'mtime_ns': st.st_mtime_ns}
  entries = {}
  for root, dirs, files in os.walk(path):
    for name in dirs + files:
      full = os.path.join(root, name)
      rel = os.path.relpath(full, path)
      is_dir = os.path.isdir(full) and not os.path.islink(full)
      entries[rel] = -1 if is_dir else os.lstat(full).st_size
  return {'kind': FOLDER, 'entries': entries}


def owner(path: str) -> Optional[str]:
  """The tool that wrote ``path`` if it is unchanged since, else None."""
  folder, name = os.path.split(os.path.abspath(path))
  record = _read_ledger(folder).get(name)
  if not isinstance(record, dict) or not os.path.lexists(path):
    return None
  try:
    same = fingerprint(path) == record.get('fingerprint')
  except OSError:
    return None
  return record.get('tool') if same else None


def record(path: str, tool: str) -> None:
  """Records in the ledger beside ``path`` that ``tool`` wrote it as it is
  now."""
  folder, name = os.path.split(os.path.abspath(path))
  entries = _read_ledger(folder)
  entries[name] = {'tool': tool, 'fingerprint': fingerprint(path)}
  _write_ledger(folder, entries)


# ---------------------------------------------------------------------------
# Checks.


def _place_problem(path: str, what: str, folder: bool) -> str:
  """'' or why the folders that would hold ``path`` cannot be created or
  written (a file in the way, no permission)."""
  existing = errors.nearest_existing(
      path if folder else os.path.dirname(os.path.abspath(path)))
  if not os.path.isdir(existing):
    return f'{what} {path}: {existing} is a file, not a folder'
  if not os.access(existing, os.W_OK | os.X_OK):
    return f'{what} {path}: cannot write in {existing}'
  return ''


def _first(names) -> str:
  names = sorted(names)
  more = f' and {len(names) - 1} more' if len(names) > 1 else ''
  return f'{names[0]}{more}'


def problem(path: str, tool: str, kind: str, what: str = 'output',
            replace: bool = True) -> str:
  """'' or, in one line, why ``tool`` may not write ``path``; creates
  nothing.

  Args:
    path: the output.
    tool: who writes it, e.g. 'render.py' (what the ledger records).
    kind: FILE, FOLDER (written whole) or CONTAINER (a folder that holds
      several outputs).
    what: how the message names the path, e.g. '--out'.
    replace: whether an earlier output of ``tool`` there may be replaced
      (False: refused too, with a hint to pass --overwrite).
  """
  problem_ = run_problem(path, what)
  if problem_:
    return problem_
  if not os.path.lexists(path):
    return _place_problem(path, what, kind != FILE)
  if kind == FILE:
    if os.path.isdir(path):
      return f'{what} {path} is a folder, not a file'
  elif not os.path.isdir(path) or os.path.islink(path):
    return f'{what} {path} is a file, not a folder'
  problem_ = _place_problem(path, what, kind != FILE)
  if problem_:
    return problem_
  if kind != FILE and not os.listdir(path):
    return ''  # an empty folder: used as it is
  if kind == CONTAINER:
    ledger = _read_ledger(path)
    foreign = [n for n in os.listdir(path) if n != LEDGER and n not in ledger]
    if foreign:
      return (f'{what} {path} holds files that nerf_jax did not write '
              f'({_first(foreign)}); choose a new or empty folder')
    return ''
  written_by = owner(path)
  if written_by != tool:
    noun = 'file' if kind == FILE else 'folder'
    folder, name = os.path.split(os.path.abspath(path))
    recorded = _read_ledger(folder).get(name)
    if isinstance(recorded, dict) and recorded.get('tool') == tool:
      how = f'was written by {tool} but changed since'
    else:
      how = f'exists and was not written by {tool}'
    return (f'{what} {path} {how}; it is left as it is: choose another '
            f'{noun} name' + ('' if kind == FILE else ' or an empty folder'))
  if not replace:
    return (f'{what} {path} exists (written by {tool} before); pass '
            '--overwrite to replace it')
  return ''


def check(path: str, tool: str, kind: str, what: str = 'output',
          replace: bool = True) -> None:
  """``problem``, raised as OutputError."""
  problem_ = problem(path, tool, kind, what, replace)
  if problem_:
    raise OutputError(problem_)


# ---------------------------------------------------------------------------
# Writers.


def make_container(path: str, tool: str, what: str = 'output') -> None:
  """Creates the container folder ``path`` (checked first)."""
  check(path, tool, CONTAINER, what)
  os.makedirs(path, exist_ok=True)


def write(path: str, tool: str, write_fn: Callable[[str], R],
          kind: str = FILE, what: str = 'output',
          replace: bool = True) -> R:
  """Writes one output of ``tool`` at ``path`` and records it.

  ``write_fn(tmp)`` writes the output (a file, or a folder that it may
  create) at a temporary name beside ``path``; once it returns, the result
  is moved to ``path`` (``install``), replacing an earlier output of the
  same tool only (``problem``). On any failure nothing at ``path`` changes
  and the temporary is removed. Returns what ``write_fn`` returns.

  Args:
    kind: FILE or FOLDER.
  """
  if kind not in (FILE, FOLDER):
    raise ValueError(f'kind must be {FILE!r} or {FOLDER!r}, got {kind!r}')
  check(path, tool, kind, what, replace)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  name = os.path.basename(os.path.abspath(path))
  tmp_dir = tempfile.mkdtemp(prefix=f'.{name}.', suffix='.tmp', dir=parent)
  try:
    tmp = os.path.join(tmp_dir, 'new' + os.path.splitext(name)[1])
    result = write_fn(tmp)
    if kind == FOLDER and not os.path.isdir(tmp):
      os.makedirs(tmp)
    install(tmp, path, tool, kind, what, replace)
    return result
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)  # ours: the temporary name


def install(new: str, path: str, tool: str, kind: str = FILE,
            what: str = 'output', replace: bool = True) -> None:
  """Moves the finished output ``new`` (on the same file system, e.g.
  beside ``path``) to ``path`` and records it as ``tool``'s. Checked again
  first (``problem``: time has passed since the first check); an earlier
  output of the same tool is removed only once the new one is in place.
  OutputError, with nothing at ``path`` changed, if it is not ours."""
  check(path, tool, kind, what, replace)
  if kind == FILE:
    os.replace(new, path)
  else:
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(os.path.abspath(path))
    old_dir = tempfile.mkdtemp(prefix=f'.{name}.old-', dir=parent)
    try:
      _replace_folder(new, path, os.path.join(old_dir, 'old'))
    finally:
      shutil.rmtree(old_dir, ignore_errors=True)  # holds only ours
  record(path, tool)


def _replace_folder(new: str, path: str, old: str) -> None:
  """Moves folder ``new`` to ``path``; an earlier folder at ``path`` (empty,
  or checked to be ours) goes to ``old`` first, and back if it changed in
  the meantime or the move fails."""
  if not os.path.lexists(path):
    os.rename(new, path)
    return
  expected = _read_ledger(os.path.dirname(os.path.abspath(path))).get(
      os.path.basename(os.path.abspath(path)), {}).get('fingerprint')
  empty = not os.listdir(path)
  os.rename(path, old)
  if not empty and fingerprint(old) != expected:
    os.rename(old, path)
    raise OutputError(f'{path} changed while it was being replaced; it is '
                      'left as it is')
  try:
    os.rename(new, path)
  except OSError:
    os.rename(old, path)
    raise


def adopt(folder: str, tool: str, is_tools_name: Callable[[str], bool],
          what: str = 'output') -> None:
  """Records as ``tool``'s the entries of a ``folder`` that an earlier
  nerf_jax wrote before there were ledgers: only when the folder has no
  ledger and every entry's name is one ``tool`` writes
  (``is_tools_name``); otherwise nothing changes."""
  del what
  if not os.path.isdir(folder) or os.path.lexists(
      os.path.join(folder, LEDGER)):
    return
  names = os.listdir(folder)
  if not names or not all(is_tools_name(n) for n in names):
    return
  _write_ledger(folder, {n: {'tool': tool, 'fingerprint': fingerprint(
      os.path.join(folder, n))} for n in names})
