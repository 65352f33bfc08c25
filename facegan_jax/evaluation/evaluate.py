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

from facegan_jax import config as config_lib, sample as sample_lib, schedules
from facegan_jax.data import images, sources
from facegan_jax.errors import UsageError
from facegan_jax.evaluation import classifier, conditional
from facegan_jax.evaluation import face_attributes
from facegan_jax.evaluation import fid
from facegan_jax.evaluation import swd


def has_domain_metric(config):
  """Whether `config`'s dataset has the synthetic_faces attribute network's metrics."""
  return config_lib.is_synthetic_faces(config.dataset)


@images.listed_once()
def evaluate(config, workdir):
  """Computes the metrics of `config`'s latest checkpoint; returns the eval.json record."""
  state, generate = sample_lib.load_latest(config, workdir)
  record = Evaluator(config)(int(state.step), generate)
  with open(os.path.join(workdir, 'eval.json'), 'w') as f:
    json.dump(record, f, indent=1)
  print(table(record))
  logging.info('Wrote %s/eval.json', workdir)
  return record


class Evaluator:
  """Metrics of generators against a fixed subset of the training images.

  The real side is prepared once (the subset, the feature networks, the real features), so a
  training run evaluates every --eval_every steps at the cost of the fakes alone (SWD aside).
  """

  def __init__(self, config):
    self.config = config
    split = sources.load_images(config, 'train')
    trained_on, real = sources.training_part(config, split)
    n = config.eval_samples
    if config.max_images and len(real) < n:
      n = len(real)  # small-data runs (DiffAugment's 100-shot protocol): against all of them
    if len(real) < n:
      raise UsageError(f'--eval_samples={n} but {config.dataset} has only {len(real)} training '
                       'images')
    # A fixed subset of the reals and fixed latents: reruns give the same numbers.
    self.subset = np.sort(np.random.default_rng(config.sample_seed).choice(
        len(real), n, replace=False))
    self.real = np.asarray(real[self.subset])
    self.z = jax.random.normal(jax.random.PRNGKey(config.sample_seed), (n, config.z_dim))
    self.provenance = dict(
        dataset=config.dataset, dataset_version=sources.version(config),
        train_images=len(real), resolution=config.resolution, n_real=n, n_fake=n,
        generator='ema' if schedules.uses_ema(config) else 'raw', sample_seed=config.sample_seed)
    # The floor: as many other images of the split as there are fakes (all others if fewer);
    # with --max_images, images the run never trained on.
    others = np.setdiff1d(np.arange(len(split)),
                          trained_on if config.max_images else self.subset)
    others_at = np.sort(np.random.default_rng(config.sample_seed + 1).permutation(others)[:n])
    others = np.asarray(split[others_at])
    # Under --condition, G draws for the real subset's classes: fakes and reals in one mix.
    self.labels = real_classes = None
    if config.condition:
      codes = sources.load_classes(config, 'train')
      real_classes = codes[trained_on][self.subset]
      self.labels = jax.numpy.asarray(real_classes)
    # Labels first: a --best_metric they cannot give fails before any network trains.
    labelled = sources.load_labels(config, 'train')
    if config.best_metric in config_lib.CLASS_NET_METRICS and labelled is None:
      raise UsageError(f'--best_metric={config.best_metric} needs a labelled dataset (a folder '
                       f'with class subfolders, or a TFDS dataset with a label feature); '
                       f'{config.dataset} has no labels')
    self.attributes = self.domain_floor = None
    if has_domain_metric(config):
      net, quality = face_attributes.load_or_train(config)
      self.attributes = (net, quality, face_attributes.read_images(net, self.real,
                                                                   config.channels))
      self.domain_floor = dict(n_floor=len(others), floor=None if len(others) < 2 else (
          face_attributes.metrics(*self.attributes, others, config.channels)['domain_fd']['value']))
    self.classes = None
    if labelled is not None:
      labels, names = labelled
      net, quality = classifier.load_or_train(config, split, labels, names)
      self.classes = classifier.ClassMetrics.prepare(net, quality, config.channels, self.real,
                                                     others)
    self.inception = None
    if config.inception_weights:
      model, fc, digest = fid.load_network(config.inception_weights)
      key = fid.real_features_key(self.real, digest, config.fid_resize)
      real_features, cached = fid.cached_real_features(model, self.real, config.fid_resize, key)
      self.inception = (model, fc, digest, real_features, cached)
    self.conditional = (self._conditional(real_classes, others, codes[others_at])
                        if config.condition else None)

  def _conditional(self, real_classes, others, other_classes):
    """The conditional metrics, read by the class net (--condition=label) or the attribute
    net (a synthetic_faces attribute)."""
    config = self.config
    if config.condition == 'label':
      model, quality = self.classes.model, self.classes.quality
      read = lambda images: classifier.read(model, classifier.to_input(images, config.channels))
      network = dict(network=f'class net v{classifier.VERSION}', weights_sha256=quality['sha256'])
      ceiling = quality['held_out_accuracy']
    else:
      model, quality, _ = self.attributes
      column = list(face_attributes.CATEGORICAL).index(config.condition)
      def read(images):
        features, _, classes = face_attributes.read_images(model, images, config.channels)
        return features, classes[column]
      network = dict(network=f'attribute net v{face_attributes.VERSION}',
                     weights_sha256=quality['sha256'])
      ceiling = quality['accuracy'][config.condition]
    return conditional.ConditionalMetrics.prepare(
        read, network, ceiling, sources.class_names(config), config.channels, self.real,
        real_classes, others, other_classes)

  def __call__(self, step, generate):
    """The record of the generator `generate` ((z, classes under --condition) -> uint8 images)
    at training step `step`."""
    config, seconds = self.config, {}
    started = time.perf_counter()
    fake = generate(self.z) if self.labels is None else generate(self.z, self.labels)
    seconds['generate'] = time.perf_counter() - started
    per_level, mean = swd.swd(self.real, fake, seed=config.sample_seed)
    metrics = dict(swd=dict(
        value=mean, per_level=per_level,
        levels=[config.resolution // 2**i for i in range(len(per_level))],
        settings='x1e3; Laplacian pyramid to 16x16, 128 7x7 patches per image and level, '
                 '4x128 random directions, per-set channel normalisation'))
    seconds['swd'] = time.perf_counter() - started - sum(seconds.values())
    if self.attributes is not None:
      metrics.update(face_attributes.metrics(*self.attributes, fake, config.channels))
      metrics['domain_fd'].update(self.domain_floor)
      seconds['domain'] = time.perf_counter() - started - sum(seconds.values())
    if self.classes is not None:
      metrics.update(self.classes(fake))
      seconds['classes'] = time.perf_counter() - started - sum(seconds.values())
    if self.conditional is not None:
      metrics.update(self.conditional(fake))
      seconds['conditional'] = time.perf_counter() - started - sum(seconds.values())
    if self.inception is not None:
      metrics.update(self._inception_metrics(fake))
      seconds['inception'] = time.perf_counter() - started - sum(seconds.values())
    seconds['total'] = time.perf_counter() - started
    return dict(step=step, **self.provenance, metrics=metrics,
                seconds={k: round(v, 2) for k, v in seconds.items()})

  def _inception_metrics(self, fake):
    """FID, KID, precision/recall and Inception Score records, each with the network and
    resize provenance."""
    config = self.config
    model, fc, digest, real_features, cached = self.inception
    fake_features = fid.features(model, fake, config.fid_resize)
    values = fid.metrics(real_features, fake_features, fc, seed=config.sample_seed)
    network = dict(network='FID Inception-v3 (2015-12-05) pool3, 2048 features',
                   weights_sha256=digest, resize=config.fid_resize, real_features_cached=cached)
    return dict(
        fid=dict(value=values['fid'], **network),
        kid=dict(value=values['kid'], std=values['kid_std'], settings='x1e3; cubic polynomial '
                 'kernel, 100 subsets of min(1000, n)', **network),
        precision=dict(value=values['precision'], settings='k=3 (Kynkaanniemi et al. 2019)',
                       **network),
        recall=dict(value=values['recall'], settings='k=3 (Kynkaanniemi et al. 2019)',
                    **network),
        inception_score=dict(
            value=values['inception_score'], std=values['inception_score_std'],
            real=values['inception_score_real'],
            settings='higher is better; exp E[KL(p(y|x) || p(y))] over the 1008-way softmax '
                     'of the same network, mean and std over 10 splits (Salimans et al. 2016); '
                     'real: the real images\' own', **network))


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
  if 'domain_fd' in metrics:
    w1, tv = metrics['attr_w1'], metrics['attr_tv']
    fd = metrics['domain_fd']
    lines.append(f'{"domainFD":<8} {fd["value"]:>9.2f}  real-vs-real floor ({fd["n_floor"]} other '
                 f'reals) {_floor(fd, ".2f")}; attribute net, test R^2 {fd["test_mean_r2"]:.2f}')
    worst = sorted(w1['per_attribute'].items(), key=lambda kv: -kv[1])[:3]
    lines.append(f'{"attr W1":<8} {w1["value"]:>9.3f}  std units; worst '
                 + ', '.join(f'{k} {v:.2f}' for k, v in worst))
    lines.append(f'{"attr TV":<8} {tv["value"]:>9.3f}  '
                 + ', '.join(f'{k} {v:.2f}' for k, v in tv['per_attribute'].items()))
  if 'class_fd' in metrics:
    fd, tv, coverage = metrics['class_fd'], metrics['class_tv'], metrics['class_coverage']
    floor = f'real-vs-real floor ({fd["n_floor"]} other reals)'
    lines.append(f'{"classFD":<8} {fd["value"]:>9.2f}  {floor} {_floor(fd, ".2f")}; class net '
                 f'held-out accuracy {fd["held_out_accuracy"]:.3f}')
    lines.append(f'{"class TV":<8} {tv["value"]:>9.3f}  floor {_floor(tv, ".3f")}')
    lines.append(f'{"classes":<8} {coverage["value"]:>6}/{coverage["of"]:<2}  floor '
                 f'{_floor(coverage, "d")}: classes with >= 1/(2K) of the fakes')
  if 'class_accuracy' in metrics:
    accuracy, fd, cas = metrics['class_accuracy'], metrics['intra_fd'], metrics['cas']
    lines.append(f'{"class acc":<8} {accuracy["value"]:>8.3f}  share read as the class asked '
                 f'for; ceiling (real held-out) {_bound(accuracy, "ceiling", ".3f")}')
    lines.append(f'{"intraFD":<8} {_value(fd, ">9.2f")}  mean per-class FD; floor '
                 f'({fd["n_bound"]} other reals) {_bound(fd, "floor", ".2f")}')
    lines.append(f'{"CAS":<8} {_value(cas, ">9.3f")}  real accuracy of a classifier trained on '
                 f'fakes; ceiling (trained on reals) {_bound(cas, "ceiling", ".3f")}')
  if 'fid' in metrics:
    lines.append(f'{"FID":<8} {metrics["fid"]["value"]:>9.2f}  resize {metrics["fid"]["resize"]}'
                 f', weights {metrics["fid"]["weights_sha256"][:12]}')
    lines.append(f'{"KID":<8} {metrics["kid"]["value"]:>9.2f}  x1e3, std '
                 f'{metrics["kid"]["std"]:.2f}')
    score = metrics['inception_score']
    lines.append(f'{"IS":<8} {score["value"]:>9.2f}  higher is better; std {score["std"]:.2f} '
                 f'over 10 splits; the reals\' {score["real"]:.2f}')
    precision, recall = metrics['precision']['value'], metrics['recall']['value']
    lines.append(f'{"P / R":<8} {precision:>4.2f} {recall:>4.2f}  precision / recall, k=3')
  return '\n'.join(lines)


def _floor(record, spec):
  return _bound(record, 'floor', spec)


def _bound(record, name, spec):
  return 'n/a' if record[name] is None else format(record[name], spec)


def _value(record, spec):
  return 'n/a'.rjust(9) if record['value'] is None else format(record['value'], spec)
