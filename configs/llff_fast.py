"""LLFF fern at 1/8 resolution with the fast model (hash grid + occupancy grid)
in NDC space: the scene box is NDC's [-1.5, 1.5]^2 x [-1, 1] (what the
cameras see between the near plane and infinity). llff.py's data and budget
with tiny_fast's model and optimizer, a larger table and finer grids, and
the distortion loss. 24.7 dB in 15 minutes on 2 CPU cores before the
distortion loss, which adds 0.4 dB at 10 minutes (BENCHMARKS.md).

The built-in config ``nerf_jax/configs/llff_fast.py``:
``--config llff_fast.py``.
"""

from nerf_jax.configs.llff_fast import get_config
