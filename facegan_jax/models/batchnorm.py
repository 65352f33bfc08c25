"""BatchNorm with statistics synchronised over the data axis and per-group batches."""

import jax
import jax.numpy as jnp
from flax import nnx

DATA_AXIS = 'data'


def _data_axis_size():
  """Number of devices on the `data` axis, or None outside shard_map."""
  try:
    return jax.lax.axis_size(DATA_AXIS)
  except NameError:
    return None


class BatchNorm(nnx.Module):
  """BatchNorm over every axis but the last, like PyTorch's BatchNorm1d/2d.

  In training mode the batch may hold `groups` independent sub-batches stacked on the
  leading axis (e.g. D sees the real and the fake batch in one call): each is normalised with
  its own statistics, exactly as if D had been called on them one after another. Statistics
  are averaged over the `data` mesh axis when it is bound, so a global batch gives the same
  result on any number of devices. Running averages follow PyTorch (momentum 0.1, unbiased
  variance), updated once per group in order.
  """

  def __init__(self, num_features, *, momentum=0.1, epsilon=1e-5, rngs):
    self.scale = nnx.Param(1.0 + 0.02 * jax.random.normal(rngs.params(), (num_features,)))
    self.bias = nnx.Param(jnp.zeros((num_features,)))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,)))
    self.var = nnx.BatchStat(jnp.ones((num_features,)))
    self.momentum = momentum
    self.epsilon = epsilon

  def __call__(self, x, *, train, groups=1):
    if not train:
      return self._normalize(x, self.mean[...], self.var[...])

    grouped = x.reshape(groups, -1, x.shape[-1]).astype(jnp.float32)
    mean = grouped.mean(axis=1)
    mean_sq = jnp.square(grouped).mean(axis=1)
    count = grouped.shape[1]
    num_devices = _data_axis_size()
    if num_devices is not None:
      mean, mean_sq = jax.lax.pmean((mean, mean_sq), DATA_AXIS)
      count *= num_devices
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)

    running_mean, running_var = self.mean[...], self.var[...]
    for g in range(groups):
      running_mean = (1 - self.momentum) * running_mean + self.momentum * mean[g]
      unbiased = var[g] * count / max(count - 1, 1)
      running_var = (1 - self.momentum) * running_var + self.momentum * unbiased
    self.mean[...], self.var[...] = running_mean, running_var

    shape = (groups,) + (1,) * (x.ndim - 1) + (x.shape[-1],)
    y = self._normalize(x.reshape((groups, -1) + x.shape[1:]),
                        mean.reshape(shape), var.reshape(shape))
    return y.reshape(x.shape)

  def _normalize(self, x, mean, var):
    inv = jax.lax.rsqrt(var + self.epsilon) * self.scale[...]
    return (x - mean.astype(x.dtype)) * inv.astype(x.dtype) + self.bias[...].astype(x.dtype)
