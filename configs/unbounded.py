"""The built-in unbounded scene (objects under a distant textured dome) with
the fast model in contracted space; no downloads.

The built-in config ``nerf_jax/configs/unbounded.py``: ``--config
unbounded.py``.
"""

from nerf_jax.configs.unbounded import get_config
