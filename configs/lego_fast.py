"""Blender lego with the fast model (tiny_fast's recipe at a larger scale).

The built-in config ``nerf_jax/configs/lego_fast.py``:
``--config lego_fast.py``.
"""

from nerf_jax.configs.lego_fast import get_config
