"""ADA (Karras et al. 2020): StyleGAN2-ADA's `bgc` pipeline, each transform applied with
probability p, and p's adjustment from D's real logits."""

import functools
import math

import jax
import jax.numpy as jnp

from facegan_jax.augment import ADA_PIPELINES
from facegan_jax.mesh import DATA_AXIS

# The pipeline's strengths (StyleGAN2-ADA's AugmentPipe defaults).
TRANSLATE_INT = 0.125  # of the image size, rounded to whole pixels
SCALE_STD = 0.2  # log2 of isotropic and anisotropic scale factors
TRANSLATE_FRAC_STD = 0.125
BRIGHTNESS_STD = 0.2
CONTRAST_STD = 0.5  # log2
SATURATION_STD = 1.0  # log2

# Each transform draws from its own row of the example's draws, the row of its fixed id here: a
# transform added or removed leaves every other one's draws as they were (with threefry's
# partitionable counters, a row's values do not depend on how many rows are drawn).
TRANSFORM_IDS = dict(flip=0, rotate90=1, translate_int=2, scale=3, rotate_pre=4, aniso=5,
                     rotate_post=6, translate_frac=7, brightness=8, contrast=9, luma_flip=10,
                     hue=11, saturation=12)
# A row: whether the transform applies, then its uniform draws, then its normal ones.
DRAWS_PER_TRANSFORM = 4


def ada(images, keys, p, pipeline='bgc'):
  """ADA's augmentation of `images` (B, H, W, C), each transform of `pipeline`'s groups
  (ADA_PIPELINES) with probability p.

  Blit (flip, 90° rotations, integer translation) and geometric (isotropic scaling, rotation,
  anisotropic scaling, rotation, fractional translation) transforms compose into one affine
  map per image, sampled once, bilinearly, with mirrored edges (exact for blits alone); colour
  (brightness, contrast, luma flip, hue, saturation) compose into one affine colour map. With
  p = 0 both are the identity and the images come back unchanged. Each transform draws from
  its own key (TRANSFORM_IDS), so its draws depend on neither the pipeline nor the others.
  """
  h, w, c = images.shape[1:]
  groups = ADA_PIPELINES[pipeline]
  geometric, color = _transforms(keys, p, (h, w), groups)
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


@functools.partial(jax.jit, static_argnums=(2, 3))
def _transforms(keys, p, size, groups):
  """Each example's transforms (_ada_transforms). Jitted: a step calls ADA on reals and
  fakes in each D update, and under R1 differentiates it, all on the same shapes; the draws,
  which take no gradient, are traced once for all of them (a tiny main.py run with R1, ADA
  and two D updates a step started ~2.4 s sooner on 2 cores: 16.1 s against 13.7)."""
  return jax.vmap(lambda k: _ada_transforms(k, p, size, groups))(keys)


def _ada_transforms(key, p, size, groups='bgc'):
  """One image's (3x3 geometric map from output to input pixel, 4x4 colour map) from the
  transforms of `groups` ('b', 'g', 'c' for blit, geometric and colour)."""
  h, w = size

  # One draw of uniforms for all transforms: a threefry call per transform made ADA's step
  # ~8x the HLO of a step without it, and ~7x its compile time (0.8 s against 7 s for a tiny
  # DCGAN's step at XLA's -O0 on 2 cores); its normals by the inverse CDF, as
  # jax.random.normal draws them.
  table = jax.random.uniform(key, (len(TRANSFORM_IDS), DRAWS_PER_TRANSFORM))
  normals = math.sqrt(2) * jax.lax.erf_inv(jnp.maximum(table * 2 - 1, jnp.nextafter(-1.0, 0.0)))

  def draws(name, group, prob=None, uniform=1, normal=0):
    """(whether transform `name` of `group` applies, its uniform draws, its normal draws)."""
    row = TRANSFORM_IDS[name]
    on = (table[row, 0] < (p if prob is None else prob)) & (group in groups)
    return on, table[row, 1:1 + uniform], normals[row, 1 + uniform:1 + uniform + normal]

  eye = jnp.eye(3)
  geometric = eye
  # Flip and 90° rotations from integer tables: exact maps of pixel centres.
  on, u, _ = draws('flip', 'b')
  flip = on & (u[0] < 0.5)
  geometric = geometric @ jnp.where(flip, jnp.diag(jnp.array([-1.0, 1.0, 1.0])), eye)
  on, u, _ = draws('rotate90', 'b')
  quarter = jnp.where(on, jnp.floor(u[0] * 4), 0).astype(jnp.int32)
  rotations = jnp.array([[[1, 0], [0, 1]], [[0, -1], [1, 0]], [[-1, 0], [0, -1]],
                         [[0, 1], [-1, 0]]], jnp.float32)
  geometric = geometric @ eye.at[:2, :2].set(rotations[quarter])
  on, u, _ = draws('translate_int', 'b', uniform=2)
  t = jnp.where(on, jnp.round((u * 2 - 1) * TRANSLATE_INT * jnp.array([w, h])), 0.0)
  geometric = geometric @ _translate(t)
  on, _, n = draws('scale', 'g', uniform=0, normal=1)
  s = jnp.where(on, jnp.exp2(n[0] * SCALE_STD), 1.0)
  geometric = geometric @ jnp.diag(jnp.array([1 / s, 1 / s, 1.0]))
  rotate_p = 1 - jnp.sqrt(jnp.maximum(1 - p, 0.0))  # two rotations: p in all
  on, u, _ = draws('rotate_pre', 'g', rotate_p)
  theta = jnp.where(on, (u[0] * 2 - 1) * math.pi, 0.0)
  geometric = geometric @ _rotate(-theta)
  on, _, n = draws('aniso', 'g', uniform=0, normal=1)
  s = jnp.where(on, jnp.exp2(n[0] * SCALE_STD), 1.0)
  geometric = geometric @ jnp.diag(jnp.array([1 / s, s, 1.0]))
  on, u, _ = draws('rotate_post', 'g', rotate_p)
  theta = jnp.where(on, (u[0] * 2 - 1) * math.pi, 0.0)
  geometric = geometric @ _rotate(-theta)
  on, _, n = draws('translate_frac', 'g', uniform=0, normal=2)
  t = jnp.where(on, n * TRANSLATE_FRAC_STD * jnp.array([w, h]), 0.0)
  geometric = geometric @ _translate(-t)

  eye4 = jnp.eye(4)
  luma = jnp.array([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)
  color = eye4
  on, _, n = draws('brightness', 'c', uniform=0, normal=1)
  b = jnp.where(on, n[0] * BRIGHTNESS_STD, 0.0)
  color = eye4.at[:3, 3].set(b) @ color
  on, _, n = draws('contrast', 'c', uniform=0, normal=1)
  s = jnp.where(on, jnp.exp2(n[0] * CONTRAST_STD), 1.0)
  color = jnp.diag(jnp.array([s, s, s, 1.0])) @ color
  on, u, _ = draws('luma_flip', 'c')
  flip = (on & (u[0] < 0.5)).astype(jnp.float32)
  color = (eye4 - 2 * flip * jnp.outer(luma, luma)) @ color
  # Hue and saturation: the identity itself when off (their matrices are not exactly it).
  on, u, _ = draws('hue', 'c')
  hue = _rotate_about(luma[:3], (u[0] * 2 - 1) * math.pi)
  color = jnp.where(on, hue, eye4) @ color
  on, _, n = draws('saturation', 'c', uniform=0, normal=1)
  s = jnp.exp2(n[0] * SATURATION_STD)
  saturation = jnp.outer(luma, luma) + (eye4 - jnp.outer(luma, luma)) * s
  color = jnp.where(on, saturation, eye4) @ color
  return geometric, color


def adjust(p, real_logits, target, kimg):
  """ADA's p after one batch: up while more than `target` of D's real logits' signs are
  positive (r_t = E[sign D(x)] above the target), down otherwise, by a step that moves p by 1
  per `kimg` thousand images. r_t from integer counts over the global batch (inside
  shard_map), so its comparison does not depend on the device count."""
  positive = jax.lax.psum(jnp.sum(real_logits > 0), DATA_AXIS)
  negative = jax.lax.psum(jnp.sum(real_logits < 0), DATA_AXIS)
  total = real_logits.shape[0] * jax.lax.axis_size(DATA_AXIS)
  direction = jnp.sign((positive - negative) - target * total)
  return jnp.clip(p + direction * total / (kimg * 1000), 0.0, 1.0)


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
