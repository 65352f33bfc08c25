"""The convolutions' CPU forms: which exact form runs at each layer shape, and the
hand-written backward passes that keep XLA's slow CPU autodiff of them out of the step.

Each choice below was measured with `python benchmarks/layer_forms.py`; the figures are in
benchmarks/RESULTS.md under the section each docstring names.
"""

import jax
import jax.numpy as jnp

from facegan_jax.ops import winograd
from facegan_jax.ops.forms import DIMS, DOWN_FORMS, UP_FORMS, pad_down, space_to_depth


def down_form(x):
  """The forward form of Conv2d(4, 2, 1): Winograd on feature maps, s2d on images, whose 3
  channels make a thin contraction ("Resampling layers")."""
  return 's2d' if x.shape[-1] <= 4 else 'winograd'


def up_form(x):
  """The forward form of ConvTranspose2d(4, 2, 1): on small, wide inputs Winograd per output
  phase, where the s2d grid's extra row and column cost more than they save; Winograd on the
  s2d grid for wide inputs at 16 and up; s2d on narrow layers ("Resampling layers")."""
  size, channels = x.shape[1], x.shape[-1]
  if channels >= 256 and size <= 8:
    return 'winograd_phase'
  return 'winograd' if channels >= 128 and size >= 16 else 's2d'


def conv3x3_form(kernel):
  """The forward form of the 3x3 convolution: Winograd F(2x2, 3x3) between layers of 128
  channels and more, XLA's own elsewhere, where Winograd's transforms cost more than the
  multiplies they save (`python benchmarks/layer_forms.py --parts=3x3`)."""
  return 'winograd' if min(kernel.shape[2:]) >= 128 else 'xla'


def autodiff_down(x):
  """Whether Conv2d(4, 2, 1) keeps its Winograd forward form with XLA's autodiff of it instead
  of the hand-written backward pass: from 128 channels at 16x16 and below, where the adjoint
  layer's forms and the kernel gradient have too few pixels to pay for their transforms
  ("Resampling layers on few pixels")."""
  return x.shape[-1] >= 128 and max(x.shape[1:3]) <= 16


def autodiff_up(x):
  """The same for ConvTranspose2d(4, 2, 1), in its per-phase Winograd form: from 1,024
  channels at 4x4."""
  return x.shape[-1] >= 1024 and max(x.shape[1:3]) <= 4


# ---------------------------------------------------------------------------------------------
# Hand-written backward passes. The two resampling layers are adjoint: with the kernel's in/out
# axes swapped, each one applied to the other's output gradient is that layer's input gradient.
# XLA's CPU autodiff of a transposed convolution (of any of its forms) is slow against
# PyTorch's, and its input gradient of the strided convolution is a slow transposed
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


def channels_first_batch_last(x):
  """x.transpose(3, 1, 2, 0): (B, H, W, C) -> (C, H, W, B), the layout of the kernel
  gradients' convolutions below; on large maps in three passes.

  As one transpose, XLA fuses it with the elementwise ops that produced x (a ReLU, a bias)
  into a loop that walks the output in order, so every element read is a cache miss. The
  pixel-local transpose (B, C) -> (C, B) comes first, where each pixel's block stays in cache;
  a product with the identity (exact: each output is one input times 1 plus zeros) ends the
  fusion there; the last pass moves whole rows of B values. Below 2**22 elements the extra
  passes cost more than they save, and the one transpose stays ("Transposes in the kernel
  gradients").
  """
  if x.size < 2**22:
    return x.transpose(3, 1, 2, 0)
  b, h, w, c = x.shape
  rows = x.transpose(1, 2, 3, 0).reshape(h * w * c, b)
  rows = jnp.dot(rows, jnp.eye(b, dtype=x.dtype), precision=jax.lax.Precision.HIGHEST)
  return rows.reshape(h, w, c, b).transpose(2, 0, 1, 3)


def _s2d_kernel_inverse(s2d_kernel):
  """(2, 2, 4C, O) -> (4, 4, C, O), undoing forms._s2d_kernel (its inverse)."""
  c, o = s2d_kernel.shape[2] // 4, s2d_kernel.shape[3]
  k = s2d_kernel.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
  return k.reshape(4, 4, c, o)


def _down_kernel_grad(x, kernel, g):
  """The strided layer's kernel gradient: in the Winograd form for inputs of 128 channels
  and more, XLA's elsewhere ("Resampling layers")."""
  g = g.astype(x.dtype)
  if x.shape[-1] >= 128:
    s2d_grad = winograd.conv2x2_kernel_grad(space_to_depth(pad_down(x)), g)
    return _sum_over_unshared_axes(_s2d_kernel_inverse(s2d_grad), kernel)
  # dkernel[y, x', c, o] = sum over b, i, j of padded_x[b, 2i + y, 2j + x', c] * g[b, i, j, o]:
  # a convolution with c as batch, b as feature and g dilated by 2 as kernel, written in the
  # layouts XLA's CPU convolution kernels take (as XLA itself rewrites it, but only in the
  # entry computation: inside a while loop it keeps the untransposed form, a slow path).
  pad = [(1, 2 * n + 1 - size) for n, size in zip(g.shape[1:3], x.shape[1:3])]
  dkernel = jax.lax.conv_general_dilated(
      channels_first_batch_last(x), g.transpose(1, 2, 0, 3), (1, 1), pad, rhs_dilation=(2, 2),
      dimension_numbers=DIMS)
  return _sum_over_unshared_axes(dkernel.transpose(1, 2, 0, 3), kernel)


def _with_backward(forward, backward):
  """forward(x, kernel) with the hand-written backward(x, kernel, g) -> (dx, dkernel)."""
  layer = jax.custom_vjp(forward)
  layer.defvjp(lambda x, kernel: (forward(x, kernel), (x, kernel)),
               lambda res, g: backward(*res, g))
  return layer


def _down_bwd(x, kernel, g):
  # An odd last input row/column is still read by the last output: pad g by one so the
  # transposed layer reaches it, then crop.
  g_even = jnp.pad(g, ((0, 0), (0, x.shape[1] % 2), (0, x.shape[2] % 2), (0, 0)))
  adjoint = _swap_io(kernel)
  dx = UP_FORMS[up_form(g_even)](g_even, adjoint)[:, :x.shape[1], :x.shape[2]]
  return dx.astype(x.dtype), _down_kernel_grad(x, kernel, g).astype(kernel.dtype)


def _up_bwd(x, kernel, g):
  adjoint = _swap_io(kernel)
  dx = DOWN_FORMS[down_form(g)](g, adjoint)
  dw = _swap_io(_down_kernel_grad(g, adjoint, x))
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


_down = _with_backward(lambda x, k: DOWN_FORMS[down_form(x)](x, k), _down_bwd)
_up = _with_backward(lambda x, k: UP_FORMS[up_form(x)](x, k), _up_bwd)


def conv_3x3_xla(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                      dimension_numbers=DIMS)


def _conv_3x3_forward(x, kernel):
  if conv3x3_form(kernel) == 'winograd':
    return winograd.conv3x3(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), kernel)
  return conv_3x3_xla(x, kernel)


def _conv_3x3_bwd(x, kernel, g):
  """The 3x3 convolution's input gradient is the 3x3 convolution of g with the kernel flipped
  and its in/out axes swapped; its kernel gradient, dkernel[u, v, c, o] = sum over b, i, j of
  padded_x[b, i + u, j + v, c] * g[b, i, j, o], is a convolution with c as batch and b as
  feature, in the layouts XLA's CPU kernels take (which beat Winograd's kernel gradient at
  these shapes). XLA's autodiff writes the untransposed form, which XLA keeps inside the train
  step's loop, a slow path on CPU ("Transposes in the kernel gradients")."""
  g = g.astype(x.dtype)
  dx = conv_3x3(g, _swap_io(kernel[::-1, ::-1]))
  dkernel = conv_3x3_xla(channels_first_batch_last(x), g.transpose(1, 2, 0, 3))
  dkernel = _sum_over_unshared_axes(dkernel.transpose(1, 2, 0, 3), kernel)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


conv_3x3 = _with_backward(_conv_3x3_forward, _conv_3x3_bwd)


def conv_4x2(x, kernel):
  """Conv2d(4, 2, 1) in its CPU form at x's shape."""
  if autodiff_down(x):
    return DOWN_FORMS['winograd'](x, kernel)
  return _down(x, kernel)


def conv_transpose_4x2(x, kernel):
  """ConvTranspose2d(4, 2, 1) in its CPU form at x's shape."""
  if autodiff_up(x):
    return UP_FORMS['winograd_phase'](x, kernel)
  return _up(x, kernel)
