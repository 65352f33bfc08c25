"""models/r3gan.py, ops/lowpass.py and --loss=rpgan against R3GAN's own PyTorch code.

GOLDEN holds random weights of the reference's networks (github.com/brownvc/R3GAN), in its
layout and names, fixed latents and reals, and what its code computes from them: G's images,
D's logits, RpGAN's losses, R1 and R2, and both losses' parameter gradients. It was written by
`r3gan_reference.GOLDEN_COMMAND` (benchmarks/r3gan_reference.py, with torch and their source
tree), so this test needs neither: it carries the weights over with
`r3gan_reference.our_params` and computes the same values through our models and objective.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from benchmarks import r3gan_reference
from facegan_jax import config as config_lib
from facegan_jax import mesh as mesh_lib
from facegan_jax import models, objectives
from facegan_jax.models import r3gan
from facegan_jax.objectives import critic as critic_lib

GOLDEN = r3gan_reference.GOLDEN


def params_of(model):
  """{'stages.0.1.expand.kernel': Param, ...} of an nnx module."""
  return {'.'.join(map(str, path)): node for path, node in nnx.iter_graph(model)
          if isinstance(node, nnx.Param)}


def load(model, arrays):
  """Sets every parameter of `model` from {path: array}, which must name each exactly."""
  params = params_of(model)
  assert sorted(params) == sorted(arrays)
  for path, param in params.items():
    assert param[...].shape == arrays[path].shape, path
    param[...] = jnp.asarray(arrays[path])


def theirs(golden, prefix):
  return {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix)}


def our_values(golden):
  """Ours of GOLDEN's quantities (by its names) from its weights and inputs; the gradients
  as {'d_grad' or 'g_grad': {our path: array}}."""
  config = config_lib.Config(**json.loads(str(golden['config'])))
  blocks = r3gan.stages(config)[1]
  g, d = models.build(config, nnx.Rngs(0))
  load(g, r3gan_reference.our_params(theirs(golden, 'G.'), 'G', blocks))
  load(d, r3gan_reference.our_params(theirs(golden, 'D.'), 'D', blocks))
  g_graph, g_params = nnx.split(g, nnx.Param)
  d_graph, d_params, _ = nnx.split(d, nnx.Param, ...)
  objective = objectives.get(config.loss)

  def compute(g_params, d_params, z, real, their_fake):
    def critic(d_params):
      return critic_lib.Critic(params=d_params, sn={}, stats=nnx.State({}),
                               dropout_keys=dict(real=None, fake=None),
                               augment_keys=dict(real=None, fake=None), ada_p=jnp.zeros(()),
                               graph=d_graph, config=config)

    def generate(g_params):
      return nnx.merge(g_graph, g_params)(z, train=True)

    # D's step sees their G's images, so that D's values do not inherit G's differences.
    def d_total(d_params):
      total, _, out = objective.d_loss(critic(d_params), real, their_fake, config, d_step=0,
                                       example_keys=None)
      return total, out

    (total, out), d_grad = jax.value_and_grad(d_total, has_aux=True)(d_params)
    g_loss, g_grad = jax.value_and_grad(
        lambda p: objective.g_loss(critic(d_params), real, generate(p), config))(g_params)
    # Ours report the penalties with their weight γ/2; the reference's R1 and R2 without.
    half_gamma = 0.5 * config.r1_gamma
    return dict(fake=generate(g_params), real_logits=out['real_logits'],
                fake_logits=out['fake_logits'], d_loss=out['d_loss'],
                r1=out['metrics']['r1'] / half_gamma, r2=out['metrics']['r2'] / half_gamma,
                d_total=total, g_loss=g_loss, d_grad=d_grad, g_grad=g_grad)

  # One device, as tests/test_rpgan.py: the penalties' mean over the data axis is its own.
  values = jax.jit(jax.shard_map(compute, mesh=mesh_lib.make_mesh(1), in_specs=P(),
                                 out_specs=P()))(
      g_params, d_params, golden['z'], golden['real'], golden['fake'])
  values['d_grad'] = {k: np.asarray(v[...])
                      for k, v in params_of(nnx.merge(d_graph, values['d_grad'])).items()}
  values['g_grad'] = {k: np.asarray(v[...])
                      for k, v in params_of(nnx.merge(g_graph, values['g_grad'])).items()}
  return config, blocks, values


@pytest.fixture(scope='module')
def compared():
  with np.load(GOLDEN, allow_pickle=False) as f:
    golden = dict(f)
  return golden, *our_values(golden)


def assert_close(got, want, name):
  """float32 agreement: relative 1e-4, absolute 1e-5 of the quantity's largest value."""
  want = np.asarray(want)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4,
                             atol=1e-5 * max(np.abs(want).max(), 1e-3), err_msg=name)


def test_generator_images_are_the_reference_ones(compared):
  golden, _, _, ours = compared
  assert ours['fake'].shape == golden['fake'].shape
  assert_close(ours['fake'], golden['fake'], 'G(z)')


@pytest.mark.parametrize('name', ['real_logits', 'fake_logits'])
def test_discriminator_logits_are_the_reference_ones(compared, name):
  golden, _, _, ours = compared
  assert_close(ours[name], golden[name], name)


@pytest.mark.parametrize('name', ['d_loss', 'r1', 'r2', 'd_total', 'g_loss'])
def test_losses_and_penalties_are_the_reference_ones(compared, name):
  """RpGAN's losses; R1 and R2 as E over the batch of ‖∇ₓD‖² per example, which D's loss
  adds with the weight γ/2 (their Trainer.py and objectives/rpgan.py alike)."""
  golden, config, _, ours = compared
  assert config.r1_gamma > 0 and golden['r1'] > 0 and golden['r2'] > 0
  assert_close(ours[name], golden[name], name)


@pytest.mark.parametrize('role', ['D', 'G'])
def test_parameter_gradients_are_the_reference_ones(compared, role):
  """D's loss with its penalties (their second derivatives through every layer), and G's
  loss through D, differentiated in every parameter of the network that steps."""
  golden, _, blocks, ours = compared
  name = f'{role.lower()}_grad'
  want = r3gan_reference.our_params(theirs(golden, f'{name}.'), role, blocks)
  assert sorted(ours[name]) == sorted(want)
  for path, value in want.items():
    assert_close(ours[name][path], value, f'{role} {path}')


@pytest.mark.parametrize('role', ['G', 'D'])
def test_initialisation_is_the_reference_one(compared, role):
  """Each parameter's initial variance against theirs (averaged over their INIT_DRAWS
  initialisations): the zero layers exactly, the others within 5 standard errors of the
  estimate, each and pooled over the network. The pooled check is tight (about 2% a standard
  error), so a fix-up gain without the block count's L^(-1/4) fails it."""
  golden, config, blocks, _ = compared
  model = dict(zip('GD', models.build(config, nnx.Rngs(0))))[role]
  prefix = f'{role}.'
  # Their variances in their parameters' shapes, carried over to our paths like the weights.
  want = r3gan_reference.our_params(
      {name: np.full(value.shape, golden[f'init_var.{role}.{name}'])
       for name, value in theirs(golden, prefix).items()}, role, blocks)
  ratios, counts = [], []
  for path, param in params_of(model).items():
    value, variance = np.asarray(param[...], np.float64), want[path].flat[0]
    if variance == 0:
      assert not value.any(), f'{path} starts at zero in theirs'
      continue
    ratio = np.square(value).mean() / variance
    standard_error = np.sqrt(2 / value.size * (1 + 1 / r3gan_reference.INIT_DRAWS))
    assert abs(ratio - 1) < 5 * standard_error, (path, ratio)
    ratios.append(ratio * value.size)
    counts.append(value.size)
  pooled = sum(ratios) / sum(counts)
  assert abs(pooled - 1) < 5 * np.sqrt(2 / sum(counts)), pooled


def test_golden_file_is_small_and_says_how_it_was_made():
  golden = np.load(GOLDEN, allow_pickle=False)
  assert os.path.getsize(GOLDEN) < 300_000
  assert str(golden['command']) == r3gan_reference.GOLDEN_COMMAND
