"""The classic tiny lego with the fast model (hash grid + occupancy grid).

The built-in config ``nerf_jax/configs/tiny_fast.py``:
``--config tiny_fast.py``.
"""

from nerf_jax.configs.tiny_fast import get_config
