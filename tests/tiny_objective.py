"""A test-only objective, registered the way a new one is (tests/test_families.py): this
module plus one line in objectives.OBJECTIVES. The relativistic pairing loss (RpGAN, Jolicoeur-
Martineau 2019) without penalties: G's loss needs D on the reals, which the classic ones do not.
"""

import jax


def d_loss(d, real, fake, config, *, d_step, example_keys):
  del config, d_step, example_keys
  real_logits, d = d(real, 'real')
  fake_logits, d = d(fake, 'fake')
  loss = jax.nn.softplus(fake_logits - real_logits).mean()
  return loss, d, dict(real_logits=real_logits, fake_logits=fake_logits, d_loss=loss,
                       metrics={})


def g_loss(d, real, fake, config):
  del config
  real_logits = jax.lax.stop_gradient(d(real, 'real')[0])
  return jax.nn.softplus(real_logits - d(fake, 'fake')[0]).mean()


def validate(config):
  del config
