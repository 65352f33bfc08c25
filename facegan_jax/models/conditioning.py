"""Class conditioning shared by the families (--condition): how a class enters G and D.

- `Embedding`: a table of one learned vector per class, read by class code; G concatenates
  it to z (the MLP; R3GAN, as its code does for CIFAR-10);
- BatchNorm with `num_classes` (models/batchnorm.py): conditional BatchNorm, a scale and a
  bias per class (de Vries et al. 2017; SNGAN's and BigGAN's G);
- `Projection`: Miyato & Koyama's (2018) projection discriminator, D's logit plus the inner
  product of the class's embedding with D's last features.

The embeddings are parameters named `kernel` of shape (classes, width), so --spectral_norm
normalises them as SNGAN's projection does (its SNEmbedID); conditional BatchNorm's tables
are per-channel values, left alone (spectral_norm.PER_CLASS).
"""

import jax.numpy as jnp
from flax import nnx


def of_classes(labels):
  """A G's or D's keyword arguments for the classes `labels`: none when None (unconditional,
  so a family that draws no classes is called as before)."""
  return {} if labels is None else dict(labels=labels)


class Embedding(nnx.Module):
  """labels (B,) int -> their rows (B, width) of a (classes, width) table."""

  def __init__(self, num_classes, width, *, init, rngs):
    self.kernel = nnx.Param(init(rngs.params(), (num_classes, width)))

  def __call__(self, labels, dtype=jnp.float32):
    return self.kernel[...][labels].astype(dtype)

  def beside(self, x, labels):
    """`x` (B, F) with each example's class embedding concatenated (cGAN's input)."""
    return jnp.concatenate([x, self(labels, x.dtype)], -1)


class Projection(Embedding):
  """(features (B, F), labels) -> ⟨embedding of each label, its features⟩ (B,): added to an
  unconditional logit, D scores how well the image fits the class as well as how real it is."""

  def __init__(self, num_classes, width, *, rngs):
    # Glorot-uniform, as the projection discriminator's code initialises its embedding.
    super().__init__(num_classes, width, rngs=rngs,
                     init=nnx.initializers.variance_scaling(1.0, 'fan_avg', 'uniform'))

  def __call__(self, features, labels):
    return (super().__call__(labels, features.dtype) * features).sum(-1)
