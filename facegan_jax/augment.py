"""Differentiable augmentations applied to every image D sees, real and fake (`--augment`).

Both keep D from memorising a small training set while G still learns through them: each is a
differentiable function of the images, so G's gradient passes through the same augmentation
D's input had.

- DiffAugment (Zhao et al. 2020): color, translation and cutout on every image.
- ADA (Karras et al. 2020): the `bgc` pipeline or part of it (`--ada_pipeline`), each
  transform applied with probability p; p is adapted during training (step.py) from how
  often D's real logits are positive.

Randomness comes from one key per example (step.example_keys: from its global index), so the
augmented batch does not depend on the number of devices. Images are NHWC in [-1, 1].
"""

import math

import jax
import jax.numpy as jnp


def diffaug(images, keys, policy):
  """DiffAugment with `policy`, config.DIFFAUG_POLICIES names comma-separated, in that order."""
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


# ADA's `bgc` pipeline and its strengths (StyleGAN2-ADA's AugmentPipe defaults).
TRANSLATE_INT = 0.125  # of the image size, rounded to whole pixels
SCALE_STD = 0.2  # log2 of isotropic and anisotropic scale factors
TRANSLATE_FRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
SATURATION_STD = 1.0  # log2
ADA_DRAWS = 24  # uniform and normal draws per example
# --ada_pipeline's groups of transforms (StyleGAN2-ADA's --augpipe names).
ADA_PIPELINES = dict(blit='b', geom='g', color='c', bg='bg', bgc='bgc')


def ada(images, keys, p, pipeline='bgc'):
  """ADA's augmentation of `images` (B, H, W, C), each transform of `pipeline`'s groups
  (ADA_PIPELINES) with probability p.

  Blit (flip, 90° rotations, integer translation) and geometric (isotropic scaling, rotation,
  anisotropic scaling, rotation, fractional translation) transforms compose into one affine
  map per image, sampled once, bilinearly, with mirrored edges (exact for blits alone); colour
  (brightness, contrast, luma flip, hue, saturation) compose into one affine colour map. With
  p = 0 both are the identity and the images come back unchanged. A transform outside the
  pipeline still takes its random draws, so each one's draws do not depend on the pipeline.
  """
  h, w, c = images.shape[1:]
  groups = ADA_PIPELINES[pipeline]
  geometric, color = jax.vmap(lambda k: _ada_transforms(k, p, (h, w), groups))(keys)
  if 'b' in groups or 'g' in groups:
    images = jax.vmap(_warp)(images, geometric)
  if 'c' not in groups:
    return images
  if c == 3:
    images = jnp.einsum('bij,bhwj->bhwi', color[:, :3, :3], images) + color[:, None, None, :3, 3]
  else:  # grayscale: the colour map's mean row, its gains summed (as AugmentPipe)
    gain = color[:, :3, :3].sum(axis=(1, 2)) / 3
    offset = color[:, :3, 3].mean(axis=1)
    images = images * gain[:, None, None, None] + offset[:, None, None, None]
  return images


def _ada_transforms(key, p, size, groups='bgc'):
  """One image's (3x3 geometric map from output to input pixel, 4x4 colour map) from the
  transforms of `groups` ('b', 'g', 'c' for blit, geometric and colour)."""
  u_key, n_key = jax.random.split(key)
  u = iter(jax.random.uniform(u_key, (ADA_DRAWS,)))
  n = iter(jax.random.normal(n_key, (ADA_DRAWS,)))
  h, w = size

  def enabled(group, prob=None):
    return (next(u) < (p if prob is None else prob)) & (group in groups)

  eye = jnp.eye(3)
  geometric = eye
  # Flip and 90° rotations from integer tables: exact maps of pixel centres.
  flip = enabled('b') & (next(u) < 0.5)
  geometric = geometric @ jnp.where(flip, jnp.diag(jnp.array([-1.0, 1.0, 1.0])), eye)
  quarter = jnp.where(enabled('b'), jnp.floor(next(u) * 4), 0).astype(jnp.int32)
  rotations = jnp.array([[[1, 0], [0, 1]], [[0, -1], [1, 0]], [[-1, 0], [0, -1]],
                         [[0, 1], [-1, 0]]], jnp.float32)
  geometric = geometric @ eye.at[:2, :2].set(rotations[quarter])
  t = jnp.where(enabled('b'), jnp.round((jnp.stack([next(u), next(u)]) * 2 - 1)
                                     * TRANSLATE_INT * jnp.array([w, h])), 0.0)
  geometric = geometric @ _translate(t)
  s = jnp.where(enabled('g'), jnp.exp2(next(n) * SCALE_STD), 1.0)
  geometric = geometric @ jnp.diag(jnp.array([1 / s, 1 / s, 1.0]))
  rotate_p = 1 - jnp.sqrt(jnp.maximum(1 - p, 0.0))  # two rotations: p in all
  theta = jnp.where(enabled('g', rotate_p), (next(u) * 2 - 1) * math.pi, 0.0)
  geometric = geometric @ _rotate(-theta)
  s = jnp.where(enabled('g'), jnp.exp2(next(n) * SCALE_STD), 1.0)
  geometric = geometric @ jnp.diag(jnp.array([1 / s, s, 1.0]))
  theta = jnp.where(enabled('g', rotate_p), (next(u) * 2 - 1) * math.pi, 0.0)
  geometric = geometric @ _rotate(-theta)
  t = jnp.where(enabled('g'), jnp.stack([next(n), next(n)]) * TRANSLATE_FRAC_STD
                * jnp.array([w, h]), 0.0)
  geometric = geometric @ _translate(-t)

  eye4 = jnp.eye(4)
  luma = jnp.array([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)
  color = eye4
  b = jnp.where(enabled('c'), next(n) * BRIGHTNESS_STD, 0.0)
  color = eye4.at[:3, 3].set(b) @ color
  s = jnp.where(enabled('c'), jnp.exp2(next(n) * CONTRAST_STD), 1.0)
  color = jnp.diag(jnp.array([s, s, s, 1.0])) @ color
  flip = (enabled('c') & (next(u) < 0.5)).astype(jnp.float32)
  color = (eye4 - 2 * flip * jnp.outer(luma, luma)) @ color
  # Hue and saturation: the identity itself when off (their matrices are not exactly it).
  hue = _rotate_about(luma[:3], (next(u) * 2 - 1) * math.pi)
  color = jnp.where(enabled('c'), hue, eye4) @ color
  s = jnp.exp2(next(n) * SATURATION_STD)
  saturation = jnp.outer(luma, luma) + (eye4 - jnp.outer(luma, luma)) * s
  color = jnp.where(enabled('c'), saturation, eye4) @ color
  return geometric, color


def _translate(t):
  return jnp.eye(3).at[:2, 2].set(t)


def _rotate(theta):
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  return jnp.eye(3).at[:2, :2].set(jnp.array([[cos, -sin], [sin, cos]]))


def _rotate_about(axis, theta):
  """4x4 rotation of RGB by `theta` about the unit vector `axis` (Rodrigues)."""
  cross = jnp.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  r = (jnp.cos(theta) * jnp.eye(3) + jnp.sin(theta) * cross
       + (1 - jnp.cos(theta)) * jnp.outer(axis, axis))
  return jnp.eye(4).at[:3, :3].set(r)


def _warp(image, geometric):
  """image sampled bilinearly at geometric @ (x, y, 1) of each output pixel (centred pixel
  coordinates, x right and y down), mirrored beyond the edges."""
  h, w = image.shape[:2]
  ys, xs = jnp.meshgrid(jnp.arange(h) - (h - 1) / 2, jnp.arange(w) - (w - 1) / 2,
                        indexing='ij')
  points = jnp.stack([xs, ys, jnp.ones_like(xs)], axis=-1) @ geometric.T
  x, y = points[..., 0] + (w - 1) / 2, points[..., 1] + (h - 1) / 2
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]

  def at(yi, xi):
    return image[_mirror(yi, h), _mirror(xi, w)]
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
  bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
  return top * (1 - fy) + bottom * fy


def _mirror(i, n):
  """Whole-sample mirroring of index i into [0, n): ... 2 1 | 0 1 ... n-1 | n-2 ..."""
  period = 2 * (n - 1)
  i = jnp.abs(i) % period
  return jnp.where(i >= n, period - i, i)
