"""BatchNorm with statistics synchronised over the data axis, PyTorch semantics."""

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from facegan_jax.ops.reductions import as_varying, channel_sums, data_axis_size, pmean_if_bound


def _moments(x):
  """Mean and biased variance over every axis but the last, across the data axis if bound."""
  count = x.size // x.shape[-1]
  mean, mean_sq = pmean_if_bound(tuple(s / count for s in channel_sums(x, jnp.square(x))))
  return mean, jnp.maximum(mean_sq - jnp.square(mean), 0.0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _normalize_batch(x, scale, bias, epsilon):
  """(x - mean) / sqrt(var + epsilon) * scale + bias with the batch's own statistics.

  The backward pass is the closed form, dx = scale / std * (g - mean(g) - x_hat * mean(g *
  x_hat)), two reductions where autodiff of the forward takes several more passes.
  """
  return _normalize_batch_fwd(x, scale, bias, epsilon)[0]


def _normalize_batch_fwd(x, scale, bias, epsilon):
  mean, var = _moments(x.astype(jnp.float32))
  inv = jax.lax.rsqrt(var + epsilon)
  a = (inv * scale).astype(x.dtype)
  y = x * a + (bias - mean * inv * scale).astype(x.dtype)
  return y, (x, mean, inv, scale)


def _normalize_batch_bwd(epsilon, res, g):
  del epsilon
  x, mean, inv, scale = res
  x_hat = (x.astype(jnp.float32) - mean) * inv
  g32 = g.astype(jnp.float32)
  d_bias, d_scale = channel_sums(g32, g32 * x_hat)
  count = x.size // x.shape[-1]
  # Means over the whole global batch: a device's statistics depend on every device's inputs.
  g_mean, gx_mean = pmean_if_bound((d_bias / count, d_scale / count))
  dx = (inv * scale) * (g32 - g_mean - x_hat * gx_mean)
  return dx.astype(x.dtype), d_scale, d_bias


_normalize_batch.defvjp(_normalize_batch_fwd, _normalize_batch_bwd)


class BatchNorm(nnx.Module):
  """BatchNorm over every axis but the last, like PyTorch's BatchNorm1d/2d.

  Statistics are averaged over the `data` mesh axis when it is bound, so a global batch gives
  the same result on any number of devices. Running averages follow PyTorch (momentum 0.1,
  unbiased variance).

  With `num_classes`, conditional BatchNorm (de Vries et al. 2017; SNGAN's and BigGAN's G):
  the statistics are the batch's, as above, and the scale and bias are each example's class's
  rows of (classes, features) tables, `labels` naming the classes.
  """

  def __init__(self, num_features, *, num_classes=0, momentum=0.1, epsilon=1e-5, rngs):
    shape = (num_classes, num_features) if num_classes else (num_features,)
    self.scale = nnx.Param(1.0 + 0.02 * jax.random.normal(rngs.params(), shape))
    self.bias = nnx.Param(jnp.zeros(shape))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
    self.var = nnx.BatchStat(jnp.ones((num_features,)))
    self.momentum = momentum
    self.epsilon = epsilon

  def __call__(self, x, *, train, labels=None):
    scale, bias = self.scale[...], self.bias[...]
    if scale.ndim == 2:  # conditional: normalise, then each example's class's scale and bias
      ones = jnp.ones(scale.shape[1:], scale.dtype)
      y = self._normalize(x, ones, jnp.zeros_like(ones), train)
      per_example = (x.shape[0],) + (1,) * (x.ndim - 2) + (-1,)
      return (y * scale[labels].reshape(per_example).astype(x.dtype)
              + bias[labels].reshape(per_example).astype(x.dtype))
    return self._normalize(x, scale, bias, train)

  def _normalize(self, x, scale, bias, train):
    if not train:
      inv = jax.lax.rsqrt(self.var[...] + self.epsilon) * scale
      return x * inv.astype(x.dtype) + (bias - self.mean[...] * inv).astype(x.dtype)
    # The statistics are computed again here for the running averages; XLA shares the work.
    mean, var = jax.lax.stop_gradient(_moments(x.astype(jnp.float32)))
    count = (x.size // x.shape[-1]) * (data_axis_size() or 1)
    m = self.momentum
    self.mean[...] = (1 - m) * self.mean[...] + m * mean
    self.var[...] = (1 - m) * self.var[...] + m * var * count / max(count - 1, 1)
    return _normalize_batch(x, as_varying(scale), as_varying(bias), self.epsilon)
