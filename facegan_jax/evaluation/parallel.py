"""Running a feature network over many images, data-parallel over every local device."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from facegan_jax.mesh import DATA_AXIS, make_mesh


def map_batches(fn, images, batch_per_device, prepare=None):
  """fn over `images` in batches split on a `data` mesh axis of the local devices.

  `fn` maps a sharded batch to an array or a tuple of arrays, one row per image; each image's
  rows do not depend on the number of devices (the last batch is padded with zeros and the
  padding dropped). `prepare`, if given, turns each host batch into fn's input first (e.g. a
  resize on the host). Returns the rows of all images as NumPy arrays (a tuple when fn
  returns one).
  """
  devices = jax.local_device_count()
  # Auto sharding: XLA partitions fn over the batch as it sees fit (reshapes included).
  mesh = make_mesh(devices=jax.local_devices(), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = NamedSharding(mesh, P(DATA_AXIS))
  batch = devices * min(batch_per_device, -(-len(images) // devices))
  out = []
  for start in range(0, len(images), batch):
    chunk = np.asarray(images[start:start + batch])
    pad = batch - len(chunk)
    chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
    x = jax.device_put(chunk if prepare is None else np.asarray(prepare(chunk)), sharded)
    rows = fn(x)
    out.append(tuple(np.asarray(r)[:batch - pad] for r in
                     (rows if isinstance(rows, tuple) else (rows,))))
  joined = tuple(np.concatenate(parts) for parts in zip(*out))
  return joined if isinstance(rows, tuple) else joined[0]
