"""Evaluations during training and the best checkpoint (evaluation/periodic.py), with a
stand-in evaluator: what is tested is the bookkeeping, not the metrics."""

import json
import os

import jax.numpy as jnp

from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.config import Config
from facegan_jax.evaluation import evaluate, periodic


class _Evaluator:
  """Returns the next of `VALUES` as the swd of each evaluation."""
  VALUES = []

  def __init__(self, config):
    del config

  def __call__(self, step, generate):
    del generate
    value = self.VALUES.pop(0)
    return dict(step=step, metrics=dict(swd=dict(value=value)), seconds=dict(total=0.0))


def test_a_resumed_run_can_save_a_best_before_the_one_a_killed_run_saved_later(
    tmp_path, monkeypatch):
  """A run evaluated steps 10 and 20 (the best: 20) and was killed before its first regular
  checkpoint; its rerun starts at 0 and finds a best at 10. The best checkpoint of 20 belongs
  to evaluations the log has set aside: it is moved aside too (never deleted), and 10 saved."""
  monkeypatch.setattr(evaluate, 'Evaluator', _Evaluator)
  config = Config(eval_every=10, best_metric='swd')
  state = dict(w=jnp.ones(3))
  earlier = Checkpoints(str(tmp_path / periodic.BEST_DIR), keep=1, config=config)
  earlier.save(state, 20)
  earlier.close()
  metrics_path = str(tmp_path / 'metrics.jsonl')
  with open(metrics_path, 'w') as f:
    for step, value in ((10, 5.0), (20, 3.0)):
      f.write(json.dumps(dict(step=step, eval=dict(metrics=dict(swd=dict(value=value))))) + '\n')

  _Evaluator.VALUES[:] = [4.0, 6.0]
  rerun = periodic.PeriodicEval(config, str(tmp_path), metrics_path, step=0)
  assert rerun.best is None
  rerun(dict(w=jnp.full(3, 2.0)), 10, generate=None)
  rerun(dict(w=jnp.full(3, 3.0)), 20, generate=None)  # worse: not kept
  rerun.close()
  assert os.listdir(tmp_path / periodic.BEST_DIR) == ['10']
  assert os.listdir(tmp_path / periodic.BEST_DIR_SET_ASIDE) == ['20']
  best = Checkpoints(str(tmp_path / periodic.BEST_DIR), config=config, read_only=True)
  assert float(best.restore(dict(w=jnp.zeros(3)))['w'][0]) == 2.0
