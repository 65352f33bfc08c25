"""Sliced Wasserstein distance: zero for identical sets, growing as the fakes drift away."""

import numpy as np
import pytest

from facegan_jax.evaluation import swd


def faces(n, seed):
  """Smooth random images: blobs of colour, like low-frequency image content."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:32, :32] / 32
  images = np.zeros((n, 32, 32, 3))
  for _ in range(4):
    cy, cx, r = rng.uniform(0.2, 0.8, (3, n, 1, 1, 1))
    colour = rng.uniform(0, 255, (n, 1, 1, 3))
    blob = np.exp(-((yy[None, ..., None] - cy) ** 2 + (xx[None, ..., None] - cx) ** 2)
                  / (0.05 * r))
    images += blob * colour
  return np.clip(images, 0, 255).astype(np.uint8)


def test_pyramid_levels_and_exact_reconstruction():
  images = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3))
  levels = swd.laplacian_pyramid(images)
  assert [level.shape[1] for level in levels] == [64, 32, 16]
  # Collapsing the pyramid gives the image back.
  image = levels[-1]
  for level in reversed(levels[:-1]):
    up = np.zeros_like(level)
    up[:, ::2, ::2] = image
    image = level + 4 * swd._blur(up)
  np.testing.assert_allclose(image, images, atol=1e-12)


def test_identical_sets_give_zero():
  real = faces(16, 0)
  per_level, mean = swd.swd(real, real)
  assert len(per_level) == 2 and mean == pytest.approx(0, abs=1e-9)


def test_grows_monotonically_as_fakes_drift_from_the_reals():
  real, other = faces(48, 1), faces(48, 2)
  noise = np.random.default_rng(3).uniform(0, 255, real.shape)
  distances = [swd.swd(real, ((1 - a) * other + a * noise).astype(np.uint8))[1]
               for a in (0.0, 0.2, 0.5, 1.0)]
  assert distances == sorted(distances) and distances[-1] > 5 * distances[0], distances


def test_unequal_set_sizes_are_an_error():
  with pytest.raises(ValueError, match='as many real as fake images'):
    swd.swd(faces(4, 0), faces(5, 0))
