"""metrics.jsonl and the metrics written to it."""

import json

import jax.numpy as jnp
import pytest

from facegan_jax.logs import metrics_log
from facegan_jax.logs.metrics_log import finite_floats


def test_a_non_finite_metric_stops_the_run_naming_it_and_the_step():
  assert finite_floats(dict(d_loss=jnp.array(0.5)), 3) == dict(d_loss=0.5)
  with pytest.raises(FloatingPointError, match=r'^non-finite d_loss, g_grad_norm at step 7; '):
    finite_floats(dict(d_loss=jnp.array(jnp.nan), g_grad_norm=jnp.array(jnp.inf),
                       g_loss=jnp.array(1.0)), 7)


def _write(path, text):
  path.write_text(text)
  return str(path)


def test_repair_keeps_the_rows_up_to_the_step_and_moves_every_other_line_aside(tmp_path):
  lines = [json.dumps(dict(step=s, d_loss=0.1 * s)) for s in (5, 10, 15, 20)]
  # A line cut mid-way by a kill, glued to the next one; a line that is no row; then rows
  # past the step the run resumes from.
  text = '\n'.join([lines[0], lines[1][:9] + lines[2], '[1, 2]', lines[1], lines[3]]) + '\n'
  path = _write(tmp_path / 'metrics.jsonl', text)
  kept = metrics_log.repair(path, 10)
  assert kept == [dict(step=5, d_loss=0.5), dict(step=10, d_loss=1.0)]
  assert metrics_log.read_rows(path) == kept
  aside = (tmp_path / metrics_log.SET_ASIDE).read_text().splitlines()
  assert aside == [lines[1][:9] + lines[2], '[1, 2]', lines[3]]  # nothing is lost
  # Appends start on a fresh line; a second repair finds nothing to move.
  metrics_log.append(path, 15, 20, dict(d_loss=1.5, g_loss=1, d_real=0.5, d_fake=0.5))
  assert [row['step'] for row in metrics_log.repair(path, 15)] == [5, 10, 15]
  assert len((tmp_path / metrics_log.SET_ASIDE).read_text().splitlines()) == 3


def test_repair_ends_a_log_whose_last_newline_was_lost_and_readers_skip_damage(tmp_path):
  path = _write(tmp_path / 'metrics.jsonl', '{"step": 5}\n{"step": 10}')
  assert [row['step'] for row in metrics_log.repair(path, 10)] == [5, 10]
  assert open(path).read() == '{"step": 5}\n{"step": 10}\n'
  assert not (tmp_path / metrics_log.SET_ASIDE).exists()
  # Readers (the loss plot, the best-checkpoint record) skip a damaged line too.
  damaged = _write(tmp_path / 'damaged.jsonl', '{"step": 5, "eval": {}}\n{"step": 1\n\xff\n')
  assert metrics_log.eval_rows(damaged) == [dict(step=5, eval={})]
  assert metrics_log.repair(str(tmp_path / 'missing.jsonl'), 3) == []
