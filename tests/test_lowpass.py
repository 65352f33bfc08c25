"""ops/lowpass.py: R3GAN's [1, 3, 3, 1] resampling against the depthwise (transposed)
convolutions it stands for, and its grouped 3x3 convolution against per-group convolutions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facegan_jax import ops

TAPS = np.array([1.0, 3.0, 3.0, 1.0])


def depthwise(x, kernel_2d, **kwargs):
  channels = x.shape[-1]
  kernel = jnp.tile(jnp.asarray(kernel_2d, x.dtype)[:, :, None, None], (1, 1, 1, channels))
  return jax.lax.conv_general_dilated(x, kernel, dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                      feature_group_count=channels, **kwargs)


def test_resampling_is_the_filters_depthwise_convolution():
  x = jax.random.normal(jax.random.key(0), (2, 6, 8, 3))
  # Up: ConvTranspose(4, stride 2, padding 1) with 4 x the normalised 2D filter (gain 4).
  up = depthwise(x, np.outer(TAPS, TAPS) / 16, window_strides=(1, 1),
                 padding=((2, 2), (2, 2)), lhs_dilation=(2, 2))
  np.testing.assert_allclose(ops.upsample_lowpass(x), up, rtol=1e-6, atol=1e-6)
  # Down: Conv(4, stride 2, padding 1) with the normalised 2D filter.
  down = depthwise(x, np.outer(TAPS, TAPS) / 64, window_strides=(2, 2),
                   padding=((1, 1), (1, 1)))
  np.testing.assert_allclose(ops.downsample_lowpass(x), down, rtol=1e-6, atol=1e-6)
  assert ops.upsample_lowpass(x).shape == (2, 12, 16, 3)
  assert ops.downsample_lowpass(x).shape == (2, 3, 4, 3)


def test_resampling_gradients_are_the_convolutions():
  x = jax.random.normal(jax.random.key(1), (1, 4, 4, 2))
  for ours, theirs in (
      (ops.upsample_lowpass, lambda x: depthwise(x, np.outer(TAPS, TAPS) / 16,
                                                 window_strides=(1, 1),
                                                 padding=((2, 2), (2, 2)),
                                                 lhs_dilation=(2, 2))),
      (ops.downsample_lowpass, lambda x: depthwise(x, np.outer(TAPS, TAPS) / 64,
                                                   window_strides=(2, 2),
                                                   padding=((1, 1), (1, 1))))):
    weights = jax.random.normal(jax.random.key(2), ours(x).shape)
    np.testing.assert_allclose(jax.grad(lambda x: (ours(x) * weights).sum())(x),
                               jax.grad(lambda x: (theirs(x) * weights).sum())(x),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('form', ['xla', 'dense', 'split', 'taps', 'taps_dense', 'auto'])
def test_grouped_conv_is_a_conv_per_group(form):
  x = jax.random.normal(jax.random.key(3), (2, 5, 5, 8))
  kernel = jax.random.normal(jax.random.key(4), (3, 3, 2, 8))  # 4 groups of 2 -> 2
  out = ops.grouped_conv_3x3(x, kernel, 4, form)
  for g in range(4):
    one = jax.lax.conv_general_dilated(x[..., 2 * g:2 * g + 2], kernel[..., 2 * g:2 * g + 2],
                                       (1, 1), 'SAME',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    np.testing.assert_allclose(out[..., 2 * g:2 * g + 2], one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('form', ['dense', 'split', 'taps', 'taps_dense'])
@pytest.mark.parametrize('groups', [1, 8])
def test_grouped_forms_have_xlas_first_and_second_derivatives(form, groups):
  """Gradients in the input and the kernel, and the kernel gradient of the input gradient's
  squared norm (R1's second derivative), against XLA's grouped convolution."""
  x = jax.random.normal(jax.random.key(5), (2, 6, 6, 16))
  kernel = jax.random.normal(jax.random.key(6), (3, 3, 16 // groups, 8))
  weights = jax.random.normal(jax.random.key(7), (2, 6, 6, 8))

  def derivatives(form):
    def loss(x, kernel):
      return (ops.grouped_conv_3x3(x, kernel, groups, form) * weights).sum()

    def penalty(kernel, x):
      return jnp.square(jax.grad(loss)(x, kernel)).sum()

    return (*jax.grad(loss, argnums=(0, 1))(x, kernel), jax.grad(penalty)(kernel, x))

  for ours, xlas in zip(derivatives(form), derivatives('xla')):
    np.testing.assert_allclose(ours, xlas, rtol=1e-4, atol=1e-4 * float(np.abs(xlas).max()))
