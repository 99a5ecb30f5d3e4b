"""Full Blender lego as in the NeRF paper (a GPU job: 800x800, 300k steps).

The built-in config ``nerf_jax/configs/lego.py``: ``--config lego.py``.
"""

from nerf_jax.configs.lego import get_config
