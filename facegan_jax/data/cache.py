"""The prepared-data cache: every source's images as one uint8 .npy per split and shape.

Arrays are read back memory-mapped (no pickle), so training never decodes an image twice and
the host input path never holds a whole dataset.
"""

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from facegan_jax.run import files
from facegan_jax.run.progress import Progress
from facegan_jax.data import preprocess


_MAX_ORIGINALS_BYTES = 2 * 2**30


def data_root(config):
  """--data_dir, or TFDS's default."""
  return os.path.expanduser(config.data_dir or tfds.core.constants.DATA_DIR)


def resized(builder, split, shape, crop=None, image_key='image', cache_dir=None):
  """The split's images at `shape`, cached per shape in `cache_dir` (default: the builder's).

  Decoding records is the slow part (~0.6 ms each), so for small datasets (the decoded
  originals under _MAX_ORIGINALS_BYTES) the originals are cached too and each model shape is
  resized from them; larger ones (CelebA: 19 GB decoded) are resized chunk by chunk.
  """
  cache_dir = cache_dir or builder.data_dir
  name = 'x'.join(map(str, shape)) + (f'-crop{crop}' if crop else '')
  cache = os.path.join(cache_dir, f'facegan-{split}-{name}.npy')
  loaded = _load(cache)
  if loaded is not None:
    return loaded
  source = builder.as_data_source(split=split)
  source_shape = builder.info.features[image_key].shape
  if None not in source_shape and len(source) * np.prod(source_shape) <= _MAX_ORIGINALS_BYTES:
    originals = cached(os.path.join(cache_dir, f'facegan-{split}.npy'),
                        lambda: _read_all(source, image_key))
    if originals.shape[1:] == shape and crop is None:
      return originals
    return cached(cache, lambda: preprocess.to_model_images(originals, *shape[1:], crop=crop))
  return cached(cache, lambda: _read_all(source, image_key, shape, crop))


def cached(path, make):
  """The array cached at `path`, made by `make()` and saved there the first time (or again,
  when the file is damaged)."""
  loaded = _load(path)
  if loaded is not None:
    return loaded
  array = make()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with files.atomic_path(path) as tmp:  # never a half-written cache, even if this run is killed
    np.save(tmp, array)
  logging.info('Cached %s images at %s', 'x'.join(map(str, array.shape)), path)
  return array


def _load(path):
  """The cached array at `path` memory-mapped (read as needed: the host path never holds it
  all), or None when there is none. A file whose header or length does not hold together (a
  copy cut short, a damaged disk) is moved aside with a warning naming it, and rebuilt."""
  if not os.path.exists(path):
    return None
  try:
    array = np.load(path, mmap_mode='r', allow_pickle=False)
    if not isinstance(array, np.memmap):
      raise ValueError(f'not an array file ({type(array).__name__})')
    return array
  except (ValueError, OSError, EOFError) as e:
    aside = f'{path}.damaged'
    os.replace(path, aside)
    logging.warning('Prepared-data cache %s is damaged (%s); moved it to %s and rebuilding it '
                    'from the source', path, str(e).splitlines()[0] if str(e) else type(e).__name__,
                    aside)
    return None


def _read_all(source, image_key, shape=None, crop=None, chunk=2048):
  """Every image of a TFDS data source, as stored or (with `shape`) resized to it."""
  out = None
  progress = Progress('Decoding the prepared records', len(source), 'images')
  for start in range(0, len(source), chunk):
    progress(start)
    rows = [np.asarray(source[i][image_key]) for i in range(start, min(start + chunk, len(source)))]
    if shape is not None:
      rows = preprocess.to_model_images(rows, *shape[1:], crop=crop)
    if out is None:
      out = np.empty((len(source),) + rows[0].shape, np.uint8)
    out[start:start + len(rows)] = rows
  return out
