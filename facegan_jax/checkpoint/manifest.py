"""The seal of a checkpoint: a manifest of the SHA-256 of every file that holds the state.

Written into a save's temporary directory just before orbax renames it into place, so every
finished checkpoint carries one; a checkpoint whose files do not match it is damaged.
"""

import json
import os

from facegan_jax.run import files

MANIFEST = 'manifest.sha256.json'
# Files orbax rewrites when it commits the directory, after the manifest: bookkeeping only.
UNHASHED = ('_CHECKPOINT_METADATA', 'commit_success.txt', MANIFEST)


def file_hashes(root):
  """{path relative to root: SHA-256} of the files of checkpoint directory `root`."""
  hashes = {}
  for dirpath, _, filenames in os.walk(root):
    for filename in filenames:
      path = os.path.join(dirpath, filename)
      name = os.path.relpath(path, root)
      if name not in UNHASHED:
        hashes[name] = files.sha256(path)
  return hashes


def write(root, step):
  """Seals checkpoint directory `root` of `step`."""
  with open(os.path.join(root, MANIFEST), 'w') as f:
    json.dump(dict(step=step, files=file_hashes(root)), f, indent=0)


def find_damage(root):
  """What is wrong with checkpoint directory `root` by its manifest, or None if nothing."""
  try:
    with open(os.path.join(root, MANIFEST)) as f:
      expected = json.load(f)['files']
  except (OSError, ValueError, KeyError, TypeError):
    return f'{MANIFEST} is missing or unreadable'
  for name, digest in sorted(expected.items()):
    path = os.path.join(root, name)
    if not os.path.isfile(path):
      return f'{name} is missing'
    if files.sha256(path) != digest:
      return f'{name} does not match its hash'
  return None
