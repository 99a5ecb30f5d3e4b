"""A run directory: config, scene, checkpoints, metrics, lock, environment;
config validation, and loading a trained run (without importing training)."""
