"""The package's shape, checked by machine: the import-linter contracts
(.importlinter: layers by stage, independent tools, the math and the models
free of I/O and tool libraries, no import cycle between files or
subpackages), no library import hidden inside a function, and small files
and functions."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'nerf_jax'
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80
# Modules of the entry layer that import the library inside functions on
# purpose: a command refuses bad flags before JAX is imported (a second,
# not a minute, for a typo).
LAZY_ALLOWED = ('nerf_jax/cli.py', 'nerf_jax/commands/')
# The marker a function over MAX_FUNCTION_LINES carries, with its reason.
LONG_FUNCTION_MARK = 'long function:'


def library_files() -> list:
  return sorted(p for p in PACKAGE.rglob('*.py') if '__pycache__' not in
                p.parts)


def rel(path: pathlib.Path) -> str:
  return str(path.relative_to(ROOT))


def test_import_contracts_hold():
  lint = pathlib.Path(sys.executable).with_name('lint-imports')
  proc = subprocess.run([str(lint), '--no-cache'], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert 'broken' in proc.stdout and '0 broken' in proc.stdout, proc.stdout


@pytest.mark.parametrize('path', library_files(), ids=rel)
def test_no_library_import_inside_a_function(path):
  if rel(path).startswith(LAZY_ALLOWED):
    return
  tree = ast.parse(path.read_text())
  hidden = []
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for inner in ast.walk(node):
        if isinstance(inner, ast.ImportFrom) and (
            inner.module or '').split('.')[0] == 'nerf_jax':
          hidden.append(f'{node.name}:{inner.lineno} from {inner.module}')
        elif isinstance(inner, ast.Import) and any(
            a.name.split('.')[0] == 'nerf_jax' for a in inner.names):
          hidden.append(f'{node.name}:{inner.lineno}')
  assert not hidden, hidden


@pytest.mark.parametrize('path', library_files(), ids=rel)
def test_files_and_functions_are_small(path):
  text = path.read_text()
  lines = text.count('\n')
  assert lines <= MAX_FILE_LINES, f'{rel(path)}: {lines} lines'
  long = []
  for node in ast.walk(ast.parse(text)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      length = node.end_lineno - node.lineno + 1
      doc = ast.get_docstring(node) or ''
      source = ast.get_source_segment(text, node) or ''
      if length > MAX_FUNCTION_LINES and LONG_FUNCTION_MARK not in (
          doc + source):
        long.append(f'{node.name} ({length} lines)')
  assert not long, f'{rel(path)}: {long}'
