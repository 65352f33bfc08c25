"""The train state, the data-parallel train step, and the training loop."""

import collections
import functools
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from facegan_jax import checkpoint, logbook, losses, models, preemption, runtime
from facegan_jax import health as health_lib
from facegan_jax import config as config_lib
from facegan_jax import pipeline
from facegan_jax.models.batchnorm import channel_sums

DATA_AXIS = pipeline.DATA_AXIS


@flax.struct.dataclass
class TrainState:
  """Everything a resume needs. The data position is `step` itself (see pipeline.py)."""
  step: jax.Array
  g_params: Any
  g_stats: Any  # BatchNorm running statistics; the EMA generator shares them (as StyleGAN2)
  d_params: Any
  d_stats: Any
  g_opt: Any
  d_opt: Any
  ema_params: Any
  rng: jax.Array  # raw uint32 key: data order and per-step randomness derive from it


@flax.struct.dataclass
class Setup:
  """The static half of a run: model graphs and optimizers."""
  g_graph: Any = flax.struct.field(pytree_node=False)
  d_graph: Any = flax.struct.field(pytree_node=False)
  tx_g: Any = flax.struct.field(pytree_node=False)
  tx_d: Any = flax.struct.field(pytree_node=False)


def make_setup(config):
  g, d = nnx.eval_shape(lambda: models.build(config, nnx.Rngs(0)))
  return Setup(g_graph=nnx.graphdef(g), d_graph=nnx.graphdef(d),
               tx_g=optax.adam(config.lr_g, config.beta1, config.beta2),
               tx_d=optax.adam(config.lr_d, config.beta1, config.beta2))


def init_state(config, setup):
  """A fresh state; pure, so `jax.eval_shape(init_state)` gives the layout for restoring."""
  g, d = models.build(config, nnx.Rngs(config.seed))
  _, g_params, g_stats = nnx.split(g, nnx.Param, nnx.BatchStat)
  _, d_params, d_stats = nnx.split(d, nnx.Param, nnx.BatchStat)
  return TrainState(
      step=jnp.zeros((), jnp.int32), g_params=g_params, g_stats=g_stats, d_params=d_params,
      d_stats=d_stats, g_opt=setup.tx_g.init(g_params), d_opt=setup.tx_d.init(d_params),
      ema_params=g_params, rng=jax.random.PRNGKey(config.seed + 1))


def example_keys(key, num_local):
  """One key per example of this device's slice, from its global index in the batch.

  Latents and dropout masks then belong to the example, not to the device that holds it, so a
  run is the same on any number of devices.
  """
  first = jax.lax.axis_index(DATA_AXIS) * num_local
  return jax.vmap(jax.random.fold_in, (None, 0))(key, first + jnp.arange(num_local))


def train_step(state, real, rng, *, config, setup):
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
    g = nnx.merge(setup.g_graph, g_params, state.g_stats, copy=True)
    return g(z, train=True), nnx.state(g, nnx.BatchStat)

  # G runs forward once: D's update sees the fakes, G's update pulls back through this vjp.
  fake, g_vjp, g_stats = jax.vjp(generate, g_params, has_aux=True)

  def d_objective(d_params):
    d = nnx.merge(setup.d_graph, d_params, state.d_stats, copy=True)
    # Two calls, as PyTorch's loop makes: each batch gets its own BatchNorm statistics (one
    # joint pass over both measured no faster on CPU).
    real_logits = d(real, train=True, dropout_keys=drop_real)
    fake_logits = d(jax.lax.stop_gradient(fake), train=True, dropout_keys=drop_fake)
    d_loss = d_loss_fn(real_logits, fake_logits, config.label_smoothing)
    return d_loss, (nnx.state(d, nnx.BatchStat), real_logits, fake_logits)

  (d_loss, (d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
      d_objective, has_aux=True)(d_params)
  d_grads = jax.lax.pmean(d_grads, DATA_AXIS)
  d_updates, d_opt = setup.tx_d.update(d_grads, state.d_opt, state.d_params)
  new_d_params = optax.apply_updates(state.d_params, d_updates)

  def g_objective(fake):
    d = nnx.merge(setup.d_graph, new_d_params, d_stats, copy=True)
    return g_loss_fn(d(fake, train=True, dropout_keys=drop_g))

  g_loss, fake_grads = jax.value_and_grad(g_objective)(fake)
  (g_grads,) = g_vjp(fake_grads)
  g_grads = jax.lax.pmean(g_grads, DATA_AXIS)
  g_updates, g_opt = setup.tx_g.update(g_grads, state.g_opt, state.g_params)
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
  metrics.update(d_grad_norm=global_norm(d_grads), g_grad_norm=global_norm(g_grads))
  new_state = state.replace(
      step=state.step + 1, g_params=new_g_params, g_stats=g_stats, d_params=new_d_params,
      d_stats=d_stats, g_opt=g_opt, d_opt=d_opt, ema_params=ema_params)
  return new_state, metrics


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


def make_train_fn(config, setup, mesh, host_input=False, static_steps=None):
  """The compiled call over the mesh: (state, dataset shard, orders of this epoch and the next,
  number of steps n) -> (state, metrics of the last step) after n steps, n at most an epoch;
  or with `host_input` (state, uint8 global batch from pipeline.host_batches) -> the same
  after one step.

  The n steps are a loop whose trip count is an argument: every n runs the same compiled step,
  so K steps per call are bit for bit K calls of one. On GPUs (`static_steps` None: by backend)
  n is static, a compilation per n (a few per run): XLA on GPU reads a loop's condition back to
  the host every iteration unless it knows the trip count, so the host would wait every step.
  """

  def step(state, real):
    return train_step(state, real, jax.random.split(state.rng)[1], config=config, setup=setup)

  def steps_on_device(state, dataset, orders, num_steps):
    # orders[0] is the order of the call's first epoch, orders[1] of the next: a call of at
    # most one epoch's steps spans no more.
    steps_per_epoch = orders.shape[1] // config.batch_size
    first_epoch = state.step // steps_per_epoch

    def one(_, carry):
      state = carry[0]
      order = orders[state.step // steps_per_epoch - first_epoch]
      return step(state, pipeline.local_batch(
          dataset, pipeline.batch_indices(order, state.step, config.batch_size)))

    no_metrics = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype),
                              jax.eval_shape(one, 0, (state, None))[1])
    return jax.lax.fori_loop(0, num_steps, one, (state, no_metrics))

  on_mesh = functools.partial(jax.shard_map, mesh=mesh, out_specs=(P(), P()))
  if host_input:
    return jax.jit(on_mesh(lambda state, batch: step(state, pipeline.to_float(batch)),
                           in_specs=(P(), P(DATA_AXIS))), donate_argnums=0)
  if static_steps is None:
    static_steps = jax.default_backend() == 'gpu'
  if not static_steps:
    return jax.jit(on_mesh(steps_on_device, in_specs=(P(), P(DATA_AXIS), P(), P())),
                   donate_argnums=0)

  def call(state, dataset, orders, num_steps):
    return on_mesh(functools.partial(steps_on_device, num_steps=num_steps),
                   in_specs=(P(), P(DATA_AXIS), P()))(state, dataset, orders)
  return jax.jit(call, donate_argnums=0, static_argnums=3)


def data_key(state):
  return jax.random.split(state.rng)[0]


def make_sample_fn(setup):
  """Compiled G in inference mode: (params, stats, z) -> images in [-1, 1]."""
  return jax.jit(lambda params, stats, z: nnx.merge(setup.g_graph, params, stats)(
      z, train=False))


def generate_images(sample_fn, params, stats, z, batch_size=256):
  """uint8 images of G (`make_sample_fn`) for latents z, in batches."""
  return np.concatenate([pipeline.to_uint8(sample_fn(params, stats, z[i:i + batch_size]))
                         for i in range(0, len(z), batch_size)])


def make_mesh(config):
  devices = jax.devices()
  if config.num_devices > len(devices):
    raise config_lib.UsageError(f'--num_devices={config.num_devices} but only {len(devices)} '
                     f'{jax.default_backend()} devices are available')
  devices = devices[:config.num_devices or len(devices)]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices)


def restore_or_init(config, setup, ckpts, mesh):
  """The state to start from, and where it came from. In this order:

  1. the newest undamaged checkpoint in the workdir (resume: the whole state);
  2. else --init_checkpoint (a run's workdir, its checkpoints/ or one step in it): its weights,
     BatchNorm statistics and EMA generator, with fresh optimizers, step 0 and this run's seed;
  3. else a fresh state from --seed.
  """
  replicated = NamedSharding(mesh, P())
  init = functools.partial(init_state, config, setup)
  abstract = checkpoint.abstract_like(jax.eval_shape(init), replicated)
  state = ckpts.restore(abstract)
  if state is not None:
    return state, f'Resuming at step {int(state.step)}'
  fresh = jax.jit(init, out_shardings=replicated)()
  if not config.init_checkpoint:
    return fresh, 'Starting at step 0'
  directory, step = _checkpoint_location(config.init_checkpoint)
  source = checkpoint.Checkpoints(directory, config=config, read_only=True)
  loaded = source.restore(abstract, step=step, what='--init_checkpoint')
  source.close()
  if loaded is None:
    raise config_lib.UsageError(f'--init_checkpoint={config.init_checkpoint}: no undamaged '
                                f'checkpoint in {directory}')
  state = fresh.replace(g_params=loaded.g_params, g_stats=loaded.g_stats,
                        d_params=loaded.d_params, d_stats=loaded.d_stats,
                        ema_params=loaded.ema_params)
  return state, (f'Starting at step 0 from the weights of step {int(loaded.step)} in '
                 f'{directory}')


def _checkpoint_location(path):
  """(checkpoints directory, step or None for the newest) named by --init_checkpoint."""
  path = os.path.abspath(path)
  if os.path.basename(path).isdigit() and os.path.isdir(path):
    return os.path.dirname(path), int(os.path.basename(path))
  if os.path.isdir(os.path.join(path, 'checkpoints')):
    return os.path.join(path, 'checkpoints'), None
  if os.path.isdir(path):
    return path, None
  raise config_lib.UsageError(f'--init_checkpoint={path} does not exist')


def sample_params(config, state):
  return state.ema_params if config.ema_decay > 0 else state.g_params


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint."""
  # Imported here: the step itself (benchmarks/) needs neither TFDS nor matplotlib.
  from facegan_jax import data, visualize  # noqa: PLC0415
  mesh = make_mesh(config)
  num_devices = mesh.shape[DATA_AXIS]
  config_lib.validate(config, num_devices)
  data.check_dataset(config.dataset)
  setup = make_setup(config)
  ckpts = checkpoint.Checkpoints(os.path.join(workdir, 'checkpoints'),
                                 keep=config.keep_checkpoints, config=config)
  state, origin = restore_or_init(config, setup, ckpts, mesh)
  step = int(state.step)
  images = pipeline.load_training_images(config)
  if len(images) < config.batch_size:
    raise config_lib.UsageError(f'{config.dataset} has {len(images)} training images, fewer '
                                f'than --batch_size={config.batch_size}')
  logging.info('%s on %d %s device(s); %d training images', origin, num_devices,
               jax.default_backend(), len(images))
  writer = runtime.writes_files()  # process 0 writes the files; every process computes
  if writer:  # once the flags are known to work with this workdir: a --flagfile to rerun it
    os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
    with open(os.path.join(workdir, 'flags.txt'), 'w') as f:
      f.write(config.to_flags() + f'--workdir={workdir}\n')

  steps_per_epoch = len(images) // config.batch_size
  key = data_key(state)  # the order's key, taken now: steps donate the state's buffers
  epoch_order = functools.lru_cache(maxsize=3)(lambda epoch: jax.device_put(
      pipeline.epoch_order(key, epoch, len(images)), NamedSharding(mesh, P())))
  if writer:
    first_batch = np.asarray(epoch_order(0)[:min(config.batch_size, 64)])
    visualize.save_grid(images[first_batch], os.path.join(workdir, 'real_batch.png'))
  epoch = step // steps_per_epoch
  host_input = config.input == 'host' or (
      config.input == 'auto' and not pipeline.fits_on_devices(images, mesh))
  steps_per_call = config_lib.check_steps_per_call(config, steps_per_epoch, host_input)
  logging.info('Input: %s (%.1f MB of images)', 'host, a few batches ahead' if host_input else
               'the whole dataset on the devices', images.nbytes / 1e6)
  if host_input:
    batches = pipeline.host_batches(images, epoch_order, config.batch_size, mesh, step,
                                    config.num_steps)
    next_inputs = lambda num_steps: (next(batches),)  # noqa: E731
  else:
    dataset = pipeline.shard_dataset(images, mesh)
    orders = lambda epoch: jnp.stack([epoch_order(epoch), epoch_order(epoch + 1)])  # noqa: E731
    epoch_orders = orders(epoch)
    next_inputs = lambda num_steps: (dataset, epoch_orders, num_steps)  # noqa: E731
  train_fn = make_train_fn(config, setup, mesh, host_input)
  sample_fn = make_sample_fn(setup)
  fixed_z = jax.random.normal(jax.random.PRNGKey(config.sample_seed), (64, config.z_dim))
  metrics_path = os.path.join(workdir, 'metrics.jsonl')

  if writer:  # drop the lines a killed run logged after its last checkpoint
    logbook.truncate(metrics_path, step)
  health = health_lib.Health()
  periodic = None
  if config.eval_every:
    from facegan_jax.evaluation import periodic as periodic_lib  # imports this module
    periodic = periodic_lib.PeriodicEval(config, workdir, metrics_path)

  timer_start, timer_step, synced = None, step, False
  in_flight = collections.deque()
  try:
    with preemption.StopSignals() as stop:
      while step < config.num_steps:
        if not host_input and step // steps_per_epoch != epoch:
          epoch = step // steps_per_epoch
          epoch_orders = orders(epoch)
        num_steps = config_lib.call_length(config, step, steps_per_call)
        state, metrics = train_fn(state, *next_inputs(num_steps))
        step += num_steps
        # At most two calls queued ahead of the devices: a stop request waits for one call,
        # not for every call dispatched since the last log.
        in_flight.append(metrics)
        if len(in_flight) > 2:
          jax.block_until_ready(in_flight.popleft())
        if timer_start is None:  # the first call compiles: keep it out of images_per_sec
          jax.block_until_ready(state)
          timer_start, timer_step = time.perf_counter(), step
        last = step == config.num_steps
        if step % config.log_every == 0 or last:
          metrics = logbook.checked(metrics, step)
          elapsed = time.perf_counter() - timer_start
          if step > timer_step:
            metrics['images_per_sec'] = (step - timer_step) * config.batch_size / elapsed
            metrics['steps_per_sec'] = (step - timer_step) / elapsed
          metrics = health.update(step, metrics)
          if writer:
            logbook.append(metrics_path, step, config.num_steps, metrics)
          synced = True
        if step % config.sample_every == 0 or last:
          fake = pipeline.to_uint8(sample_fn(sample_params(config, state), state.g_stats, fixed_z))
          if writer:
            visualize.save_grid(fake, os.path.join(workdir, 'samples', f'step_{step:07d}.png'))
            visualize.plot_losses(metrics_path, os.path.join(workdir, 'losses.png'))
          synced = True
        if periodic and (step % config.eval_every == 0 or last) and not stop.requested:
          periodic(state, step, functools.partial(
              generate_images, sample_fn, sample_params(config, state), state.g_stats))
          synced = True
        if step % config.checkpoint_every == 0 or last or stop.requested:
          logbook.checked(metrics, step)  # never save the state of a step with a non-finite metric
          started = time.perf_counter()
          ckpts.save(state, step)  # blocks until the state is copied off the devices
          logging.info('Saving checkpoint %d (%.2f s blocking, the rest in the background)',
                       step, time.perf_counter() - started)
          synced = True
        if stop.requested:
          break
        if synced:  # every queued step has run: restart the clock, leaving out logging and I/O
          timer_start, timer_step, synced = time.perf_counter(), step, False
  except BaseException:
    for manager in (ckpts, periodic):  # let saves in flight finish; report the error above
      if manager:
        manager.close(quiet=True)
    raise
  ckpts.close()
  if periodic:
    periodic.close()
  if stop.requested:
    logging.info('Stopped by %s at step %d; checkpoint saved in %s. Rerun the same command to '
                 'resume.', stop.requested, step, ckpts.directory)
  return state
