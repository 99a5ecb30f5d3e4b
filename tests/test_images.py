"""Depth colour maps (io/images.py): linear in depth for bounded scenes, in
disparity for unbounded ones, against the colour map read directly."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from nerf_jax.io import images


def _turbo(x):
  return np.asarray(colormaps['turbo'](1.0 - np.asarray(x)))[..., :3]


def test_depth_colours_are_linear_in_depth_or_in_disparity():
  near, far = 1.0, 100.0
  harmonic = 2.0 / (1.0 / near + 1.0 / far)  # halfway in disparity
  depth = np.array([[near, harmonic, 0.5 * (near + far), far]])
  acc = np.ones_like(depth)
  linear = images.colorize_depth(depth, acc, near, far)
  np.testing.assert_allclose(linear[0, 2], _turbo(0.5), atol=1e-6)
  np.testing.assert_allclose(linear[0, 0], _turbo(0.0), atol=1e-6)
  disparity = images.colorize_depth(depth, acc, near, far, disparity=True)
  np.testing.assert_allclose(disparity[0, 1], _turbo(0.5), atol=1e-6)
  np.testing.assert_allclose(disparity[0, 3], _turbo(1.0), atol=1e-6)
  # An object's front and back, 2 and 3 units away, before a wall at 100:
  # linear in depth both take nearly the warmest colour; in disparity they
  # sit at 0.505 and 0.673 of the map.
  both = np.array([[2.0, 3.0]])
  a = images.colorize_depth(both, np.ones_like(both), near, far)
  b = images.colorize_depth(both, np.ones_like(both), near, far,
                            disparity=True)
  x = (1.0 - 1.0 / both[0]) / (1.0 - 1.0 / far)
  np.testing.assert_allclose(b[0], _turbo(x), atol=1e-6)
  assert np.abs(a[0, 0] - a[0, 1]).max() < 0.05
  assert np.abs(b[0, 0] - b[0, 1]).max() > 0.2


def test_empty_space_fades_to_the_background_in_either_mapping():
  depth = np.full((1, 2), 5.0)
  acc = np.array([[0.0, 1.0]])
  for disparity in (False, True):
    out = images.colorize_depth(depth, acc, 0.0, 10.0, background=1.0,
                                disparity=disparity)
    np.testing.assert_allclose(out[0, 0], 1.0)
    assert np.isfinite(out).all()
  frames = images.depth_to_rgb(np.linspace(1, 50, 20).reshape(1, 4, 5),
                               np.ones((1, 4, 5)), 0.0, disparity=True)
  assert frames.shape == (1, 4, 5, 3) and np.isfinite(frames).all()
