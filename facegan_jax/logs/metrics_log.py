"""metrics.jsonl: the training log, one JSON object per line with its `step`.

Training appends a line per log step (`append`) and, with --eval_every, one `{"step": S,
"eval": RECORD}` per evaluation. A resumed run first repairs the log (`repair`): it keeps the
lines up to the step it resumes from and moves every other line to metrics_set_aside.txt
beside it, never deleting one: the lines logged after that step (the run logs them again,
identically) and any line that is not a JSON object with a step (a line torn by a kill during
an append, or damaged otherwise). Readers skip such lines too.
"""

import json
import os

import jax
import numpy as np
from absl import logging

from facegan_jax.run import files


def finite_floats(metrics, step):
  """The step's metrics as Python floats; raises FloatingPointError naming any that is not
  finite."""
  metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
  bad = [k for k, v in metrics.items() if not np.isfinite(v)]
  if bad:
    raise FloatingPointError(f'non-finite {", ".join(bad)} at step {step}; '
                             'lower the learning rates or check the data')
  return metrics


SET_ASIDE = 'metrics_set_aside.txt'


def _row(line):
  """The JSON object with an integer `step` that `line` holds, or None."""
  try:
    row = json.loads(line)
  except ValueError:
    return None
  return row if isinstance(row, dict) and isinstance(row.get('step'), int) else None


def read_rows(path):
  """The log's rows (dicts with a `step`), skipping damaged lines; none if there is no log."""
  try:
    with open(path, errors='replace') as f:
      return [row for row in map(_row, filter(str.strip, f)) if row is not None]
  except FileNotFoundError:
    return []


def repair(path, step):
  """Keeps the log's rows up to `step` and moves every other line aside (module doc); returns
  the rows kept. Warns once when lines were damaged."""
  if not os.path.exists(path):
    return []
  with open(path, errors='replace') as f:
    raw = [line for line in f if line.strip()]
  lines = [line if line.endswith('\n') else line + '\n' for line in raw]
  rows = [_row(line) for line in lines]
  keep = [row is not None and row['step'] <= step for row in rows]
  if all(keep):
    if raw and not raw[-1].endswith('\n'):  # appends start on a fresh line
      with open(path, 'a') as f:
        f.write('\n')
    return rows
  aside = os.path.join(os.path.dirname(path), SET_ASIDE)
  with open(aside, 'a') as f:
    f.writelines(line for line, kept in zip(lines, keep) if not kept)
  with files.atomic_path(path) as tmp, open(tmp, 'w') as f:
    f.writelines(line for line, kept in zip(lines, keep) if kept)
  damaged = [i + 1 for i, row in enumerate(rows) if row is None]
  later = sum(1 for row in rows if row is not None and row['step'] > step)
  if damaged:
    logging.warning('%s: %d damaged line(s) (line %s%s), a run killed while writing it; moved '
                    'them to %s and kept the %d good lines up to step %d', path, len(damaged),
                    damaged[0], ', ...' if len(damaged) > 1 else '', aside, sum(keep), step)
  if later:
    logging.info('Moved the %d metrics.jsonl line(s) logged after step %d to %s (this run logs '
                 'them again)', later, step, aside)
  return [row for row, kept in zip(rows, keep) if kept]


def _append_line(path, row):
  with open(path, 'a') as f:
    f.write(json.dumps(row) + '\n')


def eval_rows(path):
  """The evaluation lines of the log at `path` (none if it does not exist)."""
  return [row for row in read_rows(path) if 'eval' in row]


def append_eval(path, step, record):
  """Appends one evaluation line (`record` as in eval.json)."""
  _append_line(path, dict(step=step, eval=record))


def append(path, step, num_steps, metrics, elapsed_s=None):
  """Appends one JSON line and logs a progress line with rate, elapsed time (`elapsed_s`:
  this process's, when given) and ETA."""
  _append_line(path, dict(step=step, **metrics))
  rate = metrics.get('steps_per_sec')
  eta = f'{(num_steps - step) / rate:.0f}s' if rate else '?'
  elapsed = '' if elapsed_s is None else f'elapsed {elapsed_s:.0f}s, '
  logging.info('step %d/%d | d_loss %.3f g_loss %.3f d_real %.2f d_fake %.2f | '
               '%.0f img/s | %sETA %s', step, num_steps, metrics['d_loss'], metrics['g_loss'],
               metrics['d_real'], metrics['d_fake'], metrics.get('images_per_sec', 0), elapsed,
               eta)
