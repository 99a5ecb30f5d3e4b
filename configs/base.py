"""The defaults of every field, with its unit or meaning: the built-in
config ``nerf_jax/configs/base.py``. Your own config can start from it:
``from nerf_jax.configs import base``, then change fields of
``base.get_config()``.
"""

from nerf_jax.configs.base import get_config
