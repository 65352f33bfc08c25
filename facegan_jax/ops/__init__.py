"""The convolutions the models compute, each choosing its own form by backend.

Model code says what it computes (`ops.conv_4x2(x, kernel)`, "a 4x4 stride-2 convolution")
and never how. Off CPU that is XLA's own op (cuDNN on GPUs); on CPU, exact forms with
hand-written backward passes, because XLA's CPU convolutions and its autodiff of them are
the slow part of a step there (cpu.py chooses per layer shape, forms.py and winograd.py
compute them; benchmarks/RESULTS.md, "Resampling layers"). Every form equals XLA's op to
float rounding, forward and backward (tests/test_ops.py).

`--conv_impl=xla` runs XLA's own ops everywhere, the reference: `set_forms` applies it once
for the process (state.init_state calls it from the config); `form=` picks one form for a single
call, for tests and benchmarks.
"""

import contextlib

import jax
import jax.numpy as jnp

from facegan_jax.ops import cpu, grouped, winograd
from facegan_jax.ops.forms import DOWN_FORMS, UP_FORMS
from facegan_jax.ops.lowpass import conv_1x1, downsample_lowpass, upsample_lowpass
from facegan_jax.ops.reductions import add_bias, channel_sums

_forms = 'auto'


def set_forms(name):
  """Every later trace of the convolutions runs in `name`'s forms: 'auto', 'xla', or a form
  of forms.py (the other layer's name means 'auto' for it)."""
  global _forms
  _forms = name


@contextlib.contextmanager
def using_forms(name):
  """`set_forms(name)` for the traces inside the block."""
  previous = _forms
  set_forms(name)
  try:
    yield
  finally:
    set_forms(previous)


def _form(form):
  return _forms if form is None else form


def _on_cpu():
  return jax.default_backend() == 'cpu'


def conv_4x2(x, kernel, form=None):
  """PyTorch's Conv2d(kernel_size=4, stride=2, padding=1) on NHWC input, kernel (4, 4, I, O)
  (PyTorch's weight w[o, i, y, x] is kernel[y, x, i, o])."""
  form = _form(form)
  if form in DOWN_FORMS:
    return DOWN_FORMS[form](x, kernel)
  return cpu.conv_4x2(x, kernel) if _on_cpu() else DOWN_FORMS['xla'](x, kernel)


def conv_transpose_4x2(x, kernel, form=None):
  """PyTorch's ConvTranspose2d(kernel_size=4, stride=2, padding=1) on NHWC input, kernel
  (4, 4, I, O) (PyTorch's weight w[i, o, y, x] is kernel[y, x, i, o])."""
  form = _form(form)
  if form in UP_FORMS:
    return UP_FORMS[form](x, kernel)
  return cpu.conv_transpose_4x2(x, kernel) if _on_cpu() else UP_FORMS['xla'](x, kernel)


def conv_3x3(x, kernel, form=None):
  """Conv2d(kernel_size=3, stride=1, padding=1) on NHWC input, kernel (3, 3, I, O). Forms of
  the resampling layers other than 'xla' mean 'auto' here."""
  if _form(form) == 'xla' or not _on_cpu():
    return cpu.conv_3x3_xla(x, kernel)
  return cpu.conv_3x3(x, kernel)


def grouped_conv_3x3(x, kernel, groups, form=None):
  """Conv2d(3, stride 1, padding 1, groups) on NHWC input, kernel (3, 3, I / groups, O).
  `form` one of grouped.FORMS; forms of the other layers mean 'auto' here."""
  form = _form(form)
  if form == 'xla' or not _on_cpu():
    return grouped.xla(x, kernel, groups)
  if form in grouped.FORMS:
    return grouped.FORMS[form](x, kernel, groups)
  return grouped.FORMS[grouped.cpu_form(groups)](x, kernel, groups)


# ---------------------------------------------------------------------------------------------
# SNGAN's resampling 3x3 convolutions, folded exactly into the 4x4 stride-2 ones:
# - nearest 2x upsampling then conv3x3 (padding 1) is ConvTranspose(4, 2, 1) with the kernel
#   fold_up(K3): each output phase reads 2x2 input pixels, and each of its taps sums the 3x3
#   taps that land on the same input pixel;
# - conv3x3 (padding 1) then 2x2 average pooling is Conv(4, 2, 1) with the kernel
#   fold_down(K3)[u, v] = 1/4 sum_{a, b in {0, 1}} K3[u - a, v - b].
# Both take 16 instead of 36 multiplies per output. K3's taps that each of ConvTranspose(4, 2,
# 1)'s kernel rows sums (forms.TAPS: output row 2m reads input m - 1 through kernel row 3 and m
# through row 1; row 2m + 1 reads m through row 2 and m + 1 through row 0), and Conv(4, 2,
# 1)'s from the 2x2 pooling window:
_UP = ((0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0))
_DOWN = ((1, 0, 0), (1, 1, 0), (0, 1, 1), (0, 0, 1))


def fold_up(kernel):
  """(3, 3, I, O) kernel of nearest-2x-upsample-then-conv3x3 -> its ConvTranspose(4, 2, 1)
  kernel (4, 4, I, O), as sums of kernel slices (as an einsum XLA on CPU makes it a thin
  matmul and its transposes)."""
  return winograd.transform_kernel(_UP, kernel)


def fold_down(kernel):
  """(3, 3, I, O) kernel of conv3x3-then-2x2-average-pool -> its Conv(4, 2, 1) kernel."""
  return winograd.transform_kernel(_DOWN, kernel) * jnp.asarray(0.25, kernel.dtype)


def upsample_conv_3x3(x, kernel, form=None):
  """Nearest-neighbour 2x upsampling, then Conv2d(3, 1, 1) with `kernel` (3, 3, I, O)."""
  return conv_transpose_4x2(x, fold_up(kernel), form)


def conv_3x3_avg_pool(x, kernel, form=None):
  """Conv2d(3, 1, 1) with `kernel` (3, 3, I, O), then 2x2 average pooling."""
  return conv_4x2(x, fold_down(kernel), form)


__all__ = ['add_bias', 'channel_sums', 'conv_1x1', 'conv_3x3', 'conv_3x3_avg_pool', 'conv_4x2',
           'conv_transpose_4x2', 'downsample_lowpass', 'fold_down', 'fold_up',
           'grouped_conv_3x3', 'set_forms', 'upsample_conv_3x3', 'upsample_lowpass',
           'using_forms']
