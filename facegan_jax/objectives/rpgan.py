"""RpGAN with R1 and R2 (--loss=rpgan): the relativistic pairing loss with zero-centred gradient
penalties on both the reals and the fakes, R3GAN's objective (Huang, Gokaslan, Kuleshov and
Tompkin 2024, "The GAN is dead; long live the GAN! A Modern GAN Baseline").

Each real is paired with one fake. D minimises softplus(-(D(x) - D(G(z)))) plus γ/2 ·
(E‖∇ₓD(x)‖² + E‖∇D(G(z))‖²), the gradients taken in the images before any augmentation; G
minimises softplus(-(D(G(z)) - D(x))), which needs D on the reals. γ is --r1_gamma, decayed as
R3GAN's presets decay it by --schedule=r1_gamma:cosine:FINAL; --r1_every=k takes both
penalties every k D steps, scaled by k (StyleGAN2's lazy R1), where R3GAN takes them every step.
"""

import jax
from absl import logging

from facegan_jax import schedules
from facegan_jax.errors import UsageError
from facegan_jax.objectives.critic import penalised_pass


def d_loss(d, real, fake, config, *, d_step, example_keys):
  """RpGAN's D loss with R1 on the reals and R2 on the fakes, γ at this step by --schedule."""
  del example_keys
  gamma = schedules.of(config, 'r1_gamma')(d_step // config.d_steps)
  real_logits, d, r1 = penalised_pass(d, real, 'real', d_step, gamma, config.r1_every)
  fake_logits, d, r2 = penalised_pass(d, fake, 'fake', d_step, gamma, config.r1_every)
  if config.label_smoothing != 1:
    logging.log_first_n(logging.WARNING, '--label_smoothing=%s does not apply to --loss=rpgan '
                        '(no targets to smooth)', 1, config.label_smoothing)
  loss = jax.nn.softplus(fake_logits - real_logits).mean()
  metrics = dict(r1=r1, r2=r2) if config.r1_gamma else {}
  return loss + r1 + r2, d, dict(real_logits=real_logits, fake_logits=fake_logits, d_loss=loss,
                                 metrics=metrics)


def g_loss(d, real, fake, config):
  """RpGAN's G loss: each fake against its paired real (D's logits on the reals are data here,
  not differentiated)."""
  del config
  real_logits = jax.lax.stop_gradient(d(real, 'real')[0])
  return jax.nn.softplus(real_logits - d(fake, 'fake')[0]).mean()


def validate(config):
  if config.r1_gamma < 0:
    raise UsageError(f'--r1_gamma={config.r1_gamma}: must be 0 (off) or positive')
  if config.r1_every < 1:
    raise UsageError(f'--r1_every={config.r1_every}: must be at least 1')
  if config.gp_weight:
    raise UsageError(f'--gp_weight={config.gp_weight} is WGAN-GP\'s penalty; --loss=rpgan '
                     'penalises D with R1 and R2 (--r1_gamma)')
