"""The train step, a pure function of (state, this device's slice of the batch, key): D's
updates (--d_steps) then one G update, inside shard_map over the `data` mesh axis; and its
compiled call.

The step orchestrates: --loss's objective (objectives/) computes each loss with its
penalties, the critic applies --augment and spectral norm, and schedules.py gives every value
that changes over the run.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from facegan_jax import objectives, schedules
from facegan_jax.augment import ada
from facegan_jax.data import pipeline
from facegan_jax.mesh import DATA_AXIS
from facegan_jax.models import spectral_norm
from facegan_jax.models.conditioning import of_classes
from facegan_jax.objectives.critic import Critic, lazily_due
from facegan_jax.ops import channel_sums


def example_keys(key, num_local):
  """One key per example of this device's slice, from its global index in the batch.

  Latents and dropout masks then belong to the example, not to the device that holds it, so a
  run is the same on any number of devices.
  """
  first = jax.lax.axis_index(DATA_AXIS) * num_local
  return jax.vmap(jax.random.fold_in, (None, 0))(key, first + jnp.arange(num_local))


def train_step(state, batch, rng, *, config, penalty_due=None):
  """--d_steps D updates then one G update on this device's slice `batch` of the step's
  batches (d_steps global batches, this device's rows of each in turn: pipeline.batch_indices):
  (images, their class codes or None). Under --condition the fakes are drawn for the reals'
  classes, so G and D see the classes as often as the data has them.
  `penalty_due`: whether the last D update takes the lazy penalties, where the compilation
  knows it (TrainFn); None: decided from the step.
  """
  real, labels = batch
  rng = jax.random.fold_in(rng, state.step)
  if config.augment_p is not None:  # p set by its schedule, not adapted
    state = state.replace(ada_p=jnp.float32(schedules.of(config, 'augment_p')(state.step)))
  reals = real.reshape((config.d_steps, -1) + real.shape[1:])
  n = reals.shape[1]
  labels = None if labels is None else labels.reshape(config.d_steps, n)
  if config.d_steps > 1:
    # SNGAN's n_dis: the extra D updates, each on its own reals and fresh fakes of this G.
    def extra_update(state, xs):
      real, classes, i = xs
      keys = StepKeys(jax.random.fold_in(rng, 2 + i), n, config)
      fake, g_stats = generate(state, state.g_params, state.g_sn, keys.z, classes)
      state, _ = d_update(state.replace(g_stats=g_stats), real, classes, fake, keys,
                          state.step * config.d_steps + i, config)
      return state, None
    state, _ = jax.lax.scan(extra_update, state, (
        reals[:-1], None if labels is None else labels[:-1], jnp.arange(config.d_steps - 1)))
  labels = None if labels is None else labels[-1]
  keys = StepKeys(rng, n, config)
  objective = objectives.get(config.loss)
  # Per-device gradients, averaged explicitly below (pmap style).
  g_params = jax.lax.pcast(state.g_params, DATA_AXIS, to='varying')
  g_sn = spectral_norm.power_iteration(state.g_params, state.g_sn)

  # G runs forward once: D's update sees the fakes, G's update pulls back through this vjp.
  fake, g_vjp, g_stats = jax.vjp(lambda p: generate(state, p, g_sn, keys.z, labels),
                                 g_params, has_aux=True)
  state, d_out = d_update(state, reals[-1], labels, fake, keys,
                          state.step * config.d_steps + config.d_steps - 1, config, penalty_due)

  d = critic(state, state.d_params, state.d_sn, config, real=(keys.drop_real, keys.aug_real),
             fake=(keys.drop_g, keys.aug_g), labels=labels)
  g_loss, fake_grads = jax.value_and_grad(
      lambda fake: objective.g_loss(d, reals[-1], fake, config))(fake)
  (g_grads,) = g_vjp(fake_grads)
  g_grads = jax.lax.pmean(g_grads, DATA_AXIS)
  g_updates, g_opt = state.tx_g.update(g_grads, state.g_opt, state.g_params)
  new_g_params = optax.apply_updates(state.g_params, g_updates)

  decay = schedules.ema_decay(config, state.step)
  ema_params = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p,
                            state.ema_params, new_g_params)

  metrics = jax.lax.pmean(dict(
      d_loss=d_out['d_loss'], g_loss=g_loss, d_real=jax.nn.sigmoid(d_out['real_logits']).mean(),
      d_fake=jax.nn.sigmoid(d_out['fake_logits']).mean()), DATA_AXIS)
  metrics['diversity'] = batch_spread(fake) / batch_spread(reals[-1])
  metrics['distinctness'] = distinctness(fake, reals[-1])
  metrics.update(d_out['metrics'])
  if config.augment == 'ada':
    metrics['ada_p'] = d_out['ada_p']
  metrics.update(d_grad_norm=global_norm(d_out['d_grads']), g_grad_norm=global_norm(g_grads))
  new_state = state.replace(step=state.step + 1, g_params=new_g_params, g_stats=g_stats,
                            g_opt=g_opt, ema_params=ema_params, g_sn=g_sn)
  return new_state, metrics


class StepKeys:
  """The per-example keys of one D update (and of the G update that follows the last): from
  each example's global index, so the run is the same on any number of devices."""

  def __init__(self, rng, n, config):
    z_key, drop_key = jax.random.split(rng)
    self.z = jax.vmap(lambda k: jax.random.normal(k, (config.z_dim,)))(example_keys(z_key, n))
    self.drop_real, self.drop_fake, self.drop_g = (
        example_keys(k, n) for k in jax.random.split(drop_key, 3))
    aug_key = jax.random.fold_in(rng, 1)
    self.aug_real, self.aug_fake, self.aug_g, self.objective = (
        example_keys(k, n) for k in jax.random.split(aug_key, 4))


def generate(state, g_params, g_sn, z, labels=None):
  """(fakes of G with `g_params`, spectrally normalised with `g_sn`, in train mode, of the
  classes `labels` under --condition; G's new BatchNorm statistics)."""
  g = nnx.merge(state.g_graph, spectral_norm.normalize(g_params, g_sn), state.g_stats,
                copy=True)
  return g(z, train=True, **of_classes(labels)), nnx.state(g, nnx.BatchStat)


def critic(state, d_params, d_sn, config, *, real, fake, labels=None, penalty_due=None):
  """D of `state` with `d_params` and spectral-norm vectors `d_sn`, as the objective sees it;
  `real` and `fake` are the (dropout, augmentation) keys of its 'real' and 'fake' calls, and
  `labels` the classes of both (fakes are drawn for the reals' classes)."""
  return Critic(params=d_params, sn=d_sn, stats=state.d_stats,
                dropout_keys=dict(real=real[0], fake=fake[0]),
                augment_keys=dict(real=real[1], fake=fake[1]), ada_p=state.ada_p,
                labels=labels, graph=state.d_graph, config=config, penalty_due=penalty_due)


def d_update(state, real, labels, fake, keys, d_step, config, penalty_due=None):
  """One D update by --loss's objective on this device's `real` and `fake` (G's output, not
  differentiated here), both of the classes `labels` under --condition; D's spectral-norm
  vectors take one power iteration and ADA's p one adjustment.

  Returns (state with D's parameters, statistics, optimizer, vectors and p updated, D's
  outputs: the objective's, D's gradients and p).
  """
  objective = objectives.get(config.loss)
  d_sn = spectral_norm.power_iteration(state.d_params, state.d_sn)
  fake = jax.lax.stop_gradient(fake)

  def d_loss(d_params):
    d = critic(state, d_params, d_sn, config, real=(keys.drop_real, keys.aug_real),
               fake=(keys.drop_fake, keys.aug_fake), labels=labels, penalty_due=penalty_due)
    loss, d, out = objective.d_loss(d, real, fake, config, d_step=d_step,
                                    example_keys=keys.objective)
    return loss, dict(out, d_stats=d.stats)

  d_params = jax.lax.pcast(state.d_params, DATA_AXIS, to='varying')
  (_, out), d_grads = jax.value_and_grad(d_loss, has_aux=True)(d_params)
  d_grads = jax.lax.pmean(d_grads, DATA_AXIS)
  d_updates, d_opt = state.tx_d.update(d_grads, state.d_opt, state.d_params)
  ada_p = state.ada_p
  if config.augment == 'ada' and config.augment_p is None:
    ada_p = ada.adjust(ada_p, out['real_logits'], config.ada_target, config.ada_kimg)
  out.update(d_grads=d_grads, ada_p=ada_p)
  return state.replace(d_params=optax.apply_updates(state.d_params, d_updates),
                       d_stats=out.pop('d_stats'), d_opt=d_opt, d_sn=d_sn, ada_p=ada_p), out


def batch_spread(images):
  """Per-pixel standard deviation over the global batch, averaged over pixels (inside
  shard_map)."""
  mean, mean_square = batch_moments(images.reshape(images.shape[0], -1))
  return jnp.sqrt(jnp.maximum(mean_square - mean * mean, 0.0)).mean()


# `distinctness`: how far apart the fakes of a batch are, relative to the reals, on a coarse
# grid that noise and global lighting do not reach (logs/health.py flags collapse by it).
STRUCTURE_CELLS = 8  # a side of the grid: noise averages out, eyes, mouth and hair stay apart
BLANK_CONTRAST = 1 / 127.5  # coarse contrast under one grey level: a blank image
SPREAD_FLOOR = 1e-6  # a real batch of identical images divides by this, not by 0


def distinctness(fake, real):
  """The fakes' spread of coarse structure (`structure_spread`) relative to the reals': ~1
  when G covers the data, near 0 when it draws one image (inside shard_map)."""
  return structure_spread(fake) / jnp.maximum(structure_spread(real), SPREAD_FLOOR)


def structure_spread(images):
  """Mean squared distance of the images' coarse structures from their mean over the global
  batch: half their mean squared pairwise distance, 0 for one image drawn again and again,
  at most 1 (inside shard_map). Summed from the gathered structures (64 numbers an image), the
  same sums on every device: the same value on any number of devices to float rounding, even
  for a collapsed batch, where mean square minus squared mean would cancel to noise."""
  structures = gather_rows(coarse_structure(images))
  centred = structures - structures.mean(0)
  return jnp.square(centred).sum() / structures.shape[0]


def coarse_structure(images):
  """(n, cells²) unit vectors: each image's grey levels averaged over a grid of
  STRUCTURE_CELLS² cells (pixel noise averages out), less their mean (brightness), divided by
  their norm (contrast)."""
  n, height, width, _ = images.shape
  cells = min(STRUCTURE_CELLS, height, width)
  grey = images.astype(jnp.float32).mean(-1)
  coarse = jnp.einsum('ih,nhw,jw->nij', box_weights(height, cells), grey,
                      box_weights(width, cells)).reshape(n, -1)
  centred = coarse - coarse.mean(-1, keepdims=True)
  norm_square = jnp.square(centred).sum(-1, keepdims=True)
  return centred * jax.lax.rsqrt(norm_square + cells * cells * BLANK_CONTRAST**2)


def box_weights(size, cells):
  """(cells, size) weights that average `size` pixels into `cells` equal cells, a pixel
  shared by two cells split by area."""
  edges = np.arange(cells + 1) * size / cells
  pixels = np.arange(size)
  overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
  return (np.clip(overlap, 0, None) * cells / size).astype(np.float32)


def gather_rows(local):
  """The global batch's rows from each device's `local` rows, on every device (inside
  shard_map): each device's rows placed among zeros, summed over the devices, exact since
  every sum has a single non-zero term."""
  rows = local.shape[0]
  zeros = jnp.zeros((rows * jax.lax.axis_size(DATA_AXIS),) + local.shape[1:], local.dtype)
  return jax.lax.psum(jax.lax.dynamic_update_slice_in_dim(
      zeros, local, jax.lax.axis_index(DATA_AXIS) * rows, 0), DATA_AXIS)


def batch_moments(flat):
  """(mean, mean square) of each column of `flat`, this device's rows of the global batch,
  over the global batch (inside shard_map; sums as matrix-vector products, exact on any
  number of devices)."""
  ones = jnp.ones((flat.shape[0],), flat.dtype)
  n = flat.shape[0] * jax.lax.axis_size(DATA_AXIS)
  return (jax.lax.psum(ones @ flat, DATA_AXIS) / n,
          jax.lax.psum(ones @ (flat * flat), DATA_AXIS) / n)


def global_norm(tree):
  """optax.global_norm with the squares summed as matrix-vector products: XLA on CPU turns
  large sum reductions (and vector dot products) into slow reduce-windows; its matrix
  products are fast."""
  return jnp.sqrt(sum(channel_sums(jnp.square(x))[0].sum() for x in jax.tree.leaves(tree)))


class TrainFn:
  """The compiled call: `fn(state, inputs, num_steps, step)` -> (state, metrics of its last
  step), `step` being the first step of the call. Two compilations at most: calls of one step
  run `one`, compiled without a loop, and longer calls `more` (None where every call is one
  step). XLA compiles code inside control flow less well on CPU: a loop's body, or a lax.cond
  branch, keeps its convolutions' derivatives in XLA's untransposed forms, which R1 and R2 make
  the bulk of a step (R3GAN's step ran 3.4x faster without the loop, and its lazily penalised
  step 18x slower under a lax.cond: benchmarks/RESULTS.md, "R3GAN on CPU"). So a call of one
  step also compiles in whether its lazy penalties are due (`penalty_due`): one compilation
  with them and one without where --r1_every > 1."""

  def __init__(self, config, one, more=None):
    self.config, self.one, self.more = config, one, more

  def __call__(self, state, inputs, num_steps, step=None):
    fn, static = self._compiled(num_steps, step)
    return fn(state, inputs, static)

  def lower(self, state, inputs, num_steps, step=None):
    fn, static = self._compiled(num_steps, step)
    return fn.lower(state, inputs, static)

  def _compiled(self, num_steps, step):
    """(the jitted function for a call of `num_steps` from `step`, its last argument)."""
    if num_steps == 1:
      return self.one, penalty_due(self.config, step)
    return self.more, num_steps


def penalty_due(config, step):
  """Whether the lazy penalties (--r1_every=k > 1: R1, and R2 where the objective takes it,
  on the last of every k D updates) fall on the last D update of train step `step`; None
  where every D update takes them, or where `step` is unknown (the compiled step then decides
  itself)."""
  if config.r1_every == 1 or step is None:
    return None
  return lazily_due(step * config.d_steps + config.d_steps - 1, config.r1_every)


def make_train_fn(config, mesh, on_host=False, static_steps=None):
  """The jitted call over the mesh, a TrainFn: (state, inputs, n, first step) -> (state,
  metrics of the last step) after n steps, `inputs` being data/pipeline.Input's for the call.

  On the devices, inputs are (dataset shard, orders of this epoch and the next), n at most an
  epoch; the n steps are a loop whose trip count is an argument, so every n > 1 runs the same
  compiled step, and a call of one step its own compilation without the loop; K steps per
  call are bit for bit K calls of one (tests/test_main.py). On GPUs (`static_steps` None: by
  backend) n is static, a compilation per n (a few per run): XLA on GPU reads a loop's
  condition back to the host every iteration unless it knows the trip count, so the host
  would wait every step. `on_host`: inputs are one uint8 global batch and n is 1.
  """

  def one_step(state, batch, due=None):
    return train_step(state, batch, jax.random.split(state.rng)[1], config=config,
                      penalty_due=due)

  def steps_on_device(state, inputs, num_steps, due=None):
    dataset, orders = inputs
    steps_per_epoch = pipeline.steps_per_epoch(orders.shape[1], pipeline.images_per_step(config))
    first_epoch = state.step // steps_per_epoch

    # jit: the loop's body is traced once, by eval_shape (for the metrics' zeros), and the
    # loop reuses that trace instead of tracing it again; XLA inlines the call.
    @jax.jit
    def next_step(state):
      order = orders[state.step // steps_per_epoch - first_epoch]
      return one_step(state, pipeline.local_examples(
          dataset, pipeline.batch_indices(order, state.step, config.batch_size, config.d_steps,
                                          jax.lax.axis_size(DATA_AXIS))), due)

    if isinstance(num_steps, int) and num_steps == 1:  # a call of one step: no loop
      return next_step(state)
    no_metrics = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype),
                              jax.eval_shape(next_step, state)[1])
    return jax.lax.fori_loop(0, num_steps, lambda _, carry: next_step(carry[0]),
                             (state, no_metrics))

  on_mesh = functools.partial(jax.shard_map, mesh=mesh, out_specs=(P(), P()))
  if on_host:  # n is 1
    def host_call(state, batch, due):
      return on_mesh(lambda state, batch: one_step(state, pipeline.host_examples(batch), due),
                     in_specs=(P(), P(DATA_AXIS)))(state, batch)
    return TrainFn(config, jax.jit(host_call, donate_argnums=0, static_argnums=2))
  if static_steps is None:
    static_steps = jax.default_backend() == 'gpu'
  in_specs = (P(), (P(DATA_AXIS), P()))

  def one(state, inputs, due):
    return on_mesh(functools.partial(steps_on_device, num_steps=1, due=due),
                   in_specs=in_specs)(state, inputs)
  one = jax.jit(one, donate_argnums=0, static_argnums=2)
  if not static_steps:
    return TrainFn(config, one, jax.jit(on_mesh(steps_on_device, in_specs=in_specs + (P(),)),
                                        donate_argnums=0))

  def static_call(state, inputs, num_steps):
    return on_mesh(functools.partial(steps_on_device, num_steps=num_steps),
                   in_specs=in_specs)(state, inputs)
  return TrainFn(config, one, jax.jit(static_call, donate_argnums=0, static_argnums=2))
