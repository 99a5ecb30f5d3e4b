"""How far a scene's content reaches, and the ``data.extent`` override.

A loader decides its capture's extent (``scene.EXTENTS``):

  'bounded'    everything is inside the scene box ``aabb`` (the Blender and
               tiny scenes; instant-ngp files with ``aabb_scale`` 1);
  'forward'    a forward-facing capture in NDC (LLFF with ``ndc=True``);
  'unbounded'  cameras around an object: ``aabb`` is the OBJECT's box, and
               the background reaches from there to ``far`` (modelled in
               contracted space). LLFF with ``ndc=False``, nerfstudio's and
               prepare.py's transforms.json, instant-ngp's ``aabb_scale`` > 1.

The object box of an unbounded capture holds its cameras: a cube about the
point they look at whose half size is the largest coordinate of any camera
centre there. This is nerfstudio's and mip-NeRF 360's convention (both scale
a capture so that its cameras lie in [-1, 1]^3, the region their
contractions leave alone): what the photos see up close (the object, the
table or floor around it, the space the cameras stand in) is at the grids'
full resolution, and only what lies beyond the cameras (the room, the
horizon) is contracted. A smaller box (instant-ngp's unit cube, 1.5 / 4 of
the cameras' distance) put the floor around the beer's can into contracted
space, learnt there as view-dependent fog: 23.8 dB held out after 2
minutes, against 24.4 with the box holding the cameras (BENCHMARKS.md).

``data.extent`` ('auto', or one of ``scene.EXTENTS``) overrides the loader:
the LLFF and transforms.json loaders take it and frame the capture as asked
(``bounded`` gives the boxes they built before extents existed);
``apply_extent`` then checks it against the scene and turns the scenes of
the other loaders around (a box kept as the object box, or a box grown to
hold every sample).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from nerf_jax.datasets import scene as scene_lib
from nerf_jax.datasets.base import DatasetError, Scene

# data.extent's values: 'auto' keeps the loader's decision.
CHOICES = ('auto',) + scene_lib.EXTENTS

# far of an unbounded scene that states no depth, in mean camera distances
# from the centre: the background is sampled in disparity (1 / t), so a far
# plane this distant costs a few samples and cuts off almost nothing
# (nerfstudio's nerfacto samples to 1000 with cameras within 1 of the centre).
BACKGROUND_DISTANCES = 100.0


def check_choice(extent: str, where: str = 'data.extent') -> str:
  """``extent`` if it is one of ``CHOICES``; DatasetError (one line) if not."""
  if extent not in CHOICES:
    raise DatasetError(f'{where}={extent!r} is not one of '
                       f'{", ".join(repr(c) for c in CHOICES)}')
  return extent


def ndc_problem(extent: str, ndc: bool) -> str:
  """'' or the line refusing ``extent`` for rays cast with (or without) NDC:
  NDC captures are forward-facing, and only they are."""
  if ndc and extent not in ('auto', 'forward'):
    return (f'data.extent={extent!r} does not apply to NDC rays (a '
            'forward-facing capture); use data.ndc=False for a 360-degree '
            "capture, or data.extent='auto'")
  if not ndc and extent == 'forward':
    return ("data.extent='forward' needs a forward-facing capture in NDC "
            "(data.kind='llff' with data.ndc=True); this scene's rays are "
            'cast in world space')
  return ''


def check_requested(extent: str, ndc: bool, where: str) -> str:
  """``extent`` if it is one of ``CHOICES`` and applies to rays cast with
  (or without) NDC; DatasetError (one line, starting with ``where``) if
  not."""
  problem = ndc_problem(check_choice(extent), ndc)
  if problem:
    raise DatasetError(f'{where}: {problem}')
  return extent


def mean_distance(centres: np.ndarray, point=(0.0, 0.0, 0.0)) -> float:
  """The mean distance of camera centres f[n, 3] from ``point`` (> 0)."""
  d = np.linalg.norm(np.asarray(centres, np.float64) - point, axis=-1)
  return max(float(d.mean()), 1e-9)


def object_box(centres: np.ndarray) -> tuple:
  """The object box of an unbounded capture centred on the origin (the
  point its cameras, at f[n, 3] ``centres``, look at): the cube that holds
  every camera (see the module). ((x, y, z), (x, y, z))."""
  half = max(float(np.abs(np.asarray(centres, np.float64)).max()), 1e-9)
  return ((-half,) * 3, (half,) * 3)


def background_far(centres: np.ndarray, point=(0.0, 0.0, 0.0)) -> float:
  """far of an unbounded scene without depth bounds: ``BACKGROUND_DISTANCES``
  times the cameras' (f[n, 3] ``centres``) mean distance from ``point``."""
  return BACKGROUND_DISTANCES * mean_distance(centres, point)


def _centres(scene: Scene) -> np.ndarray:
  """f64[n, 3], the camera centres of every split (held-out views too)."""
  return np.concatenate([np.asarray(s.poses)[:, :3, 3]
                         for s in scene.splits.values()]).astype(np.float64)


def _as_unbounded(scene: Scene) -> Scene:
  """A bounded scene made unbounded: its box becomes the object box, and
  far grows to see a background (``background_far``)."""
  centre = np.mean(np.asarray(scene.aabb, np.float64), axis=0)
  far = max(float(scene.far), background_far(_centres(scene), centre))
  return dataclasses.replace(scene, far=far, extent='unbounded')


def _as_bounded(scene: Scene) -> Scene:
  """An unbounded scene made bounded: a cube about the object box's centre
  that reaches ``far`` from every camera, so that it holds every sample (the
  box LLFF's 360-degree captures had before extents existed)."""
  centre = np.mean(np.asarray(scene.aabb, np.float64), axis=0)
  reach = float(np.linalg.norm(_centres(scene) - centre, axis=-1).max()
                + scene.far)
  aabb = (tuple(float(c - reach) for c in centre),
          tuple(float(c + reach) for c in centre))
  return dataclasses.replace(scene, aabb=aabb, extent='bounded')


def apply_extent(scene: Scene, data_cfg: Any) -> Scene:
  """The scene with ``data_cfg.extent`` applied (see the module).

  Args:
    scene: a loaded ``Scene`` with its loader's extent.
    data_cfg: the data config; ``extent`` 'auto' (or absent) keeps the
      loader's decision.

  Returns:
    The ``Scene``, changed only where the extent asked for differs from the
    loader's; DatasetError (one line) for a value that does not apply.
  """
  # Any split will do (an evaluation may load only its own).
  ndc = bool(next(iter(scene.splits.values())).cameras.ndc)
  extent = check_requested(str(getattr(data_cfg, 'extent', 'auto')), ndc,
                           scene.name)
  if ndc:
    return dataclasses.replace(scene, extent='forward')
  if extent in ('auto', scene.extent):
    return scene
  return _as_unbounded(scene) if extent == 'unbounded' else _as_bounded(
      scene)
