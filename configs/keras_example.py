"""The Keras NeRF example's hyperparameters, for a like-for-like comparison.

The built-in config ``nerf_jax/configs/keras_example.py``:
``--config keras_example.py``.
"""

from nerf_jax.configs.keras_example import get_config
