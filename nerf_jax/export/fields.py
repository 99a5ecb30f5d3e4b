"""A trained model's field as jitted functions of points, and chunked
evaluation of them.

Everything the export tools read goes through the model's field
(``Model.query`` and ``Model.density``: what an image of the model shows).

Symbols used below:
  sigma: density per unit length (``Model.density``).
  box: ((x, y, z), (x, y, z)), the min and max corner of the exported region.
  normal: unit outward surface normal, ``-grad sigma / |grad sigma|``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nerf_jax.inference import chunked


# Tetrahedron vertices: central differences along them estimate a gradient
# from 4 evaluations instead of 6, sum_k e_k f(p + h e_k) = 4 h grad f(p)
# + O(h^3).
_TETRAHEDRON = np.array([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]],
                        np.float32)


def normal_step(box) -> float:
  """The finite-difference step of normals: 1/256 of the box diagonal.

  Smaller steps follow the field's noise: on the built-in scene's demo run,
  the share of depth-map normals facing their camera was 84% at 1/1024,
  90% at 1/256 and 94% at 1/128 (which rounds off finer detail).
  """
  lo, hi = np.asarray(box, np.float64)
  return float(np.linalg.norm(hi - lo) / 256)


def make_field_fns(model, step: float = 1e-3) -> dict:
  """Jitted ``fn(variables, points f32[n, 3], ...)`` of a model's field.

  Args:
    model: a ``models.Model`` (or anything with its ``query`` and
      ``density``).
    step: float, the finite-difference step of normals (``normal_step``).

  Returns:
    dict: density (-> f32[n]), rgb (with viewdirs f32[n, 3] -> f32[n, 3]),
    normal (-> f32[n, 3], unit ``-grad sigma``; zero where the density is
    flat). The gradient is numerical, as Neuralangelo's for hash grids: a
    hash grid's analytic gradient is local to one cell and noisy, and
    differentiating through it took 15 s to compile on a CPU against 3 s
    for the density alone.
  """

  def density(variables, points):
    return model.density(variables['params'], variables['state'], points)

  def rgb(variables, points, viewdirs):
    return model.query(variables['params'], variables['state'], points,
                       viewdirs)[0]

  def normal(variables, points):
    offsets = jnp.asarray(_TETRAHEDRON) * step
    around = density(variables, points[:, None, :] + offsets)  # [n, 4]
    grad = jnp.einsum('nk,kc->nc', around, jnp.asarray(_TETRAHEDRON))
    norm = jnp.linalg.norm(grad, axis=-1, keepdims=True)
    # Where the field is flat the direction is undefined: return zero.
    return jnp.where(norm > 1e-12, -grad / jnp.maximum(norm, 1e-12), 0.0)

  return dict(density=jax.jit(density), rgb=jax.jit(rgb),
              normal=jax.jit(normal))


def map_chunked(fn: Callable, variables, arrays: tuple,
                chunk: int) -> np.ndarray:
  """``fn(variables, *arrays)`` over a leading axis in chunks of ``chunk``
  (``chunked.map_chunked``).

  The last chunk is padded (by repeating its last row) so ``fn`` compiles
  once per chunk size. Every array in ``arrays`` has the leading size n;
  returns the NumPy result of leading size n.
  """
  n = arrays[0].shape[0]
  # Chunks of a power of two: at most log2(chunk) shapes compile, whatever
  # the varying n (e.g. the valid pixels of each frame).
  chunk = max(1, min(int(chunk), 1 << max(n - 1, 0).bit_length()))
  return chunked.map_chunked(functools.partial(fn, variables), *arrays,
                             chunk=chunk)
