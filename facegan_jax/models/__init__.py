"""Generator and discriminator families, chosen by name."""

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax.models import dcgan, mlp

FAMILIES = {'dcgan': dcgan, 'mlp': mlp}
COMPUTE_DTYPES = {'fp32': jnp.float32, 'bf16': jnp.bfloat16}


def build(config, rngs):
  """(generator, discriminator) for `config.model`.

  With --precision=bf16 both compute in bfloat16 (matmuls, convolutions, activations) while
  their parameters, BatchNorm statistics and outputs (images, logits) stay float32.
  """
  family = FAMILIES[config.model]
  common = dict(resolution=config.resolution, conv_dim=config.conv_dim,
                channels=config.channels, dtype=COMPUTE_DTYPES[config.precision], rngs=rngs)
  g = family.Generator(z_dim=config.z_dim, g_first_bn=config.g_first_bn,
                       conv_impl=config.conv_impl, **common)
  extra = dict(dropout=config.d_dropout) if config.model == 'mlp' else dict(
      conv_impl=config.conv_impl)
  d = family.Discriminator(**common, **extra)
  return g, d


def param_count(module):
  """Number of trainable parameters."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
