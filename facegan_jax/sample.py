"""--mode=sample: images from the latest checkpoint's generator (the EMA one when trained)."""

import functools
import os

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from facegan_jax import checkpoint, train, visualize
from facegan_jax.config import UsageError


def load_latest(config, workdir):
  """(state, generate): the latest checkpoint's state on one device and a function z -> uint8
  images from its generator (the EMA one when trained with --ema_decay)."""
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):
    raise UsageError(f'no checkpoints in {workdir}: train first (--mode=train)')
  setup = train.make_setup(config)
  ckpts = checkpoint.Checkpoints(ckpt_dir, config=config, read_only=True)
  device = jax.devices()[0]
  sharding = NamedSharding(jax.make_mesh((1,), ('data',), devices=[device]), P())
  shapes = jax.eval_shape(functools.partial(train.init_state, config, setup))
  state = ckpts.restore(checkpoint.abstract_like(shapes, sharding))
  ckpts.close()
  if state is None:
    raise UsageError(f'no checkpoints in {ckpt_dir}: train first (--mode=train)')
  return state, functools.partial(train.generate_images, train.make_sample_fn(setup),
                                  train.sample_params(config, state), state.g_stats)


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
