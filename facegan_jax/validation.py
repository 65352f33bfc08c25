"""The checks of a run's Config: each problem a one-line UsageError, found before JAX compiles
anything (main.py) and again by the training loop with the number of devices. The family
(--model) and objective (--loss) check their own settings."""

import os

from facegan_jax import augment, models, objectives
from facegan_jax.config import (CLASS_NET_METRICS, RISE_FROM_ZERO, SCHEDULED, Config, choices,
                                is_synthetic_faces, parse_schedule)
from facegan_jax.data.synthetic_faces import CATEGORIES
from facegan_jax.errors import UsageError


def _validate_condition(config):
  condition, dataset = config.condition, config.dataset
  if condition not in ('', 'label', *CATEGORIES):
    raise UsageError(f'--condition={condition} is not one of label, {", ".join(CATEGORIES)} '
                     '(or empty: unconditional)')
  if condition in CATEGORIES and not is_synthetic_faces(dataset):
    raise UsageError(f'--condition={condition} is an attribute of synthetic_faces, not of '
                     f'--dataset={dataset}; use --condition=label for a labelled dataset')
  if condition == 'label' and dataset.partition(':')[0] not in ('folder', 'tfds'):
    raise UsageError(f'--condition=label needs a labelled dataset (a folder with class '
                     f'subfolders, or a TFDS dataset with a label feature); {dataset} has none'
                     + (f' (its attributes: --condition={"|".join(CATEGORIES)})'
                        if is_synthetic_faces(dataset) else ''))


def validate(config, num_devices=None):
  """Raises UsageError with a one-line message for the first problem found.

  main.py calls it before JAX compiles anything (so a bad flag fails at once) and the training
  loop again with the number of devices. The family (--model) and objective (--loss) check
  their own settings.
  """
  for name, allowed in choices().items():
    if getattr(config, name) not in allowed:
      raise UsageError(f'--{name}={getattr(config, name)} is not one of {", ".join(allowed)}')
  for name in ('batch_size', 'resolution'):
    if getattr(config, name) < 1:
      raise UsageError(f'--{name}={getattr(config, name)}: must be at least 1')
  if num_devices and config.batch_size % num_devices:
    raise UsageError(f'--batch_size={config.batch_size} is not divisible by the number of '
                     f'devices ({num_devices})')
  if config.channels not in (1, 3):
    raise UsageError(f'--channels={config.channels}: must be 1 or 3')
  models.validate(config, num_devices)
  objectives.get(config.loss).validate(config)
  augment.validate(config, Config())
  if config.d_steps < 1:
    raise UsageError(f'--d_steps={config.d_steps}: must be at least 1')
  for name in ('beta1', 'beta2', 'beta1_d', 'beta2_d'):
    value = getattr(config, name)
    if value is not None and not 0 <= value < 1:
      raise UsageError(f'--{name}={value}: must be in [0, 1)')
  if not 0 <= config.ema_decay < 1:
    raise UsageError(f'--ema_decay={config.ema_decay}: must be in [0, 1)')
  if config.ema_kimg < 0:
    raise UsageError(f'--ema_kimg={config.ema_kimg}: must be 0 (off) or positive')
  if config.ema_decay and (config.ema_kimg or 'ema_kimg' in parse_schedule(config.schedule)):
    raise UsageError(f'--ema_decay={config.ema_decay} and --ema_kimg both set the EMA\'s decay: '
                     'use one')
  if not 0 <= config.d_dropout < 1:
    raise UsageError(f'--d_dropout={config.d_dropout}: must be in [0, 1)')
  if config.max_images < 0:
    raise UsageError(f'--max_images={config.max_images}: must be 0 (all) or positive')
  if not 0 <= config.max_bad_fraction <= 1:
    raise UsageError(f'--max_bad_fraction={config.max_bad_fraction}: must be in [0, 1]')
  for name in ('num_steps', 'log_every', 'sample_every', 'checkpoint_every', 'z_dim',
               'conv_dim', 'hidden_dim', 'keep_checkpoints', 'num_samples', 'eval_samples',
               'interpolate', 'project_count', 'project_steps', 'project_starts'):
    if getattr(config, name) < 1:
      raise UsageError(f'--{name}={getattr(config, name)}: must be at least 1')
  for name in ('project_lr', 'project_perceptual'):
    if not 0 <= getattr(config, name) < float('inf'):
      raise UsageError(f'--{name}={getattr(config, name)}: must be finite and at least 0')
  for name in ('seed', 'sample_seed'):  # keys are made from seed + 1, NumPy's rngs need >= 0
    if not 0 <= getattr(config, name) < 2**63 - 1:
      raise UsageError(f'--{name}={getattr(config, name)}: must be in [0, 2**63 - 1)')
  if config.eval_samples < 4:
    raise UsageError(f'--eval_samples={config.eval_samples}: must be at least 4 (the Fréchet '
                     'distances need a covariance, precision and recall 3 nearest neighbours)')
  if config.coordinator_address and not 0 <= config.process_id < config.num_processes:
    raise UsageError(f'--process_id={config.process_id} is not in [0, --num_processes='
                     f'{config.num_processes})')
  if config.steps_per_call < 1:
    raise UsageError(f'--steps_per_call={config.steps_per_call}: must be at least 1')
  if config.inception_weights and not os.path.isfile(config.inception_weights):
    raise UsageError(f'--inception_weights={config.inception_weights}: no such file')
  if config.eval_every < 0:
    raise UsageError(f'--eval_every={config.eval_every}: must be 0 (off) or positive')
  _validate_condition(config)
  if config.sample_class != -1 and not config.condition:
    raise UsageError(f'--sample_class={config.sample_class} needs --condition')
  if config.num_classes and not -1 <= config.sample_class < config.num_classes:
    raise UsageError(f'--sample_class={config.sample_class}: must be -1 (every class) or in '
                     f'[0, {config.num_classes}) (--condition={config.condition})')
  best = config.best_metric
  if best and not config.eval_every:
    raise UsageError(f'--best_metric={best} needs --eval_every')
  if best in ('domain_fd', 'attr_w1', 'attr_tv') and not is_synthetic_faces(config.dataset):
    raise UsageError(f'--best_metric={best} is defined for synthetic_faces only')
  if best in ('class_accuracy', 'intra_fd', 'cas') and not config.condition:
    raise UsageError(f'--best_metric={best} measures a class-conditional G: needs --condition')
  if best in CLASS_NET_METRICS and config.dataset.partition(':')[0] not in ('folder', 'tfds'):
    raise UsageError(f'--best_metric={best} needs a labelled dataset (a folder with class '
                     f'subfolders, or a TFDS dataset with a label feature); {config.dataset} '
                     'has no labels')
  if best in ('fid', 'kid') and not config.inception_weights:
    raise UsageError(f'--best_metric={best} needs --inception_weights')
  for name in ('lr_g', 'lr_d'):
    if not getattr(config, name) > 0:
      raise UsageError(f'--{name}={getattr(config, name)}: must be positive')
  if config.lr_decay_steps is not None and config.lr_decay_steps < 1:
    raise UsageError(f'--lr_decay_steps={config.lr_decay_steps}: must be at least 1')
  if config.lr_decay != 'none' and not 0 <= config.lr_decay_start < config.num_steps:
    raise UsageError(f'--lr_decay_start={config.lr_decay_start}: must be in [0, --num_steps='
                     f'{config.num_steps})')
  scheduled = parse_schedule(config.schedule)
  if config.lr_decay != 'none' and {'lr_g', 'lr_d'} & set(scheduled):
    raise UsageError('--schedule moves a learning rate that --lr_decay decays already: use one')
  for name, (_, final, _) in scheduled.items():
    if not 0 <= final < SCHEDULED[name]:
      raise UsageError(f'--schedule: {name} cannot end at {final} (must be in [0, '
                       f'{SCHEDULED[name]:g}))')
    if getattr(config, name) is None:
      raise UsageError(f'--schedule moves {name}: give its start, --{name}')
    if not getattr(config, name) and name not in RISE_FROM_ZERO:
      raise UsageError(f'--schedule moves {name}, which is off (--{name}=0)')
