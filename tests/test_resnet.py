"""SNGAN's ResNets: the folded resampling convolutions are the textbook upsample/pool forms,
and the models have Mimicry's shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facegan_jax import config as config_lib, ops
from facegan_jax.models import build, resnet
from facegan_jax.ops import conv_3x3, conv_4x2, conv_transpose_4x2, fold_down, fold_up
from facegan_jax.ops.forms import DOWN_FORMS, UP_FORMS
from tests.conftest import param_count


def textbook_conv(x, k3):
  return conv_3x3(x, k3, 'xla')  # XLA's own op, and its autodiff


def arrays(*shapes, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
  return [jax.random.normal(k, s) for k, s in zip(keys, shapes)]


@pytest.mark.parametrize('impl', ('auto',) + tuple(UP_FORMS))
def test_upsample_then_conv3x3_is_the_folded_transposed_conv(impl):
  x, k3 = arrays((2, 6, 6, 8), (3, 3, 8, 5))
  textbook = textbook_conv(resnet.upsample(x), k3)
  folded = jax.jit(lambda x, k: conv_transpose_4x2(x, fold_up(k), impl))(x, k3)
  np.testing.assert_allclose(folded, textbook, atol=1e-5 * float(jnp.abs(textbook).max()))


@pytest.mark.parametrize('impl', ('auto',) + tuple(DOWN_FORMS))
def test_conv3x3_then_average_pool_is_the_folded_strided_conv(impl):
  x, k3 = arrays((2, 8, 8, 6), (3, 3, 6, 5))
  textbook = resnet.avg_pool(textbook_conv(x, k3))
  folded = jax.jit(lambda x, k: conv_4x2(x, fold_down(k), impl))(x, k3)
  np.testing.assert_allclose(folded, textbook, atol=1e-5 * float(jnp.abs(textbook).max()))


def test_the_folded_forms_gradients_are_the_textbook_ones():
  """Through the hand-written backward passes (conv_impl='auto'), in the input and in the 3x3
  kernel (the parameter spectral norm sees)."""
  x, k3, g_up, g_down = arrays((2, 6, 6, 8), (3, 3, 8, 8), (2, 12, 12, 8), (2, 3, 3, 8))
  for folded, textbook, g in [
      (lambda x, k: conv_transpose_4x2(x, fold_up(k)),
       lambda x, k: textbook_conv(resnet.upsample(x), k), g_up),
      (lambda x, k: conv_4x2(x, fold_down(k)),
       lambda x, k: resnet.avg_pool(textbook_conv(x, k)), g_down)]:
    ours = jax.jit(jax.grad(lambda x, k: jnp.sum(folded(x, k) * g), (0, 1)))(x, k3)
    theirs = jax.grad(lambda x, k: jnp.sum(textbook(x, k) * g), (0, 1))(x, k3)
    for a, b in zip(ours, theirs):
      np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.abs(b).max()))


@pytest.mark.parametrize('channels', [5, 128], ids=['xla', 'winograd'])
def test_the_3x3_convolutions_are_xlas_with_their_gradients(channels):
  """conv_impl='auto''s forward forms (Winograd from 128 channels on CPU), its hand-written
  backward pass (input and kernel gradients), and that pass's own derivatives, which R1 takes
  through D (a gradient of a gradient), against XLA's own op and its autodiff."""
  x, k3, g = arrays((2, 7, 6, channels), (3, 3, channels, 128), (2, 7, 6, 128))
  k3 = k3 / np.sqrt(9 * channels)  # outputs of unit scale, where tanh (below) is not flat
  y = jax.jit(conv_3x3)(x, k3)
  textbook = textbook_conv(x, k3)
  np.testing.assert_allclose(y, textbook, atol=1e-5 * float(jnp.abs(textbook).max()))

  def grads(impl):
    return jax.grad(lambda x, k: jnp.sum(conv_3x3(x, k, impl) * g), (0, 1))(x, k3)

  def penalty(impl):  # the squared input gradient, differentiated in the kernel
    return jax.grad(lambda k: jnp.sum(jax.grad(
        lambda x: jnp.sum(jnp.tanh(conv_3x3(x, k, impl)) * g))(x) ** 2))(k3)

  for ours, xlas in [(jax.jit(grads, static_argnums=0)('auto'), grads('xla')),
                     ((jax.jit(penalty, static_argnums=0)('auto'),), (penalty('xla'),))]:
    for a, b in zip(ours, xlas, strict=True):
      np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()))


def test_blocks_are_sngans_with_the_shortcut_commuted():
  """A G and a D block against their textbook computation from the same parameters."""
  rngs = nnx.Rngs(0)
  x, = arrays((2, 8, 8, 6))
  g = resnet.GBlock(6, 4, rngs=rngs)
  ds = [resnet.DBlock(6, 4, downsample=True, first=first, rngs=rngs) for first in (True, False)]

  @nnx.jit  # one compiled call: op by op, each small op would compile on its own
  def ours_and_textbook(g, ds, x):
    h = jax.nn.relu(g.bn1(x, train=True))
    h = textbook_conv(resnet.upsample(h), g.conv1.kernel[...])
    h = textbook_conv(jax.nn.relu(g.bn2(h, train=True)), g.conv2.kernel[...])
    shortcut = resnet.upsample(x) @ g.shortcut.kernel[...]
    pairs = [(g(x, train=True), h + shortcut)]
    for d, first in zip(ds, (True, False)):
      h = textbook_conv(x if first else jax.nn.relu(x), d.conv1.kernel[...]) + d.conv1.bias[...]
      h = textbook_conv(jax.nn.relu(h), d.conv2.kernel[...]) + d.conv2.bias[...]
      shortcut = resnet.avg_pool(x @ d.shortcut.kernel[...] + d.shortcut.bias[...])
      pairs.append((d(x), resnet.avg_pool(h) + shortcut))
    return pairs

  for ours, textbook in ours_and_textbook(g, ds, x):
    np.testing.assert_allclose(ours, textbook, atol=1e-4)


# Mimicry's SNGAN-32 counted by hand from its layers: G = linear 128 -> 4x4x256 (528,384) +
# 3 blocks (2 BatchNorms, two 3x3 and one 1x1 convolution of 256: 1,246,976 each) + BatchNorm
# (512) + 3x3 to RGB (6,915), less the biases before BatchNorms ours drop (4,096 + 3 x 768):
# 4,270,339; D = the optimized block (151,680) + a downsampling block with its 1x1 shortcut
# (311,680) + 2 blocks without (295,168 each) + the logit (129).
@pytest.mark.parametrize('resolution, conv_dim, g_params, d_params',
                         [(32, 128, 4_270_339, 1_053_825), (64, 64, None, None),
                          (128, 64, None, None)])
def test_models_have_mimicrys_shapes(resolution, conv_dim, g_params, d_params):
  config = config_lib.Config(model='resnet', resolution=resolution, conv_dim=conv_dim,
                             z_dim=128, spectral_norm='d', loss='hinge')
  g, d = nnx.eval_shape(lambda: build(config, nnx.Rngs(0)))

  def forward(z):
    g, d = build(config, nnx.Rngs(0))
    images = g(z, train=True)
    return images, d(images, train=True)
  images, logits = jax.eval_shape(forward, jax.ShapeDtypeStruct((2, 128), jnp.float32))
  assert images.shape == (2, resolution, resolution, 3) and logits.shape == (2,)
  if g_params:
    assert (param_count(g), param_count(d)) == (g_params, d_params)


def test_whole_models_on_the_cpu_forms_are_xlas_with_their_gradients():
  """G then D (32 pixels, width 8), conv_impl='auto' against 'xla' (XLA's own convolutions
  and autodiff) from the same parameters: the images, and the gradients of G's hinge loss in
  every parameter of G and of D."""
  def loss_and_grads(impl):
    config = config_lib.Config(model='resnet', resolution=32, conv_dim=8, z_dim=16,
                               spectral_norm='d', loss='hinge')
    g, d = build(config, nnx.Rngs(3))
    (g_graph, g_params, g_rest), (d_graph, d_params) = nnx.split(g, nnx.Param, ...), nnx.split(d)
    z, = arrays((4, 16), seed=5)

    def loss(g_params, d_params):
      images = nnx.merge(g_graph, g_params, g_rest, copy=True)(z, train=True)
      return -nnx.merge(d_graph, d_params, copy=True)(images, train=True).mean(), images
    with ops.using_forms(impl):  # traced here
      return jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(g_params, d_params)

  (_, ours), ours_grads = loss_and_grads('auto')
  (_, xlas), xla_grads = loss_and_grads('xla')
  np.testing.assert_allclose(ours, xlas, atol=1e-5)
  for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(xla_grads), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-4 * float(jnp.abs(b).max()) + 1e-7)
