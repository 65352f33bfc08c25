"""The DCGAN resampling layers: Conv2d(4, 2, 1) and ConvTranspose2d(4, 2, 1).

Kernels are stored as (4, 4, in, out), i.e. PyTorch's Conv2d weight `w[o, i, y, x]` is
`kernel[y, x, i, o]` and its ConvTranspose2d weight `w[i, o, y, x]` is `kernel[y, x, i, o]`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax.models import winograd
from facegan_jax.models.batchnorm import add_bias

DIMS = ('NHWC', 'HWIO', 'NHWC')

# ConvTranspose2d(4, 2, 1): output row 2m + a reads padded input rows m + a + d, d in {0, 1},
# through kernel row TAPS[a][d] (row 2m: input m - 1 via kernel row 3, m via row 1; row 2m + 1:
# m via row 2, m + 1 via row 0). Columns likewise.
TAPS = ((3, 1), (2, 0))


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=DIMS)


def _matmul(x, kernel):
  """x (..., K) @ kernel (K, O)."""
  return jnp.dot(x, kernel.astype(x.dtype))


# ---------------------------------------------------------------------------------------------
# Conv2d(4, 2, 1): (B, H, W, C) -> (B, H // 2, W // 2, O).


def _pad_down(x):
  """Pads by PyTorch's 1, trimmed so the padded size is even: 2 * (H // 2) + 2."""
  h, w = x.shape[1:3]
  return jnp.pad(x, ((0, 0), (1, 1 - h % 2), (1, 1 - w % 2), (0, 0)))


def _space_to_depth(x):
  """(B, 2H, 2W, C) -> (B, H, W, 4C), channels ordered (a, b, c) for pixel (2h + a, 2w + b)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // 2, w // 2, 4 * c)


def _s2d_kernel(kernel):
  """(4, 4, C, O) -> (2, 2, 4C, O): kernel row 2 * dy + a becomes tap dy of s2d channel a."""
  c, o = kernel.shape[2:]
  k = kernel.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
  return k.reshape(2, 2, 4 * c, o)


def _down_xla(x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=DIMS)


def _down_patches(x, kernel):
  """16 strided slices of the padded input, concatenated, then one matmul."""
  h, w = x.shape[1] // 2, x.shape[2] // 2
  xp = _pad_down(x)
  cols = jnp.concatenate([xp[:, dy:dy + 2 * h:2, dx:dx + 2 * w:2]
                          for dy in range(4) for dx in range(4)], axis=-1)
  return _matmul(cols, kernel.reshape(-1, kernel.shape[-1]))


def _down_s2d(x, kernel):
  return _conv(_space_to_depth(_pad_down(x)), _s2d_kernel(kernel))


def _down_winograd(x, kernel):
  return winograd.conv2x2(_space_to_depth(_pad_down(x)), _s2d_kernel(kernel))


# ---------------------------------------------------------------------------------------------
# ConvTranspose2d(4, 2, 1): (B, H, W, C) -> (B, 2H, 2W, O).


def _pad1(x):
  """Zero-pads the two spatial axes (1 and 2) by one on each side."""
  return jnp.pad(x, ((0, 0), (1, 1), (1, 1)) + ((0, 0),) * (x.ndim - 3))


def _interleave(phases):
  """(B, H, W, 2, 2, O) with phase (a, b) at [..., a, b, :] -> (B, 2H, 2W, O)."""
  b, h, w, _, _, o = phases.shape
  return phases.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, o)


def _phase_kernel(kernel, a, b):
  """The 2x2 kernel of output phase (a, b), taps in padded-input order."""
  return kernel[jnp.array(TAPS[a])][:, jnp.array(TAPS[b])]


def _up_xla(x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
      dimension_numbers=DIMS)


def _up_phase(x, kernel, conv=_conv):
  h, w = x.shape[1:3]
  xp = _pad1(x)
  phases = [[conv(xp[:, a:a + h + 1, b:b + w + 1], _phase_kernel(kernel, a, b))
             for b in range(2)] for a in range(2)]
  return _interleave(jnp.stack([jnp.stack(p, axis=3) for p in phases], axis=3))


def _up_winograd_phase(x, kernel):
  return _up_phase(x, kernel, conv=winograd.conv2x2)


def _s2d_adjoint_kernel(kernel):
  """(4, 4, C, O) -> (2, 2, C, 4O): tap (dy, dx) to output phase (a, b) is kernel row
  2 - 2 * dy + a, column 2 - 2 * dx + b."""
  c, o = kernel.shape[2:]
  k = kernel.reshape(2, 2, 2, 2, c, o)[::-1, :, ::-1]  # rows (1 - dy, a) -> (dy, a)
  return k.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, c, 4 * o)


def _up_s2d(x, kernel, conv=_conv):
  """The s2d down form's adjoint: a 2x2 convolution of the padded input to the four output
  phases of an (H + 1) x (W + 1) space-to-depth grid, whose border half-cells are cropped."""
  y = conv(_pad1(x), _s2d_adjoint_kernel(kernel))
  y = _interleave(y.reshape(*y.shape[:3], 2, 2, -1))
  return y[:, 1:-1, 1:-1]


def _up_winograd(x, kernel):
  return _up_s2d(x, kernel, conv=winograd.conv2x2)


def _up_col2im(x, kernel):
  """One matmul to all 16 taps per input pixel, then overlap-add (PyTorch's gemm + col2im)."""
  h, w = x.shape[1:3]
  c, o = kernel.shape[2:]
  cols = _matmul(x, kernel.transpose(2, 0, 1, 3).reshape(c, 16 * o))
  cols = _pad1(cols.reshape(*cols.shape[:3], 4, 4, o))
  phases = [[sum(cols[:, a + dy:a + dy + h, b + dx:b + dx + w, TAPS[a][dy], TAPS[b][dx]]
                 for dy in range(2) for dx in range(2))
             for b in range(2)] for a in range(2)]
  return _interleave(jnp.stack([jnp.stack(p, axis=3) for p in phases], axis=3))


DOWN_FORMS = dict(xla=_down_xla, patches=_down_patches, s2d=_down_s2d, winograd=_down_winograd)
UP_FORMS = dict(xla=_up_xla, phase=_up_phase, s2d=_up_s2d, col2im=_up_col2im,
                winograd=_up_winograd, winograd_phase=_up_winograd_phase)


def auto_down_form(x, kernel):
  """The forward form `impl='auto'` uses for Conv2d(4, 2, 1) on the default backend.

  Off CPU, XLA's own (cuDNN). On CPU (benchmarks/layer_forms.py, forward, batch 64, ms): the
  Winograd form on feature maps (64->128 @32 21.0 vs XLA's 23.4; 128->256 @16 29.4 vs 40.3;
  256->512 @8 17.2 vs 21.9), s2d on images, whose 3 channels make a thin contraction (3->64
  @64 3.6 vs 5.7 XLA, 7.1 Winograd).
  """
  del kernel
  if jax.default_backend() != 'cpu':
    return 'xla'
  return 's2d' if x.shape[-1] <= 4 else 'winograd'


def auto_up_form(x, kernel):
  """The forward form `impl='auto'` uses for ConvTranspose2d(4, 2, 1) on the default backend.

  Off CPU, XLA's own (cuDNN). On CPU (benchmarks/layer_forms.py, forward, batch 64, ms): on
  small, wide inputs Winograd per output phase (512->256 @4 20.0 vs XLA's 27.3; 256->128 @8
  23.0 vs 28.5), where the s2d grid's extra row and column cost more than they save; Winograd
  on the s2d grid for wide inputs at 16 and up (128->64 @16 26.9 vs s2d 27.8, XLA 38.9); s2d
  on narrow layers (64->3 @32 6.5 vs 8.2 XLA, 10.4 Winograd; 64->32 @8 2.0 vs 3.0 XLA).
  """
  del kernel
  if jax.default_backend() != 'cpu':
    return 'xla'
  size, channels = x.shape[1], x.shape[-1]
  if channels >= 256 and size <= 8:
    return 'winograd_phase'
  return 'winograd' if channels >= 128 and size >= 16 else 's2d'


# ---------------------------------------------------------------------------------------------
# impl='auto' on CPU: hand-written backward passes. The two layers are adjoint: with the kernel's
# in/out axes swapped, each one applied to the other's output gradient is that layer's input
# gradient. XLA's autodiff of a transposed convolution (of any of its forms) is 6-20x slower on
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


def _s2d_kernel_inverse(s2d_kernel):
  """(2, 2, 4C, O) -> (4, 4, C, O), undoing `_s2d_kernel`."""
  c, o = s2d_kernel.shape[2] // 4, s2d_kernel.shape[3]
  k = s2d_kernel.reshape(2, 2, 2, 2, c, o).transpose(0, 2, 1, 3, 4, 5)
  return k.reshape(4, 4, c, o)


def _down_kernel_grad(x, kernel, g):
  """The strided layer's kernel gradient. On CPU, in the Winograd form for inputs of 128
  channels and more (benchmarks/layer_forms.py: 128->256 @16 23.9 vs 27.8 ms; 256->512 @8
  21.8 vs 26.0), XLA's elsewhere (64->128 @32 31.8 vs 33.0, within noise; 3->64 @64 11.3 vs
  10.0)."""
  g = g.astype(x.dtype)
  if jax.default_backend() == 'cpu' and x.shape[-1] >= 128:
    s2d_grad = winograd.conv2x2_kernel_grad(_space_to_depth(_pad_down(x)), g)
    return _sum_over_unshared_axes(_s2d_kernel_inverse(s2d_grad), kernel)
  # dkernel[y, x', c, o] = sum over b, i, j of padded_x[b, 2i + y, 2j + x', c] * g[b, i, j, o]:
  # a convolution with c as batch, b as feature and g dilated by 2 as kernel, written in the
  # layouts XLA's CPU convolution kernels take (as XLA itself rewrites it, but only in the
  # entry computation: inside a while loop the untransposed form runs ~30x slower).
  pad = [(1, 2 * n + 1 - size) for n, size in zip(g.shape[1:3], x.shape[1:3])]
  dkernel = jax.lax.conv_general_dilated(
      x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1), pad, rhs_dilation=(2, 2),
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
  dx = UP_FORMS[auto_up_form(g_even, adjoint)](g_even, adjoint)[:, :x.shape[1], :x.shape[2]]
  return dx.astype(x.dtype), _down_kernel_grad(x, kernel, g).astype(kernel.dtype)


def _up_auto_bwd(x, kernel, g):
  adjoint = _swap_io(kernel)
  dx = DOWN_FORMS[auto_down_form(g, adjoint)](g, adjoint)
  dw = _swap_io(_down_kernel_grad(g, adjoint, x))
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


_down_auto = _with_backward(lambda x, k: DOWN_FORMS[auto_down_form(x, k)](x, k), _down_auto_bwd)
_up_auto = _with_backward(lambda x, k: UP_FORMS[auto_up_form(x, k)](x, k), _up_auto_bwd)


IMPLS = ('auto',) + tuple(DOWN_FORMS) + tuple(f for f in UP_FORMS if f not in DOWN_FORMS)


def conv_4x2(x, kernel, impl='auto'):
  """PyTorch's Conv2d(kernel_size=4, stride=2, padding=1) on NHWC input.

  `impl` names a form; one that exists only for the transposed layer means 'auto' here.
  """
  if impl in DOWN_FORMS:
    return DOWN_FORMS[impl](x, kernel)
  if jax.default_backend() != 'cpu':
    return DOWN_FORMS[auto_down_form(x, kernel)](x, kernel)
  return _down_auto(x, kernel)


def conv_transpose_4x2(x, kernel, impl='auto'):
  """PyTorch's ConvTranspose2d(kernel_size=4, stride=2, padding=1) on NHWC input.

  `impl` names a form; one that exists only for the strided layer means 'auto' here.
  """
  if impl in UP_FORMS:
    return UP_FORMS[impl](x, kernel)
  if jax.default_backend() != 'cpu':
    return UP_FORMS[auto_up_form(x, kernel)](x, kernel)
  return _up_auto(x, kernel)


class _Resample(nnx.Module):
  """A 4x4 stride-2 (transposed) convolution with DCGAN's N(0, 0.02) init."""

  def __init__(self, in_features, out_features, *, use_bias=False, impl='auto', rngs):
    init = nnx.initializers.normal(0.02)
    self.kernel = nnx.Param(init(rngs.params(), (4, 4, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.impl = impl

  def __call__(self, x):
    y = self._op(x, self.kernel[...].astype(x.dtype), self.impl)
    if self.bias is not None:
      y = add_bias(y, self.bias[...])
    return y


class DownConv(_Resample):
  """Halves the resolution: Conv2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_4x2)


class UpConv(_Resample):
  """Doubles the resolution: ConvTranspose2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_transpose_4x2)
