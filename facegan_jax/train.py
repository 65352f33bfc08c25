"""The training loop: compiled calls scheduled around logging, sampling, evaluation and
checkpoints, resumable at any step."""

import collections
import functools
import os
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from facegan_jax import config as config_lib
from facegan_jax import mesh as mesh_lib
from facegan_jax import resume, step as step_lib
from facegan_jax import state as state_lib
from facegan_jax import validation
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.data import images, pipeline, sources
from facegan_jax.errors import UsageError
from facegan_jax.evaluation.periodic import PeriodicEval
from facegan_jax.logs import health as health_lib
from facegan_jax.logs import metrics_log, visualize
from facegan_jax.logs import tensorboard_log
from facegan_jax.run import files
from facegan_jax.run import memory, preemption, runtime
from facegan_jax.run import workdir as workdir_lib


def call_length(config, step, max_steps_per_call):
  """Steps of the call starting at `step`: `max_steps_per_call`, ending at the next step that
  logs, samples, evaluates, checkpoints or ends the run."""
  ends = [config.num_steps] + [(step // every + 1) * every for every in (
      config.log_every, config.sample_every, config.checkpoint_every, config.eval_every) if every]
  return min(max_steps_per_call, min(ends) - step)


def record_flags(workdir, config, step, changed):
  """flags.txt, a --flagfile that reruns the run: a fresh run writes its flags; each resume
  appends a line with its step and the flags it changed (in a flagfile the later line wins),
  so the file keeps the run's history and always gives its current flags."""
  path = os.path.join(workdir, 'flags.txt')
  if step == 0 or not os.path.exists(path):  # a fresh run, or a flags.txt lost since
    with files.atomic_path(path) as tmp, open(tmp, 'w') as f:
      if step:
        f.write(f'# Rewritten at step {step}: the earlier flags.txt was missing\n')
      # Absolute: the file reruns this run from any directory.
      f.write(config.to_flags() + f'--workdir={os.path.abspath(workdir)}\n')
    return
  with open(path, 'a') as f:
    f.write(f'# Resumed at step {step}' + (' with:\n' if changed else ' (no flag changed)\n'))
    f.writelines(config_lib.flag(name, new) + '\n' for name, (_, new) in changed.items())


def _start(config, workdir, mesh, num_devices, images, labels, ckpts):
  """(state, step, inputs, train_fn, periodic evaluation, flags changed on resume, whether it
  owes the evaluation of its step) of the run's start, its step compiled and its memory
  checked, before the run writes a file. State None when the run has nothing left to do;
  inputs and train_fn None when it has no step left but still owes the evaluation of its last
  step (see `_owes_evaluation`)."""
  state, origin = resume.restore_or_init(config, ckpts, mesh)
  step = int(state.step)
  if step > config.num_steps:
    raise UsageError(f'--num_steps={config.num_steps} is below the step this run has reached '
                     f'({step}); pass --num_steps={step} or more to go on, or another --workdir')
  changed = (config_lib.changed_on_resume(ckpts.restored_config, config) if step else {})
  if step and not config.data_may_change:
    _check_same_data(config, ckpts.restored_config, ckpts.data, step)
  logging.info('%s on %d %s device(s); %d training images', origin, num_devices,
               jax.default_backend(), len(images))
  if changed:
    logging.info('Changed on resume: %s', ', '.join(
        f'{config_lib.flag(name, new)} (was {old})' for name, (old, new) in changed.items()))
  owed = _owes_evaluation(config, workdir, step)
  if step == config.num_steps and not owed:
    logging.info('The run has reached --num_steps=%d: nothing to train (a larger --num_steps '
                 'goes on)', step)
    return None, step, None, None, None, changed, False
  inputs = train_fn = None
  if step < config.num_steps:
    # The order's key, taken now: steps donate the state's buffers.
    inputs = pipeline.Input(config, images, mesh, state_lib.data_key(state), step, labels)
    logging.info('Input: %s (%.1f MB of images)', 'host, a few batches ahead' if inputs.on_host
                 else 'the whole dataset on the devices', images.nbytes / 1e6)
    train_fn = step_lib.make_train_fn(config, mesh, inputs.on_host)
    # Compiled now, to check its memory before training (the first call reuses it).
    memory.check(train_fn.lower(state, inputs.spec(step), call_length(
        config, step, inputs.max_steps_per_call), step).compile(), config)
  # Its real side prepared now (feature networks trained, real features read): its errors too.
  periodic = (PeriodicEval(config, workdir, os.path.join(workdir, 'metrics.jsonl'), step)
              if config.eval_every else None)
  return state, step, inputs, train_fn, periodic, changed, owed


def _check_same_data(config, saved, data, step):
  """Raises UsageError when the training images differ from the ones checkpoint `step` was
  trained on (`saved`: its config with its data record; older checkpoints have none)."""
  if saved.get('dataset_version', data['dataset_version']) == data['dataset_version']:
    return
  then, now = saved.get('dataset_images'), data['dataset_images']
  change = ('other files, as many' if then == now else
            f'{then} images then, {now} now' if then is not None else 'other files')
  raise UsageError(f'--dataset={config.dataset} has changed since checkpoint {step} was saved '
                   f'({change}); pass --data_may_change to resume on the images as they are '
                   'now, or use another --workdir')


def _evaluates(config, step):
  return bool(config.eval_every) and (step % config.eval_every == 0 or step == config.num_steps)


def _owes_evaluation(config, workdir, step):
  """Whether the run resumes from a step it should have evaluated but has not: a stop that
  lands on an evaluation step saves the checkpoint without evaluating (the stop is prompt),
  and the resumed run evaluates that step first, as the uninterrupted run did. Process 0
  reads the log; every process evaluates."""
  owed = step > 0 and _evaluates(config, step) and runtime.writes_files() and not any(
      row['step'] == step for row in metrics_log.eval_rows(os.path.join(workdir,
                                                                        'metrics.jsonl')))
  if jax.process_count() > 1:
    owed = bool(multihost_utils.broadcast_one_to_all(np.int32(owed)))
  return owed


@images.listed_once()
def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its latest checkpoint."""
  mesh = mesh_lib.make_mesh(config.num_devices)
  num_devices = mesh.shape[mesh_lib.DATA_AXIS]
  validation.validate(config, num_devices)
  sources.check_dataset(config.dataset)
  if config.condition and not config.num_classes:  # the data's classes (main.py sets them)
    config = sources.with_classes(config)
    validation.validate(config, num_devices)
  lock = workdir_lib.lock_for_training(workdir)  # before anything in it is read or written
  # Everything to the last save's end under StopSignals: a second Ctrl-C while a save is
  # written (at the stop, the end or after an error) exits at once.
  try:
    with preemption.StopSignals() as stop:
      return _train(config, workdir, mesh, num_devices, stop)
  except preemption.Interrupted as e:
    logging.info('Interrupted by %s before training started; nothing to save', e)
    return None
  finally:
    if lock:
      lock.release()


def _train(config, workdir, mesh, num_devices, stop):
  run_started = time.perf_counter()
  images = sources.load_training_images(config)
  labels = sources.load_training_classes(config) if config.condition else None
  if len(images) < pipeline.images_per_step(config):
    per_step = '' if config.d_steps == 1 else f' x --d_steps={config.d_steps}'
    raise UsageError(f'{config.dataset} has {len(images)} training images, fewer than '
                     f'--batch_size={config.batch_size}{per_step}')
  # Opened once the data is known to work; a run that stops before its first save leaves
  # no empty checkpoints/ behind (below).
  fresh = not os.path.exists(os.path.join(workdir, 'checkpoints'))
  ckpts = Checkpoints(os.path.join(workdir, 'checkpoints'), keep=config.keep_checkpoints,
                      config=config)
  ckpts.data = dict(dataset_version=sources.version(config), dataset_images=len(images))
  try:
    state, step, inputs, train_fn, periodic, changed, owed = _start(
        config, workdir, mesh, num_devices, images, labels, ckpts)
  except BaseException:
    ckpts.close(quiet=True)
    if fresh and not os.listdir(ckpts.directory):
      os.rmdir(ckpts.directory)
    raise
  if state is None:  # nothing to train
    ckpts.close()
    return None
  stop.start()  # from here a signal stops the run after its next call, saving it
  start_step = step
  writer = runtime.writes_files()  # process 0 writes the files; every process computes
  samples_dir = os.path.join(workdir, 'samples')
  if writer:  # once the flags are known to work with this workdir and its memory
    os.makedirs(samples_dir, exist_ok=True)
    record_flags(workdir, config, step, changed)
    if inputs:
      first_batch = inputs.order(0)[:min(config.batch_size, 64)]
      visualize.save_grid(images[first_batch], os.path.join(workdir, 'real_batch.png'))
  sample_fn = state_lib.make_sample_fn(state)
  fixed_z, fixed_classes = state_lib.class_grid(config)  # a row per class under --condition
  columns = state_lib.GRID_COLUMNS if config.num_classes else None
  metrics_path = os.path.join(workdir, 'metrics.jsonl')

  tensorboard = tensorboard_log.TensorBoardLog(config, workdir, step,
                                               enabled=writer and config.tensorboard)
  timelapse = visualize.Timelapse(samples_dir, os.path.join(samples_dir, 'progress.gif'))
  health = health_lib.Health()
  if writer:  # the log up to this step, as an uninterrupted run has it; health's streaks too
    health.replay(metrics_log.repair(metrics_path, step))

  timer_start, timer_step, synced = None, step, False
  in_flight = collections.deque()
  unclosed = [m for m in (ckpts, periodic) if m]  # their saves in flight end before we return

  def evaluate(state, step):
    params = state_lib.sample_params(config, state)
    record = periodic(state, step, functools.partial(state_lib.generate_images, sample_fn,
                                                     params, state.g_stats))
    tensorboard.evaluation(step, record)

  try:
    if owed:  # a stop landed on this step's evaluation
      evaluate(state, step)
    while step < config.num_steps:
      num_steps = call_length(config, step, inputs.max_steps_per_call)
      state, metrics = train_fn(state, inputs(step), num_steps, step)
      step += num_steps
      stopping = stop.agreed()
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
          # Real images read (D's batches) per second.
          metrics['images_per_sec'] = ((step - timer_step) * pipeline.images_per_step(config)
                                       / elapsed)
          metrics['steps_per_sec'] = (step - timer_step) / elapsed
        metrics = health.update(step, metrics)
        if writer:
          metrics_log.append(metrics_path, step, config.num_steps, metrics,
                             time.perf_counter() - run_started)
          tensorboard.scalars(step, metrics)
        synced = True
      params = state_lib.sample_params(config, state)
      if step % config.sample_every == 0 or last:
        fake = pipeline.to_uint8(sample_fn(params, state.g_stats, fixed_z, fixed_classes))
        if writer:
          grid = visualize.save_grid(fake, os.path.join(samples_dir, f'step_{step:07d}.png'),
                                     columns=columns)
          timelapse.update(step)
          tensorboard.image(step, grid)
          visualize.plot_losses(metrics_path, os.path.join(workdir, 'losses.png'))
        synced = True
      if periodic and _evaluates(config, step) and not stopping:
        evaluate(state, step)
        synced = True
      if step % config.checkpoint_every == 0 or last or stopping:
        # Never save the state of a step with a non-finite metric.
        metrics_log.finite_floats(metrics, step)
        tensorboard.flush()  # a kill after this save loses no event up to its step
        started = time.perf_counter()
        ckpts.save(state, step)  # blocks until the state is copied off the devices
        logging.info('Saving checkpoint %d (%.2f s blocking, the rest in the background)',
                     step, time.perf_counter() - started)
        synced = True
      if stopping:
        break
      if synced:  # every queued step has run: restart the clock, leaving out logging and I/O
        timer_start, timer_step, synced = time.perf_counter(), step, False
    if step == config.num_steps > start_step:
      tensorboard.finish(step)
    while unclosed:
      unclosed.pop(0).close()
  except BaseException:
    for manager in unclosed:  # let saves in flight finish; report the error above
      manager.close(quiet=True)
    raise
  finally:
    tensorboard.close()
  if stop.requested:
    logging.info('Stopped by %s at step %d; checkpoint saved in %s. Rerun the same command to '
                 'resume.', stop.requested, step, ckpts.directory)
  return state
