"""SNGAN's ResNet generator and discriminator (Miyato et al. 2018; Mimicry's 32, 64 and 128
pixel configurations), with their resampling convolutions folded into 4x4 stride-2 ones.

G blocks: BN-ReLU-upsample-conv3x3-BN-ReLU-conv3x3 plus a 1x1 shortcut; D blocks:
ReLU-conv3x3-ReLU-conv3x3-avgpool plus a 1x1 shortcut, the first one "optimized" (no leading
ReLU, pooling before its shortcut); D ends in ReLU, a global sum and one linear logit. No
BatchNorm in D: SNGAN's recipe puts spectral norm there (--spectral_norm=d).

Two exact identities make the resampling convolutions cheap (tests/test_resnet.py checks both
against the textbook forms):
- nearest 2x upsampling then conv3x3 (padding 1) is ConvTranspose(4, 2, 1) with the kernel
  fold_up(K3): each output phase reads 2x2 input pixels, and each of its taps sums the 3x3
  taps that land on the same input pixel;
- conv3x3 (padding 1) then 2x2 average pooling is Conv(4, 2, 1) with the kernel
  fold_down(K3)[u, v] = 1/4 sum_{a, b in {0, 1}} K3[u - a, v - b].
Both take 16 instead of 36 multiplies per output, in the forms resample.py makes fast. The
parameters stay the 3x3 kernels (what spectral norm normalises, as SNGAN's), folded per call.
The 1x1 shortcuts commute with the resampling and run at the lower resolution.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax.models import winograd
from facegan_jax.models.batchnorm import BatchNorm
from facegan_jax.models.reductions import add_bias
from facegan_jax.models.resample import conv_3x3, conv_4x2, conv_transpose_4x2

# (G's block widths from the 4x4 input, D's block widths and whether each block halves the
# resolution), in units of --conv_dim, per resolution: Mimicry's SNGAN models, whose 32-pixel
# one has --conv_dim=128 (G 256 wide, D 128) and whose 64 and 128-pixel ones --conv_dim=64
# (1,024 at the widest).
LAYOUTS = {
    32: ((2, 2, 2, 2), ((1, True), (1, True), (1, False), (1, False))),
    64: ((16, 8, 4, 2, 1), ((1, True), (2, True), (4, True), (8, True), (16, True))),
    128: ((16, 16, 8, 4, 2, 1),
          ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False))),
}

# K3's taps that each of ConvTranspose(4, 2, 1)'s kernel rows sums (conv_impls.TAPS: output
# row 2m reads input m - 1 through kernel row 3 and m through row 1; row 2m + 1 reads m
# through row 2 and m + 1 through row 0), and Conv(4, 2, 1)'s from the 2x2 pooling window.
_UP = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))
_DOWN = ((1, 0, 0), (1, 1, 0), (0, 1, 1), (0, 0, 1))


def fold_up(kernel):
  """(3, 3, I, O) kernel of nearest-2x-upsample-then-conv3x3 -> its ConvTranspose(4, 2, 1)
  kernel (4, 4, I, O). As sums of kernel slices (winograd.transform_kernel): as an einsum
  the folds took ~0.5 s of an sngan64 step on CPU (benchmarks/RESULTS.md, "Transposes in the
  kernel gradients")."""
  return winograd.transform_kernel(_UP, kernel)


def fold_down(kernel):
  """(3, 3, I, O) kernel of conv3x3-then-2x2-average-pool -> its Conv(4, 2, 1) kernel."""
  return winograd.transform_kernel(_DOWN, kernel) * jnp.asarray(0.25, kernel.dtype)


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
               use_bias=True, conv_impl='auto', rngs):
    shape = (3, 3, in_features, out_features) if size == 3 else (in_features, out_features)
    self.kernel = nnx.Param(xavier(gain)(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.resample = resample
    self.conv_impl = conv_impl

  def __call__(self, x):
    kernel = self.kernel[...].astype(x.dtype)
    if kernel.ndim == 2:
      y = jnp.dot(x, kernel)
    elif self.resample == 'up':
      y = conv_transpose_4x2(x, fold_up(kernel), self.conv_impl)
    elif self.resample == 'down':
      y = conv_4x2(x, fold_down(kernel), self.conv_impl)
    else:
      y = conv_3x3(x, kernel, self.conv_impl)
    return y if self.bias is None else add_bias(y, self.bias[...])


class GBlock(nnx.Module):
  """x -> BN-ReLU-up-conv3x3-BN-ReLU-conv3x3(x) + up(conv1x1(x)), at twice the resolution.

  Its convolutions have no biases: a BatchNorm follows each (the next block's, or G's last),
  which removes any per-channel constant. Mimicry's have them; their gradient is exactly zero,
  and Adam would turn its rounding noise into full-size steps.
  """

  def __init__(self, in_features, out_features, *, conv_impl, rngs):
    self.bn1 = BatchNorm(in_features, rngs=rngs)
    self.conv1 = Conv(in_features, out_features, resample='up', use_bias=False,
                      conv_impl=conv_impl, rngs=rngs)
    self.bn2 = BatchNorm(out_features, rngs=rngs)
    self.conv2 = Conv(out_features, out_features, use_bias=False, conv_impl=conv_impl,
                      rngs=rngs)
    self.shortcut = Conv(in_features, out_features, size=1, gain=1.0, use_bias=False,
                         rngs=rngs)

  def __call__(self, x, *, train):
    h = self.conv1(jax.nn.relu(self.bn1(x, train=train)))
    h = self.conv2(jax.nn.relu(self.bn2(h, train=train)))
    return h + upsample(self.shortcut(x))


class DBlock(nnx.Module):
  """x -> [ReLU]-conv3x3-ReLU-conv3x3[-pool](x) + shortcut(x); `first` is SNGAN's optimized
  block on the images (no leading ReLU; its shortcut pools, then convolves)."""

  def __init__(self, in_features, out_features, *, downsample, first=False, conv_impl, rngs):
    self.conv1 = Conv(in_features, out_features if first else in_features, conv_impl=conv_impl,
                      rngs=rngs)
    self.conv2 = Conv(out_features if first else in_features, out_features,
                      resample='down' if downsample else None, conv_impl=conv_impl, rngs=rngs)
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
  """z (B, z_dim) -> images (B, R, R, channels) in [-1, 1]."""

  def __init__(self, *, resolution, conv_dim, z_dim, channels=3, conv_impl='auto',
               dtype=jnp.float32, rngs):
    widths = [conv_dim * m for m in LAYOUTS[resolution][0]]
    self.width = widths[0]
    self.project = nnx.Linear(z_dim, 16 * widths[0], use_bias=False, kernel_init=xavier(),
                              dtype=dtype, rngs=rngs)  # BatchNorm follows: no bias
    self.blocks = nnx.List([GBlock(a, b, conv_impl=conv_impl, rngs=rngs)
                            for a, b in zip(widths, widths[1:])])
    self.bn = BatchNorm(widths[-1], rngs=rngs)
    self.to_rgb = Conv(widths[-1], channels, gain=1.0, conv_impl=conv_impl, rngs=rngs)

  def __call__(self, z, *, train):
    x = self.project(z).reshape(-1, 4, 4, self.width)
    for block in self.blocks:
      x = block(x, train=train)
    x = self.to_rgb(jax.nn.relu(self.bn(x, train=train)))
    return jnp.tanh(x).astype(jnp.float32)


class Discriminator(nnx.Module):
  """images (B, R, R, channels) -> logits (B,)."""

  def __init__(self, *, resolution, conv_dim, channels=3, conv_impl='auto', dtype=jnp.float32,
               rngs):
    blocks = LAYOUTS[resolution][1]
    widths = [channels] + [conv_dim * m for m, _ in blocks]
    self.blocks = nnx.List([
        DBlock(widths[i], widths[i + 1], downsample=down, first=i == 0, conv_impl=conv_impl,
               rngs=rngs) for i, (_, down) in enumerate(blocks)])
    self.logit = nnx.Linear(widths[-1], 1, kernel_init=xavier(),
                            bias_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs)
    self.dtype = dtype

  def __call__(self, x, *, train, dropout_keys=None):
    del train, dropout_keys  # no BatchNorm, no dropout
    x = x.astype(self.dtype)
    for block in self.blocks:
      x = block(x)
    x = jax.nn.relu(x).sum(axis=(1, 2))
    return self.logit(x)[:, 0].astype(jnp.float32)
