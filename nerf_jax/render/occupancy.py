"""Occupancy grid and empty-space-skipping ray marching (instant-ngp style).

A coarse, non-trained grid over an axis-aligned scene box records where the
field has density; rays are marched with a constant step through the box and
samples in empty cells are dropped, then the surviving samples are packed into
a fixed budget so the field runs on a static-shape batch under ``jax.jit``.

Symbols shared by this module (``...`` is a batch of rays, R flattened rays,
N steps per ray, G the grid resolution, M = R * N):
  aabb:      f32[2, 3], the scene box: row 0 its minimum corner, row 1 its
             maximum corner;
  grid:      dict(density=f32[G, G, G], mask=bool[G, G, G]), the exponential
             moving average (EMA) of density per cell and the occupied cells;
             cell (ix, iy, iz) has flat index ix * G * G + iy * G + iz;
  t:         the ray parameter of o + t d with *un-normalised* d (camera.py),
             so a length of t is |d| times shorter in world units;
  t_samples: f32[R, N], t_edges: f32[R, N + 1] as in sampling.py;
  valid:     bool[R, N], samples that lie in the box and in an occupied cell;
  budget:    int, the static number of packed samples the field evaluates.

An unbounded scene (``unbounded=True``) keeps its grid over the contracted
space (``contraction``): ``aabb`` is then the object's box, the grid's
central half, and the rest of space out to infinity fills the outer cells;
rays are marched from near to far, linearly up to where they leave the box
and in disparity beyond (``unbounded_edges``).

Every random function takes its PRNG key first and accepts ``None`` for the
deterministic evaluation path.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from nerf_jax.render import contraction

# Direction components with magnitude below this count as parallel to their
# slab: 1 / d would overflow (and 0 * inf is NaN for an origin on a slab plane).
_TINY_DIR = 1e-20


def ray_aabb(origins: jnp.ndarray, directions: jnp.ndarray, aabb: jnp.ndarray,
             near: jnp.ndarray,
             far: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Slab intersection of rays o + t d with the box, clipped to [near, far].

  Args:
    origins: f32[..., 3], ray origins.
    directions: f32[..., 3], ray directions, of any length; zero components
      are allowed.
    aabb: f32[2, 3], the box.
    near: f32[..., 1], start of each ray's interval along t.
    far: f32[..., 1], end of each ray's interval along t.

  Returns:
    t_start: f32[...], where the ray enters box and interval;
    t_end: f32[...], where it leaves them;
    hit: bool[...], t_end > t_start. Where hit is False, t_start and t_end
      are both set to ``far`` so missed rays have a finite, empty interval.
  """
  lo, hi = aabb[0], aabb[1]
  parallel = jnp.abs(directions) < _TINY_DIR
  # Safe reciprocal: parallel components get 1, their slabs are set below.
  inv = 1.0 / jnp.where(parallel, 1.0, directions)
  t0, t1 = (lo - origins) * inv, (hi - origins) * inv
  # A ray parallel to a slab is inside it for all t or for none (origins on
  # the slab's faces count as inside the closed box).
  in_slab = (origins >= lo) & (origins <= hi)
  t_lo = jnp.where(parallel, jnp.where(in_slab, -jnp.inf, jnp.inf),
                   jnp.minimum(t0, t1))
  t_hi = jnp.where(parallel, jnp.where(in_slab, jnp.inf, -jnp.inf),
                   jnp.maximum(t0, t1))
  t_enter = jnp.max(t_lo, axis=-1)
  t_exit = jnp.min(t_hi, axis=-1)
  t_start = jnp.maximum(t_enter, near[..., 0])
  t_end = jnp.minimum(t_exit, far[..., 0])
  hit = t_end > t_start
  far0 = jnp.broadcast_to(far[..., 0], hit.shape)
  return (jnp.where(hit, t_start, far0), jnp.where(hit, t_end, far0), hit)


def cell_index(points: jnp.ndarray, aabb: jnp.ndarray, resolution: int,
               unbounded: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Flat index of the grid cell containing each point.

  Args:
    points: f32[..., 3], world points.
    aabb: f32[2, 3], the box.
    resolution: int, G, cells per axis.
    unbounded: bool, the grid covers contracted space (see the module).

  Returns:
    index: int32[...], ix * G * G + iy * G + iz, each of ix, iy, iz clipped
      into [0, G - 1] (points on the maximum faces belong to the last cell);
    inside: bool[...], whether the point lies in the closed box (unbounded:
      always, the grid covers all of space).
  """
  lo, hi = aabb[0], aabb[1]
  g = resolution
  if unbounded:
    unit = contraction.to_unit(points, aabb, unbounded=True)
    inside = jnp.ones(points.shape[:-1], bool)
  else:
    # A degenerate (zero-width) box axis would divide by zero.
    unit = (points - lo) / jnp.maximum(hi - lo, 1e-12)
    inside = jnp.all((points >= lo) & (points <= hi), axis=-1)
  # Clip in float before the cast: far-away points would overflow int32.
  ijk = jnp.clip(jnp.floor(unit * g), 0, g - 1)
  ijk = ijk.astype(jnp.int32)
  index = (ijk[..., 0] * g + ijk[..., 1]) * g + ijk[..., 2]
  return index, inside


def init_grid(resolution: int) -> dict:
  """A grid with zero density and every cell occupied (nothing is skipped).

  Args:
    resolution: int, G, cells per axis.

  Returns:
    dict(density=f32[G, G, G] zeros, mask=bool[G, G, G] all True).
  """
  shape = (resolution,) * 3
  return dict(density=jnp.zeros(shape, jnp.float32),
              mask=jnp.ones(shape, jnp.bool_))


def _cell_points(key: Optional[jax.Array], cells: jnp.ndarray,
                 aabb: jnp.ndarray, resolution: int,
                 unbounded: bool = False) -> jnp.ndarray:
  """One point per cell: jittered uniformly inside it, or its centre if None.

  Args:
    key: PRNG key, or None for cell centres.
    cells: int32[K], flat cell indices.
    aabb: f32[2, 3], the box.
    resolution: int, G.
    unbounded: bool, the grid covers contracted space (jittered uniformly
      in contracted coordinates).

  Returns:
    f32[K, 3], world points.
  """
  g = resolution
  ijk = jnp.stack([cells // (g * g), (cells // g) % g, cells % g], axis=-1)
  if key is None:
    u = jnp.full(ijk.shape, 0.5, jnp.float32)
  else:
    u = jax.random.uniform(key, ijk.shape, jnp.float32)
  if unbounded:
    return contraction.from_unit((ijk.astype(jnp.float32) + u) / g, aabb,
                                 unbounded=True)
  cell_size = (aabb[1] - aabb[0]) / g
  return aabb[0] + (ijk.astype(jnp.float32) + u) * cell_size


def _batched_density(density_fn: Callable[[jnp.ndarray], jnp.ndarray],
                     points: jnp.ndarray, batch: int) -> jnp.ndarray:
  """density_fn over points in sequential batches of at most ``batch``.

  Args:
    density_fn: maps f32[n, 3] points to f32[n] (or f32[n, 1]) densities.
    points: f32[K, 3].
    batch: int, the largest number of points per call.

  Returns:
    f32[K], densities, gradients stopped (the grid is not trained).
  """
  k = points.shape[0]
  if k <= batch:
    out = density_fn(points).reshape(k)
  else:
    num = -(-k // batch)
    # Pad by repeating the last point; the extra densities are sliced away.
    padded = jnp.pad(points, ((0, num * batch - k), (0, 0)), mode='edge')
    out = jax.lax.map(lambda p: density_fn(p).reshape(batch),
                      padded.reshape(num, batch, 3))
    out = out.reshape(-1)[:k]
  return jax.lax.stop_gradient(out.astype(jnp.float32))


def _sample_cells(key: Optional[jax.Array], mask: jnp.ndarray,
                  count: int) -> jnp.ndarray:
  """``count`` uniformly random cells, then ``count`` random occupied cells.

  Occupied cells are drawn with replacement by inverting the cumulative
  count of occupied cells, which is O(G^3 + count log G^3) and static-shape.

  Args:
    key: PRNG key, or None for a deterministic spread of cells.
    mask: bool[G^3], flat occupancy.
    count: int, cells of each kind.

  Returns:
    int32[2 * count], flat cell indices (may repeat).
  """
  n = mask.shape[0]
  csum = jnp.cumsum(mask.astype(jnp.int32))
  occupied = csum[-1]
  if key is None:
    # Evenly spread quantiles, computed in float: i * n overflows int32.
    q = (jnp.arange(count, dtype=jnp.float32) + 0.5) / count
    uniform = jnp.floor(q * n).astype(jnp.int32)
    rank = jnp.floor(q * occupied.astype(jnp.float32)).astype(jnp.int32)
  else:
    k_uni, k_occ = jax.random.split(key)
    uniform = jax.random.randint(k_uni, (count,), 0, n)
    rank = jax.random.randint(k_occ, (count,), 0, jnp.maximum(occupied, 1))
  # The first cell whose running count exceeds rank is the rank-th occupied.
  chosen = jnp.minimum(jnp.searchsorted(csum, rank, side='right'), n - 1)
  # With no occupied cell, fall back to the uniform ones.
  chosen = jnp.where(occupied > 0, chosen, uniform)
  return jnp.concatenate([uniform, chosen]).astype(jnp.int32)


def threshold_scale(resolution: int) -> jnp.ndarray:
  """f32[G^3] the occupancy threshold of each cell of an unbounded grid
  over the box's: (2 - m)^2 for a cell centre at |y|_inf = m > 1 in
  contracted coordinates, 1 in the box.

  Outside the box a contracted cell spans |u|^2 = 1 / (2 - m)^2 times the
  world length of a box cell along the ray's distance (the contraction's
  radial derivative is 1 / |u|^2), and the march's steps there grow the
  same way (equal in disparity), so a density that gives one step the
  threshold's opacity is that much smaller. With the box's threshold
  everywhere, the distant background, dense enough but not per world
  unit, would be marked empty and never learnt.
  """
  centres = (jnp.arange(resolution, dtype=jnp.float32) + 0.5) / resolution
  y = jnp.abs(4.0 * centres - 2.0)  # |contracted coordinate| per axis
  m = jnp.maximum(jnp.maximum(y[:, None, None], y[None, :, None]),
                  y[None, None, :])
  return (jnp.minimum(2.0 - m, 1.0) ** 2).reshape(-1)


def update_grid(key: Optional[jax.Array], grid: dict,
                density_fn: Callable[[jnp.ndarray], jnp.ndarray],
                aabb: jnp.ndarray, step: jnp.ndarray | int, *,
                decay: float = 0.95, threshold: float,
                warmup_steps: int = 256, max_cells: int = 2**18,
                unbounded: bool = False) -> dict:
  """One instant-ngp occupancy update: decay, re-evaluate cells, threshold.

  During warm-up (step < warmup_steps) or when G^3 <= max_cells every cell is
  evaluated; afterwards max_cells // 2 uniformly random cells and
  max_cells // 2 random occupied cells. Each evaluated cell gets
  ema = max(ema * decay, density at a point jittered inside it), the others
  ema * decay; then mask = ema > min(threshold, mean(ema)).

  Args:
    key: PRNG key, or None for cell centres (and a fixed cell selection).
    grid: dict(density=f32[G, G, G], mask=bool[G, G, G]).
    density_fn: maps f32[n, 3] world points to f32[n] densities, n <=
      max_cells; it is traced, never run eagerly per point.
    aabb: f32[2, 3], the box.
    step: int or int32[], the training step (may be traced).
    decay: float, EMA decay per update.
    threshold: float, occupancy density threshold (instant-ngp uses
      0.01 / step length in world units, i.e. opacity 0.01 per step); in
      an unbounded grid it is the box's, and lower in the contracted shell
      (``threshold_scale``).
    warmup_steps: int, steps during which all cells are evaluated.
    max_cells: int, static bound on cells per update and per density_fn call.
    unbounded: bool, the grid covers contracted space (see the module).

  Returns:
    dict(density=f32[G, G, G], mask=bool[G, G, G]), the updated grid.
  """
  g = grid['density'].shape[0]
  n = g ** 3
  old = grid['density'].reshape(n) * decay
  if key is None:
    k_sel = k_all = k_some = None
  else:
    k_sel, k_all, k_some = jax.random.split(key, 3)

  def all_cells(old):
    cells = jnp.arange(n, dtype=jnp.int32)
    new = _batched_density(density_fn, _cell_points(k_all, cells, aabb, g,
                                                        unbounded),
                           max_cells)
    return jnp.maximum(old, new)

  def some_cells(old):
    cells = _sample_cells(k_sel, grid['mask'].reshape(n), max_cells // 2)
    new = _batched_density(density_fn, _cell_points(k_some, cells, aabb, g,
                                                         unbounded),
                           max_cells)
    return old.at[cells].max(new)

  if n <= max_cells:
    ema = all_cells(old)
  else:
    ema = jax.lax.cond(step < warmup_steps, all_cells, some_cells, old)
  if unbounded:
    threshold = threshold * threshold_scale(g)
  # Early on every density is tiny; the mean guard keeps the densest cells
  # occupied rather than emptying the grid and skipping every sample.
  mask = ema > jnp.minimum(threshold, jnp.mean(ema))
  return dict(density=ema.reshape(g, g, g), mask=mask.reshape(g, g, g))


def march(key: Optional[jax.Array], origins: jnp.ndarray,
          directions: jnp.ndarray, near: jnp.ndarray, far: jnp.ndarray,
          grid_mask: jnp.ndarray, aabb: jnp.ndarray, num_steps: int,
          outer_steps: int = 0) -> dict:
  """Constant-step samples through the box, flagging those in occupied cells.

  The step is dt = |aabb diagonal| / num_steps in world units, i.e.
  dt / |d| in t, so num_steps steps always cross the box. Edges are
  min(t_start + i dt, t_end); the interval holding t_end is truncated and
  later ones have zero length, so the intervals tile [t_start, t_end]
  exactly. Sample i sits at fraction u of interval i (u uniform per ray, 0.5
  without a key), i.e. t_start + (i + u) dt for every full step.

  Args:
    key: PRNG key, or None for interval centres.
    origins: f32[R, 3], ray origins.
    directions: f32[R, 3], ray directions (not necessarily unit length).
    near: f32[R, 1], start of each ray's interval along t.
    far: f32[R, 1], end of each ray's interval along t.
    grid_mask: bool[G, G, G], occupied cells.
    aabb: f32[2, 3], the box.
    num_steps: int, N, steps per ray (unbounded: up to where it leaves the
      box).
    outer_steps: int, 0 for a bounded scene; else the scene is unbounded,
      the grid covers contracted space, and N + outer_steps steps cover
      [near, far] (``unbounded_edges``).

  Returns:
    dict with
      t_samples: f32[R, N], samples, each inside its interval (N is
        num_steps + outer_steps);
      t_edges: f32[R, N + 1], non-decreasing edges from t_start to t_end;
      valid: bool[R, N], ray hits the box, interval non-empty, cell occupied.
  """
  if outer_steps:
    t_edges = unbounded_edges(origins, directions, near, far, aabb,
                              num_steps, outer_steps)
    hit = jnp.ones(origins.shape[:1], bool)
  else:
    t_edges, hit = _box_edges(origins, directions, near, far, aabb,
                              num_steps)
  if key is None:
    u = jnp.full((origins.shape[0], 1), 0.5, jnp.float32)
  else:
    u = jax.random.uniform(key, (origins.shape[0], 1), jnp.float32)
  lo, hi = t_edges[:, :-1], t_edges[:, 1:]
  t_samples = lo + u * (hi - lo)
  points = origins[:, None, :] + t_samples[..., None] * directions[:, None, :]
  # Samples are inside [t_start, t_end] by construction; ignoring `inside`
  # avoids dropping samples on the box faces to float rounding.
  cells, _ = cell_index(points, aabb, grid_mask.shape[0],
                        unbounded=bool(outer_steps))
  occupied = grid_mask.reshape(-1)[cells]
  valid = hit[:, None] & (hi > lo) & occupied
  return dict(t_samples=t_samples, t_edges=t_edges, valid=valid)


def _box_edges(origins, directions, near, far, aabb, num_steps) -> tuple:
  """Constant-step edges f32[R, N + 1] through the box, and hit bool[R]."""
  t_start, t_end, hit = ray_aabb(origins, directions, aabb, near, far)
  diag = jnp.linalg.norm(aabb[1] - aabb[0])
  # A zero direction would divide by zero; its dt is then huge and the ray's
  # single non-empty interval is [t_start, t_end].
  speed = jnp.maximum(jnp.linalg.norm(directions, axis=-1), _TINY_DIR)
  dt = (diag / num_steps) / speed
  i = jnp.arange(num_steps + 1, dtype=jnp.float32)
  t_edges = jnp.minimum(t_start[:, None] + i * dt[:, None], t_end[:, None])
  return t_edges, hit


def unbounded_edges(origins: jnp.ndarray, directions: jnp.ndarray,
                    near: jnp.ndarray, far: jnp.ndarray, aabb: jnp.ndarray,
                    inner_steps: int, outer_steps: int) -> jnp.ndarray:
  """Interval edges for an unbounded scene: linear near, disparity far.

  Each ray's [near, far] is split where it leaves the box (``aabb``, the
  object's box; at near for rays that miss it): ``inner_steps`` equal steps
  in t up to there, then ``outer_steps`` steps equal in disparity 1 / t out
  to far, so the steps grow with distance as the contraction's cells do
  (``contraction``).

  Returns:
    f32[R, inner_steps + outer_steps + 1], non-decreasing edges from near
    to far.
  """
  t_near, t_far = near[:, 0], far[:, 0]
  _, t_exit, hit = ray_aabb(origins, directions, aabb, near, far)
  # Disparity is undefined at t = 0: the far part starts a little beyond.
  speed = jnp.maximum(jnp.linalg.norm(directions, axis=-1), _TINY_DIR)
  t_min = 1e-3 * jnp.linalg.norm(aabb[1] - aabb[0]) / speed
  t_mid = jnp.maximum(jnp.where(hit, t_exit, t_near), jnp.maximum(t_near,
                                                                  t_min))
  t_mid = jnp.minimum(t_mid, t_far)
  s_in = jnp.arange(inner_steps + 1, dtype=jnp.float32) / inner_steps
  inner = t_near[:, None] + s_in * (t_mid - t_near)[:, None]
  s_out = jnp.arange(1, outer_steps + 1, dtype=jnp.float32) / outer_steps
  inv_mid, inv_far = 1.0 / t_mid, 1.0 / t_far
  outer = 1.0 / (inv_mid[:, None] + s_out * (inv_far - inv_mid)[:, None])
  # Rounding may put an outer edge a hair past far: clip into [t_mid, far].
  outer = jnp.clip(outer, t_mid[:, None], t_far[:, None])
  return jnp.concatenate([inner, outer], axis=-1)


def compact(valid: jnp.ndarray,
            budget: int) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Flat indices of the first ``budget`` valid samples, in ray-major order.

  Args:
    valid: bool[R, N], samples to keep.
    budget: int, static number of packed slots.

  Returns:
    indices: int32[budget], indices into valid.reshape(-1); slots past
      ``count`` hold the fill index R * N - 1 (use
      ``jnp.arange(budget) < count`` as their mask);
    count: int32[], number of True entries in valid (may exceed budget);
    ray_ok: bool[R], every valid sample of the ray got a slot (rays without
      valid samples are ok).
  """
  flat = valid.reshape(-1)
  m = flat.shape[0]
  # Cumsum + scatter: slot of each valid sample is the number of valid ones
  # before it. Measured ~5-10% faster on CPU than jnp.nonzero(size=budget)
  # for 4096 x 512 samples, and its cumsum also gives count and ray_ok.
  csum = jnp.cumsum(flat, dtype=jnp.int32)
  slot = jnp.where(flat & (csum <= budget), csum - 1, budget)
  indices = jnp.full((budget,), m - 1, jnp.int32).at[slot].set(
      jnp.arange(m, dtype=jnp.int32), mode='drop')
  # A ray fits iff the running count at its last sample is within budget.
  ray_ok = csum.reshape(valid.shape)[:, -1] <= budget
  per_ray_empty = ~jnp.any(valid, axis=-1)
  return indices, csum[-1], ray_ok | per_ray_empty


def scatter_dense(values: jnp.ndarray, indices: jnp.ndarray,
                  count_mask: jnp.ndarray,
                  shape: tuple[int, ...]) -> jnp.ndarray:
  """Puts packed per-sample values back into a dense array of zeros.

  Differentiable w.r.t. values (the gradient is a gather; masked slots get
  zero gradient).

  Args:
    values: f32[budget, ...], packed values.
    indices: int32[budget], flat indices from ``compact``.
    count_mask: bool[budget], slots that hold a real sample.
    shape: tuple, the dense leading shape, e.g. (R, N); prod(shape) > indices.

  Returns:
    f32[*shape, ...], values at their samples, zero elsewhere.
  """
  m = 1
  for s in shape:
    m *= s
  # Masked slots are sent out of range and dropped, so neither their (fill
  # index) duplicates nor any non-finite value in them reaches the output.
  target = jnp.where(count_mask, indices, m)
  dense = jnp.zeros((m,) + values.shape[1:], values.dtype)
  dense = dense.at[target].add(values, mode='drop')
  return dense.reshape(tuple(shape) + values.shape[1:])
