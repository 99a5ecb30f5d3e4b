"""The built-in procedural scene: no downloads, trains in minutes on a CPU.

The built-in config ``nerf_jax/configs/demo.py``: ``--config demo.py``.
"""

from nerf_jax.configs.demo import get_config
