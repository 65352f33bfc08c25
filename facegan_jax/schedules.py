"""Every value that changes over a run, as a function of the training step.

A schedule is pure in the step the train state carries, so a resumed run takes the same
values at the same steps as the run that was never interrupted. The values that can change
are config.SCHEDULED: the learning rates (--lr_decay, or --schedule), Adam's β2, the penalty
weights and the EMA decay (--schedule). A new one is a name there, read where it is used
with `of(config, name)(step)`.
"""

import dataclasses
import math

import jax.numpy as jnp
import optax

from facegan_jax import config as config_lib


@dataclasses.dataclass(frozen=True)
class Schedule:
  """`start` until step `begin`, then `kind` ('linear' or 'cosine') to `final` at step `end`,
  then `final`; constant at `start` when `kind` is None.

  Frozen and hashable, so the train state can hold one as static data; a constant one gives
  back `start` itself, a Python float, so a run without schedules computes as it always did.
  """
  start: float
  kind: str | None = None
  final: float = 0.0
  begin: int = 0
  end: int = 1

  @property
  def constant(self):
    return self.kind is None

  def __call__(self, step):
    if self.kind is None:
      return self.start
    if self.kind == 'linear':  # optax's, which the linear learning-rate decay always used
      return optax.linear_schedule(self.start, self.final, self.end - self.begin,
                                   self.begin)(step)
    progress = jnp.clip((step - self.begin) / (self.end - self.begin), 0.0, 1.0)
    return self.final + (self.start - self.final) * 0.5 * (1 + jnp.cos(math.pi * progress))


def of(config, name, start=None, updates_per_step=1):
  """The Schedule of config field `name` (config.SCHEDULED): from `start` (default: the
  field's value) to --schedule's final value over the run (or by its step), or constant.
  Bounds count `updates_per_step` per training step (D's optimizer counts its --d_steps
  updates)."""
  start = getattr(config, name) if start is None else start
  scheduled = config_lib.parse_schedule(config.schedule).get(name)
  if scheduled is None:
    return Schedule(start)
  kind, final, end = scheduled
  return Schedule(start, kind, final, 0, updates_per_step * (end or config.num_steps))


def lr(config, network):
  """The learning rate of `network` ('g' or 'd') by its optimizer's update count: --lr_decay
  to 0 at the end over its last --lr_decay_steps (the whole run if shorter) or from
  --lr_decay_start (as SNGAN and Mimicry decay it), or --schedule's."""
  name, updates = ('lr_d', config.d_steps) if network == 'd' else ('lr_g', 1)
  if config.lr_decay == 'none':
    return of(config, name, updates_per_step=updates)
  return Schedule(getattr(config, name), config.lr_decay, 0.0,
                  updates * decay_start(config), updates * config.num_steps)


def decay_start(config):
  """The training step --lr_decay starts at: --lr_decay_start where above 0, else
  --lr_decay_steps before the end (at 0 when the run is shorter), else 0."""
  if config.lr_decay_start or config.lr_decay_steps is None:
    return config.lr_decay_start
  return max(0, config.num_steps - config.lr_decay_steps)


def beta2(config, network):
  """Adam's β2 of `network`: D's is --beta2_d's schedule where that flag is given, else the
  networks' shared --beta2's."""
  if network == 'd' and config.beta2_d is not None:
    return of(config, 'beta2_d', updates_per_step=config.d_steps)
  return of(config, 'beta2', updates_per_step=config.d_steps if network == 'd' else 1)


def _by_half_life(config):
  return bool(config.ema_kimg or 'ema_kimg' in config_lib.parse_schedule(config.schedule))


def uses_ema(config):
  """Whether the run keeps an EMA generator (--ema_decay, or --ema_kimg or its schedule)."""
  return bool(config.ema_decay) or _by_half_life(config)


def ema_decay(config, step):
  """The EMA generator's decay at `step`. By --ema_kimg's schedule, StyleGAN2's and R3GAN's
  half-life in images: 0.5^(batch / (1000 ema_kimg)), 0 (no averaging) at a half-life of 0.
  Else --ema_decay's schedule, warmed up as TF's ExponentialMovingAverage, min(decay,
  (1 + t) / (10 + t)), so early samples are not stuck near the initialisation."""
  if _by_half_life(config):
    images = 1000.0 * of(config, 'ema_kimg')(step)
    return jnp.where(images > 0, 0.5 ** (config.batch_size / jnp.maximum(images, 1e-8)), 0.0)
  return jnp.minimum(of(config, 'ema_decay')(step), (1.0 + step) / (10.0 + step))
