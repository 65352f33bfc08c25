"""The input path: the whole dataset lives on the devices and batches are drawn there.

At GAN dataset sizes (tens of thousands of small images) the uint8 dataset fits in device
memory, so it is placed once, sharded over the `data` mesh axis, and every step draws its batch
on device: no host work, no transfers, no input stall. Epoch e visits the examples in the order
of a permutation that is a pure function of (seed, e), computed once per epoch (a 32k-element
shuffle costs ~15 ms on CPU, a quarter of a step), so the data position is the step itself and a
resumed run replays the same batches.

A dataset too large for the devices (more than half their memory) takes the host path instead:
`host_batches` reads the same batches with grain from a memory-mapped array on the host, each
process its own rows, and places them on the mesh a few steps ahead.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


@functools.partial(jax.jit, static_argnums=2)
def epoch_order(key, epoch, num_examples):
  """The order in which epoch `epoch` visits the examples: a permutation of (key, epoch)."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def batch_indices(order, step, batch_size):
  """Global example indices of the batch at `step`, given its epoch's order.

  Epochs drop their last partial batch, so step s belongs to epoch s // steps_per_epoch.
  """
  position = step % (order.shape[0] // batch_size)
  return jax.lax.dynamic_slice(order, (position * batch_size,), (batch_size,))


def load_training_images(config):
  """The training images; in a multi-process run process 0 prepares them first (once, into
  the data dir) while the others wait, then they read the prepared files."""
  first = jax.process_index() == 0
  if jax.process_count() > 1 and not first:
    multihost_utils.sync_global_devices('facegan_jax: data prepared')
  from facegan_jax import data  # noqa: PLC0415  (TFDS: only the training run needs it)
  images = data.load_images(config, 'train')
  if jax.process_count() > 1 and first:
    multihost_utils.sync_global_devices('facegan_jax: data prepared')
  return images


def shard_dataset(images, mesh):
  """Places uint8 images (N, H, W, C) on the mesh, split over the data axis (zero-padded).

  Each process reads only the rows of its own devices (from a memory-mapped array, only
  those pages are ever loaded).
  """
  num_shards = mesh.shape[DATA_AXIS]
  shape = (len(images) + -len(images) % num_shards,) + images.shape[1:]

  def rows(index):
    start, stop, _ = index[0].indices(shape[0])
    out = np.zeros((stop - start,) + shape[1:], images.dtype)
    out[:max(0, min(stop, len(images)) - start)] = images[start:min(stop, len(images))]
    return out
  return jax.make_array_from_callback(shape, NamedSharding(mesh, P(DATA_AXIS)), rows)


def local_batch(shard, indices):
  """Inside shard_map: this device's rows of the global batch `indices`, in [-1, 1].

  Each device gathers the rows it holds (zeros for the others); a reduce-scatter then hands
  every device its contiguous slice of the global batch. Exactly one device contributes each
  row, so the sum is exact and the batch does not depend on the number of devices.
  """
  shard_size = shard.shape[0]
  local = indices - jax.lax.axis_index(DATA_AXIS) * shard_size
  mine = (local >= 0) & (local < shard_size)
  rows = jnp.where(mine[:, None, None, None], shard[jnp.clip(local, 0, shard_size - 1)], 0)
  rows = jax.lax.psum_scatter(rows, DATA_AXIS, scatter_dimension=0, tiled=True)
  return to_float(rows)


def to_uint8(images):
  """[-1, 1] floats -> uint8, the inverse of local_batch's scaling."""
  return np.asarray(jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255)).astype(np.uint8)


def to_float(batch):
  """uint8 images -> float32 in [-1, 1], as local_batch scales them."""
  return batch.astype(jnp.float32) / 127.5 - 1.0


def fits_on_devices(images, mesh, fraction=0.5):
  """Whether each device's shard of `images` takes at most `fraction` of its memory.

  Accelerators report their memory; CPU devices share the host's available memory. In a
  multi-process run every process follows process 0's answer (they must run the same program).
  """
  device = next(d for d in mesh.devices.flat if d.process_index == jax.process_index())
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    limit = stats['bytes_limit']
  else:
    limit = os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    limit //= mesh.devices.size  # host memory is shared by all CPU devices
  fits = images.nbytes / mesh.devices.size <= fraction * limit
  if jax.process_count() > 1:
    fits = bool(multihost_utils.broadcast_one_to_all(np.array(fits)))
  return fits


def host_batches(images, order_of_epoch, batch_size, mesh, start_step, num_steps, prefetch=2):
  """An iterator of global batches from `images` on the host, placed on the mesh ahead of use.

  The input path for datasets too large to keep on the devices, through grain: the same
  batches as the on-device path (the same epoch order and batch_indices), so results do not
  depend on the path. `images` may be a memory-mapped .npy. Each process reads only its own
  rows of every global batch (per-process sharding); grain's threads read `prefetch` batches
  ahead and a prefetch thread places them on the mesh while the devices compute.
  """
  import grain  # noqa: PLC0415  (1.3 s to import; only this path needs it)

  steps_per_epoch = len(images) // batch_size
  num_processes, process = jax.process_count(), jax.process_index()
  local_size = batch_size // num_processes
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  orders = functools.lru_cache(maxsize=2)(lambda epoch: np.asarray(order_of_epoch(epoch)))

  def read(step):  # batch_indices, on the host, for this process's part of the batch
    start = step % steps_per_epoch * batch_size + process * local_size
    return np.asarray(images[orders(step // steps_per_epoch)[start:start + local_size]])

  def place(rows):
    return jax.make_array_from_process_local_data(sharding, rows, (batch_size,) + rows.shape[1:])

  dataset = grain.MapDataset.range(start_step, num_steps).map(read).to_iter_dataset(
      grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch))
  dataset = grain.experimental.ThreadPrefetchIterDataset(
      dataset.map(place), prefetch_buffer_size=prefetch)
  return iter(dataset)
