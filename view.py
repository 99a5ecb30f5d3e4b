"""A web viewer of a trained NeRF: ``python view.py --ckpt runs/demo``.

A thin script: the command line is nerf_jax/commands/view.py (installed
as ``nerf-jax-view``).
"""

from nerf_jax.commands import view

if __name__ == '__main__':
  view.main()
