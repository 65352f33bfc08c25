"""The train step, a pure function of (state, this device's slice of the batch, key): one D
update then one G update inside shard_map over the `data` mesh axis; and its compiled call.
"""

import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from facegan_jax import losses
from facegan_jax.data import pipeline
from facegan_jax.mesh import DATA_AXIS
from facegan_jax.models.reductions import channel_sums


def example_keys(key, num_local):
  """One key per example of this device's slice, from its global index in the batch.

  Latents and dropout masks then belong to the example, not to the device that holds it, so a
  run is the same on any number of devices.
  """
  first = jax.lax.axis_index(DATA_AXIS) * num_local
  return jax.vmap(jax.random.fold_in, (None, 0))(key, first + jnp.arange(num_local))


def train_step(state, real, rng, *, config):
  """One D update then one G update on this device's slice `real` of the global batch."""
  rng = jax.random.fold_in(rng, state.step)
  z_key, drop_key = jax.random.split(rng)
  n = real.shape[0]
  z = jax.vmap(lambda k: jax.random.normal(k, (config.z_dim,)))(example_keys(z_key, n))
  drop_real, drop_fake, drop_g = (example_keys(k, n) for k in jax.random.split(drop_key, 3))
  d_loss_fn, g_loss_fn = losses.LOSSES[config.loss]
  # Per-device gradients, averaged explicitly below (pmap style).
  g_params = jax.lax.pcast(state.g_params, DATA_AXIS, to='varying')
  d_params = jax.lax.pcast(state.d_params, DATA_AXIS, to='varying')

  def generate(g_params):
    g = nnx.merge(state.g_graph, g_params, state.g_stats, copy=True)
    return g(z, train=True), nnx.state(g, nnx.BatchStat)

  # G runs forward once: D's update sees the fakes, G's update pulls back through this vjp.
  fake, g_vjp, g_stats = jax.vjp(generate, g_params, has_aux=True)

  def d_forward(d_params, d_stats, x, keys):
    d = nnx.merge(state.d_graph, d_params, d_stats, copy=True)
    return d(x, train=True, dropout_keys=keys), nnx.state(d, nnx.BatchStat)

  def d_objective(d_params):
    # Two calls, as PyTorch's loop makes: each batch gets its own BatchNorm statistics (one
    # joint pass over both measured no faster on CPU).
    if config.r1_gamma:
      real_logits, d_stats, r1 = r1_pass(d_forward, d_params, state.d_stats, real, drop_real,
                                         state.step, config)
    else:
      (real_logits, d_stats), r1 = d_forward(d_params, state.d_stats, real, drop_real), 0.0
    fake_logits, d_stats = d_forward(d_params, d_stats, jax.lax.stop_gradient(fake), drop_fake)
    d_loss = d_loss_fn(real_logits, fake_logits, config.label_smoothing)
    return d_loss + r1, (d_stats, real_logits, fake_logits, d_loss, r1)

  (_, (d_stats, real_logits, fake_logits, d_loss, r1)), d_grads = jax.value_and_grad(
      d_objective, has_aux=True)(d_params)
  d_grads = jax.lax.pmean(d_grads, DATA_AXIS)
  d_updates, d_opt = state.tx_d.update(d_grads, state.d_opt, state.d_params)
  new_d_params = optax.apply_updates(state.d_params, d_updates)

  def g_objective(fake):
    d = nnx.merge(state.d_graph, new_d_params, d_stats, copy=True)
    return g_loss_fn(d(fake, train=True, dropout_keys=drop_g))

  g_loss, fake_grads = jax.value_and_grad(g_objective)(fake)
  (g_grads,) = g_vjp(fake_grads)
  g_grads = jax.lax.pmean(g_grads, DATA_AXIS)
  g_updates, g_opt = state.tx_g.update(g_grads, state.g_opt, state.g_params)
  new_g_params = optax.apply_updates(state.g_params, g_updates)

  # Warm-up as TF's ExponentialMovingAverage: early samples are not stuck near the init.
  decay = jnp.minimum(config.ema_decay, (1.0 + state.step) / (10.0 + state.step))
  ema_params = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p,
                            state.ema_params, new_g_params)

  metrics = jax.lax.pmean(dict(
      d_loss=d_loss, g_loss=g_loss,
      d_real=jax.nn.sigmoid(real_logits).mean(), d_fake=jax.nn.sigmoid(fake_logits).mean()),
      DATA_AXIS)
  metrics['diversity'] = batch_spread(fake) / batch_spread(real)
  if config.r1_gamma:
    metrics['r1'] = r1
  metrics.update(d_grad_norm=global_norm(d_grads), g_grad_norm=global_norm(g_grads))
  new_state = state.replace(
      step=state.step + 1, g_params=new_g_params, g_stats=g_stats, d_params=new_d_params,
      d_stats=d_stats, g_opt=g_opt, d_opt=d_opt, ema_params=ema_params)
  return new_state, metrics


def r1_penalty(x_grads):
  """E‖∇ₓD(x)‖² over the global batch (inside shard_map), from this device's input gradients."""
  per_example = jnp.square(x_grads.astype(jnp.float32)).reshape(x_grads.shape[0], -1).sum(-1)
  return jax.lax.pmean(per_example.mean(), DATA_AXIS)


def r1_pass(d_forward, d_params, d_stats, real, keys, step, config):
  """D on the reals with the R1 penalty (Mescheder et al. 2018): γ/2 · E‖∇ₓD(x)‖², the
  gradient of the summed logits with respect to the real images, differentiable in D's
  parameters (the layers' own backward passes are differentiated again). Lazily, as
  StyleGAN2: every --r1_every steps, scaled by that interval, and 0 between.

  Returns (real logits, D's BatchNorm statistics, the penalty added to D's loss).
  """
  def with_r1(real):
    logits, x_vjp, stats = jax.vjp(lambda x: d_forward(d_params, d_stats, x, keys), real,
                                   has_aux=True)
    (x_grads,) = x_vjp(jnp.ones_like(logits))
    scale = 0.5 * config.r1_gamma * config.r1_every
    return logits, stats, scale * r1_penalty(x_grads)

  def without(real):
    logits, stats = d_forward(d_params, d_stats, real, keys)
    return logits, stats, jnp.zeros((), jnp.float32)

  if config.r1_every == 1:
    return with_r1(real)
  return jax.lax.cond(step % config.r1_every == 0, with_r1, without, real)


def batch_spread(images):
  """Per-pixel standard deviation over the global batch, averaged over pixels (inside
  shard_map; sums as matrix-vector products, exact on any number of devices)."""
  flat = images.reshape(images.shape[0], -1)
  ones = jnp.ones((flat.shape[0],), flat.dtype)
  n = flat.shape[0] * jax.lax.axis_size(DATA_AXIS)
  mean = jax.lax.psum(ones @ flat, DATA_AXIS) / n
  mean_square = jax.lax.psum(ones @ (flat * flat), DATA_AXIS) / n
  return jnp.sqrt(jnp.maximum(mean_square - mean * mean, 0.0)).mean()


def global_norm(tree):
  """optax.global_norm with the squares summed as matrix-vector products: XLA on CPU turns
  large sum reductions (and vector dot products) into slow reduce-windows, ~10 ms of a dcgan64
  step; its matrix products are fast."""
  return jnp.sqrt(sum(channel_sums(jnp.square(x))[0].sum() for x in jax.tree.leaves(tree)))


def make_train_fn(config, mesh, on_host=False, static_steps=None):
  """The jitted call over the mesh: (state, inputs, n) -> (state, metrics of the last step)
  after n steps, `inputs` being data/pipeline.Input's for the call.

  On the devices, inputs are (dataset shard, orders of this epoch and the next), n at most an
  epoch; the n steps are a loop whose trip count is an argument, so every n runs the same
  compiled step and K steps per call are bit for bit K calls of one. On GPUs (`static_steps`
  None: by backend) n is static, a compilation per n (a few per run): XLA on GPU reads a
  loop's condition back to the host every iteration unless it knows the trip count, so the
  host would wait every step. `on_host`: inputs are one uint8 global batch and n is 1.
  """

  def one_step(state, real):
    return train_step(state, real, jax.random.split(state.rng)[1], config=config)

  def steps_on_device(state, inputs, num_steps):
    dataset, orders = inputs
    steps_per_epoch = pipeline.steps_per_epoch(orders.shape[1], config.batch_size)
    first_epoch = state.step // steps_per_epoch

    # jit: the loop's body is traced once, by eval_shape (for the metrics' zeros), and the
    # loop reuses that trace (~1 s less of tracing at dcgan64); XLA inlines the call.
    @jax.jit
    def next_step(state):
      order = orders[state.step // steps_per_epoch - first_epoch]
      return one_step(state, pipeline.local_batch(
          dataset, pipeline.batch_indices(order, state.step, config.batch_size)))

    no_metrics = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype),
                              jax.eval_shape(next_step, state)[1])
    return jax.lax.fori_loop(0, num_steps, lambda _, carry: next_step(carry[0]),
                             (state, no_metrics))

  on_mesh = functools.partial(jax.shard_map, mesh=mesh, out_specs=(P(), P()))
  if on_host:  # n is 1
    call = on_mesh(lambda state, batch: one_step(state, pipeline.to_float(batch)),
                   in_specs=(P(), P(DATA_AXIS)))
    return jax.jit(lambda state, batch, num_steps: call(state, batch), donate_argnums=0,
                   static_argnums=2)
  if static_steps is None:
    static_steps = jax.default_backend() == 'gpu'
  in_specs = (P(), (P(DATA_AXIS), P()))
  if not static_steps:
    return jax.jit(on_mesh(steps_on_device, in_specs=in_specs + (P(),)), donate_argnums=0)

  def static_call(state, inputs, num_steps):
    return on_mesh(functools.partial(steps_on_device, num_steps=num_steps),
                   in_specs=in_specs)(state, inputs)
  return jax.jit(static_call, donate_argnums=0, static_argnums=2)
