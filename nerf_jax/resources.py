"""How much memory there is, to refuse work that cannot fit with one line
instead of being killed by the operating system's out-of-memory killer
(which ends a process with no message at all).

An accelerator reports its own limit (``memory_stats``); on the CPU the
limit is the host's available memory (Linux's MemAvailable).
"""

from __future__ import annotations

from typing import Optional

from nerf_jax import errors


def available_bytes(device=None) -> Optional[int]:
  """Bytes that can still be allocated on ``device`` (None: unknown)."""
  stats = None
  if device is not None:
    try:
      stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except
      stats = None
  if stats and 'bytes_limit' in stats:
    return int(stats['bytes_limit']) - int(stats.get('bytes_in_use', 0))
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except (OSError, ValueError, IndexError):
    pass
  return None


def gib(n: float) -> str:
  return f'{n / 2 ** 30:,.1f} GiB' if n >= 2 ** 28 else f'{n / 2 ** 20:,.0f} MiB'


def check_fits(need: int, what: str, hint: str, device=None) -> None:
  """Raises ``errors.UserError`` when ``need`` bytes exceed what is
  available (nothing when that is unknown)."""
  have = available_bytes(device)
  if have is not None and need > have:
    raise errors.UserError(f'{what} needs about {gib(need)} of memory but '
                           f'{gib(have)} is available; {hint}')


def compiled_bytes(compiled) -> Optional[int]:
  """Memory a compiled XLA program allocates beyond its inputs (its
  temporaries and outputs that do not reuse donated inputs)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  return int(m.temp_size_in_bytes + max(
      0, m.output_size_in_bytes - m.alias_size_in_bytes))
