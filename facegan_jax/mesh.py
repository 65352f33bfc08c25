"""The device mesh: one `data` axis over which batches are split and gradients averaged."""

import jax

from facegan_jax.errors import UsageError

DATA_AXIS = 'data'


def make_mesh(num_devices=0, devices=None, **kwargs):
  """A 1-D mesh over the first `num_devices` of `devices` (default: all; 0 means all);
  `kwargs` go to jax.make_mesh (e.g. axis_types)."""
  devices = jax.devices() if devices is None else devices
  if num_devices > len(devices):
    raise UsageError(f'--num_devices={num_devices} but only {len(devices)} '
                     f'{jax.default_backend()} devices are available')
  devices = devices[:num_devices or len(devices)]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices, **kwargs)


def replicated(mesh):
  """The sharding of a value every device holds whole (the train state)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
