"""The DCGAN resampling layers: Conv2d(4, 2, 1) and ConvTranspose2d(4, 2, 1).

Kernels are stored as (4, 4, in, out), i.e. PyTorch's Conv2d weight `w[o, i, y, x]` is
`kernel[y, x, i, o]` and its ConvTranspose2d weight `w[i, o, y, x]` is `kernel[y, x, i, o]`.
"""

import jax
import jax.numpy as jnp
from flax import nnx

DIMS = ('NHWC', 'HWIO', 'NHWC')

# ConvTranspose2d(4, 2, 1): output row 2m + a reads padded input rows m + a + d, d in {0, 1},
# through kernel row TAPS[a][d] (row 2m: input m - 1 via kernel row 3, m via row 1; row 2m + 1:
# m via row 2, m + 1 via row 0). Columns likewise.
TAPS = ((3, 1), (2, 0))


def _conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID', dimension_numbers=DIMS)


def _patches(x, size, height, width):
  """(B, H', W', C) -> (B, height, width, size * size * C), channels ordered (dy, dx, c)."""
  return jnp.concatenate([x[:, dy:dy + height, dx:dx + width]
                          for dy in range(size) for dx in range(size)], axis=-1)


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


def _down_s2d_matmul(x, kernel):
  h, w = x.shape[1] // 2, x.shape[2] // 2
  cols = _patches(_space_to_depth(_pad_down(x)), 2, h, w)
  return _matmul(cols, _s2d_kernel(kernel).reshape(-1, kernel.shape[-1]))


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


def _d2s_kernel(kernel):
  """(4, 4, C, O) -> (3, 3, C, 4O): all four phase kernels in one 3x3 window, zeros elsewhere."""
  c, o = kernel.shape[2:]
  k = jnp.zeros((3, 3, c, 2, 2, o), kernel.dtype)
  for a in range(2):
    for b in range(2):
      k = k.at[a:a + 2, b:b + 2, :, a, b].set(_phase_kernel(kernel, a, b))
  return k.reshape(3, 3, c, 4 * o)


def _up_xla(x, kernel):
  return jax.lax.conv_general_dilated(
      x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
      dimension_numbers=DIMS)


def _up_phase(x, kernel):
  h, w = x.shape[1:3]
  xp = _pad1(x)
  phases = [[_conv(xp[:, a:a + h + 1, b:b + w + 1], _phase_kernel(kernel, a, b))
             for b in range(2)] for a in range(2)]
  return _interleave(jnp.stack([jnp.stack(p, axis=3) for p in phases], axis=3))


def _up_phase_matmul(x, kernel):
  h, w = x.shape[1:3]
  xp = _pad1(x)
  phases = [[_matmul(_patches(xp[:, a:, b:], 2, h, w),
                     _phase_kernel(kernel, a, b).reshape(-1, kernel.shape[-1]))
             for b in range(2)] for a in range(2)]
  return _interleave(jnp.stack([jnp.stack(p, axis=3) for p in phases], axis=3))


def _up_phase_einsum(x, kernel):
  h, w = x.shape[1:3]
  xp = _pad1(x)
  cols = jnp.stack([_patches(xp[:, a:, b:], 2, h, w) for a in range(2) for b in range(2)], 3)
  k = jnp.stack([_phase_kernel(kernel, a, b).reshape(-1, kernel.shape[-1])
                 for a in range(2) for b in range(2)])
  y = jnp.einsum('bhwpk,pko->bhwpo', cols, k.astype(x.dtype))
  return _interleave(y.reshape(*y.shape[:3], 2, 2, -1))


def _up_d2s(x, kernel):
  y = _conv(_pad1(x), _d2s_kernel(kernel))
  return _interleave(y.reshape(*y.shape[:3], 2, 2, -1))


def _up_d2s_matmul(x, kernel):
  h, w = x.shape[1:3]
  y = _matmul(_patches(_pad1(x), 3, h, w), _d2s_kernel(kernel).reshape(-1, 4 * kernel.shape[-1]))
  return _interleave(y.reshape(*y.shape[:3], 2, 2, -1))


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


DOWN_FORMS = dict(xla=_down_xla, patches=_down_patches, s2d=_down_s2d,
                  s2d_matmul=_down_s2d_matmul)
UP_FORMS = dict(xla=_up_xla, phase=_up_phase, phase_matmul=_up_phase_matmul,
                phase_einsum=_up_phase_einsum, d2s=_up_d2s, d2s_matmul=_up_d2s_matmul,
                col2im=_up_col2im)


def auto_down_form(x, kernel):
  """The forward form `impl='auto'` uses for Conv2d(4, 2, 1): XLA's strided convolution.

  On CPU it is the fastest forward form or within noise of it at every DCGAN layer shape
  (benchmarks/layer_forms.py); elsewhere it lowers to the vendor library (cuDNN).
  """
  del x, kernel
  return 'xla'


def auto_up_form(x, kernel):
  """The forward form `impl='auto'` uses for ConvTranspose2d(4, 2, 1) on the default backend.

  Off CPU, XLA's own (cuDNN). On CPU, measured forward-only at batch 64 (ms, XLA's form first):
  512->256 @4 20 vs 23 (phase); 256->128 @8 40 vs 28 (phase); 128->64 @8 7 vs 11 (phase);
  128->64 @16 59 vs 33 (d2s); 64->32 @16 26 vs 12 (d2s); 64->3 @32 6 vs 11 (d2s).
  """
  if jax.default_backend() != 'cpu':
    return 'xla'
  size, (channels, out) = x.shape[1], kernel.shape[2:]
  if out <= 4 or size <= 4:
    return 'xla'
  if size >= 16:
    return 'd2s'
  return 'phase' if channels >= 256 else 'xla'


# ---------------------------------------------------------------------------------------------
# impl='auto' on CPU: hand-written backward passes. The two layers are adjoint: with the kernel's
# in/out axes swapped, each one applied to the other's output gradient is that layer's input
# gradient. XLA's autodiff of a transposed convolution (of any of its forms) is 6-20x slower on
# CPU than PyTorch's, and its input gradient of the strided convolution is a slow transposed
# convolution too; through the adjoint each runs in the other layer's fastest forward form.
# Kernel gradients come from XLA's weight gradient of the strided convolution, the fastest of the
# forms measured (for the transposed layer: taken at its output gradient, with its input as
# cotangent).


def _swap_io(kernel):
  return kernel.transpose(0, 1, 3, 2)


def _down_kernel_grad(x, kernel, g):
  _, kernel_vjp = jax.vjp(lambda k: _down_xla(x, k), kernel)
  return kernel_vjp(g.astype(x.dtype))[0]


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
      y = y + self.bias[...].astype(y.dtype)
    return y


class DownConv(_Resample):
  """Halves the resolution: Conv2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_4x2)


class UpConv(_Resample):
  """Doubles the resolution: ConvTranspose2d(in, out, 4, 2, 1)."""
  _op = staticmethod(conv_transpose_4x2)
