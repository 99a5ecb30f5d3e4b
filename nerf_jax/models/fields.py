"""The radiance field: an MLP from points (and view directions) to colour and
density. It knows nothing about rays; pipeline.py joins it to the sampler and
the compositor."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nerf_jax.encoding import positional_encoding

# name -> (depth, width, skips). Skip layers concatenate the encoded input
# to the activations *before* the layer with that index (NeRF: before layer 5).
PRESETS = {
    'tiny': (2, 64, ()),
    'small': (4, 128, ()),
    'medium': (6, 128, (3,)),
    'nerf': (8, 256, (5,)),
    'large': (12, 256, (4, 8)),
}


def preset(name: str) -> tuple:
  """(depth, width, skips) of a named preset; ValueError for unknown names."""
  if name not in PRESETS:
    raise ValueError(f'unknown model preset {name!r}; choose one of '
                     f'{", ".join(PRESETS)}')
  return PRESETS[name]


class NerfMLP(nn.Module):
  """NeRF's MLP: density from position only, colour from position features
  and (optionally) the encoded view direction.

  Attributes:
    depth: number of hidden layers of the position trunk.
    width: units per hidden layer.
    skips: indices of trunk layers whose input also gets the encoded position.
    pos_freqs: L of the positional encoding of points.
    dir_freqs: L of the encoding of view directions.
    use_viewdirs: whether colour depends on the view direction.
    density_bias: added to the raw density before softplus (negative values
      start training from a nearly empty volume).
  """
  depth: int = 4
  width: int = 128
  skips: Sequence[int] = ()
  pos_freqs: int = 10
  dir_freqs: int = 4
  use_viewdirs: bool = False
  density_bias: float = -1.0

  @nn.compact
  def __call__(self, points: jnp.ndarray,
               viewdirs: jnp.ndarray | None = None) -> tuple:
    """Evaluates the field.

    Args:
      points: f32[..., 3], world-space positions.
      viewdirs: f32[..., 3], unit view directions (needed iff use_viewdirs).

    Returns:
      rgb: f32[..., 3] in (0, 1); density: f32[...] >= 0.
    """
    inputs = positional_encoding(points, self.pos_freqs)
    x = inputs
    for i in range(self.depth):
      if i in self.skips:
        x = jnp.concatenate([x, inputs], axis=-1)
      x = nn.relu(nn.Dense(self.width, name=f'trunk_{i}')(x))
    raw_density = nn.Dense(1, name='density')(x)[..., 0]
    density = jax.nn.softplus(raw_density + self.density_bias)
    if self.use_viewdirs:
      if viewdirs is None:
        raise ValueError('this model needs view directions')
      bottleneck = nn.Dense(self.width, name='bottleneck')(x)
      dirs = jnp.broadcast_to(viewdirs, points.shape)
      x = jnp.concatenate(
          [bottleneck, positional_encoding(dirs, self.dir_freqs)], axis=-1)
      x = nn.relu(nn.Dense(self.width // 2, name='view')(x))
    rgb = jax.nn.sigmoid(nn.Dense(3, name='rgb')(x))
    return rgb, density


def make_field(model_cfg) -> NerfMLP:
  """Builds the field from a config section (see configs/base.py:model)."""
  depth, width, skips = preset(model_cfg.preset) if model_cfg.preset else (
      model_cfg.depth, model_cfg.width, tuple(model_cfg.skips))
  return NerfMLP(depth=depth, width=width, skips=tuple(skips),
                 pos_freqs=model_cfg.pos_freqs, dir_freqs=model_cfg.dir_freqs,
                 use_viewdirs=model_cfg.use_viewdirs,
                 density_bias=model_cfg.density_bias)
