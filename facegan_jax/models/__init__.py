"""Generator and discriminator families, chosen by --model.

A family is a module of this package that defines:

- `build(config, rngs, dtype) -> (generator, discriminator)`: NNX modules built from the
  run's config (its own settings among the config's fields), computing in `dtype`;
- `validate(config, num_devices=None)`: raises errors.UsageError for settings it cannot take
  (a resolution it has no layout for, a group that does not divide the batch);
- `CONDITIONAL = True` where it draws classes (--condition; config.num_classes > 0): G and D
  then take `labels`, int class codes (B,), as below.

Every family keeps one contract (tests/test_families.py checks it for each one here):

- `G(z, *, train[, labels])`: latents (B, z_dim) -> images (B, R, R, channels), NHWC, float32, in
  [-1, 1], or unbounded where the family's reference has no tanh (its module then sets
  `BOUNDED = False`; images are clipped where they become pixels, data.pipeline.to_uint8);
- `D(x, *, train, dropout_keys=None[, labels])`: such images -> float32 logits of shape (B,);
  `dropout_keys` holds one key per example, so D's randomness follows the example, not the
  device that holds it; a class enters through models/conditioning.py's layers;
- BatchNorm only through batchnorm.BatchNorm, whose statistics are shared over the `data`
  axis, and convolutions through facegan_jax.ops, which picks their form by backend: a run
  is then the same on any number of devices, and fast on each backend;
- spectral norm (spectral_norm.py) divides every parameter named `kernel` by its largest
  singular value, so every weight matrix or convolution kernel is named `kernel` (a weight
  of two axes or more named otherwise is an error under --spectral_norm); a family built to
  go without (r3gan) rejects --spectral_norm in `validate`;
- with --precision=bf16 they compute in bfloat16, and their parameters, BatchNorm
  statistics and outputs stay float32.

Adding a family is one module plus one line in FAMILIES. This file imports no JAX, so that
main.py's --help lists the families before JAX starts.
"""

import importlib

import ml_dtypes
import numpy as np

from facegan_jax.errors import UsageError

# --model: {name (a module of this package): what it is}.
FAMILIES = {
    'dcgan': 'DCGAN (Radford et al. 2015): strided convolutions and BatchNorm, at 4*2^n or '
             '7*2^n pixels',
    'mlp': 'fully connected (Goodfellow et al. 2014), for 28x28 digits',
    'resnet': "SNGAN's ResNets (Miyato et al. 2018) at 32, 64 or 128 pixels (and 28, ours)",
    'r3gan': "R3GAN's normalisation-free grouped-convolution ResNets (Huang et al. 2024), "
             '--widths, --blocks, --groups',
}

# --precision: the dtype G and D compute in.
PRECISIONS = {'fp32': np.dtype(np.float32), 'bf16': np.dtype(ml_dtypes.bfloat16)}


def family(name):
  """The module of family `name`."""
  return importlib.import_module(f'{__name__}.{name}')


def describe():
  """'name (what it is); ...' for --model's help."""
  return '; '.join(f'{name} ({what})' for name, what in FAMILIES.items())


def build(config, rngs):
  """(generator, discriminator) of family --model for `config`."""
  return family(config.model).build(config, rngs, PRECISIONS[config.precision])


def validate(config, num_devices=None):
  """The family's own checks of `config` (UsageError)."""
  module = family(config.model)
  if config.condition and not getattr(module, 'CONDITIONAL', False):
    raise UsageError(f'--condition={config.condition}: --model={config.model} draws no classes')
  module.validate(config, num_devices)
