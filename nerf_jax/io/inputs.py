"""Files a user names, checked before a byte of them is read.

A path given on the command line or in a config (a camera path, a config
file, a dataset's json, npy, npz and images, photos and videos for
prepare.py) could be anything: a named pipe (opening it blocks until some
other process writes), a device (``/dev/zero`` never ends), a folder, or a
file far larger than any real one of its kind. ``check_input_file`` looks
at the path with ``os.stat`` only, never opening it, and refuses all of
these in one line naming the file; every reader of a user-named file calls
it first. The ``MAX_*_BYTES`` limits are generous bounds on real files of
each kind, not on what fits in memory: readers whose data can be large
(images, npz archives) also check the sizes their headers declare against
the machine's memory before decoding (``datasets.images``,
``datasets.tiny_npz``).
"""

from __future__ import annotations

import json
import os
import re
import stat
from typing import Any

from nerf_jax import errors

MIB, GIB = 2 ** 20, 2 ** 30
# JSON documents: a camera path of 100,000 poses (render.py's frame limit)
# written with indent=2 takes about 60 MB; a transforms.json of 100,000
# frames with per-frame intrinsics about as much.
MAX_JSON_BYTES = 256 * MIB
# A .npy of poses: 100,000 rows of f64[17] (poses_bounds.npy) or [4, 4]
# take 13 MB.
MAX_POSES_NPY_BYTES = 64 * MIB
MAX_CONFIG_BYTES = 4 * MIB  # a config file is Python source of a few KB
# An image file: a 16-bit RGBA PNG of 16384 x 8192 pixels (the most a
# dataset's image may have, datasets.images.MAX_IMAGE_PIXELS) stored
# uncompressed.
MAX_IMAGE_BYTES = 1 * GIB
# A tiny-format .npz holds every view's pixels; its arrays' declared sizes
# are checked against the machine's memory before they are read.
MAX_NPZ_BYTES = 64 * GIB
MAX_VIDEO_BYTES = 64 * GIB  # streamed frame by frame by ffmpeg

_KINDS = ((stat.S_ISDIR, 'a folder'), (stat.S_ISFIFO, 'a named pipe (FIFO)'),
          (stat.S_ISCHR, 'a character device'),
          (stat.S_ISBLK, 'a block device'), (stat.S_ISSOCK, 'a socket'))


def size_text(n: int) -> str:
  """Bytes as '420 KB', '6.4 GB' (powers of 1024, decimal-style units)."""
  for unit, scale in (('GB', GIB), ('MB', MIB), ('KB', 1024)):
    if n >= scale:
      value = n / scale
      return f'{value:.1f} {unit}' if value < 10 else f'{value:,.0f} {unit}'
  return f'{n} bytes'


def input_file_problem(path: str, what: str, max_bytes: int,
                       where: str = '') -> str:
  """Why ``path`` cannot be read as ``what``, or ''; never opens it.

  Args:
    path: the file (symbolic links are followed).
    what: the kind of file, with its article: 'an image file', 'a camera
      path (.npy or .json)'.
    max_bytes: the largest plausible file of that kind.
    where: how the message names the file (default: ``path``).

  Returns:
    '' for a regular file of at most ``max_bytes``, else one line such as
    '/tmp/p.json: a named pipe (FIFO), not a camera path (.npy or .json)'.
  """
  where = where or path
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return f'{where}: file not found (expected {what})'
  except NotADirectoryError:
    return f'{where}: a file is in the way of its folder (expected {what})'
  except OSError as e:
    return f'{where}: cannot read ({e.strerror or e})'
  if not stat.S_ISREG(st.st_mode):
    kind = next((name for test, name in _KINDS if test(st.st_mode)),
                'not a regular file')
    return f'{where}: {kind}, not {what}'
  if st.st_size > max_bytes:
    return (f'{where}: {size_text(st.st_size)} is too large for {what} (at '
            f'most {size_text(max_bytes)})')
  return ''


def check_input_file(path: str, what: str, max_bytes: int,
                     error: type = errors.UserError, where: str = '') -> int:
  """Raises ``error`` with ``input_file_problem``'s line unless ``path`` is
  a regular file of at most ``max_bytes``; returns its size in bytes."""
  problem = input_file_problem(path, what, max_bytes, where)
  if problem:
    raise error(problem)
  return os.stat(path).st_size


# What a JSON document a user gives may hold. Real ones (transforms.json,
# camera paths, a run's config.json and scene.json) nest 4 levels deep and
# hold integers of a few digits; deeper nesting makes Python's parser raise
# RecursionError, and an integer beyond int64 fails deep inside numpy
# (OverflowError, or a TypeError from a ufunc).
MAX_JSON_DEPTH = 64
MAX_JSON_INT = 2 ** 63 - 1


class _LongInteger(str):
  """A JSON integer of more digits than any int64 has, kept as its text:
  never converted (Python refuses over 4300 digits, slowly), only named."""


def _parse_int(text: str):
  return _LongInteger(text) if len(text.lstrip('-')) > 19 else int(text)


def _json_key(parent: str, key) -> str:
  if isinstance(key, int):
    return f'{parent}[{key}]'
  if re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', key):
    return f'{parent}.{key}' if parent else key
  return f'{parent}[{json.dumps(key)}]'


def json_problem(doc: Any) -> str:
  """'' or why a parsed JSON document cannot be used: nested deeper than
  ``MAX_JSON_DEPTH`` or holding an integer beyond int64 (named by its key,
  e.g. 'frames[0].w=100000...000 (41 digits) is out of range ...')."""
  stack = [(doc, '', 0)]
  while stack:
    value, key, depth = stack.pop()
    if isinstance(value, (dict, list)):
      if depth >= MAX_JSON_DEPTH:
        return f'nested more than {MAX_JSON_DEPTH} levels deep'
      items = value.items() if isinstance(value, dict) else enumerate(value)
      stack.extend((v, _json_key(key, k), depth + 1) for k, v in items)
    elif isinstance(value, _LongInteger) or (
        isinstance(value, int) and not isinstance(value, bool)
        and abs(value) > MAX_JSON_INT):
      text = str(value)
      sign, body = ('-', text[1:]) if text.startswith('-') else ('', text)
      digits = len(body)
      shown = text if digits <= 24 else f'{sign}{body[:6]}...{body[-3:]}'
      return (f'{key or "the document"}={shown} ({digits} digits) is out of '
              f'range (no field takes an integer beyond {MAX_JSON_INT})')
  return ''


def read_json(path: str, error: type = errors.UserError,
              where: str = '') -> Any:
  """The JSON document in the user's file ``path``; ``error`` with one line
  naming the file (and the key) for anything that cannot be used: a file
  that cannot be read, is not UTF-8, is malformed JSON (with the line and
  column), nests too deeply or holds an out-of-range integer
  (``json_problem``).

  Every reader of a user-given JSON file goes through this (after
  ``check_input_file``), so no such file ends in an unexpected error.

  Args:
    path: the file; where: how the message names it (default: ``path``).
  """
  where = where or path
  try:
    with open(path, encoding='utf-8-sig') as f:  # a BOM is harmless
      doc = json.load(f, parse_int=_parse_int)
  except OSError as e:
    raise error(f'{where}: cannot read ({e.strerror or e})') from None
  except UnicodeDecodeError as e:
    raise error(f'{where}: not UTF-8 text (byte {e.start}: '
                f'{e.reason})') from None
  except json.JSONDecodeError as e:
    raise error(f'{where}: malformed JSON ({e.msg} at line {e.lineno}, '
                f'column {e.colno})') from None
  except RecursionError:  # Python's parser recurses per level
    raise error(f'{where}: nested more than {MAX_JSON_DEPTH} levels '
                'deep') from None
  except ValueError as e:  # what else the parser refuses
    raise error(f'{where}: malformed JSON ({errors.first_line(e)})') from None
  problem = json_problem(doc)
  if problem:
    raise error(f'{where}: {problem}')
  return doc
