"""Exports a trained NeRF as geometry: ``python export.py --ckpt runs/demo
--mesh runs/demo/mesh.ply``.

A thin script: the command line is nerf_jax/commands/export.py (installed
as ``nerf-jax-export``).
"""

from nerf_jax.commands import export

if __name__ == '__main__':
  export.main()
