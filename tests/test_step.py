"""The train step and its compiled call: it learns, and it is the same on one and two
devices and for any number of steps per call (in the test process, which has two CPU
devices: tests/conftest.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from facegan_jax import config as config_lib, mesh as mesh_lib, state as state_lib
from facegan_jax import step as step_lib
from facegan_jax import validation
from facegan_jax.data import pipeline, synthetic_faces
from facegan_jax.logs import health
from facegan_jax.models import spectral_norm
from facegan_jax.schedules import Schedule


def tiny_config(**overrides):
  return config_lib.Config(**{**dict(model='dcgan', resolution=16, conv_dim=8, z_dim=16,
                                     batch_size=8, g_first_bn=True), **overrides})


def start(config):
  """(mesh, initial state) of a run on config.num_devices devices."""
  mesh = mesh_lib.make_mesh(config.num_devices)
  state = state_lib.fresh_state(config, mesh_lib.replicated(mesh))
  return mesh, state


def run(num_devices, steps, images, static_steps=None, ada_p=None, tell_step=True, labels=None,
        **overrides):
  """(final state on the host, each call's metrics) of `steps` steps on `images` (of the
  classes `labels` under --condition), from ADA's p = `ada_p` if given; each call told its
  first step unless not `tell_step` (lazy penalties then decided inside the compiled step)."""
  config = tiny_config(num_devices=num_devices, **overrides)
  mesh, state = start(config)
  if ada_p is not None:
    state = dataclasses.replace(state, ada_p=jax.device_put(jnp.float32(ada_p),
                                                            state.ada_p.sharding))
  step_fn = step_lib.make_train_fn(config, mesh, static_steps=static_steps)
  inputs = pipeline.Input(config, images, mesh, state_lib.data_key(state), 0, labels)
  history = []
  for step in range(0, steps, config.steps_per_call):
    state, metrics = step_fn(state, inputs(step), config.steps_per_call,
                             step if tell_step else None)
    history.append({k: float(v) for k, v in metrics.items()})
  return jax.device_get(state), history


def random_images(n, resolution=16, channels=3):
  return np.random.default_rng(0).integers(0, 256, (n, resolution, resolution, channels),
                                           dtype=np.uint8)


MLP = dict(model='mlp', resolution=28, channels=1, hidden_dim=16)
# Class-conditional training on the labels of the tests' images (three classes).
CONDITIONAL = dict(condition='label', num_classes=3)
# SNGAN's recipe on the DCGAN: spectral norm in both networks, hinge, 2 D steps per G step
# (and an EMA generator: test_spectral_norm_keeps_the_kernels_largest_singular_value_at_one
# trains this config, the same compiled step).
SNGAN = dict(spectral_norm='gd', loss='hinge', d_steps=2, beta1_d=0.0, beta2_d=0.9,
             ema_decay=0.9)
# ADA with p moving by 1 per 400 images (0.02 a step) on 8 images: the compiled step of
# test_ada_p_rises_while_d_overfits_a_tiny_set (ADA's step is the slowest to compile), here
# from p = 0.5. Apart from SNGAN's two D steps, each of which would trace ADA again.
ADA = dict(augment='ada', ada_kimg=0.4, lr_d=1e-3)
WGAN_GP = dict(loss='wgan', gp_weight=10.0, augment='diffaug')
RESNET = dict(model='resnet', resolution=32, conv_dim=4, spectral_norm='d', loss='hinge')


@pytest.mark.parametrize('overrides, num_images',
                         [(SNGAN, 64), (dict(ADA, ada_p=0.5), 8), (WGAN_GP, 40)],
                         ids=['sngan', 'ada', 'wgan_gp_diffaug'])
def test_one_and_two_devices_give_the_same_run(overrides, num_images):
  """The regularisers on 1 and 2 devices (lazy R1 and the minibatch-stddev channel:
  tests/test_families.py, the DCGAN's run)."""
  assert_same_on_one_and_two_devices(overrides, num_images)


def assert_same_on_one_and_two_devices(overrides, num_images=40):
  """Same global batch and seed: same losses and parameters (BatchNorm and dropout synced,
  augmentations and ADA's p, spectral-norm vectors, the extra D steps' batches), training on
  `num_images` random images."""
  images = random_images(num_images, overrides.get('resolution', 16),
                         overrides.get('channels', 3))
  if overrides.get('num_classes'):
    overrides = dict(overrides, labels=np.arange(num_images, dtype=np.int32)
                     % overrides['num_classes'])
  # Second derivatives (R1, the gradient penalty) sum over more terms: over their first 2
  # steps the states agree to 3e-5 (absolute, or relative to an array's largest value above
  # 1; measured under the suite's XLA flags), not 1e-5; ADA's warp sums its gradient's
  # scatter in another order too (1.5e-5 after 4 steps), and the ResNet's D sums its features
  # over every pixel, so its logits and gradients run ~10x DCGAN's (1.1e-5 after 2 steps).
  loose = any(k in overrides for k in ('r1_gamma', 'gp_weight', 'ada_p')) or (
      overrides.get('model') == 'resnet')
  steps, tolerance = (2, 1e-4) if loose else (4, 1e-5)
  (s1, m1), (s2, m2) = (run(n, steps, images, **overrides) for n in (1, 2))
  for a, b in zip(m1, m2):
    assert a.keys() == b.keys()
    for k in a:
      assert abs(a[k] - b[k]) <= 1e-5 * max(1, abs(a[k])), (k, a[k], b[k])
  diffs = jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.abs(x - y).max() / max(1, np.abs(y).max())), s1, s2))
  assert max(diffs) < tolerance, max(diffs)
  assert m1[0]['d_loss'] != m1[-1]['d_loss']  # the parameters did move
  if 'ada_kimg' in overrides:
    assert m1[-1]['ada_p'] != m1[0]['ada_p']


def test_discriminator_learns_to_separate_real_from_fake():
  """With G frozen (lr_g ~ 0), D's real/fake scores pull apart within a few steps."""
  rng = np.random.default_rng(0)
  # "Real" images: smooth bright blobs, unlike an untrained G's output.
  yy, xx = np.mgrid[:16, :16]
  blob = 255 * np.exp(-((yy - 8)**2 + (xx - 8)**2) / 20)
  images = np.clip(blob[None, :, :, None] + rng.normal(0, 10, (32, 16, 16, 3)), 0, 255)
  _, history = run(1, 30, images.astype(np.uint8), lr_g=1e-12, lr_d=1e-3, batch_size=16)
  first, last = history[0], history[-1]
  assert first['d_real'] - first['d_fake'] < 0.2
  assert last['d_real'] - last['d_fake'] > 0.8  # D scores real ~1 and fake ~0
  assert last['d_loss'] < 0.3


@pytest.mark.parametrize('overrides', [{}, MLP], ids=['dcgan', 'mlp'])
def test_bf16_training_stays_finite_and_tracks_fp32(overrides):
  """--precision=bf16: bfloat16 compute, float32 parameters, optimizer state, BatchNorm
  statistics and losses; over 30 steps the losses follow the float32 run's."""
  images = random_images(64, overrides.get('resolution', 16), overrides.get('channels', 3))
  (_, m32), (s16, m16) = (run(1, 30, images, precision=p, **overrides)
                          for p in ('fp32', 'bf16'))
  leaves = jax.tree.leaves(s16)
  assert {str(x.dtype) for x in leaves if jnp.issubdtype(x.dtype, jnp.floating)} == {'float32'}
  assert all(np.isfinite(x).all() for x in leaves)
  gap = max(abs(a[k] - b[k]) for a, b in zip(m32, m16) for k in ('d_loss', 'g_loss'))
  # bf16 keeps 8 bits of mantissa; measured gaps: 0.0015 (dcgan) and 0.0004 (mlp) on losses
  # of ~0.7-1.4.
  assert gap < 0.02
  # ...and it is bf16 that ran: the same computation in fp32 gives a gap of exactly 0.
  assert gap > 1e-5


def test_a_static_step_count_runs_the_loop_of_a_counted_one():
  """Three steps per call (crossing an epoch inside a call) on 2 devices, the count static (as
  on GPUs) or an argument (CPU, TPU): the same run, bit for bit, state and metrics. That the
  counted loop is the one-step run bit for bit: tests/test_main.py, under main.py's flags."""
  images = random_images(64)  # 8 steps per epoch
  (s1, m1), (s2, m2) = (run(2, 12, images, static, steps_per_call=3) for static in (False, True))
  assert len(m1) == 4 and m1 == m2
  for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('ema_decay', [0.5, 0.0])
def test_ema_generator_warms_up_then_decays_at_ema_decay(ema_decay):
  """After each step the EMA generator is decay * EMA + (1 - decay) * G's new parameters, with
  decay = min(--ema_decay, (1 + step) / (10 + step)) (TF's warm-up: early samples are not
  stuck near the initialisation); --ema_decay=0 samples G itself."""
  images = random_images(64)
  config = config_lib.Config(model='dcgan', resolution=16, conv_dim=8, z_dim=16, batch_size=8,
                             num_devices=1, ema_decay=ema_decay, lr_g=1e-3)
  mesh, state = start(config)
  step_fn = step_lib.make_train_fn(config, mesh)
  inputs = pipeline.Input(config, images, mesh, state_lib.data_key(state), 0)

  def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.device_get(tree))])

  ema, decays = flat(state.ema_params), []
  for step in range(12):
    state, _ = step_fn(state, inputs(step), 1)
    g, new_ema = flat(state.g_params), flat(state.ema_params)
    # The decay that maps (EMA, G) to the new EMA, fitted over every parameter.
    decays.append(float(np.dot(ema - g, new_ema - g) / np.dot(ema - g, ema - g)))
    if ema_decay == 0:
      np.testing.assert_array_equal(new_ema, g)
    ema = new_ema
  assert state_lib.sample_params(config, state) is (
      state.ema_params if ema_decay else state.g_params)
  expected = [min(ema_decay, (1 + step) / (10 + step)) for step in range(12)]
  assert max(abs(a - b) for a, b in zip(decays, expected)) < 1e-5, decays
  if ema_decay:
    assert decays[:3] == pytest.approx([0.1, 2 / 11, 0.25], abs=1e-5)  # warming up
    assert decays[-3:] == pytest.approx([0.5] * 3, abs=1e-5)  # at --ema_decay from step 8


def test_label_smoothing_sets_the_real_target_of_ds_loss():
  """--label_smoothing=t makes D's bce loss on reals -(t log D(x) + (1-t) log(1-D(x))): on the
  same state and batch, d_loss(t) - d_loss(1) = (1 - t) * mean(real logits), and it reaches
  the update (D's parameters differ)."""
  images = random_images(64)
  losses, params = {}, {}
  for t in (1.0, 0.9):
    s, m = run(1, 1, images, label_smoothing=t)
    losses[t], params[t] = m[0]['d_loss'], s.d_params
  # The first batch's real logits under the fresh D, as the step computes them.
  state = state_lib.init_state(tiny_config())
  order = np.asarray(pipeline.epoch_order(state_lib.data_key(state), 0, len(images)))
  logits = jax.jit(lambda params, stats, real: nnx.merge(state.d_graph, params, stats)(
      real, train=True))(state.d_params, state.d_stats, pipeline.to_float(images[order[:8]]))
  mean_logit = float(logits.mean())
  assert abs(mean_logit) > 1e-3  # else the loss would not tell t apart
  assert losses[0.9] - losses[1.0] == pytest.approx(0.1 * mean_logit, abs=2e-6), losses
  moved = max(jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                                           params[1.0], params[0.9])))
  assert moved > 0


def test_label_smoothing_does_not_apply_to_losses_without_targets(caplog):
  """A bce flagfile's --label_smoothing with --loss=hinge: a valid run, the same as without
  it, and a warning that says so."""
  validation.validate(tiny_config(loss='hinge', label_smoothing=0.9))
  images = random_images(16)
  with caplog.at_level('WARNING'):
    smoothed = run(1, 2, images, loss='hinge', label_smoothing=0.9)
  plain = run(1, 2, images, loss='hinge')
  assert smoothed[1] == plain[1]
  assert '--label_smoothing=0.9 does not apply to --loss=hinge' in caplog.text



def test_seed_sets_the_initialisation_data_order_and_latents():
  """The same --seed gives the same run bit for bit; another seed other parameters and
  losses at every step."""
  images = random_images(64)
  runs = [run(1, 3, images, seed=seed) for seed in (0, 0, 1)]
  leaves = [jax.tree.leaves(s) for s, _ in runs]
  for a, b in zip(leaves[0], leaves[1], strict=True):
    np.testing.assert_array_equal(a, b)
  # Every parameter, statistic and optimizer moment differs (ADA's p is 0 without ADA).
  leaves = [jax.tree.leaves(s.replace(ada_p=None)) for s, _ in runs]
  for a, b in zip(leaves[0], leaves[2], strict=True):
    if np.issubdtype(a.dtype, np.floating):
      assert not np.array_equal(a, b)
  (_, first), (_, same), (_, other) = runs
  assert first == same
  for a, b in zip(same, other, strict=True):
    assert a['d_loss'] != b['d_loss'] and a['g_loss'] != b['g_loss'], (a, b)


def test_linear_lr_decay_holds_the_rate_then_reaches_zero_at_num_steps():
  config = config_lib.Config(lr_g=1e-3, lr_d=4e-3, lr_decay='linear', lr_decay_start=2,
                             num_steps=6)
  for lr, network in ((1e-3, 'g'), (4e-3, 'd')):
    tx = state_lib.Adam.of(config, network).transformation()
    params = jnp.zeros(3)
    opt, steps = tx.init(params), []
    for _ in range(7):  # a constant gradient: each Adam update is -lr(step), in float32
      updates, opt = tx.update(jnp.ones(3), opt, params)
      steps.append(-float(updates[0]) / lr)
    np.testing.assert_allclose(steps, [1, 1, 1, 0.75, 0.5, 0.25, 0], atol=1e-4)
  # Without --lr_decay, a constant rate: optax.adam's own state, as checkpoints hold it.
  assert state_lib.Adam.of(config_lib.Config(lr_g=1e-3), 'g') == state_lib.Adam(
      Schedule(1e-3), 0.5, Schedule(0.999))


def test_with_several_d_steps_both_rates_decay_by_the_training_step():
  """D's optimizer updates --d_steps times a step: its rate, like G's, is held until step
  --lr_decay_start and reaches 0 at --num_steps, not d_steps times earlier."""
  config = config_lib.Config(lr_g=1e-3, lr_d=4e-3, lr_decay='linear', lr_decay_start=2,
                             num_steps=6, d_steps=3)
  tx = state_lib.Adam.of(config, 'd').transformation()
  params = jnp.zeros(3)
  opt, per_step = tx.init(params), []
  for _ in range(6):
    rates = []
    for _ in range(config.d_steps):
      updates, opt = tx.update(jnp.ones(3), opt, params)
      rates.append(-float(updates[0]) / config.lr_d)
    per_step.append(rates[0])  # the step's first D update
  np.testing.assert_allclose(per_step, [1, 1, 1, 0.75, 0.5, 0.25], atol=1e-4)


def test_d_has_its_own_adam_betas_when_given():
  """--beta1_d and --beta2_d (SNGAN trains D with betas (0, 0.9)) set D's Adam only; unset,
  both networks use --beta1 and --beta2."""
  config = config_lib.Config(beta1=0.5, beta2=0.999, beta1_d=0.0, beta2_d=0.9)
  def betas(config, network):
    adam = state_lib.Adam.of(config, network)
    return adam.beta1, adam.beta2.start
  assert betas(config, 'g') == (0.5, 0.999)
  assert betas(config, 'd') == (0.0, 0.9)
  assert betas(config_lib.Config(beta2_d=0.9), 'd') == (0.5, 0.9)
  # D's update after two steps of the same constant gradient differs with its beta1 (Adam's
  # first step is sign(g) * lr whatever the betas).
  params = jnp.zeros(2)
  moved = {}
  for beta1 in (0.5, 0.0):
    tx = state_lib.Adam.of(config_lib.Config(beta1_d=beta1, lr_d=1.0), 'd').transformation()
    opt, total = tx.init(params), 0
    for grad in (jnp.array([1.0, 1.0]), jnp.array([-1.0, 1.0])):
      updates, opt = tx.update(grad, opt, params)
      total = total + updates
    moved[beta1] = np.asarray(total)
  assert not np.allclose(moved[0.5], moved[0.0])
  state = jax.eval_shape(lambda: state_lib.init_state(tiny_config(beta1_d=0.0, beta2_d=0.9)))
  assert (state.adam_d.beta1, state.adam_d.beta2.start) == (0.0, 0.9)
  assert (state.adam_g.beta1, state.adam_g.beta2.start) == (0.5, 0.999)


def _r1_of_d(config, real, state=None):
  """γ/2 · E‖∇ₓ Σ D(x)‖² of the D of `state` (default: the fresh D of `config`) on `real`, and
  its gradient in D's parameters, computed with plain jax.grad (train-mode BatchNorm, one
  device)."""
  state = state or state_lib.init_state(config)

  def r1(d_params):
    def summed(x):
      return nnx.merge(state.d_graph, d_params, state.d_stats, copy=True)(x, train=True).sum()
    x_grads = jax.grad(summed)(real)
    return 0.5 * config.r1_gamma * jnp.square(x_grads).reshape(len(real), -1).sum(-1).mean()
  return jax.jit(jax.value_and_grad(r1))(state.d_params)


def test_r1_is_the_penalty_on_ds_input_gradient_and_lazily_scaled():
  images = random_images(64)
  config = tiny_config(r1_gamma=10.0)
  state = state_lib.init_state(config)
  order = np.asarray(pipeline.epoch_order(state_lib.data_key(state), 0, len(images)))
  value, _ = _r1_of_d(tiny_config(r1_gamma=10.0, conv_impl='xla'),
                            pipeline.to_float(images[order[:8]]))
  _, history = run(2, 4, images, r1_gamma=10.0)  # the step's own, on 2 devices
  assert history[0]['r1'] == pytest.approx(float(value), rel=1e-5)
  # Lazily: k times the penalty on the k-th, 2k-th, ... steps (those logged with log_every a
  # multiple of k), 0 between, and the run differs from none.
  _, lazy = run(1, 4, images, r1_gamma=10.0, r1_every=2)
  _, off = run(1, 4, images)
  after_one, _ = run(1, 1, images)  # D after a step without the penalty, as the lazy run's
  value, _ = _r1_of_d(tiny_config(r1_gamma=10.0, conv_impl='xla'),
                      pipeline.to_float(images[order[8:16]]), jax.device_put(after_one))
  assert lazy[0]['r1'] == 0 and lazy[2]['r1'] == 0
  assert lazy[1]['r1'] == pytest.approx(2 * float(value), rel=1e-5) and lazy[3]['r1'] > 0
  # The same decided inside the compiled step (a lax.cond) as compiled in for each call.
  _, in_step = run(1, 4, images, r1_gamma=10.0, r1_every=2, tell_step=False)
  for told, untold in zip(lazy, in_step, strict=True):
    assert told == pytest.approx(untold, rel=1e-5)
  assert 'r1' not in off[0] and off[0]['d_loss'] == pytest.approx(lazy[0]['d_loss'], rel=1e-6)
  assert off[2]['d_loss'] != lazy[2]['d_loss']  # the penalty reached D's update


def test_a_one_step_call_knows_whether_its_last_d_update_is_penalised():
  """The lazy penalties fall on every k-th D update, counted over all of them from 1: with 3
  D updates a step and k = 2 the last update of steps 1, 3, ... (updates 6, 12, ... from 1);
  with one a step, steps k, 2k, ... counted from 1 (steps k-1, 2k-1, ... from 0)."""
  def due(step, **flags):
    return step_lib.penalty_due(config_lib.Config(**flags), step)

  assert [due(s, r1_gamma=1.0, r1_every=2, d_steps=3) for s in range(4)] == [
      False, True, False, True]
  assert [due(s, r1_gamma=1.0, r1_every=3) for s in range(6)] == [
      False, False, True, False, False, True]
  assert due(5, r1_gamma=1.0) is None and due(None, r1_gamma=1.0, r1_every=2) is None


@pytest.mark.parametrize('conv_impl', ['patches', 's2d', 'winograd'])
def test_r1_gradient_through_our_layers_equals_xlas(conv_impl):
  """R1's gradient in D's parameters differentiates the layers' backward passes (and
  BatchNorm's): with each stride-2 form it equals the one of XLA's own convolutions."""
  real = pipeline.to_float(random_images(8))
  _, ours = _r1_of_d(tiny_config(r1_gamma=1.0, conv_impl=conv_impl), real)
  _, xlas = _r1_of_d(tiny_config(r1_gamma=1.0, conv_impl='xla'), real)
  for name, a, b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(ours),
                        jax.tree.leaves(xlas), strict=True):
    scale = float(jnp.abs(b).max())
    assert float(jnp.abs(a - b).max()) <= 1e-4 * scale, name[0]


def test_gradient_penalty_is_wgan_gps_on_interpolates():
  """The step's `gp` is λ E[(‖∇ₓD(x̂)‖ - 1)²] at x̂ = εx + (1-ε)G(z), computed here directly
  from the first batch, the step's latents and ε of each example's global index."""
  images = random_images(64)
  config = tiny_config(loss='wgan', gp_weight=10.0)
  state = state_lib.init_state(config)
  order = np.asarray(pipeline.epoch_order(state_lib.data_key(state), 0, len(images)))
  real = pipeline.to_float(images[order[:8]])
  rng = jax.random.fold_in(jax.random.split(state.rng)[1], 0)
  z_key = jax.random.split(rng)[0]
  z = jnp.stack([jax.random.normal(jax.random.fold_in(z_key, i), (16,)) for i in range(8)])
  eps_key = jax.random.split(jax.random.fold_in(rng, 1), 4)[3]
  eps = jnp.stack([jax.random.uniform(jax.random.fold_in(eps_key, i)) for i in range(8)])
  fake = nnx.merge(state.g_graph, state.g_params, state.g_stats, copy=True)(z, train=True)
  mixed = eps[:, None, None, None] * real + (1 - eps[:, None, None, None]) * fake
  d = nnx.merge(state.d_graph, state.d_params, state.d_stats, copy=True)
  grads = jax.grad(lambda x: d(x, train=True).sum())(mixed)
  expected = 10.0 * np.mean(np.square(np.linalg.norm(np.asarray(grads).reshape(8, -1), axis=1)
                                       - 1))
  _, history = run(2, 1, images, loss='wgan', gp_weight=10.0)
  assert history[0]['gp'] == pytest.approx(float(expected), rel=1e-5)
  # The critic's loss is E[D(G(z))] - E[D(x)], unbounded, and D has no BatchNorm under GP.
  assert not nnx.state(d, nnx.BatchStat)


def test_ada_p_rises_while_d_overfits_a_tiny_set():
  """On 8 images D soon calls every real real (r_t = 1 > 0.6): p climbs by batch/ada_kimg per
  step until D's real logits' signs fall to the target."""
  images = random_images(8)
  _, history = run(1, 30, images, **ADA)
  p = np.array([m['ada_p'] for m in history])
  assert p[-1] > 0.2, p
  steps = np.diff(p)
  assert np.all(np.isclose(np.abs(steps), 0.02) | (steps == 0)), steps


def test_d_steps_reads_its_own_batch_for_each_d_update():
  """--d_steps=2: a step reads two batches; the first D update's is the one a 1-step run's
  first step reads, and the run differs from d_steps=1 with a batch twice the size."""
  images = random_images(64)
  config = tiny_config(d_steps=2)
  state = state_lib.init_state(config)
  order = np.asarray(pipeline.epoch_order(state_lib.data_key(state), 0, len(images)))
  indices = np.asarray(pipeline.batch_indices(jnp.asarray(order), 1, 8, d_steps=2,
                                              num_devices=2))
  # Device-major: each device's half holds its rows of both batches of step 1.
  np.testing.assert_array_equal(indices, np.concatenate(
      [order[16:20], order[24:28], order[20:24], order[28:32]]))
  (_, two), (_, one) = run(1, 2, images, d_steps=2), run(1, 2, images)
  assert two[0]['d_loss'] != one[0]['d_loss']
  # Two D steps per step: the epoch of 64 images is 4 steps, not 8.
  assert pipeline.Input(config, images, mesh_lib.make_mesh(1), state_lib.data_key(state),
                        0).steps_per_epoch == 4


def test_power_iteration_finds_numpys_largest_singular_value():
  params = state_lib.init_state(tiny_config()).d_params
  vectors = spectral_norm.init_vectors(params, jax.random.PRNGKey(0))
  for _ in range(100):
    vectors = spectral_norm.power_iteration(params, vectors)
  estimates = spectral_norm.largest_singular_values(params, vectors)
  assert estimates.keys() == {'downs.0.kernel', 'downs.1.kernel', 'logit.kernel'}
  for name, kernel in spectral_norm.kernels(params).items():
    kernel = np.asarray(kernel)
    sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
    assert float(estimates[name]) == pytest.approx(sigma, rel=1e-4), name


def test_spectral_norm_keeps_the_kernels_largest_singular_value_at_one():
  """After training steps with --spectral_norm=gd (SNGAN's recipe), every kernel D and G use
  (the stored vectors' estimate) has σ ≈ 1 by NumPy's SVD, and samples come from the
  normalised G."""
  config = tiny_config(**SNGAN)
  state, _ = run(1, 20, random_images(64), **SNGAN)
  for params, vectors in ((state.d_params, state.d_sn), (state.g_params, state.g_sn)):
    assert vectors
    normalized = spectral_norm.normalize(params, vectors)
    for name, kernel in spectral_norm.kernels(normalized).items():
      kernel = np.asarray(kernel)
      sigma = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
      assert sigma == pytest.approx(1.0, abs=0.1), name
  sampled = state_lib.sample_params(config, state)
  expected = spectral_norm.normalize(state.ema_params, state.g_sn)
  for a, b in zip(jax.tree.leaves(sampled), jax.tree.leaves(expected), strict=True):
    np.testing.assert_array_equal(a, b)


def grey_faces(first, n=64, size=32):
  """synthetic_faces' faces first, ..., first + n - 1 as grey photos (three equal channels), in
  [-1, 1]."""
  faces = np.stack([synthetic_faces.render_face(0, i, size)[0] for i in range(first, first + n)])
  return faces.mean(-1, keepdims=True).repeat(3, -1).astype(np.float32) / 127.5 - 1


def one_face_drawn_again(face, seed, n=64):
  """A G collapsed to `face`: n draws of it, each with its own contrast and brightness and
  pixel noise (standard deviations 0.05 of the gain's log, 0.045 and 0.045 in [-1, 1])."""
  rng = np.random.default_rng(seed)
  gain = np.exp(rng.normal(0, 0.05, (n, 1, 1, 1)))
  shift = rng.normal(0, 0.045, (n, 1, 1, 1))
  return np.clip(face * gain + shift + rng.normal(0, 0.045, (n,) + face.shape), -1, 1)


def distinctness_and_diversity(fake, real, num_devices):
  """The step's `distinctness` and `diversity` of these global batches on `num_devices`."""
  mesh = mesh_lib.make_mesh(num_devices)
  metrics = jax.jit(jax.shard_map(
      lambda fake, real: (step_lib.distinctness(fake, real),
                          step_lib.batch_spread(fake) / step_lib.batch_spread(real)),
      mesh=mesh, in_specs=(P(mesh_lib.DATA_AXIS),) * 2, out_specs=(P(), P())))
  sharding = NamedSharding(mesh, P(mesh_lib.DATA_AXIS))
  return tuple(float(m) for m in metrics(jax.device_put(fake, sharding),
                                         jax.device_put(real, sharding)))


def test_distinctness_sees_one_face_drawn_with_noise_and_lighting_as_collapse():
  """Issue 33's run: G drew one face with varying noise and lighting, and the per-pixel
  `diversity` hovered at 0.17-0.21 around its threshold of 0.2, so `collapse` never fired.
  `distinctness` puts such batches near 0, far under health's threshold, and other faces
  and other smooth images far over it, the same on 1 and 2 devices; health flags the fall
  after `patience` log intervals."""
  real = grey_faces(0)
  smooth = jax.image.resize(np.random.default_rng(0).normal(0, 0.5, (64, 4, 4, 1)),
                            (64, 32, 32, 3), 'linear')
  healthy = []
  for distinct in (grey_faces(64), np.asarray(smooth, np.float32)):
    distinctness = distinctness_and_diversity(distinct, real, 1)[0]
    assert distinctness > 2.5 * health.DISTINCTNESS_MIN, distinctness  # other faces: ~1.0
    assert distinctness_and_diversity(distinct, real, 2)[0] == pytest.approx(distinctness,
                                                                             rel=1e-6)
    healthy.append(distinctness)
  collapsed = []
  for face in range(5):
    fake = one_face_drawn_again(real[face], seed=face)
    distinctness, diversity = distinctness_and_diversity(fake, real, 1)
    assert 0.17 <= diversity <= 0.21, (face, diversity)  # the case the old metric missed
    assert distinctness < 0.1 * health.DISTINCTNESS_MIN, (face, distinctness)  # ~0.001
    assert distinctness_and_diversity(fake, real, 2)[0] == pytest.approx(distinctness,
                                                                         rel=1e-6)
    collapsed.append(dict(distinctness=distinctness, diversity=diversity))
  monitor = health.Health(patience=5)
  logs = [dict(distinctness=d, diversity=0.9) for d in healthy * 3] + collapsed
  flags = [monitor.update(step, dict(m, d_real=0.7, d_fake=0.3, g_loss=1.0))['collapse']
           for step, m in enumerate(logs)]
  assert flags == [0] * 10 + [1]


def test_distinctness_ignores_noise_and_lighting_of_distinct_images_and_blank_batches():
  """Brightness, contrast and pixel noise on each of a real batch's images leave its
  distinctness against the clean batch near 1; a batch of blank images of the fakes or the
  reals gives a finite value (a non-finite metric would stop the run)."""
  real = grey_faces(0)
  jittered = np.stack([one_face_drawn_again(face, seed=i, n=1)[0]
                       for i, face in enumerate(real)])
  assert distinctness_and_diversity(jittered, real, 2)[0] == pytest.approx(1.0, abs=0.05)
  blank = np.zeros_like(real)
  assert distinctness_and_diversity(blank, real, 2)[0] == 0.0
  assert np.isfinite(distinctness_and_diversity(real, blank, 2)[0])
