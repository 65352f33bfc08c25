"""--eval_every and --best_metric: the --mode=eval metrics during training, and the best state.

Every evaluation appends one line to metrics.jsonl, `{"step": S, "eval": RECORD}` with RECORD
as in eval.json (values and provenance), so a resumed run drops and recomputes it like the
training lines. With --best_metric, the state of the step with the lowest value so far is also
saved to workdir/best_checkpoint (the same sealed orbax checkpoints as workdir/checkpoints, one
kept, the previous one deleted only once the new one is complete), besides the last
--keep_checkpoints.
"""

import os

import jax
from absl import logging
from jax.experimental import multihost_utils

from facegan_jax.checkpoint.manager import Checkpoints, move_aside
from facegan_jax.evaluation import evaluate
from facegan_jax.logs import metrics_log
from facegan_jax.run import runtime

BEST_DIR = 'best_checkpoint'
BEST_DIR_SET_ASIDE = 'best_checkpoint_set_aside'
HIGHER_IS_BETTER = ('class_coverage', 'class_accuracy', 'cas')


class PeriodicEval:
  """Evaluates the generator of a training state and keeps the best state."""

  def __init__(self, config, workdir, metrics_path, step):
    """Prepares the real side (see evaluate.Evaluator); the best value so far is read from
    metrics.jsonl's evaluations up to `step`, the restored one."""
    self.config, self.metrics_path = config, metrics_path
    self.evaluator = evaluate.Evaluator(config)
    self.best, self.best_ckpts = None, None
    if config.best_metric:
      self.best_ckpts = Checkpoints(os.path.join(workdir, BEST_DIR), keep=1, config=config)
      self._set_aside_later(workdir, step)
      self.best = min((self._loss(row['eval']['metrics'])
                       for row in metrics_log.eval_rows(metrics_path) if row['step'] <= step),
                      default=None)

  def _set_aside_later(self, workdir, step):
    """A best checkpoint after `step` was chosen by evaluations that metrics.jsonl has set
    aside (the resumed run evaluates those steps again): move it to BEST_DIR_SET_ASIDE, as
    metrics_log.repair moves their lines, so that the run can save an earlier best."""
    if runtime.writes_files():
      for later in [s for s in self.best_ckpts.manager.all_steps() if s > step]:
        aside = move_aside(os.path.join(self.best_ckpts.directory, str(later)),
                           os.path.join(workdir, BEST_DIR_SET_ASIDE))
        logging.info('Moved best checkpoint %d, after step %d the run resumes from, to %s',
                     later, step, aside)
    if jax.process_count() > 1:  # every process sees the directory as process 0 left it
      multihost_utils.sync_global_devices('facegan_jax: best checkpoints set aside')
    self.best_ckpts.manager.reload()

  def _loss(self, metrics):
    """The --best_metric value of an eval record's metrics, as lower-is-better."""
    value = metrics[self.config.best_metric]['value']
    if value is None:  # not computable from these images (intra_fd: too few of each class)
      return float('inf')
    return -value if self.config.best_metric in HIGHER_IS_BETTER else value

  def __call__(self, state, step, generate):
    """Evaluates `generate` (z -> uint8 images, state's generator), logs the record and
    returns it."""
    record = self.evaluator(step, generate)
    if runtime.writes_files():
      metrics_log.append_eval(self.metrics_path, step, record)
    metrics = record['metrics']
    logging.info('eval at step %d (%.0f s): %s', step, record['seconds']['total'],
                 ', '.join(f'{name} {m["value"]:.3f}' if m['value'] is not None else
                           f'{name} n/a' for name, m in metrics.items()))
    if self.best_ckpts is None:
      return record
    value = self._loss(metrics)
    if self.best is not None and value >= self.best:
      return record
    self.best = value
    # A resumed run that reaches a step again reaches the same state: keep the saved one.
    if step not in self.best_ckpts.manager.all_steps():
      self.best_ckpts.save(state, step)
    logging.info('best %s so far: %.4f at step %d (%s)', self.config.best_metric,
                 metrics[self.config.best_metric]['value'], step,
                 self.best_ckpts.directory)
    return record

  def close(self, quiet=False):
    if self.best_ckpts is not None:
      self.best_ckpts.close(quiet=quiet)
