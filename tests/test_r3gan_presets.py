"""R3GAN's presets: their networks at each resolution, and the schedules they use (windows
that end before the run does, the EMA's half-life in images, --ema_kimg, and a set, scheduled
augmentation probability, --augment_p)."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from facegan_jax import config as config_lib, resume, schedules, state as state_lib
from facegan_jax import step as step_lib
from facegan_jax import validation
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.data import pipeline
from facegan_jax.errors import UsageError
from facegan_jax.models import r3gan
from tests.test_step import random_images, start, tiny_config


def test_a_window_ends_the_schedule_at_its_step_then_holds():
  config = config_lib.Config(num_steps=100, r1_gamma=2.0, schedule='r1_gamma:cosine:0.2:40')
  gamma = schedules.of(config, 'r1_gamma')
  assert float(gamma(0)) == 2.0
  np.testing.assert_allclose(float(gamma(20)), 0.2 + 1.8 * 0.5, rtol=1e-6)  # half-way
  assert float(gamma(40)) == pytest.approx(0.2) and float(gamma(90)) == pytest.approx(0.2)
  assert config_lib.parse_schedule('beta2:linear:0.99') == {'beta2': ('linear', 0.99, None)}


@pytest.mark.parametrize('flags, message', [
    (dict(schedule='r1_gamma:cosine:0.2:x'), 'not a positive integer'),
    (dict(schedule='r1_gamma:cosine:0.2:10:3'), 'NAME:KIND:FINAL[:STEPS]'),
    (dict(ema_decay=0.999, ema_kimg=10.0), 'use one'),
    (dict(ema_decay=0.999, schedule='ema_kimg:cosine:10'), 'use one'),
    (dict(ema_kimg=-1.0), 'ema_kimg'),
    (dict(augment_p=0.3), 'needs --augment=ada'),
    (dict(augment='ada', augment_p=1.5), 'must be in [0, 1]'),
])
def test_bad_schedules_are_one_line_errors(flags, message):
  with pytest.raises(UsageError, match=message.replace('[', r'\[').replace(']', r'\]')):
    validation.validate(config_lib.Config(**flags))


def test_values_that_rise_from_zero_may_start_at_zero():
  validation.validate(config_lib.Config(augment='ada', augment_p=0.0, ema_kimg=0.0,
                                        schedule='augment_p:cosine:0.5,ema_kimg:cosine:5'))
  with pytest.raises(UsageError, match='off'):
    validation.validate(config_lib.Config(r1_gamma=0.0, schedule='r1_gamma:cosine:0.2'))


def test_ema_half_life_and_set_augmentation_probability_in_the_step(tmp_path):
  """--ema_kimg from 0: the EMA is G after the first step, then each step averages with
  decay 0.5^(batch / (1000 kimg)); --augment_p's schedule is the p every step uses; a resume
  mid-way is the straight run."""
  config = tiny_config(num_devices=1, num_steps=4, augment='ada', augment_p=0.0, ema_kimg=0.0,
                       ada_pipeline='blit',
                       schedule='augment_p:linear:0.6:3,ema_kimg:linear:0.03:3')
  validation.validate(config)
  assert schedules.uses_ema(config)
  mesh, state = start(config)
  step_fn = step_lib.make_train_fn(config, mesh)
  inputs = pipeline.Input(config, random_images(40), mesh, state_lib.data_key(state), 0)
  for step in range(4):
    before = jax.device_get(state.ema_params)
    state, metrics = step_fn(state, inputs(step), 1)
    np.testing.assert_allclose(metrics['ada_p'], 0.2 * min(step, 3), rtol=1e-6)
    kimg = 0.01 * min(step, 3)
    decay = 0.5 ** (config.batch_size / (1000 * kimg)) if kimg else 0.0
    expected = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, before,
                            jax.device_get(state.g_params))
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.device_get(state.ema_params))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert 0 < decay < 1
  assert not schedules.uses_ema(dataclasses.replace(config, ema_kimg=0.0, schedule=''))
  # Mid-way through both schedules, a real checkpoint's restore continues the run bit for bit.
  saving = Checkpoints(tmp_path, config=config)
  resumed = start(config)[1]
  for step in range(2):
    resumed, _ = step_fn(resumed, inputs(step), 1)
  saving.save(resumed, 2)
  saving.wait()
  saving.close()
  resumed, _ = resume.restore_or_init(config, Checkpoints(tmp_path, config=config), mesh)
  for step in range(2, 4):
    resumed, _ = step_fn(resumed, inputs(step), 1)
  for a, b in zip(jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(jax.device_get(resumed)),
                  strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('resolution, widths, groups', [
    (64, [768] * 4 + [384], [96] * 4 + [48]),  # the paper's FFHQ-64
    (256, [768] * 4 + [384, 192, 96], [96] * 4 + [48, 24, 12]),  # its FFHQ-256
    (16, [768] * 3, [96] * 3),
])
def test_the_ffhq64_preset_at_other_resolutions_is_the_papers_networks(resolution, widths,
                                                                      groups):
  values = config_lib.read_flagfile(os.path.join(config_lib.ROOT, 'experiments', 'r3gan_ffhq64.flags'))
  config = config_lib.Config(**{**values, 'resolution': resolution})
  validation.validate(config, 1)
  assert r3gan.stages(config) == (widths, [2] * len(widths), groups)


def test_resolutions_r3gan_cannot_draw_are_one_line_errors():
  with pytest.raises(UsageError, match='r3gan draws 8, 16, 32, 64'):
    validation.validate(config_lib.Config(model='r3gan', loss='rpgan', resolution=28))
