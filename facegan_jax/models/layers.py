"""The DCGAN resampling layers: Conv2d(4, 2, 1) and ConvTranspose2d(4, 2, 1).

Kernels are stored as (4, 4, in, out), i.e. PyTorch's Conv2d weight `w[o, i, y, x]` is
`kernel[y, x, i, o]` and its ConvTranspose2d weight `w[i, o, y, x]` is `kernel[y, x, i, o]`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

DIMS = ('NHWC', 'HWIO', 'NHWC')


def conv_4x2(x, kernel, impl='auto'):
  """PyTorch's Conv2d(kernel_size=4, stride=2, padding=1) on NHWC input."""
  del impl
  return jax.lax.conv_general_dilated(
      x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)


def conv_transpose_4x2(x, kernel, impl='auto'):
  """PyTorch's ConvTranspose2d(kernel_size=4, stride=2, padding=1) on NHWC input."""
  del impl
  return jax.lax.conv_general_dilated(
      x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
      dimension_numbers=DIMS)


class _Resample(nnx.Module):
  """A 4x4 stride-2 (transposed) convolution with DCGAN's N(0, 0.02) init."""

  def __init__(self, in_features, out_features, *, use_bias=False, impl='auto', rngs):
    init = nnx.initializers.normal(0.02)
    self.kernel = nnx.Param(init(rngs.params(), (4, 4, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.impl = impl

  def __call__(self, x):
    y = self._op(x, self.kernel.value.astype(x.dtype), self.impl)
    if self.bias is not None:
      y = y + self.bias.value.astype(y.dtype)
    return y


class DownConv(_Resample):
  """Halves the resolution: Conv2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_4x2)


class UpConv(_Resample):
  """Doubles the resolution: ConvTranspose2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_transpose_4x2)
