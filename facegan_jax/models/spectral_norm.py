"""Spectral normalisation (Miyato et al. 2018) of a network's weights, as a function of its
parameters (`--spectral_norm`).

Every kernel (a dense layer's (in, out) or a 4x4 convolution's (4, 4, in, out), read as the
matrix (fan_in, out)) is divided by an estimate of its largest singular value σ. The estimate
comes from one power iteration per training step on a vector u per kernel that the train state
carries (not a parameter: no gradient, no optimizer). σ is ‖W u‖ with u held constant, so its
gradient in W is Miyato's v uᵀ; sampling uses the same σ from the stored u.
"""

import jax
import jax.numpy as jnp


def _name(path):
  """'downs.0.kernel' for the path of an nnx.State leaf (its Variable's `.value` left out)."""
  parts = [getattr(k, 'key', getattr(k, 'idx', getattr(k, 'name', k))) for k in path]
  return '.'.join(str(p) for p in parts if p != 'value')


# Conditional BatchNorm's per-class scales and biases (classes, features): a row of
# per-channel values for each class, not a linear map; SNGAN leaves them unnormalised too.
PER_CLASS = ('scale', 'bias')


def kernels(params):
  """{name: kernel} of `params`' weight matrices and convolution kernels (biases, BatchNorm
  scales and the like are not normalised)."""
  return {_name(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)
          if _name(path).endswith('kernel') and leaf.ndim >= 2}


def _unit(x):
  return x / jnp.maximum(jnp.linalg.norm(x), 1e-12)


def init_vectors(params, key):
  """A random unit vector u of size fan_out for each kernel of `params`. A weight of two axes
  or more named other than `kernel` is an error: spectral norm would silently skip it (the
  families' contract, models/__init__.py)."""
  found = kernels(params)
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    if (leaf.ndim >= 2 and _name(path) not in found
        and _name(path).rpartition('.')[2] not in PER_CLASS):
      raise ValueError(f'{_name(path)}: a weight of {leaf.ndim} axes not named `kernel`, which '
                       'spectral norm would skip; name it `kernel` (models/__init__.py)')
  keys = jax.random.split(key, max(len(found), 1))
  return {name: _unit(jax.random.normal(k, (kernel.shape[-1],), jnp.float32))
          for k, (name, kernel) in zip(keys, sorted(found.items()))}


def power_iteration(params, vectors):
  """`vectors` after one power iteration on `params`' kernels: u <- WᵀW u / ‖WᵀW u‖."""
  found = kernels(params)
  new = {}
  for name, u in vectors.items():
    w = jax.lax.stop_gradient(found[name]).astype(jnp.float32)
    w = w.reshape(-1, w.shape[-1])
    new[name] = _unit(w.T @ _unit(w @ u))
  return new


def sigma(kernel, u):
  """‖W u‖: the largest singular value of `kernel` as the matrix (fan_in, out), for u its
  power-iteration vector."""
  return jnp.linalg.norm(kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32) @ u)


def normalize(params, vectors):
  """`params` with each kernel divided by its σ = ‖W u‖ (u from `vectors`, held constant);
  `params` itself without vectors."""
  if not vectors:
    return params
  def divide(path, leaf):
    u = vectors.get(_name(path))
    if u is None:
      return leaf
    return (leaf / sigma(leaf, u)).astype(leaf.dtype)
  return jax.tree_util.tree_map_with_path(divide, params)


def largest_singular_values(params, vectors):
  """{name: σ} of `params`' kernels as `normalize` estimates them (for logs and tests)."""
  found = kernels(params)
  return {name: sigma(found[name], u) for name, u in vectors.items()}
