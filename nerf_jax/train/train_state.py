"""The train state: everything a checkpoint holds.

(The training pixels on device, from which the step draws its rays, are
``datasets.batch.PixelTable``.)
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from nerf_jax import models


@flax.struct.dataclass
class TrainState:
  """Everything a checkpoint holds.

  Attributes:
    step: i32[], optimisation steps taken.
    params: the model's trained parameters.
    opt_state: the optax state.
    model_state: the model's non-trained state (``{}`` for the vanilla NeRF).
    elapsed_s: f32[], training wall-clock so far (evaluation excluded), as of
      the last checkpoint.
    nonfinite: i32[], steps in a row (up to now) whose loss or gradients were
      not finite; each such step is skipped (no update).
    skipped: i32[], all steps skipped so far.
  """
  step: jnp.ndarray
  params: Any
  opt_state: Any
  model_state: Any
  elapsed_s: jnp.ndarray
  nonfinite: jnp.ndarray
  skipped: jnp.ndarray

  def variables(self) -> dict:
    """What rendering needs: {'params': ..., 'state': ...}."""
    return {'params': self.params, 'state': self.model_state}


def create_train_state(key: jax.Array, model: models.Model,
                       tx: optax.GradientTransformation) -> TrainState:
  params, model_state = model.init(key)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=tx.init(params), model_state=model_state,
                    elapsed_s=jnp.zeros((), jnp.float32),
                    nonfinite=jnp.zeros((), jnp.int32),
                    skipped=jnp.zeros((), jnp.int32))
