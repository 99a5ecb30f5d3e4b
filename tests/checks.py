"""Assertions shared by the tests: errors must be one clear line."""

from __future__ import annotations


def error_line(proc) -> str:
  """The one line a failing command prints, asserting there is no traceback."""
  assert proc.returncode != 0, proc.stdout + proc.stderr
  assert 'Traceback' not in proc.stderr, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith('error: ')
  return lines[0]


def one_line(excinfo) -> str:
  """The message of a raised error, asserting it is one non-empty line."""
  message = str(excinfo.value)
  assert message and '\n' not in message, message
  return message


def snapshot(folder) -> dict:
  """Everything under ``folder``: relative path -> (bytes, mtime) of each
  file, 'folder' of each folder, ('link', target) of each symbolic link
  (not followed), so that a test can assert nothing changed at all."""
  import os  # pylint: disable=g-import-not-at-top
  out = {}
  for dirpath, dirs, names in os.walk(folder):
    for name in dirs + names:
      path = os.path.join(dirpath, name)
      rel = os.path.relpath(path, folder)
      if os.path.islink(path):
        out[rel] = ('link', os.readlink(path))
      elif os.path.isdir(path):
        out[rel] = 'folder'
      else:
        with open(path, 'rb') as f:
          out[rel] = (f.read(), os.stat(path).st_mtime_ns)
  return out
