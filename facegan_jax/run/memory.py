"""Whether a compiled train step fits the memory its devices have, checked before training.

A batch that fits the dataset but not the machine would otherwise grow until the kernel's OOM
killer (CPU) or an allocator error (GPU) ends the run minutes later; XLA's memory analysis of
the compiled step says what it needs up front.
"""

import jax

from facegan_jax.errors import UsageError

GB = 1e9


def needed_bytes(compiled):
  """Peak bytes per device of a compiled call: its arguments, outputs and temporaries, less
  the outputs that reuse donated arguments."""
  m = compiled.memory_analysis()
  if m is None:
    return None
  return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
          - m.alias_size_in_bytes)


def free_bytes(device):
  """Memory still free for `device`: its allocator's limit less what is in use (GPU, TPU), or
  the host's available memory (CPU devices share it); None when unknown."""
  stats = device.memory_stats() if device.platform != 'cpu' else None
  if stats and 'bytes_limit' in stats:
    return stats['bytes_limit'] - stats.get('bytes_in_use', 0)
  try:
    with open('/proc/meminfo') as f:
      info = dict(line.split(':', 1) for line in f)
    return int(info['MemAvailable'].split()[0]) * 1024
  except (OSError, KeyError, ValueError):
    return None


def check(compiled, config, margin=0.9):
  """Raises UsageError when the step needs more than `margin` of the free memory."""
  per_device = needed_bytes(compiled)
  device = jax.local_devices()[0]
  free = free_bytes(device)
  if per_device is None or free is None:
    return
  # CPU devices are one host's memory; other devices each have their own.
  needed = per_device * (jax.local_device_count() if device.platform == 'cpu' else 1)
  if needed > margin * free:
    where = 'host' if device.platform == 'cpu' else f'{device.platform} device'
    raise UsageError(
        f'the train step needs {needed / GB:.1f} GB of {where} memory at --batch_size='
        f'{config.batch_size} and {config.resolution}px, and {free / GB:.1f} GB are free; lower '
        '--batch_size (or --resolution, --conv_dim)')
