"""Learning-rate schedules and optimizers built from the ``train`` config."""

from __future__ import annotations

import optax


def make_schedule(train_cfg) -> optax.Schedule:
  """Learning rate against step: optional linear warm-up, then a decay.

  'log_linear' interpolates log(lr) from lr_init to lr_final over max_steps;
  'exponential' is lr_init * 0.1 ** (step / lr_decay_steps) (NeRF paper).
  """
  warmup = int(train_cfg.warmup_steps)
  if train_cfg.lr_schedule == 'log_linear':
    decay_steps = max(1, train_cfg.max_steps - warmup)
    decay = optax.exponential_decay(
        train_cfg.lr_init, decay_steps,
        train_cfg.lr_final / train_cfg.lr_init, end_value=train_cfg.lr_final)
  else:
    decay = optax.exponential_decay(train_cfg.lr_init,
                                    train_cfg.lr_decay_steps, 0.1)
  if warmup <= 0:
    return decay
  ramp = optax.linear_schedule(0.0, train_cfg.lr_init, warmup)
  return optax.join_schedules([ramp, decay], [warmup])


def make_optimizer(train_cfg, weight_decay: float = 0.0,
                   weight_decay_mask=None) -> optax.GradientTransformation:
  """Adam with the configured schedule and optional gradient clipping.

  Args:
    train_cfg: the ``train`` config section.
    weight_decay: float, L2 regularisation added to the gradient (before
      Adam's scaling, as instant-ngp does); 0 for none.
    weight_decay_mask: a pytree of bools (or a function of the params giving
      one) selecting the parameters that decay; None for all.
  """
  parts = []
  if train_cfg.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(train_cfg.grad_clip))
  if weight_decay > 0:
    parts.append(optax.add_decayed_weights(weight_decay, weight_decay_mask))
  parts.append(optax.adam(make_schedule(train_cfg), b1=train_cfg.adam_b1,
                          b2=train_cfg.adam_b2, eps=train_cfg.adam_eps))
  return parts[0] if len(parts) == 1 else optax.chain(*parts)
