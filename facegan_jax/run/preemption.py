"""SIGTERM and SIGINT as a request to stop cleanly: finish the step, save, exit 0.

Schedulers preempt jobs with SIGTERM and people stop them with Ctrl-C. Inside `StopSignals`
either one only sets `requested`; the training loop checks it after every step, saves a
checkpoint and returns. A second SIGINT exits at once (status 130), as a shell user expects.
"""

import os
import signal
import sys


class StopSignals:
  """Context manager: while active, SIGTERM/SIGINT set `requested` instead of killing."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = None  # the name of the first signal received
    self._previous = {}

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
      print(f'{self.requested}: finishing this step, saving a checkpoint, then exiting '
            '(Ctrl-C again to exit now)', file=sys.stderr, flush=True)
