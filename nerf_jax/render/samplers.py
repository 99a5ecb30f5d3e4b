"""Samplers: where along each ray a model evaluates its field, level by level.

One small protocol covers the NeRF paper's hierarchical sampler and the
occupancy-grid marcher (``marcher.OccupancyMarcher``), so a model is
assembled from a sampler, its fields and the one compositor
(``compositing.composite_samples``), joined by ``models.pipeline``:

  sampler.levels                                   -> names of the levels
  sampler.sample(key, rays, state, level, previous) -> sampling.Samples

Level ``level`` (0 first) is sampled from the rays, the model's
non-trained state (e.g. an occupancy grid) and ``previous``: None at level
0, else the previous level's (samples, weights), from which a later level
resamples (importance sampling). ``key`` is the render key (None for the
deterministic evaluation path); a sampler derives each level's key from it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Protocol

import jax

from nerf_jax.cameras.camera import Rays
from nerf_jax.render import sampling
from nerf_jax.render.sampling import Samples


class Sampler(Protocol):
  """What a model asks of a sampler (see the module docstring)."""
  levels: tuple

  def sample(self, key: Optional[jax.Array], rays: Rays, state: Any,
             level: int, previous: Optional[tuple]) -> Samples:
    ...


@dataclasses.dataclass(frozen=True)
class Hierarchical:
  """The NeRF paper's sampler: ``num_coarse`` stratified samples (level
  'coarse'), then, if ``num_fine`` > 0, ``num_fine`` more drawn from the
  coarse weights and merged with the coarse ones (level 'fine'). Dense
  samples; no state."""
  num_coarse: int = 64
  num_fine: int = 0

  @property
  def levels(self) -> tuple:
    return ('coarse', 'fine') if self.num_fine > 0 else ('coarse',)

  def sample(self, key, rays: Rays, state, level: int,
             previous: Optional[tuple]) -> Samples:
    del state
    key = None if key is None else jax.random.split(key)[level]
    if level == 0:
      t = sampling.stratified_samples(key, rays.near, rays.far,
                                      self.num_coarse)
    else:
      coarse, weights = previous
      t_new = sampling.sample_pdf(key, coarse.t_edges(), weights,
                                  self.num_fine)
      t = sampling.merge_samples(jax.lax.stop_gradient(coarse.t), t_new)
    return sampling.dense_samples(t, rays.near, rays.far)

