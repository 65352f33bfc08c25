"""The run's configuration: one plain value built from flags, validated before compiling."""

import dataclasses
import math
import os


class UsageError(ValueError):
  """A problem with the flags or the data, reported to the user as one line."""


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on; main.py's flags map one to one onto these fields."""
  mode: str = 'train'
  dataset: str = 'synthetic_faces'
  data_dir: str | None = None
  data_manual_dir: str | None = None
  max_bad_fraction: float = 0.01
  input: str = 'auto'
  model: str = 'dcgan'
  resolution: int = 32
  channels: int = 3
  batch_size: int = 64
  num_steps: int = 2000
  z_dim: int = 100
  conv_dim: int = 32
  g_first_bn: bool = False
  d_dropout: float = 0.3
  conv_impl: str = 'auto'
  precision: str = 'fp32'
  loss: str = 'bce'
  label_smoothing: float = 1.0
  lr_g: float = 2e-4
  lr_d: float = 2e-4
  beta1: float = 0.5
  beta2: float = 0.999
  ema_decay: float = 0.0
  seed: int = 0
  num_devices: int = 0
  coordinator_address: str | None = None
  num_processes: int = 1
  process_id: int = 0
  steps_per_call: int = 1
  log_every: int = 50
  sample_every: int = 500
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  init_checkpoint: str | None = None
  num_samples: int = 64
  eval_samples: int = 2048
  inception_weights: str | None = None
  fid_resize: str = 'pytorch_fid'
  eval_every: int = 0
  best_metric: str = ''
  sample_seed: int = 0

  def to_flags(self):
    """The config as flagfile lines, e.g. `--batch_size=64`."""
    lines = []
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if value is None:
        continue
      lines.append(f'--{field.name}={str(value).lower() if isinstance(value, bool) else value}')
    return '\n'.join(lines) + '\n'


# The presets of the paper-style flagfiles, for benchmarks and tests.
PRESETS = {
    'udacity32': dict(model='dcgan', resolution=32, conv_dim=32, z_dim=100, g_first_bn=False,
                      label_smoothing=0.9, lr_g=2e-4, lr_d=2e-4),
    'dcgan64': dict(model='dcgan', resolution=64, conv_dim=64, z_dim=100, g_first_bn=True),
    'mnist_mlp': dict(model='mlp', resolution=28, channels=1, conv_dim=128, z_dim=100,
                      d_dropout=0.3),
}

CHOICES = dict(mode=('train', 'sample', 'eval'), input=('auto', 'device', 'host'),
               precision=('fp32', 'bf16'),  # models.COMPUTE_DTYPES
               model=('dcgan', 'mlp'), loss=('bce', 'lsgan', 'hinge'),
               fid_resize=('pytorch_fid', 'clean_fid'),  # evaluation/inception.RESIZE_MODES
               # Lower is better for each (evaluation/periodic.py keeps the lowest).
               best_metric=('', 'swd', 'domain_fd', 'attr_w1', 'attr_tv', 'fid', 'kid'),
               # models/layers.py's IMPLS (a test keeps them equal; not imported so that
               # main.py's --help and flag errors need no JAX).
               conv_impl=('auto', 'xla', 'patches', 's2d', 'winograd', 'phase', 'col2im',
                          'winograd_phase'))


def check_steps_per_call(config, steps_per_epoch, host_input):
  """The most steps one compiled call may run in this run: --steps_per_call, at most an epoch
  (a call draws from this epoch's order and the next's); UsageError when it cannot apply."""
  k = config.steps_per_call
  if k > 1 and host_input:
    raise UsageError(f'--steps_per_call={k} draws batches on the devices, but this dataset is '
                     'read from the host (--input); use --steps_per_call=1')
  return min(k, steps_per_epoch)


def call_length(config, step, steps_per_call):
  """Steps of the call starting at `step`: `steps_per_call`, ending at the next step that
  logs, samples, evaluates, checkpoints or ends the run."""
  ends = [config.num_steps] + [(step // every + 1) * every for every in (
      config.log_every, config.sample_every, config.checkpoint_every, config.eval_every) if every]
  return min(steps_per_call, min(ends) - step)


def preset(name, **overrides):
  return Config(**{**PRESETS[name], **overrides})


def validate(config, num_devices=None):
  """Raises UsageError with a one-line message for the first problem found.

  main.py calls it before JAX starts (so a bad flag fails at once) and the training loop again
  with the number of devices.
  """
  for name, allowed in CHOICES.items():
    if getattr(config, name) not in allowed:
      raise UsageError(f'--{name}={getattr(config, name)} is not one of {", ".join(allowed)}')
  if config.batch_size < 1 or (num_devices and config.batch_size % num_devices):
    raise UsageError(f'--batch_size={config.batch_size} is not divisible by the number of '
                     f'devices ({num_devices})')
  if config.model == 'dcgan':
    base = 7 if config.resolution % 7 == 0 else 4
    n = math.log2(config.resolution / base)
    if n < 1 or n != int(n):
      raise UsageError(f'--resolution={config.resolution}: dcgan needs 4*2^n or 7*2^n '
                       '(e.g. 28, 32, 64, 128)')
  if config.channels not in (1, 3):
    raise UsageError(f'--channels={config.channels}: must be 1 or 3')
  if not 0 < config.label_smoothing <= 1:
    raise UsageError(f'--label_smoothing={config.label_smoothing}: must be in (0, 1]')
  if config.label_smoothing != 1 and config.loss != 'bce':
    raise UsageError(f'--label_smoothing applies to --loss=bce only, not {config.loss}')
  if not 0 <= config.ema_decay < 1:
    raise UsageError(f'--ema_decay={config.ema_decay}: must be in [0, 1)')
  if not 0 <= config.max_bad_fraction <= 1:
    raise UsageError(f'--max_bad_fraction={config.max_bad_fraction}: must be in [0, 1]')
  if not 0 <= config.d_dropout < 1:
    raise UsageError(f'--d_dropout={config.d_dropout}: must be in [0, 1)')
  for name in ('num_steps', 'log_every', 'sample_every', 'checkpoint_every', 'z_dim',
               'conv_dim', 'keep_checkpoints', 'num_samples', 'eval_samples'):
    if getattr(config, name) < 1:
      raise UsageError(f'--{name}={getattr(config, name)}: must be at least 1')
  if config.coordinator_address and not 0 <= config.process_id < config.num_processes:
    raise UsageError(f'--process_id={config.process_id} is not in [0, --num_processes='
                     f'{config.num_processes})')
  if config.steps_per_call < 1:
    raise UsageError(f'--steps_per_call={config.steps_per_call}: must be at least 1')
  if config.inception_weights and not os.path.isfile(config.inception_weights):
    raise UsageError(f'--inception_weights={config.inception_weights}: no such file')
  if config.eval_every < 0:
    raise UsageError(f'--eval_every={config.eval_every}: must be 0 (off) or positive')
  best = config.best_metric
  if best and not config.eval_every:
    raise UsageError(f'--best_metric={best} needs --eval_every')
  if best in ('domain_fd', 'attr_w1', 'attr_tv') and not config.dataset.startswith(
      'synthetic_faces'):
    raise UsageError(f'--best_metric={best} is defined for synthetic_faces only')
  if best in ('fid', 'kid') and not config.inception_weights:
    raise UsageError(f'--best_metric={best} needs --inception_weights')
  for name in ('lr_g', 'lr_d'):
    if not getattr(config, name) > 0:
      raise UsageError(f'--{name}={getattr(config, name)}: must be positive')
