"""folder:PATH sources: a directory tree or .zip of image files, prepared once per content."""

import hashlib
import json
import os

from absl import logging

from facegan_jax.data import images
from facegan_jax.data.cache import cached, data_root


def load(path, shape, config):
  """A folder or zip of images, prepared once per content and shape."""
  path = os.path.expanduser(path)
  files = images.list_images(path)
  key = content_key(path, files)
  cache = os.path.join(data_root(config), 'facegan_folders',
                       f'{key}-{"x".join(map(str, shape))}.npy')

  def prepare():
    logging.info('Preparing %d image files from %s (once)', len(files), path)
    prepared, skipped = images.prepare(files, shape[0], shape[2],
                                       max_bad_fraction=config.max_bad_fraction)
    skipped = [f'{name}: {why}' for name, why in skipped]
    images.log_skipped(skipped, path)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache[:-4] + '.json', 'w') as f:
      json.dump(dict(source=os.path.abspath(path), images=len(prepared), skipped=skipped), f,
                indent=1)
    return prepared

  return cached(cache, prepare)


def content_key(path, files=None):
  """The cache key of a folder source: covers what is read (path, names, sizes and times)."""
  files = images.list_images(path) if files is None else files
  listing = os.path.abspath(path) + ''.join(name for name, _ in files)
  stats = ([os.stat(path)] if os.path.isfile(path)
           else [os.stat(os.path.join(path, name)) for name, _ in files])
  listing += ''.join(f'{s.st_size}-{s.st_mtime_ns}' for s in stats)
  return hashlib.sha256(listing.encode()).hexdigest()[:16]
