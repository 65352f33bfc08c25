"""DCGAN's resampling layers, Conv2d(4, 2, 1) and ConvTranspose2d(4, 2, 1), as NNX modules.

`conv_impl` names an implementation from conv_impls.py; 'auto' takes the fastest measured on
the backend: off CPU, XLA's own ops (cuDNN on GPUs); on CPU, per layer shape, one of the exact
forms with a hand-written backward pass through the layers' adjoints. The measurements behind
each choice are in benchmarks/RESULTS.md (`python benchmarks/layer_forms.py`).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax.models import winograd
from facegan_jax.models.conv_impls import DIMS, DOWN_IMPLS, UP_IMPLS, pad_down, space_to_depth
from facegan_jax.models.reductions import add_bias


def auto_down_impl(x, kernel):
  """The forward implementation 'auto' uses for Conv2d(4, 2, 1) on the default backend.

  Off CPU, XLA's own (cuDNN). On CPU, Winograd on feature maps and s2d on images, whose 3
  channels make a thin contraction (benchmarks/RESULTS.md, "Resampling layers").
  """
  del kernel
  if jax.default_backend() != 'cpu':
    return 'xla'
  return 's2d' if x.shape[-1] <= 4 else 'winograd'


def auto_up_impl(x, kernel):
  """The forward implementation 'auto' uses for ConvTranspose2d(4, 2, 1) on the default
  backend.

  Off CPU, XLA's own (cuDNN). On CPU: on small, wide inputs Winograd per output phase, where
  the s2d grid's extra row and column cost more than they save; Winograd on the s2d grid for
  wide inputs at 16 and up; s2d on narrow layers (benchmarks/RESULTS.md, "Resampling layers").
  """
  del kernel
  if jax.default_backend() != 'cpu':
    return 'xla'
  size, channels = x.shape[1], x.shape[-1]
  if channels >= 256 and size <= 8:
    return 'winograd_phase'
  return 'winograd' if channels >= 128 and size >= 16 else 's2d'


# ---------------------------------------------------------------------------------------------
# conv_impl='auto' on CPU: hand-written backward passes. The two layers are adjoint: with the
# kernel's in/out axes swapped, each one applied to the other's output gradient is that layer's
# input gradient. XLA's autodiff of a transposed convolution (of any of its forms) is 6-20x slower on
# CPU than PyTorch's, and its input gradient of the strided convolution is a slow transposed
# convolution too; through the adjoint each runs in the other layer's fastest forward form.
# Kernel gradients are the strided layer's (for the transposed layer: taken at its output
# gradient, with its input as cotangent), by XLA or in the Winograd form, per shape.


def _swap_io(kernel):
  return kernel.transpose(0, 1, 3, 2)


def _sum_over_unshared_axes(grad, param):
  """grad summed over the mesh axes it varies over and `param` does not (under shard_map: a
  replicated kernel's gradient from each device's share of the batch), as autodiff would."""
  axes = tuple(a for a in jax.typeof(grad).manual_axis_type.varying
               if a not in jax.typeof(param).manual_axis_type.varying)
  return jax.lax.psum(grad, axes) if axes else grad


def _channels_first_batch_last(x):
  """x.transpose(3, 1, 2, 0): (B, H, W, C) -> (C, H, W, B), the layout of the kernel
  gradients' convolutions below, in three passes that XLA on CPU runs ~3x faster than its one.

  As one transpose, XLA fuses it with the elementwise ops that produced x (a ReLU, a bias)
  into a loop that walks the output in order, so every element read is a cache miss: ~100 ms
  for a 64-channel 64x64 map at batch 64 inside the train step, ~30-40 ms here. The
  pixel-local transpose (B, C) -> (C, B) comes first, where each pixel's block stays in cache;
  a product with the identity (exact: each output is one input times 1 plus zeros) ends the
  fusion there; the last pass moves whole rows of B values (benchmarks/RESULTS.md,
  "Transposes in the kernel gradients"). Below 2**22 elements (the quickstart's maps) the
  gain is small and the quickstart's step measured ~6% slower with it: the one transpose stays.
  """
  if x.size < 2**22:
    return x.transpose(3, 1, 2, 0)
  b, h, w, c = x.shape
  rows = x.transpose(1, 2, 3, 0).reshape(h * w * c, b)
  rows = jnp.dot(rows, jnp.eye(b, dtype=x.dtype), precision=jax.lax.Precision.HIGHEST)
  return rows.reshape(h, w, c, b).transpose(2, 0, 1, 3)


def _s2d_kernel_inverse(s2d_kernel):
  """(2, 2, 4C, O) -> (4, 4, C, O), undoing conv_impls._s2d_kernel (its inverse)."""
  c, o = s2d_kernel.shape[2] // 4, s2d_kernel.shape[3]
  k = s2d_kernel.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
  return k.reshape(4, 4, c, o)


def _down_kernel_grad(x, kernel, g):
  """The strided layer's kernel gradient: on CPU in the Winograd form for inputs of 128
  channels and more, XLA's elsewhere (benchmarks/RESULTS.md, "Resampling layers")."""
  g = g.astype(x.dtype)
  if jax.default_backend() == 'cpu' and x.shape[-1] >= 128:
    s2d_grad = winograd.conv2x2_kernel_grad(space_to_depth(pad_down(x)), g)
    return _sum_over_unshared_axes(_s2d_kernel_inverse(s2d_grad), kernel)
  # dkernel[y, x', c, o] = sum over b, i, j of padded_x[b, 2i + y, 2j + x', c] * g[b, i, j, o]:
  # a convolution with c as batch, b as feature and g dilated by 2 as kernel, written in the
  # layouts XLA's CPU convolution kernels take (as XLA itself rewrites it, but only in the
  # entry computation: inside a while loop the untransposed form runs ~30x slower).
  pad = [(1, 2 * n + 1 - size) for n, size in zip(g.shape[1:3], x.shape[1:3])]
  dkernel = jax.lax.conv_general_dilated(
      _channels_first_batch_last(x), g.transpose(1, 2, 0, 3), (1, 1), pad, rhs_dilation=(2, 2),
      dimension_numbers=DIMS)
  return _sum_over_unshared_axes(dkernel.transpose(1, 2, 0, 3), kernel)


def _with_backward(forward, backward):
  """forward(x, kernel) with the hand-written backward(x, kernel, g) -> (dx, dkernel)."""
  layer = jax.custom_vjp(forward)
  layer.defvjp(lambda x, kernel: (forward(x, kernel), (x, kernel)),
               lambda res, g: backward(*res, g))
  return layer


def _down_auto_bwd(x, kernel, g):
  # An odd last input row/column is still read by the last output: pad g by one so the
  # transposed layer reaches it, then crop.
  g_even = jnp.pad(g, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
  adjoint = _swap_io(kernel)
  dx = UP_IMPLS[auto_up_impl(g_even, adjoint)](g_even, adjoint)[:, :x.shape[1], :x.shape[2]]
  return dx.astype(x.dtype), _down_kernel_grad(x, kernel, g).astype(kernel.dtype)


def _up_auto_bwd(x, kernel, g):
  adjoint = _swap_io(kernel)
  dx = DOWN_IMPLS[auto_down_impl(g, adjoint)](g, adjoint)
  dw = _swap_io(_down_kernel_grad(g, adjoint, x))
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


_down_auto = _with_backward(lambda x, k: DOWN_IMPLS[auto_down_impl(x, k)](x, k), _down_auto_bwd)
_up_auto = _with_backward(lambda x, k: UP_IMPLS[auto_up_impl(x, k)](x, k), _up_auto_bwd)


def autodiff_down(x):
  """Whether auto's Conv2d(4, 2, 1) on CPU keeps its Winograd forward form with XLA's autodiff
  of it instead of the hand-written backward pass: on inputs of 128 channels and more at
  16x16 and below, where the adjoint layer's forms and the kernel gradient have too few pixels
  to pay for their transforms (fwd+bwd at batch 64: 24 against 139 ms for 512->1024 at 4x4,
  16 against 31 ms for 256->512 at 8x8, 19 against 28 ms for 128->256 at 16x16; below 128
  channels or above 16x16 the hand-written pass is as fast or faster; benchmarks/RESULTS.md,
  "Resampling layers on few pixels")."""
  return x.shape[-1] >= 128 and max(x.shape[1:3]) <= 16


def autodiff_up(x):
  """The same for ConvTranspose2d(4, 2, 1): its per-phase Winograd form, autodiffed, from
  1,024 channels at 4x4 (98 against 143 ms; at 512 channels the two are level)."""
  return x.shape[-1] >= 1024 and max(x.shape[1:3]) <= 4


def _conv_3x3_xla(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=DIMS)


def auto_3x3_impl(kernel):
  """The forward form 'auto' uses for the 3x3 convolution on CPU: Winograd F(2x2, 3x3)
  between layers of 128 channels and more (1.2x XLA's own at 128, 1.7-1.8x at 256 and up),
  XLA's own elsewhere (benchmarks/RESULTS.md, "The ResNets' 3x3 convolutions")."""
  return 'winograd' if min(kernel.shape[2:]) >= 128 else 'xla'


def _conv_3x3_forward(x, kernel):
  if auto_3x3_impl(kernel) == 'winograd':
    return winograd.conv3x3(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), kernel)
  return _conv_3x3_xla(x, kernel)


def _conv_3x3_bwd(x, kernel, g):
  """The 3x3 convolution's input gradient is the 3x3 convolution of g with the kernel flipped
  and its in/out axes swapped; its kernel gradient, dkernel[u, v, c, o] = sum over b, i, j of
  padded_x[b, i + u, j + v, c] * g[b, i, j, o], is a convolution with c as batch and b as
  feature, in the layouts XLA's CPU kernels take (faster than Winograd's kernel gradient
  here). XLA's autodiff writes the untransposed form, which inside the train step's loop runs
  ~50x slower."""
  g = g.astype(x.dtype)
  dx = _conv_3x3_auto(g, _swap_io(kernel[::-1, ::-1]))
  dkernel = _conv_3x3_xla(_channels_first_batch_last(x), g.transpose(1, 2, 0, 3))
  dkernel = _sum_over_unshared_axes(dkernel.transpose(1, 2, 0, 3), kernel)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_conv_3x3_auto = _with_backward(_conv_3x3_forward, _conv_3x3_bwd)


def conv_3x3(x, kernel, conv_impl='auto'):
  """Conv2d(kernel_size=3, stride=1, padding=1) on NHWC input. Off CPU, or with `conv_impl`
  'xla', XLA's own op; on CPU otherwise (the stride-2 layers' other implementation names mean
  'auto' here), the forms above with their hand-written backward pass."""
  if conv_impl == 'xla' or jax.default_backend() != 'cpu':
    return _conv_3x3_xla(x, kernel)
  return _conv_3x3_auto(x, kernel)


def conv_4x2(x, kernel, conv_impl='auto'):
  """PyTorch's Conv2d(kernel_size=4, stride=2, padding=1) on NHWC input.

  `conv_impl` names an implementation; one that exists only for the transposed layer means
  'auto' here.
  """
  if conv_impl in DOWN_IMPLS:
    return DOWN_IMPLS[conv_impl](x, kernel)
  if jax.default_backend() != 'cpu':
    return DOWN_IMPLS[auto_down_impl(x, kernel)](x, kernel)
  if autodiff_down(x):
    return DOWN_IMPLS['winograd'](x, kernel)
  return _down_auto(x, kernel)


def conv_transpose_4x2(x, kernel, conv_impl='auto'):
  """PyTorch's ConvTranspose2d(kernel_size=4, stride=2, padding=1) on NHWC input.

  `conv_impl` names an implementation; one that exists only for the strided layer means
  'auto' here.
  """
  if conv_impl in UP_IMPLS:
    return UP_IMPLS[conv_impl](x, kernel)
  if jax.default_backend() != 'cpu':
    return UP_IMPLS[auto_up_impl(x, kernel)](x, kernel)
  if autodiff_up(x):
    return UP_IMPLS['winograd_phase'](x, kernel)
  return _up_auto(x, kernel)


class _Resample(nnx.Module):
  """A 4x4 stride-2 (transposed) convolution with DCGAN's N(0, 0.02) init."""

  def __init__(self, in_features, out_features, *, use_bias=False, conv_impl='auto', rngs):
    init = nnx.initializers.normal(0.02)
    self.kernel = nnx.Param(init(rngs.params(), (4, 4, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.conv_impl = conv_impl

  def __call__(self, x):
    y = self._op(x, self.kernel[...].astype(x.dtype), self.conv_impl)
    if self.bias is not None:
      y = add_bias(y, self.bias[...])
    return y


class DownConv(_Resample):
  """Halves the resolution: Conv2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_4x2)


class UpConv(_Resample):
  """Doubles the resolution: ConvTranspose2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_transpose_4x2)
