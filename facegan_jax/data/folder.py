"""folder:PATH sources: a directory tree or .zip of image files, prepared once per content.

A folder whose images all sit in class subfolders (PATH/CLASS/..., as torchvision's
ImageFolder reads them; a zip's single top folder is looked through) is labelled: its classes
are the subfolder names in sorted order, and the class metrics use them.
"""

import hashlib
import json
import os
from typing import NamedTuple

import numpy as np
from absl import logging

from facegan_jax.data import cache, images
from facegan_jax.run import files as files_lib


class _Folder(NamedTuple):
  """A folder source at one model shape: its files and where its caches go."""
  path: str
  shape: tuple  # the model's (R, R, C)
  files: list  # images.File
  cache_path: str  # the images' .npy; labels and a summary sit beside it
  classes: dict | None  # {file name: class name}, from class_names
  names: list | None  # the class names in code order


def _folder(path, shape, config):
  path = os.path.expanduser(path)
  files = images.list_images(path)
  cache_path = os.path.join(cache.data_root(config), 'facegan_folders',
                            f'{content_key(path, files)}-{"x".join(map(str, shape))}.npy')
  classes = class_names([name for name, _ in files])
  return _Folder(path, shape, files, cache_path, classes,
                 sorted(set(classes.values())) if classes else None)


def load(path, shape, config):
  """A folder or zip of images, prepared once per content and shape."""
  source = _folder(path, shape, config)
  prepared = cache.read(source.cache_path)
  if prepared is None:
    prepared = _prepare(source, config)
    cache.write(source.cache_path, prepared)
  return prepared


def class_list(path, shape, config):
  """The class names of a folder, from its listing alone (None if unlabelled)."""
  names = _folder(path, shape, config).names
  return names and [images.shown(name) for name in names]


def load_labels(path, shape, config):
  """(class codes int32 (N,) of load()'s images, class names), or None for an unlabelled
  folder."""
  source = _folder(path, shape, config)
  if not source.names:
    return None
  if not os.path.exists(_labels_path(source.cache_path)):  # prepared by a version without labels
    _prepare(source, config)
  return (np.load(_labels_path(source.cache_path)),
          [images.shown(name) for name in source.names])  # printed by the class metrics


def _prepare(source, config):
  """The folder's images decoded and resized (skipping unreadable files); writes their labels
  and a summary beside the images' cache, which the caller writes."""
  logging.info('Preparing %d image files from %s (once)', len(source.files),
               images.shown(source.path))
  prepared, bad = images.prepare(source.files, source.shape[0], source.shape[2],
                                 max_bad_fraction=config.max_bad_fraction)
  skipped = [f'{images.shown(name)}: {why}' for name, why in bad]
  images.log_skipped(skipped, source.path)
  os.makedirs(os.path.dirname(source.cache_path), exist_ok=True)
  if source.classes:
    bad_names = {name for name, _ in bad}
    code = {name: i for i, name in enumerate(source.names)}
    labels = [code[source.classes[name]] for name, _ in source.files if name not in bad_names]
    with files_lib.atomic_path(_labels_path(source.cache_path)) as tmp:
      np.save(tmp, np.asarray(labels, np.int32))
  with open(source.cache_path[:-4] + '.json', 'w') as f:
    json.dump(dict(source=os.path.abspath(source.path), images=len(prepared), skipped=skipped,
                   classes=source.names), f, indent=1)
  return prepared


def _labels_path(cache_path):
  return cache_path[:-4] + '-labels.npy'


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
  """The cache key of a folder source: covers what is read (path, names, sizes and times).
  Once per run (images.listed_once)."""
  return images.once('content_key', path, lambda: _content_key(path, files))


def _content_key(path, files):
  files = images.list_images(path) if files is None else files
  listing = os.path.abspath(path) + ''.join(name for name, _ in files)
  stats = ([os.stat(path)] if os.path.isfile(path)
           else [os.stat(os.path.join(path, name)) for name, _ in files])
  listing += ''.join(f'{s.st_size}-{s.st_mtime_ns}' for s in stats)
  return hashlib.sha256(os.fsencode(listing)).hexdigest()[:16]  # names need not be UTF-8
