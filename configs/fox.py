"""instant-ngp's fox (a phone capture in transforms.json form) at 1/8
resolution (135x240) with the fast model: tiny_fast's recipe, finer and with
more samples per ray for a real scene.

The built-in config ``nerf_jax/configs/fox.py``: ``--config fox.py``.
"""

from nerf_jax.configs.fox import get_config
