"""The errors a user sees as one line (`error: ...` from main.py), and their wording."""

import errno
import os

# The OSErrors of a full disk, in words.
DISK_FULL = {errno.ENOSPC: 'no space left on the device', errno.EDQUOT: 'disk quota exceeded',
             errno.EFBIG: 'file too large for the file system'}


# Other OSErrors of writing a file that the user can fix: one line naming the path.
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR)


class UsageError(ValueError):
  """A problem with the flags or the data, reported to the user as one line."""


class CheckpointError(Exception):
  """A checkpoint could not be written; reported to the user as one line."""


def one_line(error):
  """One line for an exception: a full disk spelled out (anywhere in its chain), else its
  first line."""
  seen = error
  while seen is not None:
    if isinstance(seen, OSError) and seen.errno in DISK_FULL:
      return DISK_FULL[seen.errno]
    seen = seen.__cause__ or seen.__context__
  text = str(error)
  for code, words in DISK_FULL.items():  # tensorstore reports errno in its message
    if os.strerror(code) in text:
      return words
  return (text.strip().splitlines() or [type(error).__name__])[0][:300]
