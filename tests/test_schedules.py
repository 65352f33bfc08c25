"""Scheduled values (schedules.py): the shapes, Adam's learning rate and β2 by them, and a
run with every scheduled value resumed bit for bit."""

import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from facegan_jax import config as config_lib, resume, schedules, state as state_lib
from facegan_jax import validation
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.data import pipeline
from facegan_jax.errors import UsageError
from facegan_jax.schedules import Schedule
from tests.conftest import ROOT
from tests.test_step import random_images, start, step_lib, tiny_config


def test_the_shapes():
  steps = jnp.arange(12)
  np.testing.assert_array_equal(
      Schedule(2.0, 'linear', 0.5, 2, 8)(steps),
      optax.linear_schedule(2.0, 0.5, 6, 2)(steps))
  cosine = np.asarray(Schedule(2.0, 'cosine', 0.5, 2, 8)(steps))
  np.testing.assert_allclose(cosine[:3], 2.0)  # held until `begin`
  np.testing.assert_allclose(cosine[8:], 0.5)  # `final` from `end` on
  np.testing.assert_allclose(cosine[5], 1.25, rtol=1e-6)  # half way: the mean
  np.testing.assert_allclose(cosine[3], 0.5 + 1.5 * (1 + np.cos(np.pi / 6)) / 2, rtol=1e-6)
  assert np.all(np.diff(cosine) <= 0)
  rising = np.asarray(Schedule(0.9, 'cosine', 0.99, 0, 10)(steps))  # as R3GAN's β2
  assert rising[0] == pytest.approx(0.9) and rising[10] == pytest.approx(0.99)
  assert Schedule(3.0)(7) == 3.0 and isinstance(Schedule(3.0)(7), float)


def test_cosine_lr_decay_and_a_scheduled_beta2_drive_adam():
  """--lr_decay=cosine: a constant gradient's Adam step is -lr(step). --schedule=beta2:...:
  optax.inject_hyperparams holds β2's value of each step."""
  config = config_lib.Config(lr_g=1e-3, lr_decay='cosine', lr_decay_start=2, num_steps=6)
  adam = state_lib.Adam.of(config, 'g')
  assert adam.lr == Schedule(1e-3, 'cosine', 0.0, 2, 6) and adam.beta2 == Schedule(0.999)
  params = jnp.zeros(3)

  def updates(tx, hyperparameter=None):
    opt, rates, values = tx.init(params), [], []
    for _ in range(7):
      step, opt = tx.update(jnp.ones(3), opt, params)
      rates.append(-float(step[0]) / 1e-3)
      if hyperparameter:  # the value this update used
        values.append(float(opt.hyperparams[hyperparameter]))
    return rates, values

  rates, _ = updates(adam.transformation())
  np.testing.assert_allclose(rates, [1, 1, 1, (1 + np.cos(np.pi / 4)) / 2, 0.5,
                                     (1 + np.cos(3 * np.pi / 4)) / 2, 0], atol=1e-4)
  adam = state_lib.Adam.of(config_lib.Config(num_steps=6, schedule='beta2:cosine:0.9'), 'g')
  assert adam.beta2 == Schedule(0.999, 'cosine', 0.9, 0, 6)
  _, beta2s = updates(adam.transformation(), 'b2')
  np.testing.assert_allclose(beta2s, [float(adam.beta2(t)) for t in range(7)], rtol=1e-6)
  assert beta2s[0] == pytest.approx(0.999) and beta2s[6] == pytest.approx(0.9)


SCHEDULED = dict(r1_gamma=1.0, ema_decay=0.9, beta2_d=0.9, num_steps=4,
                 schedule='lr_g:cosine:1e-5,lr_d:linear:1e-4,beta2_d:linear:0.99,'
                          'r1_gamma:cosine:0.1,ema_decay:linear:0.5')


def test_a_run_with_every_value_scheduled_resumes_bit_for_bit(tmp_path):
  """4 straight steps against 2, a real checkpoint, its restore and 2 more (the schedules are
  functions of the step the state carries); and the schedules change the run."""
  config = tiny_config(num_devices=1, **SCHEDULED)
  validation.validate(config)
  mesh, fresh = start(config)
  step_fn = step_lib.make_train_fn(config, mesh)
  inputs = pipeline.Input(config, random_images(40), mesh, state_lib.data_key(fresh), 0)

  def train(state, first, last):
    for step in range(first, last):
      state, _ = step_fn(state, inputs(step), 1)
    return state

  straight = jax.device_get(train(fresh, 0, 4))
  saving = Checkpoints(tmp_path, config=config)
  saving.save(train(start(config)[1], 0, 2), 2)
  saving.wait()
  saving.close()
  restored, _ = resume.restore_or_init(config, Checkpoints(tmp_path, config=config), mesh)
  resumed = jax.device_get(train(restored, 2, 4))
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
    np.testing.assert_array_equal(a, b)
  constant = tiny_config(num_devices=1, **{**SCHEDULED, 'schedule': ''})
  mesh, state = start(constant)
  step_fn = step_lib.make_train_fn(constant, mesh)
  for step in range(4):
    state, _ = step_fn(state, inputs(step), 1)
  for a, b in zip(jax.tree.leaves(jax.device_get(state.ema_params)),
                  jax.tree.leaves(straight.ema_params), strict=True):
    assert not np.array_equal(a, b)


@pytest.mark.parametrize('schedule, message', [
    ('lr_g:cosine', '--schedule=lr_g:cosine: lr_g:cosine has no number for its final value'),
    ('lr_g:step:0', '--schedule=lr_g:step:0: each item is NAME:KIND:FINAL'),
    ('z_dim:linear:1', '--schedule=z_dim:linear:1: each item is NAME:KIND:FINAL'),
    ('lr_g:linear:0,lr_g:cosine:0', '--schedule=lr_g:linear:0,lr_g:cosine:0: each item'),
    ('beta2:cosine:1.5', '--schedule: beta2 cannot end at 1.5 (must be in [0, 1))'),
    ('lr_g:linear:nan', '--schedule: lr_g cannot end at nan (must be in [0, inf))'),
    ('lr_g:linear:0:1:2', '--schedule=lr_g:linear:0:1:2: each item is NAME:KIND:FINAL'),
    ('lr_g:linear:0:0', '--schedule=lr_g:linear:0:0: lr_g:linear:0:0 ends at step 0, not a'),
    ('r1_gamma:cosine:1', '--schedule moves r1_gamma, which is off (--r1_gamma=0)'),
    ('beta2_d:cosine:0.99', '--schedule moves beta2_d: give its start, --beta2_d'),
])
def test_bad_schedules_are_one_line_errors(schedule, message):
  with pytest.raises(UsageError, match='^' + re.escape(message)):
    validation.validate(config_lib.Config(schedule=schedule))


def test_a_learning_rate_has_one_schedule():
  with pytest.raises(UsageError, match='^--schedule moves a learning rate that --lr_decay'):
    validation.validate(config_lib.Config(lr_decay='linear', schedule='lr_d:cosine:0'))
  assert schedules.lr(config_lib.Config(d_steps=3, num_steps=10, schedule='lr_d:linear:0'),
                      'd') == Schedule(2e-4, 'linear', 0.0, 0, 30)  # in D's updates


def test_the_decay_window_counts_from_the_end_so_a_shorter_run_is_a_valid_run():
  """The SN-DCGAN quickstart's flagfile decays over its last 1,500 steps: with --num_steps=100
  over the whole run (and that variant validates, as do losses its label smoothing does not
  apply to), at 5,000 from step 3,500 as it always did; an absolute --lr_decay_start above 0
  places the decay itself."""
  values = config_lib.read_flagfile(os.path.join(ROOT, 'experiments',
                                                 'sn_dcgan_quickstart.flags'))
  quickstart = config_lib.Config(**values)
  assert schedules.lr(quickstart, 'g') == Schedule(1e-3, 'linear', 0.0, 3500, 5000)
  for overrides in (dict(num_steps=100), dict(loss='hinge'), dict(num_steps=40, loss='lsgan')):
    validation.validate(dataclasses.replace(quickstart, **overrides))
  assert schedules.lr(dataclasses.replace(quickstart, num_steps=100), 'd') == Schedule(
      4e-3, 'linear', 0.0, 0, 100)
  assert schedules.decay_start(dataclasses.replace(quickstart, lr_decay_start=2500)) == 2500
  with pytest.raises(UsageError, match='^--lr_decay_steps=0: must be at least 1$'):
    validation.validate(dataclasses.replace(quickstart, lr_decay_steps=0))

