"""The objectives on D's logits of 2014-2018 (--loss=bce, lsgan, hinge, wgan), with R1
(--r1_gamma, any of them) and WGAN-GP's gradient penalty (--gp_weight, wgan).

Each loss is a mean over this device's examples. `label_smoothing` is the target for real
images in D's cross-entropy (one-sided smoothing, Salimans et al. 2016); 1.0 turns it off.
The other losses have no targets to smooth: for them it does not apply (a warning says so),
so a bce flagfile run with another --loss is a valid run, not an error.
"""

import jax
import jax.numpy as jnp
import optax
from absl import logging

from facegan_jax import schedules
from facegan_jax.errors import UsageError
from facegan_jax.mesh import DATA_AXIS
from facegan_jax.objectives.critic import input_gradients, penalised_pass


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


def d_loss(d, real, fake, config, *, d_step, example_keys):
  """--loss's D loss, plus R1 on the reals and the gradient penalty where they are on, their
  weights at this step by --schedule."""
  step = d_step // config.d_steps
  if config.r1_gamma:
    gamma = schedules.of(config, 'r1_gamma')(step)
    real_logits, d, r1 = penalised_pass(d, real, 'real', d_step, gamma, config.r1_every)
  else:
    (real_logits, d), r1 = d(real, 'real'), 0.0
  fake_logits, d = d(fake, 'fake')
  if config.label_smoothing != 1 and config.loss != 'bce':
    logging.log_first_n(logging.WARNING, '--label_smoothing=%s does not apply to --loss=%s '
                        '(no targets to smooth)', 1, config.label_smoothing, config.loss)
  loss = LOSSES[config.loss][0](real_logits, fake_logits, config.label_smoothing)
  gp = 0.0
  if config.gp_weight:
    weight = schedules.of(config, 'gp_weight')(step)
    gp = gradient_penalty(d, real, fake, example_keys, weight)
  metrics = {name: value for name, value, on in (('r1', r1, config.r1_gamma),
                                                  ('gp', gp, config.gp_weight)) if on}
  return loss + r1 + gp, d, dict(real_logits=real_logits, fake_logits=fake_logits,
                                 d_loss=loss, metrics=metrics)


def g_loss(d, real, fake, config):
  """--loss's G loss on D's logits of the fakes."""
  del real
  return LOSSES[config.loss][1](d(fake, 'fake')[0])


def gradient_penalty(d, real, fake, example_keys, weight):
  """WGAN-GP's λ E[(‖∇ₓD(x̂)‖ - 1)²] at x̂ = εx + (1-ε)G(z), ε ~ U[0, 1] per example (Gulrajani
  et al. 2017), on the images themselves (not augmented), with the reals' dropout keys."""
  eps = jax.vmap(lambda k: jax.random.uniform(k))(example_keys)[:, None, None, None]
  mixed = eps * real + (1 - eps) * fake
  _, _, x_grads = input_gradients(d, mixed, 'real', augment=False)
  norms = jnp.sqrt(jnp.square(x_grads.astype(jnp.float32)).reshape(len(mixed), -1).sum(-1)
                   + 1e-12)
  return weight * jax.lax.pmean(jnp.square(norms - 1).mean(), DATA_AXIS)


def validate(config):
  if not 0 < config.label_smoothing <= 1:
    raise UsageError(f'--label_smoothing={config.label_smoothing}: must be in (0, 1]')
  if config.r1_gamma < 0:
    raise UsageError(f'--r1_gamma={config.r1_gamma}: must be 0 (off) or positive')
  if config.r1_every < 1:
    raise UsageError(f'--r1_every={config.r1_every}: must be at least 1')
  if config.r1_every != 1 and not config.r1_gamma:
    raise UsageError(f'--r1_every={config.r1_every} needs --r1_gamma')
  if config.gp_weight < 0:
    raise UsageError(f'--gp_weight={config.gp_weight}: must be 0 (off) or positive')
  if config.gp_weight and config.loss != 'wgan':
    raise UsageError(f'--gp_weight is the WGAN-GP penalty: it needs --loss=wgan, not '
                     f'{config.loss}')
