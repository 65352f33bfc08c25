"""GAN health: the two classic failures, flagged in metrics.jsonl and warned about.

- D wins outright: D tells real from fake almost perfectly (d_fake -> 0 with d_real high)
  for `patience` log intervals in a row while g_loss keeps rising: G gets no useful gradient.
- Mode collapse: the fakes of a batch look alike. `diversity` (from the train step) is the
  per-pixel standard deviation over the fake batch relative to the real batch's. It starts low
  (a freshly initialised G draws near-identical images), rises towards 1 as G learns to cover
  the data, and falls back towards 0 when G collapses to one image: flagged when it stays below
  DIVERSITY_MIN and below half its best so far for `patience` log intervals.

Both only warn: GANs often recover, and the user decides.
"""

from absl import logging

D_FAKE_MAX = 0.01  # D's mean probability that a fake is real
D_REAL_MIN = 0.8   # ... and that a real is real (0.9 is the optimum with label smoothing 0.9)
DIVERSITY_MIN = 0.2


class Health:
  """Consumes each log step's metrics; adds 0/1 flags `d_wins` and `collapse` to them."""

  def __init__(self, patience=5):
    self.patience = patience
    self._wins, self._low = [], 0  # g_loss over the current D-wins streak; collapse streak
    self._best_diversity = 0.0

  def replay(self, rows):
    """Catches up on a resumed run's logged rows (metrics.jsonl's, up to its step), silently:
    the streaks and flags then continue as in the uninterrupted run."""
    for row in rows:
      if {'d_real', 'd_fake', 'g_loss', 'diversity'} <= row.keys():
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
    diversity = metrics['diversity']
    self._best_diversity = max(self._best_diversity, diversity)
    low = diversity < DIVERSITY_MIN and diversity < 0.5 * self._best_diversity
    self._low = self._low + 1 if low else 0
    collapse = self._low >= self.patience
    if warn and self._low == self.patience:
      logging.warning('Step %d: fakes have collapsed: their spread over the batch is %.2f of '
                      'the real images\' for %d log intervals', step, metrics['diversity'],
                      self._low)
    metrics.update(d_wins=int(flagged), collapse=int(collapse))
    return metrics
