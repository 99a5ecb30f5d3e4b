"""Makes a scene from a capture: ``prepare.py PHOTOS_OR_VIDEO --out SCENE``.

A thin script: the command line is nerf_jax/commands/prepare.py (installed
as ``nerf-jax-prepare``).
"""

from nerf_jax.commands import prepare

if __name__ == '__main__':
  prepare.main()
