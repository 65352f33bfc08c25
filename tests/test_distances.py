"""FID's Fréchet distance, KID and precision/recall against straightforward references."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from facegan_jax.evaluation import distances


def features(rng, n, d, shift=0.0):
  return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + shift


def reference_frechet(mu1, s1, mu2, s2):
  """pytorch-fid's formula: the general matrix square root of S1 S2."""
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


# (n, d): well conditioned, then fewer samples than dimensions (singular covariances).
@pytest.mark.parametrize('n, d', [(500, 16), (200, 64), (70, 64), (50, 64)])
def test_frechet_distance_matches_scipy_sqrtm(n, d):
  rng = np.random.default_rng(n + d)
  a, b = features(rng, n, d), features(rng, n, d, shift=0.1)
  stats = distances.mean_and_covariance(a) + distances.mean_and_covariance(b)
  ours, theirs = distances.frechet_distance(*stats), reference_frechet(*stats)
  assert abs(ours - theirs) <= 1e-6 * abs(theirs)


def test_frechet_distance_of_a_set_to_itself_is_zero():
  for n in (500, 40):  # 40 < 64: a singular covariance, whose square root is ill-conditioned
    mu, sigma = distances.mean_and_covariance(features(np.random.default_rng(0), n, 64))
    assert abs(distances.frechet_distance(mu, sigma, mu, sigma)) < 1e-7 * np.trace(sigma)


def reference_kid(x, y):
  """MMD^2, unbiased, with the cubic polynomial kernel, by explicit sums over pairs."""
  m, d = len(x), x.shape[1]
  k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  return xx + yy - 2 * xy


def test_kid_matches_explicit_sums_and_separates_distributions():
  rng = np.random.default_rng(1)
  x, y = rng.normal(size=(30, 8)), rng.normal(size=(30, 8)) + 0.5
  mean, std = distances.kernel_inception_distance(x, y, num_subsets=1, subset_size=30)
  assert abs(mean - reference_kid(x, y)) <= 1e-6 * abs(reference_kid(x, y)) and std == 0
  same, _ = distances.kernel_inception_distance(x, rng.normal(size=(30, 8)), num_subsets=20,
                                                subset_size=20)
  apart, _ = distances.kernel_inception_distance(x, y, num_subsets=20, subset_size=20)
  assert abs(same) < apart


def reference_precision_recall(real, fake, k):
  def radii(a):
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)
    return np.sort(d, axis=1)[:, k]
  def covered(queries, a):
    d = np.linalg.norm(queries[:, None] - a[None], axis=-1)
    return np.mean((d <= radii(a)[None]).any(axis=1))
  return covered(fake, real), covered(real, fake)


def test_precision_recall_match_brute_force_and_behave():
  rng = np.random.default_rng(2)
  real = rng.normal(size=(120, 5))
  narrow = rng.normal(size=(100, 5)) * 0.3        # inside the reals, covering little
  far = rng.normal(size=(100, 5)) + 6.0            # nowhere near them
  for fake in (narrow, far):
    ours = distances.precision_recall(real, fake, k=3, batch=37)
    assert ours == pytest.approx(reference_precision_recall(real, fake, 3), abs=1e-12)
  precision, recall = distances.precision_recall(real, narrow)
  assert precision > 0.9 and recall < 0.5
  assert distances.precision_recall(real, far) == (0.0, 0.0)


def test_inception_score_matches_a_direct_computation_and_its_extremes():
  logits = np.random.default_rng(0).normal(0, 3, (1003, 12))  # 1003: unequal splits
  # Directly: softmax per image, then per split KL(p(y|x) || p(y)) by scipy, exp of the mean.
  p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  scores = []
  for i in range(10):
    part = p[i * 1003 // 10:(i + 1) * 1003 // 10]
    scores.append(np.exp(np.mean([scipy.stats.entropy(row, part.mean(axis=0)) for row in part])))
  mean, std = distances.inception_score(logits)
  assert mean == pytest.approx(np.mean(scores), rel=1e-12)
  assert std == pytest.approx(np.std(scores), rel=1e-9)
  # One class for every image: 1. Confident and spread evenly over K classes per split: K.
  assert distances.inception_score(np.zeros((100, 5)))[0] == pytest.approx(1.0)
  confident = 50.0 * np.eye(8)[np.arange(800) % 8]
  mean, std = distances.inception_score(confident)
  assert mean == pytest.approx(8.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
