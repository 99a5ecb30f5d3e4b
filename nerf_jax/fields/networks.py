"""The radiance field: an MLP from points (and view directions) to colour and
density. It knows nothing about rays; pipeline.py joins it to the sampler and
the compositor."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nerf_jax.fields import encoding
from nerf_jax.render import contraction

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


class ConcatDense(nn.Module):
  """``nn.Dense`` on the concatenation of ``inputs``, without forming it.

  The parameters are those of ``nn.Dense`` on the concatenated features (a
  ``kernel`` of shape [sum of the inputs' sizes, features], same initialiser,
  and a ``bias``), so checkpoints do not see the difference; the layer is
  applied as a sum of matmuls by the kernel's row blocks. That saves
  writing and re-reading the concatenation (the encoded input is read by
  two layers of NeRF's MLP) and lets an input with fewer leading dimensions
  (a per-ray view direction) be multiplied once per ray and broadcast.
  """
  features: int
  dtype: Any = None  # compute dtype (as nn.Dense's); parameters stay float32

  @nn.compact
  def __call__(self, inputs: Sequence[jnp.ndarray]) -> jnp.ndarray:
    sizes = [x.shape[-1] for x in inputs]
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (sum(sizes), self.features))
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    *inputs, kernel, y = nn.dtypes.promote_dtype(*inputs, kernel, bias,
                                                 dtype=self.dtype)
    start = 0
    for x, size in zip(inputs, sizes):
      y = y + x @ kernel[start:start + size]
      start += size
    return y


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
    dtype: compute dtype of the matmuls (``jnp.bfloat16`` for mixed
      precision on GPU/TPU); parameters, the encoding and the outputs stay
      float32.
    appearance_dim: size of the appearance code the colour reads (0 =
      none); the code comes after the direction in ``viewdirs``
      (``split_ray_inputs``).
  """
  depth: int = 4
  width: int = 128
  skips: Sequence[int] = ()
  pos_freqs: int = 10
  dir_freqs: int = 4
  use_viewdirs: bool = False
  density_bias: float = -1.0
  dtype: Any = jnp.float32
  appearance_dim: int = 0

  @nn.compact
  def __call__(self, points: jnp.ndarray,
               viewdirs: jnp.ndarray | None = None) -> tuple:
    """Evaluates the field.

    Args:
      points: f32[..., 3], world-space positions.
      viewdirs: f32[..., 3 (+ appearance_dim)], unit view directions
        (needed iff use_viewdirs or appearance_dim), then the code.

    Returns:
      rgb: f32[..., 3] in (0, 1); density: f32[...] >= 0.
    """
    # The trunk runs on a flat [points, features] matrix: with the batch
    # shape kept ([rays, samples, features]), XLA:CPU lays the backward's
    # activations out with extra transposes (keras_example.py: 1.2-1.35x
    # slower steps).
    batch_shape = points.shape[:-1]
    inputs = encoding.positional_encoding_parts(points.reshape(-1, 3),
                                                self.pos_freqs)
    x = []
    for i in range(self.depth):
      if i == 0 or i in self.skips:
        x = x + inputs
      x = [nn.relu(ConcatDense(self.width, dtype=self.dtype,
                               name=f'trunk_{i}')(x))]
    x = x[0].reshape(batch_shape + (self.width,))
    raw_density = nn.Dense(1, dtype=self.dtype, name='density')(x)[..., 0]
    raw_density = raw_density.astype(jnp.float32)
    density = jax.nn.softplus(raw_density + self.density_bias)
    if self.use_viewdirs or self.appearance_dim:
      if viewdirs is None:
        raise ValueError('this model needs view directions')
      bottleneck = nn.Dense(self.width, dtype=self.dtype,
                            name='bottleneck')(x)
      viewdirs, code = split_ray_inputs(viewdirs, self.appearance_dim)
      # Encoded (and multiplied) once per ray where viewdirs is [..., 1, 3].
      dirs = encoding.positional_encoding_parts(
          viewdirs, self.dir_freqs) if self.use_viewdirs else []
      x = nn.relu(ConcatDense(self.width // 2, dtype=self.dtype,
                              name='view')([bottleneck] + dirs + code))
    rgb = nn.Dense(3, dtype=self.dtype, name='rgb')(x)
    return jax.nn.sigmoid(rgb.astype(jnp.float32)), density


def make_field(model_cfg) -> NerfMLP:
  """Builds the field from a config section (see configs/base.py:model)."""
  depth, width, skips = preset(model_cfg.preset) if model_cfg.preset else (
      model_cfg.depth, model_cfg.width, tuple(model_cfg.skips))
  return NerfMLP(depth=depth, width=width, skips=tuple(skips),
                 pos_freqs=model_cfg.pos_freqs, dir_freqs=model_cfg.dir_freqs,
                 use_viewdirs=model_cfg.use_viewdirs,
                 density_bias=model_cfg.density_bias,
                 dtype=compute_dtype(model_cfg),
                 appearance_dim=int(getattr(model_cfg, 'appearance_dim', 0)))


def split_ray_inputs(ray_inputs: jnp.ndarray, appearance_dim: int) -> tuple:
  """The field's per-ray input f32[..., 3 + d] as (view direction
  f32[..., 3], [code f32[..., d]] or [] when d is 0)."""
  if not appearance_dim:
    return ray_inputs, []
  if ray_inputs.shape[-1] != 3 + appearance_dim:
    raise ValueError(f'the field reads a {appearance_dim}-number appearance '
                     f'code after the view direction, got {ray_inputs.shape}')
  return ray_inputs[..., :3], [ray_inputs[..., 3:]]


COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def compute_dtype(model_cfg) -> Any:
  """The matmul dtype a config asks for (``model.compute_dtype``)."""
  name = getattr(model_cfg, 'compute_dtype', 'float32')
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'model.compute_dtype={name!r} must be one of '
                     f'{", ".join(repr(k) for k in COMPUTE_DTYPES)}')
  return COMPUTE_DTYPES[name]


@jax.custom_jvp
def trunc_exp(x: jnp.ndarray) -> jnp.ndarray:
  """exp(x) whose gradient is exp(min(x, 15)): density activation.

  Grid fields need exp's dynamic range (empty space near 0, surfaces in the
  hundreds), but one large raw value would otherwise blow up its gradient.
  """
  return jnp.exp(x)


@trunc_exp.defjvp
def _trunc_exp_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return jnp.exp(x), dx * jnp.exp(jnp.minimum(x, 15.0))


class GridField(nn.Module):
  """A multiresolution hash-grid field with small MLPs (instant-ngp).

  Points are normalised into the scene box, encoded by ``encoding``'s hash
  grid, and a one-hidden-layer MLP gives density (through ``trunc_exp``) and
  geometry features; colour comes from those features (and the encoded view
  direction) through a second small MLP.

  Attributes:
    aabb: ((x, y, z), (x, y, z)), the scene box the grid spans.
    levels: int, L, grid resolutions.
    features: int, F, features per level.
    log2_table: int, log2 of the table size T per level.
    base_resolution: int, coarsest grid resolution (cells per side).
    max_resolution: int, finest grid resolution.
    width: int, hidden units of both MLPs.
    geo_features: int, features passed from the density to the colour MLP.
    use_viewdirs: bool, colour depends on the view direction.
    dir_freqs: int, positional-encoding octaves of the view direction.
    density_bias: float, added to the raw density before the activation.
    dtype: compute dtype of the MLPs (the hash tables, their interpolation
      and the outputs stay float32).
    unbounded: bool, the grid spans contracted space (``render.contraction``):
      ``aabb`` is the object's box, the grid's central half, and the rest of
      space fills the outer cells.
    appearance_dim: int, size of the appearance code the colour reads (0 =
      none), after the direction in ``viewdirs`` (``split_ray_inputs``).
  """
  aabb: tuple = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
  levels: int = 16
  features: int = 2
  log2_table: int = 19
  base_resolution: int = 16
  max_resolution: int = 2048
  width: int = 64
  geo_features: int = 15
  use_viewdirs: bool = True
  dir_freqs: int = 4
  density_bias: float = -1.0
  dtype: Any = jnp.float32
  unbounded: bool = False
  appearance_dim: int = 0

  def setup(self):
    self.resolutions = encoding.hash_grid_resolutions(
        self.levels, self.base_resolution, self.max_resolution)
    self.tables = self.param(
        'hash_tables', lambda key: encoding.hash_grid_init(
            key, self.levels, 2 ** self.log2_table, self.features))
    d = self.dtype
    self.density_hidden = nn.Dense(self.width, dtype=d, name='density_hidden')
    self.density_out = nn.Dense(1 + self.geo_features, dtype=d,
                                name='density_out')
    self.color_hidden = ConcatDense(self.width, dtype=d, name='color_hidden')
    self.color_hidden2 = nn.Dense(self.width, dtype=d, name='color_hidden2')
    self.color_out = nn.Dense(3, dtype=d, name='color_out')

  def _geometry(self, points: jnp.ndarray,
                level_weights: jnp.ndarray | None = None) -> tuple:
    lo = jnp.asarray(self.aabb[0], jnp.float32)
    hi = jnp.asarray(self.aabb[1], jnp.float32)
    if self.unbounded:
      x = contraction.to_unit(points, jnp.stack([lo, hi]), unbounded=True)
    else:
      x = (points - lo) / (hi - lo)
    h = encoding.hash_grid_encode(x, self.tables, self.resolutions)
    if level_weights is not None:  # coarse to fine (BARF)
      h = h * jnp.repeat(level_weights, self.features)
    h = self.density_out(nn.relu(self.density_hidden(h)))
    density = trunc_exp(h[..., 0].astype(jnp.float32) + self.density_bias)
    return density, h[..., 1:]

  def density(self, points: jnp.ndarray,
              level_weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """f32[...] densities at f32[..., 3] world points (``level_weights`` as
    in ``__call__``)."""
    return self._geometry(points, level_weights)[0]

  def __call__(self, points: jnp.ndarray,
               viewdirs: jnp.ndarray | None = None,
               level_weights: jnp.ndarray | None = None) -> tuple:
    """Evaluates the field.

    Args:
      points: f32[..., 3], world-space positions.
      viewdirs: f32[..., 3 (+ appearance_dim)], unit view directions, then
        the appearance code (needed iff use_viewdirs or appearance_dim).
      level_weights: optional f32[levels], each hash level's features
        scaled by its weight (``encoding.coarse_to_fine``); None = all 1.

    Returns:
      rgb: f32[..., 3] in (0, 1); density: f32[...] >= 0.
    """
    density, geo = self._geometry(points, level_weights)
    x = [geo]
    if self.use_viewdirs or self.appearance_dim:
      if viewdirs is None:
        raise ValueError('this field needs view directions')
      viewdirs, code = split_ray_inputs(viewdirs, self.appearance_dim)
      if self.use_viewdirs:
        x += encoding.positional_encoding_parts(viewdirs, self.dir_freqs)
      x += code
    x = nn.relu(self.color_hidden(x))
    x = nn.relu(self.color_hidden2(x))
    rgb = self.color_out(x).astype(jnp.float32)
    return jax.nn.sigmoid(rgb), density
