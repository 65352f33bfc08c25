"""--mode=sample: images from the latest checkpoint's generator (the EMA one when trained)."""

import os

import jax
import numpy as np
from absl import logging

from facegan_jax import mesh as mesh_lib
from facegan_jax import state as state_lib
from facegan_jax.checkpoint.manager import Checkpoints
from facegan_jax.errors import UsageError
from facegan_jax.logs import visualize


def load_latest(config, workdir):
  """(state, generate): the latest checkpoint's state on one device and a function z -> uint8
  images from its generator (the EMA one when trained with --ema_decay or --ema_kimg)."""
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):
    raise UsageError(f'no checkpoints in {workdir}: train first (--mode=train)')
  ckpts = Checkpoints(ckpt_dir, config=config, read_only=True)
  one_device = mesh_lib.make_mesh(devices=jax.devices()[:1])
  state = ckpts.restore(state_lib.abstract_state(config, mesh_lib.replicated(one_device)))
  ckpts.close()
  if state is None:
    raise UsageError(f'no checkpoints in {ckpt_dir}: train first (--mode=train)')
  return state, state_lib.generator(config, state)


def sample_classes(config, count):
  """The classes of `count` samples under --condition: --sample_class, or every class in
  turn, a grid's row of each (state.class_rows); None without --condition."""
  if not config.num_classes:
    return None
  if config.sample_class >= 0:
    return np.full(count, config.sample_class, np.int32)
  return state_lib.class_rows(count, config.num_classes)


def sample(config, workdir):
  """Writes workdir/samples.npz (key `images`, uint8 NHWC; `classes` under --condition) and
  samples.png (under --condition, a row per class unless --sample_class)."""
  state, generate = load_latest(config, workdir)
  z = jax.random.normal(jax.random.PRNGKey(config.sample_seed),
                        (config.num_samples, config.z_dim))
  classes = sample_classes(config, config.num_samples)
  if classes is None:
    images = generate(z)
    np.savez(os.path.join(workdir, 'samples.npz'), images=images)
  else:
    images = generate(z, classes)
    np.savez(os.path.join(workdir, 'samples.npz'), images=images, classes=classes)
  visualize.save_grid(images[:256], os.path.join(workdir, 'samples.png'),
                      columns=state_lib.GRID_COLUMNS if classes is not None else None)
  logging.info('Wrote %d samples from step %d to %s/samples.npz and samples.png',
               len(images), int(state.step), workdir)
  return images
