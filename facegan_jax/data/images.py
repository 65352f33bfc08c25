"""Image files to model arrays: listing folders and zips, decoding any mode, counting bad files.

Every real-image source (image folders, the Udacity CelebA zip) goes through here, so all of
them get the same checks and the same preprocessing as `preprocess.to_model_images`.
"""

import contextlib
import io
import os
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable

import numpy as np
from absl import logging
from PIL import Image

from facegan_jax.data import preprocess
from facegan_jax.errors import UsageError
from facegan_jax.run.progress import Progress

SUFFIXES = ('.jpg', '.jpeg', '.png', '.webp', '.bmp')

File = tuple[str, Callable[[], bytes]]  # (name shown to the user, reads the bytes)


class BadImage(Exception):
  """A file that is not a readable image; the message says why."""


# What a run has listed, while one runs (`listed_once`): {(kind, absolute path): value}.
_listed = None


@contextlib.contextmanager
def listed_once():
  """Within the block (or the call of a function it decorates) each folder or zip is listed
  once: a run asks for its files for the images, the labels, the class names, the data's
  provenance and each evaluation (10 times in a short conditional run), and each listing
  walks the tree and stats every file (seconds for a folder of 200,000 images). A run sees
  the files as they were when it first listed them; the next run lists them again. Nested
  blocks share the outermost one's."""
  global _listed
  if _listed is not None:
    yield
    return
  _listed = {}
  try:
    yield
  finally:
    _listed = None


def once(kind, path, compute):
  """compute(), or within `listed_once` the value it gave for (kind, path) in this block."""
  if _listed is None:
    return compute()
  key = (kind, os.path.abspath(path))
  if key not in _listed:
    _listed[key] = compute()
  return _listed[key]


def list_images(path: str) -> list[File]:
  """The image files under a directory tree, or inside a .zip, sorted by name.

  Raises UsageError for a missing path, a corrupt zip, a zip entry that would leave the
  archive's root (absolute or `..`), or no image files at all.
  """
  return once('files', path, lambda: _list_images(path))


def _list_images(path):
  if not os.path.exists(path):
    raise UsageError(f'{shown(path)} does not exist')
  if os.path.isdir(path):
    files, others = _list_folder(path)
  elif zipfile.is_zipfile(path):
    files, others = _list_zip(path)
  elif path.lower().endswith('.zip'):
    raise UsageError(f'{shown(path)} is not a readable zip archive (corrupt or truncated?)')
  else:
    raise UsageError(f'{shown(path)} is neither a directory nor a .zip of images')
  if not files:
    raise UsageError(f'no images ({", ".join(SUFFIXES)}) in {shown(path)}'
                     + (f'; it holds {others} other file(s)' if others else '; it is empty'))
  return sorted(files, key=lambda f: f[0])


def shown(name):
  """A file name or path as any console or log can print it: the bytes of a name that are not
  UTF-8 (which Python keeps as lone surrogates, and a strict UTF-8 stream cannot write) as
  \\xNN."""
  return os.fsencode(name).decode('utf-8', 'backslashreplace')


def _is_image(name):
  """Whether `name` (relative to the root) is an image file, not in a hidden or macOS folder."""
  parts = name.replace('\\', '/').split('/')
  return (name.lower().endswith(SUFFIXES)
          and not any(part.startswith('.') or part == '__MACOSX' for part in parts))


def _read_file(path):
  try:
    with open(path, 'rb') as f:
      return f.read()
  except OSError as e:  # no permission, a disk error, a file removed since it was listed
    raise BadImage(f'cannot read: {(e.strerror or type(e).__name__).lower()}') from None


def _list_folder(root):
  """The images under `root`, directory symlinks followed: each real directory is walked once,
  by the first way to it in name order, so that a symlink loop ends and no image is listed
  twice."""
  files, others, walked = [], 0, set()
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    stat = os.stat(dirpath)
    if (stat.st_dev, stat.st_ino) in walked:
      dirnames[:] = []
      continue
    walked.add((stat.st_dev, stat.st_ino))
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.') and d != '__MACOSX')
    for filename in filenames:
      path = os.path.join(dirpath, filename)
      if _is_image(filename) and os.path.isfile(path):
        files.append((os.path.relpath(path, root), lambda path=path: _read_file(path)))
      else:
        others += 1
  return files, others


def _list_zip(path):
  try:
    archive = zipfile.ZipFile(path)
    entries = archive.infolist()
  except (zipfile.BadZipFile, OSError) as e:
    raise UsageError(f'{path} is not a readable zip archive ({e})') from None
  files, others = [], 0
  for entry in entries:
    name = entry.filename
    parts = name.replace('\\', '/').split('/')
    if name.startswith(('/', '\\')) or '..' in parts or (len(name) > 1 and name[1] == ':'):
      raise UsageError(f'{path} has an entry outside the archive root ({name!r}); refusing '
                       'to read it')
    if entry.is_dir():
      continue
    if _is_image(name):
      files.append((name, lambda entry=entry: _read_zip_entry(archive, entry)))
    else:
      others += 1
  return files, others


def _read_zip_entry(archive, entry):
  try:
    return archive.read(entry)
  # A damaged member of a readable zip (bad header or CRC, corrupt deflate data), or one
  # zipfile cannot read (encrypted: RuntimeError; unsupported compression method).
  except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError,
          NotImplementedError) as e:
    raise BadImage(f'unreadable in the zip ({e})') from None


def decode(data: bytes) -> np.ndarray:
  """An image file's bytes -> uint8 (H, W, 3) RGB or (H, W, 1) for single-channel files.

  Converts palette, alpha (composited on black, as training images have no transparency),
  CMYK and 16-bit modes. Raises BadImage for empty, truncated or non-image data and for
  images above PIL's decompression-bomb limit.
  """
  if not data:
    raise BadImage('empty file')
  if data[:64].lstrip().lower().startswith((b'<!doctype html', b'<html')):
    raise BadImage('an HTML page, not an image (a failed or quota-limited download?)')
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as image:
        image.load()
        return _to_array(image)
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise BadImage(f'too large ({e})') from None
  except (OSError, ValueError, SyntaxError) as e:  # PIL's errors for unreadable data
    # PIL names the in-memory file it read by its object address: say what it means.
    reason = re.sub(r'cannot identify image file <_io\.BytesIO object at 0x[0-9a-f]+>',
                    'not an image format PIL knows', str(e))
    raise BadImage(f'not a readable image ({reason})') from None


def _to_array(image):
  if image.mode in ('I;16', 'I;16B', 'I;16L', 'I'):
    array = np.asarray(image, np.int64)
    scale = 257 if image.mode.startswith('I;16') or array.max() > 255 else 1
    return np.clip(array // scale, 0, 255).astype(np.uint8)[..., None]
  if image.mode in ('L', '1'):
    return np.asarray(image.convert('L'))[..., None]
  if image.mode == 'P':
    image = image.convert('RGBA')
  if image.mode in ('RGBA', 'LA', 'PA'):
    rgba = image.convert('RGBA')
    background = Image.new('RGBA', rgba.size, (0, 0, 0, 255))
    return np.asarray(Image.alpha_composite(background, rgba).convert('RGB'))
  return np.asarray(image.convert('RGB'))


def prepare(files: list[File], resolution: int, channels: int, *, max_bad_fraction=0.01,
            crop: int | None = None):
  """Decodes and preprocesses `files`: (uint8 (N, R, R, C), [(name, why) of skipped files]).

  Unreadable files are skipped and counted; more than `max_bad_fraction` of them is a
  UsageError naming a few.
  """
  images, bad = [], []
  progress = Progress('Decoding images', len(files), 'files')
  for i, (name, read) in enumerate(files):
    progress(i)
    try:
      image = decode(read())
    except BadImage as e:
      bad.append((name, str(e)))
      continue
    images.append(preprocess.to_model_images([image], resolution, channels, crop=crop)[0])
  if len(bad) > max_bad_fraction * len(files):
    examples = '; '.join(f'{shown(name)}: {why}' for name, why in bad[:3])
    raise UsageError(f'{len(bad)} of {len(files)} files are not readable images (more than '
                     f'{max_bad_fraction:.0%}; --max_bad_fraction skips more), e.g. {examples}')
  if not images:
    raise UsageError('no readable images')
  return np.stack(images), bad


def log_skipped(skipped, source):
  """Logs a warning naming a few of the `skipped` files of `source`, if any."""
  if skipped:
    logging.warning('%s: skipped %d unreadable file(s), e.g. %s', shown(source), len(skipped),
                    '; '.join(skipped[:3]))
