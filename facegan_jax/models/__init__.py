"""Generator and discriminator families, chosen by name."""

import jax
from flax import nnx

from facegan_jax.models import dcgan, mlp

FAMILIES = {'dcgan': dcgan, 'mlp': mlp}


def build(config, rngs):
  """(generator, discriminator) for `config.model`."""
  family = FAMILIES[config.model]
  common = dict(resolution=config.resolution, conv_dim=config.conv_dim,
                channels=config.channels, rngs=rngs)
  g = family.Generator(z_dim=config.z_dim, g_first_bn=config.g_first_bn,
                       impl=config.conv_impl, **common)
  extra = dict(dropout=config.d_dropout) if config.model == 'mlp' else dict(impl=config.conv_impl)
  d = family.Discriminator(**common, **extra)
  return g, d


def param_count(module):
  """Number of trainable parameters."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
