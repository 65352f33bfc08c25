"""A variant is a flagfile plus one flag: each shipped flagfile with each override of
benchmarks/variants.py validates and builds its whole state (models, optimizers, schedules).
benchmarks/variants.py trains every variant a few steps (too slow for the suite)."""

import os

import jax
import pytest

from benchmarks import variants
from facegan_jax import config as config_lib
from facegan_jax import state as state_lib
from facegan_jax import validation


@pytest.mark.parametrize('flagfile', variants.FLAGFILES, ids=os.path.basename)
def test_every_flagfile_takes_each_override(flagfile):
  for override in variants.OVERRIDES:
    name, _, value = override.removeprefix('--').partition('=')
    values = config_lib.read_flagfile(flagfile)
    values[name] = type(getattr(config_lib.Config(), name))(value)
    config = config_lib.Config(**values)
    validation.validate(config, 1)
    state = jax.eval_shape(lambda config=config: state_lib.init_state(config))
    assert state.step.shape == ()
