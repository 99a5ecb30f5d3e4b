"""nerf_jax: Neural Radiance Fields in JAX and Flax."""

__version__ = '0.1.0'
