"""The config: presets from the flagfiles, the flag help on every field, one-line errors."""

import dataclasses
import re

import pytest

from facegan_jax import config as config_lib
from facegan_jax import presets
from facegan_jax import objectives
from facegan_jax import validation
from facegan_jax.errors import UsageError
from tests.conftest import TINY, main_config


def test_presets_are_their_flagfiles_model_settings():
  udacity = presets.preset('udacity32')
  assert (udacity.model, udacity.resolution, udacity.conv_dim, udacity.g_first_bn,
          udacity.label_smoothing) == ('dcgan', 32, 32, False, 0.9)
  digits = presets.preset('mnist_mlp', batch_size=7)
  assert (digits.model, digits.channels, digits.hidden_dim, digits.batch_size) == (
      'mlp', 1, 128, 7)
  assert presets.preset('dcgan64').g_first_bn is True


def test_read_flagfile_types_its_values(tmp_path):
  path = tmp_path / 'run.flags'
  path.write_text('# a comment\n--resolution=64\n--g_first_bn=true\n--lr_g=0.001\n'
                  '--dataset=tfds:mnist\n--workdir=/tmp/run\n--not_a_field=1\n')
  assert config_lib.read_flagfile(str(path)) == dict(
      resolution=64, g_first_bn=True, lr_g=0.001, dataset='tfds:mnist')


def test_every_field_has_flag_help():
  for field in dataclasses.fields(config_lib.Config):
    assert field.metadata['help'].strip(), field.name


@pytest.mark.parametrize('resolution', [48, 2])
def test_bad_dcgan_resolutions_are_one_line_errors(resolution):
  with pytest.raises(UsageError, match=f'^--resolution={resolution}: dcgan needs 4'):
    validation.validate(config_lib.Config(resolution=resolution))


@pytest.mark.parametrize('model', ['dcgan', 'mlp'])
@pytest.mark.parametrize('resolution', [0, -4])
def test_resolutions_below_one_are_one_line_errors(model, resolution):
  with pytest.raises(UsageError, match=f'^--resolution={resolution}: must be at least 1$'):
    validation.validate(config_lib.Config(model=model, resolution=resolution))


def test_optional_float_flags_round_trip_through_a_flagfile(tmp_path):
  config = config_lib.Config(beta1_d=0.0)
  path = tmp_path / 'flags.txt'
  path.write_text(config.to_flags() + config_lib.flag('beta2_d', None) + '\n')
  values = config_lib.read_flagfile(str(path))
  assert values['beta1_d'] == 0.0 and values['beta2_d'] is None
  assert config_lib.flag_type(float | None) is float and config_lib.flag_type(int) is int


@pytest.mark.parametrize('overrides, message', [
    (dict(gp_weight=10.0, loss='hinge'), '--gp_weight is the WGAN-GP penalty: it needs '
     '--loss=wgan, not hinge'),
    (dict(gp_weight=-1.0, loss='wgan'), '--gp_weight=-1.0: must be 0 (off) or positive'),
    (dict(spectral_norm='g'), '--spectral_norm=g is not one of none, d, gd'),
    (dict(augment='diffaug', diffaug_policy='color,flip'), '--diffaug_policy=color,flip: must '
     'list some of color,translation,cutout, each once'),
    (dict(augment='diffaug', diffaug_policy='color,color'), '--diffaug_policy=color,color'),
    (dict(diffaug_policy='color'), '--diffaug_policy needs --augment=diffaug'),
    (dict(ada_pipeline='blit'), '--ada_pipeline needs --augment=ada'),
    (dict(augment='ada', ada_pipeline='bgcf'), '--ada_pipeline=bgcf is not one of blit, geom'),
    (dict(augment='ada', ada_target=1.0), '--ada_target=1.0: must be in (0, 1)'),
    (dict(augment='ada', ada_kimg=0.0), '--ada_kimg=0.0: must be positive'),
    (dict(d_steps=0), '--d_steps=0: must be at least 1'),
    (dict(max_images=-1), '--max_images=-1: must be 0 (all) or positive'),
    (dict(model='mlp', mbstd_group=4), '--mbstd_group=4: needs --model=dcgan and a group of at '
     'least 2'),
    (dict(mbstd_group=1), '--mbstd_group=1: needs --model=dcgan'),
    (dict(batch_size=12, mbstd_group=4, num_devices=2), '--mbstd_group=4 does not divide the '
     'batch of each device (12 over 2)'),
])
def test_regulariser_misuse_is_a_one_line_error(overrides, message):
  with pytest.raises(UsageError, match='^' + re.escape(message)):
    validation.validate(config_lib.Config(**overrides), overrides.get('num_devices'))


@pytest.mark.parametrize('name', ['seed', 'sample_seed'])
@pytest.mark.parametrize('value', [2**63, 2**70, -2**63 - 1, -1])
def test_seeds_outside_the_key_range_are_one_line_errors(name, value):
  with pytest.raises(UsageError, match=re.escape(f'--{name}={value}: must be in [0, 2**63 - 1)')):
    validation.validate(config_lib.Config(**{name: value}))
  validation.validate(config_lib.Config(**{name: 2**63 - 2}))


@pytest.mark.parametrize('count', [1, 3])
def test_too_few_eval_samples_for_a_covariance_is_a_one_line_error(count):
  with pytest.raises(UsageError, match=f'^--eval_samples={count}: must be at least 4'):
    validation.validate(config_lib.Config(eval_samples=count))
  validation.validate(config_lib.Config(eval_samples=4))


@pytest.mark.parametrize('dataset', ['synthetic_faces', 'synthetic_faces/small', 'celeba_small'])
def test_class_metrics_on_an_unlabelled_dataset_are_refused_before_anything_trains(dataset):
  with pytest.raises(UsageError, match=f'^--best_metric=class_fd needs a labelled dataset .*; '
                                       f'{dataset} has no labels$'):
    validation.validate(config_lib.Config(dataset=dataset, eval_every=10,
                                          best_metric='class_fd'))




# main.py's flag errors that validation finds, before anything compiles: the flags parsed by
# main.py's own flags on TINY's settings, as main.py's runs had them. main.py prints each as
# one `error:` line (its path end to end: test_main.py's test_bad_flags_give_one_line_errors).
@pytest.mark.parametrize('flags, message', [
    ('--loss=wasserstein', '--loss=wasserstein is not one of '
     + ', '.join(objectives.OBJECTIVES)),  # every objective registered
    ('--gp_weight=10', '--gp_weight is the WGAN-GP penalty: it needs --loss=wgan, not bce'),
    ('--resolution=48', '--resolution=48: dcgan needs 4*2^n or 7*2^n (e.g. 28, 32, 64, 128)'),
    ('--best_metric=swd', '--best_metric=swd needs --eval_every'),
    ('--best_metric=fid --eval_every=5', '--best_metric=fid needs --inception_weights'),
    ('--best_metric=domain_fd --eval_every=5 --dataset=celeba_small',
     '--best_metric=domain_fd is defined for synthetic_faces only'),
    ('--lr_decay=linear --lr_decay_start=30 --num_steps=30',
     '--lr_decay_start=30: must be in [0, --num_steps=30)'),
    ('--beta2_d=1', '--beta2_d=1.0: must be in [0, 1)'),
    ('--r1_every=16', '--r1_every=16 needs --r1_gamma'),
    ('--resolution=0', '--resolution=0: must be at least 1'),
    ('--model=mlp --resolution=-28', '--resolution=-28: must be at least 1'),
    ('--batch_size=0', '--batch_size=0: must be at least 1'),
    ('--mode=eval --inception_weights=/no/such.pth',
     '--inception_weights=/no/such.pth: no such file'),
])
def test_main_py_flag_errors_are_found_by_validation(flags, message):
  config, _ = main_config(*TINY, '--workdir=unused', *flags.split())
  with pytest.raises(UsageError, match='^' + re.escape(message) + '$'):
    validation.validate(config)
