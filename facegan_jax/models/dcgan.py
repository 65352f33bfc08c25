"""DCGAN generator and discriminator (Radford et al. 2015; the Udacity face project).

All-convolutional: stride-2 (transposed) convolutions instead of pooling, BatchNorm everywhere
but G's output and D's input, ReLU in G, LeakyReLU(0.2) in D, tanh images, logits out of D.
A resolution of base * 2**n (base 4, or 7 for 28x28 digits) takes n resampling layers, and the
widest layer, conv_dim * 2**(n - 1) channels, sits at base x base.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax import ops
from facegan_jax.errors import UsageError
from facegan_jax.models.batchnorm import BatchNorm
from facegan_jax.models.conditioning import Projection

# Draws classes (--condition): G's and D's `labels` (models/conditioning.py).
CONDITIONAL = True

dense_init = nnx.initializers.normal(0.02)


def num_stages(resolution):
  """(base, n) with resolution == base * 2**n and n >= 1: the resampling layers of a DCGAN at
  `resolution` (base 7 for 28x28 digits, else 4)."""
  base = 7 if resolution % 7 == 0 else 4
  n = math.log2(resolution / base) if resolution > 0 else 0
  if n < 1 or n != int(n):
    raise UsageError(f'--resolution={resolution}: dcgan needs 4*2^n or 7*2^n '
                     '(e.g. 28, 32, 64, 128)')
  return base, int(n)


def d_batchnorm(config):
  """Whether D has BatchNorm: not under spectral norm (SN-DCGAN, Miyato et al.) or the
  gradient penalty (whose per-example gradients BatchNorm's batch statistics would mix;
  Gulrajani et al. drop it too)."""
  return config.spectral_norm == 'none' and not config.gp_weight


def build(config, rngs, dtype):
  common = dict(resolution=config.resolution, channels=config.channels,
                conv_dim=config.conv_dim, num_classes=config.num_classes, dtype=dtype,
                rngs=rngs)
  return (Generator(z_dim=config.z_dim, g_first_bn=config.g_first_bn, **common),
          Discriminator(batchnorm=d_batchnorm(config), mbstd_group=config.mbstd_group,
                        **common))


def validate(config, num_devices=None):
  _, n = num_stages(config.resolution)
  if config.condition and n < 2 and not config.g_first_bn:
    raise UsageError(f'--condition={config.condition} at --resolution={config.resolution}: '
                     "dcgan's G has no BatchNorm to take the class; pass --g_first_bn")
  if config.mbstd_group:
    if config.mbstd_group < 2:
      raise UsageError(f'--mbstd_group={config.mbstd_group}: needs --model=dcgan and a group '
                       'of at least 2')
    if num_devices and (config.batch_size // num_devices) % config.mbstd_group:
      raise UsageError(f'--mbstd_group={config.mbstd_group} does not divide the batch of each '
                       f'device ({config.batch_size} over {num_devices})')


class _Resample(nnx.Module):
  """A 4x4 stride-2 (transposed) convolution with DCGAN's N(0, 0.02) init."""

  def __init__(self, in_features, out_features, *, use_bias=False, rngs):
    init = nnx.initializers.normal(0.02)
    self.kernel = nnx.Param(init(rngs.params(), (4, 4, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

  def __call__(self, x):
    y = self._op(x, self.kernel[...].astype(x.dtype))
    if self.bias is not None:
      y = ops.add_bias(y, self.bias[...])
    return y


class DownConv(_Resample):
  """Halves the resolution: Conv2d(in, out, 4, 2, 1)."""
  _op = staticmethod(ops.conv_4x2)


class UpConv(_Resample):
  """Doubles the resolution: ConvTranspose2d(in, out, 4, 2, 1)."""
  _op = staticmethod(ops.conv_transpose_4x2)


class Generator(nnx.Module):
  """z (B, z_dim) -> images (B, R, R, channels) in [-1, 1]; with `num_classes`, of the
  classes `labels` (B,) through conditional BatchNorm (models/conditioning.py)."""

  def __init__(self, *, resolution, conv_dim, z_dim, channels=3, g_first_bn=True,
               num_classes=0, dtype=jnp.float32, rngs):
    self.base, n = num_stages(resolution)
    self.width = conv_dim * 2**(n - 1)
    # ConvTranspose2d(z_dim, width, base) on a 1x1 input is exactly this dense layer.
    self.project = nnx.Linear(z_dim, self.base * self.base * self.width,
                              use_bias=not g_first_bn, kernel_init=dense_init, dtype=dtype,
                              rngs=rngs)
    self.project_bn = (BatchNorm(self.width, num_classes=num_classes, rngs=rngs)
                       if g_first_bn else None)
    widths = [conv_dim * 2**(n - 1 - i) for i in range(n)] + [channels]
    self.ups = nnx.List([UpConv(widths[i], widths[i + 1], use_bias=i == n - 1, rngs=rngs)
                         for i in range(n)])
    self.bns = nnx.List([BatchNorm(w, num_classes=num_classes, rngs=rngs)
                         for w in widths[1:-1]])

  def __call__(self, z, *, train, labels=None):
    x = self.project(z).reshape(-1, self.base, self.base, self.width)
    if self.project_bn is not None:
      x = self.project_bn(x, train=train, labels=labels)
    x = jax.nn.relu(x)
    for up, bn in zip(self.ups[:-1], self.bns):
      x = jax.nn.relu(bn(up(x), train=train, labels=labels))
    return jnp.tanh(self.ups[-1](x)).astype(jnp.float32)


class Discriminator(nnx.Module):
  """images (B, R, R, channels) -> logits (B,); with `num_classes`, a projection
  discriminator (models/conditioning.py) of the classes `labels` (B,)."""

  def __init__(self, *, resolution, conv_dim, channels=3, batchnorm=True, mbstd_group=0,
               num_classes=0, dtype=jnp.float32, rngs):
    base, n = num_stages(resolution)
    widths = [channels] + [conv_dim * 2**i for i in range(n)]
    self.downs = nnx.List([DownConv(widths[i], widths[i + 1], use_bias=i == 0, rngs=rngs)
                           for i in range(n)])
    self.bns = nnx.List([BatchNorm(w, rngs=rngs) if batchnorm else None for w in widths[2:]])
    self.mbstd_group = mbstd_group
    # Conv2d(width, 1, base) on a base x base map is exactly this dense layer.
    features = base * base * (widths[-1] + (mbstd_group > 0))
    self.logit = nnx.Linear(features, 1, kernel_init=dense_init, dtype=dtype, rngs=rngs)
    self.projection = Projection(num_classes, features, rngs=rngs) if num_classes else None
    self.dtype = dtype

  def __call__(self, x, *, train, dropout_keys=None, labels=None):
    del dropout_keys  # no dropout in DCGAN's D
    x = jax.nn.leaky_relu(self.downs[0](x.astype(self.dtype)), 0.2)
    for down, bn in zip(self.downs[1:], self.bns):
      x = down(x)
      x = jax.nn.leaky_relu(x if bn is None else bn(x, train=train), 0.2)
    if self.mbstd_group:
      x = minibatch_stddev(x, self.mbstd_group)
    x = x.reshape(x.shape[0], -1)
    logits = self.logit(x)[:, 0]
    if self.projection is not None:
      logits = logits + self.projection(x, labels)
    return logits.astype(jnp.float32)


def minibatch_stddev(x, group):
  """x with one more channel: the standard deviation of each feature over its group of
  `group` consecutive examples, averaged over the features (Karras et al. 2018, ProGAN's
  minibatch standard deviation). D then sees how varied a group of G's images is, which
  penalises G for drawing too few distinct faces. Groups are consecutive examples of the
  batch, so a device's slice (a multiple of `group`: validate) holds whole groups.
  """
  n, h, w, c = x.shape
  groups = x.astype(jnp.float32).reshape(n // group, group, h, w, c)
  std = jnp.sqrt(groups.var(axis=1) + 1e-8).mean(axis=(1, 2, 3))  # (n // group,)
  feature = jnp.broadcast_to(jnp.repeat(std, group)[:, None, None, None], (n, h, w, 1))
  return jnp.concatenate([x, feature.astype(x.dtype)], axis=-1)
