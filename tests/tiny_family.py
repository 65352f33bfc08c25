"""A test-only model family, registered the way a new one is (tests/test_families.py): this
module plus one line in models.FAMILIES. One dense layer each way, with BatchNorm in G."""

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax.errors import UsageError
from facegan_jax.models.batchnorm import BatchNorm


class Generator(nnx.Module):

  def __init__(self, *, resolution, channels, z_dim, dtype, rngs):
    self.shape = (resolution, resolution, channels)
    self.project = nnx.Linear(z_dim, resolution * resolution * channels, dtype=dtype,
                              rngs=rngs)
    self.bn = BatchNorm(channels, rngs=rngs)

  def __call__(self, z, *, train):
    x = self.project(z).reshape((-1,) + self.shape)
    return jnp.tanh(self.bn(x, train=train)).astype(jnp.float32)


class Discriminator(nnx.Module):

  def __init__(self, *, resolution, channels, dtype, rngs):
    self.logit = nnx.Linear(resolution * resolution * channels, 1, dtype=dtype, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x, *, train, dropout_keys=None):
    del train, dropout_keys
    x = x.astype(self.dtype).reshape(x.shape[0], -1)
    return jax.nn.leaky_relu(self.logit(x), 0.2)[:, 0].astype(jnp.float32)


def build(config, rngs, dtype):
  common = dict(resolution=config.resolution, channels=config.channels, dtype=dtype, rngs=rngs)
  return Generator(z_dim=config.z_dim, **common), Discriminator(**common)


def validate(config, num_devices=None):
  del num_devices
  if config.resolution > 32:
    raise UsageError(f'--resolution={config.resolution}: tiny draws at most 32 pixels')
