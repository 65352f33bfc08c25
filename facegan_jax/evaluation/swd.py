"""Sliced Wasserstein distance on Laplacian-pyramid patches (Karras et al. 2018, Progressive
GAN, appendix D): a distance between two image sets that needs no pretrained network.

Each image is split into a Laplacian pyramid down to 16x16; from every level, 128 random 7x7
neighbourhoods per image become descriptors, each set normalised per level and colour channel
by its own mean and standard deviation (as the paper's code does: SWD compares the structure
of the patches, not global colour or contrast). Per level, the distance is the mean over
4 x 128 random unit directions of the 1-D Wasserstein-1 distance between the projected
descriptor sets (sorted and compared). Reported x 1e3, per level (finest first) and averaged,
as in the paper.
"""

import concurrent.futures
import os

import numpy as np

_BINOMIAL = np.array([1, 4, 6, 4, 1], np.float64) / 16


def _blur(images):
  """Separable 5x5 binomial filter over H and W of (N, H, W, C), reflecting at the edges."""
  for axis in (1, 2):
    padded = np.pad(images, [(2, 2) if a == axis else (0, 0) for a in range(4)], mode='reflect')
    images = sum(w * np.take(padded, np.arange(i, i + images.shape[axis]), axis=axis)
                 for i, w in enumerate(_BINOMIAL))
  return images


def laplacian_pyramid(images, min_resolution=16):
  """Levels of (N, H, W, C) float images, finest first; the last is the coarsest Gaussian."""
  levels = []
  while images.shape[1] > min_resolution:
    down = _blur(images)[:, ::2, ::2]
    up = np.zeros_like(images)
    up[:, ::2, ::2] = down
    levels.append(images - 4 * _blur(up))
    images = down
  return levels + [images]


def descriptors(level, rng, per_image=128, size=7):
  """`per_image` random size x size neighbourhoods of each image: (N * per_image, size, size, C)."""
  n, h, w, _ = level.shape
  ys = rng.integers(0, h - size + 1, (n, per_image))
  xs = rng.integers(0, w - size + 1, (n, per_image))
  offsets = np.arange(size)
  rows = (ys[..., None] + offsets)[..., :, None]
  cols = (xs[..., None] + offsets)[..., None, :]
  patches = level[np.arange(n)[:, None, None, None], rows, cols]
  return patches.reshape(n * per_image, size, size, level.shape[-1])


def _normalized(patches):
  """(M, size, size, C) -> (M, size * size * C), zero mean and unit variance per channel."""
  patches = patches - patches.mean(axis=(0, 1, 2))
  patches = patches / (patches.std(axis=(0, 1, 2)) + 1e-8)
  return patches.reshape(len(patches), -1).astype(np.float32)


def _sorted_projections(x, dirs):
  """(directions, M) float32 projections of x (M, D), each row sorted; the sorts are most
  of SWD's time, so the rows are sorted on all cores (numpy's sort releases the GIL)."""
  projected = dirs.T.astype(np.float32) @ x.T  # x is float32 (_normalized)
  blocks = np.array_split(projected, os.cpu_count() or 1)  # views of row blocks
  with concurrent.futures.ThreadPoolExecutor(len(blocks)) as pool:
    list(pool.map(lambda block: block.sort(axis=1), blocks))  # in place
  return projected


def sliced_wasserstein(a, b, rng, repeats=4, directions=128):
  """Mean 1-D Wasserstein-1 distance of (M, D) and (M, D) along random unit directions."""
  results = []
  for _ in range(repeats):
    dirs = rng.normal(size=(a.shape[1], directions))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    results.append(np.abs(_sorted_projections(a, dirs) - _sorted_projections(b, dirs)).mean())
  return float(np.mean(results))


def swd(real, fake, seed=0):
  """SWD x 1e3 between uint8 image sets (N, H, W, C) of equal size: ([per level], mean)."""
  if len(real) != len(fake):
    raise ValueError(f'swd needs as many real as fake images ({len(real)} vs {len(fake)})')
  rng = np.random.default_rng(seed)
  to_float = lambda x: np.asarray(x, np.float64) / 127.5 - 1  # noqa: E731
  per_level = []
  for real_level, fake_level in zip(laplacian_pyramid(to_float(real)),
                                    laplacian_pyramid(to_float(fake))):
    # The same patch positions in both sets (the paper's code draws them independently,
    # which leaves a sampling-noise floor even between a set of images and itself).
    state = rng.bit_generator.state
    a = _normalized(descriptors(real_level, rng))
    rng.bit_generator.state = state
    b = _normalized(descriptors(fake_level, rng))
    per_level.append(1e3 * sliced_wasserstein(a, b, rng))
  return per_level, float(np.mean(per_level))
