"""The exact forms of the 4x4 stride-2 convolution and its transpose, as pure functions
(x, kernel).

Conv2d(4, 2, 1) (`DOWN_FORMS`) and ConvTranspose2d(4, 2, 1) (`UP_FORMS`), each computed
several exact ways (XLA's own op, patches and a matmul, space-to-depth 2x2 convolutions,
Winograd, per output phase, col2im); which one runs where is cpu.py's choice. `patches`,
`phase` and `col2im` are never chosen: they stay as references for benchmarks/layer_forms.py.

Kernels are stored as (4, 4, in, out), i.e. PyTorch's Conv2d weight `w[o, i, y, x]` is
`kernel[y, x, i, o]` and its ConvTranspose2d weight `w[i, o, y, x]` is `kernel[y, x, i, o]`.
"""

import jax
import jax.numpy as jnp

from facegan_jax.ops import winograd

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


def pad_down(x):
  """Pads by PyTorch's 1, trimmed so the padded size is even: 2 * (H // 2) + 2."""
  h, w = x.shape[1:3]
  return jnp.pad(x, ((0, 0), (1, 1 - h % 2), (1, 1 - w % 2), (0, 0)))


def space_to_depth(x):
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
  xp = pad_down(x)
  cols = jnp.concatenate([xp[:, dy:dy + 2 * h:2, dx:dx + 2 * w:2]
                          for dy in range(4) for dx in range(4)], axis=-1)
  return _matmul(cols, kernel.reshape(-1, kernel.shape[-1]))


def _down_s2d(x, kernel):
  return _conv(space_to_depth(pad_down(x)), _s2d_kernel(kernel))


def _down_winograd(x, kernel):
  return winograd.conv2x2(space_to_depth(pad_down(x)), _s2d_kernel(kernel))


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


DOWN_FORMS = {'xla': _down_xla, 'patches': _down_patches, 's2d': _down_s2d,
              'winograd': _down_winograd}
UP_FORMS = {'xla': _up_xla, 'phase': _up_phase, 's2d': _up_s2d, 'col2im': _up_col2im,
            'winograd': _up_winograd, 'winograd_phase': _up_winograd_phase}
