"""Grouped 3x3 convolutions (R3GAN's blocks), in forms that are fast on CPUs.

XLA's own grouped convolution (`feature_group_count`) runs its forward at about dense speed
on CPU, but its gradients take 20-40x a dense convolution of the same shape (the kernel
gradient becomes a `batch_group_count` convolution that XLA's CPU backend loops over), and
R1/R2 differentiate them twice. The exact forms here avoid it:
- 'dense': the block-diagonal dense kernel (zeros between groups) through the project's
  dense 3x3 convolution: `groups` times the multiplies at the speed of XLA's dense kernels.
  The CPU form up to DENSE_MAX_GROUPS groups. Inside a loop (--steps_per_call above 1) XLA
  keeps its twice-differentiated convolutions in slow untransposed forms: there it is ~15x
  slower than in a one-step call.
- 'split': one dense 3x3 convolution per group on its slice of the channels, stacked: the
  grouped FLOPs, and every derivative a dense convolution of a group's size. The CPU form
  above DENSE_MAX_GROUPS groups: with 8 groups of 16 channels (a 64x16x16x128 map) its
  forward took 8.9 ms against the dense form's 30.6, and R1's second derivative 74 ms
  against 296; with 4 groups the whole step is faster dense.
- 'taps': nine shifted copies of the input, each multiplied per group by that tap's
  (in, groups, out) kernel slice (one batched matmul a tap), summed: the grouped FLOPs, and
  derivatives of every order are matmuls (the same speed in a loop or not), but its
  group-major layouts cost transposes: R3GAN's step at widths 128 (16 groups) ran at 5.0
  img/s with it and 17.6 with 'split'.
- 'taps_dense': the taps with the block-diagonal kernel, plain matmuls (for comparison).
All equal XLA's op to float rounding, forward and backward (tests/test_lowpass.py);
benchmarks/RESULTS.md ("R3GAN on CPU") has the measurements behind `cpu_form`.
"""

import jax
import jax.numpy as jnp

from facegan_jax.ops import cpu

DIMS = ('NHWC', 'HWIO', 'NHWC')
DENSE_MAX_GROUPS = 4


def xla(x, kernel, groups):
  """XLA's grouped convolution: kernel (3, 3, I / groups, O), 'same' padding."""
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME', dimension_numbers=DIMS,
                                      feature_group_count=groups)


def block_diagonal(kernel, groups):
  """The dense (3, 3, I, O) kernel of a grouped (3, 3, I / groups, O) one: group g's block at
  input channels g·I/groups... and output channels g·O/groups..., zeros elsewhere."""
  size, _, group_in, out = kernel.shape
  per_group = kernel.reshape(size, size, group_in, groups, out // groups)
  eye = jnp.eye(groups, dtype=kernel.dtype)
  dense = jnp.einsum('hwigo,fg->hwfigo', per_group, eye)
  return dense.reshape(size, size, groups * group_in, out)


def dense(x, kernel, groups):
  return cpu.conv_3x3(x, block_diagonal(kernel, groups))


def taps(x, kernel, groups):
  batch, height, width, channels = x.shape
  out = kernel.shape[-1]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  padded = padded.reshape(batch, height + 2, width + 2, groups, channels // groups)
  per_group = kernel.reshape(3, 3, channels // groups, groups, out // groups)
  total = None
  for i in range(3):
    for j in range(3):
      term = jnp.einsum('bhwgi,igo->bhwgo', padded[:, i:i + height, j:j + width],
                        per_group[i, j])
      total = term if total is None else total + term
  return total.reshape(batch, height, width, out)


def taps_dense(x, kernel, groups):
  height, width = x.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dense = block_diagonal(kernel, groups) if groups > 1 else kernel
  total = None
  for i in range(3):
    for j in range(3):
      term = jnp.einsum('bhwi,io->bhwo', padded[:, i:i + height, j:j + width], dense[i, j])
      total = term if total is None else total + term
  return total


def split(x, kernel, groups):
  batch, height, width, channels = x.shape
  out = kernel.shape[-1]
  per_group_x = x.reshape(batch, height, width, groups, channels // groups)
  per_group = kernel.reshape(3, 3, channels // groups, groups, out // groups)
  return jnp.stack([cpu.conv_3x3(per_group_x[..., g, :], per_group[..., g, :])
                    for g in range(groups)], axis=-2).reshape(batch, height, width, out)


FORMS = dict(xla=xla, dense=dense, taps=taps, taps_dense=taps_dense, split=split)


def cpu_form(groups):
  """The fastest exact form on CPU in a train step's one-step call (step.TrainFn): the
  block-diagonal dense kernel up to DENSE_MAX_GROUPS groups (at most that many times the
  multiplies, at dense speed), a dense convolution per group above (benchmarks/RESULTS.md,
  "R3GAN on CPU, part 5")."""
  return 'dense' if groups <= DENSE_MAX_GROUPS else 'split'
