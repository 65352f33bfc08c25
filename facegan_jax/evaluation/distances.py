"""Distances between sets of features: FID's Fréchet distance, KID, precision and recall.

All take features as arrays (N, D) (or, for the Fréchet distance, their mean and covariance)
and compute in float64 NumPy (and LAPACK): the statistics are small (D = 2048 at most) and
these numbers are reported to several digits, so they are computed once, exactly, on the host.
"""

import numpy as np


def mean_and_covariance(features):
  """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
  features = np.asarray(features, np.float64)
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _factor(sigma):
  """A (D, r) with A A^T = sigma, r its numerical rank: pivoted Cholesky (LAPACK's dpstrf,
  which stops once the largest remaining diagonal is at rounding level), so a covariance of N
  samples, of rank at most N - 1, costs O(D^2 N), not O(D^3)."""
  import scipy.linalg  # noqa: PLC0415  (slow to import, and main.py's runs import this module)
  lower, pivots, rank, info = scipy.linalg.lapack.dpstrf(sigma, lower=1)
  if info < 0:
    raise ValueError(f'dpstrf: argument {-info} is invalid')
  factor = np.empty((len(sigma), rank))
  factor[pivots - 1] = np.tril(lower)[:, :rank]
  return factor


def frechet_distance(mu1, sigma1, mu2, sigma2):
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), the Fréchet distance of two Gaussians.

  Tr((S1 S2)^1/2) is the sum of the square roots of the eigenvalues of S1 S2. With S1 = A A^T
  (A of S1's rank r: _factor), those are the eigenvalues of A^T S2 A, an r x r symmetric
  positive semi-definite matrix (and S1 S2's other eigenvalues are 0); the side of lower rank
  is factored. Computed with `eigvalsh`, this stays real and accurate when the covariances are
  singular (fewer samples than dimensions), where the general matrix square root
  (scipy.linalg.sqrtm, as pytorch-fid uses) returns complex noise, and for N samples of
  D-dimensional features it costs O(D^2 N) instead of O(D^3).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  factor, other = min((_factor(sigma1), sigma2), (_factor(sigma2), sigma1),
                      key=lambda pair: pair[0].shape[1])
  middle = factor.T @ other @ factor
  eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
  trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def kernel_inception_distance(real, fake, num_subsets=100, subset_size=1000, seed=0):
  """KID (Bińkowski et al. 2018): the unbiased MMD^2 with the kernel (x.y / D + 1)^3,
  averaged over `num_subsets` random subsets of `subset_size` from each set (as clean-fid and
  StyleGAN2-ADA). Returns (mean, standard deviation over subsets)."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  dim = real.shape[1]
  m = min(subset_size, len(real), len(fake))
  rng = np.random.default_rng(seed)
  estimates = []
  for _ in range(num_subsets):
    x = real[rng.choice(len(real), m, replace=False)]
    y = fake[rng.choice(len(fake), m, replace=False)]
    k_xx, k_yy, k_xy = ((a @ b.T / dim + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    estimates.append(within - 2 * k_xy.mean())
  return float(np.mean(estimates)), float(np.std(estimates))


def _squared_distances(a, b):
  return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :], 0)


def _kth_neighbour_radii(features, k, batch):
  """Squared distance of each feature to its k-th nearest other feature."""
  radii = np.empty(len(features))
  for i in range(0, len(features), batch):
    d = _squared_distances(features[i:i + batch], features)
    radii[i:i + batch] = np.partition(d, k, axis=1)[:, k]  # index 0 is the point itself
  return radii


def _covered(queries, features, radii, batch):
  """Fraction of `queries` inside the k-NN ball of at least one of `features`."""
  inside = np.zeros(len(queries), bool)
  for i in range(0, len(queries), batch):
    inside[i:i + batch] = (_squared_distances(queries[i:i + batch], features)
                           <= radii[None, :]).any(axis=1)
  return float(inside.mean())


def precision_recall(real, fake, k=3, batch=1000):
  """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the fraction of
  fakes inside the k-NN manifold of the reals, recall the fraction of reals inside the fakes'."""
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  precision = _covered(fake, real, _kth_neighbour_radii(real, k, batch), batch)
  recall = _covered(real, fake, _kth_neighbour_radii(fake, k, batch), batch)
  return precision, recall


def inception_score(logits, splits=10):
  """Inception Score (Salimans et al. 2016) of classifier `logits` (N, K): exp of the mean KL
  divergence of p(y|x) from p(y) within each of `splits` consecutive parts (the original's
  boundaries, i * N // splits), as (mean, population std) over the parts."""
  logits = np.asarray(logits, np.float64)
  logits = logits - logits.max(axis=1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  n, scores = len(log_p), []
  for i in range(splits):
    part = log_p[i * n // splits:(i + 1) * n // splits]
    log_py = np.log(np.exp(part).mean(axis=0))
    scores.append(np.exp((np.exp(part) * (part - log_py)).sum(axis=1).mean()))
  return float(np.mean(scores)), float(np.std(scores))
