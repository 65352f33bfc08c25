"""--dataset: which source a name means, its images and stored attributes, and its version.

Sources:
  synthetic_faces[/small]  rendered offline by the project (TFDS builder, no download)
  celeba_small             the Udacity zip of 64x64 CelebA crops (TFDS builder; download or
                           a manual copy of the zip or its folder)
  tfds:NAME[:SPLIT]        any TFDS image dataset, e.g. tfds:celeb_a, tfds:mnist
  folder:PATH              a directory tree or .zip of jpg/png/webp/bmp files

Every source follows one line, read top-down in load_images: the source, prepared once
(tfds_prepare.source, or folder.load for a folder), its images decoded (tfds_prepare.decode),
resized to the model's shape (preprocess.to_model_images), and cached as a uint8 .npy under
the data dir (cache.py), whose next read skips the rest.
"""

import dataclasses
import os

import jax
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from facegan_jax import config as config_lib
from facegan_jax.data import cache, celeba_small_builder, folder, preprocess, synthetic_faces
from facegan_jax.data import synthetic_faces_builder, tfds_prepare
from facegan_jax.errors import UsageError

# Datasets whose decoded records fit in this many bytes keep them cached, and each model shape
# is resized from them; larger ones (CelebA: 19 GB decoded) are resized as they are decoded.
_MAX_ORIGINALS_BYTES = 2 * 2**30


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
  source = tfds_prepare.source(config, split)
  name = 'x'.join(map(str, shape)) + (f'-crop{source.crop}' if source.crop else '')
  path = os.path.join(source.cache_dir, f'facegan-{source.split}-{name}.npy')
  images = cache.read(path)
  if images is not None:
    return images
  records = source.builder.as_data_source(split=source.split)
  stored_shape = source.builder.info.features[source.image_key].shape
  if None in stored_shape or len(records) * np.prod(stored_shape) > _MAX_ORIGINALS_BYTES:
    images = tfds_prepare.decode(records, source.image_key, shape, source.crop)
  else:
    originals = _originals(source, records)
    if originals.shape[1:] == shape and source.crop is None:
      return originals
    images = preprocess.to_model_images(originals, *shape[1:], crop=source.crop)
  cache.write(path, images)
  return images


def _originals(source, records):
  """The split's records decoded as stored, cached: decoding is the slow part, and every
  model shape is resized from these."""
  path = os.path.join(source.cache_dir, f'facegan-{source.split}.npy')
  originals = cache.read(path)
  if originals is None:
    originals = tfds_prepare.decode(records, source.image_key)
    cache.write(path, originals)
  return originals


def load_attributes(config, split='train'):
  """synthetic_faces' stored generating attributes of `split`: float32 (N, len(ATTRIBUTES)),
  row i belonging to image i of load_images, columns in synthetic_faces.ATTRIBUTES order."""
  if not config_lib.is_synthetic_faces(config.dataset):
    raise UsageError(f'--dataset={config.dataset} has no stored attributes')
  source = tfds_prepare.source(config, split)
  path = os.path.join(source.cache_dir, f'facegan-{source.split}-attributes.npy')
  attributes = cache.read(path)
  if attributes is None:
    records = source.builder.as_data_source(split=source.split)
    rows = (records[i]['attributes'] for i in range(len(records)))  # one decode per record
    attributes = np.array([[row[name] for name in synthetic_faces.ATTRIBUTES] for row in rows],
                          np.float32)
    cache.write(path, attributes)
  return attributes


def load_labels(config, split='train'):
  """(class codes int32 (N,), class names) of load_images' images for a labelled dataset (a
  folder with class subfolders, a TFDS dataset with a `label` feature), else None."""
  check_dataset(config.dataset)
  kind, _, rest = config.dataset.partition(':')
  if kind == 'folder':
    return folder.load_labels(rest, (config.resolution, config.resolution, config.channels),
                              config)
  if kind != 'tfds':
    return None
  source = tfds_prepare.source(config, split)
  feature = tfds_prepare.label_feature(source.builder)
  if feature is None:
    return None
  path = os.path.join(source.cache_dir, f'facegan-{source.split}-labels.npy')
  labels = cache.read(path)
  if labels is None:  # read once per split (TFDS's SkipDecoding would need TensorFlow)
    records = source.builder.as_data_source(split=source.split)
    labels = np.array([records[i]['label'] for i in range(len(records))], np.int32)
    cache.write(path, labels)
  return labels, feature.names


def class_names(config):
  """The class names of --condition, in code order, read without preparing the images: a
  synthetic_faces attribute's categories, a TFDS label feature's names or a folder's class
  subfolders. UsageError when the dataset has no labels."""
  if config.condition in synthetic_faces.CATEGORIES:
    return list(synthetic_faces.CATEGORIES[config.condition])
  kind, _, rest = config.dataset.partition(':')
  names = None
  if kind == 'folder':
    shape = (config.resolution, config.resolution, config.channels)
    names = folder.class_list(rest, shape, config)
  elif kind == 'tfds':
    feature = tfds_prepare.label_feature(
        tfds_prepare.tfds_builder(rest.partition(':')[0], config))
    names = feature and list(feature.names)
  if not names:
    raise UsageError(f'--condition={config.condition}: {config.dataset} has no class labels '
                     '(a folder needs its images in two or more class subfolders, a TFDS '
                     'dataset a label feature)')
  return names


def load_classes(config, split='train'):
  """int32 class codes (N,) of --condition for load_images(config, split)'s images."""
  if config.condition in synthetic_faces.CATEGORIES:
    column = synthetic_faces.ATTRIBUTES.index(config.condition)
    return load_attributes(config, split)[:, column].astype(np.int32)
  labelled = load_labels(config, split)
  if labelled is None:
    class_names(config)  # raises the error that says why
  return labelled[0]


def with_classes(config):
  """`config` with num_classes set from the data under --condition (unchanged without)."""
  if not config.condition:
    return config
  return dataclasses.replace(config, num_classes=len(class_names(config)))


def version(config):
  """What identifies the data behind `config.dataset`, for provenance: its TFDS builder's
  version, or for a folder the hash of its file listing (names, sizes, times)."""
  kind, _, rest = config.dataset.partition(':')
  if kind == 'folder':
    return 'files-' + folder.content_key(os.path.expanduser(rest))
  if kind == 'tfds':
    with tfds_prepare.no_stray_tempdirs():
      return str(tfds.builder(rest.partition(':')[0], data_dir=config.data_dir).version)
  if config.dataset == 'celeba_small':
    return str(celeba_small_builder.CelebaSmall.VERSION)
  return str(synthetic_faces_builder.SyntheticFaces.VERSION)


def training_indices(config, count):
  """Which of a train split's `count` images a run trains on: all, or --max_images of them,
  the same for every run (a fixed draw, in the split's order: the first N of a folder sorted
  into class subfolders would all be of its first classes)."""
  if not config.max_images:
    return np.arange(count)
  if config.max_images > count:
    raise UsageError(f'--max_images={config.max_images} but {config.dataset} has only {count} '
                     'training images')
  return np.sort(np.random.default_rng(0).permutation(count)[:config.max_images])


def training_part(config, split):
  """(training_indices, the images of the train split `split` at them): `split` itself where
  the run trains on all of it (no copy of a memory-mapped cache)."""
  indices = training_indices(config, len(split))
  return indices, split[indices] if config.max_images else split


def load_training_classes(config):
  """The class codes of --condition of load_training_images' images (read after them: in a
  multi-process run the images are prepared by then; each process reads the labels, and a
  label cache that is not yet written each writes whole)."""
  split = load_classes(config, 'train')
  return training_part(config, split)[1]


def load_training_images(config):
  """The training images; in a multi-process run process 0 prepares them first (once, into
  the data dir) while the others wait, then they read the prepared files. When process 0
  fails, every process stops with an error (none waits for it forever)."""
  return training_part(config, _load_train_split(config))[1]


def _load_train_split(config):
  if jax.process_count() == 1:
    return load_images(config, 'train')
  ready = True
  if jax.process_index() == 0:
    try:
      images = load_images(config, 'train')
    except BaseException:
      multihost_utils.broadcast_one_to_all(np.int32(False))
      raise
  ready = bool(multihost_utils.broadcast_one_to_all(np.int32(ready)))
  if not ready:
    raise UsageError('process 0 could not prepare the data (its log says why)')
  return images if jax.process_index() == 0 else load_images(config, 'train')
