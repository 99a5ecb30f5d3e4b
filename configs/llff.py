"""LLFF fern (forward-facing phone capture, 20 views) at 1/8 resolution.

The built-in config ``nerf_jax/configs/llff.py``: ``--config llff.py``.
"""

from nerf_jax.configs.llff import get_config
