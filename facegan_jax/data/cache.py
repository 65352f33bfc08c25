"""The prepared-data cache: arrays as .npy files (no pickle) under the data dir.

Arrays are read back memory-mapped, so training never decodes an image twice and the host
input path never holds a whole dataset. What goes in a file, and under which name, is decided
by the sources (sources.py, folder.py); this module only reads and writes.
"""

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from facegan_jax.run import files


def data_root(config):
  """--data_dir, or TFDS's default."""
  return os.path.expanduser(config.data_dir or tfds.core.constants.DATA_DIR)


def read(path):
  """The cached array at `path` memory-mapped (read as needed: the host path never holds it
  all), or None when there is none. A file whose header or length does not hold together (a
  copy cut short, a damaged disk) is moved aside with a warning naming it, and None returned
  so that the caller rebuilds it."""
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


def write(path, array):
  """Saves `array` at `path`, never half-written, even if this run is killed."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with files.atomic_path(path) as tmp:
    np.save(tmp, array)
  logging.info('Cached %s images at %s', 'x'.join(map(str, array.shape)), path)
