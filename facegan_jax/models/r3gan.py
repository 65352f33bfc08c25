"""R3GAN's generator and discriminator (Huang, Gokaslan, Kuleshov and Tompkin 2024, "The GAN is
dead; long live the GAN! A Modern GAN Baseline"), written from the paper and its Networks.py.

A plain ConvNet with none of StyleGAN's tricks: no normalisation, no mapping network, no
noise inputs. Each stage is a transition then residual blocks (D: blocks then a transition).
A block is an inverted bottleneck, x + 1x1(act(3x3 grouped(act(1x1 x)))), widening by
EXPANSION, with leaky ReLU 0.2 after a learned bias. Initialisation is fix-up style, as
theirs: every weight N(0, gain / sqrt(fan_in)) with the leaky ReLU's gain scaled by the total
block count to the -1/4 inside blocks, and each block's last layer zero, so every block starts
as the identity. Resampling is low-pass: [1, 3, 3, 1] separable filters (ops.upsample_lowpass,
ops.downsample_lowpass), with 1x1 convolutions where widths change (before upsampling in G,
after downsampling in D).

G maps z by a linear layer to per-channel weights of a learned 4x4 basis, then up to the
resolution, ending in a 1x1 convolution to the image's channels. Its images are not squashed
into [-1, 1] (no tanh, as the reference): they are clipped where they become pixels. D lifts
the image by a 1x1 convolution, goes down to 4x4 and ends in a 4x4 depthwise convolution and
a linear logit.

--widths are G's stage widths from 4x4 up (D mirrors them), continued or cut to
--resolution's stages (`stages`); --blocks the blocks per stage and --groups the grouped
convolutions' groups per stage (one number for all stages, or one per stage).
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax import ops
from facegan_jax.errors import UsageError
from facegan_jax.models.conditioning import Embedding

# Draws classes (--condition): G's and D's `labels` (models/conditioning.py).
CONDITIONAL = True

EXPANSION = 2  # a block's inner width, in units of its width
SLOPE = 0.2  # of the leaky ReLU
ACTIVATION_GAIN = math.sqrt(2 / (1 + SLOPE**2))  # He's gain of a leaky ReLU of SLOPE
BOUNDED = False  # G's images: no tanh, as the reference (models/__init__.py)
GROUP_SIZE = 16  # channels of a group when --groups is empty: the paper's presets' 1536 / 96


def stages(config):
  """(widths, blocks, groups) per stage of G, from 4x4 up to --resolution (UsageError if
  the flags are not positive integers).

  --widths lists the stages from 4x4 up. A --resolution with more stages than listed
  continues it, each extra stage half as wide as the one before (at least 16 channels), as
  R3GAN's presets widen from 32 to 64 and 256 pixels; one with fewer keeps the first ones.
  So a flagfile's networks follow a changed --resolution. --blocks and --groups take one
  number for every stage or one per listed stage (extra stages: the last one's blocks; groups
  of --groups' last group size).
  """
  def numbers(name, text, count):
    try:
      values = [int(v) for v in str(text).split(',')]
    except ValueError:
      raise UsageError(f'--{name}={text}: must be comma-separated integers') from None
    if len(values) == 1:
      values *= count
    if len(values) != count or min(values) < 1:
      raise UsageError(f'--{name}={text}: needs one positive number, or one per stage '
                       f'({count}, as --widths)')
    return values

  widths = numbers('widths', config.widths, len(str(config.widths).split(',')))
  blocks = numbers('blocks', config.blocks, len(widths))
  groups = (numbers('groups', config.groups, len(widths)) if config.groups else
            [max(1, EXPANSION * w // GROUP_SIZE) for w in widths])
  count = num_stages(config.resolution)
  while len(widths) < count:
    group_size = max(1, EXPANSION * widths[-1] // groups[-1])
    widths.append(max(16, widths[-1] // 2))
    blocks.append(blocks[-1])
    groups.append(max(1, EXPANSION * widths[-1] // group_size))
  return widths[:count], blocks[:count], groups[:count]


def num_stages(resolution):
  """Stages from 4x4 up to `resolution` (a power of 2 from 8), or 0 for any other."""
  stages = int(resolution).bit_length() - 2
  return stages if resolution >= 8 and resolution == 4 * 2 ** (stages - 1) else 0


def build(config, rngs, dtype):
  widths, blocks, groups = stages(config)
  common = dict(blocks=blocks, groups=groups, channels=config.channels,
                num_classes=config.num_classes, dtype=dtype, rngs=rngs)
  return (Generator(z_dim=config.z_dim, widths=widths, **common),
          Discriminator(widths=widths, **common))


def validate(config, num_devices=None):
  del num_devices
  if not num_stages(config.resolution):
    raise UsageError(f'--resolution={config.resolution}: r3gan draws 8, 16, 32, 64, ... pixels '
                     '(4 * 2^k)')
  widths, _, groups = stages(config)
  for width, group in zip(widths, groups):
    if (EXPANSION * width) % group:
      raise UsageError(f'--groups={config.groups}: {group} groups do not divide a block\'s '
                       f'{EXPANSION * width} channels (--widths={config.widths})')
  if config.mbstd_group:
    raise UsageError(f'--mbstd_group={config.mbstd_group}: needs --model=dcgan')
  if config.spectral_norm != 'none':
    raise UsageError(f'--spectral_norm={config.spectral_norm}: r3gan\'s networks go without '
                     'normalisation (R1 and R2 keep D in check: --loss=rpgan --r1_gamma)')


def he_normal(gain):
  """N(0, gain / sqrt(fan_in)) for a kernel (..., in / groups, out) or (in, out)."""
  def init(key, shape, dtype=jnp.float32):
    fan_in = math.prod(shape[:-1])
    return gain / math.sqrt(fan_in) * jax.random.normal(key, shape, dtype)
  return init


class Conv(nnx.Module):
  """A k x k convolution, stride 1, 'same' padding, no bias (as theirs), in `groups` groups."""

  def __init__(self, in_features, out_features, size=1, *, groups=1, gain=1.0,
               dtype=jnp.float32, rngs):
    shape = (size, size, in_features // groups, out_features)
    self.kernel = nnx.Param(he_normal(gain)(rngs.params(), shape))
    self.groups, self.dtype = groups, dtype

  def __call__(self, x):
    kernel = self.kernel[...].astype(self.dtype)
    if kernel.shape[0] == 1:
      return ops.conv_1x1(x, kernel)
    return ops.grouped_conv_3x3(x, kernel, self.groups)


class BiasedActivation(nnx.Module):
  """Leaky ReLU after a learned per-channel bias (zero at init)."""

  def __init__(self, features):
    self.bias = nnx.Param(jnp.zeros((features,)))

  def __call__(self, x):
    # ops.add_bias: the bias gradient summed as a matmul, not as XLA's slow CPU reduction.
    return jax.nn.leaky_relu(ops.add_bias(x, self.bias[...]), SLOPE)


class ResidualBlock(nnx.Module):
  """x + 1x1(act(3x3 grouped(act(1x1 x)))), the last 1x1 zero at init."""

  def __init__(self, width, groups, total_blocks, *, dtype, rngs):
    inner = EXPANSION * width
    # Fix-up: the branch's variance shrinks with the block count (L^(-1/4) per layer of 2).
    gain = ACTIVATION_GAIN * total_blocks ** (-1 / 4)
    self.expand = Conv(width, inner, gain=gain, dtype=dtype, rngs=rngs)
    self.act1 = BiasedActivation(inner)
    self.grouped = Conv(inner, inner, 3, groups=groups, gain=gain, dtype=dtype, rngs=rngs)
    self.act2 = BiasedActivation(inner)
    self.project = Conv(inner, width, gain=0.0, dtype=dtype, rngs=rngs)

  def __call__(self, x):
    return x + self.project(self.act2(self.grouped(self.act1(self.expand(x)))))


class Generator(nnx.Module):
  """z (B, z_dim) -> images (B, R, R, channels), not squashed (see the module doc); with
  `num_classes`, z concatenated with a z_dim embedding of its class (`labels`), as R3GAN's
  conditional models."""

  def __init__(self, *, z_dim, widths, blocks, groups, channels=3, num_classes=0,
               dtype=jnp.float32, rngs):
    total = sum(blocks)
    self.basis = nnx.Param(jax.random.normal(rngs.params(), (4, 4, widths[0])))
    # He-normal of a linear map from one-hot classes: fan-in `num_classes`.
    self.embedding = (Embedding(num_classes, z_dim, init=he_normal(1.0), rngs=rngs)
                      if num_classes else None)
    self.to_basis = nnx.Linear(z_dim * (2 if num_classes else 1), widths[0], use_bias=False,
                               kernel_init=he_normal(1.0), dtype=dtype, rngs=rngs)
    self.widen = nnx.List([
        Conv(a, b, dtype=dtype, rngs=rngs) if a != b else None
        for a, b in zip(widths, widths[1:])])
    self.stages = nnx.List([
        nnx.List([ResidualBlock(w, g, total, dtype=dtype, rngs=rngs) for _ in range(n)])
        for w, n, g in zip(widths, blocks, groups)])
    self.to_image = Conv(widths[-1], channels, dtype=dtype, rngs=rngs)
    self.dtype = dtype

  def __call__(self, z, *, train, labels=None):
    del train  # no BatchNorm, no dropout
    z = z.astype(self.dtype)
    if self.embedding is not None:
      z = self.embedding.beside(z, labels)
    x = self.basis[...].astype(self.dtype) * self.to_basis(z)[:, None, None]
    for i, stage in enumerate(self.stages):
      if i:
        widen = self.widen[i - 1]
        x = ops.upsample_lowpass(widen(x) if widen is not None else x)
      for block in stage:
        x = block(x)
    return self.to_image(x).astype(jnp.float32)


class Discriminator(nnx.Module):
  """Images (B, R, R, channels) -> logits (B,); with `num_classes`, its last linear layer
  gives as many features as its last width and the logit is their inner product with the
  class's embedding (`labels`), as R3GAN's conditional models: a projection discriminator
  without the unconditional term."""

  def __init__(self, *, widths, blocks, groups, channels=3, num_classes=0, dtype=jnp.float32,
               rngs):
    widths, blocks, groups = widths[::-1], blocks[::-1], groups[::-1]  # from the image down
    total = sum(blocks)
    self.from_image = Conv(channels, widths[0], dtype=dtype, rngs=rngs)
    self.stages = nnx.List([
        nnx.List([ResidualBlock(w, g, total, dtype=dtype, rngs=rngs) for _ in range(n)])
        for w, n, g in zip(widths, blocks, groups)])
    self.narrow = nnx.List([
        Conv(a, b, dtype=dtype, rngs=rngs) if a != b else None
        for a, b in zip(widths, widths[1:])])
    # The 4x4 depthwise basis: one 4x4 filter per channel (fan-in 16), reducing 4x4 to 1x1.
    self.basis = nnx.Param(he_normal(1.0)(rngs.params(), (4, 4, widths[-1])))
    width = widths[-1]
    self.logit = nnx.Linear(width, width if num_classes else 1, use_bias=False,
                            kernel_init=he_normal(1.0), dtype=dtype, rngs=rngs)
    # Scaled by 1/sqrt(width): the inner product of `width` terms starts near unit variance.
    self.embedding = (Embedding(num_classes, width, init=he_normal(width**-0.5), rngs=rngs)
                      if num_classes else None)
    self.dtype = dtype

  def __call__(self, x, *, train, dropout_keys=None, labels=None):
    del train, dropout_keys  # no BatchNorm, no dropout
    x = self.from_image(x.astype(self.dtype))
    for i, stage in enumerate(self.stages):
      for block in stage:
        x = block(x)
      if i < len(self.narrow):
        narrow = self.narrow[i]
        x = ops.downsample_lowpass(x)
        x = narrow(x) if narrow is not None else x
    x = jnp.einsum('bhwc,hwc->bc', x, self.basis[...].astype(self.dtype))
    if self.embedding is not None:
      return (self.logit(x) * self.embedding(labels, self.dtype)).sum(-1).astype(jnp.float32)
    return self.logit(x)[:, 0].astype(jnp.float32)
