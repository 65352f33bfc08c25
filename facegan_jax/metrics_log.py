"""metrics.jsonl: the training log, one JSON object per line with its `step`.

Training appends a line per log step (`append`) and, with --eval_every, one `{"step": S,
"eval": RECORD}` per evaluation; a resumed run first drops the lines logged after the step it
resumes from (`truncate`), then logs them again, identically.
"""

import json
import os

import jax
import numpy as np
from absl import logging

from facegan_jax import files


def finite_floats(metrics, step):
  """The step's metrics as Python floats; raises FloatingPointError naming any that is not
  finite."""
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(f'non-finite {", ".join(bad)} at step {step}; '
                             'lower the learning rates or check the data')
  return metrics


def truncate(path, step):
  """Drops metrics.jsonl lines after `step` (a resumed run logs them again, identically)."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
  with files.atomic_path(path) as tmp, open(tmp, 'w') as f:
    f.writelines(lines)


def _append_line(path, row):
  with open(path, 'a') as f:
    f.write(json.dumps(row) + '\n')


def eval_rows(path):
  """The evaluation lines of the log at `path` (none if it does not exist)."""
  try:
    with open(path) as f:
      return [row for row in map(json.loads, filter(str.strip, f)) if 'eval' in row]
  except FileNotFoundError:
    return []


def append_eval(path, step, record):
  """Appends one evaluation line (`record` as in eval.json)."""
  _append_line(path, dict(step=step, eval=record))


def append(path, step, num_steps, metrics):
  """Appends one JSON line and logs a progress line with rate and ETA."""
  _append_line(path, dict(step=step, **metrics))
  rate = metrics.get('steps_per_sec')
  eta = f'{(num_steps - step) / rate:.0f}s' if rate else '?'
  logging.info('step %d/%d | d_loss %.3f g_loss %.3f d_real %.2f d_fake %.2f | '
               '%.0f img/s | ETA %s', step, num_steps, metrics['d_loss'], metrics['g_loss'],
               metrics['d_real'], metrics['d_fake'], metrics.get('images_per_sec', 0), eta)
