"""The training loop: compiled calls scheduled around logging, sampling, evaluation and
checkpoints, resumable at any step."""

import collections
import functools
import os
import time

import jax
from absl import logging

from facegan_jax import health as health_lib
from facegan_jax import mesh as mesh_lib
from facegan_jax import metrics_log, preemption, resume, runtime, step as step_lib, visualize
from facegan_jax import state as state_lib
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.config import validate
from facegan_jax.data import pipeline, sources
from facegan_jax.errors import UsageError
from facegan_jax.evaluation.periodic import PeriodicEval


def call_length(config, step, max_steps_per_call):
  """Steps of the call starting at `step`: `max_steps_per_call`, ending at the next step that
  logs, samples, evaluates, checkpoints or ends the run."""
  ends = [config.num_steps] + [(step // every + 1) * every for every in (
      config.log_every, config.sample_every, config.checkpoint_every, config.eval_every) if every]
  return min(max_steps_per_call, min(ends) - step)


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint."""
  mesh = mesh_lib.make_mesh(config.num_devices)
  num_devices = mesh.shape[mesh_lib.DATA_AXIS]
  validate(config, num_devices)
  sources.check_dataset(config.dataset)
  ckpts = Checkpoints(os.path.join(workdir, 'checkpoints'), keep=config.keep_checkpoints,
                      config=config)
  state, origin = resume.restore_or_init(config, ckpts, mesh)
  step = int(state.step)
  images = sources.load_training_images(config)
  if len(images) < config.batch_size:
    raise UsageError(f'{config.dataset} has {len(images)} training images, fewer than '
                     f'--batch_size={config.batch_size}')
  logging.info('%s on %d %s device(s); %d training images', origin, num_devices,
               jax.default_backend(), len(images))
  writer = runtime.writes_files()  # process 0 writes the files; every process computes
  if writer:  # once the flags are known to work with this workdir: a --flagfile to rerun it
    os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
    with open(os.path.join(workdir, 'flags.txt'), 'w') as f:
      f.write(config.to_flags() + f'--workdir={workdir}\n')

  # The order's key, taken now: steps donate the state's buffers.
  inputs = pipeline.Input(config, images, mesh, state_lib.data_key(state), step)
  if writer:
    first_batch = inputs.order(0)[:min(config.batch_size, 64)]
    visualize.save_grid(images[first_batch], os.path.join(workdir, 'real_batch.png'))
  logging.info('Input: %s (%.1f MB of images)', 'host, a few batches ahead' if inputs.on_host
               else 'the whole dataset on the devices', images.nbytes / 1e6)
  train_fn = step_lib.make_train_fn(config, mesh, inputs.on_host)
  sample_fn = state_lib.make_sample_fn(state)
  fixed_z = jax.random.normal(jax.random.PRNGKey(config.sample_seed), (64, config.z_dim))
  metrics_path = os.path.join(workdir, 'metrics.jsonl')

  health = health_lib.Health()
  if writer:  # the log up to this step, as an uninterrupted run has it; health's streaks too
    health.replay(metrics_log.repair(metrics_path, step))
  periodic = PeriodicEval(config, workdir, metrics_path) if config.eval_every else None

  timer_start, timer_step, synced = None, step, False
  in_flight = collections.deque()
  unclosed = [m for m in (ckpts, periodic) if m]  # their saves in flight end before we return
  try:
    with preemption.StopSignals() as stop:
      while step < config.num_steps:
        num_steps = call_length(config, step, inputs.max_steps_per_call)
        state, metrics = train_fn(state, inputs(step), num_steps)
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
          metrics = metrics_log.finite_floats(metrics, step)
          elapsed = time.perf_counter() - timer_start
          if step > timer_step:
            metrics['images_per_sec'] = (step - timer_step) * config.batch_size / elapsed
            metrics['steps_per_sec'] = (step - timer_step) / elapsed
          metrics = health.update(step, metrics)
          if writer:
            metrics_log.append(metrics_path, step, config.num_steps, metrics)
          synced = True
        params = state_lib.sample_params(config, state)
        if step % config.sample_every == 0 or last:
          fake = pipeline.to_uint8(sample_fn(params, state.g_stats, fixed_z))
          if writer:
            visualize.save_grid(fake, os.path.join(workdir, 'samples', f'step_{step:07d}.png'))
            visualize.plot_losses(metrics_path, os.path.join(workdir, 'losses.png'))
          synced = True
        if periodic and (step % config.eval_every == 0 or last) and not stop.requested:
          periodic(state, step, functools.partial(
              state_lib.generate_images, sample_fn, params, state.g_stats))
          synced = True
        if step % config.checkpoint_every == 0 or last or stop.requested:
          # Never save the state of a step with a non-finite metric.
          metrics_log.finite_floats(metrics, step)
          started = time.perf_counter()
          ckpts.save(state, step)  # blocks until the state is copied off the devices
          logging.info('Saving checkpoint %d (%.2f s blocking, the rest in the background)',
                       step, time.perf_counter() - started)
          synced = True
        if stop.requested:
          break
        if synced:  # every queued step has run: restart the clock, leaving out logging and I/O
          timer_start, timer_step, synced = time.perf_counter(), step, False
      # Still under StopSignals: a second Ctrl-C while the last save is written exits at once.
      while unclosed:
        unclosed.pop(0).close()
  except BaseException:
    for manager in unclosed:  # let saves in flight finish; report the error above
      manager.close(quiet=True)
    raise
  if stop.requested:
    logging.info('Stopped by %s at step %d; checkpoint saved in %s. Rerun the same command to '
                 'resume.', stop.requested, step, ckpts.directory)
  return state
