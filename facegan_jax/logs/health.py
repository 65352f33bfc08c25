"""GAN health: the two classic failures, flagged in metrics.jsonl and warned about.

- D wins outright: D tells real from fake almost perfectly (d_fake -> 0 with d_real high)
  for `patience` log intervals in a row while g_loss keeps rising: G gets no useful gradient.
- Mode collapse: G draws one image (or a few) again and again, however their noise and
  lighting vary. `distinctness` (from the train step: step.distinctness) is the fakes' mean
  squared distance from one another relative to the reals', on a coarse grid of grey levels
  with each image's brightness and contrast taken out: ~1 when G covers the data, near 0 when
  it has collapsed. A fresh G's random layouts score high for a few steps, then G draws a
  mean face before it learns more, so a level counts once held: collapse is flagged when
  distinctness has stayed below DISTINCTNESS_MIN, and below half the best level it held
  over `patience` log intervals, for `patience` log intervals. (`diversity`, the per-pixel
  spread, is still logged but flags nothing: on issue 33's collapsed G, noise and lighting
  alone held it at 0.17-0.21.)

Both only warn: GANs often recover, and the user decides.
"""

from absl import logging

D_FAKE_MAX = 0.01  # D's mean probability that a fake is real
D_REAL_MIN = 0.8   # ... and that a real is real (0.9 is the optimum with label smoothing 0.9)
# One image with noise and lighting jitter measures ~0.001 (tests/test_step.py), a batch of
# other real faces ~1, two faces half and half ~0.5 on average: under 0.2, G draws little
# more than one layout.
DISTINCTNESS_MIN = 0.2


class Health:
  """Consumes each log step's metrics; adds 0/1 flags `d_wins` and `collapse` to them."""

  def __init__(self, patience=5):
    self.patience = patience
    self._wins, self._low = [], 0  # g_loss over the current D-wins streak; collapse streak
    self._recent = []  # distinctness of the last `patience` log steps
    self._held = 0.0  # the best level distinctness has held for `patience` log steps

  def replay(self, rows):
    """Catches up on a resumed run's logged rows (metrics.jsonl's, up to its step), silently:
    the streaks and flags then continue as in the uninterrupted run."""
    for row in rows:  # older rows lack `distinctness`: they extend no collapse streak
      if {'d_real', 'd_fake', 'g_loss'} <= row.keys():
        self.update(row['step'], dict(row), warn=False)

  def update(self, step, metrics, warn=True):
    d_wins = metrics['d_fake'] < D_FAKE_MAX and metrics['d_real'] > D_REAL_MIN
    self._wins = self._wins + [metrics['g_loss']] if d_wins else []
    flagged = len(self._wins) >= self.patience and self._wins[-1] > self._wins[0]
    if warn and flagged and len(self._wins) == self.patience:
      logging.warning('Step %d: D has won outright for %d log intervals (d_real %.2f, '
                      'd_fake %.3f, g_loss %.2f -> %.2f): G may stop learning', step,
                      len(self._wins), metrics['d_real'], metrics['d_fake'], self._wins[0],
                      self._wins[-1])
    distinctness = metrics.get('distinctness')  # None in rows logged before it existed
    self._recent = (self._recent + [distinctness])[-self.patience:] if (
        distinctness is not None) else []
    if len(self._recent) == self.patience:
      self._held = max(self._held, min(self._recent))
    low = distinctness is not None and (
        distinctness < DISTINCTNESS_MIN and distinctness < 0.5 * self._held)
    self._low = self._low + 1 if low else 0
    collapse = self._low >= self.patience
    if warn and self._low == self.patience:
      logging.warning('Step %d: fakes have collapsed: for %d log intervals their spread, noise '
                      'and lighting aside, has been %.2f of the real images\'', step, self._low,
                      distinctness)
    metrics.update(d_wins=int(flagged), collapse=int(collapse))
    return metrics
