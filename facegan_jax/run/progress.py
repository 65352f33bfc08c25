"""Progress lines for the minutes a run spends before training: preparing a dataset, training
the evaluation networks. At most one line per `every` seconds, so a long job speaks at least
that often and a short one says nothing more."""

import contextlib
import threading
import time

from absl import logging

EVERY_S = 10.0


class Progress:
  """Call with the number of units done; logs '`what`: done/total (N s)' when `every` seconds
  have passed since the last line. `sync`, when given, is called before a line is logged
  (e.g. to wait for queued device work, so the count is what has run, not what was queued)."""

  def __init__(self, what, total, unit='', every=EVERY_S, sync=None):
    self.what, self.total, self.unit, self.every, self.sync = what, total, unit, every, sync
    self.started = self.last = time.monotonic()

  def __call__(self, done):
    now = time.monotonic()
    if now - self.last < self.every:
      return
    if self.sync:
      self.sync()
    self.last = time.monotonic()
    unit = f' {self.unit}' if self.unit else ''
    logging.info('%s: %d/%d%s (%.0f s)', self.what, done, self.total, unit,
                 self.last - self.started)


@contextlib.contextmanager
def heartbeat(what, every=EVERY_S):
  """Logs '`what` (N s)' every `every` seconds while the block runs, for work that reports no
  count of its own (a TFDS builder's download and preparation)."""
  done = threading.Event()
  started = time.monotonic()

  def beat():
    while not done.wait(every):
      logging.info('%s (%.0f s)', what, time.monotonic() - started)

  thread = threading.Thread(target=beat, daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()
