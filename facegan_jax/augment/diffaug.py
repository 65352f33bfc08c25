"""DiffAugment (Zhao et al. 2020): color, translation and cutout, each on every image."""

import jax
import jax.numpy as jnp


def diffaug(images, keys, policy):
  """DiffAugment with `policy`: augment.DIFFAUG_POLICIES names, comma-separated, applied in
  that order."""
  ops = dict(color=_color, translation=_translation, cutout=_cutout)
  for i, name in enumerate(policy.split(',')):
    images = jax.vmap(ops[name])(images, jax.vmap(lambda k, i=i: jax.random.fold_in(k, i))(keys))
  return images


def _color(image, key):
  """Brightness ±0.5, saturation x[0, 2] and contrast x[0.5, 1.5], as DiffAugment's."""
  b, s, c = jax.random.uniform(key, (3,))
  image = image + (b - 0.5)
  mean = image.mean(axis=-1, keepdims=True)
  image = (image - mean) * (2 * s) + mean
  mean = image.mean()
  return (image - mean) * (c + 0.5) + mean


def _shifted(image, dy, dx):
  """image moved by (dy, dx) whole pixels, zeros shifted in."""
  h, w = image.shape[:2]
  rows, cols = jnp.arange(h) - dy, jnp.arange(w) - dx
  inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < w))[None, :]
  moved = image[jnp.clip(rows, 0, h - 1)][:, jnp.clip(cols, 0, w - 1)]
  return jnp.where(inside[..., None], moved, 0.0)


def _translation(image, key, ratio=0.125):
  """A shift of up to `ratio` of the size in each direction, zero-padded."""
  h, w = image.shape[:2]
  limit = jnp.array([int(h * ratio + 0.5), int(w * ratio + 0.5)])
  dy, dx = jax.random.randint(key, (2,), -limit, limit + 1)
  return _shifted(image, dy, dx)


def _cutout(image, key, ratio=0.5):
  """A square of `ratio` of the size, at a random centre, set to 0."""
  h, w = image.shape[:2]
  size_h, size_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
  cy, cx = jax.random.randint(key, (2,), 0, jnp.array([h + 1 - size_h % 2, w + 1 - size_w % 2]))
  rows = (jnp.arange(h) >= cy - size_h // 2) & (jnp.arange(h) < cy - size_h // 2 + size_h)
  cols = (jnp.arange(w) >= cx - size_w // 2) & (jnp.arange(w) < cx - size_w // 2 + size_w)
  return jnp.where((rows[:, None] & cols[None, :])[..., None], 0.0, image)
