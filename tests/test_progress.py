"""Progress lines: at most one per interval, with the count done, the total and the time."""

from facegan_jax import progress as progress_lib


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
