"""--loss=rpgan (objectives/rpgan.py): RpGAN's losses and the R1/R2 penalties against values
computed by hand for a small nonlinear D, their gradients in D's parameters (the penalties'
second derivatives included) and lazy penalties. The step on 1 and 2 devices:
tests/test_families.py (the DCGAN's lazy R1 and R2, R3GAN's every step)."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from facegan_jax import config as config_lib
from facegan_jax import mesh as mesh_lib
from facegan_jax import validation
from facegan_jax.errors import UsageError
from facegan_jax.objectives import critic as critic_lib
from facegan_jax.objectives import get


class TanhD(nnx.Module):
  """D(x) = Σ w · tanh(x) + b: ∇ₓD = w (1 - tanh²x), so R1 and R2 have a closed form."""

  def __init__(self, size, rngs):
    self.w = nnx.Param(jax.random.normal(rngs.params(), (size,)))
    self.b = nnx.Param(jnp.array(0.3))

  def __call__(self, x, *, train, dropout_keys=None):
    del train, dropout_keys
    return jnp.tanh(x.reshape(len(x), -1)) @ self.w + self.b


def by_hand(w, b, real, fake, gamma):
  """(D loss, R1, R2, G loss) of TanhD in plain numpy."""
  w = np.asarray(w, np.float64)
  flat = {k: np.tanh(np.asarray(x, np.float64).reshape(len(x), -1)) for k, x in
          (('real', real), ('fake', fake))}
  logits = {k: t @ w + float(b) for k, t in flat.items()}
  penalty = {k: 0.5 * gamma * (np.square(w * (1 - t * t)).sum(-1)).mean()
             for k, t in flat.items()}
  softplus = lambda x: np.logaddexp(0, x)  # noqa: E731
  return (softplus(logits['fake'] - logits['real']).mean(), penalty['real'], penalty['fake'],
          softplus(logits['real'] - logits['fake']).mean())


def objective_on_one_device(config, params, real, fake, d_step, graph):
  """(D's total loss, its out, G's loss) of --loss=rpgan for TanhD with `params`."""
  def losses(params, real, fake):
    d = critic_lib.Critic(params=params, sn={}, stats=nnx.State({}),
                          dropout_keys=dict(real=None, fake=None),
                          augment_keys=dict(real=None, fake=None), ada_p=jnp.zeros(()),
                          graph=graph, config=config)
    objective = get('rpgan')
    total, _, out = objective.d_loss(d, real, fake, config, d_step=d_step, example_keys=None)
    return total, out, objective.g_loss(d, real, fake, config)

  mesh = mesh_lib.make_mesh(1)
  # One device: the batch is whole on it (the penalties' mean over the data axis is its own).
  return jax.jit(jax.shard_map(losses, mesh=mesh, in_specs=P(), out_specs=P()))(
      params, real, fake)


@pytest.fixture
def tanh_d():
  graph, params, _ = nnx.split(TanhD(4 * 4 * 3, nnx.Rngs(0)), nnx.Param, ...)
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  real, fake = (jax.random.normal(k, (6, 4, 4, 3)) for k in keys)
  return graph, params, real, fake


@pytest.mark.parametrize('every, d_step, scale', [(1, 5, 1), (3, 5, 3), (3, 6, 0)])
def test_losses_and_penalties_are_the_hand_computed_ones(tanh_d, every, d_step, scale):
  """Every step; lazily every 3 D steps, at a penalised step (the third of three, scaled by 3)
  and between (0)."""
  graph, params, real, fake = tanh_d
  config = config_lib.Config(loss='rpgan', r1_gamma=0.7, r1_every=every)
  total, out, g_loss = objective_on_one_device(config, params, real, fake, d_step, graph)
  d_loss, r1, r2, g_by_hand = by_hand(params['w'][...], params['b'][...], real, fake, 0.7)
  np.testing.assert_allclose(out['d_loss'], d_loss, rtol=1e-5)
  np.testing.assert_allclose(out['metrics']['r1'], scale * r1, rtol=1e-5)
  np.testing.assert_allclose(out['metrics']['r2'], scale * r2, rtol=1e-5)
  np.testing.assert_allclose(total, d_loss + scale * (r1 + r2), rtol=1e-5)
  np.testing.assert_allclose(g_loss, g_by_hand, rtol=1e-5)


def test_d_gradients_include_the_penalties_second_derivatives(tanh_d):
  graph, params, real, fake = tanh_d
  config = config_lib.Config(loss='rpgan', r1_gamma=0.7)
  ours = jax.grad(lambda p: objective_on_one_device(config, p, real, fake, 0, graph)[0])(params)

  def reference(w, b):
    flat = {k: jnp.tanh(x.reshape(len(x), -1)) for k, x in (('real', real), ('fake', fake))}
    logits = {k: t @ w + b for k, t in flat.items()}
    penalties = sum(0.35 * jnp.square(w * (1 - t * t)).sum(-1).mean() for t in flat.values())
    return jax.nn.softplus(logits['fake'] - logits['real']).mean() + penalties

  w_grad, b_grad = jax.grad(reference, argnums=(0, 1))(params['w'][...], params['b'][...])
  np.testing.assert_allclose(ours['w'][...], w_grad, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(ours['b'][...], b_grad, rtol=1e-5, atol=1e-7)


def test_wgan_gp_is_an_error_with_rpgan():
  with pytest.raises(UsageError, match="^--gp_weight=10.0 is WGAN-GP's penalty"):
    validation.validate(config_lib.Config(loss='rpgan', gp_weight=10.0))
