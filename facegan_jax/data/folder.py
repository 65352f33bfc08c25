"""folder:PATH sources: a directory tree or .zip of image files, prepared once per content.

A folder whose images all sit in class subfolders (PATH/CLASS/..., as torchvision's
ImageFolder reads them; a zip's single top folder is looked through) is labelled: its classes
are the subfolder names in sorted order, and the class metrics use them.
"""

import hashlib
import json
import os

import numpy as np
from absl import logging

from facegan_jax.run import files as files_lib
from facegan_jax.data import images
from facegan_jax.data.cache import cached, data_root


def _source(path, shape, config):
  """(image cache path, class names or None, prepare() -> images) of a folder source."""
  path = os.path.expanduser(path)
  files = images.list_images(path)
  key = content_key(path, files)
  cache = os.path.join(data_root(config), 'facegan_folders',
                       f'{key}-{"x".join(map(str, shape))}.npy')
  classes = class_names([name for name, _ in files])
  names = sorted(set(classes.values())) if classes else None

  def prepare():
    logging.info('Preparing %d image files from %s (once)', len(files), path)
    prepared, bad = images.prepare(files, shape[0], shape[2],
                                   max_bad_fraction=config.max_bad_fraction)
    skipped = [f'{name}: {why}' for name, why in bad]
    images.log_skipped(skipped, path)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    if classes:
      bad_names = {name for name, _ in bad}
      code = {name: i for i, name in enumerate(names)}
      labels = [code[classes[name]] for name, _ in files if name not in bad_names]
      with files_lib.atomic_path(_labels_path(cache)) as tmp:
        np.save(tmp, np.asarray(labels, np.int32))
    with open(cache[:-4] + '.json', 'w') as f:
      json.dump(dict(source=os.path.abspath(path), images=len(prepared), skipped=skipped,
                     classes=names), f, indent=1)
    return prepared

  return cache, names, prepare


def load(path, shape, config):
  """A folder or zip of images, prepared once per content and shape."""
  cache, _, prepare = _source(path, shape, config)
  return cached(cache, prepare)


def load_labels(path, shape, config):
  """(class codes int32 (N,) of load()'s images, class names), or None for an unlabelled
  folder."""
  cache, names, prepare = _source(path, shape, config)
  if not names:
    return None
  if not os.path.exists(_labels_path(cache)):  # images prepared by a version without labels
    prepare()
  return np.load(_labels_path(cache)), names


def _labels_path(cache):
  return cache[:-4] + '-labels.npy'


def class_names(names):
  """{file name: class name} when every image sits in a class subfolder and there are at least
  two classes, else None. A single folder holding everything (a zip's top folder) is not a
  class: it is looked through."""
  parts = [name.replace('\\', '/').split('/') for name in names]
  while all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1:
    parts = [p[1:] for p in parts]
  if any(len(p) < 2 for p in parts) or len({p[0] for p in parts}) < 2:
    return None
  return {name: p[0] for name, p in zip(names, parts)}


def content_key(path, files=None):
  """The cache key of a folder source: covers what is read (path, names, sizes and times)."""
  files = images.list_images(path) if files is None else files
  listing = os.path.abspath(path) + ''.join(name for name, _ in files)
  stats = ([os.stat(path)] if os.path.isfile(path)
           else [os.stat(os.path.join(path, name)) for name, _ in files])
  listing += ''.join(f'{s.st_size}-{s.st_mtime_ns}' for s in stats)
  return hashlib.sha256(listing.encode()).hexdigest()[:16]
