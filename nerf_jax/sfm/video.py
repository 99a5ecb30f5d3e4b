"""Video frames for SfM: probing, decoding and picking the sharpest.

imageio-ffmpeg decodes the video (optionally resampled to a frame rate);
``extract_video_frames`` keeps the sharpest frame of each window of
consecutive frames and streams, holding one frame per window in memory.
"""

from __future__ import annotations

import math
import os
from typing import Iterable, Optional

import numpy as np

from nerf_jax.sfm import images
from nerf_jax.sfm import report

VIDEO_EXTENSIONS = ('.mp4', '.mov', '.m4v', '.avi', '.mkv', '.webm', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.3gp', '.mts', '.ts')


def _unreadable_video(path: str, error: Exception) -> report.SfmError:
  first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
  return report.SfmError(f'{path}: not a readable video ({first})')


def probe_video(path: str) -> dict:
  """imageio-ffmpeg's metadata of a video (size, fps, duration)."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  gen = imageio_ffmpeg.read_frames(path)
  try:
    return next(gen)
  except (OSError, RuntimeError, StopIteration) as e:
    raise _unreadable_video(path, e) from None
  finally:
    gen.close()


def iter_video_frames(path: str, fps: float = 0.0,
                      max_size: int = 0) -> Iterable:
  """Yields the video's frames as uint8 HxWx3 arrays (upright), optionally
  resampled by ffmpeg to ``fps`` frames per second (0: every frame). A
  frame size that cannot fit in memory (downscaled to ``max_size`` as
  ``extract_video_frames`` does) is refused before the first frame."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  output_params = ['-vf', f'fps={fps:g}'] if fps else None
  gen = imageio_ffmpeg.read_frames(path, output_params=output_params)
  try:
    meta = next(gen)
    width, height = meta['size']
    images.check_decode_fits(path, width, height, max_size)
    for raw in gen:
      yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
  except (OSError, RuntimeError, StopIteration) as e:
    raise _unreadable_video(path, e) from None
  finally:
    gen.close()


def extract_video_frames(path: str, image_dir: str, max_frames: int = 150,
                         fps: float = 0.0, max_size: int = 0,
                         blur_keep: float = 0.0,
                         num_frames: Optional[int] = None) -> tuple:
  """Picks about ``max_frames`` sharp frames of a video into ``image_dir``.

  The decoded frames (every frame, or ``fps`` per second) are cut into
  windows of consecutive frames, as many windows as ``max_frames``, and the
  sharpest frame of each window is kept; then frames below ``blur_keep`` x
  the median sharpness of those kept are dropped. Frames are written as
  ``frame_NNNNNN.jpg``, NNNNNN being the frame's index among the decoded ones,
  after downscaling to ``max_size``. Frames stream through: memory holds one
  window's best frame, not the video.

  Args:
    num_frames: the number of decoded frames if known (default: estimated
      from the video's duration and frame rate).

  Returns (kept frames, dropped frames, number of frames decoded).
  """
  Image, _ = images.pil()
  if max_frames < 1:
    raise report.SfmError('--max_frames must be at least 1')
  if num_frames is None:
    meta = probe_video(path)
    rate = fps or float(meta.get('fps') or 0)
    duration = float(meta.get('duration') or 0)
    if rate > 0 and 0 < duration < float('inf'):
      num_frames = max(1, round(rate * duration))
    else:
      import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
      num_frames, secs = imageio_ffmpeg.count_frames_and_secs(path)
      if fps:
        num_frames = max(1, round(secs * fps))
  window = max(1, math.ceil(num_frames / max_frames))
  os.makedirs(image_dir, exist_ok=True)
  frames, best, decoded = [], None, 0

  def flush():
    index, score, image = best
    name = f'frame_{index:06d}.jpg'
    Image.fromarray(image).save(os.path.join(image_dir, name),
                                quality=images.JPEG_QUALITY)
    frames.append(images.Frame(name, f'{path}#{index}', score))

  for index, frame in enumerate(iter_video_frames(path, fps, max_size)):
    decoded += 1
    size = images.fit_size(frame.shape[1], frame.shape[0], max_size)
    if size != (frame.shape[1], frame.shape[0]):
      frame = np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS))
    score = images.sharpness(frame)
    if best is not None and index // window != best[0] // window:
      flush()
      best = None
    if best is None or score > best[1]:
      best = (index, score, frame)
  if best is not None:
    flush()
  if not decoded:
    raise report.SfmError(f'{path}: the video has no frames')
  if len(frames) > max_frames:  # the frame count was underestimated
    keep = set(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
    for i, f in enumerate(frames):
      if i not in keep:
        os.remove(os.path.join(image_dir, f.name))
    frames = [f for i, f in enumerate(frames) if i in keep]
  kept, dropped = images.drop_blurry(frames, image_dir, blur_keep)
  return kept, dropped, decoded

