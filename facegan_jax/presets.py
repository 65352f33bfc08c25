"""The models of the paper-style experiments, for benchmarks and tests: each preset is its
flagfile's model and optimiser settings (the flagfile is their one home)."""

import os

from facegan_jax.config import ROOT, Config, read_flagfile

PRESETS = dict(udacity32='celeba32_udacity.flags', dcgan64='celeba64_dcgan.flags',
               mnist_mlp='mnist_mlp.flags', sngan32='cifar10_sngan.flags',
               sngan64='celeba64_sngan.flags')
PRESET_FIELDS = ('model', 'resolution', 'channels', 'conv_dim', 'widths', 'blocks', 'groups',
                 'hidden_dim', 'z_dim', 'g_first_bn',
                 'd_dropout', 'label_smoothing', 'lr_g', 'lr_d', 'beta1', 'beta2', 'beta1_d',
                 'beta2_d', 'loss', 'spectral_norm', 'd_steps')


def preset(name, **overrides):
  """The Config of preset `name` (PRESETS), with `overrides`."""
  values = read_flagfile(os.path.join(ROOT, 'experiments', PRESETS[name]))
  return Config(**{**{k: values[k] for k in PRESET_FIELDS if k in values}, **overrides})
