"""GAN health flags: D winning outright and collapsing samples are flagged, healthy runs not."""

from facegan_jax.logs import health


def row(d_real=0.7, d_fake=0.3, g_loss=1.0, distinctness=0.9, diversity=0.8):
  return dict(d_real=d_real, d_fake=d_fake, g_loss=g_loss, distinctness=distinctness,
              diversity=diversity)


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


def test_collapse_is_flagged_when_distinctness_falls_far_below_a_level_it_held():
  rows = [row(distinctness=d)
          for d in (0.7, 0.15, 0.1, 0.1, 0.1, 0.8, 0.9, 0.1, 0.05, 0.05, 0.8, 0.9, 0.8, 0.1, 0.05,
                    0.05, 0.6)]
  # Low at the start (a fresh G's random layouts, then a mean face) is not collapse, however
  # high the fresh G began, nor a fall from a level held for less than 3 logs; falling from
  # 0.8-0.9 held for 3 logs to 0.1 for 3 logs is.
  assert [collapse for _, collapse in flags(rows)] == [0] * 15 + [1, 0]


def test_one_face_with_noise_and_lighting_is_flagged_whatever_its_per_pixel_diversity():
  """Issue 33's run: after a healthy start G drew one face with varying noise and lighting;
  `diversity` hovered at 0.17-0.21 around 0.2, never 5 logs in a row under it, while
  `distinctness` (tests/test_step.py measures ~0.001 on such batches) is near 0."""
  healthy = [row(distinctness=d, diversity=0.8) for d in (0.3, 0.9, 1.0, 0.95, 0.9, 1.0)]
  collapsed = [row(distinctness=0.003 + 0.001 * (i % 2), diversity=(0.17, 0.21, 0.19)[i % 3])
               for i in range(7)]
  assert [collapse for _, collapse in flags(healthy + collapsed, patience=5)] == (
      [0] * 6 + [0, 0, 0, 0, 1, 1, 1])
  # Near the threshold is not collapse: a real batch of other faces measures ~1.
  borderline = [row(distinctness=health.DISTINCTNESS_MIN * 1.01) for _ in range(7)]
  assert [collapse for _, collapse in flags(healthy + borderline, patience=5)] == [0] * 13


def test_a_resumed_monitor_replaying_the_log_flags_as_the_uninterrupted_one():
  rows = ([row(distinctness=0.9)] * 3 + [row(d_real=0.9, d_fake=0.001, g_loss=5.0 + i,
                                             distinctness=0.05) for i in range(5)])
  expected = flags(rows)
  assert expected[-1] == (1, 1)  # both streaks run across the resume point below
  for resume_at in range(1, len(rows)):
    monitor = health.Health(patience=3)
    logged = [dict(r, step=step) for step, r in enumerate(rows[:resume_at])]
    monitor.replay(logged + [dict(step=resume_at, eval={})])  # eval lines are not log rows
    resumed = [monitor.update(step, dict(r)) for step, r in enumerate(rows) if step >= resume_at]
    assert [(r['d_wins'], r['collapse']) for r in resumed] == expected[resume_at:], resume_at


def test_replaying_rows_logged_before_distinctness_existed_continues_the_streaks():
  """A run resumed from a log whose rows predate `distinctness` (they have `diversity`):
  replay does not fail, D's winning streak goes on across the resume, and a collapse streak
  starts from the first row that measures distinctness."""
  old = [dict(step=step, d_real=0.9, d_fake=0.001, g_loss=5.0 + step, diversity=0.05)
         for step in range(3)]
  monitor = health.Health(patience=3)
  monitor.replay(old + [dict(step=3, eval={})])
  resumed = [monitor.update(step, row(d_real=0.9, d_fake=0.001, g_loss=5.0 + step,
                                      distinctness=d))
             for step, d in zip(range(3, 10), (0.9, 0.9, 0.9, 0.05, 0.05, 0.05, 0.05))]
  assert [r['d_wins'] for r in resumed] == [1] * 7
  assert [r['collapse'] for r in resumed] == [0, 0, 0, 0, 0, 1, 1]
