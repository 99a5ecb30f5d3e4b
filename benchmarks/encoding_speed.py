"""Speed of the grid encodings against the vanilla NeRF MLP, per sample.

  .venv/bin/python benchmarks/encoding_speed.py
  .venv/bin/python benchmarks/encoding_speed.py --reps 9 --ablation

For a batch of random points in [0, 1]^3 it times the forward pass and the
forward + backward pass (jax.grad of a scalar loss w.r.t. every parameter) of:

- hash grid (L=16, F=2, N_min=16; T and N_max as listed) + tiny MLP;
- dense grid 128^3 with C=8 + tiny MLP;
- baseline: vanilla NeRF MLP (positional encoding L=6 of xyz, 4 Dense 128
  relu, density and rgb heads).

Tiny MLP: Dense 64 relu -> Dense 16 (density features), then Dense 64 relu ->
Dense 3 (rgb) on those 16. All MLPs are plain jnp matmuls.

Times are ns/sample, the median of --reps timed calls after a compile and
warm-up call. The machine may be shared: the variants are measured
round-robin (every variant once per repetition), so a busy period slows all
of them alike, and each is reported relative to the baseline measured in the
same process. --ablation adds the implementation alternatives that the
library's hash_grid_encode was chosen against.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from nerf_jax.fields import encoding  # pylint: disable=g-import-not-at-top

HASH_LEVELS, HASH_FEATURES, HASH_BASE = 16, 2, 16


def dense_init(key, sizes):
  """[(w, b)] of an MLP with the given layer sizes (He-normal weights)."""
  params = []
  for key, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1),
                                    zip(sizes[:-1], sizes[1:])):
    w = jax.random.normal(key, (fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    params.append((w, jnp.zeros((fan_out,))))
  return params


def mlp(params, h):
  """relu between layers, none after the last."""
  for i, (w, b) in enumerate(params):
    h = h @ w + b
    if i < len(params) - 1:
      h = jax.nn.relu(h)
  return h


def tiny_init(key, in_dims):
  k1, k2 = jax.random.split(key)
  return {'density': dense_init(k1, [in_dims, 64, 16]),
          'color': dense_init(k2, [16, 64, 3])}


def tiny_field(params, features):
  """(rgb f32[N, 3], raw density f32[N]) from encoded points."""
  h = mlp(params['density'], features)
  return mlp(params['color'], h), h[:, 0]


def vanilla_init(key):
  k1, k2, k3 = jax.random.split(key, 3)
  in_dims = encoding.encoded_size(3, 6)
  return {'trunk': dense_init(k1, [in_dims] + [128] * 4),
          'density': dense_init(k2, [128, 1]),
          'rgb': dense_init(k3, [128, 3])}


def vanilla_field(params, x):
  h = jax.nn.relu(mlp(params['trunk'], encoding.positional_encoding(x, 6)))
  return mlp(params['rgb'], h), mlp(params['density'], h)[:, 0]


def loss_fn(field):
  def loss(params, x, target):
    rgb, density = field(params, x)
    return jnp.mean((rgb - target) ** 2) + 1e-3 * jnp.mean(density ** 2)
  return loss


def hash_field(encode, resolutions):
  def field(params, x):
    return tiny_field(params['mlp'],
                      encode(x, params['tables'], resolutions))
  return field


def dense_field(params, x):
  return tiny_field(params['mlp'],
                    encoding.dense_grid_encode(x, params['grid']))


# --- implementation alternatives (--ablation) -------------------------------


def hash_encode_autodiff(x, tables, resolutions):
  """The library's forward, differentiated by JAX (no custom backward)."""
  num_levels, table_size, features = tables.shape
  # pylint: disable-next=protected-access
  specs = tuple(encoding._hash_level_spec(n, table_size) for n in resolutions)
  out = encoding._lookup_forward(  # pylint: disable=protected-access
      jnp.clip(x.reshape(-1, 3), 0.0, 1.0), tables, specs)
  return out.reshape(x.shape[:-1] + (num_levels * features,))


def hash_encode_vectorised(x, tables, resolutions):
  """All levels and corners at once: one gather of [L, N, 8] rows from the
  flattened [L*T, F] table (per-level offsets), differentiated by JAX."""
  num_levels, table_size, features = tables.shape
  x = jnp.clip(x.reshape(-1, 3), 0.0, 1.0)
  res = jnp.asarray(np.array(resolutions, np.float32))[:, None, None]
  pos = x[None] * res  # [L, N, 3]
  lower = jnp.minimum(jnp.floor(pos), res - 1)
  frac = pos - lower
  bits = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)],
                  np.uint32)
  vert = lower.astype(jnp.uint32)[:, :, None, :] + bits  # [L, N, 8, 3]
  side = jnp.asarray(np.array([n + 1 for n in resolutions], np.uint32))
  side = side[:, None, None]
  dense = jnp.asarray(np.array([(n + 1) ** 3 <= table_size
                                for n in resolutions]))[:, None, None]
  one_to_one = vert[..., 0] + vert[..., 1] * side + vert[..., 2] * side * side
  hashed = (vert[..., 0] ^ (vert[..., 1] * np.uint32(2654435761))
            ^ (vert[..., 2] * np.uint32(805459861))) % np.uint32(table_size)
  rows = jnp.where(dense, one_to_one, hashed).astype(jnp.int32)
  rows = rows + (jnp.arange(num_levels, dtype=jnp.int32)
                 * table_size)[:, None, None]
  w3 = jnp.where(bits > 0, frac[:, :, None, :], 1.0 - frac[:, :, None, :])
  weights = w3[..., 0] * w3[..., 1] * w3[..., 2]  # [L, N, 8]
  values = tables.reshape(-1, features)[rows]  # [L, N, 8, F]
  out = jnp.sum(values * weights[..., None], axis=2)  # [L, N, F]
  return jnp.transpose(out, (1, 0, 2)).reshape(x.shape[0], -1)


def hash_encode_bf16(x, tables, resolutions):
  """The library's encoding of bfloat16 tables (cast in the timed call)."""
  return encoding.hash_grid_encode(x, tables.astype(jnp.bfloat16), resolutions)


def dense_encode_autodiff(x, grid):
  size, channels = grid.shape[0], grid.shape[-1]
  specs = ((size - 1, (size * size, size, 1)),)
  return encoding._lookup_forward(  # pylint: disable=protected-access
      jnp.clip(x.reshape(-1, 3), 0.0, 1.0), grid.reshape(1, -1, channels),
      specs)


# --- measurement ------------------------------------------------------------


def variants(args, key):
  """name -> (field, params, description)."""
  out = {}
  k_mlp, k_grid, k_van = jax.random.split(key, 3)
  out['vanilla MLP'] = (vanilla_field, vanilla_init(k_van),
                        'PE L=6, 4x128 relu, density + rgb heads')
  hash_configs = [(int(t), int(m)) for t in args.table_log2
                  for m in args.max_res]
  for log2_t, max_res in hash_configs:
    res = encoding.hash_grid_resolutions(HASH_LEVELS, HASH_BASE, max_res)
    params = {'tables': encoding.hash_grid_init(k_grid, HASH_LEVELS,
                                                2**log2_t, HASH_FEATURES),
              'mlp': tiny_init(k_mlp, HASH_LEVELS * HASH_FEATURES)}
    dense_levels = sum((n + 1) ** 3 <= 2**log2_t for n in res)
    out[f'hash T=2^{log2_t} max {max_res}'] = (
        hash_field(encoding.hash_grid_encode, res), params,
        f'L=16 F=2 N 16..{max_res}, {dense_levels} levels one-to-one')
  size = args.dense_res
  dense_params = {'grid': jax.random.uniform(k_grid, (size,) * 3 + (8,),
                                             minval=-1e-4, maxval=1e-4),
                  'mlp': tiny_init(k_mlp, 8)}
  out[f'dense {size}^3 C=8'] = (dense_field, dense_params, 'trilinear')
  if args.ablation:
    log2_t, max_res = max(hash_configs)
    res = encoding.hash_grid_resolutions(HASH_LEVELS, HASH_BASE, max_res)
    base = out[f'hash T=2^{log2_t} max {max_res}'][1]
    for name, fn in [('per-level loop, jax autodiff', hash_encode_autodiff),
                     ('vectorised gather, jax autodiff',
                      hash_encode_vectorised),
                     ('bf16 copy of the tables', hash_encode_bf16)]:
      out[f'ablation T=2^{log2_t} max {max_res}: {name}'] = (
          hash_field(fn, res), base, 'alternative')
    out[f'ablation dense {size}^3: jax autodiff'] = (
        lambda p, x: tiny_field(p['mlp'], dense_encode_autodiff(x, p['grid'])),
        dense_params, 'alternative')
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--batch_log2', type=int, default=17,
                      help='points per call: 2^batch_log2')
  parser.add_argument('--reps', type=int, default=7,
                      help='timed calls per variant (>= 5 recommended)')
  parser.add_argument('--table_log2', type=int, nargs='+', default=[15, 17, 19])
  parser.add_argument('--max_res', type=int, nargs='+', default=[512, 2048])
  parser.add_argument('--dense_res', type=int, default=128)
  parser.add_argument('--ablation', action='store_true',
                      help='also time the implementation alternatives')
  parser.add_argument('--only_fwd', action='store_true')
  args = parser.parse_args()

  batch = 2**args.batch_log2
  key = jax.random.PRNGKey(0)
  x = jax.random.uniform(jax.random.fold_in(key, 1), (batch, 3))
  target = jax.random.uniform(jax.random.fold_in(key, 2), (batch, 3))
  calls = {}  # (name, mode) -> (jitted fn, args)
  table = variants(args, key)
  for name, (field, params, _) in table.items():
    calls[name, 'fwd'] = (jax.jit(field), (params, x))
    if not args.only_fwd:
      calls[name, 'fwd+bwd'] = (jax.jit(jax.grad(loss_fn(field))),
                                (params, x, target))

  load0 = os.getloadavg()[0]
  t0 = time.perf_counter()
  for fn, fn_args in calls.values():  # compile, then one warm-up call
    jax.block_until_ready(fn(*fn_args))
    jax.block_until_ready(fn(*fn_args))
  compile_s = time.perf_counter() - t0
  times = {k: [] for k in calls}
  for _ in range(args.reps):  # round-robin over the variants
    for k, (fn, fn_args) in calls.items():
      t = time.perf_counter()
      jax.block_until_ready(fn(*fn_args))
      times[k].append(time.perf_counter() - t)
  ns = {k: float(np.median(v)) * 1e9 / batch for k, v in times.items()}

  print(f'jax {jax.__version__} on {jax.devices()[0].platform} '
        f'({os.cpu_count()} CPUs), batch 2^{args.batch_log2}, '
        f'median of {args.reps} round-robin runs; load average '
        f'{load0:.1f} -> {os.getloadavg()[0]:.1f}; compile + warm-up '
        f'{compile_s:.0f} s\n')
  modes = ['fwd'] if args.only_fwd else ['fwd', 'fwd+bwd']
  header = '| variant | config | ' + ' | '.join(
      f'{m} ns/sample | {m} vs MLP' for m in modes) + ' |'
  print(header)
  print('| --- | --- |' + ' ---: | ---: |' * len(modes))
  for name, (_, _, desc) in table.items():
    cells = []
    for m in modes:
      cells.append(f'{ns[name, m]:,.0f}')
      cells.append(f'{ns[name, m] / ns["vanilla MLP", m]:.2f}')
    print(f'| {name} | {desc} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
