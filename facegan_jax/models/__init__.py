"""Generator and discriminator families, chosen by name."""

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax import config as config_lib
from facegan_jax.models import dcgan, mlp, resnet

COMPUTE_DTYPES = {'fp32': jnp.float32, 'bf16': jnp.bfloat16}


def build(config, rngs):
  """(generator, discriminator) for `config.model`.

  With --precision=bf16 both compute in bfloat16 (matmuls, convolutions, activations) while
  their parameters, BatchNorm statistics and outputs (images, logits) stay float32.
  """
  common = dict(resolution=config.resolution, channels=config.channels,
                dtype=COMPUTE_DTYPES[config.precision], rngs=rngs)
  if config.model == 'mlp':
    return (mlp.Generator(z_dim=config.z_dim, hidden_dim=config.hidden_dim, **common),
            mlp.Discriminator(hidden_dim=config.hidden_dim, dropout=config.d_dropout, **common))
  common.update(conv_dim=config.conv_dim, conv_impl=config.conv_impl)
  if config.model == 'resnet':
    return (resnet.Generator(z_dim=config.z_dim, **common), resnet.Discriminator(**common))
  return (dcgan.Generator(z_dim=config.z_dim, g_first_bn=config.g_first_bn, **common),
          dcgan.Discriminator(batchnorm=config_lib.d_batchnorm(config),
                              mbstd_group=config.mbstd_group, **common))


def param_count(module):
  """Number of trainable parameters."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
