"""TFDS builders prepared once: the embedded synthetic_faces, the Udacity celeba_small zip and
any TFDS image dataset, with their download failures translated into one-line errors; and
their records decoded.

`source` is where sources.py starts each of them; `decode` is its next step.
"""

import contextlib
import fcntl
import glob
import io
import os
import shutil
import socket
import tempfile
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from facegan_jax.data import celeba_small_builder as celeba_small_module
from facegan_jax.data import images, preprocess
from facegan_jax.data import synthetic_faces_builder as synthetic_faces_module
from facegan_jax.data.cache import data_root
from facegan_jax.errors import UsageError
from facegan_jax.run import progress

# The customary CelebA face crop before resizing: the centred 108x108 square of the 178x218
# aligned images, as in carpedm20's DCGAN-tensorflow (and the Udacity project's ancestry).
CELEB_A_CROP = 108


class Source(NamedTuple):
  """A split of a prepared TFDS dataset: its records and where its caches go."""
  builder: tfds.core.DatasetBuilder
  split: str
  image_key: str  # its image feature
  cache_dir: str
  crop: int | None  # side of the centred square kept before resizing; None: the largest


def source(config, split):
  """The prepared Source of a TFDS-backed --dataset (every one but folder:PATH); a split named
  in tfds:NAME:SPLIT wins over `split`."""
  kind, _, rest = config.dataset.partition(':')
  if kind == 'tfds':
    name, _, tfds_split = rest.partition(':')
    split = tfds_split or split
    builder, image_key, cache_dir = _prepared_builder(name, split, config)
    crop = CELEB_A_CROP if name.partition('/')[0] == 'celeb_a' else None
    return Source(builder, split, image_key, cache_dir, crop)
  if config.dataset == 'celeba_small':
    builder = celeba_small_builder(config)
  else:
    builder = synthetic_faces_builder(config.dataset, config.data_dir)
  return Source(builder, split, 'image', builder.data_dir, None)


def decode(records, image_key, shape=None, crop=None, chunk=2048):
  """Every image of `records` (a TFDS data source) as stored, or with `shape` each chunk
  resized to it as soon as it is decoded, so that a dataset too large to hold decoded (CelebA:
  19 GB) never is held."""
  out = None
  report = progress.Progress('Decoding the prepared records', len(records), 'images')
  for start in range(0, len(records), chunk):
    report(start)
    rows = [np.asarray(records[i][image_key])
            for i in range(start, min(start + chunk, len(records)))]
    if shape is not None:
      rows = preprocess.to_model_images(rows, *shape[1:], crop=crop)
    if out is None:
      out = np.empty((len(records),) + rows[0].shape, np.uint8)
    out[start:start + len(rows)] = rows
  return out


def _prepare(builder, **kwargs):
  """builder.download_and_prepare without TFDS's progress bars and the lines it prints (our
  own log line says what is being prepared, and where), one run at a time: under a lock in
  the dataset's folder (a run that finds another preparing it waits, then uses its result).
  TFDS prepares into an `incomplete.*` folder renamed when done; those of killed runs are
  removed first (with the lock held, nobody else is writing one)."""
  dataset_dir = os.path.dirname(os.path.normpath(builder.data_dir))
  os.makedirs(dataset_dir, exist_ok=True)
  with open(os.path.join(dataset_dir, '.facegan-prepare.lock'), 'a') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if _is_prepared(builder):  # by another run, while this one waited
      return
    stale = sorted(glob.glob(os.path.join(dataset_dir, 'incomplete.*')))
    for path in stale:
      shutil.rmtree(path)
    if stale:
      logging.warning('Removed %d incomplete preparation(s) left by a killed run: %s',
                      len(stale), ', '.join(stale))
    tfds.disable_progress_bar()
    with contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(**kwargs)


def _is_prepared(builder):
  """Whether `builder`'s dataset is prepared; if so, the builder's info is read from it. TFDS
  reads it only when a builder is built, and a builder built before another run prepared the
  dataset holds the info of an unprepared one: no splits."""
  if not builder.is_prepared():
    return False
  builder.info.read_from_directory(builder.data_dir)
  return True


def _manual_dir(config):
  return os.path.expanduser(config.data_manual_dir or
                            os.path.join(data_root(config), 'downloads', 'manual'))


@contextlib.contextmanager
def no_stray_tempdirs():
  """TFDS makes an empty temporary directory each time it builds a builder of a dataset not
  yet prepared (DatasetInfo.initialize_from_bucket) and never removes it; inside this they go
  into one that is removed."""
  with tempfile.TemporaryDirectory(prefix='facegan_tfds_') as scratch:
    previous, tempfile.tempdir = tempfile.tempdir, scratch
    try:
      yield
    finally:
      tempfile.tempdir = previous


def synthetic_faces_builder(name, data_dir):
  config_name = name.partition('/')[2] or None
  with no_stray_tempdirs():
    builder = synthetic_faces_module.SyntheticFaces(
        config=config_name, data_dir=data_dir, file_format='array_record')
  if not _is_prepared(builder):
    logging.info('Rendering %s into %s (once; ~1 min for the full set on 2 cores)',
                 name, builder.data_dir)
    _prepare(builder)
  return builder


def celeba_small_builder(config):
  module = celeba_small_module
  manual = _manual_dir(config)
  found = [os.path.join(manual, f) for f in module.FILENAMES
           if os.path.exists(os.path.join(manual, f))]
  with no_stray_tempdirs():
    builder = module.CelebaSmall(data_dir=config.data_dir, file_format='array_record',
                                 source=found[0] if found else None,
                                 max_bad_fraction=config.max_bad_fraction)
  if not _is_prepared(builder):
    if not found and not _reachable(module.URL):  # TFDS would retry for minutes
      raise UsageError(f'celeba_small is not prepared and {module.URL.split("/")[2]} is not '
                       'reachable: put processed-celeba-small.zip (or its extracted folder) in '
                       f'{manual}, or pass --data_manual_dir')
    logging.info('Preparing celeba_small from %s into %s (once)',
                 found[0] if found else module.URL, builder.data_dir)
    try:
      _prepare(builder)
    except UsageError:
      raise
    except Exception as e:  # offline, DNS or HTTP errors
      raise UsageError(f'could not download processed-celeba-small.zip ({type(e).__name__}); '
                       f'put it (or its extracted folder) in {manual}, or pass '
                       '--data_manual_dir') from None
    images.log_skipped(builder.info.metadata.get('skipped', []), 'celeba_small')
  return builder


def _reachable(url):
  """Whether `url`'s host resolves (offline machines fail at once)."""
  try:
    socket.getaddrinfo(url.split('/')[2], 443)
    return True
  except OSError:
    return False


def tfds_builder(name, config):
  """The TFDS builder of tfds:NAME, not prepared (its info is the code's); UsageError for a
  name TFDS does not have."""
  try:
    with no_stray_tempdirs():
      return tfds.builder(name, data_dir=config.data_dir, file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError:
    raise UsageError(f'--dataset=tfds:{name}: TFDS has no dataset {name!r}') from None
  except ValueError as e:  # e.g. tfds:NAME/CONFIG with a config NAME does not have
    # TFDS's first line, less its 'Failed to construct dataset ..., builder_kwargs ...: '.
    reason = str(e).splitlines()[0].rpartition('": ')[2].partition(' Here are')[0]
    raise UsageError(f'--dataset=tfds:{name}: {reason}') from None


def label_feature(builder):
  """The builder's `label` ClassLabel feature (mnist, cifar10, svhn_cropped have one), or
  None."""
  feature = dict(builder.info.features.items()).get('label')
  return feature if isinstance(feature, tfds.features.ClassLabel) else None


def _prepared_builder(name, split, config):
  """(builder, its image feature's key, our cache dir) of tfds:NAME, prepared once."""
  builder = tfds_builder(name, config)
  image_keys = [k for k, f in builder.info.features.items()
                if isinstance(f, tfds.features.Image)]
  if not image_keys:
    raise UsageError(f'--dataset=tfds:{name} has no image feature')
  if not _is_prepared(builder):
    _prepare_tfds(builder, name, config)
  elif split not in builder.info.splits:
    raise UsageError(f'--dataset=tfds:{name} has no split {split!r}; it has '
                     f'{", ".join(builder.info.splits)}')
  cache_dir = os.path.join(data_root(config), 'facegan_tfds', name.replace('/', '_'),
                           str(builder.version))
  return builder, image_keys[0], cache_dir


def _prepare_tfds(builder, name, config):
  logging.info('Preparing tfds:%s into %s (once)', name, builder.data_dir)
  try:
    with progress.heartbeat(f'Still preparing tfds:{name}'):
      _prepare(builder, download_config=tfds.download.DownloadConfig(
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
