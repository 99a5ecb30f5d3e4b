"""The classic tiny lego (106 views at 100x100): beats the Keras example fast.

The built-in config ``nerf_jax/configs/tiny.py``: ``--config tiny.py``.
"""

from nerf_jax.configs.tiny import get_config
