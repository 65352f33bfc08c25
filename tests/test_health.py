"""GAN health flags: D winning outright and collapsing samples are flagged, healthy runs not."""

from facegan_jax.logs import health


def row(d_real=0.7, d_fake=0.3, g_loss=1.0, diversity=0.8):
  return dict(d_real=d_real, d_fake=d_fake, g_loss=g_loss, diversity=diversity)


def flags(rows, patience=3):
  monitor = health.Health(patience=patience)
  return [(r['d_wins'], r['collapse']) for r in
          (monitor.update(step, metrics) for step, metrics in enumerate(rows))]


def test_d_winning_outright_is_flagged_after_patience_intervals_of_rising_g_loss():
  rows = [row()] + [row(d_real=0.9, d_fake=0.001, g_loss=5.0 + i) for i in range(4)] + [row()]
  assert [wins for wins, _ in flags(rows)] == [0, 0, 0, 1, 1, 0]


def test_d_winning_with_falling_g_loss_or_too_briefly_is_not_flagged():
  falling = [row(d_real=0.9, d_fake=0.001, g_loss=9.0 - i) for i in range(5)]
  assert [wins for wins, _ in flags(falling)] == [0] * 5
  brief = [row(d_real=0.9, d_fake=0.001, g_loss=5.0 + i % 3) if i % 3 else row()
           for i in range(9)]
  assert [wins for wins, _ in flags(brief)] == [0] * 9


def test_collapse_is_flagged_when_diversity_falls_far_below_its_best():
  rows = [row(diversity=d) for d in (0.1, 0.1, 0.1, 0.1, 0.8, 0.9, 0.1, 0.05, 0.05, 0.6)]
  # Low at the start (a fresh G) is not collapse; falling from 0.9 to 0.1 for 3 logs is.
  assert [collapse for _, collapse in flags(rows)] == [0, 0, 0, 0, 0, 0, 0, 0, 1, 0]


def test_a_resumed_monitor_replaying_the_log_flags_as_the_uninterrupted_one():
  rows = ([row(diversity=0.9)] + [row(d_real=0.9, d_fake=0.001, g_loss=5.0 + i, diversity=0.05)
                                  for i in range(5)])
  expected = flags(rows)
  assert expected[-1] == (1, 1)  # both streaks run across the resume point below
  for resume_at in range(1, len(rows)):
    monitor = health.Health(patience=3)
    logged = [dict(r, step=step) for step, r in enumerate(rows[:resume_at])]
    monitor.replay(logged + [dict(step=resume_at, eval={})])  # eval lines are not log rows
    resumed = [monitor.update(step, dict(r)) for step, r in enumerate(rows) if step >= resume_at]
    assert [(r['d_wins'], r['collapse']) for r in resumed] == expected[resume_at:], resume_at
