"""Fully-connected GAN for 28x28 digits (Goodfellow et al. 2014; the Udacity MNIST GAN).

Initialised as its reference (PyTorch's nn.Linear): weights and biases U(-1/sqrt(fan_in),
1/sqrt(fan_in)). DCGAN's N(0, 0.02) is for convolutions followed by BatchNorm; without
BatchNorm it shrinks the signal about tenfold per layer, and G's output at init barely
depends on z (benchmarks/RESULTS.md, "The digit GANs").
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facegan_jax.errors import UsageError
from facegan_jax.models.conditioning import Embedding

# Draws classes (--condition): G's and D's `labels` (models/conditioning.py).
CONDITIONAL = True

# U(-1/sqrt(fan_in), 1/sqrt(fan_in)): variance 1/(3 fan_in).
kernel_init = nnx.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')


def _dense(i, o, dtype, rngs):
  bound = 1 / np.sqrt(i)
  bias_init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)
  return nnx.Linear(i, o, kernel_init=kernel_init, bias_init=bias_init, dtype=dtype, rngs=rngs)


def _embedding(num_classes, width, rngs):
  """The classes' embeddings concatenated to a layer's input (cGAN, Mirza & Osindero 2014),
  N(0, 1): as large as the unit-variance z beside them."""
  if not num_classes:
    return None
  return Embedding(num_classes, width, init=nnx.initializers.normal(1.0), rngs=rngs)


class Generator(nnx.Module):
  """z -> h -> 2h -> 4h -> image, LeakyReLU(0.2) hidden layers, tanh output; with
  `num_classes`, z concatenated with the embedding of its class (`labels`)."""

  def __init__(self, *, resolution, hidden_dim, z_dim, channels=1, num_classes=0,
               dtype=jnp.float32, rngs):
    self.shape = (resolution, resolution, channels)
    h = hidden_dim
    self.embedding = _embedding(num_classes, z_dim, rngs)
    dims = [z_dim * (2 if num_classes else 1), h, 2 * h, 4 * h,
            resolution * resolution * channels]
    self.layers = nnx.List([_dense(a, b, dtype, rngs) for a, b in zip(dims[:-1], dims[1:])])

  def __call__(self, z, *, train, labels=None):
    del train  # no BatchNorm or dropout in G
    x = z if self.embedding is None else self.embedding.beside(z, labels)
    for layer in self.layers[:-1]:
      x = jax.nn.leaky_relu(layer(x), 0.2)
    return jnp.tanh(self.layers[-1](x)).astype(jnp.float32).reshape((-1,) + self.shape)


class Discriminator(nnx.Module):
  """image -> 4h -> 2h -> h -> logit, LeakyReLU(0.2) and dropout on hidden layers; with
  `num_classes`, the image concatenated with the embedding of its class (`labels`)."""

  def __init__(self, *, resolution, hidden_dim, channels=1, dropout=0.3, num_classes=0,
               dtype=jnp.float32, rngs):
    h = hidden_dim
    pixels = resolution * resolution * channels
    # As wide as a hidden layer of D: the class weighs in like a feature, not like a pixel.
    self.embedding = _embedding(num_classes, h, rngs)
    dims = [pixels + (h if num_classes else 0), 4 * h, 2 * h, h, 1]
    self.layers = nnx.List([_dense(a, b, dtype, rngs) for a, b in zip(dims[:-1], dims[1:])])
    self.dropout = dropout

  def __call__(self, x, *, train, dropout_keys=None, labels=None):
    """`dropout_keys`: one PRNG key per example, so masks follow the example, not the device."""
    x = x.reshape(x.shape[0], -1)
    x = x if self.embedding is None else self.embedding.beside(x, labels)
    for layer in self.layers[:-1]:
      x = jax.nn.leaky_relu(layer(x), 0.2)
      if train and self.dropout > 0:
        keep = jax.vmap(lambda k, n=x.shape[-1]: jax.random.bernoulli(
            k, 1 - self.dropout, (n,)))(dropout_keys)
        dropout_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(dropout_keys)
        x = jnp.where(keep, x / (1 - self.dropout), 0).astype(x.dtype)
    return self.layers[-1](x)[:, 0].astype(jnp.float32)


def build(config, rngs, dtype):
  common = dict(resolution=config.resolution, channels=config.channels,
                hidden_dim=config.hidden_dim, num_classes=config.num_classes, dtype=dtype,
                rngs=rngs)
  return (Generator(z_dim=config.z_dim, **common),
          Discriminator(dropout=config.d_dropout, **common))


def validate(config, num_devices=None):
  del num_devices
  if config.mbstd_group:
    raise UsageError(f'--mbstd_group={config.mbstd_group}: needs --model=dcgan and a group of '
                     'at least 2')
