"""Image quality metrics."""

from __future__ import annotations

import dm_pix
import jax.numpy as jnp
import numpy as np


def all_finite(tree) -> jnp.ndarray:
  """bool[]: every floating-point value of a pytree is finite."""
  import jax  # pylint: disable=g-import-not-at-top
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def mse_to_psnr(mse):
  """PSNR in dB of images in [0, 1] from their mean squared error."""
  return -10.0 * jnp.log10(mse)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
  """PSNR in dB between f32[h, w, 3] images in [0, 1]."""
  mse = np.mean((np.asarray(image, np.float64) -
                 np.asarray(reference, np.float64)) ** 2)
  return float(-10.0 * np.log10(max(mse, 1e-20)))


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
  """Structural similarity (Wang et al. 2004; 11x11 Gaussian window, sigma
  1.5) between f32[h, w, 3] images in [0, 1], via dm-pix."""
  return float(dm_pix.ssim(jnp.asarray(image, jnp.float32),
                           jnp.asarray(reference, jnp.float32), max_val=1.0))
