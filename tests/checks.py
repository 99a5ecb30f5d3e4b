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
