"""SIGTERM and SIGINT as a request to stop cleanly: finish the step, save, exit 0.

Schedulers preempt jobs with SIGTERM and people stop them with Ctrl-C. Inside `StopSignals`,
before training starts (data preparation, compilation: nothing to save yet) either one raises
`Interrupted` at once; once `start()` is called it only sets `requested`, and the training
loop checks it after every call, saves a checkpoint and returns. In a multi-process run every
process stops at the same step (`agreed`). A second SIGINT exits at once (status 130), as a
shell user expects.
"""

import os
import signal
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils


class Interrupted(BaseException):
  """A stop signal before training started. A BaseException, as KeyboardInterrupt is: no
  `except Exception` on the way (one treating an unreadable checkpoint, say) may take it
  for something else."""


class StopSignals:
  """Context manager: while active, SIGTERM/SIGINT set `requested` instead of killing."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = None  # the name of the first signal received
    self._previous = {}
    self._started = False

  def start(self):
    """From now on a signal requests a stop at the next step instead of raising."""
    self._started = True

  def agreed(self):
    """`requested`, agreed by every process: all stop after the same step when any of them
    got a signal (a process stopping alone would leave the others waiting in collectives).
    Called by every process at the same points."""
    voted = self.requested  # one read: a signal may land while the votes are gathered
    if jax.process_count() == 1:
      return voted
    if not multihost_utils.process_allgather(np.int32(voted is not None)).any():
      return None  # a signal landing now is voted on at the next call
    if self.requested is None:
      self.requested = 'a stop signal to another process'
    return self.requested

  def __enter__(self):
    for signum in self.SIGNALS:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _handle(self, signum, frame):
    del frame
    if self.requested is not None and signum == signal.SIGINT:
      print('Second SIGINT: exiting now without saving', file=sys.stderr, flush=True)
      os._exit(128 + signal.SIGINT)
    if self.requested is None:
      self.requested = signal.Signals(signum).name
      if not self._started:
        raise Interrupted(self.requested)
      print(f'{self.requested}: finishing this step, saving a checkpoint, then exiting '
            '(Ctrl-C again to exit now)', file=sys.stderr, flush=True)
