"""GFLOP/s of the MLP step's three matmul shapes on this machine's XLA backend.

  python benchmarks/matmul_shapes.py [--points 4000] [--width 64]

A dense layer of an MLP on P points costs three products of the same size:
forward ``X @ W`` ([P, F] x [F, F]), input gradient ``dY @ W^T`` and weight
gradient ``X^T @ dY`` (a P-long contraction into [F, F]). Each runs ``--reps``
times inside one jitted scan (so dispatch does not count), timed after a
warm-up. Pin to one core (``taskset -c 0``) to separate kernel efficiency
from threading.
"""

import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

_POINTS = flags.DEFINE_integer('points', 4000, 'rows of X (points)')
_WIDTH = flags.DEFINE_integer('width', 64, 'layer width F')
_REPS = flags.DEFINE_integer('reps', 400, 'products per timed call')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'timed calls per shape')

SHAPES = {
    'forward X@W': lambda x, dy, w: x @ w,
    'input grad dY@W^T': lambda x, dy, w: dy @ w.T,
    'weight grad X^T@dY': lambda x, dy, w: x.T @ dy,
}


def _repeated(product, reps):
  """reps products with a changing operand, reduced to keep every one live."""

  def run(x, dy, w):
    def body(total, i):
      shift = i * 1e-6
      return total + product(x + shift, dy + shift, w + shift).sum(), None
    return jax.lax.scan(body, jnp.float32(0), jnp.arange(reps, dtype=jnp.float32))[0]

  return jax.jit(run)


def main(argv):
  del argv
  p, f, reps = _POINTS.value, _WIDTH.value, _REPS.value
  rng = np.random.default_rng(0)
  x, dy = (jnp.asarray(rng.standard_normal((p, f)), jnp.float32) for _ in range(2))
  w = jnp.asarray(rng.standard_normal((f, f)), jnp.float32)
  flops = 2 * p * f * f * reps
  print(f'{jax.devices()[0].platform}: P={p} F={f}, {reps} products per call')
  for name, product in SHAPES.items():
    fn = _repeated(product, reps)
    fn(x, dy, w).block_until_ready()
    start = time.perf_counter()
    for _ in range(_ROUNDS.value):
      fn(x, dy, w).block_until_ready()
    seconds = (time.perf_counter() - start) / _ROUNDS.value
    print(f'{name:>20}: {seconds * 1e3:8.1f} ms  {flops / seconds / 1e9:6.0f} GFLOP/s')


if __name__ == '__main__':
  app.run(main)
