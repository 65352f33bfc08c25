"""The training input: the one owner of epoch orders, batches and steps per epoch.

At GAN dataset sizes (tens of thousands of small images) the uint8 dataset fits in device
memory, so it is placed once, sharded over the `data` mesh axis, and every step draws its batch
on device: no host work, no transfers, no input stall. Epoch e visits the examples in the order
of a permutation that is a pure function of (seed, e), computed once per epoch (a 32k-element
shuffle costs ~15 ms on CPU, a quarter of a step), so the data position is the step itself and a
resumed run replays the same batches.

A dataset too large for the devices (more than half their memory) takes the host path instead:
`host_batches` reads the same batches with grain from a memory-mapped array on the host, each
process its own rows, and places them on the mesh a few steps ahead.

`Input` is what the loop asks for each compiled call's input (step.make_train_fn).
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from facegan_jax.errors import UsageError
from facegan_jax.mesh import DATA_AXIS, replicated


@functools.partial(jax.jit, static_argnums=2)
def epoch_order(key, epoch, num_examples):
  """The order in which epoch `epoch` visits the examples: a permutation of (key, epoch)."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), num_examples)


def steps_per_epoch(num_examples, batch_size):
  """Epochs drop their last partial batch, so step s belongs to epoch s // steps_per_epoch."""
  return num_examples // batch_size


def images_per_step(config):
  """Real images a step reads: --d_steps batches of --batch_size."""
  return config.batch_size * config.d_steps


def batch_indices(order, step, batch_size, d_steps=1, num_devices=1):
  """Global example indices of the batches at `step`, given its epoch's order.

  A step reads `d_steps` consecutive batches (--d_steps: one per D update). Their indices are
  laid out device-major, so that each of `num_devices` devices' contiguous slice holds its rows
  of each batch in turn, and every batch is split the same way whatever the number of steps.
  """
  size = batch_size * d_steps
  position = step % steps_per_epoch(order.shape[0], size)
  indices = jax.lax.dynamic_slice(order, (position * size,), (size,))
  return device_major(indices, d_steps, num_devices)


def device_major(indices, d_steps, num_devices):
  """The d_steps batches of `indices` (one after another) as each device's rows of each."""
  if d_steps == 1:
    return indices
  return indices.reshape(d_steps, num_devices, -1).transpose(1, 0, 2).reshape(-1)


def shard_dataset(images, mesh):
  """Places uint8 images (N, H, W, C), or any array of N rows (their class codes), on the
  mesh, split over the data axis (zero-padded).

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
  """Inside shard_map: this device's rows of the global batch `indices` of the images
  `shard`, in [-1, 1]."""
  return to_float(local_rows(shard, indices))


def local_rows(shard, indices):
  """Inside shard_map: this device's rows of the global batch `indices`, from this device's
  `shard` of an array placed by shard_dataset.

  Each device gathers the rows it holds (zeros for the others); a reduce-scatter then hands
  every device its contiguous slice of the global batch. Exactly one device contributes each
  row, so the sum is exact and the batch does not depend on the number of devices.
  """
  shard_size = shard.shape[0]
  local = indices - jax.lax.axis_index(DATA_AXIS) * shard_size
  mine = (local >= 0) & (local < shard_size)
  mine = mine.reshape(mine.shape + (1,) * (shard.ndim - 1))
  rows = jnp.where(mine, shard[jnp.clip(local, 0, shard_size - 1)], 0)
  return jax.lax.psum_scatter(rows, DATA_AXIS, scatter_dimension=0, tiled=True)


def local_examples(dataset, indices):
  """Inside shard_map: (this device's images of the global batch `indices` in [-1, 1], their
  class codes or None) from the dataset on the devices: its images, or (images, class codes)
  under --condition (Input)."""
  if isinstance(dataset, tuple):
    return local_batch(dataset[0], indices), local_rows(dataset[1], indices)
  return local_batch(dataset, indices), None


def host_examples(batch):
  """(images in [-1, 1], class codes or None) of a batch read on the host (host_batches)."""
  if isinstance(batch, tuple):
    return to_float(batch[0]), batch[1]
  return to_float(batch), None


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


def host_batches(images, order_of_epoch, batch_size, mesh, start_step, num_steps, prefetch=2,
                 d_steps=1, labels=None):
  """An iterator of global batches from `images` on the host, placed on the mesh ahead of use
  (with `labels`, the class codes of the images: batches of (images, codes)).

  The input path for datasets too large to keep on the devices, through grain: the same
  batches as the on-device path (the same epoch order, `order_of_epoch(epoch)` on the host,
  and batch_indices), so results do not depend on the path. `images` may be a memory-mapped
  .npy. Each process reads only its own rows of every global batch (per-process sharding);
  grain's threads read `prefetch` batches ahead and a prefetch thread places them on the mesh
  while the devices compute.
  """
  import grain  # noqa: PLC0415  (1.3 s to import; only this path needs it)

  size = batch_size * d_steps
  per_epoch = steps_per_epoch(len(images), size)
  num_processes, process = jax.process_count(), jax.process_index()
  local_size = size // num_processes
  sharding = NamedSharding(mesh, P(DATA_AXIS))

  def read(step):  # batch_indices, on the host, for this process's part of the batches
    start = step % per_epoch * size
    indices = device_major(order_of_epoch(step // per_epoch)[start:start + size], d_steps,
                           mesh.devices.size)
    mine = indices[process * local_size:(process + 1) * local_size]
    if labels is None:
      return np.asarray(images[mine])
    return np.asarray(images[mine]), np.asarray(labels[mine])

  def place(rows):
    return jax.tree.map(lambda rows: jax.make_array_from_process_local_data(
        sharding, rows, (size,) + rows.shape[1:]), rows)

  dataset = grain.MapDataset.range(start_step, num_steps).map(read).to_iter_dataset(
      grain.ReadOptions(num_threads=prefetch, prefetch_buffer_size=prefetch))
  dataset = grain.experimental.ThreadPrefetchIterDataset(
      dataset.map(place), prefetch_buffer_size=prefetch)
  return iter(dataset)


class Input:
  """A run's training input from `start_step` on: each compiled call's input arguments.

  The dataset goes on the devices (batches drawn there, several steps per call possible) or,
  when it does not fit (`config.input`), stays on the host and is read a few batches ahead.
  """

  def __init__(self, config, images, mesh, key, start_step, labels=None):
    """`key` is the data order's key (state.data_key); `labels` the images' class codes
    under --condition."""
    self.steps_per_epoch = steps_per_epoch(len(images), images_per_step(config))
    self.on_host = config.input == 'host' or (
        config.input == 'auto' and not fits_on_devices(images, mesh))
    k = config.steps_per_call
    if k > 1 and self.on_host:
      raise UsageError(f'--steps_per_call={k} draws batches on the devices, but this dataset '
                       'is read from the host (--input); use --steps_per_call=1')
    # A call draws from its epoch's order and the next's: at most an epoch per call.
    self.max_steps_per_call = min(k, self.steps_per_epoch)
    self._replicated = replicated(mesh)
    self.order = functools.lru_cache(maxsize=3)(
        lambda epoch: np.asarray(epoch_order(key, epoch, len(images))))
    if self.on_host:
      rows = NamedSharding(mesh, P(DATA_AXIS))
      self._batch_spec = jax.ShapeDtypeStruct((images_per_step(config),) + images.shape[1:],
                                              np.uint8, sharding=rows)
      if labels is not None:
        self._batch_spec = (self._batch_spec, jax.ShapeDtypeStruct(
            (images_per_step(config),), labels.dtype, sharding=rows))
      self._batches = host_batches(images, self.order, config.batch_size, mesh, start_step,
                                   config.num_steps, d_steps=config.d_steps, labels=labels)
    else:
      self._dataset = shard_dataset(images, mesh)
      if labels is not None:
        self._dataset = (self._dataset, shard_dataset(labels, mesh))
      self._epoch, self._orders = None, None

  def spec(self, step):
    """What __call__(step) returns, or its shape (host input: drawing it would consume it)."""
    return self._batch_spec if self.on_host else self(step)

  def __call__(self, step):
    """The input of the call that starts at `step` (at most max_steps_per_call long): the next
    host batch, or the dataset on the devices and the orders of this epoch and the next."""
    if self.on_host:
      return next(self._batches)
    epoch = step // self.steps_per_epoch
    if epoch != self._epoch:
      self._epoch = epoch
      self._orders = jax.device_put(np.stack([self.order(epoch), self.order(epoch + 1)]),
                                    self._replicated)
    return self._dataset, self._orders
