"""Files written whole or not at all, their hashes, and where the project caches files."""

import contextlib
import hashlib
import os


@contextlib.contextmanager
def atomic_path(path):
  """Yields a temporary path beside `path` (same extension) to write; renamed onto `path`
  when the block ends without an error, removed otherwise. A run killed mid-write never
  leaves a half-written file under `path`."""
  root, ext = os.path.splitext(path)
  tmp = f'{root}.tmp{os.getpid()}{ext}'
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def sha256(path):
  """The SHA-256 of the file at `path`, as hex."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    while block := f.read(1 << 20):
      digest.update(block)
  return digest.hexdigest()


def cache_dir(*parts):
  """A folder of this project's cache: XDG_CACHE_HOME (default ~/.cache)/facegan_jax/*parts."""
  return os.path.join(os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')),
                      'facegan_jax', *parts)
