"""Datasets as uint8 arrays (N, H, W, C) at the model's resolution, prepared once and cached."""

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from facegan_jax.config import UsageError
from facegan_jax.data import preprocess

# Sources the flagfiles already name; their loaders are not written yet.
NOT_YET = ('celeba_small', 'tfds:', 'folder:')


def check_dataset(name):
  """Raises UsageError unless `name` is a dataset this version can load."""
  if name.startswith(NOT_YET):
    raise UsageError(f'--dataset={name} is not available yet; --dataset=synthetic_faces '
                     'works offline')
  if name.partition('/')[0] != 'synthetic_faces':
    raise UsageError(f'unknown --dataset={name}; available: synthetic_faces, '
                     'synthetic_faces/small')


def load_images(config, split='train'):
  """All images of `config.dataset`'s `split`, resized for the model: uint8 (N, R, R, C)."""
  check_dataset(config.dataset)
  builder = _synthetic_faces_builder(config.dataset, config.data_dir)
  shape = (config.resolution, config.resolution, config.channels)
  # Decoding records is the slow part (~0.6 ms each), so it happens once per split; each
  # model shape is then resized from the decoded originals.
  originals = os.path.join(builder.data_dir, f'facegan-{split}.npy')
  if builder.info.features['image'].shape == shape:
    return _cached(originals, lambda: _read_all(builder, split))
  cache = os.path.join(builder.data_dir, f'facegan-{split}-{"x".join(map(str, shape))}.npy')
  return _cached(cache, lambda: preprocess.to_model_images(
      _cached(originals, lambda: _read_all(builder, split)), *shape[1:]))


def _cached(path, make):
  if os.path.exists(path):
    return np.load(path)
  array = make()
  tmp = path + '.tmp.npy'
  np.save(tmp, array)
  os.replace(tmp, path)  # never a half-written cache, even if this run is killed
  logging.info('Cached %s images at %s', 'x'.join(map(str, array.shape)), path)
  return array


def _synthetic_faces_builder(name, data_dir):
  from facegan_jax.data import synthetic_faces_builder
  config_name = name.partition('/')[2] or None
  builder = synthetic_faces_builder.SyntheticFaces(
      config=config_name, data_dir=data_dir, file_format='array_record')
  if not builder.is_prepared():
    logging.info('Rendering %s into %s (once; ~1 min for the full set on 2 cores)',
                 name, builder.data_dir)
    tfds.disable_progress_bar()
    builder.download_and_prepare()
  return builder


def _read_all(builder, split, chunk=2048):
  source = builder.as_data_source(split=split)
  images = np.empty((len(source),) + source[0]['image'].shape, np.uint8)
  for start in range(0, len(source), chunk):
    rows = source.__getitems__(range(start, min(start + chunk, len(source))))
    images[start:start + len(rows)] = [row['image'] for row in rows]
  return images
