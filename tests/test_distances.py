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


def exact_frechet_of_features(x, y):
  """The Fréchet distance of the Gaussians of features x and y straight from the features:
  with S1 = A A^T and S2 = B B^T (A, B the centred features over sqrt(N - 1)), S1 S2's
  eigenvalues are those of A^T B B^T A, so Tr((S1 S2)^1/2) is the sum of A^T B's singular
  values, an N1 x N2 matrix (no D x D decomposition, nothing near-singular)."""
  a, b = ((f - f.mean(0)) / np.sqrt(len(f) - 1) for f in (x, y))
  diff = x.mean(0) - y.mean(0)
  return (diff @ diff + (a * a).sum() + (b * b).sum()
          - 2 * np.linalg.svd(a @ b.T, compute_uv=False).sum())


# Inception's D = 2048 with 16 and 64 images (main.py's small evaluations: covariances of rank
# 15 and 63), post-ReLU features as Inception's pool3; a rank-deficient side against a full-rank
# one; and full-rank ones.
@pytest.mark.parametrize('n1, n2, d', [(16, 16, 2048), (64, 40, 2048), (20, 300, 64),
                                       (300, 20, 64), (500, 400, 32)])
def test_frechet_distance_equals_the_exact_form_from_the_features(n1, n2, d):
  rng = np.random.default_rng(n1 + n2 + d)
  x = np.maximum(rng.normal(size=(n1, d)), 0)
  y = np.maximum(rng.normal(size=(n2, d)) + 0.1, 0)
  ours = distances.frechet_distance(*distances.mean_and_covariance(x),
                                    *distances.mean_and_covariance(y))
  exact = exact_frechet_of_features(x, y)
  assert abs(ours - exact) <= 1e-12 * abs(exact), (ours, exact)


def test_frechet_distance_of_constant_features_is_the_other_sides_spread():
  """A covariance of 0 (rank 0): the distance is ||mu1 - mu2||^2 + Tr(S2)."""
  mu, sigma = distances.mean_and_covariance(np.ones((5, 7)))
  mu2, sigma2 = distances.mean_and_covariance(np.random.default_rng(0).normal(size=(5, 7)))
  expected = np.sum((mu - mu2) ** 2) + np.trace(sigma2)
  assert distances.frechet_distance(mu, sigma, mu2, sigma2) == pytest.approx(expected, rel=1e-12)
  assert distances.frechet_distance(mu2, sigma2, mu, sigma) == pytest.approx(expected, rel=1e-12)


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
