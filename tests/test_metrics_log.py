"""metrics.jsonl and the metrics written to it."""

import jax.numpy as jnp
import pytest

from facegan_jax.metrics_log import finite_floats


def test_a_non_finite_metric_stops_the_run_naming_it_and_the_step():
  assert finite_floats(dict(d_loss=jnp.array(0.5)), 3) == dict(d_loss=0.5)
  with pytest.raises(FloatingPointError, match=r'^non-finite d_loss, g_grad_norm at step 7; '):
    finite_floats(dict(d_loss=jnp.array(jnp.nan), g_grad_norm=jnp.array(jnp.inf),
                       g_loss=jnp.array(1.0)), 7)
