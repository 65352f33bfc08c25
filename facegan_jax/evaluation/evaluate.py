"""--mode=eval: metrics of the latest checkpoint's generator against the training images.

Writes WORKDIR/eval.json and prints a table. Every number carries its provenance: checkpoint
step, dataset, image counts, resolution and the metric's settings, so that two numbers can be
compared only when they were computed the same way.
"""

import json
import os
import time

import jax
import numpy as np
from absl import logging

from facegan_jax import data
from facegan_jax import sample as sample_lib
from facegan_jax.config import UsageError
from facegan_jax.evaluation import swd


def evaluate(config, workdir):
  """Computes the metrics of `config`'s latest checkpoint; returns the eval.json record."""
  state, generate = sample_lib.load_latest(config, workdir)
  real = data.load_images(config, 'train')
  n = config.eval_samples
  if len(real) < n:
    raise UsageError(f'--eval_samples={n} but {config.dataset} has only {len(real)} training '
                     'images')
  # A fixed subset of the reals and fixed latents: reruns give the same numbers.
  subset = np.sort(np.random.default_rng(config.sample_seed).choice(len(real), n, replace=False))
  real = np.asarray(real[subset])
  started = time.perf_counter()
  fake = generate(jax.random.normal(jax.random.PRNGKey(config.sample_seed), (n, config.z_dim)))
  generated = time.perf_counter() - started
  per_level, mean = swd.swd(real, fake, seed=config.sample_seed)
  record = dict(
      step=int(state.step), dataset=config.dataset, resolution=config.resolution,
      n_real=n, n_fake=n, generator='ema' if config.ema_decay > 0 else 'raw',
      sample_seed=config.sample_seed,
      metrics=dict(swd=dict(
          value=mean, per_level=per_level,
          levels=[config.resolution // 2**i for i in range(len(per_level))],
          settings='x1e3; Laplacian pyramid to 16x16, 128 7x7 patches per image and level, '
                   '4x128 random directions, per-set channel normalisation')),
      seconds=dict(generate=generated, total=time.perf_counter() - started))
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(record, f, indent=1)
  print(table(record))
  logging.info('Wrote %s/eval.json', workdir)
  return record


def table(record):
  """The record as a small text table."""
  lines = [f'step {record["step"]}, {record["dataset"]} at {record["resolution"]}px, '
           f'{record["n_fake"]} fakes ({record["generator"]} G) vs {record["n_real"]} reals',
           f'{"metric":<8} {"value":>9}  detail']
  swd_record = record['metrics']['swd']
  detail = ', '.join(f'{level}px {value:.1f}' for level, value in
                     zip(swd_record['levels'], swd_record['per_level']))
  lines.append(f'{"SWD":<8} {swd_record["value"]:>9.2f}  {detail}')
  return '\n'.join(lines)
