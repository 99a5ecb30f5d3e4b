"""Kinds of NeRF behind one interface (``base.Model``), and their fields.

``make_model(config.model, scene_info)`` builds the kind that
``model.kind`` names:
  'mlp': the NeRF paper's MLP, coarse and optional fine level (vanilla.py).
  'fast': a hash-grid field with an occupancy grid (fast.py).
  'proposal': the same field sampled by proposal networks (proposal.py).
"""

from __future__ import annotations

from nerf_jax.models.base import OUTPUT_KEYS, Model
from nerf_jax.models.fast import FastNerf
from nerf_jax.fields.networks import PRESETS, NerfMLP, compute_dtype, make_field, preset
from nerf_jax.models.proposal import ProposalNerf
from nerf_jax.models.vanilla import VanillaNerf

KINDS = {'mlp': VanillaNerf, 'fast': FastNerf, 'proposal': ProposalNerf}

__all__ = ['FastNerf', 'KINDS', 'Model', 'NerfMLP', 'OUTPUT_KEYS', 'PRESETS',
           'ProposalNerf', 'VanillaNerf', 'compute_dtype', 'make_field', 'make_model',
           'preset']


def make_model(model_cfg, scene) -> Model:
  """The model ``model_cfg.kind`` names, for the scene ``scene`` (SceneInfo).

  ValueError (one line) for an unknown kind.
  """
  kind = model_cfg.get('kind', 'mlp') if hasattr(model_cfg, 'get') else (
      getattr(model_cfg, 'kind', 'mlp'))
  if kind not in KINDS:
    raise ValueError(f'model.kind={kind!r} is not one of '
                     f'{", ".join(repr(k) for k in KINDS)}')
  return KINDS[kind](model_cfg, scene)
