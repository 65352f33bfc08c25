"""--mode=sample: the images of the latest checkpoint's EMA generator (G's own without
--ema_decay), for latents drawn from --sample_seed."""

import os

import numpy as np

from tests.conftest import TINY, main_py, run_python


def test_samples_come_from_the_ema_generator_and_the_sample_seed(tmp_path, data_dir):
  workdir = str(tmp_path / 'run')
  args = TINY + [f'--data_dir={data_dir}', f'--workdir={workdir}']  # --ema_decay=0.9
  assert main_py(*args, '--num_steps=10').returncode == 0
  sampled = main_py(*args, '--mode=sample', '--num_samples=6', '--sample_seed=3')
  assert sampled.returncode == 0, sampled.stderr[-2000:]
  images = np.load(os.path.join(workdir, 'samples.npz'))['images']

  # The checkpoint's two generators for the latents of seeds 3 and 4, computed here as
  # main.py computes them (its runtime settings, the same compiled G); and what
  # sample.sample, main.py's --mode=sample, writes with --ema_decay=0.
  run_python(f'''
from facegan_jax import runtime
runtime.configure()
import dataclasses
import jax, numpy as np
from facegan_jax import config as config_lib, sample, state as state_lib
config = config_lib.Config(**config_lib.read_flagfile({workdir + '/flags.txt'!r}))
state, _ = sample.load_latest(config, {workdir!r})
generate = state_lib.make_sample_fn(state)
def images(params, seed):
  z = jax.random.normal(jax.random.PRNGKey(seed), (6, config.z_dim))
  return state_lib.generate_images(generate, params, state.g_stats, z)
raw = sample.sample(dataclasses.replace(config, ema_decay=0.0, num_samples=6, sample_seed=3),
                    {workdir!r})
np.savez({str(tmp_path / 'expected.npz')!r}, ema3=images(state.ema_params, 3),
         g3=images(state.g_params, 3), ema4=images(state.ema_params, 4), raw=raw)
''')
  expected = np.load(tmp_path / 'expected.npz')
  assert expected['ema3'].shape == (6, 16, 16, 3)
  np.testing.assert_array_equal(images, expected['ema3'])  # the EMA G, seed 3's latents
  np.testing.assert_array_equal(expected['raw'], expected['g3'])  # --ema_decay=0: G itself
  assert not np.array_equal(expected['ema3'], expected['g3'])  # which is not the EMA G
  assert not np.array_equal(expected['ema3'], expected['ema4'])  # another seed, other images
