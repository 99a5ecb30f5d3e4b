"""Pictures of training, written into the run directory: a preview of the
first held-out view at each evaluation (previews/step_*.png), the progress
plot (progress.png) and the progression GIF (progress.gif)."""

from __future__ import annotations

import os

import imageio.v3 as iio
import numpy as np

from nerf_jax.io import images, outputs
from nerf_jax.runs import metrics_log


def preview_row(prediction: np.ndarray, depth_rgb: np.ndarray,
                ground_truth: np.ndarray) -> np.ndarray:
  """prediction | depth | ground truth side by side: f32[h, 3w + 4, 3]."""
  h = prediction.shape[0]
  gap = np.ones((h, 2, 3), np.float32)
  return np.concatenate([prediction, gap, depth_rgb, gap, ground_truth],
                        axis=1)


def save_preview(path: str, row: np.ndarray) -> None:
  """Writes a ``preview_row`` as a PNG."""
  outputs.write_atomic(path, lambda tmp: iio.imwrite(
      tmp, images.to_uint8(row), extension='.png'))


def write_preview(preview_dir: str, step: int, view: dict, near: float,
                  far: float, background: float,
                  disparity: bool = False) -> np.ndarray:
  """Writes ``<preview_dir>/step_<step>.png`` of one evaluated view.

  Args:
    view: the view's 'rgb' f32[h, w, 3], 'depth' f32[h, w], 'acc' f32[h, w]
      and 'ground_truth' f32[h, w, 3] (``evaluate.evaluate_split``'s
      'first').
    near, far: float, the depth range of the colour map.
    background: float, grey level of empty space in the depth picture.
    disparity: colour 1 / depth (unbounded scenes, see
      ``images.colorize_depth``).

  Returns:
    The ``preview_row`` written, f32[h, 3w + 4, 3].
  """
  depth_rgb = images.colorize_depth(view['depth'], view['acc'], near, far,
                                    background, disparity)
  row = preview_row(view['rgb'], depth_rgb, view['ground_truth'])
  save_preview(os.path.join(preview_dir, f'step_{step:07d}.png'), row)
  return row


def _readable(path: str):
  try:
    return iio.imread(path)[..., :3]
  except Exception:  # pylint: disable=broad-except
    return None  # e.g. a frame of a run killed while writing it


def save_gif(path: str, frame_paths: list, fps: float = 4.0) -> None:
  """Assembles PNG frames into a looping GIF (written atomically)."""
  if not frame_paths:
    return
  frames = [f for f in map(_readable, frame_paths) if f is not None]
  shapes = {f.shape for f in frames}
  if not frames or len(shapes) > 1:
    return
  outputs.write_atomic(path, lambda tmp: iio.imwrite(
      tmp, np.stack(frames), duration=1000.0 / fps, loop=0, extension='.gif'))


def write_progress_gif(preview_dir: str, path: str) -> None:
  """The previews in ``preview_dir``, in step order, as a GIF at ``path``."""
  frames = sorted(os.path.join(preview_dir, f)
                  for f in os.listdir(preview_dir) if f.endswith('.png'))
  save_gif(path, frames)


def plot_progress(metrics_path: str, out_path: str) -> None:
  """Plots training loss and held-out PSNR against steps into a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  records = metrics_log.read_metrics(metrics_path)
  def has(r, key):
    return isinstance(r.get(key), (int, float)) and np.isfinite(r[key])
  train = [r for r in records if r.get('split') == 'train' and has(r, 'loss')
           and r['loss'] > 0]
  held = [r for r in records if r.get('split') not in (None, 'train')
          and has(r, 'psnr')]
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
  if train:
    ax0.semilogy([r['step'] for r in train], [r['loss'] for r in train])
  ax0.set(xlabel='step', ylabel='training loss (MSE)', title='loss')
  if held:
    ax1.plot([r['step'] for r in held], [r['psnr'] for r in held], 'o-')
  ax1.set(xlabel='step', ylabel='PSNR (dB)', title='held-out PSNR')
  for ax in (ax0, ax1):
    ax.grid(alpha=0.3)
  fig.tight_layout()
  try:
    outputs.write_atomic(out_path, lambda tmp: fig.savefig(tmp, dpi=80,
                                                           format='png'))
  finally:
    plt.close(fig)
