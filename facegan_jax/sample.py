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


def sample(config, workdir):
  """Writes workdir/samples.npz (key `images`, uint8 NHWC) and samples.png."""
  state, generate = load_latest(config, workdir)
  z = jax.random.normal(jax.random.PRNGKey(config.sample_seed),
                        (config.num_samples, config.z_dim))
  images = generate(z)
  np.savez(os.path.join(workdir, 'samples.npz'), images=images)
  visualize.save_grid(images[:256], os.path.join(workdir, 'samples.png'))
  logging.info('Wrote %d samples from step %d to %s/samples.npz and samples.png',
               len(images), int(state.step), workdir)
  return images
