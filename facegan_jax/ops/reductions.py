"""Reductions over the batch as fast on CPU as XLA's matmuls, and the `data`-axis helpers
that let the models run inside shard_map or outside it."""

import jax
import jax.numpy as jnp

from facegan_jax.mesh import DATA_AXIS


def data_axis_size():
  """Number of devices on the `data` axis, or None outside shard_map."""
  try:
    return jax.lax.axis_size(DATA_AXIS)
  except NameError:
    return None


def pmean_if_bound(x):
  return x if data_axis_size() is None else jax.lax.pmean(x, DATA_AXIS)


def as_varying(x):
  """x marked as varying over the data axis when bound (a no-op if it already is).

  Parameters replicated across devices are invariant; a custom VJP must return cotangents of
  the same type, and JAX's transpose of this cast adds the cross-device sum they need.
  """
  if data_axis_size() is None or _varying(x):
    return x
  return jax.lax.pcast(x, DATA_AXIS, to='varying')


def channel_sums(*xs):
  """Sums over every axis but the last, as matmuls with a ones vector.

  XLA on CPU rewrites large sum reductions into slow reduce-windows (for accuracy); its
  matmuls are fast and accumulate in blocks as well, and BatchNorm's statistics and the
  bias gradients sum every activation of a step this way.
  """
  rows = xs[0].size // xs[0].shape[-1]
  ones = jnp.ones((rows,), xs[0].dtype)
  return tuple(jnp.dot(ones, x.reshape(rows, x.shape[-1])) for x in xs)


def add_bias(x, bias):
  """x + bias over the last axis, with the bias gradient summed by `channel_sums`."""
  if _varying(x) or _varying(bias):  # a custom VJP's cotangents must match its inputs' types
    x, bias = as_varying(x), as_varying(bias)
  return _add_bias(x, bias)


def _varying(x):
  return data_axis_size() is not None and DATA_AXIS in jax.typeof(x).manual_axis_type.varying


@jax.custom_vjp
def _add_bias(x, bias):
  return x + bias.astype(x.dtype)


_add_bias.defvjp(lambda x, bias: (_add_bias(x, bias), bias),
                 lambda bias, g: (g, channel_sums(g)[0].astype(bias.dtype)))
