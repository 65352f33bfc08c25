"""Progress lines: at most one per interval, with the count done, the total and the time."""

import re
import threading
import time

from facegan_jax.run import progress as progress_lib


def test_logs_at_most_once_per_interval_after_syncing(monkeypatch):
  clock = [100.0]
  monkeypatch.setattr(progress_lib.time, 'monotonic', lambda: clock[0])
  lines, synced = [], []
  monkeypatch.setattr(progress_lib.logging, 'info', lambda fmt, *args: lines.append(fmt % args))
  progress = progress_lib.Progress('Training the net', 300, 'steps', every=10,
                                   sync=lambda: synced.append(clock[0]))
  for done, now in ((1, 101), (50, 109.9), (120, 110.0), (121, 115), (250, 120.5), (300, 121)):
    clock[0] = now
    progress(done)
  assert lines == ['Training the net: 120/300 steps (10 s)',
                   'Training the net: 250/300 steps (20 s)']
  assert synced == [110.0, 120.5]


def test_heartbeat_speaks_until_the_block_ends(monkeypatch):
  """A line per interval while the block runs (waited for as events, not timed), none after."""
  lines, two_lines = [], threading.Event()

  def info(fmt, *args):
    lines.append(fmt % args)
    if len(lines) == 2:
      two_lines.set()

  monkeypatch.setattr(progress_lib.logging, 'info', info)
  with progress_lib.heartbeat('Still preparing tfds:x', every=0.01):
    assert two_lines.wait(60)
  count = len(lines)
  assert all(re.fullmatch(r'Still preparing tfds:x \(\d+ s\)', line) for line in lines)
  time.sleep(0.05)  # the thread has been joined: nothing more can come
  assert len(lines) == count
