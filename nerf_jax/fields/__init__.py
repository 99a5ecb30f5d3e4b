"""Radiance fields: encodings and the Flax networks."""
