"""Own captures (prepare.py's or nerfstudio's transforms.json, or a
360-degree LLFF folder): unbounded, appearance codes, pose refinement.

The built-in config ``nerf_jax/configs/capture.py``: ``--config capture.py
--config.data.path=DIR``.
"""

from nerf_jax.configs.capture import get_config
