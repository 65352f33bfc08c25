"""Shapes, parameter counts and BatchNorm behaviour of the model presets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facegan_jax import config as config_lib
from facegan_jax import presets
from facegan_jax import models
from facegan_jax.models import dcgan
from facegan_jax.models.batchnorm import BatchNorm
from tests.conftest import param_count

# pytorch/examples' DCGAN-64 has G 3,576,704 and D 2,765,568 parameters with bias=False
# everywhere; ours adds biases where no BatchNorm follows: G's output conv (3), D's input conv
# (64) and D's logit (1).
COUNTS = {
    'udacity32': (372_419, 167_841, 32),
    'dcgan64': (3_576_704 + 3, 2_765_568 + 64 + 1, 64),
    'mnist_mlp': (579_728, 566_273, 28),
}


@pytest.mark.parametrize('name', sorted(COUNTS))
def test_preset_shapes_and_parameter_counts(name):
  config = presets.preset(name)
  g, d = nnx.eval_shape(lambda: models.build(config, nnx.Rngs(0)))
  g_count, d_count, resolution = COUNTS[name]
  assert (param_count(g), param_count(d)) == (g_count, d_count)
  images = nnx.eval_shape(lambda g: g(jnp.ones((2, config.z_dim)), train=True), g)
  assert images.shape == (2, resolution, resolution, config.channels)
  keys = jax.random.split(jax.random.key(0), 2)
  logits = nnx.eval_shape(lambda d: d(jnp.ones(images.shape), train=True, dropout_keys=keys), d)
  assert logits.shape == (2,)


@pytest.mark.parametrize('resolution, channels', [(28, 1), (32, 3)])
def test_small_dcgan_images_in_range(resolution, channels):
  config = config_lib.Config(model='dcgan', resolution=resolution, channels=channels,
                             conv_dim=8, z_dim=10)
  g, d = models.build(config, nnx.Rngs(0))
  images = nnx.jit(lambda g, z: g(z, train=True))(g, jax.random.normal(jax.random.key(0), (3, 10)))
  assert images.shape == (3, resolution, resolution, channels)
  assert float(jnp.abs(images).max()) <= 1.0 and float(images.std()) > 0
  assert nnx.jit(lambda d, x: d(x, train=False))(d, images).shape == (3,)


def test_weights_are_dcgan_init():
  g, _ = models.build(presets.preset('udacity32'), nnx.Rngs(0))
  kernel = np.asarray(g.ups[0].kernel[...])
  assert abs(kernel.mean()) < 1e-3 and kernel.std() == pytest.approx(0.02, rel=0.02)


def test_mlp_weights_are_pytorch_linear_init_and_samples_differ_at_init():
  """The MLP is initialised as its reference (nn.Linear: U(+-1/sqrt(fan_in)) for weights and
  biases), not with DCGAN's N(0, 0.02), under which G's output barely depends on z."""
  config = presets.preset('mnist_mlp')
  g, d = models.build(config, nnx.Rngs(0))
  for layer in [*g.layers, *d.layers]:
    kernel, bias = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    bound = 1 / np.sqrt(kernel.shape[0])
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
    assert bias.size == 1 or bias.std() > bound / 4  # not zeros
  images = g(jax.random.normal(jax.random.key(1), (256, config.z_dim)), train=False)
  assert float(images.std(axis=0).mean()) > 0.01  # N(0, 0.02) everywhere gives ~0.002


def test_batchnorm_gradients_equal_autodiff_of_the_formula():
  """The hand-written backward pass equals JAX's autodiff of textbook BatchNorm."""
  def textbook(x, scale, bias):
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return (x - mean) / jnp.sqrt(var + 1e-5) * scale + bias

  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], (6, 5, 4, 3)) * 3 + 2
  scale, bias = 1 + jax.random.normal(keys[1], (2, 3))
  g = jax.random.normal(keys[2], x.shape)
  bn = BatchNorm(3, rngs=nnx.Rngs(0))
  bn.scale[...], bn.bias[...] = scale, bias
  graph, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)

  def ours(x, params):
    return nnx.merge(graph, params, stats, copy=True)(x, train=True)

  @jax.jit  # one compiled call: op by op, each small op would compile on its own
  def both(x, params, scale, bias, g):
    y, vjp = jax.vjp(ours, x, params)
    dx, d_params = vjp(g)
    want_y, want_vjp = jax.vjp(textbook, x, scale, bias)
    return (y, dx, d_params['scale'][...], d_params['bias'][...]), (want_y, *want_vjp(g))

  (y, *grads), (want_y, *want_grads) = both(x, params, scale, bias, g)
  np.testing.assert_allclose(y, want_y, atol=1e-5)
  for got, want in zip(grads, want_grads):
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_batchnorm_matches_pytorch_semantics():
  """Batch statistics in training (biased var), running stats with momentum 0.1 (unbiased)."""
  bn = BatchNorm(3, rngs=nnx.Rngs(0))
  bn.scale[...] = jnp.ones(3)
  x = jax.random.normal(jax.random.key(0), (8, 5, 5, 3)) * 2 + 1
  y = bn(x, train=True)
  flat = np.asarray(x).reshape(-1, 3)
  expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 3), expected, atol=1e-4)
  np.testing.assert_allclose(bn.mean[...], 0.1 * flat.mean(0), atol=1e-5)
  np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * flat.var(0, ddof=1), atol=1e-5)
  y_eval = bn(x, train=False)
  np.testing.assert_allclose(
      y_eval, (x - bn.mean[...]) / jnp.sqrt(bn.var[...] + 1e-5), atol=1e-5)


def test_minibatch_stddev_appends_each_groups_mean_feature_spread():
  """ProGAN's channel: per group of consecutive examples, the features' standard deviation
  over the group averaged over all features, the same for every member and pixel."""
  x = np.random.default_rng(0).normal(size=(8, 4, 4, 5)).astype(np.float32)
  out = np.asarray(dcgan.minibatch_stddev(jnp.asarray(x), 4))
  assert out.shape == (8, 4, 4, 6)
  np.testing.assert_array_equal(out[..., :5], x)
  for g in range(2):
    group = x[4 * g:4 * g + 4].astype(np.float64)
    expected = np.sqrt(group.var(axis=0) + 1e-8).mean()
    np.testing.assert_allclose(out[4 * g:4 * g + 4, :, :, 5], expected, rtol=1e-5)
  # D's logit reads the extra channel.
  config = config_lib.Config(model='dcgan', resolution=16, conv_dim=8, mbstd_group=4)
  _, d = models.build(config, nnx.Rngs(0))
  assert d.logit.kernel.shape == (4 * 4 * 17, 1)


def test_num_stages():
  assert dcgan.num_stages(64) == (4, 4)
  assert dcgan.num_stages(28) == (7, 2)


def test_d_has_no_batchnorm_under_spectral_norm_or_the_gradient_penalty():
  assert dcgan.d_batchnorm(config_lib.Config())
  assert not dcgan.d_batchnorm(config_lib.Config(spectral_norm='d'))
  assert not dcgan.d_batchnorm(config_lib.Config(loss='wgan', gp_weight=10.0))
