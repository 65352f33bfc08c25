"""Datasets as uint8 arrays (N, H, W, C) at the model's resolution, prepared once and cached.

Sources (`--dataset`):
  synthetic_faces[/small]  rendered offline by the project (TFDS builder, no download)
  celeba_small             the Udacity zip of 64x64 CelebA crops (TFDS builder; download or
                           a manual copy of the zip or its folder)
  tfds:NAME[:SPLIT]        any TFDS image dataset, e.g. tfds:celeb_a, tfds:mnist
  folder:PATH              a directory tree or .zip of jpg/png/webp/bmp files

Every source ends as the same uint8 array, cached as .npy under the data dir (no pickle), so
training never decodes an image twice and never imports TensorFlow.
"""

import hashlib
import json
import os
import socket

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from facegan_jax.config import UsageError
from facegan_jax.data import images, preprocess

# The customary CelebA face crop before resizing: the centred 108x108 square of the 178x218
# aligned images, as in carpedm20's DCGAN-tensorflow (and the Udacity project's ancestry).
CELEB_A_CROP = 108


def check_dataset(name):
  """Raises UsageError unless `name` names a source (whether its data is present is checked
  when it is loaded)."""
  kind, _, rest = name.partition(':')
  if kind in ('tfds', 'folder') and rest or name in _named_sources():
    return
  raise UsageError(f'unknown --dataset={name}; available: synthetic_faces, '
                   'synthetic_faces/small, celeba_small, tfds:NAME[:SPLIT], folder:PATH')


def _named_sources():
  from facegan_jax.data import synthetic_faces_builder
  configs = synthetic_faces_builder.SyntheticFaces.BUILDER_CONFIGS
  return ('synthetic_faces', *(f'synthetic_faces/{c.name}' for c in configs), 'celeba_small')


def load_images(config, split='train'):
  """All images of `config.dataset`'s `split`, resized for the model: uint8 (N, R, R, C)."""
  check_dataset(config.dataset)
  shape = (config.resolution, config.resolution, config.channels)
  kind, _, rest = config.dataset.partition(':')
  if kind == 'folder':
    return _folder(rest, shape, config)
  if kind == 'tfds':
    name, _, tfds_split = rest.partition(':')
    return _tfds(name, tfds_split or split, shape, config)
  if config.dataset == 'celeba_small':
    builder = _celeba_small_builder(config)
  else:
    builder = _synthetic_faces_builder(config.dataset, config.data_dir)
  return _resized(builder, split, shape)


def load_attributes(config, split='train'):
  """synthetic_faces' stored generating attributes of `split`: float32 (N, len(ATTRIBUTES)),
  row i belonging to image i of load_images, columns in synthetic_faces.ATTRIBUTES order."""
  from facegan_jax.data import synthetic_faces
  if config.dataset.partition('/')[0] != 'synthetic_faces':
    raise UsageError(f'--dataset={config.dataset} has no stored attributes')
  builder = _synthetic_faces_builder(config.dataset, config.data_dir)

  def read():
    source = builder.as_data_source(split=split)
    rows = (source[i]['attributes'] for i in range(len(source)))  # one decode per record
    return np.array([[row[name] for name in synthetic_faces.ATTRIBUTES] for row in rows],
                    np.float32)
  return _cached(os.path.join(builder.data_dir, f'facegan-{split}-attributes.npy'), read)


def version(config):
  """What identifies the data behind `config.dataset`, for provenance: its TFDS builder's
  version, or for a folder the hash of its file listing (names, sizes, times)."""
  kind, _, rest = config.dataset.partition(':')
  if kind == 'folder':
    return 'files-' + _folder_key(os.path.expanduser(rest))
  if kind == 'tfds':
    return str(tfds.builder(rest.partition(':')[0], data_dir=config.data_dir).version)
  if config.dataset == 'celeba_small':
    from facegan_jax.data import celeba_small_builder
    return str(celeba_small_builder.CelebaSmall.VERSION)
  from facegan_jax.data import synthetic_faces_builder
  return str(synthetic_faces_builder.SyntheticFaces.VERSION)


def _resized(builder, split, shape, crop=None, image_key='image', cache_dir=None):
  """The split's images at `shape`, cached per shape in `cache_dir` (default: the builder's).

  Decoding records is the slow part (~0.6 ms each), so for small datasets (the decoded
  originals under _MAX_ORIGINALS_BYTES) the originals are cached too and each model shape is
  resized from them; larger ones (CelebA: 19 GB decoded) are resized chunk by chunk.
  """
  cache_dir = cache_dir or builder.data_dir
  name = 'x'.join(map(str, shape)) + (f'-crop{crop}' if crop else '')
  cache = os.path.join(cache_dir, f'facegan-{split}-{name}.npy')
  if os.path.exists(cache):
    return np.load(cache, mmap_mode='r')
  source = builder.as_data_source(split=split)
  source_shape = builder.info.features[image_key].shape
  if None not in source_shape and len(source) * np.prod(source_shape) <= _MAX_ORIGINALS_BYTES:
    originals = _cached(os.path.join(cache_dir, f'facegan-{split}.npy'),
                        lambda: _read_all(source, image_key))
    if originals.shape[1:] == shape and crop is None:
      return originals
    return _cached(cache, lambda: preprocess.to_model_images(originals, *shape[1:], crop=crop))
  return _cached(cache, lambda: _read_all(source, image_key, shape, crop))


_MAX_ORIGINALS_BYTES = 2 * 2**30


def _cached(path, make):
  if os.path.exists(path):
    return np.load(path, mmap_mode='r')  # read as needed: the host path never holds it all
  array = make()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + '.tmp.npy'
  np.save(tmp, array)
  os.replace(tmp, path)  # never a half-written cache, even if this run is killed
  logging.info('Cached %s images at %s', 'x'.join(map(str, array.shape)), path)
  return array


def _data_root(config):
  return os.path.expanduser(config.data_dir or tfds.core.constants.DATA_DIR)


def _manual_dir(config):
  return os.path.expanduser(config.data_manual_dir or
                            os.path.join(_data_root(config), 'downloads', 'manual'))


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


def _celeba_small_builder(config):
  from facegan_jax.data import celeba_small_builder as module
  manual = _manual_dir(config)
  found = [os.path.join(manual, f) for f in module.FILENAMES
           if os.path.exists(os.path.join(manual, f))]
  builder = module.CelebaSmall(data_dir=config.data_dir, file_format='array_record',
                               source=found[0] if found else None,
                               max_bad_fraction=config.max_bad_fraction)
  if not builder.is_prepared():
    if not found and not _reachable(module.URL):  # TFDS would retry for minutes
      raise UsageError(f'celeba_small is not prepared and {module.URL.split("/")[2]} is not '
                       'reachable: put processed-celeba-small.zip (or its extracted folder) in '
                       f'{manual}, or pass --data_manual_dir')
    logging.info('Preparing celeba_small from %s into %s (once)',
                 found[0] if found else module.URL, builder.data_dir)
    tfds.disable_progress_bar()
    try:
      builder.download_and_prepare()
    except UsageError:
      raise
    except Exception as e:  # offline, DNS or HTTP errors
      raise UsageError(f'could not download processed-celeba-small.zip ({type(e).__name__}); '
                       f'put it (or its extracted folder) in {manual}, or pass '
                       '--data_manual_dir') from None
    _log_skipped(builder.info.metadata.get('skipped', []), 'celeba_small')
  return builder


def _reachable(url):
  """Whether `url`'s host resolves (offline machines fail at once)."""
  try:
    socket.getaddrinfo(url.split('/')[2], 443)
    return True
  except OSError:
    return False


def _log_skipped(skipped, source):
  if skipped:
    logging.warning('%s: skipped %d unreadable file(s), e.g. %s', source, len(skipped),
                    '; '.join(skipped[:3]))


def _tfds(name, split, shape, config):
  """A TFDS image dataset through its own builder, read TensorFlow-free as a data source."""
  try:
    builder = tfds.builder(name, data_dir=config.data_dir, file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError:
    raise UsageError(f'--dataset=tfds:{name}: TFDS has no dataset {name!r}') from None
  except ValueError as e:  # e.g. tfds:NAME/CONFIG with a config NAME does not have
    # TFDS's first line, less its 'Failed to construct dataset ..., builder_kwargs ...: '.
    reason = str(e).splitlines()[0].rpartition('": ')[2].partition(' Here are')[0]
    raise UsageError(f'--dataset=tfds:{name}: {reason}') from None
  image_keys = [k for k, f in builder.info.features.items()
                if isinstance(f, tfds.features.Image)]
  if not image_keys:
    raise UsageError(f'--dataset=tfds:{name} has no image feature')
  if split not in builder.info.splits and builder.is_prepared():
    raise UsageError(f'--dataset=tfds:{name} has no split {split!r}; it has '
                     f'{", ".join(builder.info.splits)}')
  if not builder.is_prepared():
    _prepare_tfds(builder, name, config)
  crop = CELEB_A_CROP if name.partition('/')[0] == 'celeb_a' else None
  cache_dir = os.path.join(_data_root(config), 'facegan_tfds', name.replace('/', '_'),
                           str(builder.version))
  return _resized(builder, split, shape, crop=crop, image_key=image_keys[0],
                  cache_dir=cache_dir)


def _prepare_tfds(builder, name, config):
  logging.info('Preparing tfds:%s into %s (once)', name, builder.data_dir)
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=_manual_dir(config)))
  except ModuleNotFoundError as e:
    raise UsageError(f'preparing tfds:{name} needs {e.name} once (pip install {e.name}); '
                     'training from the prepared files does not') from None
  except Exception as e:  # noqa: BLE001  (any download or extraction failure)
    html = _html_downloads(builder)
    if html:
      raise UsageError(
          f'tfds:{name}: the download returned an HTML page instead of the archive ({html[0]}): '
          'Google Drive does this when a file\'s download quota is exceeded. Try again in a '
          f'day, or download the files by hand into {_manual_dir(config)}') from None
    raise UsageError(f'could not prepare tfds:{name}: {type(e).__name__}: '
                     f'{str(e).splitlines()[0] if str(e) else ""}') from None


def _html_downloads(builder):
  """Downloaded files that are HTML pages (e.g. Google Drive's quota-exceeded page)."""
  root = os.path.join(os.path.dirname(os.path.dirname(builder.data_dir)), 'downloads')
  found = []
  for dirpath, _, filenames in os.walk(root):
    for filename in filenames:
      path = os.path.join(dirpath, filename)
      with open(path, 'rb') as f:
        head = f.read(64).lstrip().lower()
      if head.startswith((b'<!doctype html', b'<html')):
        found.append(path)
  return found


def _folder(path, shape, config):
  """A folder or zip of images, prepared once per content and shape."""
  path = os.path.expanduser(path)
  files = images.list_images(path)
  key = _folder_key(path, files)
  cache = os.path.join(_data_root(config), 'facegan_folders',
                       f'{key}-{"x".join(map(str, shape))}.npy')

  def prepare():
    logging.info('Preparing %d image files from %s (once)', len(files), path)
    prepared, skipped = images.prepare(files, shape[0], shape[2],
                                       max_bad_fraction=config.max_bad_fraction)
    skipped = [f'{name}: {why}' for name, why in skipped]
    _log_skipped(skipped, path)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with open(cache[:-4] + '.json', 'w') as f:
      json.dump(dict(source=os.path.abspath(path), images=len(prepared), skipped=skipped), f,
                indent=1)
    return prepared

  return _cached(cache, prepare)


def _folder_key(path, files=None):
  """The cache key of a folder source: covers what is read (path, names, sizes and times)."""
  files = images.list_images(path) if files is None else files
  listing = os.path.abspath(path) + ''.join(name for name, _ in files)
  stats = ([os.stat(path)] if os.path.isfile(path)
           else [os.stat(os.path.join(path, name)) for name, _ in files])
  listing += ''.join(f'{s.st_size}-{s.st_mtime_ns}' for s in stats)
  return hashlib.sha256(listing.encode()).hexdigest()[:16]


def _read_all(source, image_key, shape=None, crop=None, chunk=2048):
  """Every image of a TFDS data source, as stored or (with `shape`) resized to it."""
  out = None
  for start in range(0, len(source), chunk):
    rows = [np.asarray(source[i][image_key]) for i in range(start, min(start + chunk, len(source)))]
    if shape is not None:
      rows = preprocess.to_model_images(rows, *shape[1:], crop=crop)
    if out is None:
      out = np.empty((len(source),) + rows[0].shape, np.uint8)
    out[start:start + len(rows)] = rows
  return out
