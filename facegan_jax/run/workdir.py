"""The run's --workdir: checked before anything is written to it, and locked for the run's life.

Training takes an exclusive lock on WORKDIR/run.lock (flock, an OS lock that dies with its
process: a SIGKILL never leaves a stale lock) before it reads or writes anything there; a
second run on the same workdir stops with one line naming the holder's pid. In a
multi-process run process 0 takes the lock and tells the others whether it got it.
--mode=sample and eval only read the checkpoints (and write their own files): they may run
beside the training run.
"""

import errno
import fcntl
import os
import socket

from facegan_jax.errors import UsageError

LOCK_FILE = 'run.lock'


def check(workdir):
  """Raises UsageError unless `workdir` can be a run's workdir (it need not exist yet)."""
  if not workdir.strip():
    raise UsageError('--workdir is empty (an unset shell variable?); name a directory')
  # flags.txt records it as a flagfile line: one line of text.
  if '\n' in workdir or '\r' in workdir:
    raise UsageError(f'--workdir={workdir!r} holds a line break; name a directory without one')
  try:
    workdir.encode('utf-8')
  except UnicodeEncodeError:
    raise UsageError(f'--workdir={workdir!r} is not valid UTF-8; name a directory that '
                     'is') from None
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f'--workdir={workdir} is a file, not a directory')
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UsageError(f'--workdir={workdir}: {parent} is a file, not a directory')


def create(workdir):
  """Creates `workdir` (and its parents); a one-line UsageError when it cannot."""
  check(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UsageError(f'--workdir={workdir}: cannot create it ({e.strerror})') from None


class Lock:
  """The workdir's lock, held until `release` or the process's end."""

  def __init__(self, workdir):
    self.path = os.path.join(workdir, LOCK_FILE)
    self._file = None

  def acquire(self):
    """Takes the lock; raises UsageError naming the holder when another run has it."""
    try:
      f = open(self.path, 'a+')  # noqa: SIM115  (held open for the lock's life)
    except OSError as e:
      raise UsageError(f'--workdir={os.path.dirname(self.path)} is not writable '
                       f'({e.strerror})') from None
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES):
        raise
      f.seek(0)
      holder = f.read().strip() or 'pid unknown'
      f.close()
      raise UsageError(f'--workdir={os.path.dirname(self.path)} is in use by another run '
                       f'({holder}); wait for it to end, or use another --workdir') from None
    f.seek(0)
    f.truncate()
    f.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
    f.flush()
    self._file = f
    return self

  def release(self):
    if self._file is not None:
      self._file.close()  # closing the file releases the lock
      self._file = None


def lock_for_training(workdir):
  """Creates and locks `workdir` on process 0; every process returns only if that worked
  (the others learn it from process 0). Returns the Lock (None on other processes)."""
  import jax  # noqa: PLC0415  (main.py imports this module before JAX)
  import numpy as np  # noqa: PLC0415
  from jax.experimental import multihost_utils  # noqa: PLC0415
  error, lock = None, None
  if jax.process_index() == 0:
    try:
      create(workdir)
      lock = Lock(workdir).acquire()
    except UsageError as e:
      error = e
  if jax.process_count() > 1:
    locked = multihost_utils.broadcast_one_to_all(np.int32(error is None))
    if not locked and error is None:
      error = UsageError(f'process 0 could not lock --workdir={workdir} (its log says why)')
  if error is not None:
    raise error
  return lock
