"""GAN losses on D's logits: each returns (d_loss, g_loss) functions' values as means.

`label_smoothing` is the target for real images in D's loss (one-sided smoothing, Salimans
et al. 2016); 1.0 turns it off. Only the cross-entropy loss has targets to smooth.
"""

import jax
import jax.numpy as jnp
import optax


def bce_d(real_logits, fake_logits, label_smoothing=1.0):
  """D's cross-entropy on real (target `label_smoothing`) plus fake (target 0)."""
  real = optax.sigmoid_binary_cross_entropy(real_logits, label_smoothing).mean()
  fake = optax.sigmoid_binary_cross_entropy(fake_logits, 0.0).mean()
  return real + fake


def bce_g(fake_logits):
  """Non-saturating G loss: -log D(G(z))."""
  return optax.sigmoid_binary_cross_entropy(fake_logits, 1.0).mean()


def lsgan_d(real_logits, fake_logits, label_smoothing=1.0):
  """Least squares (Mao et al. 2017, a=0, b=1): ½E[(D(x)-1)²] + ½E[D(G(z))²]."""
  del label_smoothing
  return 0.5 * jnp.square(real_logits - 1).mean() + 0.5 * jnp.square(fake_logits).mean()


def lsgan_g(fake_logits):
  """½E[(D(G(z))-1)²]."""
  return 0.5 * jnp.square(fake_logits - 1).mean()


def hinge_d(real_logits, fake_logits, label_smoothing=1.0):
  """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018)."""
  del label_smoothing
  return jax.nn.relu(1 - real_logits).mean() + jax.nn.relu(1 + fake_logits).mean()


def hinge_g(fake_logits):
  """-E[D(G(z))]."""
  return -fake_logits.mean()


def wgan_d(real_logits, fake_logits, label_smoothing=1.0):
  """The critic's E[D(G(z))] - E[D(x)] (Arjovsky et al. 2017), to be kept Lipschitz by
  --gp_weight or --spectral_norm."""
  del label_smoothing
  return fake_logits.mean() - real_logits.mean()


def wgan_g(fake_logits):
  """-E[D(G(z))]."""
  return -fake_logits.mean()


LOSSES = {'bce': (bce_d, bce_g), 'lsgan': (lsgan_d, lsgan_g), 'hinge': (hinge_d, hinge_g),
          'wgan': (wgan_d, wgan_g)}
