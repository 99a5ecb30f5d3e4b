"""Where the training step's time goes, and what-if variants of it.

  python benchmarks/profile_step.py --config keras_example.py
  python benchmarks/profile_step.py --config keras_example.py \\
      --config.train.micro_batches=1 --trace_dir /tmp/trace
  python benchmarks/profile_step.py --config keras_example.py \\
      --what_if sine_encoding,concat_encoding,batch_shaped --rounds 4

Same synthetic data as benchmarks/step_speed.py. Three reports:

1. Components: each is its own jitted function that, like the train step,
   runs a ``lax.scan`` over the step's micro-batches (the config's
   ``train.micro_batches``), so every row is the cost of one whole step:

     sample rays          draw rays and target colours
     points + encoding    stratified t, points, positional encoding
     field forward        the encoding plus the MLP
     loss forward         sampling, field, compositing: ``model.loss``
     loss + grad          ``value_and_grad(model.loss)``
     compositing fwd+bwd  ``volumetric_rendering`` and its gradient alone
     optimizer update     ``tx.update`` + ``apply_updates``
     train step           the real jitted step

   timed in rounds cycling through all of them (medians, so the machine's
   load drifts over all alike), with XLA's FLOP count (cost analysis; a
   scan's body counts once, so it is scaled by the micro-batches) and the
   derived rows: MLP forward = field forward - encoding, backward = loss +
   grad - loss forward, and so on. Each component sums its outputs so
   nothing is dead code; that sum may fuse into the producer.
2. Ops: a ``jax.profiler`` trace of the train step, its XLA ops grouped by
   kind (matmul, sine, elementwise, copies, ...) in CPU-thread seconds.
3. ``--what_if``: the train step against variants, timed interleaved:
   fast_math (XLA CPU fast math), xla:<flag>=<value> (any XLA compiler
   option), remat / remat_dots (``jax.checkpoint`` of
   the loss), bf16_precision (``jax.default_matmul_precision``), and the
   model as it was before three changes, same parameters: sine_encoding
   (XLA's sin for the positional encoding instead of the octave range
   reduction), concat_encoding (the encoding concatenated into one array
   that each layer reading it multiplies whole, instead of a matmul per
   part) and batch_shaped (the trunk on [rays, samples, features] instead
   of a flat point matrix).
"""

import contextlib
import os
import statistics
import sys
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))
import step_speed  # pylint: disable=g-import-not-at-top
from nerf_jax import cli  # pylint: disable=g-import-not-at-top

_CONFIG = config_flags.DEFINE_config_file('config', None, 'config file')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'timing rounds')
_TRACE_DIR = flags.DEFINE_string(
    'trace_dir', '', 'where the jax.profiler trace of the train step goes '
    '(default: a temporary folder); TensorBoard / xprof can open it')
_TRACE_STEPS = flags.DEFINE_integer('trace_steps', 2, 'train steps traced')
_WHAT_IF = flags.DEFINE_list(
    'what_if', [], 'variants to time against the train step (skips the '
    'component and op reports); any of: ' + ', '.join(
        ('fast_math', 'remat', 'remat_dots', 'bf16_precision',
         'sine_encoding', 'concat_encoding', 'batch_shaped')) +
    ', xla:<flag>=<value> '
    "(an XLA compiler option; '|' separates list items), or a '+' of them")


def _cost(jitted, *args) -> tuple:
  """(GFLOP, GB accessed) from XLA's cost analysis of the compiled call."""
  try:
    cost = jitted.lower(*args).compile().cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return float('nan'), float('nan')
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  cost = cost or {}
  return (cost.get('flops', float('nan')) / 1e9,
          cost.get('bytes accessed', float('nan')) / 1e9)


def _time(fn, args) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t0


def _loadavg() -> str:
  with open('/proc/loadavg') as f:
    return f.read().strip()


# ---------------------------------------------------------------------------
# 1. Components.


def component_times(config, rounds: int) -> tuple:
  """{name: (median s per step, GFLOP per step, GB per step)}, and the
  train step's (fn, args) for the op trace."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from nerf_jax.fields import encoding  # pylint: disable=g-import-not-at-top
  from nerf_jax.render import compositing, sampling  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import train_step  # pylint: disable=g-import-not-at-top
  from nerf_jax.datasets import batch as batch_lib  # pylint: disable=g-import-not-at-top
  k = int(config.train.get('micro_batches', 1))
  batch = int(config.train.batch_rays)
  m = batch // k
  model, tx, state, data = step_speed.synthetic_setup(config)
  near, far = step_speed.NEAR, step_speed.FAR
  field, opts = model.field, model.options
  key = jax.random.PRNGKey(1)
  params, mstate, step_no = state.params, state.model_state, state.step
  def sample_batch(key, count):
    drawn = batch_lib.draw_pixels(key, data, count)
    cast = batch_lib.cast(data.cameras, drawn, near, far)
    return cast.rays, cast.rgb

  rays, target = jax.jit(lambda key: sample_batch(key, batch))(key)
  micro = train_step.split_micro_batches((rays, target), k)
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(k))

  def points_of(rays, key):
    t = sampling.stratified_samples(key, rays.near, rays.far, opts.num_coarse)
    return sampling.points_along_rays(rays.origins, rays.directions, t), t

  def field_fwd(p, rays, key):
    points, _ = points_of(rays, key)
    return field.apply({'params': p}, points, rays.viewdirs[..., None, :])

  # Per-micro-batch field outputs, the compositing component's inputs.
  dens_rgb = jax.jit(lambda micro_rays, keys: jax.lax.map(
      lambda x: field_fwd(params['coarse'], *x)[::-1],
      (micro_rays, keys)))(micro[0], keys)

  def scanned(fn):
    """fn(rays_i, target_i, key_i, extra_i) over the micro-batches."""
    def run(micro, keys, extra):
      def body(total, x):
        out = fn(*x)
        leaves = [jnp.sum(v) for v in jax.tree_util.tree_leaves(out)
                  if jnp.issubdtype(v.dtype, jnp.floating)]
        return total + sum(leaves), None
      return jax.lax.scan(body, jnp.zeros(()), (*micro, keys, extra))[0]
    return jax.jit(run)

  def composite(rays, target, key, dr):
    del key
    density, rgb = dr
    points_t = sampling.stratified_samples(None, rays.near, rays.far,
                                           opts.num_coarse)
    t_edges = sampling.edges_from_samples(points_t, rays.near, rays.far)

    def loss(density, rgb):
      out = compositing.volumetric_rendering(density, rgb, t_edges,
                                           rays.directions)
      return jnp.mean((out['rgb'] - target) ** 2)
    return jax.value_and_grad(loss, (0, 1))(density, rgb)

  grad_fn = jax.value_and_grad(model.loss, has_aux=True)
  first = jax.tree_util.tree_map(lambda x: x[0], micro)
  grads = jax.jit(grad_fn)(params, mstate, batch_lib.RayBatch.of_rays(*first),
                           key, step_no)[1]

  def opt_update(grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    return jax.tree_util.tree_map(jnp.add, params, updates), opt_state

  step = step_speed.make_step(config, model, tx)
  step_state = [jax.tree_util.tree_map(jnp.copy, state)]  # it is donated

  def run_step(data, key):
    step_state[0], metrics = step(step_state[0], data, key)
    return metrics

  none = jnp.zeros((k,))
  mb = (micro, keys, none)
  components = {
      'sample rays': (scanned(lambda r, t, k_, e: sample_batch(k_, m)), mb),
      'points + encoding': (scanned(lambda r, t, k_, e: encoding.
                                    positional_encoding(points_of(r, k_)[0],
                                                        field.pos_freqs)), mb),
      'field forward': (scanned(lambda r, t, k_, e: field_fwd(
          params['coarse'], r, k_)), mb),
      'loss forward': (scanned(lambda r, t, k_, e: model.loss(
          params, mstate, batch_lib.RayBatch.of_rays(r, t), k_, step_no)),
                       mb),
      'loss + grad': (scanned(lambda r, t, k_, e: grad_fn(
          params, mstate, batch_lib.RayBatch.of_rays(r, t), k_, step_no)),
                      mb),
      'compositing fwd+bwd': (scanned(composite), (micro, keys, dens_rgb)),
      'optimizer update': (jax.jit(opt_update),
                           (grads, state.opt_state, params)),
  }
  costs = {name: _cost(fn, *args) for name, (fn, args) in components.items()}
  costs['train step'] = _cost(step, state, data, key)
  components['train step'] = (run_step, (data, key))
  times = {name: [] for name in components}
  for name, (fn, args) in components.items():  # compile + warm up
    _time(fn, args)
  for _ in range(rounds):
    for name, (fn, args) in components.items():
      times[name].append(_time(fn, args))
  result = {}
  for name, ts in times.items():
    flops, gbytes = costs[name]
    scale = 1 if name == 'optimizer update' else k  # a scan body counts once
    result[name] = (statistics.median(ts), flops * scale, gbytes * scale)
  hlo = step.lower(state, data, key).compile().as_text()
  return result, (lambda: run_step(data, key)), hlo


def print_components(name: str, config, result: dict) -> None:
  k = int(config.train.get('micro_batches', 1))
  batch = int(config.train.batch_rays)
  pts = batch * step_speed.samples_per_ray(config)
  print(f'{name}: {batch} rays ({pts:,} points) per step in {k} '
        f'micro-batch(es) of {batch // k}; every row is one whole step')
  print(f'{"component":<22} {"s/step":>8} {"GFLOP":>8} {"GFLOP/s":>8} '
        f'{"GB moved":>9}')
  for comp, (sec, flops, gbytes) in result.items():
    print(f'{comp:<22} {sec:8.3f} {flops:8.1f} {flops / sec:8.1f} '
          f'{gbytes:9.2f}')
  t = {comp: v[0] for comp, v in result.items()}
  derived = [
      ('sample rays', t['sample rays']),
      ('points + encoding', t['points + encoding']),
      ('MLP forward', t['field forward'] - t['points + encoding']),
      ('compositing etc. forward', t['loss forward'] - t['field forward']),
      ('backward (all)', t['loss + grad'] - t['loss forward']),
      ('optimizer update', t['optimizer update']),
  ]
  derived.append(('rest (step - the above)',
                  t['train step'] - sum(v for _, v in derived)))
  print(f'\n{"derived":<26} {"s/step":>8} {"share":>7}')
  for comp, value in derived:
    print(f'{comp:<26} {value:8.3f} {100 * value / t["train step"]:6.1f}%')
  print(f'{"train step (measured)":<26} {t["train step"]:8.3f}')


# ---------------------------------------------------------------------------
# 2. Ops of the train step, from a jax.profiler trace.


def _categories(hlo_text: str) -> dict:
  """Instruction name -> kind, from a compiled module's HLO text."""
  import re  # pylint: disable=g-import-not-at-top
  bodies, current = {}, None
  for line in hlo_text.splitlines():
    head = re.match(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$', line)
    if head:
      current = head.group(1)
      bodies[current] = []
    elif current is not None:
      bodies[current].append(line)

  def kind(name: str, op: str, called: str, line: str) -> str:
    text = ' '.join(bodies.get(called, [])) if called else line
    if op in ('dot', 'convolution') or ' dot(' in text:
      return 'matmul'
    if 'sine(' in text or 'cosine(' in text:
      return 'sine (encoding)'
    if op in ('reduce', 'reduce-window') or 'reduce' in text:
      return 'reductions'
    if op in ('copy', 'transpose') or name.startswith(('copy', 'transpose')):
      return 'copies / transposes'
    if op == 'concatenate' or name.startswith('concatenate'):
      return 'concatenate'
    if op in ('while', 'call', 'conditional'):
      return 'control'
    return 'other elementwise'

  out = {}
  for lines in bodies.values():
    for line in lines:
      m = re.match(r'^\s*(?:ROOT )?%([\w.\-]+) = .*? ([a-z\-]+)\(', line)
      if m:
        called = re.search(r'calls=%([\w.\-]+)', line)
        out[m.group(1)] = kind(m.group(1), m.group(2),
                               called.group(1) if called else '', line)
  return out


def op_breakdown(run, hlo_text: str, steps: int, trace_dir: str) -> tuple:
  """Traces ``steps`` calls of ``run()``.

  Returns:
    (CPU-thread seconds per call by kind, the 10 costliest ops).
  """
  import collections  # pylint: disable=g-import-not-at-top
  import glob  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src.lib import _profile_data  # pylint: disable=g-import-not-at-top
  with jax.profiler.trace(trace_dir):
    for _ in range(steps):
      jax.block_until_ready(run())
  path = sorted(glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                          recursive=True), key=os.path.getmtime)[-1]
  kinds = _categories(hlo_text)
  by_kind, by_op = collections.Counter(), collections.Counter()
  for plane in _profile_data.ProfileData.from_file(path).planes:
    for line in plane.lines:
      for event in line.events:
        if kinds.get(event.name, 'control') != 'control':
          by_kind[kinds[event.name]] += event.duration_ns / 1e9 / steps
          by_op[event.name] += event.duration_ns / 1e9 / steps
  return by_kind, by_op.most_common(10)


# ---------------------------------------------------------------------------
# 3. What-if variants.


def sine_encoding_parts(x, num_freqs: int, include_input: bool = True):
  """The encoding as nerf_jax computed it before the octave range reduction:
  XLA's ``sin`` of 2^k x and of 2^k x + pi/2 (same layout and parts)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  parts = [x] if include_input else []
  if num_freqs > 0:
    scales = 2.0 ** jnp.arange(num_freqs, dtype=x.dtype)
    xb = (x[..., None, :] * scales[:, None]).reshape(
        x.shape[:-1] + (num_freqs * x.shape[-1],))
    parts += [jnp.sin(xb), jnp.sin(xb + 0.5 * jnp.pi)]
  return parts


def _concatenated(parts_fn):
  """An encoding-parts function whose parts are concatenated into one
  array (every layer that reads the encoding multiplies it whole)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def parts(x, num_freqs, include_input=True):
    return [jnp.concatenate(parts_fn(x, num_freqs, include_input), -1)]
  return parts


def _batch_shaped_field(field):
  """``field`` whose trunk keeps the [rays, samples, features] batch shape
  (as before the flat trunk), same parameters."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from nerf_jax.fields import networks  # pylint: disable=g-import-not-at-top

  class BatchShapedMLP(networks.NerfMLP):

    @nn.compact
    def __call__(self, points, viewdirs=None):
      if self.use_viewdirs:
        raise ValueError('batch_shaped prototypes the viewdir-free field only')
      inputs = networks.positional_encoding_parts(points, self.pos_freqs)
      x = []
      for i in range(self.depth):
        if i == 0 or i in self.skips:
          x = x + inputs
        x = [nn.relu(networks.ConcatDense(self.width, name=f'trunk_{i}')(x))]
      raw = nn.Dense(1, name='density')(x[0])[..., 0]
      density = jax.nn.softplus(raw + self.density_bias)
      return jax.nn.sigmoid(nn.Dense(3, name='rgb')(x[0])), density

  return BatchShapedMLP(**{f: getattr(field, f) for f in (
      'depth', 'width', 'skips', 'pos_freqs', 'dir_freqs', 'use_viewdirs',
      'density_bias')})


@contextlib.contextmanager
def _patched(module, name, value):
  old = getattr(module, name)
  setattr(module, name, value)
  try:
    yield
  finally:
    setattr(module, name, old)


def what_if(config, names: list, rounds: int) -> None:
  """Times the train step and its variants interleaved; prints ratios."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from nerf_jax.train import train_step  # pylint: disable=g-import-not-at-top
  from nerf_jax.fields import encoding  # pylint: disable=g-import-not-at-top
  runs = {}
  for name in ['baseline'] + list(names):
    parts = set(name.split('+'))
    model, tx, state, data = step_speed.synthetic_setup(config)
    options, precision = {}, None
    ctx = contextlib.ExitStack()
    for part in parts:
      if part == 'fast_math':
        options['xla_cpu_enable_fast_math'] = True
      elif part in ('remat', 'remat_dots'):
        policy = (jax.checkpoint_policies.dots_with_no_batch_dims_saveable
                  if part == 'remat_dots' else None)
        model.loss = jax.checkpoint(model.loss, policy=policy)
      elif part.startswith('xla:'):  # xla:flag=value, '|' for ',' in lists
        flag, _, value = part[4:].partition('=')
        options[flag] = {'true': True, 'false': False}.get(
            value.lower(), value.replace('|', ','))
      elif part == 'bf16_precision':
        precision = 'bfloat16'
      elif part == 'sine_encoding':
        encode = sine_encoding_parts
        if 'concat_encoding' in parts:
          encode = _concatenated(encode)
        ctx.enter_context(_patched(encoding, 'positional_encoding_parts',
                                   encode))
      elif part == 'concat_encoding':
        if 'sine_encoding' not in parts:
          ctx.enter_context(_patched(
              encoding, 'positional_encoding_parts',
              _concatenated(encoding.positional_encoding_parts)))
      elif part == 'batch_shaped':
        model.field = _batch_shaped_field(model.field)
      elif part != 'baseline':
        raise app.UsageError(f'unknown --what_if variant {part!r}')
    fn = train_step.make_train_step(
        model, tx, config.train.batch_rays, step_speed.NEAR, step_speed.FAR,
        micro_batches=config.train.get('micro_batches', 1))
    key = jax.random.PRNGKey(1)
    with ctx, (jax.default_matmul_precision(precision) if precision
               else contextlib.nullcontext()):
      compiled = jax.jit(fn, donate_argnums=(0,)).lower(
          state, data, key).compile(compiler_options=options or None)
    state, metrics = compiled(jax.tree_util.tree_map(jnp.copy, state), data,
                              key)
    jax.block_until_ready(metrics)
    runs[name] = dict(fn=compiled, state=state, data=data, key=key, times=[])

  for _ in range(rounds):
    for run in runs.values():
      t0 = time.perf_counter()
      run['state'], metrics = run['fn'](run['state'], run['data'], run['key'])
      jax.block_until_ready(metrics)
      run['times'].append(time.perf_counter() - t0)
  base = np.asarray(runs['baseline']['times'])
  print(f'{"variant":<40} {"s/step":>8} {"ratio":>7} {"per-round":>9}')
  for name, run in runs.items():
    t = np.asarray(run['times'])
    print(f'{name:<40} {np.median(t):8.3f} '
          f'{np.median(t) / np.median(base):7.3f} '
          f'{np.median(t / base):9.3f}')
  print(f'(median of {rounds} interleaved rounds; micro_batches='
        f'{config.train.get("micro_batches", 1)})')


def main(_):
  config = _CONFIG.value
  name = cli.config_name(sys.argv)
  print('loadavg before:', _loadavg())
  if _WHAT_IF.value:
    what_if(config, _WHAT_IF.value, _ROUNDS.value)
  else:
    result, run_step, hlo = component_times(config, _ROUNDS.value)
    print_components(name, config, result)
    trace_dir = _TRACE_DIR.value or tempfile.mkdtemp(prefix='profile_step_')
    by_kind, top = op_breakdown(run_step, hlo, _TRACE_STEPS.value, trace_dir)
    total = sum(by_kind.values())
    print(f'\nops of the train step (jax.profiler trace in {trace_dir}), '
          f'CPU-thread s per step over all threads:')
    for kind, value in by_kind.most_common():
      print(f'{kind:<26} {value:8.3f} {100 * value / total:6.1f}%')
    print(f'{"total":<26} {total:8.3f}')
    print('costliest ops:', ', '.join(f'{n} {v:.3f} s' for n, v in top))
    print(f'peak RSS {step_speed.peak_rss_gb():.2f} GB (whole process)')
  print('loadavg after:', _loadavg())


if __name__ == '__main__':
  sys.argv = cli.resolve_config_arg(sys.argv)
  app.run(main)
