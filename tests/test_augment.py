"""The augmentations D's inputs get: the identity at p = 0, differentiable, per example, and
doing what each transform names."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facegan_jax.augment import ada as ada_lib, diffaug as diffaug_lib


def images(n=6, size=16, channels=3, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, size, size, channels), minval=-1,
                            maxval=1)


def keys(n=6, seed=1):
  return jax.random.split(jax.random.PRNGKey(seed), n)


@pytest.mark.parametrize('channels', [3, 1])
def test_ada_at_p_0_is_the_identity_and_at_p_1_changes_every_image(channels):
  x = images(channels=channels)
  np.testing.assert_array_equal(ada(x, keys(), 0.0), x)
  changed = np.abs(np.asarray(ada(x, keys(), 1.0) - x)).reshape(len(x), -1).max(1)
  assert np.all(changed > 0.1)


ada = jax.jit(ada_lib.ada, static_argnums=3)


def test_ada_pipelines_apply_only_their_own_transforms():
  x = images(n=16)
  blit = np.asarray(ada(x, keys(16), 1.0, 'blit'))
  for original, out in zip(np.asarray(x), blit):  # lossless: every pixel is one of the input's
    pixels = {tuple(v) for v in original.reshape(-1, 3)}
    assert all(tuple(v) in pixels for v in out.reshape(-1, 3))
  assert sum(not np.array_equal(a, b) for a, b in zip(np.asarray(x), blit)) >= 12
  flat = jnp.broadcast_to(x[:, :1, :1], x.shape)  # one colour per image
  np.testing.assert_allclose(ada(flat, keys(16), 1.0, 'geom'), flat, atol=1e-6)
  colored = np.asarray(ada(flat, keys(16), 1.0, 'color'))
  np.testing.assert_allclose(colored, np.broadcast_to(colored[:, :1, :1], x.shape), atol=1e-6)
  assert not np.allclose(colored, flat, atol=0.05)
  assert not np.allclose(ada(x, keys(16), 1.0, 'geom'), x, atol=0.05)
diffaug = jax.jit(diffaug_lib.diffaug, static_argnums=2)
AUGMENTATIONS = {
    'ada': lambda x, k: ada(x, k, 0.8),
    'color': lambda x, k: diffaug(x, k, 'color'),
    'translation': lambda x, k: diffaug(x, k, 'translation'),
    'cutout': lambda x, k: diffaug(x, k, 'cutout'),
}


@pytest.mark.parametrize('name', AUGMENTATIONS)
def test_each_augmentation_is_differentiable_in_the_images(name):
  """Every transform is affine in the images (the keys fix the random draws), so its
  gradient is exact against a finite difference of any size: G learns through it."""
  f = AUGMENTATIONS[name]
  x, dx = images(), images(seed=2)
  weights = images(seed=3)
  loss = jax.jit(lambda x: jnp.sum(f(x, keys()) * weights))
  grad = jax.grad(loss)(x)
  assert float(jnp.abs(grad).max()) > 0
  finite = (loss(x + 0.5 * dx) - loss(x - 0.5 * dx))
  assert float(jnp.sum(grad * dx)) == pytest.approx(float(finite), rel=1e-3, abs=1e-2)


def test_randomness_follows_the_examples_key_not_its_batch():
  x, k = images(), keys()
  for name, f in AUGMENTATIONS.items():
    np.testing.assert_allclose(f(x, k)[2:4], f(x[2:4], k[2:4]), atol=1e-6, err_msg=name)
    assert not np.allclose(f(x, k)[:1], f(x[:1], k[1:2])), name


def test_translation_shifts_by_at_most_an_eighth_and_cutout_zeroes_half_the_side():
  x = images(n=32)
  shifted = jax.jit(diffaug_lib._shifted)
  moved = np.asarray(diffaug(x, keys(32), 'translation'))
  for original, out in zip(np.asarray(x), moved):
    matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
               if np.array_equal(out, np.asarray(shifted(original, dy, dx)))]
    assert matches
  cut = np.asarray(diffaug(x, keys(32), 'cutout'))
  zeroed = np.all(cut == 0, axis=-1)
  assert zeroed.any(axis=(1, 2)).all()
  for mask in zeroed:  # one rectangle of at most 8x8 (the side's half), clipped at edges
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    assert len(rows) <= 8 and len(cols) <= 8
    assert mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
  full = zeroed.sum(axis=(1, 2)) == 64
  assert full.any()  # and whole 8x8 squares away from the edges
