"""Training: state, step, loop, optimiser, config validation."""
