"""--mode=eval: metrics of the latest checkpoint's generator against the training images.

Writes WORKDIR/eval.json and prints a table. Every number carries its provenance: checkpoint
step, dataset, image counts, resolution and the metric's settings, so that two numbers can be
compared only when they were computed the same way.
"""

import hashlib
import json
import os
import time

import jax
import numpy as np
from absl import logging

from facegan_jax import data
from facegan_jax import sample as sample_lib
from facegan_jax.config import UsageError
from facegan_jax.evaluation import fid
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
  swd_done = time.perf_counter()
  record = dict(
      step=int(state.step), dataset=config.dataset, resolution=config.resolution,
      n_real=n, n_fake=n, generator='ema' if config.ema_decay > 0 else 'raw',
      sample_seed=config.sample_seed,
      metrics=dict(swd=dict(
          value=mean, per_level=per_level,
          levels=[config.resolution // 2**i for i in range(len(per_level))],
          settings='x1e3; Laplacian pyramid to 16x16, 128 7x7 patches per image and level, '
                   '4x128 random directions, per-set channel normalisation')),
      seconds=dict(generate=generated, swd=swd_done - started - generated))
  if config.inception_weights:
    record['metrics'].update(_inception_metrics(config, real, fake, subset))
    record['seconds']['inception'] = time.perf_counter() - swd_done
  record['seconds']['total'] = time.perf_counter() - started
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(record, f, indent=1)
  print(table(record))
  logging.info('Wrote %s/eval.json', workdir)
  return record


def _inception_metrics(config, real, fake, subset):
  """FID, KID and precision/recall records, each with the network and resize provenance."""
  model, digest = fid.load_network(config.inception_weights)
  key = dict(dataset=config.dataset, resolution=config.resolution, split='train',
             subset=hashlib.sha256(subset.tobytes()).hexdigest()[:16], weights=digest,
             resize=config.fid_resize)
  real_features, cached = fid.cached_real_features(model, real, config.fid_resize, key)
  fake_features = fid.features(model, fake, config.fid_resize)
  values = fid.metrics(real_features, fake_features, seed=config.sample_seed)
  network = dict(network='FID Inception-v3 (2015-12-05) pool3, 2048 features',
                 weights_sha256=digest, resize=config.fid_resize, real_features_cached=cached)
  return dict(
      fid=dict(value=values['fid'], **network),
      kid=dict(value=values['kid'], std=values['kid_std'], settings='x1e3; cubic polynomial '
               'kernel, 100 subsets of min(1000, n)', **network),
      precision=dict(value=values['precision'], settings='k=3 (Kynkaanniemi et al. 2019)',
                     **network),
      recall=dict(value=values['recall'], settings='k=3 (Kynkaanniemi et al. 2019)',
                  **network))


def table(record):
  """The record as a small text table."""
  lines = [f'step {record["step"]}, {record["dataset"]} at {record["resolution"]}px, '
           f'{record["n_fake"]} fakes ({record["generator"]} G) vs {record["n_real"]} reals',
           f'{"metric":<8} {"value":>9}  detail']
  swd_record = record['metrics']['swd']
  detail = ', '.join(f'{level}px {value:.1f}' for level, value in
                     zip(swd_record['levels'], swd_record['per_level']))
  lines.append(f'{"SWD":<8} {swd_record["value"]:>9.2f}  {detail}')
  metrics = record['metrics']
  if 'fid' in metrics:
    lines.append(f'{"FID":<8} {metrics["fid"]["value"]:>9.2f}  resize {metrics["fid"]["resize"]}'
                 f', weights {metrics["fid"]["weights_sha256"][:12]}')
    lines.append(f'{"KID":<8} {metrics["kid"]["value"]:>9.2f}  x1e3, std '
                 f'{metrics["kid"]["std"]:.2f}')
    precision, recall = metrics['precision']['value'], metrics['recall']['value']
    lines.append(f'{"P / R":<8} {precision:>4.2f} {recall:>4.2f}  precision / recall, k=3')
  return '\n'.join(lines)
