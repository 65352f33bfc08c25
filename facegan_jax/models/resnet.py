"""SNGAN's ResNet generator and discriminator (Miyato et al. 2018; Mimicry's 32, 64 and 128
pixel configurations, and a 28-pixel one of ours for digits).

G blocks: BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3 plus a 1x1 shortcut; D blocks:
ReLU-conv3x3-ReLU-conv3x3-avgpool plus a 1x1 shortcut, the first one "optimized" (no leading
ReLU, pooling before its shortcut); D ends in ReLU, a global sum and one linear logit. No
BatchNorm in D: SNGAN's recipe puts spectral norm there (--spectral_norm=d). The parameters
are the 3x3 kernels (what spectral norm normalises, as SNGAN's); ops folds each resampling
3x3 convolution into a 4x4 stride-2 one per call, exactly. The 1x1 shortcuts commute with the
resampling and run at the lower resolution.
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

# (G's block widths from its input, D's block widths and whether each block halves the
# resolution), in units of --conv_dim, per resolution: Mimicry's SNGAN models, whose 32-pixel
# one has --conv_dim=128 (G 256 wide, D 128) and whose 64 and 128-pixel ones --conv_dim=64
# (1,024 at the widest). G's input is 4x4, or 7x7 for the 28-pixel model: ours, the 32-pixel
# one with one G block fewer, so that digits (28 pixels) take the same ResNets.
LAYOUTS = {
    28: ((2, 2, 2), ((1, True), (1, True), (1, False), (1, False))),
    32: ((2, 2, 2, 2), ((1, True), (1, True), (1, False), (1, False))),
    64: ((16, 8, 4, 2, 1), ((1, True), (2, True), (4, True), (8, True), (16, True))),
    128: ((16, 16, 8, 4, 2, 1),
          ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False))),
}


def upsample(x):
  """Nearest-neighbour 2x upsampling."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool(x):
  """2x2 average pooling."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def xavier(gain=1.0):
  """PyTorch's xavier_uniform_ with `gain`, as SNGAN initialises its layers."""
  return nnx.initializers.variance_scaling(gain**2, 'fan_avg', 'uniform')


class Conv(nnx.Module):
  """A 3x3 convolution (padding 1), optionally fused with 2x resampling ('up': nearest
  upsampling before it; 'down': average pooling after it), or a 1x1 one (`size=1`)."""

  def __init__(self, in_features, out_features, *, size=3, resample=None, gain=math.sqrt(2),
               use_bias=True, rngs):
    shape = (3, 3, in_features, out_features) if size == 3 else (in_features, out_features)
    self.kernel = nnx.Param(xavier(gain)(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.resample = resample

  def __call__(self, x):
    kernel = self.kernel[...].astype(x.dtype)
    if kernel.ndim == 2:
      y = jnp.dot(x, kernel)
    elif self.resample == 'up':
      y = ops.upsample_conv_3x3(x, kernel)
    elif self.resample == 'down':
      y = ops.conv_3x3_avg_pool(x, kernel)
    else:
      y = ops.conv_3x3(x, kernel)
    return y if self.bias is None else ops.add_bias(y, self.bias[...])


class GBlock(nnx.Module):
  """x -> BN-ReLU-up-conv3x3-BN-ReLU-conv3x3(x) + up(conv1x1(x)), at twice the resolution.

  Its convolutions have no biases: a BatchNorm follows each (the next block's, or G's last),
  which removes any per-channel constant. Mimicry's have them; their gradient is exactly zero,
  and Adam would turn its rounding noise into full-size steps.
  """

  def __init__(self, in_features, out_features, *, num_classes=0, rngs):
    self.bn1 = BatchNorm(in_features, num_classes=num_classes, rngs=rngs)
    self.conv1 = Conv(in_features, out_features, resample='up', use_bias=False, rngs=rngs)
    self.bn2 = BatchNorm(out_features, num_classes=num_classes, rngs=rngs)
    self.conv2 = Conv(out_features, out_features, use_bias=False, rngs=rngs)
    self.shortcut = Conv(in_features, out_features, size=1, gain=1.0, use_bias=False,
                         rngs=rngs)

  def __call__(self, x, *, train, labels=None):
    h = self.conv1(jax.nn.relu(self.bn1(x, train=train, labels=labels)))
    h = self.conv2(jax.nn.relu(self.bn2(h, train=train, labels=labels)))
    return h + upsample(self.shortcut(x))


class DBlock(nnx.Module):
  """x -> [ReLU]-conv3x3-ReLU-conv3x3[-pool](x) + shortcut(x); `first` is SNGAN's optimized
  block on the images (no leading ReLU; its shortcut pools, then convolves)."""

  def __init__(self, in_features, out_features, *, downsample, first=False, rngs):
    self.conv1 = Conv(in_features, out_features if first else in_features, rngs=rngs)
    self.conv2 = Conv(out_features if first else in_features, out_features,
                      resample='down' if downsample else None, rngs=rngs)
    learnable = first or downsample or in_features != out_features
    self.shortcut = (Conv(in_features, out_features, size=1, gain=1.0, rngs=rngs)
                     if learnable else None)
    self.downsample, self.first = downsample, first

  def __call__(self, x):
    h = self.conv2(jax.nn.relu(self.conv1(x if self.first else jax.nn.relu(x))))
    if self.shortcut is None:  # the same width and resolution
      return h + x
    return h + self.shortcut(avg_pool(x) if self.downsample else x)  # they commute


class Generator(nnx.Module):
  """z (B, z_dim) -> images (B, R, R, channels) in [-1, 1]; with `num_classes`, of the
  classes `labels` (B,) through conditional BatchNorm in every block (SNGAN's)."""

  def __init__(self, *, resolution, conv_dim, z_dim, channels=3, num_classes=0,
               dtype=jnp.float32, rngs):
    widths = [conv_dim * m for m in LAYOUTS[resolution][0]]
    self.width, self.side = widths[0], resolution >> (len(widths) - 1)
    self.project = nnx.Linear(z_dim, self.side**2 * widths[0], use_bias=False,
                              kernel_init=xavier(), dtype=dtype,
                              rngs=rngs)  # BatchNorm follows: no bias
    self.blocks = nnx.List([GBlock(a, b, num_classes=num_classes, rngs=rngs)
                            for a, b in zip(widths, widths[1:])])
    self.bn = BatchNorm(widths[-1], rngs=rngs)  # unconditional, as SNGAN's last
    self.to_rgb = Conv(widths[-1], channels, gain=1.0, rngs=rngs)

  def __call__(self, z, *, train, labels=None):
    x = self.project(z).reshape(-1, self.side, self.side, self.width)
    for block in self.blocks:
      x = block(x, train=train, labels=labels)
    x = self.to_rgb(jax.nn.relu(self.bn(x, train=train)))
    return jnp.tanh(x).astype(jnp.float32)


class Discriminator(nnx.Module):
  """images (B, R, R, channels) -> logits (B,); with `num_classes`, SNGAN's projection
  discriminator of the classes `labels` (B,) on its summed features."""

  def __init__(self, *, resolution, conv_dim, channels=3, num_classes=0, dtype=jnp.float32,
               rngs):
    blocks = LAYOUTS[resolution][1]
    widths = [channels] + [conv_dim * m for m, _ in blocks]
    self.blocks = nnx.List([
        DBlock(widths[i], widths[i + 1], downsample=down, first=i == 0, rngs=rngs)
        for i, (_, down) in enumerate(blocks)])
    self.logit = nnx.Linear(widths[-1], 1, kernel_init=xavier(),
                            bias_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs)
    self.projection = Projection(num_classes, widths[-1], rngs=rngs) if num_classes else None
    self.dtype = dtype

  def __call__(self, x, *, train, dropout_keys=None, labels=None):
    del train, dropout_keys  # no BatchNorm, no dropout
    x = x.astype(self.dtype)
    for block in self.blocks:
      x = block(x)
    x = jax.nn.relu(x).sum(axis=(1, 2))
    logits = self.logit(x)[:, 0]
    if self.projection is not None:
      logits = logits + self.projection(x, labels)
    return logits.astype(jnp.float32)


def build(config, rngs, dtype):
  common = dict(resolution=config.resolution, channels=config.channels,
                conv_dim=config.conv_dim, num_classes=config.num_classes, dtype=dtype,
                rngs=rngs)
  return Generator(z_dim=config.z_dim, **common), Discriminator(**common)


def validate(config, num_devices=None):
  del num_devices
  if config.resolution not in LAYOUTS:
    raise UsageError(f'--resolution={config.resolution}: resnet has the '
                     f'{", ".join(map(str, LAYOUTS))} pixel models')
  if config.mbstd_group:
    raise UsageError(f'--mbstd_group={config.mbstd_group}: needs --model=dcgan and a group of '
                     'at least 2')
