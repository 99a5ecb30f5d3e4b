"""Renders a trained NeRF: ``python render.py --ckpt runs/demo``.

A thin script: the command line is nerf_jax/commands/render.py (installed
as ``nerf-jax-render``).
"""

from nerf_jax.commands import render

if __name__ == '__main__':
  render.main()
