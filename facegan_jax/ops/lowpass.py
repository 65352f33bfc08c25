"""R3GAN's layers (models/r3gan.py): low-pass 2x resampling with the [1, 3, 3, 1] filter, and
the 1x1 convolutions of its blocks (their grouped 3x3 ones: grouped.py).

The resampling filter is separable, so each axis is filtered on its own, as shifted sums of
slices (a handful of adds per pixel; XLA's transposes of slices and pads are as cheap). Per
axis, with zeros outside the image, as StyleGAN2's upfirdn2d (upsample2d with its gain of 4,
downsample2d) and R3GAN's reference resamplers compute them:
- upsampling: out[2i] = (x[i-1] + 3 x[i]) / 4, out[2i+1] = (3 x[i] + x[i+1]) / 4;
- downsampling: out[i] = (x[2i-1] + 3 x[2i] + 3 x[2i+1] + x[2i+2]) / 8.
"""

import jax
import jax.numpy as jnp


def _shifted(x, axis, by):
  """x moved `by` (±1) places along `axis`, zeros coming in: out[i] = x[i - by]."""
  pad = [(0, 0)] * x.ndim
  pad[axis] = (by, 0) if by > 0 else (0, -by)
  start = 0 if by > 0 else -by
  return jax.lax.slice_in_dim(jnp.pad(x, pad), start, start + x.shape[axis], axis=axis)


def _up_axis(x, axis):
  three = 3 * x
  even = (_shifted(x, axis, 1) + three) * 0.25
  odd = (three + _shifted(x, axis, -1)) * 0.25
  both = jnp.stack([even, odd], axis=axis + 1)
  return both.reshape(x.shape[:axis] + (2 * x.shape[axis],) + x.shape[axis + 1:])


def _down_axis(x, axis):
  pad = [(0, 0)] * x.ndim
  pad[axis] = (1, 1)
  n = x.shape[axis] // 2 + 1
  pairs = jnp.pad(x, pad).reshape(x.shape[:axis] + (n, 2) + x.shape[axis + 1:])
  even = jax.lax.index_in_dim(pairs, 0, axis + 1, keepdims=False)  # x[2i - 1]
  odd = jax.lax.index_in_dim(pairs, 1, axis + 1, keepdims=False)   # x[2i]
  first = lambda a: jax.lax.slice_in_dim(a, 0, n - 1, axis=axis)  # noqa: E731
  rest = lambda a: jax.lax.slice_in_dim(a, 1, n, axis=axis)  # noqa: E731
  return (first(even) + 3 * (first(odd) + rest(even)) + rest(odd)) * 0.125


def upsample_lowpass(x):
  """2x upsampling of NHWC `x` with the [1, 3, 3, 1] filter (gain 4: a constant stays)."""
  return _up_axis(_up_axis(x, 1), 2)


def downsample_lowpass(x):
  """2x downsampling of NHWC `x` (even sides) with the [1, 3, 3, 1] filter."""
  return _down_axis(_down_axis(x, 1), 2)


def conv_1x1(x, kernel):
  """A 1x1 convolution: NHWC `x`, kernel (1, 1, I, O), as one (B·H·W, I) x (I, O) matmul.
  The 2-D form, not an einsum over (b, h, w): XLA on CPU lays the einsum's derivatives out
  channel-major, with a copy of each activation, and R1's double backward of an R3GAN block
  (two 1x1 convolutions and a leaky ReLU, 64x32x32x64 -> 128) took 190-197 ms that way
  against 94-114 ms in this form (the same values)."""
  rows = x.reshape(-1, x.shape[-1]) @ kernel[0, 0]
  return rows.reshape(*x.shape[:-1], kernel.shape[-1])
