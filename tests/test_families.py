"""The G/D contract every family keeps (models/__init__.py), checked for each registered one;
and a new family and a new objective, each added as one module plus one line."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from facegan_jax import config as config_lib, models, objectives
from facegan_jax import validation
from facegan_jax.errors import UsageError
from facegan_jax.models import spectral_norm
from facegan_jax.models.batchnorm import BatchNorm
from tests import tiny_family, tiny_objective
from tests.test_step import CONDITIONAL, MLP, RESNET, assert_same_on_one_and_two_devices

# Each family's smallest settings over tests/test_step.py's tiny config (the same compiled
# steps as its tests). A family added to FAMILIES needs its line here and in ON_TWO_DEVICES.
TINY = {'dcgan': {}, 'mlp': MLP, 'resnet': RESNET,
        'r3gan': dict(resolution=8, widths='8,4', groups='4,2', loss='rpgan', r1_gamma=1.0),
        'tiny': dict(model='tiny', resolution=8, loss='rp_test')}
# Each family's run on 1 and 2 devices: class-conditional where the family draws classes (the
# classes travel with their images, over extra D updates, into R1's input gradients), with
# the penalties whose sums cross the devices: the DCGAN's lazy R1 and R2 (RpGAN, on images
# DiffAugment transformed) through the minibatch-stddev channel, with 2 D updates a step;
# R3GAN's R1 and R2 every step.
ON_TWO_DEVICES = {
    'dcgan': dict(CONDITIONAL, loss='rpgan', r1_gamma=10.0, r1_every=2, augment='diffaug',
                  mbstd_group=4, d_steps=2),
    'mlp': dict(MLP, **CONDITIONAL), 'resnet': dict(RESNET, **CONDITIONAL),
    'r3gan': dict(TINY['r3gan'], model='r3gan', **CONDITIONAL), 'tiny': TINY['tiny']}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
  """tests/tiny_family.py and tests/tiny_objective.py registered as a new family and
  objective are: the module, and one line in the registry."""
  monkeypatch.setitem(sys.modules, 'facegan_jax.models.tiny', tiny_family)
  monkeypatch.setitem(models.FAMILIES, 'tiny', 'a test-only family')
  monkeypatch.setitem(sys.modules, 'facegan_jax.objectives.rp_test', tiny_objective)
  monkeypatch.setitem(objectives.OBJECTIVES, 'rp_test', ('rp_test', 'a test-only objective'))


def test_every_family_is_checked():
  assert set(TINY) == set(models.FAMILIES) == set(ON_TWO_DEVICES)


def _config(name, **overrides):
  return config_lib.Config(**{**dict(model=name, z_dim=16, batch_size=8),
                              **{k: v for k, v in TINY[name].items() if k != 'model'},
                              **overrides})


@pytest.mark.parametrize('name', sorted(TINY))
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_family_keeps_the_contract(name, precision):
  """G: latents -> float32 NHWC images in [-1, 1] (or unbounded, BOUNDED = False), in train
  and inference mode; D: images -> float32 logits (B,), with per-example dropout keys or
  none; parameters float32 under bf16; every weight of two axes or more a `kernel` spectral
  norm normalises (or --spectral_norm refused); BatchNorm statistics only in
  batchnorm.BatchNorm."""
  config = _config(name, precision=precision)
  validation.validate(config)
  g, d = models.build(config, nnx.Rngs(0))
  size, channels = config.resolution, config.channels
  z = jax.random.normal(jax.random.key(1), (4, config.z_dim))
  # Both modes of both networks in one compiled call (a call per op eagerly is slower).
  keys = jax.random.split(jax.random.key(2), 4)
  outputs = nnx.jit(lambda g, d, z: [(images, d(images, train=True, dropout_keys=keys),
                                      d(images, train=False))
                                     for images in (g(z, train=True), g(z, train=False))])
  for images, *logits in outputs(g, d, z):
    assert images.shape == (4, size, size, channels) and images.dtype == jnp.float32
    bounded = getattr(models.family(config.model), 'BOUNDED', True)
    assert (float(jnp.abs(images).max()) <= 1.0 or not bounded) and float(images.std()) > 0
    for logit in logits:
      assert logit.shape == (4,) and logit.dtype == jnp.float32
      assert np.all(np.isfinite(logit))
  try:
    validation.validate(_config(name, spectral_norm='gd'))
    takes_spectral_norm = True
  except UsageError:  # a family that goes without spectral norm refuses it
    takes_spectral_norm = False
  for module in (g, d):
    params = nnx.state(module, nnx.Param)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    if takes_spectral_norm:
      vectors = spectral_norm.init_vectors(params, jax.random.key(3))
      assert len(vectors) == sum(x.ndim >= 2 for x in jax.tree.leaves(params)) > 0
    for _, node in nnx.iter_graph(module):
      if isinstance(node, nnx.Module) and not isinstance(node, BatchNorm):
        assert not any(isinstance(v, nnx.BatchStat) for v in vars(node).values()), node


@pytest.mark.parametrize('name', sorted(n for n in TINY if n != 'tiny'))
def test_conditional_families_draw_and_judge_each_class(name):
  """Under --condition each family's G draws a class (its images change with it, float32, in
  range) and its D judges an image as of a class (its logits change with it); every class
  table is a `kernel` spectral norm would normalise."""
  config = _config(name, condition='label', num_classes=3, dataset='folder:x')
  validation.validate(config)
  g, d = models.build(config, nnx.Rngs(0))
  z = jax.random.normal(jax.random.key(1), (4, config.z_dim))
  classes = [jnp.full(4, k) for k in range(3)]
  outputs = nnx.jit(lambda g, d, z: [(images, d(images, train=False, labels=labels))
                                     for labels in classes
                                     for images in [g(z, train=True, labels=labels)]])(g, d, z)
  (images0, logits0), (images2, _) = outputs[0], outputs[2]
  assert images0.shape == (4, config.resolution, config.resolution, config.channels)
  assert logits0.shape == (4,) and logits0.dtype == jnp.float32
  assert float(jnp.abs(images0 - images2).max()) > 0
  d_of_class = nnx.jit(lambda d, x, labels: d(x, train=False, labels=labels))
  assert float(jnp.abs(d_of_class(d, images0, classes[0])
                       - d_of_class(d, images0, classes[2])).max()) > 0
  tables = [path for path, x in jax.tree_util.tree_leaves_with_path(nnx.state(d, nnx.Param))
            if x.shape[:1] == (3,) and x.ndim == 2]
  assert tables and all(spectral_norm._name(p).endswith('kernel') for p in tables)
  if name != 'r3gan':  # (it refuses spectral norm) G's per-class BatchNorm tables pass it
    spectral_norm.init_vectors(nnx.state(g, nnx.Param), jax.random.key(3))


def test_a_family_that_draws_no_classes_refuses_them():
  with pytest.raises(UsageError, match='^--condition=label: --model=tiny draws no classes$'):
    validation.validate(_config('tiny', condition='label', dataset='folder:x'))


@pytest.mark.parametrize('name', sorted(TINY))
def test_family_runs_the_same_on_one_and_two_devices(name):
  """The train step on 1 and on 2 devices: the same losses and states."""
  assert_same_on_one_and_two_devices(ON_TWO_DEVICES[name])


def test_a_new_family_and_objective_are_choices_and_validate_their_settings():
  config = _config('tiny')
  validation.validate(config)
  assert 'tiny (a test-only family)' in models.describe()
  with pytest.raises(UsageError, match=r'^--resolution=64: tiny draws at most 32 pixels$'):
    validation.validate(_config('tiny', resolution=64))
  with pytest.raises(UsageError, match='^--model=small is not one of dcgan, mlp, resnet, r3gan, tiny$'):
    validation.validate(_config('tiny', model='small'))


def test_a_weight_spectral_norm_would_skip_is_an_error():
  params = {'dense': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)},
            'embed': {'embedding': jnp.ones((5, 2))}}
  with pytest.raises(ValueError, match='^embed.embedding: a weight of 2 axes not named'):
    spectral_norm.init_vectors(params, jax.random.key(0))
