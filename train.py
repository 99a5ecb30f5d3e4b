"""Trains a NeRF: ``python train.py --config tiny.py [--workdir DIR]``.

A thin script: the command line is nerf_jax/commands/train.py (installed
as ``nerf-jax-train``).
"""

from nerf_jax.commands import train

if __name__ == '__main__':
  train.main()
