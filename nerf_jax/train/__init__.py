"""Training: the train state, the step, the loop, its checkpoints, stop
signals and previews."""
