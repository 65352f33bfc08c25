"""The latent-space figures' interpolation (end to end in test_main.py)."""

import numpy as np

from facegan_jax import explore


def test_slerp_keeps_the_ends_and_moves_along_the_great_circle():
  a, b = np.eye(4)[0] * 3, np.eye(4)[1] * 3
  np.testing.assert_allclose(explore.slerp(a, b, 0.0), a, atol=1e-12)
  np.testing.assert_allclose(explore.slerp(a, b, 1.0), b, atol=1e-12)
  # Orthogonal ends of equal length: the midpoint is on their circle, not inside it.
  np.testing.assert_allclose(explore.slerp(a, b, 0.5), (a + b) / np.sqrt(2), atol=1e-12)
  frames = explore.slerp(a, b, np.linspace(0, 1, 7)[:, None])
  np.testing.assert_allclose(np.linalg.norm(frames, axis=-1), 3.0, atol=1e-12)
  # Parallel ends: linear.
  np.testing.assert_allclose(explore.slerp(a, 2 * a, 0.5), 1.5 * a, atol=1e-12)


def test_interpolation_rows_run_from_one_latent_to_another():
  import jax  # noqa: PLC0415
  z, ends = explore.interpolation_latents(jax.random.PRNGKey(0), 6, rows=3, frames=5)
  rows = z.reshape(3, 5, 6)
  np.testing.assert_allclose(rows[:, 0], ends[0, :, 0], rtol=1e-6)
  np.testing.assert_allclose(rows[:, -1], ends[1, :, 0], rtol=1e-6)
  assert not np.allclose(rows[:, 2], rows[:, 0])
