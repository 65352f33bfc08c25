"""FID, KID and precision/recall on the FID Inception network's pool3 features.

Features are computed data-parallel over every local device (the batch split on a `data`
mesh axis); each image's features do not depend on how many devices there are, and the
statistics are taken from all of them on the host in float64. The real images' features are
cached per (dataset, resolution, split, image subset, weight-file hash, resize mode).
"""

import functools
import hashlib
import os
import zipfile

import jax
import numpy as np
from flax import nnx
from absl import logging

from facegan_jax.errors import UsageError
from facegan_jax.evaluation import distances
from facegan_jax.evaluation import inception
from facegan_jax.evaluation import parallel
from facegan_jax.evaluation import torch_weights
from facegan_jax.run import files

WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
               'pt_inception-2015-12-05-6726825d.pth')
BATCH_PER_DEVICE = 25


def load_network(path):
  """(FIDInception with the weights at `path`, its 1008-way classifier on the pool3 features
  as float64 (weight (1008, 2048), bias (1008,)), the file's SHA-256).

  `path` is pytorch-fid's .pth (read by torch_weights, no pickle code runs) or an .npz of the
  same arrays by the same names (np.load without pickles).
  """
  if not os.path.isfile(path):
    raise UsageError(f'--inception_weights={path}: no such file (download {WEIGHTS_URL})')
  try:
    if path.endswith('.npz'):
      with np.load(path, allow_pickle=False) as f:
        state_dict = dict(f)
    else:
      state_dict = torch_weights.load(path)
    model = nnx.eval_shape(inception.FIDInception)  # its arrays are all the state_dict's
    inception.load_state_dict(model, state_dict)
    classifier = tuple(np.asarray(state_dict[f'fc.{name}'], np.float64)
                       for name in ('weight', 'bias'))
    if classifier[0].shape != (1008, 2048) or classifier[1].shape != (1008,):
      raise ValueError(f'fc has shapes {classifier[0].shape} and {classifier[1].shape}, the '
                       'network needs (1008, 2048) and (1008,)')
  except KeyError as e:
    raise UsageError(f'--inception_weights={path}: not the FID Inception weights (they lack '
                     f'{e})') from e
  except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
    raise UsageError(f'--inception_weights={path}: not the FID Inception weights ({e})') from e
  return model, classifier, files.sha256(path)


def features(model, images, resize_mode):
  """(N, 2048) float32 pool3 features of uint8 (N, H, W, 3) images."""
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  if resize_mode == 'pytorch_fid':  # resized on the devices
    return parallel.map_batches(lambda x: _forward(model, x, resize_mode), images,
                                BATCH_PER_DEVICE)
  return parallel.map_batches(lambda x: _forward(model, x, None), images, BATCH_PER_DEVICE,
                              prepare=lambda chunk: inception.resize(chunk, resize_mode))


@functools.partial(jax.jit, static_argnums=2)
def _forward(model, x, resize_mode):
  """Pool3 features of x: uint8 images resized here by `resize_mode`, or, when it is None,
  images already resized on the host. One compilation serves the real and the fake images."""
  return model(x if resize_mode is None else inception.resize(x, resize_mode))


def real_features_key(images, weights_digest, resize_mode):
  """What the real images' features are a function of: the images themselves (so a change of
  --channels, --resolution or the data changes the key), the network and the resize."""
  return dict(images=hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:32],
              shape='x'.join(map(str, images.shape)), weights=weights_digest,
              resize=resize_mode)


def cached_real_features(model, images, resize_mode, key):
  """features(model, images, resize_mode), read from or written to the cache under `key`."""
  cache_dir = files.cache_dir('fid_features')
  name = hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:24]
  path = os.path.join(cache_dir, f'{name}.npz')
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as cached:
      if cached['features'].shape[0] == len(images):
        return cached['features'], True
  logging.info('Inception features of %d real images (once; cached in %s)', len(images),
               cache_dir)
  out = features(model, images, resize_mode)
  os.makedirs(cache_dir, exist_ok=True)
  with files.atomic_path(path) as tmp:
    np.savez(tmp, features=out, key=repr(sorted(key.items())))
  return out, False


def metrics(real, fake, classifier, seed=0):
  """FID, KID (x1e3, mean and std over subsets), precision/recall (k=3) and the Inception
  Score of the fakes and of the reals (mean and std over 10 splits) from the pool3 features
  `real` and `fake`, the scores through `classifier` (load_network's)."""
  real, fake = real.astype(np.float64), fake.astype(np.float64)
  mu_r, sigma_r = distances.mean_and_covariance(real)
  mu_f, sigma_f = distances.mean_and_covariance(fake)
  kid_mean, kid_std = distances.kernel_inception_distance(
      real, fake, subset_size=min(1000, len(real), len(fake)), seed=seed)
  precision, recall = distances.precision_recall(real, fake, k=3)
  weight, bias = classifier
  is_mean, is_std = distances.inception_score(fake @ weight.T + bias)
  is_real, _ = distances.inception_score(real @ weight.T + bias)
  return dict(fid=float(distances.frechet_distance(mu_r, sigma_r, mu_f, sigma_f)),
              inception_score=is_mean, inception_score_std=is_std,
              inception_score_real=is_real,
              kid=1e3 * float(kid_mean), kid_std=1e3 * float(kid_std),
              precision=float(precision), recall=float(recall))
