"""Loss values against numbers computed by hand."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from facegan_jax.objectives import classic as losses

REAL = jnp.array([2.0, -1.0])
FAKE = jnp.array([0.5, -3.0])


def softplus(x):
  return math.log1p(math.exp(x))


def test_bce_d_is_cross_entropy_with_targets_one_and_zero():
  # -log sigmoid(x) = softplus(-x); -log(1 - sigmoid(x)) = softplus(x)
  real = (softplus(-2.0) + softplus(1.0)) / 2
  fake = (softplus(0.5) + softplus(-3.0)) / 2
  assert float(losses.bce_d(REAL, FAKE)) == pytest.approx(real + fake, rel=1e-6)


def test_bce_d_label_smoothing_targets_point_nine():
  # target t: t * softplus(-x) + (1 - t) * softplus(x)
  real = np.mean([0.9 * softplus(-x) + 0.1 * softplus(x) for x in (2.0, -1.0)])
  fake = (softplus(0.5) + softplus(-3.0)) / 2
  assert float(losses.bce_d(REAL, FAKE, 0.9)) == pytest.approx(real + fake, rel=1e-6)


def test_bce_g_is_non_saturating():
  assert float(losses.bce_g(FAKE)) == pytest.approx(
      (softplus(-0.5) + softplus(3.0)) / 2, rel=1e-6)


def test_lsgan():
  d = 0.5 * ((2 - 1)**2 + (-1 - 1)**2) / 2 + 0.5 * (0.5**2 + 3.0**2) / 2
  g = 0.5 * ((0.5 - 1)**2 + (-3 - 1)**2) / 2
  assert float(losses.lsgan_d(REAL, FAKE)) == pytest.approx(d, rel=1e-6)
  assert float(losses.lsgan_g(FAKE)) == pytest.approx(g, rel=1e-6)


def test_hinge():
  d = (max(0, 1 - 2) + max(0, 1 + 1)) / 2 + (max(0, 1 + 0.5) + max(0, 1 - 3)) / 2
  assert float(losses.hinge_d(REAL, FAKE)) == pytest.approx(d, rel=1e-6)
  assert float(losses.hinge_g(FAKE)) == pytest.approx(1.25, rel=1e-6)


def test_wgan_critic_and_generator():
  # The critic's E[D(G(z))] - E[D(x)]: (0.5 - 3) / 2 - (2 - 1) / 2; G's -E[D(G(z))].
  assert float(losses.wgan_d(REAL, FAKE)) == pytest.approx(-1.75, rel=1e-6)
  assert float(losses.wgan_g(FAKE)) == pytest.approx(1.25, rel=1e-6)
  # No targets: label smoothing changes nothing.
  assert float(losses.wgan_d(REAL, FAKE, 0.9)) == pytest.approx(-1.75, rel=1e-6)
