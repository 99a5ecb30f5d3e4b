"""Writing videos: MP4 (H.264), looping GIF or a folder of PNG frames.

Every video is one output of a tool (``outputs.write``): complete or not at
all, replacing only an earlier output of the same tool.
"""

from __future__ import annotations

import os
import sys

import imageio.v3 as iio
import numpy as np

from nerf_jax.io import outputs


def _even(frames: np.ndarray) -> np.ndarray:
  """Pads f[n, h, w, 3] to even h and w (H.264 with yuv420p needs them)."""
  h, w = frames.shape[1:3]
  return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode='edge')


_VIDEO_EXTENSIONS = ('.mp4', '.gif')


def video_kind(path: str) -> str:
  """The kind of output ``write_video`` makes at ``path``: a file for .mp4
  and .gif, else a folder of PNG frames (``outputs.FILE``/``FOLDER``)."""
  ext = os.path.splitext(path)[1]
  return outputs.FILE if ext in _VIDEO_EXTENSIONS else outputs.FOLDER


class _EncoderUnavailable(Exception):
  """The MP4 encoder failed (not the file system)."""


def _write_mp4(path: str, frames: np.ndarray, fps: float,
               quality: float) -> None:
  try:
    import imageio.v2 as iio2  # pylint: disable=g-import-not-at-top
    with iio2.get_writer(path, format='FFMPEG', mode='I', fps=fps,
                         codec='libx264', quality=quality,
                         pixelformat='yuv420p', macro_block_size=1) as w:
      for frame in _even(frames):
        w.append_data(frame)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    raise _EncoderUnavailable(first) from e


def _write_pngs(folder: str, frames: np.ndarray) -> None:
  os.makedirs(folder)
  for i, frame in enumerate(frames):
    iio.imwrite(os.path.join(folder, f'{i:04d}.png'), frame)


def write_video(path: str, frames: np.ndarray, fps: float,
                quality: float = 8.0, tool: str = 'render.py') -> str:
  """Writes uint8[n, h, w, 3] frames; returns the path actually written.

  ``.mp4`` uses H.264 through imageio-ffmpeg; if that encoder is unavailable
  a one-line warning is printed and a GIF is written next to it instead.
  ``.gif`` writes a looping GIF; a path without an extension a folder of
  PNGs. The output is written as one output of ``tool``
  (``outputs.write``): complete or not at all, replacing only an earlier
  output of the same tool. ValueError for fps <= 0 or quality outside
  [0, 10]; outputs.OutputError for a path that is not ours to write.
  """
  if not (np.isfinite(fps) and fps > 0):
    raise ValueError(f'fps must be positive, got {fps}')
  if not 0 <= quality <= 10:
    raise ValueError(f'quality must be in [0, 10], got {quality}')
  outputs.check(path, tool, video_kind(path))
  base, ext = os.path.splitext(path)
  if ext == '.mp4':
    try:
      outputs.write(path, tool, lambda tmp: _write_mp4(tmp, frames, fps,
                                                        quality))
      return path
    except _EncoderUnavailable as e:
      print(f'warning: MP4 encoder unavailable ({e}); writing a GIF '
            'instead', file=sys.stderr)
      path, ext = base + '.gif', '.gif'
  if ext == '.gif':
    outputs.write(path, tool, lambda tmp: iio.imwrite(
        tmp, frames, duration=1000.0 / fps, loop=0))
  else:
    outputs.write(path, tool, lambda tmp: _write_pngs(tmp, frames),
                  kind=outputs.FOLDER)
  return path
