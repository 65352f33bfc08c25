"""--dataset: which source a name means, its images and stored attributes, and its version.

Sources:
  synthetic_faces[/small]  rendered offline by the project (TFDS builder, no download)
  celeba_small             the Udacity zip of 64x64 CelebA crops (TFDS builder; download or
                           a manual copy of the zip or its folder)
  tfds:NAME[:SPLIT]        any TFDS image dataset, e.g. tfds:celeb_a, tfds:mnist
  folder:PATH              a directory tree or .zip of jpg/png/webp/bmp files

Every source ends as the same uint8 array, cached as .npy under the data dir (cache.py).
"""

import os

import jax
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from facegan_jax.data import cache, celeba_small_builder, folder, synthetic_faces
from facegan_jax.data import synthetic_faces_builder, tfds_prepare
from facegan_jax.errors import UsageError


def check_dataset(name):
  """Raises UsageError unless `name` names a source (whether its data is present is checked
  when it is loaded)."""
  kind, _, rest = name.partition(':')
  if kind in ('tfds', 'folder') and rest or name in _named_sources():
    return
  raise UsageError(f'unknown --dataset={name}; available: synthetic_faces, '
                   'synthetic_faces/small, celeba_small, tfds:NAME[:SPLIT], folder:PATH')


def _named_sources():
  configs = synthetic_faces_builder.SyntheticFaces.BUILDER_CONFIGS
  return ('synthetic_faces', *(f'synthetic_faces/{c.name}' for c in configs), 'celeba_small')


def load_images(config, split='train'):
  """All images of `config.dataset`'s `split`, resized for the model: uint8 (N, R, R, C)."""
  check_dataset(config.dataset)
  shape = (config.resolution, config.resolution, config.channels)
  kind, _, rest = config.dataset.partition(':')
  if kind == 'folder':
    return folder.load(rest, shape, config)
  if kind == 'tfds':
    name, _, tfds_split = rest.partition(':')
    return tfds_prepare.load(name, tfds_split or split, shape, config)
  if config.dataset == 'celeba_small':
    builder = tfds_prepare.celeba_small_builder(config)
  else:
    builder = tfds_prepare.synthetic_faces_builder(config.dataset, config.data_dir)
  return cache.resized(builder, split, shape)


def load_attributes(config, split='train'):
  """synthetic_faces' stored generating attributes of `split`: float32 (N, len(ATTRIBUTES)),
  row i belonging to image i of load_images, columns in synthetic_faces.ATTRIBUTES order."""
  if config.dataset.partition('/')[0] != 'synthetic_faces':
    raise UsageError(f'--dataset={config.dataset} has no stored attributes')
  builder = tfds_prepare.synthetic_faces_builder(config.dataset, config.data_dir)

  def read():
    source = builder.as_data_source(split=split)
    rows = (source[i]['attributes'] for i in range(len(source)))  # one decode per record
    return np.array([[row[name] for name in synthetic_faces.ATTRIBUTES] for row in rows],
                    np.float32)
  return cache.cached(os.path.join(builder.data_dir, f'facegan-{split}-attributes.npy'),
                      read)


def load_labels(config, split='train'):
  """(class codes int32 (N,), class names) of load_images' images for a labelled dataset (a
  folder with class subfolders, a TFDS dataset with a `label` feature), else None."""
  check_dataset(config.dataset)
  kind, _, rest = config.dataset.partition(':')
  if kind == 'folder':
    return folder.load_labels(rest, (config.resolution, config.resolution, config.channels),
                              config)
  if kind == 'tfds':
    name, _, tfds_split = rest.partition(':')
    return tfds_prepare.load_labels(name, tfds_split or split, config)
  return None


def version(config):
  """What identifies the data behind `config.dataset`, for provenance: its TFDS builder's
  version, or for a folder the hash of its file listing (names, sizes, times)."""
  kind, _, rest = config.dataset.partition(':')
  if kind == 'folder':
    return 'files-' + folder.content_key(os.path.expanduser(rest))
  if kind == 'tfds':
    return str(tfds.builder(rest.partition(':')[0], data_dir=config.data_dir).version)
  if config.dataset == 'celeba_small':
    return str(celeba_small_builder.CelebaSmall.VERSION)
  return str(synthetic_faces_builder.SyntheticFaces.VERSION)


def load_training_images(config):
  """The training images; in a multi-process run process 0 prepares them first (once, into
  the data dir) while the others wait, then they read the prepared files."""
  first = jax.process_index() == 0
  if jax.process_count() > 1 and not first:
    multihost_utils.sync_global_devices('facegan_jax: data prepared')
  images = load_images(config, 'train')
  if jax.process_count() > 1 and first:
    multihost_utils.sync_global_devices('facegan_jax: data prepared')
  return images
