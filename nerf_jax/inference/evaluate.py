"""Scoring a trained model on the views of a split (PSNR, SSIM).

Each view is rendered with its own camera and jitter off
(``chunked.render_camera``), scored against its image and optionally written
as a PNG (whole).

Where the split has masks (``datasets.Split.masks``, a capture's per-frame
masks), PSNR and the depth error are over the used pixels only. SSIM, whose
11x11 windows cannot skip a pixel, is of the render with its ignored pixels
replaced by the ground truth's: they agree there, so an ignored pixel never
lowers it (it is 1 where a window holds only ignored pixels, and so reads
higher the more of a view is masked). A view with no used pixel scores NaN,
is marked ``masked`` and is left out of the means.

With ``protocol='fit'`` (``eval.appearance``, see ``appearance.py``) each
view is scored on the right half of its columns only (PSNR and SSIM of that
crop), and a model with appearance codes renders it with a code fitted to
its left half.
"""

from __future__ import annotations

import os
from typing import Callable

import imageio.v3 as iio
import jax
import numpy as np

from nerf_jax import metrics
from nerf_jax.inference import appearance
from nerf_jax.inference import chunked
from nerf_jax.io import images


def evaluate_split(render_fn: Callable, variables, split, near: float,
                   far: float, chunk: int, max_views: int = 0,
                   image_dir: str | None = None, protocol: str = 'mean',
                   fitter: Callable | None = None, seed: int = 0) -> dict:
  """Renders the views of a split with jitter off and scores them.

  Args:
    render_fn: from ``chunked.make_render_fn``.
    variables: the model's {'params': ..., 'state': ...}.
    split: a ``datasets.Split`` (each view's own camera is used).
    near, far: float, the sampled interval.
    chunk: int, rays per call.
    max_views: int, evaluate only the first N views (0 = all).
    image_dir: if given, each render is written there as ``<index>.png``.
    protocol: 'mean' (the whole view) or 'fit' (the right half scored;
      with ``fitter``, from ``appearance.make_fitter``, the view rendered
      with a code fitted to its left half).
    seed: int, the fit's randomness (view i uses ``fold_in(seed, i)``).

  Returns:
    dict with psnr and ssim (means over views; over the used pixels where
    the split has masks, see the module docstring), views (a list of
    {index, psnr, ssim}) and first (the first view's renders plus
    ground_truth). Where the split has ground-truth depth (the built-in
    scenes), also depth_error: the mean over views of the median relative
    depth error |depth - truth| / truth over pixels with a finite truth
    (each view's too).
  """
  count = len(split) if max_views <= 0 else min(max_views, len(split))
  views, first = [], None
  for i in range(count):
    gt = split.images[i]
    used = None if split.masks is None else np.asarray(split.masks[i], bool)
    view_vars, scored = variables, slice(None)  # columns scored
    if appearance.check_protocol(protocol) == 'fit':
      left = appearance.fit_columns(np.shape(gt)[1])
      scored = slice(left, None)
      if fitter is not None:
        view_vars = _fitted(
            fitter, variables, chunked.image_rays(split.cameras, i, near, far),
            gt, used, left, jax.random.fold_in(jax.random.PRNGKey(seed), i))
    out = chunked.render_camera(render_fn, view_vars, split.cameras, i, near,
                                far, chunk)
    index = int(split.indices[i])
    crop = lambda x: None if x is None else np.asarray(x)[:, scored]
    views.append(dict(index=index, **image_scores(
        crop(out['rgb']), crop(gt), crop(used))))
    if split.depths is not None:
      views[-1]['depth_error'] = depth_error(
          crop(out['depth']), crop(split.depths[i]), crop(used))
    if image_dir:
      iio.imwrite(os.path.join(image_dir, f'{index:04d}.png'),
                  images.to_uint8(out['rgb']))
    if first is None:
      first = dict(out, ground_truth=gt)
  # Views that their masks leave empty (marked 'masked') have no score.
  mean = lambda key: _mean([v[key] for v in views if not v.get('masked')])
  result = dict(psnr=mean('psnr'), ssim=mean('ssim'), views=views,
                first=first)
  if split.depths is not None:
    result['depth_error'] = mean('depth_error')
  return result


def _fitted(fitter: Callable, variables, rays, gt: np.ndarray,
            used: np.ndarray | None, left: int, key):
  """The variables with the code ``fitter`` fits to the view's columns
  [0, ``left``) (rays [h, w] and its image f32[h, w, 3]), skipping pixels
  that bool[h, w] ``used`` leaves out; unchanged if none is left.

  Every left-half pixel is passed, the unused ones with weight 0, so the
  fit compiles once per image size whatever the masks."""
  weights = np.ones(np.shape(gt)[:2], np.float32)[:, :left]
  if used is not None:
    weights = weights * used[:, :left]
  if not weights.any():
    return variables
  flat = lambda x: np.asarray(x)[:, :left].reshape((-1,) + np.shape(x)[2:])
  return fitter(variables, jax.tree_util.tree_map(flat, rays), flat(gt), key,
                weights.reshape(-1))


def _mean(values: list) -> float:
  """The mean of the values (NaN where there are none)."""
  return float(np.mean(values)) if values else float('nan')


def image_scores(rgb: np.ndarray, gt: np.ndarray,
                 used: np.ndarray | None = None) -> dict:
  """{psnr, ssim} of a render f32[h, w, 3] against its ground truth
  f32[h, w, 3]; with ``used`` bool[h, w], PSNR over the used pixels and
  SSIM with the others set to the truth (see the module docstring)."""
  if used is None:
    return dict(psnr=metrics.psnr(rgb, gt), ssim=metrics.ssim(rgb, gt))
  if not used.any():
    return dict(psnr=float('nan'), ssim=float('nan'), masked=True)
  rgb, gt = np.asarray(rgb), np.asarray(gt)
  filled = np.where(used[..., None], rgb, gt)
  return dict(psnr=metrics.psnr(rgb[used], gt[used]),
              ssim=metrics.ssim(filled, gt))


def depth_error(depth: np.ndarray, truth: np.ndarray,
                where: np.ndarray | None = None) -> float:
  """The median relative error |depth - truth| / truth over the pixels
  (f32[h, w] each) where the truth is finite and positive (and ``where``,
  bool[h, w], if given); NaN where there are none."""
  depth, truth = np.asarray(depth, np.float64), np.asarray(truth, np.float64)
  keep = np.isfinite(truth) & (truth > 0)
  if where is not None:
    keep &= np.asarray(where, bool)
  if not keep.any():
    return float('nan')
  return float(np.median(np.abs(depth[keep] - truth[keep]) / truth[keep]))
